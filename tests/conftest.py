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


@pytest.fixture
def refuse(cache_dir, monkeypatch, capfd):
    """``refuse(args, cwd)``: ``unlearn <args>`` run in this process, for input the CLI must refuse before a run
    starts; returns what ``run_cli`` returns (exit code, stdout, stderr).

    It runs ``cli.main`` as the program does, minus the interpreter start-up (about 5 s of imports per call,
    which the test process has already paid), with the output captured at the file descriptors, so a stray
    warning from any library counts as a line as it would in a terminal. The run itself is replaced by a
    failure: input that passes validation fails the test instead of starting a run."""
    from unlearn_cli import cli, interrupts

    def started(argv):
        raise AssertionError(f"unlearn {' '.join(argv)} passed validation and would have started a run")

    def run(args, cwd: Path, env_extra=None):
        import transformers

        verbosity = transformers.utils.logging.get_verbosity()
        monkeypatch.chdir(cwd)
        for key, value in dict(UNLEARN_CACHE_DIR=str(cache_dir), WANDB_MODE="offline", **(env_extra or {})).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(cli, "_hydra_main", started)
        monkeypatch.setattr(interrupts, "install", lambda: None)  # leave the test process's signal handlers be
        capfd.readouterr()
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            transformers.utils.logging.set_verbosity(verbosity)
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["unlearn", *args], code, out, err)
    return run


def read_results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
