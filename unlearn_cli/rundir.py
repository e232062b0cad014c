"""Where a run writes: a deterministic directory derived from its config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from unlearn_cli import stage_records
from unlearn_cli.binding import to_plain
from unlearn_cli.errors import UserError
from unlearn_cli.files import stable_hash, without

# keys that change where/how a run is logged, not what it computes
NON_RESULT_KEYS = ("output_root", "output_dir", "overwrite", "logger", "progress", "save_model", "cache_dir",
                   "sweep_name", "threads", "oracle_results", "cache_eval")


def config_hash(cfg: DictConfig) -> str:
    plain = to_plain(cfg)
    return stable_hash(without(plain, NON_RESULT_KEYS), 8)


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.benchmark.name}-{cfg.method.name}-{cfg.optimizer.name}-seed{cfg.seed}-{config_hash(cfg)}"


def resolve(cfg: DictConfig, sweep_dir: Optional[str]) -> Path:
    """``output_dir`` if given, else ``<sweep_dir or output_root>/<run_name>``."""
    if cfg.get("output_dir"):
        return Path(str(cfg.output_dir)).expanduser()
    root = Path(sweep_dir) if sweep_dir else Path(str(cfg.output_root)).expanduser()
    return root / run_name(cfg)


def _results(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def finished(run_dir: Path) -> bool:
    return _results(run_dir).get("status") == "complete"


def claim(run_dir: Path, overwrite: bool, config_hash: str, create: bool = True) -> str:
    """What to do with ``run_dir`` for a run of ``config_hash``: ``"complete"`` (this config's run finished there:
    nothing to redo), ``"resume"`` (finished stages or a checkpoint of this config are there) or ``"fresh"``
    (nothing of it; with ``overwrite`` whatever is there is replaced). A finished or unfinished run of another
    config is refused unless ``overwrite``. Creates the directory when ``create``."""
    results = _results(run_dir)
    recorded = stage_records.hashes(run_dir)
    others = recorded - {config_hash}
    if not overwrite and results.get("status") == "complete":
        if results.get("config_hash") == config_hash:
            return "complete"
        raise UserError(f"output dir '{run_dir}' already holds a finished run of another config; pass "
                        f"overwrite=true to replace it or output_dir=<new dir> to keep it")
    if not overwrite and others:
        raise UserError(f"output dir '{run_dir}' holds an unfinished run of another config; pass overwrite=true to "
                        f"replace it or output_dir=<new dir> to keep it")
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    resumable = not overwrite and (config_hash in recorded or (run_dir / "checkpoint").exists())
    return "resume" if resumable else "fresh"
