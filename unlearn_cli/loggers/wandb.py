"""Weights & Biases logging (offline unless configured), plus the JSONL file."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import List, Literal, Optional

from unlearn_cli.bounds import PositiveFloat
from unlearn_cli.contracts import Logger
from unlearn_cli.files import redact_overrides
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


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


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
class WandbLogger(Logger):
    """W&B run per unlearn run (grouped by sweep), with redacted config, per-step logs and summary.

    Also writes ``metrics.jsonl``. Any W&B failure (no network, bad key, timeout) prints one
    warning and turns W&B off for the rest of the run; the run itself continues.
    """

    def __init__(self, project: str = "unlearn_cli", entity: Optional[str] = None,
                 mode: Literal["auto", "offline", "online", "disabled"] = "auto",
                 group: Optional[str] = None, tags: List[str] = (), init_timeout: PositiveFloat = 20.0):
        self.project, self.entity, self.mode, self.group = project, entity, mode, group
        self.tags, self.init_timeout = list(tags), init_timeout
        self.files = JsonlLogger()
        self._run = None

    def _fail(self, what: str, err: Exception) -> None:
        warnings.warn(f"wandb {what} failed ({type(err).__name__}: {_first_line(err)}); continuing without W&B",
                      stacklevel=2)
        self._run = None

    def _init(self, mode: str, run_dir: Path, run_name: str, config: dict, group: str | None):
        import wandb

        argv = sys.argv
        # W&B stores the command line in the run's metadata: give it the redacted one
        sys.argv = argv[:1] + redact_overrides(argv[1:])
        try:
            return wandb.init(
                project=self.project, entity=self.entity, name=run_name, group=self.group or group,
                tags=self.tags, config=config, dir=str(run_dir), mode=mode, reinit="finish_previous",
                settings=wandb.Settings(init_timeout=self.init_timeout, silent=True, x_disable_stats=True),
            )
        finally:
            sys.argv = argv

    def start(self, run_dir: Path, run_name: str, config: dict, group: str | None = None,
              resume: bool = False) -> None:
        """Start the W&B run. Online init is bounded by ``init_timeout``; when it fails (no network,
        no or bad key) the run is logged offline under ``<run_dir>/wandb`` instead, for a later
        ``wandb sync``, with one warning."""
        self.files.start(run_dir, run_name, config, group, resume=resume)
        mode = resolve_mode(self.mode)
        try:
            self._run = self._init(mode, run_dir, run_name, config, group)
            return
        except Exception as err:  # noqa: BLE001 - logging must never kill a run
            if mode != "online":
                self._fail("init", err)
                return
            online_err = err
        try:
            self._run = self._init("offline", run_dir, run_name, config, group)
        except Exception as err:  # noqa: BLE001
            self._fail("init", err)
            return
        warnings.warn(f"wandb online init failed ({type(online_err).__name__}: {_first_line(online_err)}); "
                      f"logging offline to {run_dir}/wandb instead (upload later with `wandb sync`)", stacklevel=2)

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
