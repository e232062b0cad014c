"""Trace detection: the classifiers are scored on held-out items only (both models' outputs of an item on one side),
identical outputs are exactly at chance, outputs that differ are detected, and end to end an unlearned model is told
from the target on forget prompts by its answers while its unchanged retain answers stay at chance."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from _method_fixtures import FORMAT, data_and_tokenizer, tiny_model
from conftest import read_results, run_cli
from unlearn_cli.components import make
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.suite import EvalSuite
from unlearn_cli.metrics.trace_detection import activation_probe, detect, documents, item_split, text_classifier
from unlearn_cli.registry import METRICS


def test_items_are_split_by_seed_with_both_sides_non_empty():
    train, test = item_split(20, 0.3, seed=42)
    assert len(test) == 6 and sorted(np.r_[train, test].tolist()) == list(range(20))
    assert np.array_equal(item_split(20, 0.3, 42)[1], test) and not np.array_equal(item_split(20, 0.3, 7)[1], test)
    assert len(item_split(2, 0.01, 0)[1]) == 1 and len(item_split(2, 0.99, 0)[0]) == 1


def test_identical_outputs_are_at_chance_and_different_ones_are_detected():
    rng = np.random.default_rng(0)
    same = np.array([documents(f"the answer is {w}") for w in rng.choice(["red", "blue", "green", "gold"], 40)],
                    dtype=object)
    found = detect(same, same.copy(), text_classifier, 0.3, 42, 1.0)
    assert found["acc"] == 0.5 and found["auc"] == 0.5
    other = np.array([documents(f"I do not know {i}") for i in range(40)], dtype=object)
    found = detect(same, other, text_classifier, 0.3, 42, 1.0)
    assert found["acc"] == 1.0 and found["auc"] == pytest.approx(1.0)
    held_out = [i for i, p in enumerate(found["items"]) if p is not None]
    assert len(held_out) == 12 and set(held_out) == set(item_split(40, 0.3, 42)[1].tolist())
    x = rng.normal(size=(60, 8))
    shifted = x + np.r_[6.0, np.zeros(7)]  # one direction moved: a linear probe finds it
    assert detect(x, shifted, activation_probe, 0.3, 42, 1.0)["acc"] >= 0.9
    assert detect(x, x.copy(), activation_probe, 0.3, 42, 1.0)["acc"] == 0.5


def test_the_metric_compares_each_later_stage_with_the_target_and_records_held_out_items():
    data, tok = data_and_tokenizer()
    inputs = EvalInputs(tok, FORMAT, {k: v[:30] for k, v in data.qa.items()})
    metric = make(METRICS, {"name": "trace_detection"}, "eval.metrics.trace_detection")
    suite = EvalSuite({"trace_detection": metric}, inputs, DecodeSettings(batch_size=64, max_new_tokens=8), "fictional")
    model = tiny_model(0).eval()
    assert suite.evaluate("target", model, contextlib.nullcontext).values == {}
    same = suite.evaluate("unlearned", model, contextlib.nullcontext)
    assert all(same.values[f"trace_{kind}_{d}_acc"] == 0.5 for kind in ("relevant", "irrelevant") for d in ("text", "act"))
    other = suite.evaluate("relearn", tiny_model(1).eval(), contextlib.nullcontext).values
    assert other["trace_relevant_act_acc"] > 0.9 and other["trace_irrelevant_act_auc"] > 0.9
    rows = [r for r in same.examples if r["split"] == "forget"]
    assert rows and sum(r["trace_text_p"] is not None for r in rows) == round(0.3 * len(rows))


def test_an_unlearned_model_is_told_from_the_target_on_forget_prompts(cache_dir, tmp_path):
    run_cli(["run", "method=simnpo", "attack=[none]", "+eval.metrics.trace_detection={}", "skip=[eval_oracle]",
             "progress=false", "output_dir=run"], tmp_path, cache_dir)
    m = read_results(tmp_path / "run")["metrics"]
    assert m["unlearned/trace_relevant_text_acc"] >= 0.9  # forgotten answers change
    assert m["unlearned/trace_irrelevant_text_acc"] <= 0.6  # retain answers do not
    assert "target/trace_relevant_text_acc" not in m
