"""Plain data records shared by every benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from unlearn_cli.errors import UserError


@dataclass(frozen=True)
class QAItem:
    """One question/answer pair.

    ``value`` is the short gold fact that must appear in a generated answer for it to count as
    correct (the whole answer when the benchmark has no short form). ``perturbed`` holds wrong
    answers in the same wording, ``paraphrased_answer`` a rewording of ``answer``,
    ``paraphrased_question`` a rewording of ``question`` (TOFU). Raw-text items (MUSE, WMDP corpora)
    have an empty ``question`` and the whole text as ``answer``/``value``.
    """

    question: str
    answer: str
    value: str
    entity: str = ""
    perturbed: tuple = ()
    paraphrased_answer: Optional[str] = None
    paraphrased_question: Optional[str] = None


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question; ``answer`` indexes ``choices``. ``entity`` groups items (an MMLU
    subject's file stem: same-subject demonstrations); ``subject`` is the prompt header's topic
    ("The following are multiple choice questions (with answers) about <subject>."), None = no header."""

    question: str
    choices: tuple
    answer: int
    entity: str = ""
    subject: Optional[str] = None


@dataclass
class BenchmarkData:
    """Everything a run needs from a benchmark.

    ``train`` holds the unlearning data (``forget``, and ``retain`` when the benchmark has it);
    ``qa`` / ``mcq`` / ``texts`` hold evaluation splits by name; ``corpus`` is raw text used to
    train a tokenizer for locally built models. ``missing`` maps a split that the benchmark
    could not provide (e.g. a gated forget corpus) to a one-line reason; ``train_split`` raises it.
    ``published`` holds constants of the benchmark's paper that metrics fall back on without an
    oracle stage (``privleak_oracle_auc``: the retrained model's PrivLeak AUC).
    """

    name: str
    train: Dict[str, List[QAItem]]
    qa: Dict[str, List[QAItem]] = field(default_factory=dict)
    mcq: Dict[str, List[MCQItem]] = field(default_factory=dict)
    texts: Dict[str, List[str]] = field(default_factory=dict)
    corpus: List[str] = field(default_factory=list)
    missing: Dict[str, str] = field(default_factory=dict)
    published: Dict[str, float] = field(default_factory=dict)

    def train_split(self, split: str) -> List[QAItem]:
        """The unlearning split ``split``; a UserError with the recorded reason if it is absent."""
        if split in self.train:
            return self.train[split]
        reason = self.missing.get(split) or f"known: {', '.join(sorted(self.train)) or '(none)'}"
        raise UserError(f"benchmark '{self.name}' has no '{split}' training split: {reason}")
