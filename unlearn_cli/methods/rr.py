"""Representation rerouting (circuit breakers): make forget activations orthogonal to theta_0's."""

from typing import List, Optional

import torch

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import Method
from unlearn_cli.errors import UserError
from unlearn_cli.losses import masked_l2, relu_cosine
from unlearn_cli.models.layers import check_layers, check_trainable, freeze_except, hidden_states
from unlearn_cli.registry import METHODS


@METHODS.register("rr")
class RepresentationRerouting(Method):
    """RR / circuit breakers (Zou et al. 2024, arXiv 2406.04313): terms ``forget = c_s L_rr``, ``retain = c_r L_ret``.

    ``L_rr = mean_l mean_t ReLU(cos(h_l(x_f)_t, h_l^0(x_f)_t))`` and
    ``L_ret = mean_l mean_t ||h_l(x_r)_t - h_l^0(x_r)_t||_2`` over the non-padding positions of the
    blocks in ``layers``; schedule ``c_s = a (1 - t/(2T))``, ``c_r = a t/(2T)`` with ``t`` the number
    of earlier calls to ``loss`` (so with ``grad_accum`` > 1 or multi-evaluation optimizers t counts
    micro-batches/evaluations, not optimizer steps) and ``T = schedule_steps``; past ``t = T`` both stay
    at ``a/2`` (the paper trains T steps; the formula would make ``c_s`` negative after 2T). theta_0's forget
    states are cached per example (the forget set is fixed). Defaults: a = 10, T = 150,
    layers [10, 20] (Llama-3-8B recipe). Deviation: no LoRA; ``trainable_layers``/``param_name``
    restrict training like ``rmu``, and ``trainable_layers: null`` (default) trains all weights.
    At theta = theta_0 both terms are stationary (cos is at its maximum 1, the L2 at its minimum 0),
    so the gradient is exactly zero; the paper's LoRA dropout breaks that symmetry. Here ``init_noise``
    (default 1e-3) adds Gaussian noise of that many standard deviations of each trainable tensor at
    setup instead (seeded, so runs stay reproducible).
    """

    needs_reference = True
    needs_retain = True
    needs_hooks = True
    reference_splits = ()

    def __init__(self, layers: List[NonNegativeInt] = (10, 20), alpha: PositiveFloat = 10.0, schedule_steps: PositiveInt = 150,
                 trainable_layers: Optional[List[NonNegativeInt]] = None, param_name: str = "mlp.down_proj.weight",
                 init_noise: NonNegativeFloat = 1e-3):
        layers = list(layers)
        if not layers:
            raise UserError("method.layers must name at least one decoder layer")
        self.layers = layers
        self.alpha = alpha
        self.schedule_steps = schedule_steps
        self.trainable_layers = list(trainable_layers) if trainable_layers is not None else None
        self.param_name = param_name
        self.init_noise = init_noise
        self.calls = 0

    def check_model(self, model) -> None:
        """Fail before any stage runs if the layer indices or parameter name do not fit ``model``."""
        check_layers(model, self.layers, "method.layers")
        check_trainable(model, self.trainable_layers, self.param_name)

    def setup(self, model, reference=None) -> None:
        check_layers(model, self.layers, "method.layers")
        freeze_except(model, self.trainable_layers, self.param_name)
        self.calls = 0
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad and self.init_noise > 0:
                    p.add_(torch.randn_like(p) * self.init_noise * p.float().std().to(p.dtype))

    def state_dict(self) -> dict:
        """The schedule position, saved in checkpoints so a resumed run continues the schedule."""
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])

    def coefficients(self, t: int):
        """(c_s, c_r) at call ``t``; held at their values of ``t = T`` (both ``a/2``) past the schedule, where
        the formula would turn the rerouting weight negative."""
        frac = min(t, self.schedule_steps) / (2.0 * self.schedule_steps)
        return self.alpha * (1.0 - frac), self.alpha * frac

    def loss(self, model, batch, reference=None):
        f, r = batch["forget"], batch["retain"]
        c_s, c_r = self.coefficients(self.calls)
        self.calls += 1
        h_f = hidden_states(model, f, self.layers)
        h_f0 = reference.split_hidden("forget", f, self.layers)
        h_r = hidden_states(model, r, self.layers)
        h_r0 = reference.hidden(r, self.layers)
        fm, rm = f["attention_mask"], r["attention_mask"]
        reroute = torch.stack([relu_cosine(h_f[i], h_f0[i].to(h_f[i].device), fm) for i in self.layers]).mean()
        retain = torch.stack([masked_l2(h_r[i], h_r0[i].to(h_r[i].device), rm) for i in self.layers]).mean()
        return {"forget": c_s * reroute, "retain": c_r * retain}, {
            "forget_loss": reroute.detach(), "retain_loss": retain.detach(),
            "c_s": torch.tensor(c_s), "c_r": torch.tensor(c_r)}
