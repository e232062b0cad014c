"""Entailment judges for free-form answers (Open-QA, leak@k): an NLI sequence classifier.

Two protocols over one classifier (MNLI-style models, e.g. ``sileod/deberta-v3-base-tasksource-nli``
(the leak@k paper's), ``microsoft/deberta-large-mnli``; a local directory or a hub id, safetensors
only, no remote code; the entailment class is found by name in ``config.id2label``):

* :func:`entailment_score` -- the leak@k paper's ES judge (arXiv 2511.04934): premise = the model's
  output, hypothesis = the gold answer, leaking when the most probable label is entailment;
* :func:`entailed` -- question-prefixed pairs: ``"<question> <generation>"`` entails ``"<question>
  <gold answer>"`` with probability >= ``threshold``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Sequence

import numpy as np
import torch

from unlearn_cli.errors import UserError, check_local_path


class EntailmentJudge:
    """``P(entailment)`` of (premise, hypothesis) pairs, batched, on the evaluated model's device."""

    def __init__(self, path: str, batch_size: int = 64):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        check_local_path("judge_model", path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True,
                                                                        trust_remote_code=False).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        labels = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        entail = [i for i, name in labels.items() if name.startswith("entail")]
        if len(entail) != 1:
            raise UserError(f"judge_model '{path}' has no single entailment class in config.id2label "
                            f"({labels}); use an NLI (MNLI-style) classifier")
        self.entail = entail[0]
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def probabilities(self, premises: Sequence[str], hypotheses: Sequence[str], device=None) -> np.ndarray:
        """(pairs, labels) class probabilities of (premise, hypothesis) pairs."""
        if device is not None:
            self.model.to(device)
        dev = next(self.model.parameters()).device
        out: List[List[float]] = []
        for start in range(0, len(premises), self.batch_size):
            enc = self.tokenizer(list(premises[start:start + self.batch_size]),
                                 list(hypotheses[start:start + self.batch_size]),
                                 padding=True, truncation=True, return_tensors="pt").to(dev)
            out += torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().tolist()
        return np.array(out, dtype=np.float64).reshape(len(premises), -1)

    def entailment(self, premises: Sequence[str], hypotheses: Sequence[str], device=None) -> np.ndarray:
        """P(premise entails hypothesis) per pair."""
        return self.probabilities(premises, hypotheses, device)[:, self.entail]

    def is_entailment(self, premises: Sequence[str], hypotheses: Sequence[str], device=None) -> np.ndarray:
        """Whether entailment is the most probable label, per pair."""
        return self.probabilities(premises, hypotheses, device).argmax(-1) == self.entail


@lru_cache(maxsize=2)
def load_judge(path: str) -> EntailmentJudge:
    """One judge per path for the whole run (every stage reuses it)."""
    return EntailmentJudge(path)


def entailed(path: str, questions: Sequence[str], generations: Sequence[str], answers: Sequence[str],
             threshold: float, device=None) -> np.ndarray:
    """Boolean per generation: does ``question + generation`` entail ``question + gold answer``?"""
    if not generations:
        return np.zeros(0, dtype=bool)
    premises = [f"{q} {g}".strip() for q, g in zip(questions, generations)]
    hypotheses = [f"{q} {a}".strip() for q, a in zip(questions, answers)]
    return load_judge(path).entailment(premises, hypotheses, device) >= threshold


def entailment_score(path: str, generations: Sequence[str], answers: Sequence[str], device=None) -> np.ndarray:
    """The leak@k paper's ES judge per generation: premise = output, hypothesis = gold, argmax label."""
    if not generations:
        return np.zeros(0, dtype=bool)
    return load_judge(path).is_entailment(list(generations), list(answers), device)
