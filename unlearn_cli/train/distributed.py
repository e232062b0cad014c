"""Process layout: single process, DDP, or DeepSpeed ZeRO (2, 3, 3 + CPU offload).

``unlearn run distributed=zero2 distributed.nproc_per_node=2`` re-executes the CLI under
``torchrun`` (one job = one ``torchrun --standalone`` on the node; no ``--local_rank`` reaches
Hydra: ranks read LOCAL_RANK/RANK/WORLD_SIZE from the environment). Every rank composes the same
config, so all ranks share one deterministic run dir; only rank 0 writes files and logs.

Unlearning runs on all ranks (data parallel: each rank takes its slice of the global batch).
Evaluation and attacks run on rank 0 with the consolidated unlearned weights while the other ranks
wait, then leave.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional

import torch
import torch.distributed as dist

from unlearn_cli.errors import UserError
from unlearn_cli.models.build import unwrap  # noqa: F401 - re-exported for the loop and checkpoints
from unlearn_cli.bounds import PositiveInt


@dataclass
class DistributedSpec:
    """The ``distributed`` group. ``zero_stage`` None = plain DDP (when ``nproc_per_node`` > 1)."""

    kind: Literal["none", "ddp", "deepspeed"] = "none"
    nproc_per_node: PositiveInt = 1
    backend: Optional[str] = None
    zero_stage: Optional[Literal[0, 1, 2, 3]] = None
    offload_optimizer: Optional[str] = None
    offload_params: Optional[str] = None
    deepspeed_overrides: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind == "deepspeed" and self.zero_stage not in (0, 1, 2, 3):
            raise UserError(f"distributed.zero_stage must be 0, 1, 2 or 3 for DeepSpeed, got {self.zero_stage}")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def inside_launch() -> bool:
    """True in a process started by torchrun / the deepspeed launcher / srun with rank env vars."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(spec: DistributedSpec) -> None:
    """Join the process group when running with more than one rank."""
    if world_size() > 1 and not dist.is_initialized():
        backend = spec.backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def deepspeed_config(spec: DistributedSpec, settings, micro_batch: int) -> dict:
    """A DeepSpeed JSON with the run's values in place of "auto" fields."""
    cfg: Dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": settings.grad_accum,
        "gradient_clipping": settings.max_grad_norm or 0.0,
        "zero_optimization": {"stage": spec.zero_stage},
        "bf16": {"enabled": settings.precision == "bf16"},  # the engine keeps fp32 masters (bf16_pure is refused)
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }
    cfg["train_batch_size"] = micro_batch * settings.grad_accum * world_size()
    zero = cfg["zero_optimization"]
    if spec.offload_optimizer:
        zero["offload_optimizer"] = {"device": spec.offload_optimizer}
    if spec.offload_params:
        zero["offload_param"] = {"device": spec.offload_params}
    for key, value in spec.deepspeed_overrides.items():
        cfg[key] = value
    return cfg


def wrap_for_training(model, optimizer, scheduler, spec: DistributedSpec, settings, micro_batch: int):
    """(model_to_call, engine_or_None): DDP wrapper, DeepSpeed engine, or the model itself."""
    if world_size() == 1 and spec.kind != "deepspeed":
        return model, None
    if spec.kind == "deepspeed":
        import deepspeed

        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=deepspeed_config(spec, settings, micro_batch))
        return engine, engine
    device_ids = [int(os.environ.get("LOCAL_RANK", 0))] if torch.cuda.is_available() else None
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    return ddp, None


def wrap_reference(model, spec: DistributedSpec, settings):
    """Frozen reference: sharded by a ZeRO-3 inference engine, else a plain replica per rank."""
    if spec.kind == "deepspeed" and spec.zero_stage == 3 and world_size() > 1:
        import deepspeed

        cfg = deepspeed_config(spec, settings, 1)
        cfg.pop("gradient_clipping", None)
        engine, *_ = deepspeed.initialize(model=model, config=cfg)
        engine.eval()
        return engine
    return model


def consolidated_state(model, engine) -> Optional[Dict[str, torch.Tensor]]:
    """Full (unsharded) weights on rank 0 (None elsewhere) after distributed training."""
    inner = unwrap(model)
    if engine is not None and getattr(engine, "zero_optimization_partition_weights", lambda: False)():
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(inner.parameters()), modifier_rank=None):
            state = {k: v.detach().clone().cpu() for k, v in inner.state_dict().items()} if is_main() else None
        return state
    return {k: v.detach().clone().cpu() for k, v in inner.state_dict().items()} if is_main() else None


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. building a cache entry); the others then run it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank."""
    ok = torch.tensor(float(torch.isfinite(value).all()), device=value.device)
    if world_size() > 1 and dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on some rank (one all-reduce when there are several; every rank must call it)."""
    if world_size() == 1 or not dist.is_initialized():
        return flag
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor(float(flag), device=dev)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(values: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Average scalar logs over ranks (one all-reduce), as floats."""
    keys = sorted(values)
    vec = torch.stack([torch.as_tensor(values[k], dtype=torch.float32).reshape(()).cpu() for k in keys])
    if world_size() > 1 and dist.is_initialized():
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        vec = vec.to(dev)
        dist.all_reduce(vec)
        vec = (vec / world_size()).cpu()
    return {k: float(v) for k, v in zip(keys, vec)}
