"""Shared fixtures: a per-session prepared-model cache and a helper that runs the CLI as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("UNLEARN_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Prepared target/oracle models, shared by every CLI test of the session (built once)."""
    return Path(os.environ.get("UNLEARN_TEST_CACHE_DIR") or tmp_path_factory.mktemp("unlearn-cache"))


def run_cli(args, cwd: Path, cache: Path, expect_ok: bool = True, timeout: int = 900, env_extra=None):
    """Run ``python -m unlearn_cli <args>`` in ``cwd``; returns the CompletedProcess."""
    env = dict(os.environ, UNLEARN_CACHE_DIR=str(cache), WANDB_MODE="offline", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-m", "unlearn_cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(f"unlearn {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
