"""Cross-entropy unlearning: push probability mass off every gold forget token."""

from unlearn_cli.losses import mean_token_nll, unlikelihood_loss
from unlearn_cli.methods._retain import RetainLoss, add_retain, configure_retain
from unlearn_cli.registry import METHODS


@METHODS.register("ceu")
class CEU:
    """CE-U / unlikelihood: ``w_f * mean_t(-log(1 - p_t)) + lambda R``.

    ``p_t`` is the probability of gold forget token t; the mean runs over supervised tokens.
    This is the token-level unlikelihood objective (Welleck et al. 2019, arXiv 1908.04319). Its
    gradient w.r.t. the logits equals that of cross-entropy against the model's own detached
    distribution with the gold logit set to -inf (the CE-U construction, Yang 2025,
    arXiv 2503.01224 — id from memory, not re-verified). Unlike GA it is bounded below by 0 and
    its gradient vanishes as p_t -> 0. R: retain NLL or KL. Defaults w_f 1, lambda 1.
    """

    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, retain_loss: RetainLoss = "nll"):
        configure_retain(self, forget_weight, retain_weight, retain_loss)

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        logits = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        forget = unlikelihood_loss(logits, f["labels"])
        logs = {"forget_loss": forget.detach(), "forget_nll": mean_token_nll(logits, f["labels"]).detach()}
        return add_retain(self, self.forget_weight * forget, logs, model, batch, reference)
