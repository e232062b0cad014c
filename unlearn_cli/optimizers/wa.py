"""Weight averaging of the unlearning trajectory (SMOOTH's WA variant, arXiv 2502.05374), around any optimizer."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.errors import UserError
from unlearn_cli.optimizers._wrapping import Wrapper
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import OPTIMIZERS


class WAOptimizer(Wrapper):
    """``base.step(closure)``; after update ``t`` (1-based) with ``t >= start`` and ``(t - start) % every == 0`` the
    running uniform average ``a <- a + (theta - a) / n`` takes the weights in (fp32, one copy of the trainable
    weights, saved with the optimizer state); :meth:`finish_training` copies ``a`` into the weights."""

    def __init__(self, params, base: torch.optim.Optimizer, start: int, every: int):
        super().__init__(params, base, dict(start=start, every=every))
        self.start, self.every = start, every
        self.updates, self.snapshots = 0, 0
        self.average = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.base.step(closure)
        self.updates += 1
        if self.updates >= self.start and (self.updates - self.start) % self.every == 0:
            self.snapshots += 1
            if self.average is None:
                self.average = [p.detach().float().clone() for p in self.params]
            else:
                for a, p in zip(self.average, self.params):
                    a.add_(p.detach().float() - a, alpha=1.0 / self.snapshots)
        if closure is not None:
            closure.logs["wa_snapshots"] = torch.tensor(float(self.snapshots))
        return loss

    @torch.no_grad()
    def finish_training(self) -> None:
        """The average becomes the weights (what the run evaluates, attacks and saves)."""
        if self.average is not None:
            for a, p in zip(self.average, self.params):
                p.copy_(a.to(p.dtype))

    def own_state(self) -> dict:
        return {"updates": self.updates, "snapshots": self.snapshots, "average": self.average}

    def load_own_state(self, state: dict) -> None:
        self.updates, self.snapshots = state.get("updates", 0), state.get("snapshots", 0)
        average = state.get("average")
        self.average = None if average is None else [a.to(p.device) for a, p in zip(average, self.params)]


@OPTIMIZERS.register("wa")
class WA(OptimizerSpec):
    """Weight averaging (SMOOTH, Fan et al. 2025, arXiv 2502.05374, its ``WeightAveragingCallback``): a uniform
    average of the weights after update ``start`` and every ``every`` updates after it (with SMOOTH's WMDP NPO
    values 100 / 5 over 125 steps: the snapshots of steps 100, 105, ..., 125), loaded into the model when
    unlearning ends, so the average is what is evaluated, attacked and saved. Averaging flattens the solution the
    way stochastic weight averaging does. ``base`` is any optimizer (``optimizer.base.name=sam`` averages a SAM
    run). Deviation: only trainable weights are averaged (frozen ones never change, so the result is the same as
    SMOOTH's full state-dict average); the average is kept in fp32. A run with fewer steps than ``start`` is
    refused before it trains."""

    first_order = False

    def __init__(self, base: Optional[OptimizerSpec] = None, start: PositiveInt = 100, every: PositiveInt = 5):
        self.base = base if base is not None else AdamW()
        self.start, self.every = start, every

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return WAOptimizer(params, self.base.build(params, lr), self.start, self.every)

    def check_steps(self, steps: int) -> None:
        if self.start > steps:
            raise UserError(f"optimizer.start={self.start}: weight averaging would start after the run's last step "
                            f"({steps} steps); set optimizer.start <= {steps}")
        self.base.check_steps(steps)
