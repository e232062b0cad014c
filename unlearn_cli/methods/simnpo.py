"""Simple NPO: reference-free, length-normalised NPO."""

from unlearn_cli.bounds import FiniteFloat, NonNegativeFloat, PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.losses import simnpo_loss
from unlearn_cli.methods._retain import RetainLoss, RetainTerm
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("simnpo")
class SimNPO(Method):
    """SimNPO (Fan et al. 2024, arXiv 2410.07163): terms ``forget = w_f (2/beta) mean softplus(-beta (l_bar - gamma))``, ``retain = lambda R``.

    ``l_bar`` is the per-sequence mean answer NLL (no reference model). R: retain NLL (default,
    "simnpo_grad_diff") or KL to theta_0. Defaults: TOFU forget10 beta 4.5, w_f 0.125, lambda 1,
    gamma 0; MUSE beta 0.7, lambda 0.1, gamma 0.1 (docs/method_reference.md); benchmark-specific values
    live in ``conf/tuning``.
    """

    def __init__(self, beta: PositiveFloat = 2.5, gamma: FiniteFloat = 0.0, forget_weight: PositiveFloat = 1.0,
                 retain_weight: NonNegativeFloat = 1.0, retain_loss: RetainLoss = "nll"):
        self.beta = beta
        self.gamma = gamma
        self.forget_weight = forget_weight
        self.retain = RetainTerm(retain_weight, retain_loss)
        self.needs_retain = self.retain.active
        self.needs_reference = self.retain.needs_reference

    def loss(self, model, batch, reference=None):
        nll, count = answer_forward(model, batch["forget"]).sequence_nll()
        mean_nll = nll / count.clamp_min(1)
        forget = simnpo_loss(mean_nll, self.beta, self.gamma)
        logs = {"forget_loss": forget.detach(), "forget_nll": mean_nll.mean().detach()}
        return self.retain.add({"forget": self.forget_weight * forget}, logs, model, batch, reference)
