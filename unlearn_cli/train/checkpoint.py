"""Unlearning checkpoints for resume after a crash, Ctrl-C or preemption: single process, DDP and DeepSpeed.

``<run_dir>/checkpoint/`` holds

- the weights and optimizer: ``model.safetensors`` plus the optimizer and scheduler states in
  ``trainer_state.pt`` (single process / DDP, written by rank 0: the replicas are identical), or ``engine/``, a
  DeepSpeed engine checkpoint (``engine.save_checkpoint``: module, ZeRO-partitioned optimizer shards of every
  rank, scheduler) that every rank writes its part of;
- ``rank<r>.pt`` per rank: the batch-stream position (pending shuffle orders and generator state), the torch
  RNG state and the method's own state;
- ``trainer_state.pt`` (rank 0, written last): the step, the config hash, the number of ranks, the format version.

All ranks write into ``checkpoint.tmp/``; after a barrier rank 0 swaps it in for the previous checkpoint
(``files.replace_dir``), so a kill at any moment leaves one complete checkpoint. Re-running the same command
finds it and continues from the step after it; the final metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_model, save_model

from unlearn_cli.errors import UserError
from unlearn_cli.files import replace_dir
from unlearn_cli.train import distributed

DIRNAME = "checkpoint"
ENGINE_DIR, ENGINE_TAG = "engine", "latest_step"
VERSION = 2

log = logging.getLogger("unlearn_cli")


def path(run_dir: Path) -> Path:
    return Path(run_dir) / DIRNAME


def save(run_dir: Path, step: int, u, config_hash: str) -> None:
    """Write the checkpoint after ``step`` of the :class:`~unlearn_cli.train.unlearn.Unlearning` ``u``; every rank
    calls it (a collective under DDP / DeepSpeed)."""
    final, main = path(run_dir), distributed.is_main()
    tmp = final.with_name(DIRNAME + ".tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    shared = {"version": VERSION, "step": step, "config_hash": config_hash, "world": distributed.world_size()}
    if u.engine is not None:
        u.engine.save_checkpoint(str(tmp / ENGINE_DIR), tag=ENGINE_TAG, save_latest=False)
    elif main:
        save_model(u.model, str(tmp / "model.safetensors"))
        shared.update(optimizer=u.optimizer.state_dict(), scheduler=u.scheduler.state_dict())
    torch.save({"stream": u.stream.state_dict(), "torch_rng": torch.get_rng_state(), "method": u.method.state_dict()},
               tmp / f"rank{distributed.rank()}.pt")
    distributed.barrier()
    if main:
        torch.save(shared, tmp / "trainer_state.pt")
        replace_dir(tmp, final)
    distributed.barrier()


def load(run_dir: Path, config_hash: str) -> Optional[dict]:
    """The saved run-wide state (the rest is restored by :func:`restore`), or None when there is no usable
    checkpoint (one of an older format is reported and ignored: unlearning restarts from step 0)."""
    distributed.barrier()  # a fresh run's rank 0 has cleared an old checkpoint by now
    final = path(run_dir)
    if not (final / "trainer_state.pt").exists():
        return None
    state = torch.load(final / "trainer_state.pt", weights_only=True)
    if state["config_hash"] != config_hash:
        raise UserError(f"checkpoint in '{final}' was written by a different config; remove it or pass "
                        f"overwrite=true to start over")
    if state.get("version") != VERSION:
        log.warning("checkpoint in %s has an older format; unlearning restarts from step 0", final)
        return None
    if state["world"] != distributed.world_size():
        raise UserError(f"checkpoint in '{final}' was written by {state['world']} processes, this run has "
                        f"{distributed.world_size()}; run it with as many or pass overwrite=true to start over")
    return state


def restore(run_dir: Path, state: dict, u) -> int:
    """Load everything back into ``u`` on this rank; returns the first step still to run."""
    final = path(run_dir)
    if u.engine is not None:
        loaded, _ = u.engine.load_checkpoint(str(final / ENGINE_DIR), tag=ENGINE_TAG, load_optimizer_states=True,
                                             load_lr_scheduler_states=True)
        if loaded is None:
            raise UserError(f"checkpoint in '{final}' has no readable DeepSpeed engine state; remove it or pass "
                            f"overwrite=true to start over")
    else:
        load_model(u.model, str(final / "model.safetensors"))
        u.optimizer.load_state_dict(state["optimizer"])
        u.scheduler.load_state_dict(state["scheduler"])
    mine = torch.load(final / f"rank{distributed.rank()}.pt", weights_only=True)
    u.stream.load_state_dict(mine["stream"])
    torch.set_rng_state(mine["torch_rng"])
    u.method.load_state_dict(mine["method"])
    return int(state["step"]) + 1


def clear(run_dir: Path) -> None:
    shutil.rmtree(path(run_dir), ignore_errors=True)
