"""Sharpness-aware minimisation of the forget term (SMOOTH, arXiv 2502.05374), around any base optimizer."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.bounds import PositiveFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._forget_smoothing import ForgetSmoothing, unit
from unlearn_cli.optimizers._wrapping import gradient_base
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import OPTIMIZERS


class SAMOptimizer(ForgetSmoothing):
    """One step: ``g1 = grad L_f(theta)``; ``eps = rho g1 / ||g1||`` (global norm); ``g_f = grad L_f(theta + eps)``;
    weights restored; ``g_r = grad L_r(theta)`` (every other term); the base optimizer steps on ``g_f + g_r``."""

    name = "sam"

    def update(self, closure):
        g1, forget = self.forget_gradient_at(closure, [None] * len(self.params), clip=False)
        shifts = [None if d is None else self.rho * d for d in unit(g1)]
        g_forget, _ = self.forget_gradient_at(closure, shifts, clip=False)
        return self.finish(closure, g_forget, forget)


@OPTIMIZERS.register("sam")
class SAM(OptimizerSpec):
    """SAM on the forget term (SMOOTH, Fan et al. 2025, arXiv 2502.05374, eq. "min_theta max_{||d|| <= rho}
    L_f(theta + d) + lambda L_r(theta)", one ascent step): ``g1 = grad L_f(theta)``, ``eps = rho g1 / ||g1||_2``
    over all trainable tensors, ``g_f = grad L_f(theta + eps)``, ``g_r = grad L_r(theta)`` (the retain term and any
    other named term, at the unshifted weights), then ``base`` steps on ``g_f + g_r``. Three forward/backward
    passes per step (two without a retain term). ``base`` is any first-order optimizer section
    (default ``adamw``); ``rho`` the radius (SMOOTH's WMDP NPO value 0.01). Where a method's forget term is not
    separable (RMU: its steering loss *is* the forget term) SAM acts on what the method names ``forget``.
    The sum ``g_f + g_r`` is clipped to ``unlearn.max_grad_norm`` once, as SMOOTH's trainer clips it."""

    first_order = False

    def __init__(self, base: Optional[OptimizerSpec] = None, rho: PositiveFloat = 0.01):
        self.base = gradient_base(base if base is not None else AdamW(), "sam")
        self.rho = rho

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return SAMOptimizer(params, self.base.build(params, lr), rho=self.rho)
