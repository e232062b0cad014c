"""Real-checkpoint oracles: ``model.oracle_path`` for pretrained targets, and ``oracle_results`` reusing an earlier
run's per-example oracle values (tiny pretrained-format stand-ins built here, real TOFU files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import read_results, run_cli
from unlearn_cli.data.benchmarks.tofu import Tofu
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.models.build import ModelSpec, build_tiny, save

TOFU = ["benchmark=tofu", "benchmark.split=forget01", "benchmark.num_forget_authors=1", "benchmark.max_items=10",
        "eval=tofu", "eval.decode.max_new_tokens=8", "unlearn.steps=2", "unlearn.lr=1e-3", "unlearn.precision=fp32",
        "attack=none", "progress=false", "model=hf", "model.dtype=float32"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A 'target' and a retain-only 'oracle' saved in Hugging Face format with one tokenizer."""
    root = tmp_path_factory.mktemp("checkpoints")
    data = Tofu(split="forget01", num_forget_authors=1, max_items=10).load()
    tok = train_bpe_tokenizer(data.corpus, 512)
    spec = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    paths = {}
    for name, seed in (("target", 0), ("oracle", 1)):
        torch.manual_seed(seed)
        save(build_tiny(spec, len(tok), tok, seed), tok, root / name)
        paths[name] = root / name
    return paths


def test_a_pretrained_target_is_compared_with_its_oracle_and_a_sweep_reuses_it(checkpoints, cache_dir, tmp_path):
    first = tmp_path / "first"
    run_cli(["run", *TOFU, f"model.path={checkpoints['target']}", f"model.oracle_path={checkpoints['oracle']}",
             f"output_dir={first}"], tmp_path, cache_dir)
    m = read_results(first)["metrics"]
    assert m["oracle/forget_quality"] == 1.0
    for stage in ("target", "unlearned"):
        assert 0.0 <= m[f"{stage}/forget_quality"] <= 1.0 and 0.0 <= m[f"{stage}/model_utility"] <= 1.0
    assert m["target/forget_quality"] < 1.0  # another model's truth ratios
    assert (first / "examples" / "oracle.jsonl").is_file()

    second = tmp_path / "second"  # another method of the same sweep: the oracle is not evaluated again
    run_cli(["run", *TOFU, "method=npo", f"model.path={checkpoints['target']}", f"oracle_results={first}",
             f"output_dir={second}"], tmp_path, cache_dir)
    m2 = read_results(second)["metrics"]
    assert m2["target/forget_quality"] == m["target/forget_quality"]
    assert {k: v for k, v in m2.items() if k.startswith("oracle/")} == {k: v for k, v in m.items()
                                                                        if k.startswith("oracle/")}
    prov = json.loads((second / "provenance.json").read_text())
    assert "eval_oracle" not in prov["stage_seconds"] and prov["oracle_results"].endswith("examples/oracle.jsonl")
    assert not (second / "examples" / "oracle.jsonl").exists()

    proc = run_cli(["run", *TOFU, "benchmark.max_items=8", f"model.path={checkpoints['target']}",
                    f"oracle_results={first}", f"output_dir={tmp_path / 'third'}"], tmp_path, cache_dir, expect_ok=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "evaluated with other settings (benchmark.max_items: 10 there, 8 here)" in lines[0]


def test_an_oracle_of_another_vocabulary_is_refused(checkpoints, cache_dir, tmp_path):
    other = tmp_path / "other"
    data = Tofu(split="forget01", num_forget_authors=1, max_items=10).load()
    tok = train_bpe_tokenizer(data.corpus, 300)
    save(build_tiny(ModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), len(tok), tok, 0),
         tok, other)
    proc = run_cli(["run", *TOFU, f"model.path={checkpoints['target']}", f"model.oracle_path={other}",
                    f"output_dir={tmp_path / 'run'}"], tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode == 2 and "the oracle must share the target's tokenizer" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("key", ["model.path", "model.oracle_path"])
def test_a_truncated_pretrained_checkpoint_fails_in_one_line_naming_it(key, checkpoints, cache_dir, tmp_path):
    """A given checkpoint cannot be rebuilt: damaged weights are one error naming the setting and the path."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoints["target" if key == "model.path" else "oracle"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    paths = {"model.path": checkpoints["target"], "model.oracle_path": checkpoints["oracle"], key: broken}
    proc = run_cli(["run", *TOFU, *(f"{k}={v}" for k, v in paths.items()), f"output_dir={tmp_path / 'run'}"],
                   tmp_path, cache_dir, expect_ok=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: {key} '{broken}': its weights cannot be loaded")
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_stored_stage_answers_like_the_frozen_scorer(tmp_path):
    """examples/oracle.jsonl, recorded as the finished oracle stage, read back gives the very truth ratios, MIA scores and AUCs the oracle scorer memoised."""
    import contextlib

    from _method_fixtures import FORMAT, data_and_tokenizer, tiny_model
    from unlearn_cli.eval import stored
    from unlearn_cli.eval.decode import DecodeSettings
    from unlearn_cli.eval.inputs import EvalInputs
    from unlearn_cli.eval.suite import EvalSuite
    from unlearn_cli.metrics.forget_quality import ForgetQuality
    from unlearn_cli.metrics.privleak import PrivLeak
    from unlearn_cli.outputs import RunOutputs

    data, tok = data_and_tokenizer()
    inputs = EvalInputs(tok, FORMAT, {k: v[:10] for k, v in data.qa.items()}, {},
                        {k: v[:6] for k, v in data.texts.items()})
    suite = EvalSuite({"forget_quality": ForgetQuality(), "privleak": PrivLeak("forget_bios", "holdout_bios")},
                      inputs, DecodeSettings(batch_size=8), "fictional")
    result = suite.evaluate("oracle", tiny_model().eval(), contextlib.nullcontext)
    oracle = suite.baselines.get("oracle")
    config = {"benchmark": {"name": "fictional"}, "eval": {"name": "x"}, "model": {"prompt_template": FORMAT.template}}

    class Settings:
        run_dir, overwrite, run_name, config_hash = tmp_path, True, "r", "h"
        config = None
    Settings.config = config
    out = RunOutputs(Settings, main=True)
    out.open()
    out.examples("oracle", result.examples)
    out.stage_done("oracle", dict(result.values), {}, files=["examples/oracle.jsonl"])
    found, values = stored.load(tmp_path, config)
    assert values == dict(result.values)
    assert found.truth_ratios("forget").tolist() == oracle.truth_ratios("forget").tolist()
    assert found.mia_scores("forget_bios", "min_k").tolist() == oracle.mia_scores("forget_bios", "min_k").tolist()
    assert found.mia_auc("forget_bios", "holdout_bios", "min_k") == oracle.mia_auc("forget_bios", "holdout_bios", "min_k")
    with pytest.raises(Exception, match="has no complete 'mia_zlib'"):
        found.mia_scores("forget_bios", "zlib")


def test_prepare_finetune_builds_target_and_oracle_from_a_pretrained_base(checkpoints, cache_dir, tmp_path):
    """prepare.finetune=true: the given base is fine-tuned on forget + retain (target) and retain (oracle), cached."""
    recipe = ["prepare.finetune=true", "prepare.finetune_train.lr=3e-3", "prepare.finetune_train.epochs=8",
              "prepare.finetune_train.batch_size=10", "prepare.finetune_train.precision=fp32"]
    base = tmp_path / "base"
    run_cli(["run", *TOFU, f"model.path={checkpoints['target']}", "skip=[unlearn,attack,eval_oracle]",
             f"output_dir={base}"], tmp_path, cache_dir)
    tuned = tmp_path / "tuned"
    run_cli(["run", *TOFU, *recipe, f"model.path={checkpoints['target']}", f"output_dir={tuned}"], tmp_path, cache_dir)
    before, after = read_results(base)["metrics"], read_results(tuned)["metrics"]
    assert after["target/forget_answer_prob"] > 2 * before["target/forget_answer_prob"]  # it learned the forget set
    assert after["oracle/forget_answer_prob"] < after["target/forget_answer_prob"]  # the oracle never saw it
    prov = json.loads((tuned / "provenance.json").read_text())
    for role in ("target", "oracle"):
        made = json.loads((Path(prov["prepared"][role]) / "prepared.json").read_text())
        assert made["key"]["role"] == role and made["key"]["model"]["path"] == str(checkpoints["target"])
    rows = [json.loads(line) for line in (tuned / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} >= {"prepare target", "prepare oracle", "unlearn"}
    again = tmp_path / "again"  # cached: a second run trains nothing in the prepare stage
    run_cli(["run", *TOFU, *recipe, f"model.path={checkpoints['target']}", f"output_dir={again}"], tmp_path, cache_dir)
    stages = {json.loads(line)["stage"] for line in (again / "metrics.jsonl").read_text().splitlines()}
    assert "prepare target" not in stages and read_results(again)["metrics"] == read_results(tuned)["metrics"]
