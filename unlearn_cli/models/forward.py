"""The one forward that training losses read answer-token log-probabilities from.

Every method, the retain term, the reference model and supervised fine-tuning call
:func:`answer_forward` instead of reading ``model(...).logits`` themselves, so how the answer
positions are scored (today: full logits, then ``losses.token_nll``; later: gathering the
supervised positions before the LM head) is decided here, once.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from unlearn_cli import losses


class AnswerForward:
    """One causal-LM forward of a labelled batch and what losses read off it.

    ``token_nll()`` is computed once and shared by every quantity derived from it;
    ``logits`` (B, T, V) are there for the losses that need the whole next-token distribution
    (KL to theta_0, UNDIAL, unlikelihood).
    """

    def __init__(self, logits: torch.Tensor, labels: torch.Tensor):
        self.logits = logits
        self.labels = labels
        self._token_nll: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def token_nll(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-position NLL of the next token, zero off the answer, and the answer mask, both (B, T-1)."""
        if self._token_nll is None:
            self._token_nll = losses.token_nll(self.logits, self.labels)
        return self._token_nll

    def sequence_nll(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(summed answer NLL ``l``, answer token count ``|y|``) per sequence, both (B,)."""
        nll, mask = self.token_nll()
        return nll.sum(-1), mask.sum(-1)

    def mean_nll(self) -> torch.Tensor:
        """Mean NLL over every answer token of the batch (Hugging Face ``outputs.loss``)."""
        nll, mask = self.token_nll()
        return nll.sum() / mask.sum().clamp_min(1)


def answer_forward(model, batch) -> AnswerForward:
    """Forward ``batch`` (``input_ids``, ``attention_mask``, ``labels``) through ``model``."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return AnswerForward(out.logits, batch["labels"])
