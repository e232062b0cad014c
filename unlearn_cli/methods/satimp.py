"""SatImp: gradient ascent with saturation x importance token weights."""

from unlearn_cli.errors import UserError
from unlearn_cli.losses import mean_token_nll, satimp_loss
from unlearn_cli.methods._retain import RetainLoss, add_retain, configure_retain
from unlearn_cli.registry import METHODS


@METHODS.register("satimp")
class SatImp:
    """SatImp (Yang et al. 2025, arXiv 2505.11953): ``w_f * -mean_t(p_t^b1 (1-p_t)^b2 nll_t) + lambda R``.

    Same form as WGA with the detached weight ``p_t^beta1 * (1 - p_t)^beta2``: the importance factor
    ``p^b1`` favours tokens still well predicted, the saturation factor ``(1-p)^b2`` damps tokens the
    model is already sure of. Mean over supervised forget tokens. R: retain NLL or KL.
    Defaults beta1 5, beta2 1, w_f 1, lambda 0.1 (the OU SatImp trainer: gamma 1, alpha 0.1).
    """

    def __init__(self, beta1: float = 5.0, beta2: float = 1.0, forget_weight: float = 1.0,
                 retain_weight: float = 0.1, retain_loss: RetainLoss = "nll"):
        if beta1 < 0 or beta2 < 0:
            raise UserError(f"method.beta1 and method.beta2 must be >= 0, got {beta1}, {beta2}")
        self.beta1 = beta1
        self.beta2 = beta2
        configure_retain(self, forget_weight, retain_weight, retain_loss)

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        logits = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        forget = satimp_loss(logits, f["labels"], self.beta1, self.beta2)
        logs = {"forget_loss": forget.detach(), "forget_nll": mean_token_nll(logits, f["labels"]).detach()}
        return add_retain(self, self.forget_weight * forget, logs, model, batch, reference)
