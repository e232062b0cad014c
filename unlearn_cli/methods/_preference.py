"""DPO on two index-aligned forget views (shared by ``dpo`` and ``idk_dpo``)."""

from unlearn_cli.losses import dpo_loss
from unlearn_cli.models.forward import answer_forward


def dpo_forget_loss(model, batch, reference, preferred: str, beta: float):
    """DPO with ``batch[preferred]`` answers as y_w and the true forget answers as y_l.

    Returns ``(loss, logs)``; reference NLLs come from the (cached) ``Reference``.
    """
    w, l = batch[preferred], batch["forget"]
    nll_w, n_w = answer_forward(model, w).sequence_nll()
    nll_l, n_l = answer_forward(model, l).sequence_nll()
    loss = dpo_loss(nll_w, nll_l, reference.sequence_nll(preferred, w), reference.sequence_nll("forget", l), beta)
    logs = {"forget_loss": loss.detach(), "forget_nll": (nll_l / n_l.clamp_min(1)).mean().detach(),
            f"{preferred}_nll": (nll_w / n_w.clamp_min(1)).mean().detach()}
    return loss, logs
