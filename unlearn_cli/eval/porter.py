"""The Porter stemmer (Porter 1980, "An algorithm for suffix stripping", Program 14(3)) as NLTK's
``PorterStemmer()`` runs it by default (mode ``NLTK_EXTENSIONS``), which is what ``rouge_score`` stems with.

Why not call NLTK: importing ``nltk.stem`` runs ``nltk/__init__`` (about 1 s here: it pulls scipy.stats and
scikit-learn in), and every run that scores ROUGE paid that. This module is the same function of a word, checked
word for word against NLTK in ``tests/test_porter.py`` on every distinct word of the benchmark files and on a
list of hard cases.

The algorithm: a word is split into consonant (c) / vowel (v) runs, ``y`` being a vowel after a consonant; its
*measure* m is the number of ``vc`` pairs (``[C](VC){m}[V]``). Steps 1a, 1b, 1c, 2, 3, 4, 5a and 5b each try
their suffixes in order; the first suffix the word ends with decides the step (its condition holding or not).
NLTK's extensions over the paper, all kept:

- a pool of irregular forms returned as they are (``skies`` -> ``sky``, ``dying`` -> ``die``, ``news``, ...);
- words of at most two letters are returned unchanged;
- step 1a: a four-letter ``-ies`` word becomes ``-ie`` (``ties`` -> ``tie``);
- step 1b: ``-ied`` becomes ``-ie`` in a four-letter word and ``-i`` otherwise, before any other 1b rule;
- the *o condition also holds for a two-letter stem vowel + consonant;
- step 1c: ``y`` -> ``i`` only after a consonant that is not the first letter;
- step 2: ``-alli`` -> ``-al`` (when m > 0) and then step 2 again; ``-bli`` -> ``-ble`` (Martin Porter's
  change of the paper's ``-abli``); ``-fulli`` -> ``-ful``; ``-logi`` -> ``-log`` when the word without its
  last three letters has m > 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional, Sequence, Tuple

VOWELS = frozenset("aeiou")

IRREGULAR = {"skies": "sky", "sky": "sky", "dying": "die", "lying": "lie", "tying": "tie", "news": "news",
             "innings": "inning", "inning": "inning", "outings": "outing", "outing": "outing",
             "cannings": "canning", "canning": "canning", "howe": "howe", "proceed": "proceed",
             "exceed": "exceed", "succeed": "succeed"}


def consonants(word: str) -> list:
    """Per letter: True for a consonant (``y`` is one at the start and after a vowel)."""
    flags: list = []
    for i, ch in enumerate(word):
        flags.append(ch not in VOWELS and (ch != "y" or i == 0 or not flags[i - 1]))
    return flags


def measure(stem: str) -> int:
    """m of ``[C](VC){m}[V]``: the number of vowel runs followed by a consonant."""
    flags = consonants(stem)
    return sum(1 for i in range(1, len(flags)) if flags[i] and not flags[i - 1])


def has_vowel(stem: str) -> bool:
    return not all(consonants(stem))


def ends_double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and consonants(word)[-1]


def ends_cvc(word: str) -> bool:
    """*o: the stem ends consonant-vowel-consonant, the last not w, x or y (or is a two-letter vowel-consonant)."""
    if len(word) == 2:
        flags = consonants(word)
        return not flags[0] and flags[1]
    if len(word) < 3:
        return False
    flags = consonants(word)
    return flags[-3] and not flags[-2] and flags[-1] and word[-1] not in "wxy"


Rule = Tuple[str, str, Optional[Callable[[str], bool]]]


def first_suffix(word: str, rules: Sequence[Rule]) -> str:
    """The step of ``rules`` (suffix, replacement, condition on the stem): the first suffix ``word`` ends with
    is replaced when its condition holds; the word is left as it is otherwise, or when no suffix matches."""
    for suffix, replacement, condition in rules:
        if word.endswith(suffix):
            stem = word[:len(word) - len(suffix)]
            return stem + replacement if condition is None or condition(stem) else word
    return word


def m_positive(stem: str) -> bool:
    return measure(stem) > 0


def m_above_one(stem: str) -> bool:
    return measure(stem) > 1


STEP_1A = (("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None))
STEP_2 = tuple((s, r, m_positive) for s, r in (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"), ("bli", "ble"),
    ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"),
    ("ator", "ate"), ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"), ("fulli", "ful"))) + \
    (("logi", "log", lambda stem: m_positive(stem + "l")),)  # NLTK: m of the word without its last 3 letters
STEP_3 = tuple((s, r, m_positive) for s, r in (
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", "")))
STEP_4 = tuple((s, "", m_above_one) for s in ("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement",
                                              "ment", "ent")) + \
    (("ion", "", lambda stem: measure(stem) > 1 and stem[-1:] in ("s", "t")),) + \
    tuple((s, "", m_above_one) for s in ("ou", "ism", "ate", "iti", "ous", "ive", "ize"))


def step_1a(word: str) -> str:
    if len(word) == 4 and word.endswith("ies"):
        return word[:-3] + "ie"
    return first_suffix(word, STEP_1A)


def step_1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        return word[:-1] if m_positive(word[:-3]) else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and has_vowel(word[:-len(suffix)]):
            stem = word[:-len(suffix)]
            break
    else:
        return word
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if ends_double_consonant(stem):
        return stem if stem[-1] in "lsz" else stem[:-1]
    return stem + "e" if measure(stem) == 1 and ends_cvc(stem) else stem


def step_1c(word: str) -> str:
    if word.endswith("y") and len(word) > 2 and consonants(word)[-2]:
        return word[:-1] + "i"
    return word


def step_2(word: str) -> str:
    if word.endswith("alli") and m_positive(word[:-4]):
        return step_2(word[:-4] + "al")
    return first_suffix(word, STEP_2)


def step_5a(word: str) -> str:
    if word.endswith("e"):
        m = measure(word[:-1])
        if m > 1 or (m == 1 and not ends_cvc(word[:-1])):
            return word[:-1]
    return word


def step_5b(word: str) -> str:
    return word[:-1] if word.endswith("ll") and measure(word[:-1]) > 1 else word


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The Porter stem of ``word`` (lower-cased first), as ``nltk.stem.porter.PorterStemmer().stem(word)``."""
    word = word.lower()
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 2:
        return word
    for step in (step_1a, step_1b, step_1c, step_2):
        word = step(word)
    word = first_suffix(word, STEP_3)
    word = first_suffix(word, STEP_4)
    return step_5b(step_5a(word))
