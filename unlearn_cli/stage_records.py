"""The finished stages of a run, one record each: ``<run_dir>/stages/<stage>.json``.

A record holds the stage's aggregates, its artifacts, its wall times, the config hash of the run that
wrote it and the size and checksum of every file it vouches for (its ``examples/<stage>.jsonl``). It is
written after those files, atomically, so a record exists only for a stage that finished: a run re-started
with the same command reads its finished stages back instead of redoing them, and ``oracle_results``
reads an earlier run's oracle the same way. A record whose files no longer match is treated as absent
by a resuming run and refused by ``oracle_results``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from unlearn_cli import manifest
from unlearn_cli.files import atomic_write_json

DIR = "stages"
VERSION = 1


def path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / DIR / f"{stage}.json"


def write(run_dir: Path, stage: str, config_hash: str, metrics: Dict[str, float], seconds: Dict[str, float],
          artifacts: Optional[dict] = None, files: Iterable[str] = (), extra: Optional[dict] = None) -> None:
    """Record ``stage`` as finished (``files``: paths relative to ``run_dir`` it vouches for, already written)."""
    atomic_write_json(path(run_dir, stage), {
        "version": VERSION, "stage": stage, "config_hash": config_hash, "metrics": metrics,
        "seconds": seconds, "artifacts": artifacts or {}, "extra": extra or {},
        "files": manifest.entries(run_dir, list(files))})


def read(run_dir: Path, stage: str) -> Tuple[Optional[dict], Optional[str]]:
    """(the record, None) of a finished ``stage`` whose files are intact; (None, what is wrong) when its record or
    one of its files is damaged; (None, None) when the stage has no record."""
    file = path(run_dir, stage)
    if not file.is_file():
        return None, None
    try:
        record = json.loads(file.read_text())
        files = dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{file.relative_to(run_dir)} is unreadable"
    problem = manifest.check(run_dir, files)
    return (record, None) if problem is None else (None, problem)


def hashes(run_dir: Path) -> set:
    """The config hashes of every stage record in ``run_dir`` (readable ones)."""
    out = set()
    for file in sorted((Path(run_dir) / DIR).glob("*.json")):
        try:
            out.add(json.loads(file.read_text()).get("config_hash"))
        except (OSError, ValueError):
            continue
    return out


def clear(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / DIR, ignore_errors=True)
