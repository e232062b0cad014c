"""TOFU normalised answer probability (real authors / world facts)."""

from typing import List

from unlearn_cli.contracts import Metric
from unlearn_cli.registry import METRICS


@METRICS.register("norm_prob")
class NormalisedProbability(Metric):
    """TOFU Probability on real_authors / world_facts (arXiv 2401.06121; docs/metric_reference.md):
    ``mean_q P(a) / (P(a) + sum_j P(a~_j))`` with ``P = exp(-l_bar)`` the length-normalised
    probabilities of the true and of the perturbed answers. Key ``<split>_norm_prob``."""

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("real_authors", "world_facts")):
        self.splits = list(splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            out[f"{split}_norm_prob"] = float(scorer.normalised_probs(split).mean())
        return out
