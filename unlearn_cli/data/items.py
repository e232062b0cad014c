"""Plain data records shared by every benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Dict, List, Literal, Optional, Tuple

from unlearn_cli.bounds import Range
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


WindowLength = Annotated[int, Range(2)]  # one <bos> and at least one token


@dataclass(frozen=True)
class TextWindows:
    """How raw training text (empty-question items: articles, corpus documents) becomes training rows.

    ``concat``: the texts joined by a blank line, tokenised once and cut into windows of ``<bos>`` +
    ``max_length - 1`` tokens, the last window completed with tokens from the start (MUSE's
    dataset code); ``per_document``: ``<bos>`` + the first ``max_length - 1`` tokens of each text
    (the WMDP RMU / NPO code's truncation). Every token of a row is supervised.
    """

    max_length: WindowLength = 2048
    mode: Literal["concat", "per_document"] = "concat"

    def capped(self, context: Optional[int]) -> "TextWindows":
        """The same windows, no longer than a model context of ``context`` positions."""
        return TextWindows(min(self.max_length, context), self.mode) if context else self


@dataclass
class BenchmarkData:
    """Everything a run needs from a benchmark.

    ``train`` holds the unlearning data (``forget``, and ``retain`` when the benchmark has it);
    ``qa`` / ``mcq`` / ``texts`` hold evaluation splits by name; ``corpus`` is raw text used to
    train a tokenizer for locally built models. ``missing`` maps a split that the benchmark
    could not provide (e.g. a gated forget corpus) to a one-line reason; ``train_split`` raises it.
    ``published`` holds constants of the benchmark's paper that metrics fall back on without an
    oracle stage (``privleak_oracle_auc``: the retrained model's PrivLeak AUC); ``windows`` how its
    raw training text is cut into rows; ``refusals`` the benchmark's own refusal sentences (TOFU's
    ``idontknow.jsonl``), which refusal-based methods prefer to the project's bank; ``forget_prefixes`` how the
    names of forget-side metric keys begin (``worst_case``).
    """

    name: str
    train: Dict[str, List[QAItem]]
    qa: Dict[str, List[QAItem]] = field(default_factory=dict)
    mcq: Dict[str, List[MCQItem]] = field(default_factory=dict)
    texts: Dict[str, List[str]] = field(default_factory=dict)
    corpus: List[str] = field(default_factory=list)
    missing: Dict[str, str] = field(default_factory=dict)
    published: Dict[str, float] = field(default_factory=dict)
    windows: TextWindows = field(default_factory=TextWindows)
    refusals: List[str] = field(default_factory=list)
    forget_prefixes: Tuple[str, ...] = ("forget",)  # metric keys measuring forget knowledge start with one of these

    def train_split(self, split: str) -> List[QAItem]:
        """The unlearning split ``split``; a UserError with the recorded reason if it is absent."""
        if split in self.train:
            return self.train[split]
        reason = self.missing.get(split) or f"known: {', '.join(sorted(self.train)) or '(none)'}"
        raise UserError(f"benchmark '{self.name}' has no '{split}' training split: {reason}")
