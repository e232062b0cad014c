"""Gradient ascent on the forget set."""

from unlearn_cli.bounds import PositiveFloat
from unlearn_cli.contracts import Method
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import METHODS


@METHODS.register("ga")
class GradientAscent(Method):
    """GA: maximise the forget NLL; term ``forget = -w_f * mean_token_nll(B_f)``.

    Paper: the classic baseline (e.g. Jang et al. 2023; TOFU, arXiv 2401.06121). Unbounded below,
    so utility collapses quickly; used as a baseline and as SalUn's saliency loss.
    """

    def __init__(self, forget_weight: PositiveFloat = 1.0):
        self.forget_weight = forget_weight

    def loss(self, model, batch, reference=None):
        nll = answer_forward(model, batch["forget"]).mean_nll()
        return {"forget": -self.forget_weight * nll}, {"forget_nll": nll.detach()}
