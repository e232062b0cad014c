"""Weights & Biases logging (offline unless configured), plus the JSONL file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Literal, Optional

from unlearn_cli.loggers.jsonl import JsonlLogger
from unlearn_cli.registry import LOGGERS


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_mode(mode: str) -> str:
    """``auto``: online only when a key is configured (env or netrc) and WANDB_MODE does not say
    otherwise; an explicit WANDB_MODE wins over the YAML."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if mode == "auto":
        return "online" if _has_credentials() else "offline"
    return mode


@LOGGERS.register("wandb")
class WandbLogger:
    """W&B run per unlearn run (grouped by sweep), with redacted config, per-step logs and summary.

    Also writes ``metrics.jsonl``. Any W&B failure (no network, bad key, timeout) prints one
    warning and turns W&B off for the rest of the run; the run itself continues.
    """

    def __init__(self, project: str = "unlearn_cli", entity: Optional[str] = None,
                 mode: Literal["auto", "offline", "online", "disabled"] = "auto",
                 group: Optional[str] = None, tags: List[str] = (), init_timeout: float = 20.0):
        self.project, self.entity, self.mode, self.group = project, entity, mode, group
        self.tags, self.init_timeout = list(tags), init_timeout
        self.files = JsonlLogger()
        self._run = None

    def _fail(self, what: str, err: Exception) -> None:
        warnings.warn(f"wandb {what} failed ({type(err).__name__}: {err}); continuing without W&B", stacklevel=2)
        self._run = None

    def start(self, run_dir: Path, run_name: str, config: dict, group: str | None = None) -> None:
        self.files.start(run_dir, run_name, config, group)
        try:
            import wandb

            self._run = wandb.init(
                project=self.project, entity=self.entity, name=run_name, group=self.group or group,
                tags=self.tags, config=config, dir=str(run_dir), mode=resolve_mode(self.mode), reinit="finish_previous",
                settings=wandb.Settings(init_timeout=self.init_timeout, silent=True, x_disable_stats=True),
            )
        except Exception as err:  # noqa: BLE001 - logging must never kill a run
            self._fail("init", err)

    def log(self, stage: str, step: int, values: dict) -> None:
        self.files.log(stage, step, values)
        if self._run is not None:
            try:
                self._run.log({f"{stage}/{k}": v for k, v in values.items()} | {f"{stage}/step": step})
            except Exception as err:  # noqa: BLE001
                self._fail("log", err)

    def summary(self, metrics: dict, images: dict | None = None) -> None:
        if self._run is None:
            return
        try:
            import wandb

            self._run.summary.update(metrics)
            for key, path in (images or {}).items():
                self._run.log({key: wandb.Image(str(path))})
        except Exception as err:  # noqa: BLE001
            self._fail("summary", err)

    def close(self) -> None:
        self.files.close()
        if self._run is not None:
            try:
                self._run.finish()
            except Exception as err:  # noqa: BLE001
                self._fail("finish", err)
