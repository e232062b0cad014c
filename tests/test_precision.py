"""One precision policy: a model loaded in bf16 trains on fp32 master weights under bf16 autocast (as DeepSpeed's
bf16 mode does); pure bf16 updates only when asked."""

import pytest
import torch

from _method_fixtures import Harness, tiny_model
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.train.settings import weight_regime

LR = 1e-5  # the papers' unlearning rate: far below bf16's resolution of most weights


def _one_step(model, precision):
    h = Harness(GradientAscent(), model=model, lr=LR, precision=precision)
    start = {n: p.detach().float().clone() for n, p in h.model.named_parameters()}
    h.step({"forget": h.full("forget")})
    moved = sum(int((p.detach().float() != start[n]).sum()) for n, p in h.model.named_parameters())
    total = sum(p.numel() for p in h.model.parameters())
    displacement = sum(float((p.detach().float() - start[n]).norm() ** 2) for n, p in h.model.named_parameters())
    return h, moved / total, displacement ** 0.5


def test_a_bf16_model_steps_like_its_fp32_master_copy():
    loaded = tiny_model().to(torch.bfloat16)  # what a real preset's dtype: bfloat16 loads
    master = tiny_model().to(torch.bfloat16).float()  # the same values held in fp32 from the start
    h, moved, shift = _one_step(loaded, "bf16")
    _, moved_ref, shift_ref = _one_step(master, "bf16")
    assert all(p.dtype == torch.float32 for p in h.model.parameters())
    assert h.u.regime == "fp32 master weights, bf16 autocast (upcast from the loaded low-precision weights)"
    assert moved == pytest.approx(moved_ref) and shift == pytest.approx(shift_ref, rel=1e-6)
    assert moved > 0.9  # AdamW's first step moves (almost) every weight by ~lr


def test_pure_bf16_only_when_asked_and_most_updates_round_away():
    _, moved_mixed, shift_mixed = _one_step(tiny_model().to(torch.bfloat16), "bf16")
    h, moved_pure, shift_pure = _one_step(tiny_model().to(torch.bfloat16), "bf16_pure")
    assert all(p.dtype == torch.bfloat16 for p in h.model.parameters())
    assert h.u.regime.startswith("bf16 weights updated in bf16")
    assert moved_pure < 0.5 * moved_mixed and shift_pure < 0.5 * shift_mixed


def test_fp32_weights_stay_untouched_by_the_policy():
    model = tiny_model()
    before = [p.data_ptr() for p in model.parameters()]
    assert weight_regime(model, "bf16") == "fp32 master weights, bf16 autocast"
    assert [p.data_ptr() for p in model.parameters()] == before
