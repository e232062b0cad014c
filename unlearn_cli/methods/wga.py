"""Weighted gradient ascent: GA with each forget token weighted by its (detached) probability."""

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import wga_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("wga")
class WGA(Method):
    """WGA (Wang et al. 2025, arXiv 2502.19301, id from memory): terms ``forget = w_f * -mean_t(p_t^beta * nll_t)``, ``retain = lambda R``.

    ``nll_t`` is the gold-token NLL of supervised forget token t, ``p_t = exp(-nll_t)``; the weight
    ``p_t^beta`` is detached, so tokens the model has already forgotten (small p_t) stop driving the
    ascent. The mean runs over supervised tokens of the batch. R: retain NLL or KL to theta_0
    (``retain_weight: 0`` = plain WGA). Defaults beta 1 (OpenUnlearning's WGA), w_f 1, lambda 1.
    """

    def __init__(self, beta: NonNegativeFloat = 1.0, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0,
                 retain_loss: RetainLoss = "nll"):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference

    def loss(self, model, batch, reference=None):
        out = answer_forward(model, batch["forget"])
        forget = wga_loss(*out.token_nll(), self.beta)
        logs = {"forget_loss": forget.detach(), "forget_nll": out.mean_nll().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
