"""QA accuracy of greedy answers."""

from typing import List

from unlearn_cli.contracts import Metric
from unlearn_cli.metrics._common import greedy_requests
from unlearn_cli.metrics._text import contains_value
from unlearn_cli.registry import METRICS


@METRICS.register("qa_acc")
class QAAccuracy(Metric):
    """Fraction of questions whose greedy answer contains the gold value (normalised, word boundaries).

    The gold value is the short fact (a city, a year, ...), so "X was born in Velwick." and
    "Velwick" both count; "Velwickshire" does not. Greedy decoding overstates forgetting relative
    to sampling (see leak@k).
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget", "retain")):
        self.splits = list(splits)

    def generation_requests(self):
        return greedy_requests(self.splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            gens = scorer.generations(split)
            hits = [contains_value(g, it.value) for g, it in zip(gens, scorer.items[split])]
            scorer.record(split, "qa_acc", hits)
            out[f"{split}_qa_acc"] = sum(hits) / len(hits)
        return out
