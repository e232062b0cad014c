"""What a run writes in its directory (rank 0 only; every file written to a temp name, then renamed).

``config.yaml`` (redacted), ``results.json`` (``{"status", "run_name", "metrics": {"<stage>/<key>"}}``),
``examples/<stage>.jsonl`` (one row per evaluated item: ``eval.examples``), ``provenance.json``,
``leak_at_k.json`` and the PNG plots, ``model/`` (safetensors) with ``save_model``.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Dict, List

from omegaconf import OmegaConf

from unlearn_cli import rundir
from unlearn_cli.files import atomic_write_json, atomic_write_text, replace_dir
from unlearn_cli.models import build as models

log = logging.getLogger("unlearn_cli")


class RunOutputs:
    """The run directory of ``settings`` (``components.RunSettings``); a no-op on ranks > 0."""

    def __init__(self, settings, main: bool):
        self.dir = settings.run_dir
        self.settings = settings
        self.main = main

    def open(self) -> None:
        """Claim the directory (refusing a finished run unless ``overwrite``) and write ``config.yaml``."""
        if not self.main:
            return
        rundir.claim(self.dir, self.settings.overwrite)
        atomic_write_text(self.dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.settings.config)))
        results = self.dir / "results.json"
        if results.exists():
            results.unlink()  # a stale or overwritten run; it is rewritten at the end
        shutil.rmtree(self.dir / "examples", ignore_errors=True)  # every stage of this run writes its own

    def results(self, status: str, metrics: Dict[str, float], provenance: dict) -> None:
        if self.main:
            atomic_write_json(self.dir / "results.json",
                              {"status": status, "run_name": self.settings.run_name, "metrics": metrics})
            atomic_write_json(self.dir / "provenance.json", provenance)

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
