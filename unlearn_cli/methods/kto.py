"""KTO on forget data: every forget answer is an undesirable output."""

from typing import Literal

import torch

from unlearn_cli.errors import UserError
from unlearn_cli.losses import kto_undesirable_loss, mean_token_nll, sequence_nll
from unlearn_cli.registry import METHODS


@METHODS.register("kto")
class KTO:
    """KTO-style unlearning (Ethayarajh et al. 2024, arXiv 2402.01306): ``w_f L_KTO + lambda NLL_tok(B_r)``.

    ``L_KTO = mean_{B_f} [1 - sigmoid(beta (z0 - r))]`` with ``r = log pi(y_f|x_f) - log pi_0(y_f|x_f)``
    (summed answer log-probs; theta_0's cached) — KTO's loss for undesirable examples with
    lambda_U = 1. Reference point ``z0``: ``reference_point: retain`` uses
    ``max(0, mean_{B_r}(log pi(y_r|x_r) - log pi_0(y_r|x_r)))``, detached — a batch estimate of
    KL(pi || pi_0) on retain pairs (deviation: KTO estimates it on mismatched prompt/answer pairs);
    ``reference_point: zero`` uses z0 = 0. Retain term: NLL (KTO has no desirable forget examples).
    Defaults beta 0.1, w_f 1, lambda 1, reference_point retain.
    """

    needs_reference = True

    def __init__(self, beta: float = 0.1, forget_weight: float = 1.0, retain_weight: float = 1.0,
                 reference_point: Literal["retain", "zero"] = "retain"):
        if beta <= 0:
            raise UserError(f"method.beta must be > 0, got {beta}")
        self.beta = beta
        self.forget_weight = forget_weight
        self.retain_weight = retain_weight
        self.reference_point = reference_point
        self.needs_retain = retain_weight > 0 or reference_point == "retain"
        self.reference_splits = ("forget", "retain") if reference_point == "retain" else ("forget",)

    def loss(self, model, batch, reference=None):
        f = batch["forget"]
        nll, count = sequence_nll(model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits, f["labels"])
        ref = reference.sequence_nll("forget", f)
        logs = {"forget_nll": (nll / count.clamp_min(1)).mean().detach()}
        retain_logits = None
        if self.needs_retain:
            r = batch["retain"]
            retain_logits = model(input_ids=r["input_ids"], attention_mask=r["attention_mask"]).logits
        if self.reference_point == "retain":
            r_nll, _ = sequence_nll(retain_logits.detach(), r["labels"])
            z0 = (reference.sequence_nll("retain", r) - r_nll).mean().clamp_min(0)
            logs["kl_estimate"] = z0
        else:
            z0 = torch.zeros((), device=nll.device)
        forget = kto_undesirable_loss(nll, ref, z0, self.beta)
        logs["forget_loss"] = forget.detach()
        loss = self.forget_weight * forget
        if self.retain_weight > 0:
            retain = mean_token_nll(retain_logits, batch["retain"]["labels"])
            loss = loss + self.retain_weight * retain
            logs["retain_loss"] = retain.detach()
        return loss, logs
