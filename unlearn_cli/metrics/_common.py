"""Helpers shared by metric modules: split labels, greedy requests, ROUGE of greedy answers, judges, baselines."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from unlearn_cli.eval import stats
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


def greedy_requests(splits, view: str = "question", max_new_tokens: Optional[int] = None):
    """``generation_requests()`` of a metric reading the greedy answers of ``splits`` under ``view``
    (``StageScorer.prefetch`` pools them with every other metric's requests)."""
    return [(split, view, max_new_tokens) for split in splits]


def rouge_scores(scorer, split: str, stemmer: bool = True, view: str = "question",
                 max_new_tokens: Optional[int] = None):
    """(recall, F1) ROUGE-L arrays of the greedy answers of ``split`` against the gold answers (recorded
    per item as ``rouge_l_recall`` / ``rouge_l_f1``, with ``[nostem]`` / ``[<view>,<tokens>]`` when not the default)."""
    gens = scorer.generations(split, view, max_new_tokens)
    pairs = [stats.rouge_l(g, it.answer, stemmer) for g, it in zip(gens, scorer.items[split])]
    recall, f1 = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    tags = ([] if stemmer else ["nostem"]) + ([] if (view, max_new_tokens) == ("question", None) else
                                              [f"{view},{max_new_tokens}"])
    tag = f"[{';'.join(tags)}]" if tags else ""
    scorer.record(split, f"rouge_l_recall{tag}", recall)
    scorer.record(split, f"rouge_l_f1{tag}", f1)
    return recall, f1


def oracle_or_warn(scorer, what: str):
    """``scorer.baseline("oracle")``, or None with one logged warning that ``what`` is omitted."""
    oracle = scorer.baseline("oracle")
    if oracle is None:
        log.warning("%s: no oracle (retain-only) evaluation to compare with and no published oracle constant for this "
                    "benchmark; omitted at stage '%s'", what, scorer.stage)
    return oracle


def leaks(judge: str, threshold: float, generation: str, item) -> bool:
    """Whether ``generation`` reveals ``item``: ``contains`` = the fact-containment test of qa_acc
    (gold ``value`` on word boundaries), ``rouge`` = ROUGE-L recall vs the gold answer >= threshold,
    ``auto`` = ``contains`` when the item has a short gold value distinct from its answer, else ``rouge``."""
    if judge == "auto":
        judge = "contains" if item.value != item.answer else "rouge"
    if judge == "contains":
        return contains_value(generation, item.value)
    return stats.rouge_l(generation, item.answer, True)[0] >= threshold
