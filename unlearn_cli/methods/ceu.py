"""Cross-entropy unlearning: push probability mass off every gold forget token."""

from unlearn_cli.bounds import NonNegativeFloat, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import drop_first_answer_tokens, unlikelihood_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("ceu")
class CEU(Method):
    """CE-U / unlikelihood: terms ``forget = w_f * mean_t(-log(1 - p_t))``, ``retain = lambda R``.

    ``p_t`` is the probability of gold forget token t; the mean runs over supervised tokens after the
    first ``skip_first_tokens`` (1, as the reference CE-U configuration ignores each answer's first token).
    This is the token-level unlikelihood objective (Welleck et al. 2019, arXiv 1908.04319). Its
    gradient w.r.t. the logits equals that of cross-entropy against the model's own detached
    distribution with the gold logit set to -inf (the CE-U construction, Yang 2025,
    arXiv 2503.01224 — id from memory, not re-verified). Unlike GA it is bounded below by 0 and
    its gradient vanishes as p_t -> 0. R: retain NLL or KL. Defaults as the reference configuration: the
    forget term only (``retain_weight`` 0), w_f 1, skip 1.
    """

    def __init__(self, forget_weight: PositiveFloat = 1.0, retain_weight: NonNegativeFloat = 0.0, retain_loss: RetainLoss = "nll",
                 skip_first_tokens: NonNegativeInt = 1):
        self.skip_first_tokens = skip_first_tokens
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference

    def loss(self, model, batch, reference=None):
        out = answer_forward(model, batch["forget"], full_logits=True)  # unlikelihood reads every position
        forget = unlikelihood_loss(out.logits, drop_first_answer_tokens(out.labels, self.skip_first_tokens))
        logs = {"forget_loss": forget.detach(), "forget_nll": out.mean_nll().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
