"""The quantization attack: every quantized weight on its grid (checked against the grid computed from the original
weights), a hand-worked example, fewer bits moving the weights further, what is left alone, and the refusals of
the bitsandbytes backend off CUDA."""

from __future__ import annotations

import pytest
import torch

from _method_fixtures import CPU, data_and_tokenizer, tiny_model
from conftest import run_cli
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.attacks.quantize import quantize_weight, round_to_nearest
from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.registry import ATTACKS


def test_round_to_nearest_by_hand():
    w = torch.tensor([[0.3, -0.9, 0.5, 0.0]])
    # 2-bit symmetric: q = 1 level each side, s = 0.9: round([0.33, -1, 0.56, 0]) = [0, -1, 1, 0]
    assert round_to_nearest(w, 2, True)[0].tolist() == pytest.approx([0.0, -0.9, 0.9, 0.0])
    # 2-bit min-max: s = 1.4 / 3, z = round(0.9 / s) = 2; round(w / s) + z = [3, 0, 3, 2] -> (k - z) s
    s = 1.4 / 3
    assert round_to_nearest(w, 2, False)[0].tolist() == pytest.approx([s, -2 * s, s, 0.0], rel=1e-6)
    assert round_to_nearest(torch.zeros(2, 3), 4, True).tolist() == [[0.0] * 3] * 2


@pytest.mark.parametrize("granularity", ["channel", "group", "tensor"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [4, 8])
def test_every_quantized_weight_lies_on_the_grid_of_its_scale(granularity, symmetric, bits):
    """For each block sharing one scale (a row, a row's run of 16 columns -- the last only 8 --, or the tensor):
    the grid from the *original* block's range; the result is an integer multiple of the step within range, and
    the nearest grid point (within half a step; a clamped end point within one)."""
    w = torch.randn(6, 40, generator=torch.Generator().manual_seed(bits))
    q = quantize_weight(w, bits, granularity, 16, symmetric)
    if granularity == "tensor":
        blocks = [(w.reshape(1, -1), q.reshape(1, -1))]
    elif granularity == "channel":
        blocks = [(w, q)]
    else:
        blocks = list(zip(w.split(16, dim=1), q.split(16, dim=1)))
        assert [b.shape[1] for b, _ in blocks] == [16, 16, 8]
    for wb, qb in blocks:
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            step = wb.abs().amax(dim=1, keepdim=True) / qmax
            k = qb / step
            lo, hi = -qmax, qmax
        else:
            levels = 2 ** bits - 1
            step = (wb.amax(dim=1, keepdim=True) - wb.amin(dim=1, keepdim=True)) / levels
            zero = torch.round(-wb.amin(dim=1, keepdim=True) / step)
            k = qb / step + zero
            lo, hi = 0, levels
        assert torch.allclose(k, k.round(), atol=1e-3), (granularity, symmetric, bits)
        assert k.round().min() >= lo and k.round().max() <= hi
        assert ((qb - wb).abs() <= step * (0.5 if symmetric else 1.0) + 1e-6).all()


def _ctx(logged):
    _, tok = data_and_tokenizer()
    return AttackContext({}, tok, 0, tok.pad_token_id, CPU, lambda stage, step, values: logged.append(values),
                         "quantize")


def test_quantize_moves_linear_weights_onto_the_grid_and_int4_further_than_int8():
    """On the tiny Llama: every decoder linear weight changes and matches its own per-channel quantization; lm_head,
    embeddings and norms are left; int4 moves the weights about 16x further than int8 (one bin is 2^4 times wider)."""
    changes = {}
    for bits in (8, 4):
        model, logged = tiny_model(), []
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        attack = make(ATTACKS, {"name": "quantize", "bits": bits}, "attack.quantize")
        out, view = attack.apply(_ctx(logged), model)
        assert out is model and view is None
        linears = {f"{n}.weight" for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
        assert len(linears) >= 7 * 3
        for name, p in model.named_parameters():
            if name in linears:
                assert torch.equal(p, quantize_weight(before[name], bits, "channel", 128, True)), name
                assert not torch.equal(p, before[name]), name
            else:  # embeddings (and a tied lm_head), norms
                assert torch.equal(p, before[name]), name
        changes[bits] = logged[0]["mean_abs_change"]
        assert logged[0]["changed_fraction"] > 0.9 and logged[0]["quantized_layers"] == len(linears)
    assert 8 < changes[4] / changes[8] < 32, changes


def test_bitsandbytes_refuses_anything_but_cuda_and_eight_or_four_bits():
    attack = make(ATTACKS, {"name": "quantize", "backend": "bitsandbytes", "bits": 8}, "attack.quantize")
    with pytest.raises(UserError, match=r"^attack quantize: backend bitsandbytes needs CUDA and this run is on cpu"):
        attack.check(CPU)
    with pytest.raises(UserError, match="8 or 4 bits, not bits=3"):
        make(ATTACKS, {"name": "quantize", "backend": "bitsandbytes", "bits": 3}, "attack.quantize")


def test_a_bitsandbytes_attack_on_a_cpu_run_fails_before_anything_runs(cache_dir, tmp_path):
    proc = run_cli(["run", "attack=[quantize]", "attack.quantize.backend=bitsandbytes", "progress=false",
                    "output_dir=run"], tmp_path, cache_dir, expect_ok=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "needs CUDA" in lines[0], proc.stderr
    assert not (tmp_path / "run" / "stages").exists() or not any((tmp_path / "run" / "stages").iterdir())
