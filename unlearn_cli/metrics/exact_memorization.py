"""Exact memorization of the gold answers."""

from typing import List

import numpy as np

from unlearn_cli.contracts import Metric
from unlearn_cli.registry import METRICS


@METRICS.register("exact_memorization")
class ExactMemorization(Metric):
    """Exact memorization (Tirumala et al. 2022; OpenUnlearning's TOFU/MUSE suites): the fraction of gold answer
    tokens the model predicts greedily under teacher forcing, ``mean_t 1[argmax p(.|x, y_<t) = y_t]``, averaged
    over the items of each split (``stats.exact_memorization``; the gold-answer forward the MIA attacks share).
    Lower on forget splits = more forgotten. Key ``<split>_exact_memorization``.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget",)):
        self.splits = list(splits)

    def compute(self, scorer):
        return {f"{split}_exact_memorization": float(np.mean(scorer.memorization(split, "exact_memorization")))
                for split in self.splits}
