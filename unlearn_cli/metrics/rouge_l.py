"""ROUGE-L of greedy answers against the gold answer."""

from typing import List, Literal

from unlearn_cli.contracts import Metric
from unlearn_cli.errors import UserError
from unlearn_cli.metrics._common import greedy_requests, rouge_scores
from unlearn_cli.registry import METRICS


@METRICS.register("rouge_l")
class RougeL(Metric):
    """Mean ROUGE-L (Lin 2004; ``rouge_score``) of the greedy answer vs the gold answer.

    ``measure``: ``recall`` = LCS / |reference| (TOFU's ROUGE, arXiv 2401.06121, stemming on;
    key ``<split>_rouge_l``), ``f1`` = harmonic mean of LCS/|prediction| and recall (MUSE's form;
    key ``<split>_rouge_l_f1``), ``both``.
    """

    higher_is_better = True
    version = 2

    def __init__(self, splits: List[str] = ("forget", "retain"), use_stemmer: bool = True,
                 measure: Literal["recall", "f1", "both"] = "recall"):
        if measure not in ("recall", "f1", "both"):
            raise UserError(f"rouge_l.measure must be recall, f1 or both, got {measure!r}")
        self.splits = list(splits)
        self.use_stemmer = use_stemmer
        self.measure = measure

    def generation_requests(self):
        return greedy_requests(self.splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            recall, f1 = rouge_scores(scorer, split, self.use_stemmer)
            if self.measure in ("recall", "both"):
                out[f"{split}_rouge_l"] = float(recall.mean())
            if self.measure in ("f1", "both"):
                out[f"{split}_rouge_l_f1"] = float(f1.mean())
        return out
