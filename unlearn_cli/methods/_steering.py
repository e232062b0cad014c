"""Pieces shared by RMU-style methods: where to steer, which weights train, the two MSE terms."""

from __future__ import annotations

from typing import List, Optional

import torch

from unlearn_cli.models import layers
from unlearn_cli.errors import UserError
from unlearn_cli.losses import masked_mse


class SteeringSite:
    """Layer ``layer`` is steered; ``trainable_layers`` (default layer-2..layer) ``param_name`` train."""

    def __init__(self, layer: int, trainable_layers: Optional[List[int]], param_name: str):
        if trainable_layers is not None and len(trainable_layers) == 0:
            raise UserError("method.trainable_layers must name at least one layer (or be null for the default)")
        self.layer = layer
        self.trainable_layers = list(trainable_layers) if trainable_layers is not None else \
            list(range(max(0, layer - 2), layer + 1))
        self.param_name = param_name

    def check(self, model) -> None:
        """UserError if the layer indices or parameter name do not fit ``model``."""
        layers.check_layers(model, [self.layer], "method.layer")
        layers.check_trainable(model, self.trainable_layers, self.param_name)

    def prepare(self, model) -> torch.Tensor:
        """Freeze all but the trainable weights; return a unit control vector u = r/||r||, r ~ U[0,1)^d
        (positive orthant, as in the WMDP code; drawn from the already-seeded global RNG)."""
        self.check(model)
        layers.freeze_except(model, self.trainable_layers, self.param_name)
        u = torch.rand(model.config.hidden_size)
        return (u / u.norm()).to(next(model.parameters()).device)


def steering_terms(model, batch, reference, layer: int, target: torch.Tensor, mask_padding: bool):
    """``(MSE(h_l(x_f), target), MSE(h_l(x_r), h_l^0(x_r)), h_l(x_f))`` for a forget/retain batch."""
    f, r = batch["forget"], batch["retain"]
    h_f = layers.hidden_states(model, f, [layer])[layer]
    forget = masked_mse(h_f, target, f["attention_mask"] if mask_padding else None)
    h_r = layers.hidden_states(model, r, [layer])[layer]
    h_r0 = reference.hidden(r, [layer])[layer]
    retain = masked_mse(h_r, h_r0, r["attention_mask"] if mask_padding else None)
    return forget, retain, h_f
