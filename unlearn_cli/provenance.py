"""Provenance of a run: code version, library versions, seed, device, stage wall times."""

from __future__ import annotations

import importlib.metadata as md
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict

import torch

from unlearn_cli.files import redact_overrides

PACKAGES = ("unlearn_cli", "torch", "transformers", "tokenizers", "hydra-core", "omegaconf", "safetensors",
            "rouge-score", "numpy", "scipy", "wandb", "deepspeed")


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class Provenance:
    """Collects what a result depends on; ``as_dict()`` is written to provenance.json."""

    def __init__(self, seed: int, device: torch.device):
        self.data = {
            "git_sha": _git("rev-parse", "HEAD") or None,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "versions": _versions(),
            "seed": seed,
            "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
            "torch_threads": torch.get_num_threads(),
            "host": socket.gethostname(),
            "argv": redact_overrides(sys.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stage_seconds": {},
        }

    @contextmanager
    def stage(self, name: str):
        """Time stage ``name``; an interruption (Ctrl-C, SIGTERM) leaving it carries its name (``.stage``)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException as err:
            if not isinstance(err, Exception) and getattr(err, "stage", None) is None:
                err.stage = name
            raise
        finally:
            self.data["stage_seconds"][name] = round(time.perf_counter() - start, 3)

    def seconds(self, *names: str) -> Dict[str, float]:
        """The recorded wall times of the stages ``names`` (those that ran)."""
        return {n: self.data["stage_seconds"][n] for n in names if n in self.data["stage_seconds"]}

    def restored(self, stage: str, seconds: Dict[str, float], extra: dict) -> None:
        """A stage read back from an interrupted attempt: its wall times and provenance entries, and its name in
        ``resumed_stages``."""
        self.data["stage_seconds"].update(seconds)
        self.merge(extra)
        self.data.setdefault("resumed_stages", []).append(stage)

    def merge(self, entries: dict) -> None:
        """Set ``entries``; one that is a dict (``eval_cache``: one key per stage) extends a dict already set."""
        for key, value in entries.items():
            if isinstance(value, dict) and isinstance(self.data.get(key), dict):
                self.data[key] = {**self.data[key], **value}
            else:
                self.data[key] = value

    def set(self, key: str, value) -> None:
        self.data[key] = value

    def as_dict(self) -> dict:
        return dict(self.data, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
