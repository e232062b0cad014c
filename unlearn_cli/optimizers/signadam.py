"""signAdam: the sign (or N-bit compression) of the Adam update."""

from __future__ import annotations

from typing import Literal, Tuple

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._compress import compress
from unlearn_cli.optimizers._steps import adam_direction, decay, evaluate, with_grads
from unlearn_cli.registry import OPTIMIZERS


class SignAdamOptimizer(torch.optim.Optimizer):
    """Adam moments with bias correction; ``theta <- theta * (1 - lr * wd) - lr * Q(m_hat / (sqrt(v_hat) + eps))``."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, bits: int = 1,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, bits=bits, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate(closure)
        for group, p in with_grads(self):
            update = adam_direction(self.state[p], p.grad.float(), group["betas"], group["eps"])
            decay(p, group)
            p.add_(compress(update, group["bits"]).to(p.dtype), alpha=-group["lr"])
        return loss


@OPTIMIZERS.register("signadam")
class SignAdam(OptimizerSpec):
    """signAdam ("1-bit Adam" in arXiv 2510.00761's grade taxonomy): Adam's moments, but the applied direction is
    ``sign(m_hat / (sqrt(v_hat) + eps))`` (= ``sign(m_hat)``), or its normalised N-bit quantisation with ``bits`` >
    1 (``optimizers/_compress.py``). Decoupled weight decay as in AdamW. Each coordinate moves by at most ``lr``."""

    def __init__(self, betas: Tuple[Beta, Beta] = (0.9, 0.999), eps: PositiveFloat = 1e-8,
                 bits: Literal[1, 2, 4, 8] = 1, weight_decay: NonNegativeFloat = 0.0):
        self.betas = tuple(betas)
        self.eps = eps
        self.bits = bits
        self.weight_decay = weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return SignAdamOptimizer(params, lr, self.betas, self.eps, self.bits, self.weight_decay)


