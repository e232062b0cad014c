"""Plain data records shared by every benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass(frozen=True)
class QAItem:
    """One question/answer pair.

    ``value`` is the short gold fact that must appear in a generated answer for it to count as
    correct (the whole answer when the benchmark has no short form). ``perturbed`` holds wrong
    answers in the same wording, ``paraphrased_answer`` a rewording of ``answer``.
    """

    question: str
    answer: str
    value: str
    entity: str = ""
    perturbed: tuple = ()
    paraphrased_answer: Optional[str] = None


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question; ``answer`` indexes ``choices``."""

    question: str
    choices: tuple
    answer: int
    entity: str = ""


@dataclass
class BenchmarkData:
    """Everything a run needs from a benchmark.

    ``train`` holds the unlearning data (``forget``, and ``retain`` when the benchmark has it);
    ``qa`` / ``mcq`` / ``texts`` hold evaluation splits by name; ``corpus`` is raw text used to
    train a tokenizer for locally built models.
    """

    name: str
    train: Dict[str, List[QAItem]]
    qa: Dict[str, List[QAItem]] = field(default_factory=dict)
    mcq: Dict[str, List[MCQItem]] = field(default_factory=dict)
    texts: Dict[str, List[str]] = field(default_factory=dict)
    corpus: List[str] = field(default_factory=list)
