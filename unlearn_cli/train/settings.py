"""Loop hyperparameters and what follows from them: step count, learning-rate schedule, autocast."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch


@dataclass
class TrainSettings:
    """Loop hyperparameters (the ``unlearn`` section, the ``prepare`` section, attack budgets).

    ``steps`` wins over ``epochs``; an epoch is one pass over the first (primary) data split.
    """

    lr: float = 1e-5
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch_size: int = 32
    retain_batch_size: int = 32
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: Optional[float] = 1.0
    precision: Literal["fp32", "bf16"] = "bf16"
    log_every: int = 1


def autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument context factory: bf16 autocast, or a no-op for fp32."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def total_steps(settings: TrainSettings, primary_size: int, batch_size: int) -> int:
    if settings.steps is not None:
        return int(settings.steps)
    if settings.epochs is None:
        raise ValueError("set steps or epochs")
    per_epoch = math.ceil(primary_size / (batch_size * settings.grad_accum))
    return max(1, math.ceil(settings.epochs * per_epoch))


def lr_lambda(settings: TrainSettings, steps: int) -> Callable[[int], float]:
    """Linear warm-up then constant / linear / cosine decay to ``min_lr_ratio``."""
    warm, floor = settings.warmup_steps, settings.min_lr_ratio

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


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings, steps))
