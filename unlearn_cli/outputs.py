"""What a run writes in its directory (rank 0 only; every file written to a temp name, then renamed).

``config.yaml`` (redacted), ``results.json`` (``{"status", "run_name", "config_hash", "metrics":
{"<stage>/<key>"}}``, written last), ``examples/<stage>.jsonl`` (one row per evaluated item: ``eval.examples``),
``stages/<stage>.json`` (one record per finished stage: ``stage_records``), ``provenance.json``,
``leak_at_k.json`` and the PNG plots, ``model/`` (safetensors) with ``save_model``.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Dict, Iterable, List, Optional

from omegaconf import OmegaConf

from unlearn_cli import rundir, stage_records
from unlearn_cli.files import atomic_write_json, atomic_write_text, replace_dir
from unlearn_cli.models import build as models
from unlearn_cli.train import checkpoint

log = logging.getLogger("unlearn_cli")


class RunOutputs:
    """The run directory of ``settings`` (``components.RunSettings``); a no-op on ranks > 0."""

    def __init__(self, settings, main: bool):
        self.dir = settings.run_dir
        self.settings = settings
        self.main = main

    def open(self) -> str:
        """Claim the directory (``rundir.claim``: ``"complete"``, ``"resume"`` or ``"fresh"``) and, unless complete,
        write ``config.yaml``; a fresh run starts from an empty directory (an overwritten run's files removed), a
        resumed one keeps its finished stages and checkpoint."""
        state = rundir.claim(self.dir, self.settings.overwrite, self.settings.config_hash, create=self.main)
        if not self.main or state == "complete":
            return state
        atomic_write_text(self.dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.settings.config)))
        results = self.dir / "results.json"
        if results.exists():
            results.unlink()  # a failed or overwritten run's; rewritten at the end
        if state == "fresh":
            stage_records.clear(self.dir)
            shutil.rmtree(self.dir / "examples", ignore_errors=True)
            checkpoint.clear(self.dir)
        return state

    def results(self, status: str, metrics: Dict[str, float], provenance: dict) -> None:
        """``provenance.json``, then ``results.json`` (the run's last word: a complete status means every stage and
        every other file of the run is in place)."""
        if self.main:
            atomic_write_json(self.dir / "provenance.json", provenance)
            atomic_write_json(self.dir / "results.json", {"status": status, "run_name": self.settings.run_name,
                                                          "config_hash": self.settings.config_hash, "metrics": metrics})

    def stage_done(self, stage: str, metrics: Dict[str, float], seconds: Dict[str, float],
                   artifacts: Optional[dict] = None, files: Iterable[str] = (), extra: Optional[dict] = None) -> None:
        """Record ``stage`` as finished (after its ``files`` are written): a resumed run reads it back."""
        if self.main:
            stage_records.write(self.dir, stage, self.settings.config_hash, metrics, seconds, artifacts, files, extra)

    def finished_stage(self, stage: str) -> Optional[dict]:
        """The record of ``stage`` if this config finished it here and its files are intact; a damaged one is
        reported in one warning line and redone."""
        record, problem = stage_records.read(self.dir, stage)
        if problem is not None:
            log.warning("stage %s of %s is damaged (%s); redoing it", stage, self.dir, problem)
            return None
        return record if record is not None and record["config_hash"] == self.settings.config_hash else None

    def examples(self, stage: str, rows: List[dict]) -> None:
        """``examples/<stage>.jsonl``: one JSON object per evaluated item and split."""
        if self.main:
            text = "".join(json.dumps(row, sort_keys=True, allow_nan=False) + "\n" for row in rows)
            atomic_write_text(self.dir / "examples" / f"{stage}.jsonl", text)

    def plots(self, metrics: Dict[str, float], artifacts: Dict[str, dict]) -> Dict[str, str]:
        """PNG plots (leak@k curves, stage bars) and ``leak_at_k.json``; ``{name: path}`` for the logger."""
        if not self.main:
            return {}
        from unlearn_cli import plots
        if artifacts:
            atomic_write_json(self.dir / "leak_at_k.json", {stage: art.get("leak_at_k", {})
                                                           for stage, art in artifacts.items()})
        try:
            return plots.save_all(self.dir, metrics, artifacts)
        except Exception as err:  # noqa: BLE001 - a plotting problem must not fail a finished run
            log.warning("plots not written: %s", err)
            return {}

    def save_model(self, model, tokenizer) -> None:
        """The model in Hugging Face format (safetensors) under ``model/``."""
        if self.main:
            tmp = self.dir / ".model.tmp"
            models.save(model, tokenizer, tmp)
            replace_dir(tmp, self.dir / "model")
