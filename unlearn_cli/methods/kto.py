"""KTO on forget data: every forget answer is an undesirable output."""

from typing import Literal

import torch

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import kto_undesirable_loss
from unlearn_cli.methods._retain import RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("kto")
class KTO(Method):
    """KTO-style unlearning (Ethayarajh et al. 2024, arXiv 2402.01306): terms ``forget = w_f L_KTO``, ``retain = lambda NLL_tok(B_r)``.

    ``L_KTO = mean_{B_f} [1 - sigmoid(beta (z0 - r))]`` with ``r = log pi(y_f|x_f) - log pi_0(y_f|x_f)``
    (summed answer log-probs; theta_0's cached) — KTO's loss for undesirable examples with
    lambda_U = 1. Reference point ``z0``: ``reference_point: retain`` uses
    ``max(0, mean_{B_r}(log pi(y_r|x_r) - log pi_0(y_r|x_r)))``, detached — a batch estimate of
    KL(pi || pi_0) on retain pairs (deviation: KTO estimates it on mismatched prompt/answer pairs);
    ``reference_point: zero`` uses z0 = 0. Retain term: NLL (KTO has no desirable forget examples),
    from the same retain forward as z0. Defaults beta 0.1, w_f 1, lambda 1, reference_point retain.
    """

    needs_reference = True

    def __init__(self, beta: PositiveFloat = 0.1, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0,
                 reference_point: Literal["retain", "zero"] = "retain"):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, "nll")
        self.needs_reference_model = False  # theta_0 is only its cached forget (and retain) NLLs
        self.reference_point = reference_point
        self.needs_retain = self.retain.active or reference_point == "retain"
        self.reference_splits = ("forget", "retain") if reference_point == "retain" else ("forget",)

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        nll, count = answer_forward(model, f).sequence_nll()
        ref = reference.sequence_nll("forget", f)
        logs = {"forget_nll": (nll / count.clamp_min(1)).mean().detach()}
        retain = answer_forward(model, batch["retain"]) if self.needs_retain else None
        if self.reference_point == "retain":
            r_nll, _ = retain.sequence_nll()
            z0 = (reference.sequence_nll("retain", batch["retain"]) - r_nll.detach()).mean().clamp_min(0)
            logs["kl_estimate"] = z0
        else:
            z0 = torch.zeros((), device=nll.device)
        forget = kto_undesirable_loss(nll, ref, z0, self.beta)
        logs["forget_loss"] = forget.detach()
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference, retain)
