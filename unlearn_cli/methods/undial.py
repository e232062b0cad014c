"""UNDIAL: self-distillation towards theta_0's logits with the gold token pushed down."""

from unlearn_cli.bounds import NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import undial_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("undial")
class UNDIAL(Method):
    """UNDIAL (Dong et al. 2024, arXiv 2402.10052): terms ``forget = w_f * mean_t CE(q_t, p_theta(.|ctx_t))``, ``retain = lambda R``.

    Target ``q_t = softmax(z_ref_t - beta * onehot(y_t))`` built from the frozen theta_0's logits
    (detached); cross-entropy over the full vocabulary, mean over supervised forget tokens. The loss
    is bounded, so utility degrades far more slowly than with GA. R: retain NLL or KL, off by default
    as in the reference configuration (``retain_weight`` 0; lr 1e-4 there: ``conf/tuning``). Defaults
    beta 10, w_f 1.
    """

    needs_reference = True
    reference_splits = ()  # full reference logits on the fly, not cached NLLs

    def __init__(self, beta: NonNegativeFloat = 10.0, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 0.0,
                 retain_loss: RetainLoss = "nll"):
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        out = answer_forward(model, f, full_logits=True)  # UNDIAL reads every position
        forget = undial_loss(out.logits, reference.logits(f), out.labels, self.beta)
        logs = {"forget_loss": forget.detach(), "forget_nll": out.mean_nll().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
