"""Tokenisation of QA items and batching.

Prompt and answer are encoded separately (BPE would merge across the boundary otherwise): the
prompt as ``<bos> + template(question)``, the answer as ``" " + answer + <eos>``. Training and
scoring use exactly these ids; generation feeds the prompt ids only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from unlearn_cli.errors import UserError

IGNORE = -100


@dataclass
class EncodedQA:
    """Token ids of prompts and answers of one split, index-aligned with its items."""

    prompts: List[List[int]]
    answers: List[List[int]]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices: Sequence[int]) -> "EncodedQA":
        return EncodedQA([self.prompts[i] for i in indices], [self.answers[i] for i in indices])

    def concat(self, other: "EncodedQA") -> "EncodedQA":
        return EncodedQA(self.prompts + other.prompts, self.answers + other.answers)

    def batch(self, indices: Sequence[int], pad_id: int) -> Dict[str, torch.Tensor]:
        """Right-padded training batch: prompt positions and padding are labelled -100."""
        seqs = [self.prompts[i] + self.answers[i] for i in indices]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, i in enumerate(indices):
            p, a = self.prompts[i], self.answers[i]
            n = len(p) + len(a)
            ids[row, :n] = torch.tensor(p + a)
            labels[row, len(p):n] = torch.tensor(a)
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "index": torch.tensor(list(indices), dtype=torch.long)}


def render_prompt(template: str, question: str) -> str:
    return template.format(question=question)


def encode_qa(tokenizer, items, template: str, answers: Optional[Sequence[str]] = None,
              max_length: Optional[int] = None) -> EncodedQA:
    """Encode items (or items with replacement ``answers``, e.g. refusals or perturbed answers)."""
    if len(items) == 0:
        raise UserError("cannot encode an empty split")
    texts = list(answers) if answers is not None else [it.answer for it in items]
    prompt_ids = tokenizer([render_prompt(template, it.question) for it in items],
                           add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer([" " + a for a in texts], add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id]
    prompts = [bos + p for p in prompt_ids]
    outs = [a + eos for a in answer_ids]
    if max_length:
        outs = [a[: max(1, max_length - len(p))] for p, a in zip(prompts, outs)]
    return EncodedQA(prompts, outs)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> Dict[str, torch.Tensor]:
    """Left-padded prompt batch for generation."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(list(s))
        mask[row, width - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask}
