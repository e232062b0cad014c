"""Gradient-norm penalty on the forget term (SMOOTH's GP variant, arXiv 2502.05374), around any first-order base."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.bounds import PositiveFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._forget_smoothing import ForgetSmoothing, double_backprop, global_norm, gradient_dot, unit
from unlearn_cli.optimizers._wrapping import gradient_base
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import OPTIMIZERS


class GPOptimizer(ForgetSmoothing):
    """One step: ``g = grad L_f(theta)`` (the whole step batch, unclipped), ``u = g / ||g||``; then one evaluation of
    every term with the forget term of each micro-batch replaced by ``L_f + rho <grad L_f, u>`` (gradient kept:
    double back-prop), whose gradient is ``grad L_f + rho H u = grad (L_f + rho ||g||)``; clipped, base step."""

    name = "gp"

    def update(self, closure):
        g, _ = self.forget_gradient_at(closure, [None] * len(self.params), clip=False)
        u, params, rho = unit(g), self.params, self.rho
        with torch.enable_grad(), double_backprop():
            loss = closure(transform={"forget": lambda f: f + rho * gradient_dot(f, params, u)})
        closure.logs["gp_penalty"] = rho * global_norm(g)
        self.base.step()
        return loss


@OPTIMIZERS.register("gp")
class GP(OptimizerSpec):
    """Gradient-norm penalty on the forget term (SMOOTH, Fan et al. 2025, arXiv 2502.05374, its GP variant):
    minimise ``L_f(theta) + rho ||grad L_f(theta)||_2 + lambda L_r(theta)``, a first-order surrogate of the
    sharpness ``max_{||d|| <= rho} L_f(theta + d)``. The penalty's gradient ``rho H g / ||g||`` comes from real double
    back-prop (``torch.autograd.grad(..., create_graph=True)``; attention runs on the math SDPA kernel, the fused
    ones have no second derivative). ``g`` is the step batch's gradient, so the penalty is exact under gradient
    accumulation too. Two forward/backward passes per step, the second one double. Named fix of the seed code
    (its penalty went through ``.item()``, a constant without gradient, with a hard-coded 0.01 in place of rho).
    ``rho`` = SMOOTH's WMDP NPO flag value 10 (untested there, since the penalty was inert). The logged
    ``gp_penalty`` is ``rho ||g||``; the logged loss includes it."""

    first_order = False

    def __init__(self, base: Optional[OptimizerSpec] = None, rho: PositiveFloat = 10.0):
        self.base = gradient_base(base if base is not None else AdamW(), "gp")
        self.rho = rho

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return GPOptimizer(params, self.base.build(params, lr), rho=self.rho)
