"""The one training loop used by the prepare stage, every unlearning method and fine-tuning attacks.

Each step builds a closure that computes the loss on the step's batch (with gradient
accumulation and clipping) and calls ``optimizer.step(closure)``; optimizers that need several
loss evaluations per step (SAM, zeroth-order, hybrid) call the closure again. A non-finite loss
or gradient raises ``NonFiniteLossError`` inside the closure, before any update, so the weights
stay at the last good step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Literal, Optional

import torch

from unlearn_cli import progress
from unlearn_cli.train import distributed
from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.errors import NonFiniteLossError


@dataclass
class TrainSettings:
    """Loop hyperparameters (the ``unlearn`` section, the ``prepare`` section, attack budgets).

    ``steps`` wins over ``epochs``; an epoch is one pass over the first (primary) data split.
    """

    lr: float = 1e-5
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch_size: int = 32
    retain_batch_size: int = 32
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: Optional[float] = 1.0
    precision: Literal["fp32", "bf16"] = "bf16"
    log_every: int = 1


def autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument context factory: bf16 autocast, or a no-op for fp32."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def total_steps(settings: TrainSettings, primary_size: int, batch_size: int) -> int:
    if settings.steps is not None:
        return int(settings.steps)
    if settings.epochs is None:
        raise ValueError("set steps or epochs")
    per_epoch = math.ceil(primary_size / (batch_size * settings.grad_accum))
    return max(1, math.ceil(settings.epochs * per_epoch))


def lr_lambda(settings: TrainSettings, steps: int) -> Callable[[int], float]:
    """Linear warm-up then constant / linear / cosine decay to ``min_lr_ratio``."""
    warm, floor = settings.warmup_steps, settings.min_lr_ratio

    def fn(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if settings.schedule == "constant":
            return 1.0
        progress_ = (step - warm) / max(1, steps - warm)
        if settings.schedule == "linear":
            return floor + (1 - floor) * max(0.0, 1 - progress_)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return fn


class BatchStream:
    """Infinite stream of step batches: one mini-batch per named split, each reshuffled per epoch.

    ``sizes`` maps split name to batch size; the seeded generator makes the stream reproducible.
    ``aligned`` maps a split to a primary split whose indices it reuses, for index-aligned views
    of the same examples (e.g. forget questions with refusal answers next to the true answers).
    ``shard=(rank, world)`` keeps rows ``rank::world`` of each global batch.
    """

    def __init__(self, splits: Dict[str, EncodedQA], sizes: Dict[str, int], pad_id: int, seed: int,
                 aligned: Optional[Dict[str, str]] = None, shard: tuple = (0, 1)):
        self.aligned = dict(aligned or {})
        for name, primary in self.aligned.items():
            if len(splits[name]) != len(splits[primary]):
                raise ValueError(f"split '{name}' must be index-aligned with '{primary}'")
        self.splits = splits
        self.sizes = {k: min(sizes[k], len(v)) for k, v in splits.items() if k not in self.aligned}
        self.pad_id = pad_id
        self.gen = torch.Generator().manual_seed(seed)
        self._orders = {k: [] for k in self.sizes}
        self.rank, self.world = shard

    def _take(self, name: str):
        order = self._orders[name]
        need = self.sizes[name]
        while len(order) < need:
            order.extend(torch.randperm(len(self.splits[name]), generator=self.gen).tolist())
        idx, self._orders[name] = order[:need], order[need:]
        return idx

    def state_dict(self) -> dict:
        """Position in the stream: pending shuffle orders and the generator state."""
        return {"orders": {k: list(v) for k, v in self._orders.items()}, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._orders = {k: list(v) for k, v in state["orders"].items()}
        self.gen.set_state(state["gen"])

    def __iter__(self) -> Iterator[Dict[str, Dict[str, torch.Tensor]]]:
        while True:
            # every rank draws the same global batch, then keeps its rows (data parallelism)
            idx = {k: self._take(k)[self.rank::self.world] for k in self.sizes}
            idx.update({k: idx[p] for k, p in self.aligned.items()})
            yield {k: self.splits[k].batch(idx[k], self.pad_id) for k in self.splits}


def _to(batch, dev):
    return {k: (_to(v, dev) if isinstance(v, dict) else v.to(dev)) for k, v in batch.items()}


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings, steps))


def _check_finite(value: torch.Tensor, what: str, stage: str, step: int) -> None:
    """Raise on every rank if any rank sees a non-finite value (no rank may keep going alone)."""
    if not distributed.all_finite(value):
        raise NonFiniteLossError(
            f"non-finite {what} at {stage} step {step}; stopped with the weights of step {step - 1}; "
            f"lower the learning rate or check the method's hyperparameters")


def train(model, loss_fn, stream: BatchStream, optimizer: torch.optim.Optimizer, settings: TrainSettings,
          steps: int, *, stage: str, log: Callable[[str, int, Dict[str, float]], None],
          device: torch.device, after_step: Optional[Callable[[int], None]] = None,
          scheduler=None, engine=None, start_step: int = 0) -> Dict[str, float]:
    """Run optimisation steps ``start_step..steps-1`` of ``loss_fn(model, batch) -> (loss, logs)``.

    Returns the last step's logged values. ``after_step(step)`` runs after each update (SalUn
    masks, checkpoints). Raises ``NonFiniteLossError`` on NaN/inf, leaving weights at the last
    good step. With a DeepSpeed ``engine`` (``model`` is then the engine) backward, clipping,
    accumulation and the scheduler step are the engine's; otherwise the loop calls
    ``optimizer.step(closure)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    scheduler = scheduler or make_scheduler(optimizer, settings, steps)
    autocast = autocast_factory(settings.precision, device)
    batches = iter(stream)
    model.train()
    last: Dict[str, float] = {}
    with progress.bar(stage, steps - start_step) as advance:
        for step in range(start_step, steps):
            micro = [_to(next(batches), device) for _ in range(settings.grad_accum)]
            logs: Dict[str, torch.Tensor] = {}

            def engine_step():
                total = torch.zeros((), device=device)
                for mb in micro:
                    with autocast():
                        loss, parts = loss_fn(model, mb)
                    _check_finite(loss.detach(), "loss", stage, step)
                    engine.backward(loss)
                    engine.step()
                    total = total + loss.detach() / settings.grad_accum
                    for k, v in parts.items():
                        logs[k] = logs.get(k, 0.0) + v.float() / settings.grad_accum
                norm = engine.get_global_grad_norm()
                if norm is not None:
                    logs["grad_norm"] = torch.as_tensor(float(norm))
                return total

            def closure():
                optimizer.zero_grad(set_to_none=True)
                logs.clear()
                total = torch.zeros((), device=device)
                for mb in micro:
                    with autocast():
                        loss, parts = loss_fn(model, mb)
                    _check_finite(loss.detach(), "loss", stage, step)
                    (loss / settings.grad_accum).backward()
                    total = total + loss.detach() / settings.grad_accum
                    for k, v in parts.items():
                        logs[k] = logs.get(k, 0.0) + v.float() / settings.grad_accum
                if settings.max_grad_norm:
                    norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                    _check_finite(norm.detach(), "gradient norm", stage, step)
                    logs["grad_norm"] = norm.detach()
                return total

            if engine is not None:
                loss = engine_step()
            else:
                loss = optimizer.step(closure)
                scheduler.step()
            if after_step is not None:
                after_step(step)
            values = distributed.mean_over_ranks({"loss": loss.detach(), **{k: v.detach() for k, v in logs.items()}})
            last = {"lr": scheduler.get_last_lr()[0], **values}
            if step % settings.log_every == 0 or step == steps - 1:
                log(stage, step, last)
            advance(1, loss=last["loss"])
    model.eval()
    return last
