"""Estimators in unlearn_cli.eval.stats against closed forms and brute-force computations."""

import itertools
import math
import zlib

import numpy as np
import pytest
import torch

from unlearn_cli.eval import stats as st


# --------------------------------------------------------------------------- leak@k

def _leak_brute(n, c, k):
    labels = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(labels[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_leak_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert st.leak_at_k(n, c, k) == pytest.approx(_leak_brute(n, c, k), abs=1e-12)


def test_leak_at_k_edge_cases():
    assert st.leak_at_k(10, 0, 3) == 0.0
    assert st.leak_at_k(10, 10, 1) == 1.0
    assert st.leak_at_k(10, 8, 3) == 1.0          # n - c = 2 < k
    assert st.leak_at_k(10, 1, 1) == pytest.approx(0.1)
    assert st.leak_at_k(200, 1, 128) == pytest.approx(128 / 200)
    assert st.leak_at_k(200, 5, 128) == pytest.approx(1 - math.comb(195, 128) / math.comb(200, 128))


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (3, 1, 0), (3, 4, 1), (3, -1, 1), (0, 0, 1)])
def test_leak_at_k_rejects_invalid(n, c, k):
    with pytest.raises(ValueError):
        st.leak_at_k(n, c, k)


def test_expected_max_matches_subset_enumeration():
    scores = [0.3, 0.9, 0.1, 0.5, 0.5, 0.7]
    for k in range(1, len(scores) + 1):
        subsets = list(itertools.combinations(scores, k))
        brute = sum(max(s) for s in subsets) / len(subsets)
        assert st.expected_max_at_k(scores, k) == pytest.approx(brute, abs=1e-12)


def test_expected_max_binary_scores_equal_leak_at_k():
    scores = [1.0] * 3 + [0.0] * 9
    for k in (1, 4, 9, 10, 12):
        assert st.expected_max_at_k(scores, k) == pytest.approx(st.leak_at_k(12, 3, k))
    with pytest.raises(ValueError):
        st.expected_max_at_k(scores, 13)


# --------------------------------------------------------------------------- ROC-AUC

def _auc_pairs(members, nonmembers):
    total = 0.0
    for m in members:
        for h in nonmembers:
            total += 1.0 if m > h else (0.5 if m == h else 0.0)
    return total / (len(members) * len(nonmembers))


def test_roc_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    members = rng.integers(0, 5, size=13).astype(float)      # many ties
    nonmembers = rng.integers(0, 5, size=9).astype(float)
    assert st.roc_auc(members, nonmembers) == pytest.approx(_auc_pairs(members, nonmembers), abs=1e-12)


def test_roc_auc_direction_and_hand_values():
    assert st.roc_auc([3.0, 4.0], [1.0, 2.0]) == 1.0       # members score higher -> 1
    assert st.roc_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert st.roc_auc([1.0, 1.0], [1.0]) == 0.5
    # pairs: (2,1)=1, (2,3)=0, (3,1)=1, (3,3)=0.5 -> 2.5 / 4
    assert st.roc_auc([2.0, 3.0], [1.0, 3.0]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        st.roc_auc([], [1.0])


# --------------------------------------------------------------------------- KS forget quality

def _ks_stat(a, b):
    grid = sorted(set(a) | set(b))
    return max(abs(sum(x <= g for x in a) / len(a) - sum(x <= g for x in b) / len(b)) for g in grid)


def _ks_exact_pvalue(a, b):
    """Permutation distribution of D over all ways to split the pooled (distinct) values."""
    pooled = list(a) + list(b)
    observed = _ks_stat(a, b)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(a)):
        chosen = set(idx)
        left = [pooled[i] for i in idx]
        right = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += _ks_stat(left, right) >= observed - 1e-12
        total += 1
    return hits / total


def test_ks_matches_exact_permutation_distribution():
    rng = np.random.default_rng(3)
    for _ in range(3):
        a, b = rng.normal(size=5).tolist(), rng.normal(0.8, size=4).tolist()
        assert st.ks_forget_quality(a, b) == pytest.approx(_ks_exact_pvalue(a, b), abs=1e-9)


def test_ks_known_values_and_reciprocal_invariance():
    # fully separated samples of 5 and 5: only 2 of C(10,5) = 252 splits reach D = 1
    assert st.ks_forget_quality([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert st.ks_forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    r_model, r_oracle = np.array([0.2, 0.5, 0.9, 1.3]), np.array([0.4, 0.7, 1.1, 2.0, 3.0])
    assert st.ks_forget_quality(r_model, r_oracle) == pytest.approx(st.ks_forget_quality(1 / r_model, 1 / r_oracle))


# --------------------------------------------------------------------------- TOFU statistics

def test_truth_ratio_hand_numbers():
    para = [1.0, 2.0]
    pert = [[2.0, 4.0], [1.0, 1.0]]
    r = st.truth_ratio(para, pert)
    assert r == pytest.approx([math.exp(1.0 - 3.0), math.exp(2.0 - 1.0)])
    # forget report: min(R, 1/R) = e^-2 and e^-1
    assert st.truth_ratio_forget(r) == pytest.approx((math.exp(-2) + math.exp(-1)) / 2)
    # utility term: max(0, 1 - R) = 1 - e^-2 and 0
    assert st.truth_ratio_utility(r) == pytest.approx((1 - math.exp(-2)) / 2)


def test_truth_ratio_both_documented_conventions_agree():
    para = np.array([0.7, 1.9, 1.2])
    pert = np.array([[1.5, 2.0, 0.3], [1.0, 1.1, 1.2], [1.2, 1.2, 1.2]])
    r = st.truth_ratio(para, pert)                      # exp(l_base - mean l_pert)
    tr = np.exp(pert.mean(axis=1) - para)               # TOFU's code: exp(mean l_pert - l_base)
    assert r == pytest.approx(1 / tr)
    assert st.truth_ratio_forget(r) == pytest.approx(np.mean(np.minimum(tr, 1 / tr)))
    assert st.truth_ratio_utility(r) == pytest.approx(np.mean(np.maximum(0, 1 - 1 / tr)))
    assert st.truth_ratio(para[2:], pert[2:]) == pytest.approx([1.0])


def test_truth_ratio_rejects_bad_shapes():
    with pytest.raises(ValueError):
        st.truth_ratio([1.0, 2.0], [[1.0, 2.0]])
    with pytest.raises(ValueError):
        st.truth_ratio([1.0], [[]])


def test_normalised_prob_hand_numbers_and_stability():
    # P(a) = e^-1, perturbed e^-2, e^-3
    expected = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert st.normalised_prob([1.0], [[2.0, 3.0]]) == pytest.approx([expected])
    big = st.normalised_prob([1000.0], [[1000.0, 1000.0]])
    assert big == pytest.approx([1 / 3])


def test_harmonic_mean_hand_numbers():
    assert st.harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))
    assert st.harmonic_mean([0.5]) == 0.5
    assert st.harmonic_mean([0.3, 0.0, 0.9]) == 0.0
    with pytest.raises(ValueError):
        st.harmonic_mean([0.5, -0.1])


# --------------------------------------------------------------------------- MIA scores

LOGPS = [-0.5, -3.0, -1.0, -2.0, -0.1]


def test_loss_zlib_min_k_hand_numbers():
    assert st.loss_score(LOGPS) == pytest.approx(6.6 / 5)
    text = "hello hello hello world"
    assert st.zlib_score(LOGPS, text) == pytest.approx((6.6 / 5) / len(zlib.compress(text.encode())))
    assert st.min_k_score(LOGPS, 0.4) == pytest.approx((3.0 + 2.0) / 2)   # floor(0.4*5) = 2 lowest
    assert st.min_k_score(LOGPS, 0.1) == pytest.approx(3.0)               # at least one token
    assert st.min_k_score(torch.tensor(LOGPS), 1.0) == pytest.approx(st.loss_score(LOGPS))
    with pytest.raises(ValueError):
        st.min_k_score(LOGPS, 0.0)


def test_min_k_plus_plus_three_token_hand_computation():
    probs = [[0.8, 0.2], [0.5, 0.3, 0.2], [0.1, 0.9]]
    observed = [1, 0, 1]                       # index of the actual next token at each position
    hand_z = []
    for p, tok in zip(probs, observed):
        mu = sum(q * math.log(q) for q in p)
        var = sum(q * math.log(q) ** 2 for q in p) - mu ** 2
        hand_z.append((math.log(p[tok]) - mu) / math.sqrt(var))
    lps, mus, sigmas = [], [], []
    for p, tok in zip(probs, observed):
        logits = torch.log(torch.tensor(p, dtype=torch.float64)) + 3.0   # shift: softmax-invariant
        mu, sigma = st.logit_moments(logits)
        mus.append(float(mu))
        sigmas.append(float(sigma))
        lps.append(math.log(p[tok]))
    assert mus == pytest.approx([sum(q * math.log(q) for q in p) for p in probs])
    k_low = sorted(hand_z)[:1]                 # floor(0.4 * 3) = 1
    assert st.min_k_plus_plus_score(lps, mus, sigmas, 0.4) == pytest.approx(-k_low[0])
    assert st.min_k_plus_plus_score(lps, mus, sigmas, 1.0) == pytest.approx(-sum(hand_z) / 3)


def test_logit_moments_batched_and_clamped():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 1.0, 0.0]]])
    mu, sigma = st.logit_moments(logits)
    assert mu.shape == sigma.shape == (1, 2)
    assert float(mu[0, 0]) == pytest.approx(math.log(1 / 3))
    assert float(sigma[0, 0]) == pytest.approx(1e-3)   # uniform: variance 0, clamped at 1e-6


def test_privleak_percent():
    assert st.privleak(0.4772, 0.4772) == 0.0
    assert st.privleak(0.1, 0.5) == pytest.approx(-80.0)
    with pytest.raises(ValueError):
        st.privleak(0.5, 0.0)


# --------------------------------------------------------------------------- ROUGE-L

def test_rouge_l_hand_counted_lcs():
    # LCS("a cat sat on mat", "the cat sat on the mat") = "cat sat on mat" = 4 tokens
    recall, f1 = st.rouge_l("a cat sat on mat", "the cat sat on the mat", stemmer=False)
    precision = 4 / 5
    assert recall == pytest.approx(4 / 6)
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))


def test_rouge_l_stemming_and_disjoint():
    assert st.rouge_l("cats sitting", "cat sit", stemmer=False) == (0.0, 0.0)
    assert st.rouge_l("cats sitting", "cat sit", stemmer=True) == pytest.approx((1.0, 1.0))
    assert st.rouge_l("", "cat sit", stemmer=True) == (0.0, 0.0)


def test_lcs_length_hand_values():
    assert st.lcs_length("ABCBDAB", "BDCABA") == 4  # CLRS's example: BCBA
    assert st.lcs_length("", "abc") == 0 and st.lcs_length("abc", "abc") == 3 and st.lcs_length("abc", "def") == 0


def test_rouge_l_equals_rouge_score_package_on_the_benchmark_texts():
    """Bit for bit rouge_score's RougeScorer on every answer of the embedded benchmark scored against
    another item's (and its own) answer, with and without stemming, plus empty and punctuation-only text."""
    from rouge_score import rouge_scorer
    from unlearn_cli.data.fictional import generate as fictional
    answers = [it.answer for split in ("forget", "retain", "forget_paraphrase") for it in fictional(num_people=20).qa[split]]
    texts = answers + ["", "?!", "The Cats were SITTING, sat; sits."]
    pairs = [(a, b) for a, b in zip(texts, texts[3:] + texts[:3])] + [(a, a) for a in texts[:20]]
    for stemmer in (True, False):
        ref = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)
        for prediction, reference in pairs:
            score = ref.score(reference, prediction)["rougeL"]
            assert st.rouge_l(prediction, reference, stemmer) == (float(score.recall), float(score.fmeasure))


def test_exact_memorization_and_extraction_strength_hand_values():
    assert st.exact_memorization([1, 0, 1, 1]) == pytest.approx(0.75)
    assert st.extraction_strength([0, 1, 1, 1]) == pytest.approx(0.75)  # the answer reproduced after one token
    assert st.extraction_strength([1, 1, 0, 1]) == pytest.approx(0.25)  # only the last token: k* = 3 of 4
    assert st.extraction_strength([1, 1, 1, 1]) == 1.0  # reproduced from the prompt alone
    assert st.extraction_strength([1, 1, 1, 0]) == 0.0  # no suffix is reproduced
