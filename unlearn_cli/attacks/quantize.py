"""Weight quantization attack (arXiv 2410.16454): round the unlearned weights to a low-bit grid, then re-evaluate."""

from __future__ import annotations

import re
import tempfile
from typing import Annotated, List, Literal

import torch

from unlearn_cli.bounds import PositiveInt, Range
from unlearn_cli.contracts import Attack
from unlearn_cli.errors import UserError
from unlearn_cli.registry import ATTACKS

Bits = Annotated[int, Range(2, 8)]  # 1 bit has no symmetric grid; above 8 nothing is lost


def round_to_nearest(w: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """``w`` ([rows, cols]) on a ``bits``-bit grid with one scale per row, in ``w``'s dtype.

    Symmetric (absmax): ``s = max|w_row| / q``, ``q = 2^(bits-1) - 1``, ``w_hat = s * clamp(round(w / s), -q, q)``.
    Asymmetric (min-max with a zero point): ``s = (max - min) / (2^bits - 1)``, ``z = round(-min / s)``,
    ``w_hat = s * (clamp(round(w / s) + z, 0, 2^bits - 1) - z)``. A row of zeros stays zero."""
    x = w.float()
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = x.abs().amax(dim=1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (torch.clamp(torch.round(x / scale), -qmax, qmax) * scale).to(w.dtype)
    levels = 2 ** bits - 1
    lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale)
    return ((torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale).to(w.dtype)


def quantize_weight(w: torch.Tensor, bits: int, granularity: str, group_size: int, symmetric: bool) -> torch.Tensor:
    """A linear layer's weight ``[out, in]`` quantized per ``tensor`` (one scale), per ``channel`` (one per output
    row) or per ``group`` (one per row and run of ``group_size`` input columns; the last run may be shorter)."""
    if granularity == "tensor":
        return round_to_nearest(w.reshape(1, -1), bits, symmetric).reshape(w.shape)
    if granularity == "channel":
        return round_to_nearest(w, bits, symmetric)
    return torch.cat([round_to_nearest(chunk, bits, symmetric) for chunk in w.split(group_size, dim=1)], dim=1)


@ATTACKS.register("quantize")
class Quantize(Attack):
    """Quantization attack (Zhang et al. 2024, "Catastrophic failure of LLM unlearning via quantization",
    arXiv 2410.16454): unlearning moves weights by less than a quantization bin, so rounding the unlearned model
    to a low-bit grid can round it back towards the target and restore forgotten knowledge; the paper finds
    4-bit recovers far more than 8-bit. The attacked model is then evaluated like every stage.

    ``backend: rtn`` (any device, exact): round-to-nearest of every ``nn.Linear`` weight whose module name does
    not match an ``exclude`` pattern (default ``lm_head``; embeddings, norms and biases stay), ``bits`` 2-8, per
    ``channel`` (default), ``group`` (``group_size`` input columns, as GPTQ / AWQ group) or ``tensor``,
    ``symmetric`` absmax or asymmetric min-max with a zero point (equations in :func:`round_to_nearest`). The
    weights keep their dtype and hold the dequantized grid values (fake quantization: the same numbers a
    low-bit kernel computes with, up to its accumulation order).
    ``backend: bitsandbytes`` (CUDA only; ``pip install 'unlearn_cli[quant]'``): the paper's protocol -- the
    unlearned model is saved and reloaded through ``transformers`` with ``BitsAndBytesConfig``, ``bits 8`` as
    LLM.int8 and ``bits 4`` as 4-bit ``bnb_4bit_type`` (``fp4``, the library default the paper used, or
    ``nf4``) with bf16 compute. Report recovery per bit width with one instance per width
    (``+attack.quantize_int8={name: quantize, bits: 8}``)."""

    def __init__(self, bits: Bits = 4, granularity: Literal["channel", "group", "tensor"] = "channel",
                 group_size: PositiveInt = 128, symmetric: bool = True,
                 backend: Literal["rtn", "bitsandbytes"] = "rtn", bnb_4bit_type: Literal["fp4", "nf4"] = "fp4",
                 exclude: List[str] = ("lm_head",)):
        if backend == "bitsandbytes" and bits not in (4, 8):
            raise UserError(f"attack quantize: backend bitsandbytes quantizes to 8 or 4 bits, not bits={bits}")
        self.bits, self.granularity, self.group_size, self.symmetric = bits, granularity, group_size, symmetric
        self.backend, self.bnb_4bit_type, self.exclude = backend, bnb_4bit_type, list(exclude)

    def check(self, device) -> None:
        if self.backend != "bitsandbytes":
            return
        if device.type != "cuda":
            raise UserError(f"attack quantize: backend bitsandbytes needs CUDA and this run is on {device.type}; "
                            f"use backend=rtn (exact round-to-nearest on any device)")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError("attack quantize: backend bitsandbytes is not installed; "
                            "pip install 'unlearn_cli[quant]'") from None

    def targets(self, model) -> List[torch.nn.Linear]:
        """The linear layers this attack quantizes, in module order."""
        return [m for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and not any(re.search(p, name) for p in self.exclude)]

    @torch.no_grad()
    def apply(self, ctx, model):
        if self.backend == "bitsandbytes":
            return self._bitsandbytes(model, ctx), None
        layers = self.targets(model)
        if not layers:
            raise UserError(f"attack quantize: no linear layer is left to quantize after exclude={self.exclude}")
        changed, total, moved = 0, 0, 0.0
        for layer in layers:
            w = layer.weight
            q = quantize_weight(w, self.bits, self.granularity, self.group_size, self.symmetric)
            changed += int((q != w).sum())
            total += w.numel()
            moved += float((q.float() - w.float()).abs().sum())
            w.copy_(q)
        ctx.log(ctx.stage, 0, {"quantized_layers": float(len(layers)), "changed_fraction": changed / total,
                               "mean_abs_change": moved / total})
        return model, None

    def _bitsandbytes(self, model, ctx):
        from transformers import BitsAndBytesConfig

        if self.bits == 8:
            config = BitsAndBytesConfig(load_in_8bit=True)
        else:
            config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=self.bnb_4bit_type,
                                        bnb_4bit_compute_dtype=torch.bfloat16)
        with tempfile.TemporaryDirectory(prefix="unlearn-quantize-") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            quantized = type(model).from_pretrained(tmp, quantization_config=config, dtype=torch.bfloat16,
                                                    device_map={"": ctx.device})
        quantized.eval()
        return quantized
