"""ROUGE-L recall of greedy answers against the gold answer."""

from typing import List

from rouge_score import rouge_scorer

from unlearn_cli.registry import METRICS


@METRICS.register("rouge_l")
class RougeL:
    """Mean ROUGE-L recall (``rouge_score``, stemming on) of the greedy answer vs the gold answer.

    TOFU's ROUGE metric (arXiv 2401.06121): recall of the longest common subsequence of tokens.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget", "retain"), use_stemmer: bool = True):
        self.splits = list(splits)
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            gens = scorer.generations(split)
            vals = [self.scorer.score(it.answer, g)["rougeL"].recall for g, it in zip(gens, scorer.items[split])]
            out[f"{split}_rouge_l"] = sum(vals) / len(vals)
        return out
