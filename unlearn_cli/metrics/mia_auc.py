"""Membership-inference AUCs (loss, zlib, Min-K%, Min-K%++)."""

from typing import Annotated, List, Optional

from unlearn_cli.bounds import Fraction, Range
from unlearn_cli.contracts import Metric
from unlearn_cli.errors import UserError
from unlearn_cli.eval.scorer import MIA_ATTACKS, MIA_DEFAULT
from unlearn_cli.metrics._common import label
from unlearn_cli.registry import METRICS


@METRICS.register("mia_auc")
class MiaAUC(Metric):
    """Membership-inference ROC-AUC of ``members`` (positives) vs ``nonmembers`` (docs/metric_reference.md).

    Scores per text (high = non-member): loss ``-mean lp`` (Yeom et al. 2018), zlib ``loss /
    len(zlib(text))`` (Carlini et al. 2021), Min-K% ``-mean`` of the lowest ``k`` fraction of
    ``lp`` (Shi et al., arXiv 2310.16789), Min-K%++ the same on ``z = (lp - mu)/sigma`` with the
    next-token mean/std of ``log p`` from the same forward (Zhang et al., arXiv 2404.02936).
    ``gradnorm`` (Yeom-style gradient attack, arXiv 2402.17012): the mean over parameter tensors of
    the ``gradnorm_p``-norm of the row's loss gradient (OpenUnlearning's form; one backward per row,
    so not in the default list); ``calibration``: this model's loss minus that of
    ``calibration_model`` (a local dir or hub id with the same tokenizer, e.g. the base model;
    Carlini et al. 2021's reference-model attack, OpenUnlearning's ``mia_reference``).
    ``AUC = P(s_member > s_nonmember) + P(tie)/2`` (MUSE convention: a model that memorised its
    members -> 0, never saw them -> 0.5). Text splits are scored as ``<bos>`` + text, QA splits on
    their answer tokens. Keys ``<members>_mia_<attack>`` (a leading ``privleak_`` dropped).
    """

    higher_is_better = True
    version = 1

    def __init__(self, members: str = "forget", nonmembers: str = "holdout",
                 attacks: List[str] = MIA_DEFAULT, k: Fraction = 0.4, gradnorm_p: Annotated[float, Range(1, finite=False)] = 2.0,
                 calibration_model: Optional[str] = None):
        bad = [a for a in attacks if a not in MIA_ATTACKS]
        if bad:
            raise UserError(f"mia_auc.attacks: unknown attack '{bad[0]}'; known: {', '.join(MIA_ATTACKS)}")
        if ("calibration" in attacks) != bool(calibration_model):
            raise UserError("mia_auc: the calibration attack needs calibration_model (a model path or hub id), "
                            "and calibration_model is used only by it")
        self.members, self.nonmembers = members, nonmembers
        self.attacks, self.k = list(attacks), float(k)
        self.options = {"gradnorm": float(gradnorm_p), "calibration": calibration_model}
        self.splits = [members, nonmembers]

    def compute(self, scorer):
        out = {}
        for attack in self.attacks:
            auc = scorer.mia_auc(self.members, self.nonmembers, attack, self.k, self.options.get(attack))
            out[f"{label(self.members, 'privleak_')}_mia_{attack}"] = auc
        return out
