"""Unlearning-trace detection: can this stage's model be told from the target by its answers or its activations?"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from unlearn_cli.bounds import Fraction, Integer, NonNegativeInt, PositiveFloat
from unlearn_cli.contracts import Metric
from unlearn_cli.metrics._common import greedy_requests
from unlearn_cli.registry import METRICS


def item_split(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, test) item indices: a seeded shuffle, at least one item on each side."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def detect(target: np.ndarray, stage: np.ndarray, features, test_fraction: float, seed: int, c: float) -> Dict[str, object]:
    """Train a binary classifier (0 = target, 1 = this stage) on the training items' two responses (or feature
    rows) and score the held-out items' two: ``acc``, ``auc`` and the held-out P(this stage) of each item's stage
    response (None for training items). ``features`` builds the classifier (a scikit-learn pipeline)."""
    from sklearn.metrics import roc_auc_score

    n = len(target)
    train, test = item_split(n, test_fraction, seed)
    x_train = np.concatenate([target[train], stage[train]])
    y_train = np.r_[np.zeros(len(train)), np.ones(len(train))]
    x_test = np.concatenate([target[test], stage[test]])
    y_test = np.r_[np.zeros(len(test)), np.ones(len(test))]
    clf = features(c).fit(x_train, y_train)
    p = clf.predict_proba(x_test)[:, 1]
    per_item: List[object] = [None] * n
    for i, prob in zip(test, p[len(test):]):
        per_item[int(i)] = float(prob)
    return {"acc": float(((p >= 0.5) == y_test).mean()), "auc": float(roc_auc_score(y_test, p)), "items": per_item}


def documents(response: str) -> str:
    """A response as the text classifier's document: behind a constant word, so that empty or punctuation-only
    responses (a collapsed model's) still have a vocabulary and stay distinguishable by their length."""
    return f"response {response}"


def text_classifier(c: float):
    """TF-IDF (word 1-2-grams and character 2-4-grams, sublinear tf) + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    return make_pipeline(make_union(words, chars), LogisticRegression(C=c, max_iter=2000))


def activation_probe(c: float):
    """Standardised features + logistic regression (a linear probe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


@METRICS.register("trace_detection")
class TraceDetection(Metric):
    """Unlearning-trace detection (Chen et al. 2025, arXiv 2506.14003): a binary classifier told the target's
    outputs from this stage's, on held-out prompts, for forget-relevant prompts (``relevant`` split) and
    forget-irrelevant ones (``irrelevant``). Two detectors per prompt kind:

    * ``text``: on the greedy response text alone (prompt excluded, as in the paper), TF-IDF word and character
      n-grams + logistic regression (the paper fine-tunes an LLM2Vec encoder on thousands of responses; a linear
      TF-IDF model is the small-data stand-in, and an encoder by path is not wired in yet);
    * ``act``: a linear probe on the model's hidden state (layer ``layer``) averaged over the prompt tokens.

    Items are split ``1 - test_fraction`` / ``test_fraction`` with ``seed`` (both models' outputs of an item on
    the same side, so a prompt never helps classify itself); keys ``trace_<kind>_<detector>_acc`` / ``_auc``
    (kind ``relevant`` / ``irrelevant``; 0.5 = undetectable). Computed at every stage after the target against the
    target's memoised outputs (at the target stage only memoised, so it needs the target stage); at an
    input-attack stage the attacked prompts' responses meet the target's plain ones. Per item: the held-out
    P(this stage) of the stage's response, ``trace_text_p`` / ``trace_act_p``."""

    higher_is_better = False  # the less detectable, the stealthier the unlearning
    version = 1
    baseline = "target"
    baseline_from_rows = False  # the target's hidden states are not in its rows: the target is evaluated in the run

    def __init__(self, relevant: str = "forget", irrelevant: str = "retain", test_fraction: Fraction = 0.3,
                 layer: Integer = -1, c: PositiveFloat = 1.0, seed: NonNegativeInt = 42):
        self.relevant, self.irrelevant, self.test_fraction = relevant, irrelevant, float(test_fraction)
        self.layer, self.c, self.seed = layer, float(c), seed
        self.splits = [relevant, irrelevant]

    def generation_requests(self):
        return greedy_requests(self.splits)

    def compute(self, scorer):
        target = scorer.baseline("target")
        if target is None or target is scorer:  # the target stage memoises what later stages compare with
            for split in self.splits:
                scorer.generations(split)
                scorer.activations(split, self.layer)
            return {}
        out = {}
        for kind, split in (("relevant", self.relevant), ("irrelevant", self.irrelevant)):
            for detector, read, features in (
                    ("text", lambda s, sp: np.array([documents(t) for t in s.generations(sp)], dtype=object),
                     text_classifier),
                    ("act", lambda s, sp: s.activations(sp, self.layer), activation_probe)):
                found = detect(read(target, split), read(scorer, split), features, self.test_fraction,
                               self.seed, self.c)
                out[f"trace_{kind}_{detector}_acc"], out[f"trace_{kind}_{detector}_auc"] = found["acc"], found["auc"]
                scorer.record(split, f"trace_{detector}_p", found["items"])
        return out
