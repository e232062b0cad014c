"""Helpers shared by metric modules: split labels, TOFU per-item quantities, judges."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from unlearn_cli.eval import stats as _stats
from unlearn_cli.metrics._text import contains_value

log = logging.getLogger("unlearn_cli")


def label(split: str, prefix: str = "", suffix: str = "") -> str:
    """``split`` without a benchmark-specific ``prefix``/``suffix`` (``knowmem_forget`` -> ``forget``),
    so keys read ``<split>_<metric>`` without repeating the metric name."""
    if prefix and split.startswith(prefix) and len(split) > len(prefix):
        split = split[len(prefix):]
    if suffix and split.endswith(suffix) and len(split) > len(suffix):
        split = split[: -len(suffix)]
    return split


def truth_ratios(scorer, split: str) -> np.ndarray:
    """Per-item TOFU truth ratio ``R = exp(l_base - mean_j l_pert_j)`` (benchmarks.md form) with the
    paraphrased answer as base (the answer itself where the split has no paraphrase, RA/WF)."""
    key = f"truth_ratio/{split}"
    if key not in scorer.exports:
        base = scorer.mean_nll(split, "paraphrased_answer")
        sums, counts = scorer.answer_nll(split, "perturbed")
        pert = (sums / counts.clamp_min(1)).double().numpy()
        scorer.exports[key] = _stats.truth_ratio(base, pert)
    return scorer.exports[key]


def greedy_requests(splits, view: str = "question", max_new_tokens: Optional[int] = None):
    """``generation_requests()`` of a metric reading the greedy answers of ``splits`` under ``view``
    (``StageScorer.prefetch`` pools them with every other metric's requests)."""
    return [(split, view, max_new_tokens) for split in splits]


def rouge_scores(scorer, split: str, stemmer: bool = True, view: str = "question",
                 max_new_tokens: Optional[int] = None):
    """(recall, F1) ROUGE-L arrays of the greedy answers of ``split`` against the gold answers."""
    gens = scorer.generations(split, view, max_new_tokens)
    pairs = [_stats.rouge_l(g, it.answer, stemmer) for g, it in zip(gens, scorer.items[split])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def reference_value(scorer, key: str, constant=None, what: str = ""):
    """The oracle's exported ``key`` for this stage: the stage's own value on the oracle stage
    (``scorer.reference['is_reference']``), the oracle's export, else ``constant``; None (with a
    logged warning) when none is available."""
    if scorer.reference.get("is_reference"):
        return scorer.exports.get(key)
    if key in scorer.reference:
        return scorer.reference[key]
    if constant is not None:
        return constant
    log.warning("%s: no oracle (retain-only) evaluation to compare with and no reference constant for this "
                "benchmark; omitted at stage '%s'", what or key, scorer.stage)
    return None


def leaks(judge: str, threshold: float, generation: str, item) -> bool:
    """Whether ``generation`` reveals ``item``: ``contains`` = the fact-containment test of qa_acc
    (gold ``value`` on word boundaries), ``rouge`` = ROUGE-L recall vs the gold answer >= threshold,
    ``auto`` = ``contains`` when the item has a short gold value distinct from its answer, else ``rouge``."""
    if judge == "auto":
        judge = "contains" if item.value != item.answer else "rouge"
    if judge == "contains":
        return contains_value(generation, item.value)
    return _stats.rouge_l(generation, item.answer, True)[0] >= threshold
