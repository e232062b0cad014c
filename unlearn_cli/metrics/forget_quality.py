"""TOFU forget quality."""

from unlearn_cli.contracts import Metric
from unlearn_cli.eval import stats
from unlearn_cli.metrics._common import oracle_or_warn
from unlearn_cli.registry import METRICS


@METRICS.register("forget_quality")
class ForgetQuality(Metric):
    """TOFU Forget Quality (arXiv 2401.06121): p-value of the two-sided two-sample KS test between this
    stage's per-item truth ratios on ``split`` and the retain-only ORACLE's (docs/metric_reference.md).

    Baseline ``oracle``: the pipeline evaluates the oracle stage first and later stages read its
    memoised truth ratios (the oracle itself scores 1.0 against itself). Without an oracle
    evaluation there is no published TOFU constant to fall back on, so the key is omitted with a logged warning.
    Higher = closer to the oracle. Key ``forget_quality`` (``<split>_forget_quality`` for another split).
    """

    higher_is_better = True
    version = 1
    baseline = "oracle"

    def __init__(self, split: str = "forget"):
        self.split = split
        self.splits = [split]

    def compute(self, scorer):
        own = scorer.truth_ratios(self.split)
        oracle = oracle_or_warn(scorer, "forget_quality")
        if oracle is None:
            return {}
        key = "forget_quality" if self.split == "forget" else f"{self.split}_forget_quality"
        return {key: stats.ks_forget_quality(own, oracle.truth_ratios(self.split))}
