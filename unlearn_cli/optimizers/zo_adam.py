"""Zeroth-order Adam: the SPSA estimate fed into Adam's moments."""

from __future__ import annotations

from typing import Tuple

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers import _zo
from unlearn_cli.optimizers._steps import adam_direction, decay
from unlearn_cli.registry import OPTIMIZERS


class ZOAdamOptimizer(torch.optim.Optimizer):
    """AdamW whose gradient is the two-point estimate ``g_hat`` of ``optimizers/_zo.py`` (materialised one tensor at a
    time; the moments are the only parameter-sized state, as in any Adam)."""

    def __init__(self, params, lr: float, mu: float = 1e-3, queries: int = 1, seed: int = 0,
                 betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, mu=mu, queries=queries, seed=seed, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, step=0))

    @torch.no_grad()
    def step(self, closure=None):
        losses = []
        for group, params, est in _zo.group_estimates(self, closure, "zo_adam"):
            for index, p in enumerate(params):
                update = adam_direction(self.state[p], est.gradient(index), group["betas"], group["eps"])
                decay(p, group)
                p.add_(update.to(p.dtype), alpha=-group["lr"])
            losses.append(est.loss)
        return torch.tensor(sum(losses) / len(losses))


@OPTIMIZERS.register("zo_adam")
class ZOAdam(OptimizerSpec):
    """Zeroth-order Adam (arXiv 2510.00761 lists ZO variants without code; which one it ran is not published):
    the MeZO two-point estimate ``g_hat`` (see ``zo_sgd``) replaces the gradient in AdamW's moments,
    with bias correction and decoupled weight decay. Memory: inference plus Adam's two moments."""

    first_order = False

    def __init__(self, mu: PositiveFloat = 1e-3, queries: PositiveInt = 1, seed: NonNegativeInt = 0,
                 betas: Tuple[Beta, Beta] = (0.9, 0.999), eps: PositiveFloat = 1e-8,
                 weight_decay: NonNegativeFloat = 0.0):
        self.mu, self.queries, self.seed = mu, queries, seed
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return ZOAdamOptimizer(params, lr, self.mu, self.queries, self.seed, self.betas, self.eps, self.weight_decay)
