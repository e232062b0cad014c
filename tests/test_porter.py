"""The Porter stemmer of ``eval.porter`` against the paper's examples, NLTK's extensions, and NLTK itself."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from conftest import SHARED_DATA
from unlearn_cli.eval import porter
from unlearn_cli.eval import stats as st

# the paper's step examples carried through every step, and NLTK's extensions (ties, skies, dying, generalli, ...)
HAND = {
    "caresses": "caress", "ponies": "poni", "ties": "tie", "cats": "cat", "feed": "feed", "agreed": "agre",
    "plastered": "plaster", "bled": "bled", "motoring": "motor", "sing": "sing", "conflated": "conflat",
    "troubled": "troubl", "sized": "size", "hopping": "hop", "tanned": "tan", "falling": "fall", "hissing": "hiss",
    "fizzed": "fizz", "failing": "fail", "filing": "file", "happy": "happi", "sky": "sky", "skies": "sky",
    "dying": "die", "news": "news", "innings": "inning", "cried": "cri", "relational": "relat",
    "conditional": "condit", "rationally": "ration", "generalization": "gener", "generalli": "gener",
    "hopefulli": "hope", "analogies": "analog", "archaeology": "archaeolog", "triplicate": "triplic",
    "formative": "form", "electricity": "electr", "goodness": "good", "revival": "reviv", "allowance": "allow",
    "inference": "infer", "airliner": "airlin", "adjustable": "adjust", "defensible": "defens",
    "irritant": "irrit", "replacement": "replac", "adjustment": "adjust", "dependent": "depend",
    "adoption": "adopt", "communism": "commun", "activate": "activ", "angulariti": "angular",
    "homologous": "homolog", "effective": "effect", "bowdlerize": "bowdler", "probate": "probat", "rate": "rate",
    "cease": "ceas", "controll": "control", "roll": "roll", "yyyy": "yyyi", "Running": "run", "is": "is",
}


def test_hand_values():
    assert {w: porter.stem(w) for w in HAND} == HAND


def test_measure_and_consonants_hand_values():
    # the paper's examples of m: TR, EE, TREE, Y, BY (0); TROUBLE, OATS, TREES, IVY (1); TROUBLES, PRIVATE, OATEN (2)
    assert [porter.measure(w) for w in ("tr", "ee", "tree", "y", "by")] == [0] * 5
    assert [porter.measure(w) for w in ("trouble", "oats", "trees", "ivy")] == [1] * 4
    assert [porter.measure(w) for w in ("troubles", "private", "oaten", "orrery")] == [2] * 4
    assert porter.consonants("toy") == [True, False, True] and porter.consonants("syzygy") == [
        True, False, True, False, True, False]


def _nltk():
    pytest.importorskip("nltk")
    from nltk.stem.porter import PorterStemmer
    return PorterStemmer()


def _synthetic_words(n: int, seed: int = 0) -> list:
    """Short random stems (vowels, y, consonants incl. doubles and w/x, a digit) with zero to two suffixes that
    Porter's steps test for: every rule and condition is reached many times."""
    suffixes = [s for step in (porter.STEP_1A, porter.STEP_2, porter.STEP_3, porter.STEP_4) for s, _, _ in step] + \
        ["ied", "eed", "ed", "ing", "y", "logi", "e", "ll", "at", "bl", "iz", "sion", "tion"]
    rng = random.Random(seed)
    words = set()
    while len(words) < n:
        stem = "".join(rng.choice("aeiouybcdlstzwx0") for _ in range(rng.randint(0, 7)))
        word = stem + "".join(rng.choice(suffixes) for _ in range(rng.randint(0, 2)))
        if word:
            words.add(word)
    return sorted(words)


def test_equals_nltk_on_synthetic_words():
    nltk_stemmer = _nltk()
    words = _synthetic_words(30_000)
    assert [w for w in words if porter.stem(w) != nltk_stemmer.stem(w)] == []


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the benchmark files (../shared/data)")
def test_equals_nltk_on_every_word_of_the_benchmark_files():
    nltk_stemmer = _nltk()
    words = set()
    for path in sorted(SHARED_DATA.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".csv"):
            words |= set(re.findall(r"[a-z0-9]+", path.read_text(encoding="utf-8", errors="ignore").lower()))
    assert len(words) > 10_000
    assert [w for w in sorted(words) if porter.stem(w) != nltk_stemmer.stem(w)] == []


def test_rouge_tokens_equal_rouge_score_tokenizer():
    pytest.importorskip("rouge_score")
    from rouge_score import tokenizers
    texts = ["The Cats were SITTING, sat; sits.", "", "?!", "naïve café — 42nd street's runners", "a  b\tc\nd",
             "Ünïcödé İstanbul ŞEHİR", "generalization-of_hopefulli 3.14"]
    texts += [" ".join(_synthetic_words(12, seed=s)) for s in range(50)]
    for stemmer in (True, False):
        package = tokenizers.DefaultTokenizer(use_stemmer=stemmer)
        assert [st.rouge_tokens(t, stemmer) for t in texts] == [tuple(package.tokenize(t)) for t in texts]


def test_scoring_rouge_imports_neither_nltk_nor_scipy_stats():
    code = ("import sys; from unlearn_cli.eval.stats import rouge_l; "
            "assert rouge_l('the cats sat', 'a cat sits', True)[0] > 0; "
            "print(sorted(m for m in ('nltk', 'rouge_score', 'scipy.stats', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
