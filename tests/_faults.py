"""Helpers for the fault tests: start the CLI in the background, watch its metrics log, stop it with a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List


def _default_sigint() -> None:
    """In the child, before exec: SIGINT at its default, as in a terminal. A test suite started as a background
    job of a non-interactive shell (``bash -c '... &'``) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so a Ctrl-C test would see the run ignore the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: List[str], run_dir: Path, cache: Path, cwd: Path) -> subprocess.Popen:
    """``unlearn run <args> output_dir=<run_dir>`` in the background (stderr captured)."""
    env = dict(os.environ, UNLEARN_CACHE_DIR=str(cache), WANDB_MODE="offline")
    return subprocess.Popen([sys.executable, "-m", "unlearn_cli", "run", *args, f"output_dir={run_dir}"], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def rows(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return found


def logged(run_dir: Path, stage: str, min_step: int = 0) -> bool:
    return any(r.get("stage") == stage and r.get("step", 0) >= min_step for r in rows(run_dir))


def _processes_of(run_dir: Path) -> List[int]:
    """Pids of every process whose command line names ``run_dir`` (the CLI, torchrun and its ranks)."""
    mark = f"output_dir={run_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def stop_when(proc: subprocess.Popen, hit: Callable[[], bool], sig=signal.SIGKILL, timeout: float = 600,
              run_dir: Path = None) -> bool:
    """Send ``sig`` as soon as ``hit()`` holds -- with ``run_dir``, to every process of that run at once, like a
    machine that dies -- and True if it held before the process ended on its own."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and not hit():
        time.sleep(0.01)
    held = proc.poll() is None
    for pid in _processes_of(run_dir) if run_dir is not None else [proc.pid]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(timeout=120)
    return held
