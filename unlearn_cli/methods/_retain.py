"""The retain regulariser shared by methods: NLL on retain data or KL to the reference."""

from __future__ import annotations

from typing import Literal

import torch

from unlearn_cli.losses import forward_kl, mean_token_nll

RetainLoss = Literal["nll", "kl"]


def retain_term(kind: str, model, batch, reference) -> torch.Tensor:
    """``mean_token_nll`` on the retain batch, or forward KL(theta_0 || theta) on its supervised tokens."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if kind == "nll":
        return mean_token_nll(out.logits, batch["labels"])
    ref_logits = reference.logits(batch)
    mask = torch.zeros_like(batch["labels"], dtype=torch.bool)
    mask[:, :-1] = batch["labels"][:, 1:] != -100
    return forward_kl(ref_logits, out.logits, mask)


def configure_retain(method, forget_weight: float, retain_weight: float, retain_loss: str) -> None:
    """Set the forget/retain weights and the derived ``needs_retain`` / ``needs_reference`` flags."""
    method.forget_weight = forget_weight
    method.retain_weight = retain_weight
    method.retain_loss = retain_loss
    method.needs_retain = retain_weight > 0
    method.needs_reference = method.needs_retain and retain_loss == "kl"


def add_retain(method, loss, logs: dict, model, batch, reference):
    """``loss + retain_weight * R(retain batch)`` when the method uses retain data (R logged)."""
    if method.needs_retain:
        retain = retain_term(method.retain_loss, model, batch["retain"], reference)
        logs["retain_loss"] = retain.detach()
        loss = loss + method.retain_weight * retain
    return loss, logs
