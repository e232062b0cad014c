"""MUSE (arXiv 2407.06460): unlearning a text corpus -- News (BBC articles) or Books (Harry Potter)."""

from typing import List, Literal, Optional

from unlearn_cli.bounds import PositiveInt
from unlearn_cli.contracts import Benchmark
from unlearn_cli.data.items import BenchmarkData, QAItem, TextWindows, WindowLength
from unlearn_cli.data.loaders import (Source, Table, corpus_of, head, plain_text, qa_item,
                                      text_field, text_item)
from unlearn_cli.errors import UserError
from unlearn_cli.registry import BENCHMARKS

CORPORA = {  # corpus -> (display name, Hub id, folder below UNLEARN_DATA_DIR, retrained model's PrivLeak AUC)
    "news": ("MUSE-News", "muse-bench/MUSE-News", "muse/news", 0.4772),
    "books": ("MUSE-Books", "muse-bench/MUSE-Books", "muse/books", 0.5393),
}
FORGET_SPLITS = ("raw/forget",) + tuple(f"{kind}/forget_{k}" for kind in ("sust", "scal") for k in range(1, 5))
TEXTS = "a JSON array of article strings"
QA = "a JSON array of {question, answer}"


def _table(path: str, expect: str) -> Table:
    subset, split = path.split("/")
    return Table(f"{path}.json", subset, split, expect)


def _texts(source: Source, path: str) -> List[str]:
    expect = TEXTS + (" (scal/forget_k is sust/forget_1..k concatenated)" if path.startswith("scal/") else "")
    return [plain_text(row, where) for where, row in source.rows(_table(path, expect))]


def _qa(source: Source, path: str) -> List[QAItem]:
    return [qa_item(row, where) for where, row in source.rows(_table(path, QA))]


def _verbmem(source: Source) -> List[QAItem]:
    """Prefix (``prompt``) -> true continuation (``gt``) as question/answer."""
    items = []
    for where, row in source.rows(_table("verbmem/forget", "a JSON array of {prompt, gt}")):
        gt = text_field(row, "gt", where)
        items.append(QAItem(text_field(row, "prompt", where), gt, gt))
    return items


def covering_articles(articles: List[str], windows: List[str], probe: int = 100) -> List[str]:
    """The articles that the evaluation ``windows`` (VerbMem prefix + continuation, PrivLeak
    member texts) overlap, in corpus order. MUSE cut those windows from the forget corpus
    ``"\\n\\n".join(articles)``, often across article boundaries; a window is located by its first
    ``probe`` characters. Windows not found (e.g. from another forget split) are skipped."""
    joined, starts, pos = "\n\n".join(articles), [], 0
    for a in articles:
        starts.append(pos)
        pos += len(a) + 2
    keep = set()
    for w in windows:
        at = joined.find(w[:probe])
        if at < 0:
            continue
        end = at + len(w)
        keep.update(i for i, s in enumerate(starts) if s < end and s + len(articles[i]) > at)
    return [articles[i] for i in sorted(keep)]


def answered_in(items: List[QAItem], articles: List[str], cap: int) -> List[QAItem]:
    """The first ``cap`` QA items whose answer occurs (case-insensitively) in ``articles``, so a
    subsampled target was trained on the facts KnowMem asks about; the first ``cap`` items when
    none does."""
    text = "\n".join(articles).lower()
    found = [it for it in items if it.answer.lower() in text]
    return head(found or items, cap)


@BENCHMARKS.register("muse")
class Muse(Benchmark):
    """MUSE: forget a corpus (``corpus``: news = 889 BBC articles, books = Harry Potter); VerbMem / KnowMem / PrivLeak.

    ``corpus: news`` reads muse-bench/MUSE-News (locally ``<UNLEARN_DATA_DIR>/muse/news``), ``books``
    muse-bench/MUSE-Books (``muse/books``; not in the local copy, so it needs ``data_dir`` or the Hub); both
    share the layout below.

    Training: ``forget`` = articles of ``forget_split`` (``raw/forget``; ``sust/forget_k`` for
    sequential or ``scal/forget_k`` for scalability runs) as raw-text items (empty question, the
    article supervised). ``retain`` depends on ``retain_source``: ``raw`` = ``raw/retain1.json``,
    which the local copy does NOT ship (then the run may still unlearn without retain data, and
    ``train_split('retain')`` explains the gap); ``knowmem_qa`` = the 100 retain QA pairs as a
    stand-in (a deviation from MUSE); ``none``. QA splits: ``knowmem_forget``, ``knowmem_retain``
    and their 10-shot demonstrations ``knowmem_forget_icl``, ``knowmem_retain_icl``;
    ``verbmem_forget`` (question = passage prefix, answer = true continuation). Texts:
    ``privleak_forget`` / ``privleak_retain`` (members), ``privleak_holdout`` (non-members).
    ``max_items`` keeps the first n items of every evaluation split except the demonstrations,
    and a forget corpus consistent with them: the articles the kept VerbMem and PrivLeak-member
    windows were cut from, and KnowMem-forget questions whose answer occurs in those articles
    (so a subsampled tiny target has seen what its forget metrics probe); the first n articles
    when the forget split holds none of those windows (``sust/forget_k``, k > 1).
    Raw forget / retain text trains in ``windows`` of ``max_length`` tokens: ``concat`` (default, MUSE's
    code: the articles joined and cut into 2048-token windows, the last one completed from the start) or
    ``per_document``; windows never exceed the model's context.
    ``model=tiny`` builds a small target (forget articles as raw text + retain) and a
    retain-only oracle when a retain split exists (locally: ``retain_source=knowmem_qa``).
    """

    loader_version = 2

    def __init__(self, corpus: Literal["news", "books"] = "news", data_dir: Optional[str] = None,
                 forget_split: str = "raw/forget", retain_source: Literal["raw", "knowmem_qa", "none"] = "raw",
                 max_items: Optional[PositiveInt] = None, max_length: WindowLength = 2048,
                 windows: Literal["concat", "per_document"] = "concat"):
        if corpus not in CORPORA:
            raise UserError(f"benchmark.corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
        if forget_split not in FORGET_SPLITS:
            raise UserError(f"benchmark.forget_split must be one of {', '.join(FORGET_SPLITS)}, got {forget_split!r}")
        if retain_source not in ("raw", "knowmem_qa", "none"):
            raise UserError(f"benchmark.retain_source must be raw, knowmem_qa or none, got {retain_source!r}")
        self.corpus = corpus
        label, hub_id, subdir, _ = CORPORA[corpus]
        self.source = Source.resolve(label, subdir, hub_id, data_dir,
                                     f"the {label} subsets raw/, knowmem/, verbmem/, privleak/")
        self.settings = dict(forget_split=forget_split, retain_source=retain_source, max_items=max_items)
        self.windows = TextWindows(max_length, windows)

    def cache_key(self) -> dict:
        """Everything that determines the loaded data."""
        return {"name": f"muse_{self.corpus}", "loader_version": self.loader_version,
                "source": self.source.describe(), **self.settings,
                "windows": [self.windows.max_length, self.windows.mode]}

    def load(self) -> BenchmarkData:
        """Read the forget corpus, the retain choice and the evaluation subsets."""
        cap = self.settings["max_items"]
        articles = _texts(self.source, self.settings["forget_split"])
        knowmem_retain = _qa(self.source, "knowmem/retain_qa")
        qa = {
            "knowmem_forget": _qa(self.source, "knowmem/forget_qa"),
            "knowmem_retain": head(knowmem_retain, cap),
            "knowmem_forget_icl": _qa(self.source, "knowmem/forget_qa_icl"),
            "knowmem_retain_icl": _qa(self.source, "knowmem/retain_qa_icl"),
            "verbmem_forget": head(_verbmem(self.source), cap),
        }
        texts = {f"privleak_{s}": head(_texts(self.source, f"privleak/{s}"), cap)
                 for s in ("forget", "retain", "holdout")}
        if cap is not None:
            windows = [it.question + it.answer for it in qa["verbmem_forget"]] + texts["privleak_forget"]
            # windows cut from another split (sust/forget_k, k > 1): keep the first articles instead
            articles = covering_articles(articles, windows) or head(articles, cap)
            qa["knowmem_forget"] = answered_in(qa["knowmem_forget"], articles, cap)
        forget = [text_item(t) for t in articles]
        data = BenchmarkData(name=f"muse_{self.corpus}", train={"forget": forget}, qa=qa, texts=texts,
                             published={"privleak_oracle_auc": CORPORA[self.corpus][3]}, windows=self.windows)
        self._add_retain(data, knowmem_retain)
        data.corpus = corpus_of(data.train, qa, texts)
        return data

    def _add_retain(self, data: BenchmarkData, knowmem_retain: List[QAItem]) -> None:
        choice, cap = self.settings["retain_source"], self.settings["max_items"]
        raw = _table("raw/retain1", TEXTS)
        if choice == "knowmem_qa":
            data.train["retain"] = head(knowmem_retain, cap)
        elif choice == "none":
            data.missing["retain"] = "benchmark.retain_source=none"
        elif self.source.has(raw):
            data.train["retain"] = [text_item(t) for t in head(_texts(self.source, "raw/retain1"), cap)]
        else:
            data.missing["retain"] = (
                f"{self.source.root / raw.local} is not in this copy ({CORPORA[self.corpus][0]} retain corpus not shipped); "
                f"provide it or set benchmark.retain_source=knowmem_qa (retain QA stand-in) or none")


@BENCHMARKS.register("muse_news")
class MuseNews(Muse):
    """MUSE-News: ``benchmark=muse`` with ``corpus: news`` (the name earlier configs, sweeps and caches use)."""

    def __init__(self, corpus: Literal["news"] = "news", data_dir: Optional[str] = None,
                 forget_split: str = "raw/forget", retain_source: Literal["raw", "knowmem_qa", "none"] = "raw",
                 max_items: Optional[PositiveInt] = None, max_length: WindowLength = 2048,
                 windows: Literal["concat", "per_document"] = "concat"):
        if corpus != "news":
            raise UserError(f"benchmark muse_news is the news corpus; for corpus {corpus!r} use benchmark=muse")
        super().__init__(corpus, data_dir, forget_split, retain_source, max_items, max_length, windows)
