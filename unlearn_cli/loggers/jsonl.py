"""Per-step logs as JSON lines in the run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

from unlearn_cli.contracts import Logger
from unlearn_cli.registry import LOGGERS


@LOGGERS.register("jsonl")
class JsonlLogger(Logger):
    """Appends one JSON object per logged step to ``<run_dir>/metrics.jsonl`` (flushed each line), with the
    wall-clock ``time`` (Unix seconds) it was written at; training rows also carry ``step_seconds``."""

    def __init__(self, filename: str = "metrics.jsonl"):
        self.filename = filename
        self._fh = None

    def start(self, run_dir: Path, run_name: str, config: dict, group: str | None = None,
              resume: bool = False) -> None:
        """Open the file (appending when the run resumes from a checkpoint)."""
        self._fh = open(Path(run_dir) / self.filename, "a" if resume else "w", encoding="utf-8")

    def log(self, stage: str, step: int, values: dict) -> None:
        if self._fh is not None:
            row = {"stage": stage, "step": step, "time": round(time.time(), 3), **values}
            self._fh.write(json.dumps(row, sort_keys=True) + "\n")
            self._fh.flush()

    def summary(self, metrics: dict, images: dict | None = None) -> None:
        """Summary metrics live in results.json; nothing extra to write here."""

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
