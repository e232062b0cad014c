"""Negative Preference Optimization."""

from typing import Literal

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import npo_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("npo")
class NPO(Method):
    """NPO (Zhang et al. 2024, arXiv 2404.05868): terms ``forget = w_f (2/beta) mean softplus(-beta (l - l_ref))``, ``retain = lambda R``.

    ``l`` is the summed answer NLL of a forget sequence under theta and ``l_ref`` under the frozen
    theta_0 (cached once per example). ``reduction: mean_token`` uses the length-normalised NLL
    instead (the WMDP code's variant). R: retain NLL or KL (``retain_weight: 0`` = plain NPO).
    Defaults beta 0.1, lambda 1 (docs/method_reference.md).
    """

    needs_reference = True  # theta_0's forget NLLs, whatever the retain term

    def __init__(self, beta: PositiveFloat = 0.1, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0,
                 retain_loss: RetainLoss = "nll", reduction: Literal["sum", "mean_token"] = "sum"):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_reference_model = self.retain.needs_reference  # else theta_0 is only its cached NLLs
        self.needs_retain = self.retain.active
        self.reduction = reduction

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        nll, count = answer_forward(model, f).sequence_nll()
        ref = reference.sequence_nll("forget", f)
        if self.reduction == "mean_token":
            nll, ref = nll / count.clamp_min(1), ref / count.clamp_min(1)
        forget = npo_loss(nll, ref, self.beta)
        logs = {"forget_loss": forget.detach(), "forget_nll": (nll / count.clamp_min(1)).mean().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
