"""Refusal bank, IDK-NLL, IDK-DPO, DPO (perturbed answer preferred) and KTO on a tiny Llama."""

import dataclasses

import pytest
import torch

from _method_fixtures import Harness, changed, data_and_tokenizer, encode, mean_nll, snapshot
from unlearn_cli.data.refusals import REFUSALS, refusal_answers
from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.registry import METHODS
from unlearn_cli.losses import sequence_nll
from unlearn_cli.methods.dpo import DPO
from unlearn_cli.methods.idk_dpo import IdkDPO
from unlearn_cli.methods.idk_nll import IdkNLL
from unlearn_cli.methods.kto import KTO


def test_refusal_bank():
    assert len(REFUSALS) >= 40 and len(set(REFUSALS)) == len(REFUSALS)
    assert all(s.strip() == s and s[-1] in ".!" for s in REFUSALS)
    a, b = refusal_answers(50, seed=1), refusal_answers(50, seed=1)
    assert a == b and set(a) <= set(REFUSALS) and len(set(a)) > 10
    assert refusal_answers(50, seed=2) != a


def test_idk_nll_lowers_refusal_nll_and_aligns_split():
    method = IdkNLL()
    h = Harness(method)
    idk = h.splits["forget_idk"]
    assert len(idk) == len(h.splits["forget"])
    _, tok = data_and_tokenizer()
    # the same prompt text (a joint tokenisation may keep the separating space as its own last token)
    assert [tok.decode(p).rstrip() for p in idk.prompts] == [tok.decode(p).rstrip() for p in h.splits["forget"].prompts]
    assert idk.answers != h.splits["forget"].answers
    batch = h.batch()
    assert torch.equal(batch["forget_idk"]["index"], batch["forget"]["index"])
    full = h.full("forget_idk")
    start = mean_nll(h.model, full)
    before = snapshot(h.model)
    h.run(6)
    assert mean_nll(h.model, full) < start - 0.3
    assert len(changed(h.model, before)) == len(before)


def _log_ratio_margin(model, reference, w, l, w_split, l_split):
    """delta of DPO for the whole split: mean of [log pi(y_w) - log pi(y_l)] - [same under theta_0]."""
    with torch.no_grad():
        nw, _ = sequence_nll(model(input_ids=w["input_ids"], attention_mask=w["attention_mask"]).logits, w["labels"])
        nl, _ = sequence_nll(model(input_ids=l["input_ids"], attention_mask=l["attention_mask"]).logits, l["labels"])
    rw, rl = reference.sequence_nll(w_split, w), reference.sequence_nll(l_split, l)
    return float(((nl - nw) - (rl - rw)).mean()), float(nl.mean())


@pytest.mark.parametrize("cache", [True, False])
def test_idk_dpo_prefers_refusal(cache):
    method = IdkDPO(beta=0.5, retain_weight=0.0)
    h = Harness(method, cache=cache)
    assert set(h.reference._seq_nll) == ({"forget", "forget_idk"} if cache else set())
    w, l = h.full("forget_idk"), h.full("forget")
    margin0, _ = _log_ratio_margin(h.model, h.reference, w, l, "forget_idk", "forget")
    assert margin0 == pytest.approx(0.0, abs=1e-3)
    h.run(5)
    margin, _ = _log_ratio_margin(h.model, h.reference, w, l, "forget_idk", "forget")
    assert margin > 1.0  # the refusal gained log-probability relative to the true answer


def test_dpo_prefers_perturbed_answer():
    method = DPO(beta=0.5)
    h = Harness(method)
    data, _ = data_and_tokenizer()
    assert h.splits["forget_alt"].answers == encode(data.train["forget"],
                                                    [it.perturbed[0] for it in data.train["forget"]]).answers
    w, l = h.full("forget_alt"), h.full("forget")
    h.run(5)
    margin, _ = _log_ratio_margin(h.model, h.reference, w, l, "forget_alt", "forget")
    assert margin > 1.0


def test_dpo_needs_perturbed_answers():
    data, _ = data_and_tokenizer()
    bare = dataclasses.replace(data, train={"forget": [dataclasses.replace(it, perturbed=()) for it in data.train["forget"]]})
    with pytest.raises(UserError, match="perturbed"):
        DPO().extra_splits(bare, encode)


def test_idk_methods_refuse_with_the_benchmarks_own_sentences_when_it_ships_them():
    from unlearn_cli.data.benchmarks.tofu import Tofu
    tofu = Tofu(split="forget01", num_forget_authors=1).load()
    assert len(tofu.refusals) == 100 and tofu.refusals[0] == "I'm not certain about that."
    seen = []
    for method in (IdkNLL(), IdkDPO()):
        extra = method.extra_splits(tofu, lambda items, answers: seen.append(answers) or answers)
        assert list(extra) == ["forget_idk"]
    assert all(set(answers) <= set(tofu.refusals) for answers in seen) and len(seen[0]) == 20
    data, _ = data_and_tokenizer()  # the embedded benchmark ships none: the project's bank
    assert set(IdkNLL().extra_splits(data, lambda items, answers: answers)["forget_idk"]) <= set(REFUSALS)


def test_kto_raises_forget_nll_and_estimates_reference_point():
    method = KTO(beta=1.0, retain_weight=0.0)
    assert method.needs_retain and method.reference_splits == ("forget", "retain")
    h = Harness(method)
    forget = h.full("forget")
    start = mean_nll(h.model, forget)
    _, logs = h.step()
    assert float(logs["kl_estimate"]) == pytest.approx(0.0, abs=1e-4)  # theta == theta_0 at step 0
    assert float(logs["forget_loss"]) == pytest.approx(0.5, abs=1e-4)  # 1 - sigmoid(0)
    h.run(5)
    assert mean_nll(h.model, forget) > start + 0.05


def test_kto_zero_reference_point_without_retain():
    method = KTO(retain_weight=0.0, reference_point="zero")
    assert not method.needs_retain and method.reference_splits == ("forget",)
    h = Harness(method)
    loss, logs = h.step()
    assert "retain_loss" not in logs and loss == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("section", [{"name": "dpo", "beta": 0.0}, {"name": "idk_dpo", "beta": -1.0},
                                     {"name": "kto", "beta": 0.0}])
def test_bad_beta(section):
    with pytest.raises(UserError, match=r"method\.beta=-?[0-9.]+: must be > 0 for method"):
        make(METHODS, section, "method")
