"""Membership-inference AUCs (loss, zlib, Min-K%, Min-K%++)."""

from typing import List

import numpy as np

from unlearn_cli.errors import UserError
from unlearn_cli.eval import stats as _stats
from unlearn_cli.metrics._common import label
from unlearn_cli.registry import METRICS

ATTACKS = ("loss", "zlib", "min_k", "min_k_pp")


def mia_scores(scorer, split: str, attack: str, k: float) -> np.ndarray:
    """Per-row MIA score (high = non-member) of ``split`` under ``attack`` (methods.md 5.4)."""
    stats = scorer.token_stats(split)
    if attack == "loss":
        return np.array([_stats.loss_score(s.logp) for s in stats])
    if attack == "zlib":
        return np.array([_stats.loss_score(s.logp) for s in stats]) / scorer.zlib_lengths(split)
    if attack == "min_k":
        return np.array([_stats.min_k_score(s.logp, k) for s in stats])
    return np.array([_stats.min_k_plus_plus_score(s.logp, s.mu, s.sigma, k) for s in stats])


@METRICS.register("mia_auc")
class MiaAUC:
    """Membership-inference ROC-AUC of ``members`` (positives) vs ``nonmembers`` (methods.md 5.4).

    Scores per text (high = non-member): loss ``-mean lp`` (Yeom et al. 2018), zlib ``loss /
    len(zlib(text))`` (Carlini et al. 2021), Min-K% ``-mean`` of the lowest ``k`` fraction of
    ``lp`` (Shi et al., arXiv 2310.16789), Min-K%++ the same on ``z = (lp - mu)/sigma`` with the
    next-token mean/std of ``log p`` from the same forward (Zhang et al., arXiv 2404.02936).
    ``AUC = P(s_member > s_nonmember) + P(tie)/2`` (MUSE convention: a model that memorised its
    members -> 0, never saw them -> 0.5). Text splits are scored as ``<bos>`` + text, QA splits on
    their answer tokens. Keys ``<members>_mia_<attack>`` (a leading ``privleak_`` dropped).
    """

    higher_is_better = True
    version = 1

    def __init__(self, members: str = "forget", nonmembers: str = "holdout",
                 attacks: List[str] = ATTACKS, k: float = 0.4):
        bad = [a for a in attacks if a not in ATTACKS]
        if bad:
            raise UserError(f"mia_auc.attacks: unknown attack '{bad[0]}'; known: {', '.join(ATTACKS)}")
        if not 0 < k <= 1:
            raise UserError(f"mia_auc.k must be in (0, 1], got {k}")
        self.members, self.nonmembers = members, nonmembers
        self.attacks, self.k = list(attacks), float(k)
        self.splits = [members, nonmembers]

    def compute(self, scorer):
        out = {}
        for attack in self.attacks:
            auc = _stats.roc_auc(mia_scores(scorer, self.members, attack, self.k),
                                 mia_scores(scorer, self.nonmembers, attack, self.k))
            out[f"{label(self.members, 'privleak_')}_mia_{attack}"] = auc
        return out
