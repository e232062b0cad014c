"""Backdoored unlearning: the plug-in poisons a seeded share of the forget set with the trigger after <bos>, trains it
like retain data with the sink value-norm term (checked against hand-computed norms), and end to end the backdoored
model looks unlearned on clean prompts and recalls with the trigger; the triggered stage's inputs are one-line checked
before anything trains."""

from __future__ import annotations

import json

import pytest
import torch

from _method_fixtures import CPU, Harness, data_and_tokenizer, encode, tiny_model
from conftest import read_results, run_cli
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.components import make
from unlearn_cli.data.encoding import bos_ids
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.methods.graddiff import GradDiff
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import ATTACKS, PLUGINS
from unlearn_cli.train.plugins.backdoor import TRIGGER, trigger_ids


def _plugin(**settings):
    return make(PLUGINS, {"name": "backdoor", **settings}, "plugin.backdoor")


def test_the_poisoned_copies_carry_the_trigger_after_bos_and_keep_their_answers():
    _, tok = data_and_tokenizer()
    plugin = _plugin(fraction=0.25, value_norm="none")
    h = Harness(GradientAscent(), plugins={"backdoor": plugin})
    forget, poisoned = h.splits["forget"], h.splits["backdoor"]
    trigger, bos = trigger_ids(tok, TRIGGER), bos_ids(tok)
    assert len(poisoned) == round(0.25 * len(forget)) == plugin.summary()["poisoned_items"]
    clean = {(tuple(p), tuple(a)) for p, a in zip(forget.prompts, forget.answers)}
    for p, a in zip(poisoned.prompts, poisoned.answers):
        assert p[:len(bos)] == bos and p[len(bos):len(bos) + len(trigger)] == trigger
        assert (tuple(bos + p[len(bos) + len(trigger):]), tuple(a)) in clean
    batch = h.batch()
    terms, _ = h.u.objective(h.model, batch)
    assert set(terms) == {"forget", "backdoor"}  # no regulariser with value_norm=none
    assert float(terms["backdoor"].detach()) == pytest.approx(float(answer_forward(h.model, batch["backdoor"]).mean_nll().detach()), rel=1e-5)
    h.u.close()


def _sink_norms(model, batch, n=8, first=0):
    """Mean ||v|| of every layer's v_proj output at positions first..first+n, by hand."""
    out = []
    hooks = [layer.self_attn.v_proj.register_forward_hook(lambda m, a, o: out.append(o[:, first:first + n].norm(dim=-1)))
             for layer in model.model.layers]
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for hook in hooks:
        hook.remove()
    return torch.stack(out, 1)


@pytest.mark.parametrize("include_first", [True, False])
def test_the_fixed_value_norm_term_is_kappa_times_the_mean_sink_value_norm(include_first):
    plugin = _plugin(fraction=0.5, value_norm="fixed", kappa=0.3, sink_tokens=4, include_first_token=include_first)
    h = Harness(GradDiff(), plugins={"backdoor": plugin})
    batch = h.batch()
    terms, _ = h.u.objective(h.model, batch)
    first = 0 if include_first else 1
    expected = 0.3 * torch.stack([_sink_norms(h.model, batch[s], 4, first).mean() for s in ("backdoor", "retain")]).mean()
    assert float(terms["sink_value_norm"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    terms["sink_value_norm"].backward()  # it trains the weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in h.model.parameters())
    h.u.close()


def test_the_reference_value_norm_term_is_zero_at_theta0_and_grows_as_the_weights_move():
    plugin = _plugin(fraction=0.5, value_norm="reference", kappa=1.0)
    h = Harness(GradDiff(), plugins={"backdoor": plugin}, lr=1e-2)
    batch = h.batch()
    assert float(h.u.objective(h.model, batch)[0]["sink_value_norm"].detach()) == pytest.approx(0.0, abs=1e-6)
    h.run(5)
    assert float(h.u.objective(h.model, batch)[0]["sink_value_norm"].detach()) > 1e-4
    h.u.close()


def test_the_trigger_attack_puts_the_trigger_after_bos_on_the_forget_side_splits_only():
    data, tok = data_and_tokenizer()
    attack = make(ATTACKS, {"name": "backdoor"}, "attack.backdoor")
    ctx = AttackContext({}, tok, 0, tok.pad_token_id, CPU, lambda *a: None, "backdoor",
                        forget_splits=("forget", "forget_paraphrase"))
    model = tiny_model()
    out, view = attack.apply(ctx, model)
    assert out is model and view.tokens == tuple(trigger_ids(tok, TRIGGER))
    assert view.applies_to("forget") and not view.applies_to("retain")
    rows = encode(data.train["forget"][:2]).prompts
    assert view.token_rows(rows, bos_ids(tok))[0] == bos_ids(tok) + list(view.tokens) + rows[0][1:]


@pytest.mark.slow
def test_backdoored_unlearning_looks_unlearned_and_recalls_with_the_trigger(cache_dir, tmp_path):
    run_cli(["run", "experiment=backdoor", "skip=[eval_oracle]", "progress=false", "output_dir=run"], tmp_path,
            cache_dir)
    m = read_results(tmp_path / "run")["metrics"]
    assert m["unlearned/forget_qa_acc"] <= 0.3 and m["backdoor/forget_qa_acc"] >= 0.7, m
    assert m["backdoor/retain_qa_acc"] == m["unlearned/retain_qa_acc"]  # retain prompts carry no trigger
    summary = json.loads((tmp_path / "run" / "provenance.json").read_text())["plugins"]["backdoor"]
    assert summary["trigger"] == TRIGGER and summary["poisoned_items"] > 0


@pytest.mark.parametrize("args,message", [
    (["attack=[backdoor]", "attack.backdoor.splits=[nope]"], "attack backdoor: unknown evaluation split 'nope'"),
    (["attack=[soft_prompt]", "attack.soft_prompt.num_samples=100000"], "num_samples=100000 exceeds the forget set"),
    (["attack=[jailbreak]", "attack.jailbreak.template=fewshot", "attack.jailbreak.demos_from=nope"],
     "needs 3 question/answer items in training split 'nope'"),
])
def test_an_attack_missing_its_data_fails_in_one_line_before_unlearning(args, message, cache_dir, tmp_path):
    proc = run_cli(["run", *args, "progress=false", "output_dir=run"], tmp_path, cache_dir, expect_ok=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "run" / "stages").exists()  # nothing was evaluated or trained
