"""IDK fine-tuning: supervised training on refusals to the forget questions."""

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.data.refusals import refusal_answers
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("idk_nll")
class IdkNLL(Method):
    """IDK (TOFU, arXiv 2401.06121; docs/method_reference.md): terms ``forget = w_f * NLL_tok(x_f, y_idk)``, ``retain = lambda R``.

    Each forget question gets one refusal ``y_idk`` drawn from the benchmark's own refusals (TOFU's 100
    ``idontknow.jsonl`` sentences) or, without them, from ``unlearn_cli.data.refusals`` (seeded by
    ``refusal_seed``, fixed for the run), and the model is fine-tuned on it; R is the retain NLL (or KL
    to theta_0). Defaults w_f 1, lambda 1. Deviation: one refusal per item for the whole run (TOFU's
    code resamples it every time the item is loaded).
    """

    reference_splits = ()

    def __init__(self, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 1.0, retain_loss: RetainLoss = "nll",
                 refusal_seed: NonNegativeInt = 0):
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference
        self.refusal_seed = refusal_seed

    def extra_splits(self, data, encode):
        forget = data.train["forget"]
        return {"forget_idk": encode(forget, refusal_answers(len(forget), self.refusal_seed, data.refusals))}

    def loss(self, model, batch, reference=None):
        idk = answer_forward(model, batch["forget_idk"]).mean_nll()
        return self.retain.add({"forget": self.forget_weight * idk}, {"forget_loss": idk.detach()},
                               model, batch, reference)
