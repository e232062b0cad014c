"""Loop hyperparameters and what follows from them: step count, learning-rate schedule, autocast."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch

from unlearn_cli.errors import UserError
from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability


@dataclass
class TrainSettings:
    """Loop hyperparameters (the ``unlearn`` section, the ``prepare`` section, attack budgets).

    ``steps`` wins over ``epochs``; an epoch is one pass over the first (primary) data split.
    The linear warm-up lasts ``warmup_steps`` optimizer steps, or ``warmup_epochs`` epochs of the
    run's own data (TOFU: one epoch, whatever the forget split's size).
    ``precision``: ``fp32``; ``bf16`` = fp32 master weights with bf16 autocast (a model loaded in
    bf16 is upcast before training, as DeepSpeed keeps fp32 masters); ``bf16_pure`` = bf16 weights
    updated in bf16 (what the official RMU code does; most updates below the bf16 ulp round away).
    """

    lr: PositiveFloat = 1e-5
    steps: Optional[PositiveInt] = None
    epochs: Optional[PositiveFloat] = None
    batch_size: PositiveInt = 32
    retain_batch_size: PositiveInt = 32
    grad_accum: PositiveInt = 1
    warmup_steps: NonNegativeInt = 0
    warmup_epochs: Optional[NonNegativeFloat] = None
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: Probability = 0.0
    max_grad_norm: Optional[PositiveFloat] = 1.0
    precision: Literal["fp32", "bf16", "bf16_pure"] = "bf16"
    log_every: PositiveInt = 1

    def __post_init__(self):
        if self.warmup_epochs is not None and self.warmup_steps:
            raise UserError("set warmup_steps or warmup_epochs, not both (the other to 0 / null)")


def autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument context factory: bf16 autocast for ``bf16``, a no-op for ``fp32`` and ``bf16_pure``
    (whose weights are bf16 already)."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


LOW_PRECISION = (torch.bfloat16, torch.float16)


def weight_regime(model, precision: str) -> str:
    """Put ``model``'s weights in ``precision``'s regime before its optimizer is built; returns the regime
    in words (provenance). ``fp32`` / ``bf16``: weights in fp32 (a model loaded in bf16/fp16 is upcast:
    the optimizer then updates fp32 masters), ``bf16_pure``: weights cast to bf16."""
    if precision == "bf16_pure":
        model.to(torch.bfloat16)
        return "bf16 weights updated in bf16 (no fp32 master copy)"
    upcast = any(p.dtype in LOW_PRECISION for p in model.parameters())
    if upcast:
        model.float()
    note = " (upcast from the loaded low-precision weights)" if upcast else ""
    return ("fp32 master weights, bf16 autocast" if precision == "bf16" else "fp32") + note


def steps_per_epoch(settings: TrainSettings, primary_size: int, batch_size: int) -> int:
    """Optimizer steps of one pass over ``primary_size`` examples (batches of ``batch_size`` x accumulation)."""
    return math.ceil(primary_size / (batch_size * settings.grad_accum))


def total_steps(settings: TrainSettings, primary_size: int, batch_size: int) -> int:
    if settings.steps is not None:
        return int(settings.steps)
    if settings.epochs is None:
        raise ValueError("set steps or epochs")
    return max(1, math.ceil(settings.epochs * steps_per_epoch(settings, primary_size, batch_size)))


def warmup_steps(settings: TrainSettings, per_epoch: Optional[int] = None) -> int:
    """The warm-up length in optimizer steps (``warmup_epochs`` needs the run's ``per_epoch``)."""
    if settings.warmup_epochs is None:
        return settings.warmup_steps
    if per_epoch is None:
        raise ValueError("warmup_epochs needs the number of steps per epoch")
    return int(round(settings.warmup_epochs * per_epoch))


def lr_lambda(settings: TrainSettings, steps: int, warm: int) -> Callable[[int], float]:
    """Linear warm-up over ``warm`` steps, then constant / linear / cosine decay to ``min_lr_ratio``."""
    floor = settings.min_lr_ratio

    def fn(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if settings.schedule == "constant":
            return 1.0
        progress_ = (step - warm) / max(1, steps - warm)
        if settings.schedule == "linear":
            return floor + (1 - floor) * max(0.0, 1 - progress_)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return fn


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps: int,
                   per_epoch: Optional[int] = None):
    """The learning-rate schedule of ``steps`` steps (``per_epoch``: steps per epoch, for ``warmup_epochs``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings, steps, warmup_steps(settings, per_epoch)))
