"""The frozen reference model theta_0 and its cached outputs.

Methods that compare against theta_0 (NPO, DPO, KL terms) ask this object for reference
quantities. When the unlearning data are fixed, per-sequence reference NLLs are computed once,
up front, for every example of a split and looked up by the batch's ``index``; otherwise (or with
``cache=False``) a reference forward runs every step.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from unlearn_cli.losses import sequence_nll


class Reference:
    """theta_0 plus a per-split cache of summed answer NLLs."""

    def __init__(self, model, pad_id: int, cache: bool = True, batch_size: int = 64, autocast=None):
        self.model = model
        self.pad_id = pad_id
        self.cache_enabled = cache
        self.batch_size = batch_size
        self.autocast = autocast
        self._seq_nll: Dict[str, torch.Tensor] = {}

    def _forward(self, batch) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        with torch.no_grad(), self.autocast():
            return self.model(input_ids=batch["input_ids"].to(dev),
                              attention_mask=batch["attention_mask"].to(dev)).logits

    def logits(self, batch) -> torch.Tensor:
        """Reference logits for a batch (always on the fly)."""
        return self._forward(batch)

    def precompute(self, split: str, encoded) -> None:
        """Cache summed answer NLL of every example of ``split`` (no-op when caching is off)."""
        if not self.cache_enabled:
            return
        values = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded.batch(range(start, min(start + self.batch_size, len(encoded))), self.pad_id)
            nll, _ = sequence_nll(self._forward(batch), batch["labels"].to(self._device()))
            values.append(nll.float())
        self._seq_nll[split] = torch.cat(values)

    def _device(self):
        return next(self.model.parameters()).device

    def sequence_nll(self, split: str, batch) -> torch.Tensor:
        """Summed reference NLL per sequence of ``batch`` (cached when available)."""
        if split in self._seq_nll:
            return self._seq_nll[split][batch["index"].to(self._seq_nll[split].device)]
        nll, _ = sequence_nll(self._forward(batch), batch["labels"])
        return nll.float()

    def release(self) -> Optional[object]:
        """Drop the model once everything needed is cached (frees memory during unlearning)."""
        model, self.model = self.model, None
        return model
