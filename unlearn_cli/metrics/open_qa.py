"""Open-QA accuracy: free generation judged by a ROUGE-L gate and an optional entailment model."""

from typing import Annotated, List, Optional

import numpy as np

from unlearn_cli.bounds import Probability, Range
from unlearn_cli.contracts import Metric
from unlearn_cli.metrics._common import greedy_requests, rouge_scores
from unlearn_cli.metrics._entailment import entailed
from unlearn_cli.registry import METRICS


@METRICS.register("open_qa")
class OpenQA(Metric):
    """Open-QA accuracy (issue spec; the judge follows the NLI-based answer checking used for
    unlearning audits, e.g. leak@k arXiv 2511.04934): the greedy free-form answer to each question
    counts as correct when its ROUGE-L recall against the gold answer (stemming on) is >= ``gate``
    AND, when ``judge_model`` names an NLI classifier, ``"<q> <answer>"`` entails ``"<q> <gold>"``
    with probability >= ``threshold`` (``unlearn_cli.metrics._entailment``). Without a judge model
    it is the ROUGE-gate accuracy. ``higher_is_better`` (lower on forget splits). Key ``<split>_open_qa``.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("forget", "retain"), gate: Probability = 0.3,
                 judge_model: Optional[str] = None, threshold: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.5):
        self.splits, self.gate = list(splits), float(gate)
        self.judge_model, self.threshold = judge_model, float(threshold)

    def generation_requests(self):
        return greedy_requests(self.splits)

    def compute(self, scorer):
        out = {}
        for split in self.splits:
            recall, _ = rouge_scores(scorer, split)
            correct = recall >= self.gate
            if self.judge_model and correct.any():
                items = scorer.items[split]
                gens = scorer.generations(split)
                idx = np.flatnonzero(correct)
                ok = entailed(self.judge_model, [items[i].question for i in idx], [gens[i] for i in idx],
                              [items[i].answer for i in idx], self.threshold, next(scorer.model.parameters()).device)
                correct[idx] = ok
            scorer.record(split, "open_qa", correct)
            out[f"{split}_open_qa"] = float(correct.mean())
        return out
