"""Curvature regularisation of the forget term (SMOOTH's CR variant, arXiv 2502.05374), around any first-order base."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.bounds import PositiveFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._forget_smoothing import ForgetSmoothing, double_backprop, global_norm, gradient_dot, unit
from unlearn_cli.optimizers._wrapping import gradient_base
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import OPTIMIZERS


class CROptimizer(ForgetSmoothing):
    """One step, with ``v = g_0 / ||g_0||`` held constant: ``g_0 = grad L_f(theta)``, ``g_h = grad L_f(theta + h v)``,
    ``u = (g_h - g_0) / ||g_h - g_0||``; the penalty ``P = rho ||g_h - g_0||`` has gradient
    ``rho (H(theta + h v) - H(theta)) u``, taken as two double back-props: ``rho <grad L_f, u>`` at ``theta + h v``
    and ``-rho <grad L_f, u>`` folded into the evaluation of every term at theta. The summed gradient is clipped
    once; base step."""

    name = "cr"

    def update(self, closure):
        n, params, rho = len(self.params), self.params, self.rho
        g0, _ = self.forget_gradient_at(closure, [None] * n, clip=False)
        shift = [None if d is None else self.h * d for d in unit(g0)]
        gh, _ = self.forget_gradient_at(closure, shift, clip=False)
        diff = [None if a is None or b is None else a - b for a, b in zip(gh, g0)]
        u = unit(diff)
        with torch.enable_grad(), double_backprop():
            g_shifted, penalty_h = self.forget_gradient_at(  # rho H(theta + h v) u, value rho <g_h, u>
                closure, shift, transform={"forget": lambda f: rho * gradient_dot(f, params, u)}, clip=False)
            loss = closure(transform={"forget": lambda f: f - rho * gradient_dot(f, params, u)}, clip=False)
        for p, g in zip(params, g_shifted):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        closure.clip_gradients()
        closure.logs["cr_penalty"] = rho * global_norm(diff)
        self.base.step()
        return loss + penalty_h  # L_f + L_r + rho <g_h - g_0, u> = L_f + L_r + rho ||g_h - g_0||


@OPTIMIZERS.register("cr")
class CR(OptimizerSpec):
    """Curvature regularisation of the forget term (SMOOTH, Fan et al. 2025, arXiv 2502.05374, its CR variant):
    minimise ``L_f(theta) + lambda L_r(theta) + rho ||grad L_f(theta + h v) - grad L_f(theta)||_2`` with
    ``v = grad L_f / ||grad L_f||`` detached: the finite-difference Hessian-vector product ``~ h ||H v||`` penalises
    curvature along the forget gradient. Its gradient flows through both gradients by double back-prop (math SDPA
    kernel). Four passes per step (two plain, two double back-props). Named fix of the seed code (its penalty went
    through ``.item()``: a constant; and ``NPO+FT+CR`` was not registered). Defaults: SMOOTH's WMDP NPO flags
    rho 10, h 0.01 (untested there). The logged ``cr_penalty`` is ``rho ||g_h - g_0||``, included in the loss."""

    first_order = False

    def __init__(self, base: Optional[OptimizerSpec] = None, rho: PositiveFloat = 10.0, h: PositiveFloat = 0.01):
        self.base = gradient_base(base if base is not None else AdamW(), "cr")
        self.rho, self.h = rho, h

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return CROptimizer(params, self.base.build(params, lr), rho=self.rho, h=self.h)
