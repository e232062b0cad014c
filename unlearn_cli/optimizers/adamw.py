"""AdamW."""

from typing import Tuple

import torch

from unlearn_cli.bounds import Beta, NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.registry import OPTIMIZERS


@OPTIMIZERS.register("adamw")
class AdamW(OptimizerSpec):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay (torch implementation)."""


    def __init__(self, betas: Tuple[Beta, Beta] = (0.9, 0.999), eps: PositiveFloat = 1e-8, weight_decay: NonNegativeFloat = 0.0):
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)
