"""``eval.multinomial_draw``: the rows of ``torch.multinomial(P, 1)`` from the same generator stream, computed
from ``uniform_`` and ``q`` only where it can decide the argmax; the generator ends where multinomial leaves it."""

from __future__ import annotations

import math

import pytest
import torch

from unlearn_cli.eval import multinomial_draw as md


def _probs(rows: int, vocab: int, keep: int, seed: int) -> torch.Tensor:
    """Rows of a softmax after a top-``keep`` cut (``keep=0``: every entry positive)."""
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3
    if keep:
        cut = logits.topk(keep, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < cut, float("-inf"))
    return torch.softmax(logits, dim=-1)


def test_exponential_is_minus_log1p_of_the_uniform_on_this_torch():
    assert md.exact_on_cpu()  # else the sparse path is never taken: the tests below would test nothing new


@pytest.mark.parametrize("keep", [1, 20, 200])
def test_draw_equals_multinomial_rows_and_leaves_the_generator_where_it_does(keep, monkeypatch):
    monkeypatch.setattr(md, "dense", lambda *a: pytest.fail("the sparse path was not taken"))
    for seed in range(25):
        full = _probs(9, 1000, keep, seed)
        rows = torch.tensor([0, 2, 3, 7, 8]) if seed % 2 else torch.arange(9)
        torch.manual_seed(seed)
        expected = torch.multinomial(full, 1).squeeze(1)[rows]
        after = torch.rand(3)
        torch.manual_seed(seed)
        got = md.draw(full[rows], rows, 9)
        assert torch.equal(got, expected)
        assert torch.equal(torch.rand(3), after)


def test_dense_rows_and_other_devices_take_exponential_over_the_whole_batch(monkeypatch):
    full = _probs(4, 1000, 0, 1)  # every entry positive: over the sparse fraction
    calls = []
    real = md.dense
    monkeypatch.setattr(md, "dense", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(3)
    expected = torch.multinomial(full, 1).squeeze(1)
    torch.manual_seed(3)
    assert torch.equal(md.draw(full, torch.arange(4), 4), expected) and calls


def test_a_uniform_of_exactly_zero_ranks_as_multinomials_nan_and_inf_do(monkeypatch):
    """``q = 0`` makes ``p / q`` ``nan`` where ``p = 0`` and ``inf`` where ``p > 0``; argmax ranks ``nan`` first.
    The uniforms are planted to check that the sparse path reproduces both (a real zero comes once in 2^53)."""
    probs = _probs(3, 50, 5, 7)
    u = torch.rand(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zero_p = (probs[0] == 0).nonzero().flatten()[3]
    pos_p = (probs[1] > 0).nonzero().flatten()[-1]
    u[0, zero_p] = u[1, pos_p] = 0.0

    monkeypatch.setattr(md, "uniforms", lambda rows, vocabulary: u.clone())
    got = md.draw(probs, torch.arange(3), 3)
    q = torch.tensor([[-math.log1p(-x) for x in row] for row in u.tolist()], dtype=torch.float64).float()  # dense
    assert torch.equal(got, (probs / q).argmax(-1))
    assert got[0] == zero_p and got[1] == pos_p
