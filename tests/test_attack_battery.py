"""The attack battery: relearning recovers more with a larger budget, and one run of experiment=attack_battery has a
stage for every attack of the registry, prints them in one table with the worst case, and detects the unlearning's
trace at every stage."""

from __future__ import annotations

import pytest
import torch
import yaml

from _method_fixtures import CPU, data_and_tokenizer, encode
from conftest import read_results, run_cli
from test_optimised_prompts import _unlearned
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.components import make
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import ATTACKS


def test_relearning_lowers_the_forget_loss_more_with_a_larger_budget():
    data, tok = data_and_tokenizer()
    enc = {k: encode(v) for k, v in data.train.items()}
    forget = enc["forget"].batch(range(len(enc["forget"])), tok.pad_token_id)

    def loss(model):
        with torch.no_grad():
            return float(answer_forward(model, forget).mean_nll())
    losses = [loss(_unlearned())]
    for steps in (3, 12):
        ctx = AttackContext(enc, tok, 0, tok.pad_token_id, CPU, lambda *a: None, "relearn")
        attack = make(ATTACKS, {"name": "relearn", "steps": steps, "precision": "fp32", "lr": 1e-3}, "attack.relearn")
        model, _ = attack.apply(ctx, _unlearned())
        losses.append(loss(model))
    assert losses[0] > losses[1] > losses[2], losses


@pytest.mark.slow
def test_the_battery_runs_every_attack_as_a_stage_with_the_worst_case(cache_dir, tmp_path):
    proc = run_cli(["run", "experiment=attack_battery", "skip=[eval_oracle]", "attack.soft_prompt_300.steps=40",
                    "attack.soft_prompt.steps=20", "attack.gcg.steps=4", "attack.gcg.search_width=16",
                    "progress=false", "output_dir=run"], tmp_path, cache_dir, env_extra={"COLUMNS": "100"})
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    kinds = {section["name"] for section in config["attack"].values()}
    assert kinds == set(ATTACKS.names()) - {"none"}  # every attack of the registry
    m = read_results(tmp_path / "run")["metrics"]
    stages = list(config["attack"])
    assert all(f"{s}/forget_qa_acc" in m for s in stages) and "worst/forget_qa_acc" in m
    assert m["worst/forget_qa_acc"] == max(m[f"{s}/forget_qa_acc"] for s in stages)  # target 1.0: the highest
    assert m["relearn_30/forget_qa_acc"] > m["relearn/forget_qa_acc"]
    header = next(line for line in proc.stdout.splitlines() if "metric" in line and "unlearned" in line)
    assert all(f" {s} " in header for s in ["target", "unlearned", *stages, "worst"])  # one table, nothing cut
    assert m["unlearned/trace_relevant_text_acc"] > m["unlearned/trace_irrelevant_text_acc"]
