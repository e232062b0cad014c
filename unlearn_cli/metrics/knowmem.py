"""MUSE KnowMem."""

from typing import Dict, List, Optional

import numpy as np

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.metrics._common import label
from unlearn_cli.registry import METRICS

STOPS = ("\n\n", "\nQuestion", "Question:")


def cut(text: str) -> str:
    """The answer up to the first ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"`` (MUSE)."""
    for stop in STOPS:
        text = text.split(stop, 1)[0]
    return text.strip()


@METRICS.register("knowmem")
class KnowMem(Metric):
    """MUSE KnowMem (arXiv 2407.06460; docs/metric_reference.md): few-shot prompt of the ICL pairs rendered
    ``"Question: {q}\\nAnswer: {a}\\n\\n"`` then ``"Question: {question}\\nAnswer: "``; greedy, at most
    ``max_new_tokens`` (32) tokens, cut at ``"\\n\\n"`` / ``"\\nQuestion"`` / ``"Question:"``;
    ROUGE-L F1 (no stemming) vs the gold answer; ``100 * mean``. Forget: lower is better; retain:
    utility, higher is better. ``icl`` maps a split to its demonstration split (default
    ``<split>_icl``). Key ``<split>_knowmem`` with a leading ``knowmem_`` dropped.
    """

    higher_is_better = True
    version = 1

    def __init__(self, splits: List[str] = ("knowmem_forget", "knowmem_retain"),
                 icl: Optional[Dict[str, str]] = None, max_new_tokens: PositiveInt = 32):
        self.icl = {s: (icl or {}).get(s, f"{s}_icl") for s in splits}
        self.eval_splits = list(splits)
        self.splits = list(splits) + [self.icl[s] for s in splits]
        self.max_new_tokens = int(max_new_tokens)

    def generation_requests(self):
        return [(s, f"icl:{self.icl[s]}", self.max_new_tokens) for s in self.eval_splits]

    def compute(self, scorer):
        out = {}
        for split in self.eval_splits:
            gens = scorer.generations(split, f"icl:{self.icl[split]}", self.max_new_tokens)
            f1 = [stats.rouge_l(cut(g), it.answer, False)[1] for g, it in zip(gens, scorer.items[split])]
            scorer.record(split, "knowmem_f1", f1)
            out[f"{label(split, 'knowmem_')}_knowmem"] = 100.0 * float(np.mean(f1))
        return out
