"""WMDP hazardous-knowledge multiple choice (arXiv 2403.03218); benchmarks.md section 3.

The local copy holds the v1 question files only (1520 bio, 2225 cyber); the Hub fallback
``cais/wmdp`` is the April-2024 release (1273 / 1987, re-ordered choices), so scores from the two
are not comparable. The unlearning corpora (``cais/wmdp-corpora``; bio-forget is gated) are not
shipped: pass ``forget_corpus`` (and optionally ``retain_corpus``) as local files. Without a forget
corpus the benchmark evaluates only, and ``BenchmarkData.train_split('forget')`` says why.
"""

from typing import Optional

from unlearn_cli.data.items import BenchmarkData
from unlearn_cli.data.loaders import Source, Table, check_positive, head, mcq_item, read_corpus, text_item
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS

HUB_ID = "cais/wmdp"


class _Wmdp:
    """Shared loader of one WMDP subset; subclasses set ``subset`` ('bio' or 'cyber')."""

    subset = ""
    builds_target = False
    loader_version = 1

    def __init__(self, data_dir: Optional[str] = None, forget_corpus: Optional[str] = None,
                 retain_corpus: Optional[str] = None, min_len: int = 50, max_items: Optional[int] = None):
        check_positive("max_items", max_items)
        if min_len < 0:
            raise UserError(f"benchmark.min_len must be >= 0, got {min_len}")
        self.source = Source.resolve("WMDP", "wmdp", HUB_ID, data_dir, f"the WMDP question files ({self.subset}-questions.json)")
        self.settings = dict(forget_corpus=forget_corpus, retain_corpus=retain_corpus, min_len=min_len,
                             max_items=max_items)

    @property
    def name(self) -> str:
        """Registry / split name, e.g. ``wmdp_bio``."""
        return f"wmdp_{self.subset}"

    def cache_key(self) -> dict:
        """Everything that determines the loaded data."""
        return {"name": self.name, "loader_version": self.loader_version, "source": self.source.describe(),
                **self.settings}

    def load(self) -> BenchmarkData:
        """MCQ split ``wmdp_<subset>`` plus the optional local corpora as raw-text training items."""
        table = Table(f"{self.subset}-questions.json", f"wmdp-{self.subset}", "test",
                      "a JSON array of {question, choices (4 strings), answer (0-3)}")
        items = [mcq_item(row, where, self.name) for where, row in self.source.rows(table)]
        data = BenchmarkData(name=self.name, train={}, mcq={self.name: head(items, self.settings["max_items"])})
        for split in ("forget", "retain"):
            path = self.settings[f"{split}_corpus"]
            if path is None:
                data.missing[split] = (f"no {split} corpus: WMDP corpora are not shipped (cais/wmdp-corpora, bio-forget "
                                       f"gated); set benchmark.{split}_corpus to a local text/JSONL file")
            else:
                docs = read_corpus(path, f"{split}_corpus", self.settings["min_len"])
                data.train[split] = [text_item(doc) for doc in head(docs, self.settings["max_items"])]
        return data


@BENCHMARKS.register("wmdp_bio")
class WmdpBio(_Wmdp):
    """WMDP biosecurity MCQ (v1 locally: 1520 items; cais/wmdp wmdp-bio on the Hub); corpora optional."""

    subset = "bio"


@BENCHMARKS.register("wmdp_cyber")
class WmdpCyber(_Wmdp):
    """WMDP cybersecurity MCQ (v1 locally: 2225 items; cais/wmdp wmdp-cyber on the Hub); corpora optional."""

    subset = "cyber"
