"""MUSE VerbMem."""

from typing import List

import numpy as np

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.metrics._common import greedy_requests, label
from unlearn_cli.registry import METRICS


@METRICS.register("verbmem")
class VerbMem(Metric):
    """MUSE VerbMem (Shi et al., arXiv 2407.06460; docs/metric_reference.md): greedy continuation of at most
    ``max_new_tokens`` (128) tokens from the raw passage prefix (no QA template), scored by ROUGE-L
    F1 (no stemming) against the first ``max_new_tokens`` tokens of the true continuation;
    ``100 * mean``. Lower is better on the forget set (``higher_is_better`` describes retain-like use).
    Key ``<split>_verbmem`` with a leading ``verbmem_`` dropped (``forget_verbmem``).
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("verbmem_forget",), max_new_tokens: PositiveInt = 128):
        self.splits = list(splits)
        self.max_new_tokens = int(max_new_tokens)

    def generation_requests(self):
        return greedy_requests(self.splits, "raw", self.max_new_tokens)

    def compute(self, scorer):
        out = {}
        tok = scorer.tokenizer
        for split in self.splits:
            gens = scorer.generations(split, "raw", self.max_new_tokens)
            refs = [tok.decode(tok(it.answer, add_special_tokens=False)["input_ids"][:self.max_new_tokens])
                    for it in scorer.items[split]]
            f1 = [stats.rouge_l(g, r, False)[1] for g, r in zip(gens, refs)]
            scorer.record(split, "verbmem_f1", f1)
            out[f"{label(split, 'verbmem_')}_verbmem"] = 100.0 * float(np.mean(f1))
        return out
