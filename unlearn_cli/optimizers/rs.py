"""Randomized smoothing of the forget term (SMOOTH, arXiv 2502.05374), around any base optimizer."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.bounds import PositiveFloat, PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._forget_smoothing import ForgetSmoothing
from unlearn_cli.optimizers._wrapping import gradient_base
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import OPTIMIZERS


class RSOptimizer(ForgetSmoothing):
    """One step: ``g_f = (1/n) sum_i grad L_f(theta + delta_i)``, ``delta_i ~ N(0, sigma^2 I)`` drawn anew (torch's
    RNG, restored on resume); ``g_r = grad L_r(theta)``; the base optimizer steps on ``g_f + g_r``."""

    name = "rs"

    def update(self, closure):
        g_forget, losses = [None] * len(self.params), []
        for _ in range(self.samples):
            noise = [torch.randn(p.shape, device=p.device, dtype=torch.float32) * self.sigma for p in self.params]
            grads, loss = self.forget_gradient_at(closure, noise, clip=False)
            losses.append(loss)
            for i, g in enumerate(grads):
                if g is not None:
                    g_forget[i] = g / self.samples if g_forget[i] is None else g_forget[i].add_(g / self.samples)
        return self.finish(closure, g_forget, sum(losses) / len(losses))


@OPTIMIZERS.register("rs")
class RS(OptimizerSpec):
    """Randomized smoothing of the forget term (SMOOTH, Fan et al. 2025, arXiv 2502.05374, its RS variant):
    descend ``E_delta L_f(theta + delta) + lambda L_r(theta)`` with ``delta ~ N(0, sigma^2 I)``, estimated per step by
    ``samples`` independent draws: ``g_f = (1/n) sum_i grad L_f(theta + delta_i)``, ``g_r`` at theta, ``base`` steps
    on ``g_f + g_r``. SMOOTH's WMDP NPO values: sigma 1e-4, n 3. ``n + 1`` forward/backward passes per step.
    Named deviation: SMOOTH's trainer steps the optimizer twice per step (once on zeroed gradients, so AdamW moves
    again by momentum); here it steps once, on the sum ``g_f + g_r`` clipped once to ``unlearn.max_grad_norm``. The
    logged forget loss is the mean over the noisy draws."""

    first_order = False

    def __init__(self, base: Optional[OptimizerSpec] = None, sigma: PositiveFloat = 1e-4, samples: PositiveInt = 3):
        self.base = gradient_base(base if base is not None else AdamW(), "rs")
        self.sigma, self.samples = sigma, samples

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return RSOptimizer(params, self.base.build(params, lr), sigma=self.sigma, samples=self.samples)
