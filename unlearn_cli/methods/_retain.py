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
