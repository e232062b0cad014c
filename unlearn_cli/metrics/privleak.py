"""MUSE PrivLeak."""

import logging
from typing import Optional

from unlearn_cli.bounds import Fraction, Probability
from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.metrics._common import label, oracle_or_warn
from unlearn_cli.registry import METRICS

log = logging.getLogger("unlearn_cli")


@METRICS.register("privleak")
class PrivLeak(Metric):
    """MUSE PrivLeak (arXiv 2407.06460; docs/metric_reference.md): Min-K% (``k`` = 0.4) ROC-AUC of ``members``
    (forget texts) vs ``nonmembers`` (holdout texts), relative to the retrained model:
    ``(AUC - AUC_ref) / AUC_ref * 100``. ``AUC_ref`` is the oracle stage's AUC when the run evaluates
    an oracle, else ``oracle_auc`` when set, else the benchmark's published AUC of MUSE's retrained
    model (MUSE-News 0.4772, Books 0.5393); with none the key is omitted (logged warning), as it is
    when ``AUC_ref`` = 0. ~0 ideal, strongly negative = under-unlearning. Keys
    ``<members>_privleak`` and ``<members>_privleak_auc`` (a leading ``privleak_`` dropped).
    """

    higher_is_better = False  # |privleak| is what matters; closer to 0 is better
    version = 1
    baseline = "oracle"

    def __init__(self, members: str = "privleak_forget", nonmembers: str = "privleak_holdout", k: Fraction = 0.4,
                 oracle_auc: Optional[Probability] = None):
        self.members, self.nonmembers, self.k = members, nonmembers, float(k)
        self.oracle_auc = oracle_auc
        self.splits = [members, nonmembers]

    def compute(self, scorer):
        auc = scorer.mia_auc(self.members, self.nonmembers, "min_k", self.k)
        name = label(self.members, "privleak_")
        out = {f"{name}_privleak_auc": auc}
        ref = self._oracle_auc(scorer)
        if ref is not None and ref <= 0:
            log.warning("privleak: the oracle AUC is 0, so the relative leak is undefined; "
                        "omitted at stage '%s' (too few member/non-member texts?)", scorer.stage)
        elif ref is not None:
            out[f"{name}_privleak"] = stats.privleak(auc, ref)
        return out

    def _oracle_auc(self, scorer):
        """The oracle stage's AUC, else ``oracle_auc``, else the benchmark's published one, else None (warned)."""
        oracle = scorer.baseline("oracle")
        if oracle is not None:
            return oracle.mia_auc(self.members, self.nonmembers, "min_k", self.k)
        if self.oracle_auc is not None:
            return self.oracle_auc
        if "privleak_oracle_auc" in scorer.inputs.published:
            return scorer.inputs.published["privleak_oracle_auc"]
        return oracle_or_warn(scorer, "privleak")
