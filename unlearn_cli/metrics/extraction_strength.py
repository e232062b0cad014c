"""Extraction strength of the gold answers."""

from typing import List

import numpy as np

from unlearn_cli.contracts import Metric
from unlearn_cli.registry import METRICS


@METRICS.register("extraction_strength")
class ExtractionStrength(Metric):
    """Extraction strength (Carlini et al. 2021, "Quantifying Memorization"; OpenUnlearning's suites): per item
    ``1 - k*/|y|`` with ``k*`` the shortest prefix of the gold answer after which the model's teacher-forced
    greedy predictions reproduce every remaining token (``stats.extraction_strength``), averaged over the items
    of each split. Deviation: 0 when even the last token is mispredicted (OpenUnlearning's loop gives 1/|y|).
    Lower on forget splits = more forgotten. Key ``<split>_extraction_strength``.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget",)):
        self.splits = list(splits)

    def compute(self, scorer):
        return {f"{split}_extraction_strength": float(np.mean(scorer.memorization(split, "extraction_strength")))
                for split in self.splits}
