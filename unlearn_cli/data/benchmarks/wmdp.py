"""WMDP hazardous-knowledge multiple choice (arXiv 2403.03218); layout in docs/benchmark_reference.md.

The local copy holds the v1 question files only (1520 bio, 2225 cyber); the Hub fallback
``cais/wmdp`` is the April-2024 release (1273 / 1987, re-ordered choices), so scores from the two
are not comparable. The unlearning corpora (``cais/wmdp-corpora``; bio-forget is gated) are not
shipped: pass ``forget_corpus`` (and optionally ``retain_corpus``) as local files. Without a forget
corpus the benchmark evaluates only, and ``BenchmarkData.train_split('forget')`` says why.

``forget_source=questions`` is a SMOKE-TEST PROXY, not the official protocol: the forget set is
the (``max_items``-capped) WMDP questions themselves as QA items (question -> correct choice
text, also evaluated as QA split ``wmdp_<subset>_qa``); with ``mmlu_max_per_subject`` set, the
MMLU test items (first n per subject of ``mmlu_subjects``) are the MCQ utility split ``mmlu`` (its
dev rows the few-shot pool ``mmlu_dev``) and,
absent a retain corpus, the retain set (QA split ``mmlu_qa``). This lets ``model=tiny`` build a
target/oracle and run every stage locally; its scores say nothing about real WMDP unlearning.
"""

from typing import List, Literal, Optional

from unlearn_cli.bounds import NonNegativeInt, PositiveInt
from unlearn_cli.contracts import Benchmark
from unlearn_cli.data.benchmarks.mmlu import Mmlu
from unlearn_cli.data.items import BenchmarkData, MCQItem, QAItem, TextWindows, WindowLength
from unlearn_cli.data.loaders import (Source, Table, corpus_of, head, mcq_item, read_corpus,
                                      text_item)
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS

HUB_ID = "cais/wmdp"


class _Wmdp(Benchmark):
    """Shared loader of one WMDP subset; subclasses set ``subset`` ('bio' or 'cyber')."""

    subset = ""
    topic = ""
    max_length = 512
    loader_version = 2

    def __init__(self, data_dir: Optional[str] = None, forget_corpus: Optional[str] = None,
                 retain_corpus: Optional[str] = None, min_len: NonNegativeInt = 50, max_items: Optional[PositiveInt] = None,
                 forget_source: Literal["corpus", "questions"] = "corpus", mmlu_max_per_subject: Optional[PositiveInt] = None,
                 mmlu_subjects: Optional[List[str]] = None, mmlu_data_dir: Optional[str] = None,
                 max_length: Optional[WindowLength] = None, windows: Literal["concat", "per_document"] = "per_document"):
        if forget_source not in ("corpus", "questions"):
            raise UserError(f"benchmark.forget_source must be corpus or questions, got {forget_source!r}")
        if forget_source == "questions" and forget_corpus is not None:
            raise UserError("benchmark.forget_source=questions and benchmark.forget_corpus exclude each other")
        self.source = Source.resolve("WMDP", "wmdp", HUB_ID, data_dir, f"the WMDP question files ({self.subset}-questions.json)")
        self.mmlu = (Mmlu(data_dir=mmlu_data_dir, subjects=mmlu_subjects, max_per_subject=mmlu_max_per_subject)
                     if mmlu_max_per_subject is not None else None)
        self.windows = TextWindows(max_length or self.max_length, windows)
        self.settings = dict(forget_corpus=forget_corpus, retain_corpus=retain_corpus, min_len=min_len,
                             max_items=max_items, forget_source=forget_source,
                             mmlu=self.mmlu.cache_key() if self.mmlu else None,
                             windows=[self.windows.max_length, self.windows.mode])

    @property
    def name(self) -> str:
        """Registry / split name, e.g. ``wmdp_bio``."""
        return f"wmdp_{self.subset}"

    def cache_key(self) -> dict:
        """Everything that determines the loaded data."""
        return {"name": self.name, "loader_version": self.loader_version, "source": self.source.describe(),
                **self.settings}

    def load(self) -> BenchmarkData:
        """MCQ split ``wmdp_<subset>`` (+ ``mmlu`` when ``mmlu_max_per_subject`` is set) plus the
        training data: local corpora as raw-text items, or the question proxy (class docstring)."""
        table = Table(f"{self.subset}-questions.json", f"wmdp-{self.subset}", "test",
                      "a JSON array of {question, choices (4 strings), answer (0-3)}")
        items = head([mcq_item(row, where, self.name, subject=self.topic) for where, row in self.source.rows(table)],
                     self.settings["max_items"])
        data = BenchmarkData(name=self.name, train={}, mcq={self.name: items}, windows=self.windows,
                             forget_prefixes=(self.name,))
        if self.mmlu is not None:
            data.mcq.update(self.mmlu.load().mcq)  # mmlu (test) and mmlu_dev (few-shot pool)
        for split in ("forget", "retain"):
            path = self.settings[f"{split}_corpus"]
            if path is not None:
                docs = read_corpus(path, f"{split}_corpus", self.settings["min_len"])
                data.train[split] = [text_item(doc) for doc in head(docs, self.settings["max_items"])]
        if self.settings["forget_source"] == "questions":
            data.qa[f"{self.name}_qa"] = data.train["forget"] = [_as_qa(it) for it in items]
            if "retain" not in data.train and "mmlu" in data.mcq:
                data.qa["mmlu_qa"] = data.train["retain"] = [_as_qa(it) for it in data.mcq["mmlu"]]
        for split in ("forget", "retain"):
            if split not in data.train:
                data.missing[split] = (f"no {split} corpus: WMDP corpora are not shipped (cais/wmdp-corpora, bio-forget "
                                       f"gated); set benchmark.{split}_corpus to a local text/JSONL file"
                                       + ("" if split == "retain" else " or benchmark.forget_source=questions")
                                       + (" or benchmark.mmlu_max_per_subject (MMLU question proxy)"
                                          if split == "retain" and self.settings["forget_source"] == "questions" else ""))
        data.corpus = corpus_of(data.mcq, data.train)
        return data


def _as_qa(item: MCQItem) -> QAItem:
    """A multiple-choice item as question -> correct choice text (the question proxy)."""
    answer = item.choices[item.answer]
    return QAItem(item.question, answer, answer, item.entity)


@BENCHMARKS.register("wmdp_bio")
class WmdpBio(_Wmdp):
    """WMDP biosecurity MCQ (v1 locally: 1520 items; cais/wmdp wmdp-bio on the Hub); corpora optional."""

    subset = "bio"
    topic = "biology"  # lm-evaluation-harness's wmdp_bio header
    max_length = 512   # the RMU / NPO code's truncation of bio corpus documents


@BENCHMARKS.register("wmdp_cyber")
class WmdpCyber(_Wmdp):
    """WMDP cybersecurity MCQ (v1 locally: 2225 items; cais/wmdp wmdp-cyber on the Hub); corpora optional."""

    subset = "cyber"
    topic = "cybersecurity"
    max_length = 768   # cyber documents (the combined corpus code)
