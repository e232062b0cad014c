"""TOFU truth ratio."""

from typing import List

import numpy as np

from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.registry import METRICS


@METRICS.register("truth_ratio")
class TruthRatio(Metric):
    """TOFU Truth Ratio (Maini et al., arXiv 2401.06121; docs/metric_reference.md).

    Per item ``R = exp(l_base - mean_j l_pert_j)`` with length-normalised NLLs ``l`` of the
    paraphrased answer (the answer on real_authors / world_facts) and of the J perturbed answers.
    Forget splits (``forget_splits``) report ``mean min(R, 1/R)`` (1 = cannot tell true from
    false; ``higher_is_better`` there), the others the utility term ``mean max(0, 1 - R)``.
    Key ``<split>_truth_ratio``.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget", "retain", "real_authors", "world_facts"),
                 forget_splits: List[str] = ("forget",)):
        self.splits = list(splits)
        self.forget_splits = set(forget_splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            r = scorer.truth_ratios(split)
            summary = stats.truth_ratio_forget if split in self.forget_splits else stats.truth_ratio_utility
            out[f"{split}_truth_ratio"] = summary(np.asarray(r))
        return out
