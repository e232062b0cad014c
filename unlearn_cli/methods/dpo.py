"""DPO with a plausible wrong answer preferred over the true forget answer."""

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.errors import UserError
from unlearn_cli.methods._preference import dpo_forget_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.registry import METHODS


@METHODS.register("dpo")
class DPO(Method):
    """DPO (Rafailov et al. 2023, arXiv 2305.18290) on forget data: terms ``forget = w_f L_DPO(y_w=y_alt, y_l=y_f)``, ``retain = lambda R``.

    ``y_alt`` is each forget item's first ``perturbed`` answer (a plausible wrong answer in the same
    wording); ``L_DPO = -(2/beta) mean log sigmoid(beta * delta)`` with ``delta = [log pi(y_w) -
    log pi(y_l)] - [log pi_0(y_w) - log pi_0(y_l)]`` on summed answer log-probabilities (theta_0's
    values cached per example). R: retain NLL or KL. Defaults beta 0.1, w_f 1, lambda 1.
    Needs a benchmark whose forget items carry perturbed answers (a UserError otherwise).
    """

    needs_reference = True  # theta_0's forget NLLs, whatever the retain term
    reference_splits = ("forget", "forget_alt")

    def __init__(self, beta: PositiveFloat = 0.1, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0,
                 retain_loss: RetainLoss = "nll"):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_reference_model = self.retain.needs_reference  # else theta_0 is only its cached NLLs
        self.needs_retain = self.retain.active

    def extra_splits(self, data, encode):
        forget = data.train["forget"]
        missing = [i for i, it in enumerate(forget) if not it.perturbed]
        if missing:
            raise UserError(f"method 'dpo' needs a perturbed (alternate) answer for every forget item; "
                            f"{len(missing)} of {len(forget)} have none (first: item {missing[0]}); use idk_dpo instead")
        return {"forget_alt": encode(forget, [it.perturbed[0] for it in forget])}

    def loss(self, model, batch, reference=None):
        forget, logs = dpo_forget_loss(model, batch, reference, "forget_alt", self.beta)
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
