"""Loss functions against values computed by hand (explicit formulas, independent of the code)."""

import math

import pytest
import torch

from unlearn_cli import losses
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.methods.graddiff import GradDiff
from unlearn_cli.methods.npo import NPO
from unlearn_cli.methods.simnpo import SimNPO

# two sequences, vocab 3; position 0 is the prompt, labels at positions 1..2
LOGITS = torch.tensor([
    [[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]],
])
LABELS = torch.tensor([[-100, 2, 0], [-100, 1, -100]])


def logsoftmax(row, j):
    return row[j] - math.log(sum(math.exp(v) for v in row))


# hand: seq 0 predicts token 2 from position 0 logits and token 0 from position 1 logits
NLL_00 = -logsoftmax([0.0, 1.0, 2.0], 2)
NLL_01 = -logsoftmax([1.0, 0.0, 0.0], 0)
NLL_10 = -logsoftmax([2.0, 0.0, 0.0], 1)
SEQ = [NLL_00 + NLL_01, NLL_10]
COUNT = [2, 1]


def test_sequence_nll_and_mean_token_nll():
    s, c = losses.sequence_nll(LOGITS, LABELS)
    assert s.tolist() == pytest.approx(SEQ, rel=1e-6)
    assert c.tolist() == COUNT
    assert float(losses.mean_token_nll(LOGITS, LABELS)) == pytest.approx(sum(SEQ) / 3, rel=1e-6)


def test_npo_loss_formula_and_value_at_reference():
    nll = torch.tensor([3.0, 1.0])
    ref = torch.tensor([2.0, 2.0])
    beta = 0.5
    expected = (2 / beta) * (math.log(1 + math.exp(-beta * 1.0)) + math.log(1 + math.exp(-beta * -1.0))) / 2
    assert float(losses.npo_loss(nll, ref, beta)) == pytest.approx(expected, rel=1e-6)
    # at theta = theta_0 the loss is (2/beta) log 2
    assert float(losses.npo_loss(ref, ref, 0.1)) == pytest.approx(20 * math.log(2), rel=1e-6)


def test_simnpo_loss_formula():
    mean_nll = torch.tensor([0.5, 2.0])
    beta, gamma = 2.5, 0.2
    expected = (2 / beta) * sum(math.log(1 + math.exp(-beta * (x - gamma))) for x in (0.5, 2.0)) / 2
    assert float(losses.simnpo_loss(mean_nll, beta, gamma)) == pytest.approx(expected, rel=1e-6)


def test_forward_kl_against_hand_value():
    ref = torch.tensor([[[0.0, math.log(3.0)]]])   # p_ref = (1/4, 3/4)
    cur = torch.tensor([[[0.0, 0.0]]])             # p = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(losses.forward_kl(ref, cur)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.forward_kl(cur, cur)) == pytest.approx(0.0, abs=1e-7)


class FixedLogits(torch.nn.Module):
    """A stand-in model whose logits for each batch are fixed by a lookup on the first token id."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None):
        out = torch.stack([self.table[int(row[0])] for row in input_ids]) + self.dummy

        class O:
            logits = out
        return O


def _batch(first_token, labels):
    ids = torch.full(labels.shape, 0)
    ids[:, 0] = first_token
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "index": torch.arange(labels.shape[0])}


MODEL = FixedLogits({7: LOGITS[0], 8: LOGITS[1]})
FORGET = _batch(torch.tensor([7, 8]), LABELS)
RETAIN = _batch(torch.tensor([8]), torch.tensor([[-100, 0, 2]]))
RETAIN_NLL = (-logsoftmax([2.0, 0.0, 0.0], 0) - logsoftmax([0.0, 3.0, 0.0], 2)) / 2


class CachedReference:
    def sequence_nll(self, split, batch):
        return torch.tensor([1.0, 0.5])[batch["index"]]


def test_ga_and_graddiff_losses():
    terms, _ = GradientAscent().loss(MODEL, {"forget": FORGET})
    assert set(terms) == {"forget"} and terms["forget"].item() == pytest.approx(-sum(SEQ) / 3, rel=1e-6)
    terms, _ = GradDiff(forget_weight=1.0, retain_weight=0.5).loss(MODEL, {"forget": FORGET, "retain": RETAIN})
    assert terms["forget"].item() == pytest.approx(-sum(SEQ) / 3, rel=1e-6)
    assert terms["retain"].item() == pytest.approx(0.5 * RETAIN_NLL, rel=1e-6)
    assert not GradDiff(retain_weight=0.0).needs_retain  # lambda = 0 is plain GA: no retain batch


def test_npo_method_uses_summed_nll_and_cached_reference():
    beta = 0.1
    r = [SEQ[0] - 1.0, SEQ[1] - 0.5]
    forget = (2 / beta) * sum(math.log(1 + math.exp(-beta * x)) for x in r) / 2
    terms, _ = NPO(beta=beta, retain_weight=2.0).loss(MODEL, {"forget": FORGET, "retain": RETAIN}, CachedReference())
    assert terms["forget"].item() == pytest.approx(forget, rel=1e-6)
    assert terms["retain"].item() == pytest.approx(2.0 * RETAIN_NLL, rel=1e-6)
    terms, _ = NPO(beta=beta, retain_weight=0.0).loss(MODEL, {"forget": FORGET}, CachedReference())
    assert set(terms) == {"forget"} and terms["forget"].item() == pytest.approx(forget, rel=1e-6)


def test_simnpo_method_is_length_normalised():
    beta, gamma = 2.5, 0.0
    means = [SEQ[0] / 2, SEQ[1] / 1]
    forget = (2 / beta) * sum(math.log(1 + math.exp(-beta * (x - gamma))) for x in means) / 2
    terms, _ = SimNPO(beta=beta, gamma=gamma, forget_weight=0.5, retain_weight=1.0).loss(
        MODEL, {"forget": FORGET, "retain": RETAIN})
    assert terms["forget"].item() == pytest.approx(0.5 * forget, rel=1e-6)
    assert terms["retain"].item() == pytest.approx(RETAIN_NLL, rel=1e-6)
