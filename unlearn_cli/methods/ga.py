"""Gradient ascent on the forget set."""

from unlearn_cli.losses import mean_token_nll
from unlearn_cli.registry import METHODS


@METHODS.register("ga")
class GradientAscent:
    """GA: maximise the forget NLL, ``L = -mean_token_nll(B_f)``.

    Paper: the classic baseline (e.g. Jang et al. 2023; TOFU, arXiv 2401.06121). Unbounded below,
    so utility collapses quickly; used as a baseline and as SalUn's saliency loss.
    """

    needs_reference = False
    needs_retain = False

    def __init__(self, forget_weight: float = 1.0):
        self.forget_weight = forget_weight

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        out = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"])
        nll = mean_token_nll(out.logits, f["labels"])
        return -self.forget_weight * nll, {"forget_nll": nll.detach()}
