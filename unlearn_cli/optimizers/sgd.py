"""Stochastic gradient descent."""

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.registry import OPTIMIZERS


@OPTIMIZERS.register("sgd")
class SGD(OptimizerSpec):
    """SGD with optional (Nesterov) momentum and L2 weight decay (torch implementation)."""


    def __init__(self, momentum: Beta = 0.0, nesterov: bool = False, weight_decay: NonNegativeFloat = 0.0):
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)
