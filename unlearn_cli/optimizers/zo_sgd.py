"""Zeroth-order SGD (MeZO-style SPSA)."""

from __future__ import annotations

import torch

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers import _zo
from unlearn_cli.optimizers._steps import decay
from unlearn_cli.registry import OPTIMIZERS


class ZOSGDOptimizer(torch.optim.Optimizer):
    """``theta <- theta * (1 - lr * wd) - lr * g_hat`` with the two-point estimate of ``optimizers/_zo.py``,
    applied direction by direction (regenerated from its seed: no parameter-sized copy is kept)."""

    def __init__(self, params, lr: float, mu: float = 1e-3, queries: int = 1, seed: int = 0,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, mu=mu, queries=queries, seed=seed, weight_decay=weight_decay, step=0))

    @torch.no_grad()
    def step(self, closure=None):
        losses = []
        for group, params, est in _zo.group_estimates(self, closure, "zo_sgd"):
            for p in params:
                decay(p, group)
            for seed, proj in zip(est.seeds, est.projections):  # theta -= lr/q * proj_i * u_i, one u_i at a time
                _zo.perturb(params, seed, -group["lr"] * proj / len(est.seeds))
            losses.append(est.loss)
        return torch.tensor(sum(losses) / len(losses))


@OPTIMIZERS.register("zo_sgd")
class ZOSGD(OptimizerSpec):
    """Zeroth-order SGD (arXiv 2510.00761's lowest "grade"; estimator of MeZO, Malladi et al. 2023): forward
    passes only, ``g_hat = (1/q) sum_i (L(theta + mu u_i) - L(theta - mu u_i)) / (2 mu) u_i`` with Gaussian
    ``u_i``, ``theta <- theta - lr * g_hat``. ``queries`` = q, ``mu`` the smoothing radius, ``seed`` seeds the
    directions (with the step number: a resumed run replays them). Memory is inference's. Defaults (q 1, mu 1e-3)
    are MeZO's; the paper publishes none. The logged loss is the mean of the 2q evaluations."""

    first_order = False

    def __init__(self, mu: PositiveFloat = 1e-3, queries: PositiveInt = 1, seed: NonNegativeInt = 0,
                 weight_decay: NonNegativeFloat = 0.0):
        self.mu, self.queries, self.seed, self.weight_decay = mu, queries, seed, weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return ZOSGDOptimizer(params, lr, self.mu, self.queries, self.seed, self.weight_decay)
