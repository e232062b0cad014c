"""A finished stage read back from its record and ``examples/<stage>.jsonl``: a baseline without re-evaluation.

``oracle_results=<run dir>`` gives every stage of a run the oracle of an earlier run with the same
benchmark, evaluation and prompt settings: the oracle's evaluation is the same for every method of a
sweep, so it is evaluated once. A resumed run reads its own finished oracle and target stages the same way.
Both go through the stage record (``unlearn_cli.stage_records``), which vouches for the rows' size and
checksum. ``StoredStage`` offers the typed accessors a frozen ``StageScorer``
offers (``truth_ratios``, ``normalised_probs``, ``mia_scores``, ``mia_auc``), computed from the stored
per-item values (JSON floats round-trip exactly, so the numbers equal a re-evaluation's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
from omegaconf import OmegaConf

from unlearn_cli import stage_records
from unlearn_cli.errors import UserError
from unlearn_cli.eval import stats
from unlearn_cli.eval.examples import mia_name

# config sections whose values decide what an oracle's per-item values are
MATCHED = (("benchmark",), ("eval",), ("model", "prompt_template"), ("model", "chat_template"),
           ("model", "system_prompt"), ("model", "date_string"), ("model", "answer_boundary"))


class StoredStage:
    """Per-item columns of one stored stage (``examples/<stage>.jsonl``)."""

    def __init__(self, stage: str, rows: List[dict], source: Path):
        self.stage = stage
        self.source = source
        self.columns: Dict[str, Dict[str, list]] = {}
        for row in rows:
            cols = self.columns.setdefault(row["split"], {})
            for name, value in row.items():
                cols.setdefault(name, []).append(value)

    def _column(self, split: str, name: str) -> np.ndarray:
        values = self.columns.get(split, {}).get(name)
        if values is None or any(v is None for v in values):
            raise UserError(f"oracle_results: {self.source} has no complete '{name}' for split '{split}'; "
                            f"evaluate the oracle again (drop oracle_results) with the metrics that need it")
        return np.asarray(values, dtype=np.float64)

    def truth_ratios(self, split: str) -> np.ndarray:
        return self._column(split, "truth_ratio")

    def normalised_probs(self, split: str) -> np.ndarray:
        return self._column(split, "norm_prob")

    def mia_scores(self, split: str, attack: str, k: float = 0.4, option=None) -> np.ndarray:
        return self._column(split, mia_name(attack, float(k), option))

    def mia_auc(self, members: str, nonmembers: str, attack: str, k: float = 0.4, option=None) -> float:
        return stats.roc_auc(self.mia_scores(members, attack, k, option), self.mia_scores(nonmembers, attack, k, option))


def _section(config: dict, path) -> object:
    for key in path:
        config = (config or {}).get(key) if isinstance(config, dict) else None
    return config


def check_compatible(run_dir: Path, config: dict) -> dict:
    """The earlier run's config; UserError naming the first setting that differs from ``config``."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"oracle_results: '{run_dir}' is not a run directory (no config.yaml)")
    earlier = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
    for path in MATCHED:
        mine, theirs = _section(config, path), _section(earlier, path)
        if mine != theirs:
            where = ".".join(path)
            keys = sorted(set(mine or {}) | set(theirs or {})) if isinstance(mine, dict) and isinstance(theirs, dict) \
                else []
            first = next((k for k in keys if (mine or {}).get(k) != (theirs or {}).get(k)), None)
            detail = f"{where}.{first}: {(theirs or {}).get(first)!r} there, {(mine or {}).get(first)!r} here" \
                if first else f"{where}: {theirs!r} there, {mine!r} here"
            raise UserError(f"oracle_results: '{run_dir}' was evaluated with other settings ({detail}); "
                            f"its oracle values do not apply to this run")
    return earlier


def from_record(run_dir: Path, record: dict) -> StoredStage:
    """The stored stage of a (verified) stage record of ``run_dir``."""
    rows_path = Path(run_dir) / "examples" / f"{record['stage']}.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return StoredStage(record["stage"], rows, rows_path)


def load(run_dir: Path, config: dict, stage: str = "oracle") -> "tuple[StoredStage, Dict[str, float]]":
    """(the stored stage, its aggregates) of an earlier run compatible with ``config``; one UserError naming the
    entry when its record or rows are missing or damaged (they cannot be rebuilt from here)."""
    run_dir = Path(run_dir).expanduser()
    check_compatible(run_dir, config)
    record, problem = stage_records.read(run_dir, stage)
    if problem is not None:
        raise UserError(f"oracle_results: '{run_dir}' has a damaged {stage} stage ({problem}); re-run that run or "
                        f"drop oracle_results to evaluate the oracle here")
    if record is None:
        raise UserError(f"oracle_results: '{run_dir}' has no finished {stage} stage "
                        f"({stage_records.path(run_dir, stage).relative_to(run_dir)}; did that run evaluate it?)")
    return from_record(run_dir, record), dict(record["metrics"])
