"""Reading real benchmark files (TOFU, MUSE, WMDP, MMLU) with one-line errors.

Where the rows come from, in this order:

1. the benchmark's ``data_dir`` option: the benchmark's own folder (e.g. ``.../data/tofu``);
2. the ``UNLEARN_DATA_DIR`` environment variable: a folder holding ``tofu/``, ``muse/``,
   ``wmdp/``, ``mmlu/`` (the layouts of docs/benchmark_reference.md);
3. the official Hugging Face dataset (``locuslab/TOFU``, ``muse-bench/MUSE-News``, ``cais/wmdp``,
   ``cais/mmlu``), only when the ``datasets`` package is installed (it downloads).

Every logical file is a :class:`Table` naming its local path and its Hub config/split. Readers
return ``(where, row)`` pairs, ``where`` being ``"<file>: row <n>"`` (1-based record number) so
that field errors name the file, the row and the field.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

from unlearn_cli.data.items import MCQItem, QAItem
from unlearn_cli.errors import UserError

ENV_VAR = "UNLEARN_DATA_DIR"
Rows = List[Tuple[str, Any]]


@dataclass(frozen=True)
class Table:
    """One logical data file: ``local`` path relative to the benchmark folder, the Hub
    ``hub_config``/``hub_split`` holding the same rows, and ``expect`` (what it should contain)."""

    local: str
    hub_config: str
    hub_split: str
    expect: str


class Source:
    """Where a benchmark's rows come from: a local folder (``root``) or a Hub dataset."""

    def __init__(self, name: str, hub_id: str, root: Optional[Path]):
        self.name = name
        self.hub_id = hub_id
        self.root = root

    @classmethod
    def resolve(cls, name: str, subdir: str, hub_id: str, data_dir: Optional[str], expect: str) -> "Source":
        """Pick the folder from ``data_dir``, then ``$UNLEARN_DATA_DIR/<subdir>``, else the Hub."""
        if data_dir is not None:
            return cls(name, hub_id, _existing_dir(Path(data_dir).expanduser(), "benchmark.data_dir", expect))
        env = os.environ.get(ENV_VAR)
        if env:
            return cls(name, hub_id, _existing_dir(Path(env).expanduser() / subdir, ENV_VAR, expect))
        if importlib.util.find_spec("datasets") is None:
            raise UserError(
                f"no local {name} data: set benchmark.data_dir to a folder holding {expect}, or {ENV_VAR} "
                f"to a folder holding {subdir}/, or install 'datasets' to download {hub_id}")
        return cls(name, hub_id, None)

    def describe(self) -> str:
        """The folder or Hub id, for cache keys and messages."""
        return str(self.root) if self.root is not None else f"hf:{self.hub_id}"

    def has(self, table: Table) -> bool:
        """Whether the local file exists (always assumed for the Hub)."""
        return self.root is None or (self.root / table.local).is_file()

    def rows(self, table: Table) -> Rows:
        """All rows of ``table`` as ``(where, row)``; UserError if missing or empty."""
        if self.root is None:
            label = f"{self.hub_id}[{table.hub_config}/{table.hub_split}]"
            rows = _hub_rows(self.hub_id, table.hub_config, table.hub_split)
        else:
            path = self.root / table.local
            if not path.is_file():
                raise UserError(f"{path} not found: expected {table.expect}")
            label = str(path)
            rows = read_rows(path)
        if not rows:
            raise UserError(f"{label}: empty split (no rows); expected {table.expect}")
        return [(f"{label}: row {i}", row) for i, row in enumerate(rows, start=1)]


def _existing_dir(path: Path, origin: str, expect: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{origin}: folder {path} not found; expected a folder holding {expect}")
    return path


def _hub_rows(hub_id: str, config: str, split: str) -> list:
    datasets = importlib.import_module("datasets")
    try:
        return list(datasets.load_dataset(hub_id, config, split=split))
    except Exception as err:  # network, auth, unknown config: report the dataset, not a traceback
        raise UserError(f"could not load {hub_id} config '{config}' split '{split}': {err}") from err


def read_rows(path: Path) -> list:
    """Records of a local file: ``.csv`` with a header row (dicts of strings), ``.json`` holding
    either one JSON array or JSON Lines (one object per line), any other suffix plain text lines."""
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return [line for line in text.splitlines() if line.strip()]
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: invalid JSON array at line {err.lineno} ({err.msg})") from err
    return _json_lines(path, text)


def _json_lines(path: Path, text: str) -> list:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}: line {lineno}: invalid JSON ({err.msg})") from err
    return rows


# ----------------------------------------------------------------------------- field access

def field(row: Any, key: str, where: str, check: Callable[[Any], bool], expected: str) -> Any:
    """``row[key]`` after checking it; UserError naming ``where`` (file and row) and the field."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected an object with field '{key}', got {type(row).__name__}")
    if key not in row:
        raise UserError(f"{where}: missing field '{key}'")
    value = row[key]
    if not check(value):
        raise UserError(f"{where}: field '{key}' must be {expected}, got {value!r:.80}")
    return value


def text_field(row: Any, key: str, where: str) -> str:
    """A string field."""
    return field(row, key, where, lambda v: isinstance(v, str), "a string")


def text_list_field(row: Any, key: str, where: str, length: Optional[int] = None) -> tuple:
    """A list of strings (of exactly ``length`` entries when given), as a tuple."""
    size = "" if length is None else f" of {length}"
    value = field(row, key, where,
                  lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
                  and (length is None or len(v) == length), f"a list{size} strings")
    return tuple(value)


def index_field(row: Any, key: str, where: str, size: int) -> int:
    """An integer in ``[0, size)``, given as an int or as its decimal text (CSV)."""
    def ok(v):
        text = str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else ""
        return text.isdigit() and int(text) < size
    return int(str(field(row, key, where, ok, f"an integer 0-{size - 1}")).strip())


def plain_text(row: Any, where: str) -> str:
    """A raw-text record: a JSON string, or a Hub row with a ``text`` column."""
    return row if isinstance(row, str) else text_field(row, "text", where)


# ----------------------------------------------------------------------------- shared records

def text_item(text: str, entity: str = "") -> QAItem:
    """A raw-text training item: empty question, the whole text supervised."""
    return QAItem(question="", answer=text, value=text, entity=entity)


def qa_item(row: Any, where: str, entity: str = "", num_perturbed: int = 0) -> QAItem:
    """QA record with the answer as gold value; ``num_perturbed`` wrong answers (list field
    ``perturbed_answer``, required when > 0) and the paraphrases when present."""
    answer = text_field(row, "answer", where)
    perturbed = text_list_field(row, "perturbed_answer", where, num_perturbed) if num_perturbed else ()
    para_a = text_field(row, "paraphrased_answer", where) if "paraphrased_answer" in row else None
    para_q = text_field(row, "paraphrased_question", where) if "paraphrased_question" in row else None
    return QAItem(text_field(row, "question", where), answer, answer, entity, perturbed, para_a, para_q)


def mcq_item(row: Any, where: str, entity: str = "", num_choices: int = 4, subject: Optional[str] = None) -> MCQItem:
    """Multiple-choice record: ``choices`` list (WMDP, Hub MMLU) or ``choice0..`` columns (MMLU CSV);
    ``subject`` is the prompt header's topic (``MCQItem.subject``)."""
    if isinstance(row, dict) and "choices" in row:
        choices = text_list_field(row, "choices", where, num_choices)
    else:
        choices = tuple(text_field(row, f"choice{i}", where) for i in range(num_choices))
    return MCQItem(text_field(row, "question", where), choices, index_field(row, "answer", where, num_choices), entity,
                   subject)


def corpus_of(*tables) -> List[str]:
    """Every text of the given split tables (``{split: [QAItem | MCQItem | str]}``): questions,
    answers, paraphrases, perturbed answers, choices; the tokenizer corpus of a tiny target."""
    out: List[str] = []
    for table in tables:
        for items in table.values():
            for it in items:
                if isinstance(it, str):
                    out.append(it)
                elif isinstance(it, MCQItem):
                    out += [it.question, *it.choices]
                else:
                    out += [t for t in (it.question, it.answer, it.paraphrased_answer, it.paraphrased_question)
                            if t] + list(it.perturbed)
    return out


def head(items: Sequence, limit: Optional[int]) -> list:
    """The first ``limit`` items (all when ``limit`` is None)."""
    return list(items) if limit is None else list(items[:limit])


def read_corpus(path: str, option: str, min_len: int) -> List[str]:
    """A local text corpus (WMDP style): one document per line, either raw text or a JSON object
    whose ``text`` field is used; lines of ``min_len`` characters or fewer are dropped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"benchmark.{option}: {file} not found; expected a text/JSONL file, one document per line")
    docs = []
    for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{file}: line {lineno}"
        if line.lstrip().startswith("{"):
            try:
                line = text_field(json.loads(line), "text", where)
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: invalid JSON ({err.msg})") from err
        if len(line.strip()) > min_len:
            docs.append(line)
    if not docs:
        raise UserError(f"benchmark.{option}: {file} has no document longer than {min_len} characters")
    return docs
