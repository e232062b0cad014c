"""Text normalisation and matching shared by generation metrics."""

import re
import string

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise(text: str) -> str:
    """Lower-case, punctuation to spaces, collapse whitespace."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def contains_value(output: str, value: str) -> bool:
    """Whether the normalised ``value`` occurs in the normalised ``output`` on word boundaries."""
    needle = normalise(value)
    if not needle:
        return False
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalise(output)) is not None
