"""The one training loop used by the prepare stage, every unlearning method and fine-tuning attacks.

The closure contract (what every optimizer may rely on)
-------------------------------------------------------
Each step builds a :class:`StepClosure` over the step's micro-batches and calls
``optimizer.step(closure)``. Calling the closure evaluates the objective, the sum of the named loss
terms an objective returns (``forget``, ``retain``, plug-in terms, ...):

* ``closure()`` -- all terms, with backward: gradients of the trainable parameters are reset, each
  micro-batch's loss is back-propagated divided by ``grad_accum``, the accumulated gradient is
  clipped to ``max_grad_norm``; returns the step loss (fp32, mean over micro-batches);
* ``closure(terms=["forget"])`` -- only those terms (SAM, randomized smoothing, gradient penalty
  and curvature wrappers perturb or penalise the forget term alone; the retain term is taken at theta);
* ``closure(backward=False)`` -- forward only, under ``torch.no_grad``: no gradient is touched, the
  loss is accumulated in fp32 (zeroth-order estimates take differences of such values); in data-parallel
  unlearning it is averaged over the ranks, so every rank sees the global batch's loss and takes the same
  zeroth-order step (backward evaluations are averaged by DDP's gradient all-reduce instead);
* ``closure(transform={"forget": f})`` -- each micro-batch's ``forget`` term ``L`` is replaced by ``f(L)``
  before the sum is back-propagated (the gradient penalty and curvature wrappers build ``f`` from
  ``torch.autograd.grad(L, params, create_graph=True)``: double back-prop);
* ``closure(clip=False)`` -- leave the accumulated gradient unclipped; a wrapper that adds gradients of
  several evaluations clips their sum once with ``closure.clip_gradients()``.

Every evaluation re-runs the forward at the current weights, so an optimizer may perturb the weights
between calls and must restore them itself. ``closure.logs`` holds the last evaluation's logs.
A non-finite loss or gradient norm raises ``NonFiniteLossError`` inside the closure, before any
update, so the weights stay at the last good step. Accumulation, clipping and that guard live in
the closure alone, for the plain path and the DeepSpeed path (where the engine back-propagates,
clips, accumulates and steps; only single-evaluation first-order optimizers run there).
"""

from __future__ import annotations

import functools
import operator
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

from unlearn_cli import progress
from unlearn_cli.errors import NonFiniteLossError
from unlearn_cli.train import distributed
from unlearn_cli.train.batches import BatchStream, to_device
from unlearn_cli.train.settings import TrainSettings, autocast_factory, make_scheduler

Objective = Callable[[object, dict], tuple]  # (model, batch) -> (terms, logs)


def _check_finite(value: torch.Tensor, what: str, stage: str, step: int, collective: bool) -> None:
    """Raise on every rank if any rank sees a non-finite value (no rank may keep going alone): with
    ``collective`` the ranks agree through one all-reduce."""
    if not (distributed.all_finite(value) if collective else bool(torch.isfinite(value).all())):
        raise NonFiniteLossError(
            f"non-finite {what} at {stage} step {step}; stopped with the weights "
            f"{f'of step {step - 1}' if step else 'it started from'}; "
            f"lower the learning rate or check the method's hyperparameters")


def sum_terms(terms: Dict[str, torch.Tensor], names: Optional[Iterable[str]] = None) -> torch.Tensor:
    """The sum of ``terms`` (all, or those in ``names``), added left to right in the terms' order."""
    if names is not None:
        wanted = list(names)
        unknown = [n for n in wanted if n not in terms]
        if unknown:
            raise ValueError(f"loss term '{unknown[0]}' is not among this objective's terms: {', '.join(terms)}")
        terms = {k: v for k, v in terms.items() if k in wanted}
    if not terms:
        raise ValueError("no loss term selected")
    return functools.reduce(operator.add, terms.values())


class StepClosure:
    """The objective of one optimisation step (see the module docstring for the contract)."""

    def __init__(self, model, objective: Objective, micro_batches: Sequence[dict], settings: TrainSettings,
                 params: List[torch.nn.Parameter], *, stage: str, step: int, device: torch.device, engine=None,
                 collective: bool = False):
        self.model, self.objective, self.micro = model, objective, list(micro_batches)
        self.collective = collective
        self.settings, self.params, self.engine = settings, params, engine
        self.stage, self.step = stage, step
        self.device = device
        self.autocast = autocast_factory(settings.precision, device)
        self.logs: Dict[str, torch.Tensor] = {}
        self.term_names: List[str] = []

    def __call__(self, terms: Optional[Iterable[str]] = None, backward: bool = True,
                 transform: Optional[Dict[str, Callable[[torch.Tensor], torch.Tensor]]] = None,
                 clip: bool = True) -> torch.Tensor:
        accum = self.settings.grad_accum
        if transform and not backward:
            raise ValueError("a loss-term transform needs backward=True (it differentiates the term)")
        if backward and self.engine is None:
            for p in self.params:  # gradients of this evaluation only (optimizers keep what they need)
                p.grad = None
        self.logs = {}
        total = torch.zeros((), device=self.device)
        with torch.enable_grad() if backward else torch.no_grad():
            for mb in self.micro:
                with self.autocast():
                    parts, logs = self.objective(self.model, mb)
                self.term_names = list(parts)
                for name, f in (transform or {}).items():
                    if name not in parts:
                        raise ValueError(f"loss term '{name}' is not among this objective's terms: {', '.join(parts)}")
                    parts[name] = f(parts[name])
                loss = sum_terms(parts, terms)
                _check_finite(loss.detach(), "loss", self.stage, self.step, self.collective)
                if backward and self.engine is not None:
                    self.engine.backward(loss)  # the engine scales by 1/grad_accum and accumulates
                    self.engine.step()          # a real update only at the accumulation boundary
                elif backward:
                    (loss / accum).backward()
                total = total + loss.detach().float() / accum
                for k, v in logs.items():
                    self.logs[k] = self.logs.get(k, 0.0) + v.float() / accum
        if backward and clip:
            self.clip_gradients()
        if not backward and self.collective:  # the global batch's loss: every rank takes the same ZO step
            total = torch.tensor(distributed.mean_over_ranks({"loss": total})["loss"], device=self.device)
        return total

    def clip_gradients(self) -> None:
        """Clip the parameters' current gradients to ``max_grad_norm`` (plain path) and log the global norm (taken
        before clipping); the engine clips by itself."""
        if self.engine is not None:
            norm = self.engine.get_global_grad_norm()
            if norm is not None:
                self.logs["grad_norm"] = torch.as_tensor(float(norm))
        elif self.settings.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.settings.max_grad_norm)
            _check_finite(norm.detach(), "gradient norm", self.stage, self.step, self.collective)
            self.logs["grad_norm"] = norm.detach()


def train(model, objective: Objective, stream: BatchStream, optimizer: torch.optim.Optimizer,
          settings: TrainSettings, steps: int, *, stage: str, log: Callable[[str, int, Dict[str, float]], None],
          device: torch.device, after_step: Optional[Callable[[int], None]] = None,
          scheduler=None, engine=None, start_step: int = 0, collective: bool = False) -> Dict[str, float]:
    """Run optimisation steps ``start_step..steps-1`` of ``objective(model, batch) -> (terms, logs)``.

    Returns the last step's logged values (with ``step_seconds``: the step's wall time, batches to
    ``after_step`` included). ``after_step(step)`` runs after each update (plug-ins,
    checkpoints). Raises ``NonFiniteLossError`` on NaN/inf, leaving weights at the last good step.
    With a DeepSpeed ``engine`` (``model`` is then the engine) the closure runs once per step and
    the engine performs the update and the scheduler step. ``collective``: every rank runs this loop (data
    parallel unlearning), so non-finite checks and logged values are reduced over the ranks; otherwise (the
    prepare stage inside ``main_first``, attacks on rank 0) the loop is local to its process.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    scheduler = scheduler or make_scheduler(optimizer, settings, steps)
    batches = iter(stream)
    model.train()
    last: Dict[str, float] = {}
    with progress.bar(stage, steps - start_step) as advance:
        for step in range(start_step, steps):
            started = time.perf_counter()
            micro = [to_device(next(batches), device) for _ in range(settings.grad_accum)]
            closure = StepClosure(model, objective, micro, settings, params, stage=stage, step=step,
                                  device=device, engine=engine, collective=collective)
            if engine is not None:
                loss = closure()
            else:
                loss = optimizer.step(closure)  # the optimizer evaluates the closure as often as it needs
                scheduler.step()
            if after_step is not None:
                after_step(step)
            raw = {"loss": loss.detach(), **{k: v.detach() for k, v in closure.logs.items()}}
            values = distributed.mean_over_ranks(raw) if collective else {k: float(v) for k, v in raw.items()}
            last = {"lr": scheduler.get_last_lr()[0], **values, "step_seconds": round(time.perf_counter() - started, 4)}
            if step % settings.log_every == 0 or step == steps - 1:
                log(stage, step, last)
            advance(1, loss=last["loss"])
    finish = getattr(optimizer, "finish_training", None)  # weight averaging: the average becomes the weights
    if finish is not None:
        finish()
    model.eval()
    return last
