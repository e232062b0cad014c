"""Representation Misdirection for Unlearning: steer forget activations to a random direction."""

from typing import List, Optional

import torch

from unlearn_cli import hooks
from unlearn_cli.errors import UserError
from unlearn_cli.losses import masked_mse
from unlearn_cli.registry import METHODS


@METHODS.register("rmu")
class RMU:
    """RMU (Li et al. 2024, WMDP, arXiv 2403.03218): ``MSE(h_l(x_f), c u) + alpha MSE(h_l(x_r), h_l^0(x_r))``.

    ``h_l`` is the output of decoder block ``layer`` (0-based) under theta, ``h_l^0`` under the frozen
    theta_0; ``u = r/||r||``, ``r ~ U[0,1)^d`` is drawn once in ``setup`` from torch's seeded global
    RNG. MSE means run over batch x positions x hidden units; with ``mask_padding: true`` padding
    positions are left out (the official loss keeps them, the default here). Only
    ``param_name`` of ``trainable_layers`` (default ``[layer-2, layer-1, layer]``) trains.
    Defaults (Zephyr-7B recipe, methods.md §2.8): layer 7, layers 5-7, mlp.down_proj.weight,
    c 6.5, alpha 1200. Deviation: one control vector for the whole forget set (single topic).
    """

    needs_reference = True
    needs_retain = True
    reference_splits = ()

    def __init__(self, layer: int = 7, trainable_layers: Optional[List[int]] = None,
                 param_name: str = "mlp.down_proj.weight", steering_coeff: float = 6.5,
                 alpha: float = 1200.0, mask_padding: bool = False):
        if layer < 0:
            raise UserError(f"method.layer must be >= 0, got {layer}")
        if steering_coeff <= 0:
            raise UserError(f"method.steering_coeff must be > 0, got {steering_coeff}")
        if alpha < 0:
            raise UserError(f"method.alpha must be >= 0, got {alpha}")
        if trainable_layers is not None and len(trainable_layers) == 0:
            raise UserError("method.trainable_layers must name at least one layer (or be null for the default)")
        self.layer = layer
        self.trainable_layers = list(trainable_layers) if trainable_layers is not None else \
            list(range(max(0, layer - 2), layer + 1))
        self.param_name = param_name
        self.steering_coeff = steering_coeff
        self.alpha = alpha
        self.mask_padding = mask_padding
        self.control: Optional[torch.Tensor] = None

    def setup(self, model, reference=None) -> None:
        hooks.check_layers(model, [self.layer], "method.layer")
        hooks.freeze_except(model, self.trainable_layers, self.param_name)
        u = torch.rand(model.config.hidden_size)
        self.control = (u / u.norm()).to(next(model.parameters()).device)

    def loss(self, model, batch, reference=None):
        if self.control is None:
            raise RuntimeError("RMU.setup(model, reference) must run before loss()")
        f, r = batch["forget"], batch["retain"]
        h_f = hooks.hidden_states(model, f, [self.layer])[self.layer]
        forget = masked_mse(h_f, self.steering_coeff * self.control,
                            f["attention_mask"] if self.mask_padding else None)
        h_r = hooks.hidden_states(model, r, [self.layer])[self.layer]
        h_r0 = reference.hidden(r, [self.layer])[self.layer]
        retain = masked_mse(h_r, h_r0, r["attention_mask"] if self.mask_padding else None)
        loss = forget + self.alpha * retain
        return loss, {"forget_loss": forget.detach(), "retain_loss": retain.detach(),
                      "forget_act_norm": h_f.detach().float().norm(dim=-1).mean()}
