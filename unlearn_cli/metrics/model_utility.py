"""TOFU model utility."""

from typing import List

import numpy as np

from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.metrics._common import greedy_requests, rouge_scores
from unlearn_cli.registry import METRICS


@METRICS.register("model_utility")
class ModelUtility(Metric):
    """TOFU Model Utility (arXiv 2401.06121; docs/metric_reference.md): harmonic mean of 9 numbers,
    {Probability, ROUGE-L recall, truth-ratio utility term} x {retain, real_authors, world_facts}.

    Probability = ``mean exp(-l_bar(a|q))`` on the retain split, the normalised
    ``P(a) / (P(a) + sum_j P(a~_j))`` on ``normalised_splits``; ROUGE = recall of greedy answers
    (stemming on); truth-ratio term = ``mean max(0, 1 - R)``. Shares every generation and forward
    with rouge_l / answer_prob / truth_ratio / norm_prob through the stage scorer. Key ``model_utility``.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("retain", "real_authors", "world_facts"),
                 normalised_splits: List[str] = ("real_authors", "world_facts")):
        self.splits = list(splits)
        self.normalised = set(normalised_splits)

    def generation_requests(self):
        return greedy_requests(self.splits)

    def compute(self, scorer):
        values = []
        for split in self.splits:
            if split in self.normalised:
                prob = float(scorer.normalised_probs(split).mean())
            else:
                prob = float(np.exp(-scorer.mean_nll(split)).mean())
            recall, _ = rouge_scores(scorer, split)
            values += [prob, float(recall.mean()), stats.truth_ratio_utility(scorer.truth_ratios(split))]
        return {"model_utility": stats.harmonic_mean(values)}
