"""Scoring core shared by every metric of a stage.

``StageScorer`` computes, at most once per split and stage, (a) greedy generations from the
prompts (length-bucketed, left-padded batches with KV cache) and (b) per-example answer NLLs
(one forward per batch). Metrics ask it for what they need, so two metrics on the same split
share one generation pass and one scoring pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from unlearn_cli import progress
from unlearn_cli.data.encoding import EncodedQA, left_pad
from unlearn_cli.losses import sequence_nll


@dataclass
class DecodeSettings:
    """Decoding settings shared by generation metrics."""

    max_new_tokens: int = 24
    batch_size: int = 256


def _length_buckets(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                    autocast, desc: str = "generate") -> List[str]:
    """Greedy continuations (decoded, special tokens stripped), in the order of ``prompts``."""
    dev = next(model.parameters()).device
    out: List[str] = [""] * len(prompts)
    buckets = _length_buckets([len(p) for p in prompts], settings.batch_size)
    with progress.bar(desc, len(prompts)) as advance:
        for idx in buckets:
            batch = left_pad([prompts[i] for i in idx], tokenizer.pad_token_id)
            with autocast():
                gen = model.generate(
                    input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev),
                    max_new_tokens=settings.max_new_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts = tokenizer.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, t in zip(idx, texts):
                out[i] = t.strip()
            advance(len(idx))
    return out


@torch.no_grad()
def answer_nll(model, encoded: EncodedQA, pad_id: int, batch_size: int, autocast):
    """(summed answer NLL, answer token count) per example, as float tensors on CPU."""
    dev = next(model.parameters()).device
    sums, counts = torch.zeros(len(encoded)), torch.zeros(len(encoded))
    for idx in _length_buckets([len(p) + len(a) for p, a in zip(encoded.prompts, encoded.answers)], batch_size):
        batch = encoded.batch(idx, pad_id)
        with autocast():
            logits = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev)).logits
        s, c = sequence_nll(logits, batch["labels"].to(dev))
        sums[idx] = s.float().cpu()
        counts[idx] = c.float().cpu()
    return sums, counts


class StageScorer:
    """Memoised generations and answer NLLs of one model at one stage."""

    def __init__(self, model, tokenizer, items: Dict[str, list], encoded: Dict[str, EncodedQA],
                 decode: DecodeSettings, autocast, stage: str):
        self.model = model
        self.items = items
        self.tokenizer = tokenizer
        self.encoded = encoded
        self.decode = decode
        self.autocast = autocast
        self.stage = stage
        self._gen: Dict[str, List[str]] = {}
        self._nll: Dict[str, tuple] = {}

    def generations(self, split: str) -> List[str]:
        if split not in self._gen:
            self._gen[split] = generate_greedy(self.model, self.tokenizer, self.encoded[split].prompts,
                                               self.decode, self.autocast, desc=f"eval {self.stage}:{split}")
        return self._gen[split]

    def answer_nll(self, split: str):
        if split not in self._nll:
            self._nll[split] = answer_nll(self.model, self.encoded[split], self.tokenizer.pad_token_id,
                                          self.decode.batch_size, self.autocast)
        return self._nll[split]
