"""Representation Misdirection for Unlearning: steer forget activations to a random direction."""

from typing import List, Optional

import torch

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.methods._steering import SteeringSite, steering_terms
from unlearn_cli.registry import METHODS


@METHODS.register("rmu")
class RMU(Method):
    """RMU (Li et al. 2024, WMDP, arXiv 2403.03218): terms ``forget = MSE(h_l(x_f), c u)``, ``retain = alpha MSE(h_l(x_r), h_l^0(x_r))``.

    ``h_l`` is the output of decoder block ``layer`` (0-based) under theta, ``h_l^0`` under the frozen
    theta_0; ``u = r/||r||``, ``r ~ U[0,1)^d`` is drawn once in ``setup`` from torch's seeded global
    RNG. MSE means run over batch x positions x hidden units; with ``mask_padding: true`` padding
    positions are left out (the official loss keeps them, the default here). Only
    ``param_name`` of ``trainable_layers`` (default ``[layer-2, layer-1, layer]``) trains.
    Defaults (Zephyr-7B recipe, docs/method_reference.md): layer 7, layers 5-7, mlp.down_proj.weight,
    c 6.5, alpha 1200. Deviation: one control vector for the whole forget set (single topic).
    """

    needs_reference = True
    needs_retain = True
    needs_hooks = True
    reference_splits = ()

    def __init__(self, layer: NonNegativeInt = 7, trainable_layers: Optional[List[NonNegativeInt]] = None,
                 param_name: str = "mlp.down_proj.weight", steering_coeff: PositiveFloat = 6.5,
                 alpha: NonNegativeFloat = 1200.0, mask_padding: bool = False):
        self.site = SteeringSite(layer, trainable_layers, param_name)
        self.layer, self.trainable_layers = self.site.layer, self.site.trainable_layers
        self.steering_coeff = steering_coeff
        self.alpha = alpha
        self.mask_padding = mask_padding
        self.control: Optional[torch.Tensor] = None

    def check_model(self, model) -> None:
        """Fail before any stage runs if the layer indices or parameter name do not fit ``model``."""
        self.site.check(model)

    def setup(self, model, reference=None) -> None:
        self.control = self.site.prepare(model)

    def loss(self, model, batch, reference=None):
        if self.control is None:
            raise RuntimeError("RMU.setup(model, reference) must run before loss()")
        forget, retain, h_f = steering_terms(model, batch, reference, self.layer,
                                             self.steering_coeff * self.control, self.mask_padding)
        return {"forget": forget, "retain": self.alpha * retain}, {
            "forget_loss": forget.detach(), "retain_loss": retain.detach(),
            "forget_act_norm": h_f.detach().float().norm(dim=-1).mean()}
