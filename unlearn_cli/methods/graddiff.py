"""Gradient difference: ascent on forget, descent (NLL or KL) on retain."""

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("graddiff")
class GradDiff(Method):
    """GradDiff (GA + retain): terms ``forget = -w_f mean_token_nll(B_f)``, ``retain = lambda R(B_r)``.

    R is the retain NLL (``retain_loss: nll``, "GDR") or the forward KL to theta_0 on retain
    tokens (``retain_loss: kl``, "KLR"). Paper: Liu et al. 2022 / TOFU (arXiv 2401.06121);
    defaults lambda = 1 (docs/method_reference.md). Deviation: KL is averaged over supervised tokens only.
    ``retain_weight: 0`` is plain GA (no retain batch is drawn).
    """

    def __init__(self, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0, retain_loss: RetainLoss = "nll"):
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference

    def loss(self, model, batch, reference=None):
        forget_nll = answer_forward(model, batch["forget"]).mean_nll()
        terms, logs = {"forget": -self.forget_weight * forget_nll}, {"forget_nll": forget_nll.detach()}
        return self.retain.add(terms, logs, model, batch, reference)
