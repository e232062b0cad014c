"""SophiaG: clipped, curvature-preconditioned sign update (second order in arXiv 2510.00761's grade scale)."""

from __future__ import annotations

from typing import Tuple

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat, PositiveFloat, PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._steps import decay, evaluate, with_grads
from unlearn_cli.registry import OPTIMIZERS


class SophiaGOptimizer(torch.optim.Optimizer):
    """Per step: ``theta <- theta (1 - lr wd)``; ``m <- b1 m + (1 - b1) g``; every ``hessian_every`` steps
    ``h <- b2 h + (1 - b2) g*g``; ``theta <- theta - lr sign(m) min(|m| / (rho * bs * h + 1e-15), 1)``."""

    def __init__(self, params, lr: float, betas=(0.9, 0.95), rho: float = 0.04, batch_tokens: int = 5120,
                 hessian_every: int = 1, weight_decay: float = 0.1):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, batch_tokens=batch_tokens,
                                      hessian_every=hessian_every, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate(closure)
        for group, p in with_grads(self):
            b1, b2 = group["betas"]
            g = p.grad.float()
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(g)
                state["hessian"] = torch.zeros_like(g)
            if state["step"] % group["hessian_every"] == 0:
                state["hessian"].mul_(b2).addcmul_(g, g, value=1 - b2)
            state["step"] += 1
            state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
            decay(p, group)
            m = state["exp_avg"]
            ratio = (m.abs() / (group["rho"] * group["batch_tokens"] * state["hessian"] + 1e-15)).clamp(max=1.0)
            p.add_((m.sign() * ratio).to(p.dtype), alpha=-group["lr"])
        return loss


@OPTIMIZERS.register("sophia")
class Sophia(OptimizerSpec):
    """SophiaG (Liu et al. 2023, arXiv 2305.14342) as SOUL runs it for unlearning (arXiv 2404.18239): a diagonal
    curvature estimate ``h`` from the squared gradient (Gauss-Newton-Bartlett proxy) refreshed every
    ``hessian_every`` steps, momentum ``m``, and the element-wise clipped step
    ``lr * sign(m) * min(|m| / (rho * batch_tokens * h + 1e-15), 1)`` with decoupled weight decay. SOUL's TOFU
    defaults: betas (0.9, 0.95), rho 0.04, batch_tokens 5120, weight decay 0.1. Deviation: SOUL's code updates
    ``m`` twice per step; here once (the algorithm as published)."""

    def __init__(self, betas: Tuple[Beta, Beta] = (0.9, 0.95), rho: PositiveFloat = 0.04,
                 batch_tokens: PositiveInt = 5120, hessian_every: PositiveInt = 1,
                 weight_decay: NonNegativeFloat = 0.1):
        self.betas, self.rho, self.batch_tokens = tuple(betas), rho, batch_tokens
        self.hessian_every, self.weight_decay = hessian_every, weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return SophiaGOptimizer(params, lr, self.betas, self.rho, self.batch_tokens, self.hessian_every,
                                self.weight_decay)
