"""Periodic unlearning checkpoints for resume after a crash or preemption.

``<run_dir>/checkpoint/`` holds the model weights (safetensors), and ``trainer_state.pt`` with the
optimizer, scheduler, batch-stream position (shuffle orders + generator state), torch RNG, the
method's own state and the config hash. It is written to a temp dir and swapped in atomically, so
a kill during a save leaves the previous checkpoint intact. Re-running the same command finds it
and continues from the step after it; the final metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_model, save_model

from unlearn_cli.errors import UserError
from unlearn_cli.files import replace_dir

DIRNAME = "checkpoint"


def path(run_dir: Path) -> Path:
    return Path(run_dir) / DIRNAME


def save(run_dir: Path, step: int, model, optimizer, scheduler, stream, method, config_hash: str) -> None:
    """Write the checkpoint after ``step`` (rank 0 only; single-process / DDP training)."""
    final = path(run_dir)
    tmp = final.with_name(DIRNAME + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({
        "step": step,
        "config_hash": config_hash,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "stream": stream.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "method": method.state_dict(),
    }, tmp / "trainer_state.pt")
    replace_dir(tmp, final)


def load(run_dir: Path, config_hash: str) -> Optional[dict]:
    """The saved trainer state (weights are restored by :func:`restore`), or None if absent."""
    final = path(run_dir)
    if not (final / "trainer_state.pt").exists():
        return None
    state = torch.load(final / "trainer_state.pt", weights_only=True)
    if state["config_hash"] != config_hash:
        raise UserError(f"checkpoint in '{final}' was written by a different config; remove it or pass "
                        f"overwrite=true to start over")
    return state


def restore(run_dir: Path, state: dict, model, optimizer, scheduler, stream, method) -> int:
    """Load everything back; returns the first step still to run."""
    load_model(model, str(path(run_dir) / "model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stream.load_state_dict(state["stream"])
    torch.set_rng_state(state["torch_rng"])
    method.load_state_dict(state["method"])
    return int(state["step"]) + 1


def clear(run_dir: Path) -> None:
    shutil.rmtree(path(run_dir), ignore_errors=True)
