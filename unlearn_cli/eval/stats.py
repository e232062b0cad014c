"""Pure estimators behind the metrics (no model, no I/O): leak@k, ROC-AUC, KS forget quality,
TOFU truth ratio / utility terms, membership-inference scores and ROUGE-L.

Conventions (docs/metric_reference.md):

* NLLs are *length-normalised* (mean over the answer tokens), written ``l``; ``P = exp(-l)``.
* Truth ratio: ``truth_ratio`` returns ``R = exp(l_base - mean_j l_pert_j)`` = (geometric mean
  of the wrong answers' probabilities) / (probability of the base answer). TOFU's code computes
  the reciprocal ``TR = 1/R``; the summaries below give identical numbers under both readings:
  ``min(R, 1/R)`` is symmetric and ``max(0, 1 - R) == max(0, 1 - 1/TR)``.
* ROC-AUC: members are the positive class, ``AUC = P(s_member > s_nonmember) + P(tie)/2``.
  The MIA scores here are high for *non*-members, so a model that memorised its members gives
  AUC -> 0 and one that never saw them ~0.5: MUSE's PrivLeak convention.
"""

from __future__ import annotations

import math
import re
import zlib
from functools import lru_cache
from typing import Sequence, Tuple

import numpy as np
import torch

from unlearn_cli.eval import porter


def _vector(values, name: str) -> np.ndarray:
    """``values`` (list, numpy array or CPU tensor) as a non-empty finite 1-D float64 array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _check_k(n: int, k: int) -> None:
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got k={k}")


# ---------------------------------------------------------------------------------------------
# leak@k (arXiv 2511.04934)


def leak_at_k(n: int, c: int, k: int) -> float:
    """Unbiased leak@k for one query (pass@k estimator; leak@k paper, arXiv 2511.04934).

    From ``n`` sampled generations of which ``c`` leak, the probability that ``k`` of them drawn
    without replacement contain at least one leak: ``1 - C(n-c, k) / C(n, k)``, computed as
    ``1 - prod_{i=0}^{k-1} (n-c-i)/(n-i)``; exactly 1 when ``n - c < k``.
    Raises ValueError unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    _check_k(n, k)
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got c={c}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - c - i) / (n - i)
    return 1.0 - miss


def expected_max_at_k(scores: Sequence[float], k: int) -> float:
    """Expected best of ``k`` scores drawn without replacement from ``n`` observed scores.

    Continuous-score leak@k (the leak@k paper's meta-metric for a graded judge): with ``s_(1) <= ... <= s_(n)`` sorted
    ascending, ``E[max] = sum_{i=k}^{n} C(i-1, k-1) / C(n, k) * s_(i)`` (``s_(i)`` is the maximum
    of exactly ``C(i-1, k-1)`` of the ``C(n, k)`` subsets). Exact integer binomials, so any n works.
    """
    arr = np.sort(_vector(scores, "scores"))
    n = arr.size
    _check_k(n, k)
    total = math.comb(n, k)
    weights = np.array([math.comb(i - 1, k - 1) / total for i in range(k, n + 1)])
    return float(np.dot(weights, arr[k - 1:]))


# ---------------------------------------------------------------------------------------------
# ROC-AUC and KS


def roc_auc(member_scores, nonmember_scores) -> float:
    """ROC-AUC with members as the positive class, ties counting one half (Mann-Whitney U).

    ``AUC = P(s_m > s_h) + 0.5 * P(s_m == s_h)`` over all member/non-member pairs, computed from
    mid-ranks: ``(sum of member ranks - n_m (n_m + 1) / 2) / (n_m n_h)``. Equal to the trapezoidal
    area under the ROC curve. With the MIA scores of this module (high = non-member) this is
    MUSE's PrivLeak AUC (memorised members -> 0); take ``1 - AUC`` for "attack success" AUC.
    """
    members = _vector(member_scores, "member_scores")
    nonmembers = _vector(nonmember_scores, "nonmember_scores")
    from scipy import stats  # about 0.4 s to import: only where a run computes an AUC or a KS test

    ranks = stats.rankdata(np.concatenate([members, nonmembers]))
    n_m, n_h = members.size, nonmembers.size
    u = ranks[:n_m].sum() - n_m * (n_m + 1) / 2.0
    return float(u / (n_m * n_h))


def ks_forget_quality(tr_model, tr_oracle) -> float:
    """TOFU Forget Quality (arXiv 2401.06121): p-value of the two-sided two-sample
    Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, exact for small samples) between the
    per-item truth ratios of the unlearned model and of the retain-only oracle on the forget split.

    Higher = closer to the oracle. The KS statistic depends only on the order of the pooled
    values, so passing ``R`` or ``1/R`` (TOFU code's TR) for both samples gives the same p-value.
    """
    from scipy import stats

    return float(stats.ks_2samp(_vector(tr_model, "tr_model"), _vector(tr_oracle, "tr_oracle")).pvalue)


# ---------------------------------------------------------------------------------------------
# TOFU (arXiv 2401.06121)


def _per_item(base_nll, perturbed_nll) -> Tuple[np.ndarray, np.ndarray]:
    base = _vector(base_nll, "base NLLs")
    pert = np.asarray(perturbed_nll, dtype=np.float64)
    if pert.ndim != 2 or pert.shape[0] != base.size or pert.shape[1] == 0:
        raise ValueError(f"perturbed NLLs must have shape (items={base.size}, options>=1), got {pert.shape}")
    if not np.all(np.isfinite(pert)):
        raise ValueError("perturbed NLLs contain NaN or inf")
    return base, pert


def truth_ratio(para_nll_mean, perturbed_nll_means) -> np.ndarray:
    """Per-item TOFU truth ratio ``R = exp(l_base - mean_j l_pert_j)``.

    ``para_nll_mean``: shape (N,), length-normalised NLL of the paraphrased answer (forget /
    retain) or of the true answer (real authors / world facts); ``perturbed_nll_means``: shape
    (N, J). ``R`` < 1 when the model prefers the base answer over the wrong ones. TOFU's code uses
    ``TR = 1/R``; feed either to the summaries below consistently.
    """
    base, pert = _per_item(para_nll_mean, perturbed_nll_means)
    return np.exp(base - pert.mean(axis=1))


def truth_ratio_forget(ratios) -> float:
    """Forget-split truth-ratio report ``mean(min(R, 1/R))`` (TOFU): 1 = the model cannot tell the
    true from the wrong answers. Symmetric, so it is the same for ``R`` and TOFU code's ``TR``."""
    r = _vector(ratios, "truth ratios")
    return float(np.minimum(r, 1.0 / r).mean())


def truth_ratio_utility(ratios) -> float:
    """Utility-split truth-ratio term ``mean(max(0, 1 - R))`` with ``R`` from :func:`truth_ratio`
    identical to TOFU code's ``mean(max(0, 1 - 1/TR))`` since ``TR = 1/R``."""
    r = _vector(ratios, "truth ratios")
    return float(np.maximum(0.0, 1.0 - r).mean())


def normalised_prob(true_nll_mean, perturbed_nll_means) -> np.ndarray:
    """Per-item TOFU probability on real authors / world facts:
    ``P(a) / (P(a) + sum_j P(a~_j))`` with ``P = exp(-l)`` on length-normalised NLLs, evaluated as
    ``1 / (1 + sum_j exp(l_a - l_j))`` (stable for large NLLs). The metric is the mean over items."""
    base, pert = _per_item(true_nll_mean, perturbed_nll_means)
    log_terms = np.concatenate([np.zeros((base.size, 1)), base[:, None] - pert], axis=1)
    return np.exp(-np.logaddexp.reduce(log_terms, axis=1))


def harmonic_mean(values) -> float:
    """Harmonic mean ``n / sum(1/v)`` (TOFU Model Utility over its 9 numbers); 0 if any value is 0.
    Raises ValueError for negative values."""
    arr = _vector(values, "values")
    if np.any(arr < 0):
        raise ValueError("harmonic mean needs non-negative values")
    if np.any(arr == 0):
        return 0.0
    return float(arr.size / np.sum(1.0 / arr))


# ---------------------------------------------------------------------------------------------
# Membership-inference scores (docs/metric_reference.md); all are high for non-members


def _lowest_fraction_mean(values: np.ndarray, k: float) -> float:
    if not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1], got {k}")
    count = max(1, int(math.floor(k * values.size)))
    return float(np.sort(values)[:count].mean())


def loss_score(token_logps) -> float:
    """Loss attack (Yeom et al. 2018): ``-mean_t log p(x_t | x_<t)``."""
    return float(-_vector(token_logps, "token_logps").mean())


def zlib_score(token_logps, text: str) -> float:
    """Zlib attack (Carlini et al. 2021, MUSE form): loss divided by the zlib-compressed length in
    bytes of the UTF-8 text, ``-mean_t lp_t / len(zlib.compress(text))``."""
    return loss_score(token_logps) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(token_logps, k: float = 0.4) -> float:
    """Min-K% Prob (Shi et al., arXiv 2310.16789): ``-mean`` of the lowest ``max(1, floor(k T))`` of
    the T token log-probs. k = 0.4 is MUSE's PrivLeak setting."""
    return -_lowest_fraction_mean(_vector(token_logps, "token_logps"), k)


def min_k_plus_plus_score(token_logps, mu, sigma, k: float = 0.4) -> float:
    """Min-K%++ (Zhang et al., arXiv 2404.02936): standardise each token log-prob by the mean
    ``mu_t`` and standard deviation ``sigma_t`` of ``log p`` under the model's next-token
    distribution (see :func:`logit_moments`), ``z_t = (lp_t - mu_t) / sigma_t``, then
    ``-mean`` of the lowest ``max(1, floor(k T))`` values of ``z``."""
    lp = _vector(token_logps, "token_logps")
    m, s = _vector(mu, "mu"), _vector(sigma, "sigma")
    if not lp.size == m.size == s.size:
        raise ValueError(f"token_logps, mu, sigma lengths differ: {lp.size}, {m.size}, {s.size}")
    if np.any(s <= 0):
        raise ValueError("sigma must be positive")
    return -_lowest_fraction_mean((lp - m) / s, k)


def logit_moments(logits: torch.Tensor, min_var: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-position mean and std of ``log p(v)`` under ``p = softmax(logits)`` over the last dim
    (Min-K%++), in float64. Use the logits that predicted each scored token (position t-1 for token t)."""
    return logp_moments(torch.log_softmax(logits.double(), dim=-1), min_var)


def logp_moments(logp: torch.Tensor, min_var: float = 1e-6) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mu = sum_v p log p`` and ``sigma = sqrt(max(sum_v p (log p)^2 - mu^2, min_var))`` of a
    log-softmax ``logp`` over its last dim, in its dtype."""
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp.square()).sum(-1) - mu.square()
    return mu, var.clamp_min(min_var).sqrt()


def exact_memorization(top) -> float:
    """Exact memorization (OpenUnlearning; Tirumala et al. 2022): the fraction of answer tokens the model
    predicts greedily under teacher forcing, ``mean_t 1[argmax p(.|y_<t) = y_t]``."""
    return float(np.mean(_vector(top, "top")))


def extraction_strength(top) -> float:
    """Extraction strength (Carlini et al. 2021, as OpenUnlearning reports it): ``1 - k*/|y|`` with ``k*`` the
    shortest answer prefix after which every remaining token is the greedy prediction (the length of the
    trailing run of correct predictions over ``|y|``). Deviation: 0 when even the last token is wrong
    (OpenUnlearning's loop reports ``1/|y|`` there)."""
    hits = _vector(top, "top") > 0.5
    run = len(hits) - (np.flatnonzero(~hits)[-1] + 1) if (~hits).any() else len(hits)
    return float(run / len(hits))


def privleak(auc: float, auc_oracle: float) -> float:
    """MUSE PrivLeak in percent (arXiv 2407.06460): ``(AUC - AUC_ref) / AUC_ref * 100`` with
    ``AUC_ref`` the oracle's (the retrained model's); ~0 ideal, negative = under-unlearning."""
    if auc_oracle <= 0:
        raise ValueError(f"auc_oracle must be positive, got {auc_oracle}")
    return (auc - auc_oracle) / auc_oracle * 100.0


# ---------------------------------------------------------------------------------------------
# ROUGE-L (Lin 2004): rouge_score's tokens (its tokenizer's rules, NLTK's Porter stems), memoised; the LCS in a
# rolling row

_ALPHANUMERIC_RUN = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1 << 16)
def rouge_tokens(text: str, stemmer: bool) -> Tuple[str, ...]:
    """``rouge_score.tokenize.tokenize(text, PorterStemmer() if stemmer else None)``: the lower-cased text's runs
    of ``[a-z0-9]``, each longer than 3 characters Porter-stemmed (``eval.porter``) when ``stemmer``."""
    tokens = _ALPHANUMERIC_RUN.findall(text.lower())
    return tuple(porter.stem(t) if stemmer and len(t) > 3 else t for t in tokens)


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(|a| |b|) time, O(|b|) memory)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str, stemmer: bool) -> Tuple[float, float]:
    """ROUGE-L (longest common token subsequence, Lin 2004) of ``prediction`` against ``reference``:
    ``(recall, f1)`` where recall = LCS / |ref| (TOFU, stemming on) and F1 the harmonic mean of LCS/|pred|
    and recall (MUSE, no stemming). Tokens are ``rouge_score``'s (``rouge_tokens``: lower-cased alphanumeric
    runs, Porter stems); the score is ``rouge_score.RougeScorer(["rougeL"]).score(reference, prediction)`` to the bit
    (tested), computed here because every stage scores the same references and many of the same answers:
    tokens are memoised and the LCS keeps one row of the table (``scripts/bench_speed.py`` section 5 times both:
    11.5x faster than the package on 4 stages x 1000 answer pairs)."""
    target, pred = rouge_tokens(reference, bool(stemmer)), rouge_tokens(prediction, bool(stemmer))
    if not target or not pred:
        return 0.0, 0.0
    lcs = lcs_length(target, pred)
    precision, recall = lcs / len(pred), lcs / len(target)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(recall), float(f1)
