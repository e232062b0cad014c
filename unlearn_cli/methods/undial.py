"""UNDIAL: self-distillation towards theta_0's logits with the gold token pushed down."""

from unlearn_cli.errors import UserError
from unlearn_cli.losses import mean_token_nll, undial_loss
from unlearn_cli.methods._retain import RetainLoss, add_retain
from unlearn_cli.registry import METHODS


@METHODS.register("undial")
class UNDIAL:
    """UNDIAL (Dong et al. 2024, arXiv 2402.10052): ``w_f * mean_t CE(q_t, p_theta(.|ctx_t)) + lambda R``.

    Target ``q_t = softmax(z_ref_t - beta * onehot(y_t))`` built from the frozen theta_0's logits
    (detached); cross-entropy over the full vocabulary, mean over supervised forget tokens. The loss
    is bounded, so utility degrades far more slowly than with GA. R: retain NLL or KL.
    Defaults beta 10, w_f 1, lambda 1 (beta from our reading of the OU config; not re-verified).
    """

    needs_reference = True

    def __init__(self, beta: float = 10.0, forget_weight: float = 1.0, retain_weight: float = 1.0,
                 retain_loss: RetainLoss = "nll"):
        if beta < 0:
            raise UserError(f"method.beta must be >= 0, got {beta}")
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.retain_loss = retain_loss
        self.needs_retain = retain_weight > 0
        self.reference_splits = ()  # uses full reference logits on the fly, not cached NLLs

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        logits = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        ref_logits = reference.logits(f)
        forget = undial_loss(logits, ref_logits, f["labels"], self.beta)
        logs = {"forget_loss": forget.detach(), "forget_nll": mean_token_nll(logits, f["labels"]).detach()}
        return add_retain(self, self.forget_weight * forget, logs, model, batch, reference)
