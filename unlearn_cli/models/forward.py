"""The one forward that training losses read answer-token log-probabilities from.

Every method, the retain term, the reference model and supervised fine-tuning call
:func:`answer_forward` instead of reading ``model(...).logits`` themselves, so how the answer
positions are scored is decided here, once: the decoder's hidden states are gathered at the positions
whose next token is supervised *before* the LM head (Hugging Face's ``logits_to_keep`` with a boolean
(B, T) mask), so a batch holds logits for its answer tokens only, (N, V), instead of (B, T, V) -- with
a 128 k vocabulary and long prompts that is most of a step's memory. The model's own forward applies its
head (and any soft-capping), so the values are those of the full forward at those positions. A model whose
forward has no ``logits_to_keep`` (remote code) gets the full logits, as does a loss that reads the whole
sequence's distributions (``full_logits=True``: unlikelihood, UNDIAL).
"""

from __future__ import annotations

import functools
import inspect
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from unlearn_cli import losses
from unlearn_cli.models.build import unwrap


@functools.lru_cache(maxsize=None)
def _keeps_logits(cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def gathers_answer_logits(model) -> bool:
    """Whether ``model``'s forward can compute logits at chosen positions only (``logits_to_keep``)."""
    return _keeps_logits(type(unwrap(model)))


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the positions whose *next* token is supervised (the logits that score the answer)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != losses.IGNORE
    return keep


def answer_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: torch.Tensor,
                  **kwargs) -> torch.Tensor:
    """(N, V) logits at the ``keep`` positions (row-major), gathered before the LM head where the model allows."""
    if gathers_answer_logits(model):
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, **kwargs).logits
    return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[keep]


class AnswerForward:
    """One causal-LM forward of a labelled batch and what losses read off it.

    ``answer_logits()`` (N, V) are the logits at the supervised positions, in row-major order; ``token_nll()``
    (computed once, shared) spreads their NLL back to (B, T-1). ``logits`` (B, T, V) exist only for a forward run
    with ``full_logits=True``.
    """

    def __init__(self, labels: torch.Tensor, picked: Optional[torch.Tensor] = None,
                 logits: Optional[torch.Tensor] = None):
        self.labels = labels
        self._logits = logits
        self._mask = labels[:, 1:] != losses.IGNORE
        self._picked = picked
        self._token_nll: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError("this forward kept the answer positions' logits only; call "
                               "answer_forward(..., full_logits=True) for the whole sequence")
        return self._logits

    def answer_logits(self) -> torch.Tensor:
        """(N, V): the logits that predict each supervised token, row-major."""
        if self._picked is None:
            self._picked = self._logits[:, :-1][self._mask]
        return self._picked

    def token_nll(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-position NLL of the next token, zero off the answer, and the answer mask, both (B, T-1)."""
        if self._token_nll is None:
            if self._logits is not None:
                self._token_nll = losses.token_nll(self._logits, self.labels)
            else:
                targets = self.labels[:, 1:][self._mask]
                picked = self.answer_logits().float()
                nll = picked.new_zeros(self._mask.shape)
                nll[self._mask] = F.cross_entropy(picked, targets, reduction="none")
                self._token_nll = (nll, self._mask)
        return self._token_nll

    def sequence_nll(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(summed answer NLL ``l``, answer token count ``|y|``) per sequence, both (B,)."""
        nll, mask = self.token_nll()
        return nll.sum(-1), mask.sum(-1)

    def mean_nll(self) -> torch.Tensor:
        """Mean NLL over every answer token of the batch (Hugging Face ``outputs.loss``)."""
        nll, mask = self.token_nll()
        return nll.sum() / mask.sum().clamp_min(1)


def answer_forward(model, batch, full_logits: bool = False) -> AnswerForward:
    """Forward ``batch`` (``input_ids``, ``attention_mask``, ``labels``) through ``model``: logits at the answer
    positions only, or of the whole sequence with ``full_logits``."""
    if full_logits:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return AnswerForward(batch["labels"], logits=out.logits)
    keep = supervised_positions(batch["labels"])
    return AnswerForward(batch["labels"], picked=answer_logits(model, batch["input_ids"], batch["attention_mask"], keep))
