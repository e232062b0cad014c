"""Where a run writes: a deterministic directory derived from its config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from unlearn_cli.errors import UserError
from unlearn_cli.files import stable_hash, without

# keys that change where/how a run is logged, not what it computes
NON_RESULT_KEYS = ("output_root", "output_dir", "overwrite", "logger", "progress", "save_model", "cache_dir",
                   "sweep_name", "threads", "oracle_results")


def config_hash(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    return stable_hash(without(plain, NON_RESULT_KEYS), 8)


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.benchmark.name}-{cfg.method.name}-{cfg.optimizer.name}-seed{cfg.seed}-{config_hash(cfg)}"


def resolve(cfg: DictConfig, sweep_dir: Optional[str]) -> Path:
    """``output_dir`` if given, else ``<sweep_dir or output_root>/<run_name>``."""
    if cfg.get("output_dir"):
        return Path(str(cfg.output_dir)).expanduser()
    root = Path(sweep_dir) if sweep_dir else Path(str(cfg.output_root)).expanduser()
    return root / run_name(cfg)


def finished(run_dir: Path) -> bool:
    path = run_dir / "results.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def claim(run_dir: Path, overwrite: bool, create: bool = True) -> None:
    """Create the run dir; refuse one holding a finished run unless ``overwrite``."""
    if finished(run_dir) and not overwrite:
        raise UserError(f"output dir '{run_dir}' already holds a finished run; pass overwrite=true to replace it "
                        f"or output_dir=<new dir> to keep it")
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
