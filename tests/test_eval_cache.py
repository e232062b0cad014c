"""The evaluation cache of the target and oracle stages: what its key depends on, entries that are damaged, and
runs of a method sweep that reuse the first run's evaluations with every number and row unchanged."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import pytest

from conftest import read_results, run_cli
from unlearn_cli import eval_cache, stage_records

CONFIG = {"seed": 0, "output_dir": "a", "overwrite": True, "cache_dir": "/c", "progress": True, "skip": [],
          "cache_eval": True, "checkpoint_every": 0, "cache_reference": True, "threads": None,
          "unlearn": {"lr": 1e-3, "epochs": 8, "precision": "fp32"},
          "model": {"name": "tiny", "hidden_size": 128, "prompt_template": "Q: {question}\nA: "},
          "prepare": {"seed": 0, "train": {"lr": 3e-3}}, "benchmark": {"name": "fictional", "num_people": 60},
          "eval": {"decode": {"max_new_tokens": 24}, "metrics": {"qa_acc": {"splits": ["forget"]}}},
          "method": {"name": "simnpo", "beta": 2.5}, "optimizer": {"name": "adamw"},
          "attack": {"relearn": {"steps": 10}}, "logger": {"name": "none"}, "distributed": {"kind": "none"}}
ENV = {"versions": {"torch": "2.13.0"}, "device": "cpu", "torch_threads": 2}
DATA = "d" * 64


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "tokenizer.json").write_text("{}")
    return d


def _changed(path: str, value) -> dict:
    cfg = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[last] = value
    return cfg


@pytest.mark.parametrize("path,value", [("seed", 1), ("unlearn.precision", "bf16"), ("model.hidden_size", 64),
                                        ("model.prompt_template", "{question}"), ("prepare.train.lr", 1e-3),
                                        ("benchmark.num_people", 20), ("eval.decode.max_new_tokens", 32),
                                        ("eval.metrics", {"qa_acc": {"splits": ["retain"]}})])
def test_the_key_changes_with_what_the_evaluation_depends_on(model_dir, path, value):
    base = eval_cache.key("target", CONFIG, [model_dir], ENV, DATA)
    assert eval_cache.key("target", _changed(path, value), [model_dir], ENV, DATA) != base


@pytest.mark.parametrize("path,value", [("method", {"name": "ga"}), ("optimizer", {"name": "sgd"}),
                                        ("attack", {}), ("unlearn.lr", 1e-5), ("unlearn.epochs", 2),
                                        ("output_dir", "b"), ("overwrite", False), ("logger", {"name": "wandb"}),
                                        ("cache_dir", "/d"), ("progress", False), ("skip", ["attack"]),
                                        ("checkpoint_every", 5), ("distributed", {"kind": "ddp"}),
                                        ("cache_reference", False), ("threads", 4)])
def test_the_key_ignores_what_acts_after_the_baselines_or_only_on_logging(model_dir, path, value):
    assert eval_cache.key("target", _changed(path, value), [model_dir], ENV, DATA) == \
        eval_cache.key("target", CONFIG, [model_dir], ENV, DATA)


def test_the_key_changes_with_the_stage_the_model_files_and_the_environment(model_dir, tmp_path):
    base = eval_cache.key("target", CONFIG, [model_dir], ENV, DATA)
    assert eval_cache.key("oracle", CONFIG, [model_dir], ENV, DATA) != base
    assert eval_cache.key("target", CONFIG, [model_dir], {**ENV, "torch_threads": 4}, DATA) != base
    assert eval_cache.key("target", CONFIG, [model_dir], {**ENV, "device": "cuda:0 (H200)"}, DATA) != base
    other = tmp_path / "other"
    other.mkdir()
    assert eval_cache.key("oracle", CONFIG, [model_dir, other], ENV, DATA) != eval_cache.key("oracle", CONFIG, [model_dir], ENV, DATA)
    (model_dir / "model.safetensors").write_bytes(b"weights, retrained")  # same name, new size and time
    assert eval_cache.key("target", CONFIG, [model_dir], ENV, DATA) != base
    stat = (model_dir / "tokenizer.json").stat()
    key = eval_cache.key("target", CONFIG, [model_dir], ENV, DATA)
    os.utime(model_dir / "tokenizer.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert eval_cache.key("target", CONFIG, [model_dir], ENV, DATA) != key


def test_a_hub_id_or_missing_directory_is_never_cached(model_dir, tmp_path):
    assert eval_cache.key("target", CONFIG, ["meta-llama/Llama-3.2-1B"], ENV, DATA) is None
    assert eval_cache.key("oracle", CONFIG, [model_dir, tmp_path / "gone"], ENV, DATA) is None
    assert eval_cache.EvalCache(tmp_path, True).entry("target", None) is None
    assert eval_cache.EvalCache(tmp_path, False).entry("target", "k") is None
    assert eval_cache.EvalCache(tmp_path, True).entry("unlearned", "k") is None  # only the baselines


def test_the_source_hash_covers_every_module_of_the_package():
    digest = eval_cache.source_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    eval_cache.source_hash.cache_clear()
    assert eval_cache.source_hash() == digest


def _finished_stage(run_dir: Path, stage: str, rows: str) -> None:
    (run_dir / "examples").mkdir(parents=True)
    (run_dir / "examples" / f"{stage}.jsonl").write_text(rows)
    stage_records.write(run_dir, stage, "hash0", {"forget_qa_acc": 0.25}, {f"eval_{stage}": 1.5},
                        {"leak_at_k": {"forget": {}}}, files=[f"examples/{stage}.jsonl"])


def test_store_then_copy_into_another_run_dir(tmp_path):
    first, second = tmp_path / "run1", tmp_path / "run2"
    rows = '{"index": 0, "split": "forget", "qa_acc": true}\n'
    _finished_stage(first, "target", rows)
    cache = eval_cache.EvalCache(tmp_path / "cache", True)
    entry = cache.entry("target", "abc")
    cache.store(entry, "target", first)
    names = sorted(p.name for p in (tmp_path / "cache" / "evals").iterdir())
    assert "target-abc" in names and not [n for n in names if ".tmp-" in n]  # no temp dir left behind
    record = cache.read(entry, "target")
    assert record["metrics"] == {"forget_qa_acc": 0.25}
    second.mkdir()
    returned = cache.copy_into(entry, "target", second, "hash1", record)
    copied, problem = stage_records.read(second, "target")
    assert returned == copied
    assert problem is None and copied["config_hash"] == "hash1" and copied["metrics"] == {"forget_qa_acc": 0.25}
    assert copied["artifacts"] == {"leak_at_k": {"forget": {}}} and copied["seconds"] == {}
    assert copied["extra"]["eval_cache"] == {"target": {"entry": str(entry), "seconds": {"eval_target": 1.5}}}
    assert (second / "examples" / "target.jsonl").read_text() == rows


def test_rows_changed_after_the_entry_was_read_are_not_used(tmp_path, caplog):
    run, other = tmp_path / "run", tmp_path / "other"
    _finished_stage(run, "target", '{"index": 0, "split": "forget", "qa_acc": false}\n')
    cache = eval_cache.EvalCache(tmp_path / "cache", True)
    entry = cache.entry("target", "k2")
    cache.store(entry, "target", run)
    record = cache.read(entry, "target")
    (entry / "examples" / "target.jsonl").write_text('{"index": 0, "split": "forget", "qa_acc": true}\n')  # swapped
    other.mkdir()
    with caplog.at_level(logging.WARNING, logger="unlearn_cli"):
        assert cache.copy_into(entry, "target", other, "h", record) is None
    assert "not used" in caplog.text
    assert stage_records.read(other, "target") == (None, None) and not (other / "examples" / "target.jsonl").exists()


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog):
    run = tmp_path / "run"
    _finished_stage(run, "oracle", '{"index": 0, "split": "forget", "qa_acc": false}\n')
    (tmp_path / "cache").write_text("a file where the cache dir should be")
    cache = eval_cache.EvalCache(tmp_path / "cache", True)
    with caplog.at_level(logging.WARNING, logger="unlearn_cli"):
        cache.store(cache.entry("oracle", "k3"), "oracle", run)
    assert "not cached" in caplog.text


def test_the_targets_key_follows_the_oracle_it_is_compared_with(model_dir):
    keys = {c: eval_cache.key("target", CONFIG, [model_dir], ENV, DATA, c) for c in ("none", "a" * 64, "b" * 64)}
    assert len(set(keys.values())) == 3
    assert eval_cache.key("target", CONFIG, [model_dir], ENV, DATA, "unknown") is None


def test_a_damaged_entry_is_reported_and_not_used(tmp_path, caplog):
    run = tmp_path / "run"
    _finished_stage(run, "oracle", '{"index": 0, "split": "forget", "qa_acc": false}\n')
    cache = eval_cache.EvalCache(tmp_path / "cache", True)
    entry = cache.entry("oracle", "k1")
    cache.store(entry, "oracle", run)
    (entry / "examples" / "oracle.jsonl").write_text('{"index": 0, "split": "forget", "qa_acc": true}\n')
    with caplog.at_level(logging.WARNING, logger="unlearn_cli"):
        assert cache.read(entry, "oracle") is None
    assert "damaged" in caplog.text and str(entry) in caplog.text
    cache.store(entry, "oracle", run)  # the next run that evaluates it replaces it
    assert cache.read(entry, "oracle") is not None


ARGS = ["unlearn.epochs=2", "attack=none", "progress=false"]


def _examples(run_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "examples").glob("*.jsonl"))}


@pytest.mark.slow
def test_a_method_sweep_reuses_the_first_runs_baselines_with_every_number_unchanged(cache_dir, tmp_path):
    """Run 1 (SimNPO) evaluates and caches target and oracle; run 2 (GA) copies them; run 3 (GA, cache_eval=false)
    evaluates everything again: run 2 and run 3 agree in every metric and every per-example row."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (Path(cache_dir) / "prepared").mkdir(parents=True, exist_ok=True)
    (cache / "prepared").symlink_to(Path(cache_dir) / "prepared")  # the session's models, an empty evaluation cache
    first = tmp_path / "simnpo"
    run_cli(["run", *ARGS, f"output_dir={first}"], tmp_path, cache)
    entries = sorted(p.name.split("-")[0] for p in (cache / "evals").iterdir() if p.is_dir())
    assert entries == ["oracle", "target"]
    assert "eval_cache" not in json.loads((first / "provenance.json").read_text())

    reused, fresh = tmp_path / "ga", tmp_path / "ga_fresh"
    run_cli(["run", *ARGS, "method=ga", f"output_dir={reused}"], tmp_path, cache)
    run_cli(["run", *ARGS, "method=ga", "cache_eval=false", f"output_dir={fresh}"], tmp_path, cache)
    prov = json.loads((reused / "provenance.json").read_text())
    assert sorted(prov["eval_cache"]) == ["oracle", "target"]
    assert "eval_target" not in prov["stage_seconds"] and "eval_unlearned" in prov["stage_seconds"]
    assert "eval_cache" not in json.loads((fresh / "provenance.json").read_text())
    assert read_results(reused)["metrics"] == read_results(fresh)["metrics"]
    assert _examples(reused) == _examples(fresh)
    baselines = {k: v for k, v in read_results(first)["metrics"].items() if k.split("/")[0] in ("target", "oracle")}
    assert baselines and all(read_results(reused)["metrics"][k] == v for k, v in baselines.items())
    assert read_results(reused)["metrics"]["unlearned/forget_qa_acc"] != \
        read_results(first)["metrics"]["unlearned/forget_qa_acc"] or \
        read_results(reused)["metrics"]["unlearned/forget_answer_prob"] != \
        read_results(first)["metrics"]["unlearned/forget_answer_prob"]  # another method, another unlearned model


def test_the_data_digest_follows_every_evaluation_item(model_dir):
    import dataclasses

    from unlearn_cli.data.fictional import generate as fictional
    data, again = fictional(num_people=6), fictional(num_people=6)
    digest = eval_cache.data_digest(data)
    assert eval_cache.data_digest(again) == digest and len(digest) == 64
    split = sorted(data.qa)[0]
    items = list(data.qa[split])
    items[-1] = dataclasses.replace(items[-1], answer=items[-1].answer + " (edited)")
    edited = dataclasses.replace(data, qa={**data.qa, split: items})
    assert eval_cache.data_digest(edited) != digest
    assert eval_cache.key("target", CONFIG, [model_dir], ENV, eval_cache.data_digest(edited)) != \
        eval_cache.key("target", CONFIG, [model_dir], ENV, digest)


@pytest.mark.slow
def test_a_metric_that_needs_the_live_target_gets_it_evaluated(cache_dir, tmp_path):
    """trace_detection reads the target's hidden states, which its rows do not hold: the target is evaluated
    again in a run whose target is cached (the oracle still comes from the cache), with the same numbers."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (Path(cache_dir) / "prepared").mkdir(parents=True, exist_ok=True)
    (cache / "prepared").symlink_to(Path(cache_dir) / "prepared")
    args = [*ARGS, "+eval.metrics.trace_detection={}"]
    run_cli(["run", *ARGS, f"output_dir={tmp_path / 'plain'}"], tmp_path, cache)  # caches target and oracle
    first, second = tmp_path / "trace1", tmp_path / "trace2"
    run_cli(["run", *args, f"output_dir={first}"], tmp_path, cache)
    run_cli(["run", *args, "method=ga", f"output_dir={second}"], tmp_path, cache)
    prov = json.loads((second / "provenance.json").read_text())
    assert "oracle" in prov.get("eval_cache", {}) and "target" not in prov.get("eval_cache", {})
    assert "eval_target" in prov["stage_seconds"]
    keys = [k for k in read_results(second)["metrics"] if "trace_" in k]
    assert keys and all(k.startswith(("unlearned/", "worst/")) or k.split("/")[0] != "target" for k in keys)
    assert _examples(first)["target.jsonl"] == _examples(second)["target.jsonl"]


@pytest.mark.slow
def test_a_target_evaluated_without_an_oracle_is_not_reused_by_a_run_with_one(cache_dir, tmp_path):
    """Forget quality and privleak at the target stage compare with the oracle: a target cached by a run that
    skipped the oracle (published constants) is not what a run with an oracle reads."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (Path(cache_dir) / "prepared").mkdir(parents=True, exist_ok=True)
    (cache / "prepared").symlink_to(Path(cache_dir) / "prepared")
    run_cli(["run", *ARGS, "skip=[eval_oracle]", f"output_dir={tmp_path / 'no_oracle'}"], tmp_path, cache)
    with_oracle = tmp_path / "with_oracle"
    run_cli(["run", *ARGS, f"output_dir={with_oracle}"], tmp_path, cache)
    assert "target" not in json.loads((with_oracle / "provenance.json").read_text()).get("eval_cache", {})
    again = tmp_path / "again"
    run_cli(["run", *ARGS, "method=ga", f"output_dir={again}"], tmp_path, cache)
    assert sorted(json.loads((again / "provenance.json").read_text())["eval_cache"]) == ["oracle", "target"]
