"""Evaluations of the target and the oracle, shared by every run that would compute them identically.

The target (the model before unlearning) and the oracle (the retain-only model) are the same models for every
method, optimizer and attack of a sweep, and their evaluation does not depend on any of those: each run of a
100-point method sweep would otherwise evaluate both again. With ``cache_eval=true`` (the default) the first
run stores each of the two finished stages under ``<cache_dir>/evals/<stage>-<key>/`` in the layout of a run
directory (``stages/<stage>.json`` and ``examples/<stage>.jsonl``, the record vouching for the rows' size and
checksum); a later run with the same key copies them into its own directory and reads them back exactly as a
resumed run reads its own finished stages (JSON floats round-trip exactly, so every aggregate, every per-example
row and every later metric that compares with these stages equals a re-evaluation's).

The key is the sha256 of everything the stage's numbers can depend on:

- the resolved config without the sections that only act after these stages or only decide where and how a run
  is logged (``IRRELEVANT``: the method, optimizer, attacks, training loop of the unlearning stage except its
  ``precision``, which sets the evaluation's autocast; output, logging and resume options);
- the model directories evaluated (each file's name, size and modification time; a Hugging Face hub id, which
  has no local directory to fingerprint, is never cached);
- the evaluation data as loaded (``data_digest``: every QA, MCQ and text split, so an edited data file at the
  same path is a new key);
- for the target, the oracle rows that its oracle-relative metrics (forget quality, privleak) read (their
  sha256: this run's oracle stage or ``oracle_results``'s), or that it has none;
- the source of ``unlearn_cli`` itself (every ``.py`` file's bytes), the library versions, the device and the
  number of torch threads.

A damaged entry is reported in one warning line and evaluated again (then replaced); rows copied out of an entry
are checked against its record before they count. Entries are built in a temporary directory and published
like the prepared models (``manifest.publish``, under a lock), so concurrent runs of a sweep never read half an
entry. Model files are recognised by name, size and modification time: a copy of other weights that keeps all
three (``cp -p``, ``rsync -a`` of same-size files) would be taken for the original.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from unlearn_cli import manifest, stage_records
from unlearn_cli.files import stable_hash, without
from unlearn_cli.rundir import NON_RESULT_KEYS

log = logging.getLogger("unlearn_cli")

STAGES = ("oracle", "target")
DIR = "evals"
# top-level config keys that cannot change the target's or the oracle's evaluation
IRRELEVANT = (*NON_RESULT_KEYS, "method", "optimizer", "attack", "skip", "checkpoint_every", "cache_reference",
              "distributed")


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 over the path and bytes of every ``.py`` file of the installed ``unlearn_cli`` package."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(model_dir) -> Optional[list]:
    """``[[name, size, mtime_ns], ...]`` of every file below ``model_dir``; None when it is not a local directory."""
    path = Path(str(model_dir)).expanduser()
    if not path.is_dir():
        return None
    return [[str(f.relative_to(path)), st.st_size, st.st_mtime_ns]
            for f in sorted(path.rglob("*")) if f.is_file() and (st := f.stat())]


def data_digest(data) -> str:
    """sha256 of a benchmark's evaluation splits as loaded (``BenchmarkData``: ``qa``, ``mcq``, ``texts``,
    ``published``; the items are frozen dataclasses of strings, numbers and tuples, whose repr is canonical)."""
    digest = hashlib.sha256()
    for part in (data.qa, data.mcq, data.texts, data.published):
        for name in sorted(part):
            digest.update(repr((name, part[name])).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def key(stage: str, config: dict, model_dirs: Iterable, environment: dict, data: str,
        compared_with: str = "") -> Optional[str]:
    """The cache key of ``stage`` evaluated on ``model_dirs`` (the evaluated model first, then every directory its
    numbers depend on: the oracle's target, a separate tokenizer) under ``config`` (the resolved run config),
    ``environment`` (library versions, device, threads), ``data`` (``data_digest``) and ``compared_with`` (what
    its baseline-relative metrics read: the target's oracle rows, by sha256); None when it cannot be cached
    (``compared_with`` "unknown", or a model that is no local directory)."""
    prints = [fingerprint(d) for d in model_dirs]
    if any(p is None for p in prints) or compared_with == "unknown":
        return None
    relevant = without(config, IRRELEVANT)
    relevant["unlearn"] = {"precision": (config.get("unlearn") or {}).get("precision")}
    return stable_hash({"stage": stage, "config": relevant, "models": prints, "environment": environment,
                        "data": data, "compared_with": compared_with, "source": source_hash(),
                        "version": stage_records.VERSION}, 16)


class EvalCache:
    """The evaluation entries of ``cache_dir`` (a no-op when ``enabled`` is false)."""

    def __init__(self, cache_dir: Path, enabled: bool):
        self.root = Path(cache_dir).expanduser() / DIR
        self.enabled = enabled

    def entry(self, stage: str, entry_key: Optional[str]) -> Optional[Path]:
        """The entry directory of ``stage`` under ``entry_key``; None when caching is off or the stage uncachable."""
        if not self.enabled or entry_key is None or stage not in STAGES:
            return None
        return self.root / f"{stage}-{entry_key}"

    def read(self, entry: Optional[Path], stage: str) -> Optional[dict]:
        """The stage record of ``entry`` when it exists and its rows are intact (a damaged one: one warning line)."""
        if entry is None or not entry.is_dir():
            return None
        record, problem = stage_records.read(entry, stage)
        if problem is not None:
            log.warning("cached %s evaluation %s is damaged (%s); evaluating it again", stage, entry, problem)
        return record

    def copy_into(self, entry: Path, stage: str, run_dir: Path, config_hash: str, record: dict) -> Optional[dict]:
        """The entry's rows into ``run_dir`` (checked against the entry's record: size and sha256) and a record of
        them under this run's config hash (a resumed run then reads the stage back like any finished one), the
        entry's path in its ``extra``; that record, or None (one warning line) when the copy failed or does not
        match (an entry replaced or removed meanwhile): the stage is then evaluated."""
        rows = f"examples/{stage}.jsonl"
        want = record["files"].get(rows, {"size": -1})
        tmp = None
        try:
            (run_dir / "examples").mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{stage}.jsonl.", dir=run_dir / "examples")
            os.close(fd)
            shutil.copyfile(entry / rows, tmp)
            problem = manifest.check(Path(tmp).parent, {Path(tmp).name: {**want, "mtime_ns": None}})
            if problem is not None:
                raise OSError(f"its rows no longer match its record: {problem}")
            os.replace(tmp, run_dir / rows)
        except OSError as err:
            log.warning("cached %s evaluation %s not used (%s); evaluating it again", stage, entry, err)
            return None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        stage_records.write(run_dir, stage, config_hash, record["metrics"], {}, record["artifacts"], files=[rows],
                            extra={**record["extra"], "eval_cache": {stage: {"entry": str(entry),
                                                                             "seconds": record["seconds"]}}})
        return stage_records.read(run_dir, stage)[0]

    def store(self, entry: Optional[Path], stage: str, run_dir: Path) -> None:
        """Copy ``run_dir``'s finished ``stage`` (its record and rows) to ``entry``: built in a temp dir and
        published like the prepared models (``manifest.publish``: sealed, moved in under the entry's lock, an intact
        entry another run of the sweep published meanwhile kept). A cache that cannot be written costs one warning,
        never the run."""
        if entry is None:
            return
        record, problem = stage_records.read(run_dir, stage)
        if record is None or problem is not None:
            return
        tmp = None
        try:
            if self.root.is_dir():
                manifest.sweep_stale(self.root)  # temp dirs of killed runs on this host
            tmp = manifest.temp_dir(self.root)
            for rel in (stage_records.path(Path("."), stage), *record["files"]):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / rel, tmp / rel)
            manifest.publish(tmp, entry)  # sealed, moved in under the entry's lock; an intact one is kept
        except OSError as err:  # a full or read-only cache must not fail a run that has its numbers
            log.warning("evaluation of %s not cached in %s: %s", stage, entry, err)
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
