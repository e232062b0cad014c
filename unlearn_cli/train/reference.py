"""The frozen reference model theta_0 and its cached outputs.

Methods that compare against theta_0 (NPO, DPO, KL terms) ask this object for reference
quantities. When the unlearning data are fixed, per-sequence reference NLLs are computed once,
up front, for every example of a split and looked up by the batch's ``index``; otherwise (or with
``cache=False``) a reference forward runs every step.

Representation methods ask for theta_0's decoder-layer outputs (``hidden``). For a fixed split
they may be cached per example (``precompute_hidden``) when the whole split fits under a memory
cap; otherwise, or with ``cache=False``, they are recomputed on the fly.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional, Sequence

import torch

from unlearn_cli.models.forward import AnswerForward, answer_forward
from unlearn_cli.models.layers import hidden_states


class Reference:
    """theta_0 plus a per-split cache of summed answer NLLs."""

    def __init__(self, model, pad_id: int, cache: bool = True, batch_size: int = 64, autocast=None):
        self.model = model
        self.pad_id = pad_id
        self.cache_enabled = cache
        self.batch_size = batch_size
        self.autocast = autocast or contextlib.nullcontext
        self._seq_nll: Dict[str, torch.Tensor] = {}
        self._hidden: Dict[str, Dict[int, Dict[int, torch.Tensor]]] = {}
        self._hidden_bytes = 0
        self.hidden_cache_bytes = 1 << 30  # cap on cached hidden states (float32 bytes)

    def forward(self, batch, full_logits: bool = False) -> AnswerForward:
        """theta_0's forward of a labelled batch (no gradient), on theta_0's device."""
        dev = self._device()
        moved = {k: batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels")}
        with torch.no_grad(), self.autocast():
            return answer_forward(self.model, moved, full_logits=full_logits)

    def logits(self, batch) -> torch.Tensor:
        """Reference logits (B, T, V) for a batch (always on the fly)."""
        return self.forward(batch, full_logits=True).logits

    def answer_logits(self, batch) -> torch.Tensor:
        """Reference logits (N, V) at the batch's supervised positions (always on the fly)."""
        return self.forward(batch).answer_logits()

    def precompute(self, split: str, encoded) -> None:
        """Cache summed answer NLL of every example of ``split`` (no-op when caching is off): length-sorted
        batches (little padding), under ``inference_mode``, logits at the answer positions only."""
        if not self.cache_enabled:
            return
        order = sorted(range(len(encoded)), key=lambda i: len(encoded.prompts[i]) + len(encoded.answers[i]))
        values = torch.zeros(len(encoded))
        dev = self._device()
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = {k: v.to(dev) for k, v in encoded.batch(idx, self.pad_id).items()}
                nll, _ = answer_forward(self.model, batch).sequence_nll()
                values[idx] = nll.float().cpu()
        self._seq_nll[split] = values.to(dev)

    def sequence_nll(self, split: str, batch) -> torch.Tensor:
        """Summed reference NLL per sequence of ``batch`` (cached when available)."""
        if split in self._seq_nll:
            return self._seq_nll[split][batch["index"].to(self._seq_nll[split].device)]
        if self.model is None:
            raise RuntimeError(f"the reference model was released after caching; split '{split}' is not cached")
        nll, _ = self.forward(batch).sequence_nll()
        return nll.float()

    def hidden(self, batch, layers: Sequence[int]) -> Dict[int, torch.Tensor]:
        """theta_0's output hidden states (B, T, d) at each decoder layer in ``layers`` (on the fly)."""
        dev = self._device()
        inputs = {"input_ids": batch["input_ids"].to(dev), "attention_mask": batch["attention_mask"].to(dev)}
        with self.autocast():
            out = hidden_states(self.model, inputs, layers, grad=False)
        return {k: v.detach() for k, v in out.items()}

    def precompute_hidden(self, split: str, encoded, layers: Sequence[int]) -> bool:
        """Cache theta_0's hidden states of every example of ``split`` up front (unpadded, per layer).

        Returns False (nothing cached) when caching is off or the split would not fit under
        ``hidden_cache_bytes``; ``split_hidden`` then computes what it needs on the fly.
        """
        if not self.cache_enabled:
            return False
        tokens = sum(len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers))
        if self._hidden_bytes + tokens * self.model.config.hidden_size * len(layers) * 4 > self.hidden_cache_bytes:
            return False
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded.batch(range(start, min(start + self.batch_size, len(encoded))), self.pad_id)
            self.split_hidden(split, batch, layers)
        return True

    def split_hidden(self, split: str, batch, layers: Sequence[int]) -> Dict[int, torch.Tensor]:
        """theta_0's hidden states (B, T, d) for a batch of a fixed ``split``, cached per example.

        A batch with any uncached example is computed on the fly and its rows stored (while the
        cache stays under ``hidden_cache_bytes``); a fully cached batch is assembled from the cache,
        with padding positions set to zero (callers that care about them must mask them; the
        on-the-fly path leaves theta_0's values there).
        """
        if not self.cache_enabled:
            return self.hidden(batch, layers)
        store = self._hidden.setdefault(split, {})
        idx = batch["index"].tolist()
        if any(j not in store.get(i, {}) for i in layers for j in idx):
            fresh = self.hidden(batch, layers)
            lengths = batch["attention_mask"].sum(-1).tolist()
            size = sum(lengths) * fresh[layers[0]].shape[-1] * len(layers) * 4
            if self._hidden_bytes + size <= self.hidden_cache_bytes:
                for i in layers:
                    rows = store.setdefault(i, {})
                    for r, (j, n) in enumerate(zip(idx, lengths)):
                        if j not in rows:
                            rows[j] = fresh[i][r, :n].float().clone()
                            self._hidden_bytes += rows[j].numel() * 4
            return fresh
        width = batch["input_ids"].shape[1]
        out = {}
        for i in layers:
            rows = [store[i][j] for j in idx]
            h = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
            for r, t in enumerate(rows):
                h[r, : t.shape[0]] = t
            out[i] = h
        return out

    def release(self) -> Optional[object]:
        """Drop the model once everything the method reads is cached (frees its memory during unlearning)."""
        model, self.model = self.model, None
        return model

    def _device(self):
        return next(self.model.parameters()).device
