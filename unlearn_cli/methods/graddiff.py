"""Gradient difference: ascent on forget, descent (NLL or KL) on retain."""

from unlearn_cli.losses import mean_token_nll
from unlearn_cli.methods._retain import RetainLoss, retain_term
from unlearn_cli.registry import METHODS


@METHODS.register("graddiff")
class GradDiff:
    """GradDiff (GA + retain): ``L = -w_f mean_token_nll(B_f) + lambda R(B_r)``.

    R is the retain NLL (``retain_loss: nll``, "GDR") or the forward KL to theta_0 on retain
    tokens (``retain_loss: kl``, "KLR"). Paper: Liu et al. 2022 / TOFU (arXiv 2401.06121);
    defaults lambda = 1 (methods.md §2.2). Deviation: KL is averaged over supervised tokens only.
    """

    needs_retain = True

    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0, retain_loss: RetainLoss = "nll"):
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.retain_loss = retain_loss
        self.needs_reference = retain_loss == "kl"

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        out = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"])
        forget_nll = mean_token_nll(out.logits, f["labels"])
        retain = retain_term(self.retain_loss, model, batch["retain"], reference)
        loss = -self.forget_weight * forget_nll + self.retain_weight * retain
        return loss, {"forget_nll": forget_nll.detach(), "retain_loss": retain.detach()}
