"""The retain term shared by every method that has one: ``lambda * R(retain batch)``.

``R`` is the mean answer-token NLL on the retain batch (``nll``) or the forward KL(theta_0 || theta)
over its supervised positions (``kl``). One value object decides for every method when a retain
batch and a reference model are needed: ``active`` iff ``weight > 0``; a reference iff active and
``loss == "kl"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

from unlearn_cli.losses import forward_kl
from unlearn_cli.models.forward import AnswerForward, answer_forward

RetainLoss = Literal["nll", "kl"]


@dataclass(frozen=True)
class RetainTerm:
    """``weight * R`` with ``R`` chosen by ``loss`` (module docstring)."""

    weight: float
    loss: RetainLoss = "nll"

    @property
    def active(self) -> bool:
        """Whether the term exists (and the step batches carry a retain mini-batch)."""
        return self.weight > 0

    @property
    def needs_reference(self) -> bool:
        """Whether the term reads theta_0 (KL)."""
        return self.active and self.loss == "kl"

    def value(self, model, batch, reference, forward: Optional[AnswerForward] = None) -> torch.Tensor:
        """Unweighted ``R`` on ``batch`` (the retain mini-batch); ``forward`` reuses a forward already run."""
        out = forward if forward is not None else answer_forward(model, batch)
        if self.loss == "nll":
            return out.mean_nll()
        # KL at the positions that predict supervised tokens: the rows of answer_logits
        return forward_kl(reference.answer_logits(batch), out.answer_logits())

    def add(self, terms: dict, logs: dict, model, batch, reference, forward: Optional[AnswerForward] = None):
        """``terms["retain"] = weight * R`` (and ``logs["retain_loss"] = R``) when active; returns ``(terms, logs)``."""
        if self.active:
            value = self.value(model, batch["retain"], reference, forward)
            logs["retain_loss"] = value.detach()
            terms["retain"] = self.weight * value
        return terms, logs
