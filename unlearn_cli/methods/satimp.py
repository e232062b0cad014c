"""SatImp: gradient ascent with saturation x importance token weights."""

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import satimp_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("satimp")
class SatImp(Method):
    """SatImp (Yang et al. 2025, arXiv 2505.11953): terms ``forget = w_f * -mean_t(p_t^b1 (1-p_t)^b2 nll_t)``, ``retain = lambda R``.

    Same form as WGA with the detached weight ``p_t^beta1 * (1 - p_t)^beta2``: the importance factor
    ``p^b1`` favours tokens still well predicted, the saturation factor ``(1-p)^b2`` damps tokens the
    model is already sure of. Mean over supervised forget tokens. R: retain NLL or KL.
    Defaults as the reference configuration (OpenUnlearning's SatImp trainer): beta1 5, beta2 1,
    w_f (its gamma) 1, lambda (its alpha) 0.1.
    """

    def __init__(self, beta1: NonNegativeFloat = 5.0, beta2: NonNegativeFloat = 1.0, forget_weight: PositiveFloat = 1.0,
                 retain_weight: NonNegativeFloat = 0.1, retain_loss: RetainLoss = "nll"):
        self.beta1 = beta1
        self.beta2 = beta2
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference

    def loss(self, model, batch, reference=None):
        out = answer_forward(model, batch["forget"])
        forget = satimp_loss(*out.token_nll(), self.beta1, self.beta2)
        logs = {"forget_loss": forget.detach(), "forget_nll": out.mean_nll().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
