"""TOFU: forgetting fictitious authors (arXiv 2401.06121); layout in docs/benchmark_reference.md."""

from typing import Dict, List, Literal, Optional

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import Benchmark
from unlearn_cli.data.items import BenchmarkData, MCQItem, QAItem
from unlearn_cli.data.loaders import Source, Table, corpus_of, head, qa_item, text_field
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS

HUB_ID = "locuslab/TOFU"
QA_PER_AUTHOR = 20
FULL_SIZE = 4000
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
HOLDOUT_OF = {"forget01": "holdout01", "forget05": "holdout05", "forget10": "holdout10"}
QA_FILE = "JSON Lines rows with 'question' and 'answer'"
PERTURBED_FILE = ("JSON Lines rows with question, answer, paraphrased_answer, paraphrased_question, "
                  "perturbed_answer (5)")
UTILITY_FILE = "JSON Lines rows with question, answer, perturbed_answer (3)"


def _table(config: str, expect: str) -> Table:
    return Table(f"{config}.json", config, "train", expect)


def _authors(rows, first_author: int, prefix: str = "author") -> List[str]:
    """Author labels for rows stored as consecutive blocks of 20 QA per author."""
    return [f"{prefix}{first_author + i // QA_PER_AUTHOR}" for i in range(len(rows))]


def _forget_authors(rows) -> List[str]:
    """Forget splits are the last authors of full.json."""
    return _authors(rows, (FULL_SIZE - len(rows)) // QA_PER_AUTHOR)


def _retain_authors(rows) -> List[str]:
    """Retain splits are the first authors of full.json."""
    return _authors(rows, 0)


def _holdout_authors(rows) -> List[str]:
    """Holdout authors are not in full.json; numbered on their own."""
    return _authors(rows, 0, "holdout_author")


def _qa_split(source: Source, config: str, expect: str, entities=None, num_perturbed: int = 0) -> List[QAItem]:
    rows = source.rows(_table(config, expect))
    labels = entities(rows) if entities else [""] * len(rows)
    return [qa_item(row, where, label, num_perturbed) for (where, row), label in zip(rows, labels)]


def _mcq_split(source: Source, config: str) -> List[MCQItem]:
    """Real-authors / world-facts multiple-choice form: option1..4 and the answer text."""
    items = []
    for where, row in source.rows(_table(config, "JSON Lines rows with question, option1..option4, answer")):
        options = tuple(text_field(row, f"option{i}", where) for i in range(1, 5))
        answer = text_field(row, "answer", where)
        if answer not in options:
            raise UserError(f"{where}: field 'answer' must equal one of option1..option4, got {answer!r:.80}")
        items.append(MCQItem(text_field(row, "question", where), options, options.index(answer)))
    return items


@BENCHMARKS.register("tofu")
class Tofu(Benchmark):
    """TOFU: 200 fictitious authors x 20 QA; forget the last 1/5/10 % of authors (local files or locuslab/TOFU).

    ``split`` picks forget01/05/10, trained against retain99/95/90. Training splits: ``forget``
    (``forgetNN``), ``retain`` (``retainMM``). QA evaluation splits: ``forget``
    (``forgetNN_perturbed``: paraphrased question/answer and 5 perturbed answers), ``retain``
    (``retain_perturbed``), ``real_authors`` and ``world_facts`` (``*_perturbed``: short answer and
    3 perturbed answers; no paraphrase, so the truth-ratio base is ``answer``), ``holdout``
    (``holdoutNN``, never-trained authors: MIA non-members). MCQ: ``real_authors_mcq``,
    ``world_facts_mcq``. Texts: ``idontknow`` refusal strings (local copy only). ``value`` is the
    full answer. Entities: ``author<k>`` = k-th author of ``full.json``, ``holdout_author<k>``.

    Subsampling for small runs (head slices, so deterministic): ``num_forget_authors`` keeps the
    first m forget authors (and the first 20 m holdout rows); ``max_items`` caps every other split.
    The full forget split is evaluated (OpenUnlearning), not the legacy 300-item cap.
    With ``model=tiny`` the prepare stage trains a small target on (subsampled) forget + retain and
    the oracle on retain; ``corpus`` (every question/answer text loaded) trains its tokenizer.
    """

    loader_version = 1

    def __init__(self, split: Literal["forget01", "forget05", "forget10"] = "forget10",
                 data_dir: Optional[str] = None, num_forget_authors: Optional[PositiveInt] = None,
                 max_items: Optional[PositiveInt] = None):
        if split not in RETAIN_OF:
            raise UserError(f"benchmark.split must be one of {', '.join(RETAIN_OF)}, got {split!r}")
        self.source = Source.resolve("TOFU", "tofu", HUB_ID, data_dir, "the TOFU JSON files (forget10.json, ...)")
        self.settings = dict(split=split, num_forget_authors=num_forget_authors, max_items=max_items)

    def cache_key(self) -> dict:
        """Everything that determines the loaded data."""
        return {"name": "tofu", "loader_version": self.loader_version, "source": self.source.describe(),
                **self.settings}

    def load(self) -> BenchmarkData:
        """Read the splits of ``self.settings['split']`` and apply the subsampling options."""
        split, cap = self.settings["split"], self.settings["max_items"]
        forget = _qa_split(self.source, split, QA_FILE, _forget_authors)
        forget_eval = _qa_split(self.source, f"{split}_perturbed", PERTURBED_FILE, _forget_authors, 5)
        if [it.question for it in forget] != [it.question for it in forget_eval]:
            raise UserError(f"TOFU {split}.json and {split}_perturbed.json differ row for row; re-download both")
        n_forget = self._forget_rows(len(forget))
        retain = _qa_split(self.source, RETAIN_OF[split], QA_FILE, _retain_authors)
        qa = {
            "forget": head(forget_eval, n_forget),
            "retain": head(_qa_split(self.source, "retain_perturbed", PERTURBED_FILE, num_perturbed=5), cap),
            "real_authors": head(_qa_split(self.source, "real_authors_perturbed", UTILITY_FILE, num_perturbed=3), cap),
            "world_facts": head(_qa_split(self.source, "world_facts_perturbed", UTILITY_FILE, num_perturbed=3), cap),
            "holdout": head(_qa_split(self.source, HOLDOUT_OF[split], QA_FILE, _holdout_authors), n_forget),
        }
        mcq = {f"{name}_mcq": head(_mcq_split(self.source, name), cap) for name in ("real_authors", "world_facts")}
        train = {"forget": head(forget, n_forget), "retain": head(retain, cap)}
        texts = self._idontknow()
        return BenchmarkData(name="tofu", train=train, qa=qa, mcq=mcq, texts=texts, corpus=corpus_of(train, qa, mcq),
                             refusals=list(texts.get("idontknow", [])))

    def _forget_rows(self, available: int) -> int:
        wanted = self.settings["num_forget_authors"]
        authors = available // QA_PER_AUTHOR
        if wanted is None:
            return available
        if wanted > authors:
            raise UserError(f"benchmark.num_forget_authors={wanted} exceeds the {authors} authors of "
                            f"{self.settings['split']}")
        return wanted * QA_PER_AUTHOR

    def _idontknow(self) -> Dict[str, List[str]]:
        table = Table("idontknow.jsonl", "idontknow", "train", "refusal sentences, one per line")
        if self.source.root is None or not self.source.has(table):
            return {}
        return {"idontknow": [text for _, text in self.source.rows(table)]}
