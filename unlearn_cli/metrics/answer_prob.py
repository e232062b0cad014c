"""Length-normalised probability of the gold answer."""

from typing import List

import torch

from unlearn_cli.contracts import Metric
from unlearn_cli.registry import METRICS


@METRICS.register("answer_prob")
class AnswerProbability(Metric):
    """Mean over questions of ``exp(-l_bar(a|q))``: the per-token geometric-mean probability of the
    gold answer given the prompt (TOFU "Probability" on forget/retain splits, arXiv 2401.06121)."""

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget", "retain")):
        self.splits = list(splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            sums, counts = scorer.answer_nll(split)
            out[f"{split}_answer_prob"] = float(torch.exp(-sums / counts.clamp_min(1)).mean())
        return out
