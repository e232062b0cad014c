"""The CLI end to end, as a user runs it: the default run, determinism, sweeps, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import read_results, run_cli

FAST = ["skip=[eval_target,attack,eval_oracle]", "progress=false"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, cache_dir):
    """``unlearn run`` with no overrides (cold: builds target and oracle into the session cache)."""
    cwd = tmp_path_factory.mktemp("default")
    proc = run_cli(["run"], cwd, cache_dir)
    dirs = list((cwd / "outputs").iterdir())
    assert len(dirs) == 1
    return cwd, dirs[0], proc


def test_default_run_meets_the_acceptance_bars(default_run):
    _, run_dir, proc = default_run
    m = read_results(run_dir)["metrics"]
    assert m["target/forget_qa_acc"] >= 0.9 and m["target/retain_qa_acc"] >= 0.9
    assert m["unlearned/forget_qa_acc"] <= 0.3
    assert m["unlearned/retain_qa_acc"] >= 0.8 * m["target/retain_qa_acc"]
    assert m["oracle/forget_qa_acc"] <= 0.3
    assert "relearn/forget_qa_acc" in m
    assert all(isinstance(v, float) for v in m.values())
    assert {k.split("/")[0] for k in m} == {"target", "unlearned", "relearn", "oracle", "worst"}
    forget_side = sorted(k.split("/")[1] for k in m if k.startswith("target/forget"))
    assert sorted(k.split("/")[1] for k in m if k.startswith("worst/")) == forget_side  # one entry each
    assert m["worst/forget_qa_acc"] == m["relearn/forget_qa_acc"]  # the only attack is the worst case
    assert "forget_qa_acc" in proc.stdout  # the summary table


def test_default_run_writes_its_outputs(default_run):
    _, run_dir, _ = default_run
    assert read_results(run_dir)["status"] == "complete"
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["seed"] == 0 and "torch" in prov["versions"] and prov["device"] == "cpu"
    cached = {f"eval_{stage}" for stage in prov.get("eval_cache", {})}  # served by an earlier test's identical run
    for stage in ("prepare", "eval_target", "unlearn", "eval_unlearned", "attack_relearn", "eval_oracle"):
        assert prov["stage_seconds"][stage] >= 0 if stage not in cached else stage in ("eval_target", "eval_oracle")
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    unlearn_steps = [s for s in steps if s["stage"] == "unlearn"]  # 8 epochs x ceil(120 forget QAs / 32)
    assert len(unlearn_steps) == 8 * 4 and all("loss" in s and "lr" in s for s in unlearn_steps)
    assert all(s["step_seconds"] > 0 for s in unlearn_steps)
    times = [s["time"] for s in steps]
    assert times == sorted(times) and times[-1] - times[0] < prov_seconds(prov)
    assert "method:" in (run_dir / "config.yaml").read_text()


def prov_seconds(prov) -> float:
    return sum(prov["stage_seconds"].values()) + 60


def test_every_stage_writes_its_per_example_rows(default_run):
    _, run_dir, _ = default_run
    metrics = read_results(run_dir)["metrics"]
    for stage in ("oracle", "target", "unlearned", "relearn"):
        rows = [json.loads(line) for line in (run_dir / "examples" / f"{stage}.jsonl").read_text().splitlines()]
        forget = [r for r in rows if r["split"] == "forget"]
        assert [r["index"] for r in forget] == list(range(len(forget))) == list(range(120))
        assert all(r["question"] and r["answer"] and isinstance(r["generation"], str) for r in forget)
        # aggregates recomputed from the rows equal results.json's
        assert sum(r["qa_acc"] for r in forget) / len(forget) == metrics[f"{stage}/forget_qa_acc"]
        assert sum(r["answer_prob"] for r in forget) / len(forget) == pytest.approx(
            metrics[f"{stage}/forget_answer_prob"], rel=1e-6)
        recall = [r["rouge_l_recall"] for r in rows if r["split"] == "retain"]
        assert sum(recall) / len(recall) == pytest.approx(metrics[f"{stage}/retain_rouge_l"], rel=1e-12)
        assert {r["split"] for r in rows} == {"forget", "retain", "forget_paraphrase", "retain_paraphrase", "holdout"}


def test_same_seed_gives_identical_metrics_and_secrets_are_redacted(default_run, cache_dir, tmp_path):
    cwd, run_dir, _ = default_run
    again = tmp_path / "again"
    run_cli(["run", f"output_dir={again}", "+hf_token=hf_supersecret123", "save_model=true", "progress=false"],
            tmp_path, cache_dir)
    assert read_results(again)["metrics"] == read_results(run_dir)["metrics"]
    assert "hf_supersecret123" not in (again / "config.yaml").read_text()
    assert "hf_supersecret123" not in (again / "provenance.json").read_text()
    weights = load_file(again / "model" / "model.safetensors")
    assert weights and all(torch.isfinite(t).all() for t in weights.values())


def test_finished_run_is_not_redone_and_another_config_is_refused(default_run, cache_dir, refuse):
    cwd, run_dir, _ = default_run
    before = (run_dir / "results.json").read_text()
    proc = run_cli(["run"], cwd, cache_dir)
    assert "already complete" in proc.stdout and (run_dir / "results.json").read_text() == before
    proc = refuse(["run", "seed=1", f"output_dir={run_dir}"], cwd)
    assert proc.returncode == 2
    assert "already holds a finished run of another config" in proc.stderr and "overwrite=true" in proc.stderr
    assert (run_dir / "results.json").read_text() == before


def test_multirun_sweep_writes_one_dir_per_point(cache_dir, tmp_path):
    proc = run_cli(["run", "-m", "method=ga,simnpo", "seed=0,1", "+wandb_api_key=sweepsecret42", *FAST],
                   tmp_path, cache_dir)
    assert "sweepsecret42" not in (tmp_path / "outputs" / "multirun" / "sweep" / "multirun.yaml").read_text()
    dirs = sorted((tmp_path / "outputs" / "multirun" / "sweep").glob("fictional-*"))
    assert len(dirs) == 4, proc.stdout
    names = {d.name.split("-seed")[0].split("-")[1] + d.name.split("-seed")[1][:1] for d in dirs}
    assert names == {"ga0", "ga1", "simnpo0", "simnpo1"}
    for d in dirs:
        assert read_results(d)["status"] == "complete"
        assert "unlearned/forget_qa_acc" in read_results(d)["metrics"]


def test_nan_loss_stops_keeps_last_good_state(cache_dir, tmp_path):
    out = tmp_path / "nan"
    proc = run_cli(["run", "method=ga", "unlearn.lr=1e6", "save_model=true", f"output_dir={out}", *FAST],
                   tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite") and "unlearn step" in line
    assert read_results(out)["status"].startswith("failed")
    weights = load_file(out / "model" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


BAD = [
    (["method=nope"], "unknown method 'nope'", "known: adaptive_rmu, ceu, dpo, ga, graddiff"),
    (["method.betta=1"], "unknown hyperparameter 'method.betta'", "did you mean 'beta'?"),
    (["+method.betta=1"], "unknown hyperparameter 'method.betta'", "valid:"),
    (["model.pth=/x", "model.oracle_pth=/y"], "unknown hyperparameter 'model.pth'", "valid: kind, architecture,"),
    (["unlearn.batch_size=0"], "unlearn.batch_size=0: must be >= 1", "for 'unlearn'"),
    (["unlearn.lr=nan"], "unlearn.lr=nan: must be a finite number > 0", ""),
    (["unlearn.steps=-5"], "unlearn.steps=-5: must be >= 1", ""),
    (["method.beta=[1"], "cannot parse override 'method.beta=[1'", "grammar: key=value"),
    (["eval.decode.top_p=0.9"], "'eval.decode.top_p' is a setting of 'eval.decode' that its config does not list",
     "'+eval.decode.top_p=0.9'"),
    (["method.beta=abc"], "method.beta='abc'", "expected float"),
    (["unlearn.steps=ten"], "unlearn.steps='ten'", "expected"),
    (["attack=[relearn,nope]"], "unknown attack 'nope'", "known:"),
    (["skip=[eval_foo]"], "unknown stage 'eval_foo'", "valid:"),
    (["model.kind=pretrained", "model.path=/nonexistent/model"], "model.path '/nonexistent/model' does not exist", ""),
]


def _one_clear_line(proc, culprit: str, hint: str, cwd: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert culprit in lines[0] and hint in lines[0]
    assert not (cwd / "outputs").exists() or not any((cwd / "outputs").rglob("results.json"))


@pytest.mark.parametrize("args,culprit,hint", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_clear_line(args, culprit, hint, refuse, tmp_path):
    _one_clear_line(refuse(["run", *args, "progress=false"], tmp_path), culprit, hint, tmp_path)


@pytest.mark.parametrize("args,culprit,hint", [BAD[1], BAD[5]], ids=["method.betta=1", "unlearn.lr=nan"])
def test_bad_input_is_one_clear_line_from_the_program(args, culprit, hint, cache_dir, tmp_path):
    """The same refusal from ``python -m unlearn_cli`` in its own process: exit code 2, one line on stderr."""
    proc = run_cli(["run", *args, "progress=false"], tmp_path, cache_dir, expect_ok=False)
    _one_clear_line(proc, culprit, hint, tmp_path)


def test_list_shows_registered_components(cache_dir, tmp_path):
    proc = run_cli(["list", "method"], tmp_path, cache_dir)
    for name in ("ga", "graddiff", "npo", "simnpo"):
        assert f"  {name} " in proc.stdout
    proc = run_cli(["list", "nope"], tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode == 2 and "unknown group 'nope'" in proc.stderr


def test_method_needing_retain_on_benchmark_without_it_fails_before_training(cache_dir, tmp_path):
    proc = run_cli(["run", "benchmark=muse_news", "benchmark.retain_source=none", "method=npo", "progress=false"],
                   tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: method 'npo' needs retain data") and "retain" in line
    assert not any(tmp_path.rglob("metrics.jsonl")) or all(
        '"unlearn"' not in p.read_text() for p in tmp_path.rglob("metrics.jsonl"))


def test_layer_index_out_of_range_fails_before_any_stage(cache_dir, tmp_path):
    out = tmp_path / "rmu"
    proc = run_cli(["run", "method=rmu", "method.layer=5", f"output_dir={out}", "progress=false"],
                   tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "method.layer=5 is out of range for this 2-layer model; valid layer indices: 0..1" in line
    assert not (out / "results.json").exists()
    assert '"stage": "unlearn"' not in (out / "metrics.jsonl").read_text()  # prepare may log; unlearning never ran


def test_attack_instances_are_stages_and_salun_is_a_plugin(cache_dir, tmp_path):
    """Two budgets of one attack are two stages named by their ids; SalUn runs as a train plug-in."""
    out = tmp_path / "ids"
    run_cli(["run", "plugin=[salun]", "plugin.salun.sparsity=0.3", "+attack.relearn_2={name: relearn, steps: 2}",
             "skip=[eval_target,eval_oracle]", "progress=false", f"output_dir={out}"], tmp_path, cache_dir)
    m = read_results(out)["metrics"]
    assert {k.split("/")[0] for k in m} == {"unlearned", "relearn", "relearn_2"}  # no target: no worst case
    assert m["relearn/forget_answer_prob"] != m["relearn_2/forget_answer_prob"]  # 10 steps vs 2
    prov = json.loads((out / "provenance.json").read_text())
    assert {"attack_relearn", "attack_relearn_2", "eval_relearn", "eval_relearn_2"} <= set(prov["stage_seconds"])
    assert prov["plugins"]["salun"]["kept_fraction"] == pytest.approx(0.3, abs=1e-3)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["stage"] == "attack relearn_2" for r in rows) == 2
    assert sum(r["stage"] == "attack relearn" for r in rows) == 10
