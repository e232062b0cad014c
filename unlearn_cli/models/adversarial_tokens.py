"""Adversarial tokens at the start of a prompt, and input embeddings that replace them (soft prompts).

Optimised input attacks (``soft_prompt``, ``gcg``) put ``k`` tokens right after the ``<bos>`` of every
attacked prompt (first position when the tokenizer has no ``<bos>``). The position is the same in every
representation the scorer builds -- generation prompts, answer rows, membership rows, multiple-choice
prompts -- and needs no re-tokenisation, so the ids the attack optimised are exactly the ids scored.

A soft prompt has no token ids: its rows carry ``k`` copies of a placeholder id there, and
:class:`EmbeddingOverride` (a forward pre-hook on the model) replaces the input embeddings of those
positions by the prompt's vectors. It finds them from the attention mask (first attended position, then
past the ``<bos>``), so left-padded generation batches and right-padded scoring batches both work, and it
acts only where all ``k`` ids there are the placeholder -- rows of splits the attack does not target pass
unchanged. It acts on full-sequence calls only (the prefill of ``generate``; later decoding steps carry
the prompt in the cache).
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

import torch


def insert_after_bos(row: Sequence[int], bos: Sequence[int], tokens: Sequence[int]) -> List[int]:
    """``row`` with ``tokens`` inserted after its leading ``bos`` ids (at the start when it has none)."""
    row = list(row)
    at = len(bos) if bos and row[:len(bos)] == list(bos) else 0
    return row[:at] + list(tokens) + row[at:]


def placeholder_id(tokenizer) -> int:
    """The id a soft prompt's positions carry before their embeddings are replaced: ``<unk>``, else ``<eos>``."""
    found = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
    if found is None:
        raise ValueError("the tokenizer has neither an <unk> nor an <eos> token to mark soft-prompt positions")
    return int(found)


class EmbeddingOverride:
    """Replace the input embeddings of the ``k`` placeholder positions after ``<bos>`` by ``vectors`` (k, d).

    ``vectors`` may require grad (soft-prompt optimisation) and may be reassigned between calls (GCG's
    candidates). Use as a context manager around the forwards it should act on."""

    def __init__(self, model, vectors: torch.Tensor, placeholder: int, bos: Sequence[int]):
        self.model, self.vectors, self.placeholder, self.bos = model, vectors, placeholder, list(bos)
        self._handle = None

    def positions(self, ids: torch.Tensor, mask: Optional[torch.Tensor]) -> List[tuple]:
        """``(row, first position)`` of every row whose ``k`` positions after its ``<bos>`` are placeholders."""
        k, found = self.vectors.shape[0], []
        starts = (mask.long().argmax(dim=1).tolist() if mask is not None else [0] * ids.shape[0])
        bos = torch.tensor(self.bos, dtype=ids.dtype, device=ids.device)
        for row, start in enumerate(starts):
            at = start + len(self.bos) if self.bos and torch.equal(ids[row, start:start + len(self.bos)], bos) else start
            span = ids[row, at:at + k]
            if span.numel() == k and bool((span == self.placeholder).all()):
                found.append((row, at))
        return found

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 4:  # a prepared (rows, 1, queries, keys) mask, as native decoding
            mask = mask[:, 0, -1, :]  # passes: its last query's row marks the real key positions
        if ids is None or kwargs.get("inputs_embeds") is not None:
            return None
        if mask is not None and mask.shape[1] != ids.shape[1]:  # a decoding step: the prompt is in the cache
            return None
        found = self.positions(ids, mask)
        if not found:
            return None
        embeds = self.model.get_input_embeddings()(ids)
        k = self.vectors.shape[0]
        rows = torch.tensor([r for r, _ in found], device=ids.device)
        cols = torch.tensor([at for _, at in found], device=ids.device)[:, None] + torch.arange(k, device=ids.device)
        embeds = embeds.index_put((rows[:, None].expand(-1, k), cols),
                                  self.vectors.to(embeds.dtype).expand(len(found), -1, -1))
        kwargs = dict(kwargs, input_ids=None, inputs_embeds=embeds)
        return (), kwargs

    def __enter__(self):
        self._handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        self._handle = None


def overriding(model, view, bos: Sequence[int]):
    """The :class:`EmbeddingOverride` of a prompt view that carries input ``embeddings`` (a soft prompt), else a
    no-op context."""
    if view is None or view.embeddings is None:
        return contextlib.nullcontext()
    return EmbeddingOverride(model, view.embeddings, view.placeholder, bos)
