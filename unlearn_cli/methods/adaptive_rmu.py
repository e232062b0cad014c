"""Adaptive RMU: RMU with a per-sample steering coefficient scaled to theta_0's activation norm."""

from typing import Dict, List, Optional

import torch

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import mean_position_norm
from unlearn_cli.methods._steering import SteeringSite, steering_terms
from unlearn_cli.registry import METHODS


@METHODS.register("adaptive_rmu")
class AdaptiveRMU(Method):
    """Adaptive RMU (Dang et al. 2025, arXiv 2408.06223, id from memory): RMU with ``c_i = beta_a ||h_l^0(x_i)||``.

    terms ``forget = mean_i MSE(h_l(x_f,i), c_i u)``, ``retain = alpha MSE(h_l(x_r), h_l^0(x_r))`` where ``||h_l^0(x_i)||`` is
    the mean over sequence i's non-padding positions of theta_0's activation norm at block
    ``layer``. The per-example coefficients are cached after first use (recomputed every step with
    ``cache_reference=false``). Other mechanics and defaults as ``rmu`` (layer 7, layers 5-7,
    mlp.down_proj.weight, alpha 1200); beta_a 5 (our choice within the paper's range; not
    re-verified). Forget MSE averages over all positions, as in ``rmu`` with ``mask_padding: false``.
    """

    needs_reference = True
    needs_retain = True
    needs_hooks = True
    reference_splits = ()

    def __init__(self, layer: NonNegativeInt = 7, trainable_layers: Optional[List[NonNegativeInt]] = None,
                 param_name: str = "mlp.down_proj.weight", beta_a: PositiveFloat = 5.0, alpha: NonNegativeFloat = 1200.0,
                 mask_padding: bool = False):
        self.site = SteeringSite(layer, trainable_layers, param_name)
        self.layer, self.trainable_layers = self.site.layer, self.site.trainable_layers
        self.beta_a = beta_a
        self.alpha = alpha
        self.mask_padding = mask_padding
        self.control: Optional[torch.Tensor] = None
        self._coeff: Dict[int, float] = {}

    def check_model(self, model) -> None:
        """Fail before any stage runs if the layer indices or parameter name do not fit ``model``."""
        self.site.check(model)

    def setup(self, model, reference=None) -> None:
        self.control = self.site.prepare(model)

    def coefficients(self, batch, reference) -> torch.Tensor:
        """Per-example ``beta_a * ||h_l^0(x)||`` for a forget batch, shape (B,)."""
        idx = batch["index"].tolist()
        if not reference.cache_enabled or any(j not in self._coeff for j in idx):
            h0 = reference.hidden(batch, [self.layer])[self.layer]
            norms = mean_position_norm(h0, batch["attention_mask"].to(h0.device))
            values = (self.beta_a * norms).tolist()
            if reference.cache_enabled:
                self._coeff.update(zip(idx, values))
        else:
            values = [self._coeff[j] for j in idx]
        return torch.tensor(values, dtype=torch.float32, device=self.control.device)

    def loss(self, model, batch, reference=None):
        if self.control is None:
            raise RuntimeError("AdaptiveRMU.setup(model, reference) must run before loss()")
        coeff = self.coefficients(batch["forget"], reference)
        forget, retain, _ = steering_terms(model, batch, reference, self.layer,
                                           coeff.view(-1, 1, 1) * self.control, self.mask_padding)
        return {"forget": forget, "retain": self.alpha * retain}, {
            "forget_loss": forget.detach(), "retain_loss": retain.detach(), "steering_coeff": coeff.mean().detach()}
