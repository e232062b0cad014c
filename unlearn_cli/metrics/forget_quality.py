"""TOFU forget quality."""

from unlearn_cli.eval import stats as _stats
from unlearn_cli.metrics._common import reference_value, truth_ratios
from unlearn_cli.registry import METRICS


@METRICS.register("forget_quality")
class ForgetQuality:
    """TOFU Forget Quality (arXiv 2401.06121): p-value of the two-sided two-sample KS test between this
    stage's per-item truth ratios on ``split`` and the retain-only ORACLE's (methods.md 5.1).

    The pipeline evaluates the oracle stage first and hands its truth ratios to every later stage
    (the oracle itself scores 1.0 against itself). Without an oracle evaluation there is no TOFU
    reference constant, so the key is omitted with a logged warning. Higher = closer to the
    oracle. Key ``forget_quality`` (``<split>_forget_quality`` for another split).
    """

    higher_is_better = True
    version = 1

    def __init__(self, split: str = "forget"):
        self.split = split
        self.splits = [split]

    def compute(self, scorer):
        own = truth_ratios(scorer, self.split)
        ref = reference_value(scorer, f"truth_ratio/{self.split}", what="forget_quality")
        if ref is None:
            return {}
        key = "forget_quality" if self.split == "forget" else f"{self.split}_forget_quality"
        return {key: _stats.ks_forget_quality(own, ref)}
