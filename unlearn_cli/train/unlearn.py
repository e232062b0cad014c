"""The unlearning stage, set up and run by the same code in the pipeline and in the tests.

:func:`build` turns a method, its data and the loop settings into an :class:`Unlearning` bundle, in
the order that keeps runs reproducible: training splits (``forget``, ``retain`` when the method needs
it, the method's index-aligned extra splits), the frozen reference theta_0 and its cached values (in
the loaded precision), the trainable weights' precision regime (``settings.weight_regime``),
``method.setup``, the train plug-ins' ``setup`` (and the training splits they add), the batch stream, the optimizer and scheduler, the
DDP / DeepSpeed wrapper. :func:`run` trains it (resuming from and writing checkpoints when asked)
and returns the unlearned model.

Errors raised (one line each, before the first step): a retain split the benchmark lacks is the
caller's check; batch sizes not divisible by the number of processes; the method's own errors
(missing perturbed answers, bad layer indices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from unlearn_cli import interrupts
from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.errors import UserError
from unlearn_cli.models.build import frozen_copy
from unlearn_cli.train import checkpoint, distributed
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import train
from unlearn_cli.train.reference import Reference
from unlearn_cli.train.settings import (TrainSettings, autocast_factory, make_scheduler, steps_per_epoch, total_steps,
                                        weight_regime)


@dataclass
class PluginContext:
    """What a train plug-in's ``setup`` may use."""

    model: torch.nn.Module
    splits: Dict[str, EncodedQA]
    settings: TrainSettings
    pad_id: int
    device: torch.device
    autocast: Callable
    reference: Optional[Reference]
    tokenizer: object = None


@dataclass
class Unlearning:
    """Everything the unlearning loop needs (see :func:`build`)."""

    model: torch.nn.Module
    method: object
    reference: Optional[Reference]
    plugins: Dict[str, object]
    splits: Dict[str, EncodedQA]
    stream: BatchStream
    optimizer: torch.optim.Optimizer
    scheduler: object
    steps: int
    settings: TrainSettings
    wrapped: torch.nn.Module
    engine: object = None
    regime: str = "fp32"  # the weights' precision regime, in words (provenance)

    def objective(self, model, batch):
        """The method's named terms plus every plug-in's, and the method's logs with each plug-in term's value."""
        terms, logs = self.method.loss(model, batch, self.reference)
        for plugin in self.plugins.values():
            added = plugin.loss_terms(model, batch)
            terms.update(added)
            logs.update({name: term.detach() for name, term in added.items()})
        return terms, logs

    def after_step(self, step: int) -> None:
        for plugin in self.plugins.values():
            plugin.after_step(step, self.optimizer)

    def close(self) -> None:
        """Remove plug-in hooks; make every weight trainable again (methods may freeze layers, attacks tune all)."""
        for plugin in self.plugins.values():
            plugin.close()
        for p in self.model.parameters():
            p.requires_grad_(True)


def check_data(data, method, method_name: str, benchmark_name: str) -> None:
    """UserError (before anything trains) unless ``data`` has the non-empty training splits ``method`` needs."""
    for split in ("forget",) + (("retain",) if method.needs_retain else ()):
        try:
            items = data.train_split(split)
        except UserError as err:
            raise UserError(f"method '{method_name}' needs {split} data: {err}") from None
        if not items:
            raise UserError(f"method '{method_name}' needs a non-empty '{split}' training split, "
                            f"which benchmark '{benchmark_name}' leaves empty")


def build(model, method, data, train_encoded: Dict[str, EncodedQA], encode: Callable,
          settings: TrainSettings, optimizer_spec, plugins: Dict[str, object], *, seed: int, pad_id: int,
          device: torch.device, cache_reference: bool = True,
          dist_spec: Optional[distributed.DistributedSpec] = None, tokenizer=None) -> Unlearning:
    """Set up the unlearning of ``model`` by ``method`` on ``data`` (``BenchmarkData``; module docstring); ``encode(items, answers)``
    tokenises extra splits like the benchmark's own, ``seed`` seeds the batch stream."""
    dist_spec = dist_spec or distributed.DistributedSpec()
    autocast = autocast_factory(settings.precision, device)
    splits = {"forget": train_encoded["forget"]}
    sizes = {"forget": settings.batch_size}
    if method.needs_retain:
        splits["retain"] = train_encoded["retain"]
        sizes["retain"] = settings.retain_batch_size
    world = distributed.world_size()
    for name, size in sizes.items():
        if size % world:
            raise UserError(f"unlearn batch size {size} ({name}) must be divisible by the {world} processes")
    steps = total_steps(settings, len(splits["forget"]), settings.batch_size)
    optimizer_spec.check_steps(steps)
    extra = method.extra_splits(data, encode)
    splits.update(extra)
    reference = None
    if method.needs_reference:
        ref_model = distributed.wrap_reference(frozen_copy(model), dist_spec, settings)
        # the cache is built in the step's batch size (length-sorted): no slower than one epoch of reference forwards
        reference = Reference(ref_model, pad_id, cache=cache_reference, batch_size=settings.batch_size, autocast=autocast)
        for split in method.reference_splits:
            reference.precompute(split, splits[split])
        if cache_reference and not method.needs_reference_model:
            del ref_model
            reference.release()  # everything the method reads from theta_0 is cached: free the copy
    regime = ("DeepSpeed bf16 (fp32 masters in the optimizer)" if dist_spec.kind == "deepspeed" and
              settings.precision != "fp32" else weight_regime(model, settings.precision))
    method.setup(model, reference)
    for key, plugin in plugins.items():
        ctx = PluginContext(model, splits, settings, pad_id, device, autocast, reference, tokenizer)
        plugin.setup(ctx)
        for name, (rows, size) in plugin.train_splits(ctx).items():
            if name in splits:
                raise ValueError(f"plugin '{key}' adds training split '{name}', which the run already has")
            if size % world:
                raise UserError(f"plugin '{key}': batch size {size} ({name}) must be divisible by the {world} processes")
            splits[name], sizes[name] = rows, size
    stream = BatchStream(splits, sizes, pad_id, seed, aligned={k: "forget" for k in extra},
                         shard=(distributed.rank(), world))
    optimizer = optimizer_spec.build([p for p in model.parameters() if p.requires_grad], settings.lr)
    scheduler = make_scheduler(optimizer, settings, steps,
                               steps_per_epoch(settings, len(splits["forget"]), settings.batch_size))
    wrapped, engine = distributed.wrap_for_training(model, optimizer, scheduler, dist_spec, settings,
                                                    settings.batch_size // world)
    return Unlearning(model, method, reference, dict(plugins), splits, stream, optimizer, scheduler, steps,
                      settings, wrapped, engine, regime)


@dataclass
class Checkpointing:
    """Checkpoints of the unlearning in ``run_dir`` every ``every`` steps (0 = only when Slurm's SIGUSR2 asks)."""

    run_dir: Path
    config_hash: str
    every: int = 0


def run(u: Unlearning, *, log: Callable, device: torch.device, ckpt: Optional[Checkpointing] = None,
        reload: Optional[Callable[[], torch.nn.Module]] = None, on_resume: Optional[Callable[[int], None]] = None):
    """Train ``u`` and return the unlearned model (on every rank; None on ranks > 0 after ZeRO).

    With ``ckpt`` a checkpoint of the same config is restored first (``on_resume(first_step)``) and
    new ones are written every ``ckpt.every`` steps and after the last step (so a run interrupted after
    unlearning restores the unlearned weights instead of training again), by every rank together (DDP and
    DeepSpeed included). A SIGUSR2 on any rank makes all of them checkpoint after the current step and hand
    over (Slurm requeue). After distributed training the full weights are gathered into ``reload()`` (a fresh
    model of the same architecture) on rank 0. Plug-ins are closed and every weight is trainable again
    afterwards, also on failure.
    """
    start = 0
    state = checkpoint.load(ckpt.run_dir, ckpt.config_hash) if ckpt is not None else None
    if state is not None:
        start = checkpoint.restore(ckpt.run_dir, state, u)
        if on_resume is not None:
            on_resume(start)

    def after_step(step: int) -> None:
        u.after_step(step)
        if ckpt is None:
            return
        requested = distributed.any_rank(interrupts.checkpoint_requested())  # Slurm's SIGUSR2: checkpoint, requeue
        due = ckpt.every and ((step + 1) % ckpt.every == 0 or step + 1 == u.steps)  # the last: no retraining later
        if due or requested:
            checkpoint.save(ckpt.run_dir, step, u, ckpt.config_hash)
        if requested:
            interrupts.hand_over()

    model = u.model
    try:
        with interrupts.training():
            train(u.wrapped, u.objective, u.stream, u.optimizer, u.settings, u.steps, stage="unlearn", log=log,
                  device=device, scheduler=u.scheduler, engine=u.engine, after_step=after_step, start_step=start,
                  collective=True)
        if u.wrapped is not u.model:
            model = _consolidate(u, reload)
    finally:
        u.close()
    return model


def _consolidate(u: Unlearning, reload: Optional[Callable[[], torch.nn.Module]]):
    """A plain model holding the full unlearned weights (gathered from ZeRO shards) on rank 0."""
    state = distributed.consolidated_state(u.wrapped, u.engine)
    if not distributed.is_main():
        return None
    if reload is None:
        raise RuntimeError("distributed unlearning needs reload() to build the model that receives the gathered weights")
    fresh = reload()
    fresh.load_state_dict(state)
    return fresh
