"""signSGD and Signum (momentum-sign), with optional N-bit compression."""

from __future__ import annotations

from typing import Literal

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.optimizers._compress import compress
from unlearn_cli.optimizers._steps import decay, evaluate, with_grads
from unlearn_cli.registry import OPTIMIZERS


class SignSGDOptimizer(torch.optim.Optimizer):
    """``v = momentum * v + (1 - momentum) * g`` (``v = g`` without momentum);
    ``theta <- theta * (1 - lr * weight_decay) - lr * Q(v; bits)``."""

    def __init__(self, params, lr: float, momentum: float = 0.0, bits: int = 1, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, bits=bits, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate(closure)
        for group, p in with_grads(self):
            direction = p.grad.float()
            if group["momentum"]:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(direction)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(direction, alpha=1 - group["momentum"])
                direction = buf
            decay(p, group)
            p.add_(compress(direction, group["bits"]).to(p.dtype), alpha=-group["lr"])
        return loss


@OPTIMIZERS.register("signsgd")
class SignSGD(OptimizerSpec):
    """signSGD (Bernstein et al. 2018) and, with ``momentum`` > 0, Signum: ``theta <- theta - lr * sign(v)``
    where ``v`` is the gradient or its exponential moving average ``v = b v + (1 - b) g``. ``bits`` > 1 replaces
    ``sign`` by the normalised N-bit quantiser of ``optimizers/_compress.py`` (arXiv 2510.00761 §"downgrading":
    compressed first-order directions; the paper's N-bit scheme is unpublished, ours is documented there).
    Weight decay is decoupled. Every coordinate moves by at most ``lr``: use a learning rate far below Adam's."""

    def __init__(self, momentum: Beta = 0.0, bits: Literal[1, 2, 4, 8] = 1, weight_decay: NonNegativeFloat = 0.0):
        self.momentum = momentum
        self.bits = bits
        self.weight_decay = weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return SignSGDOptimizer(params, lr, self.momentum, self.bits, self.weight_decay)
