"""Hybrid first-order / zeroth-order optimizer (proposed in arXiv 2510.00761, no public code)."""

from __future__ import annotations

from typing import List, Literal, Optional

import torch

from unlearn_cli.bounds import PositiveFloat, PositiveInt
from unlearn_cli.contracts import OptimizerSpec
from unlearn_cli.errors import UserError
from unlearn_cli.optimizers._wrapping import gradient_base
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.optimizers.zo_sgd import ZOSGD
from unlearn_cli.registry import OPTIMIZERS

SCHEDULES = ("alternate", "periodic", "split")


class Restricted:
    """The step closure evaluating only ``terms`` unless a caller names terms itself (what the zeroth-order part of
    the ``split`` schedule sees: the forget term alone)."""

    def __init__(self, closure, terms: List[str]):
        self.closure, self.terms = closure, terms

    def __call__(self, terms=None, **evaluation):
        return self.closure(terms=self.terms if terms is None else terms, **evaluation)

    def __getattr__(self, name):
        return getattr(self.closure, name)


class HybridOptimizer(torch.optim.Optimizer):
    """Step ``t`` (0-based) by schedule: ``alternate`` -- FO on even t, ZO on odd t; ``periodic`` -- FO on the first
    ``period`` steps of every ``period + 1``, then one ZO step; ``split`` -- every step, the FO gradient of every
    non-forget term at theta, the ZO estimate of the forget term at theta (its update applied), then the FO update:
    ``theta <- theta - lr_zo g_hat_f - lr_fo grad L_r``. Both children's parameter groups are scheduled (the run's
    schedule scales each learning rate); state: both children's plus ``t``."""

    def __init__(self, params, fo: torch.optim.Optimizer, zo: torch.optim.Optimizer, schedule: str, period: int):
        self.fo, self.zo = fo, zo
        super().__init__(params, dict(schedule=schedule, period=period))
        self.schedule, self.period, self.t = schedule, period, 0
        self.others: Optional[List[str]] = None  # split: the objective's non-forget terms, learnt at the first step
        self.param_groups = fo.param_groups + zo.param_groups
        self.state = fo.state

    def phase(self, t: int) -> str:
        """``fo``, ``zo`` or ``split`` at step ``t``."""
        if self.schedule == "split":
            return "split"
        if self.schedule == "alternate":
            return "fo" if t % 2 == 0 else "zo"
        return "fo" if t % (self.period + 1) < self.period else "zo"

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise RuntimeError("hybrid needs the step closure (its zeroth-order phase evaluates perturbed weights)")
        phase, self.t = self.phase(self.t), self.t + 1
        logs = {}
        if phase == "fo":
            with torch.enable_grad():
                loss = self.fo.step(closure)
            logs["fo_loss"] = loss
        elif phase == "zo":
            loss = self.zo.step(closure)
            logs["zo_loss"] = loss
        else:
            if self.others is None:
                closure(terms=["forget"], backward=False)  # the term names, once
                self.others = [t for t in closure.term_names if t != "forget"]
            if not self.others:
                raise UserError("optimizer.schedule=split runs first order on the terms other than 'forget', and "
                                "this method has none; use optimizer.schedule=alternate or periodic")
            with torch.enable_grad():
                fo_loss = closure(terms=self.others)
            zo_loss = self.zo.step(Restricted(closure, ["forget"]))
            self.fo.step()
            loss = zo_loss + fo_loss
            logs.update(fo_loss=fo_loss, zo_loss=zo_loss)
        closure.logs.update({k: torch.as_tensor(v).detach().float() for k, v in logs.items()})
        closure.logs["zo_lr"] = torch.tensor(float(self.zo.param_groups[0]["lr"]))
        return loss

    def state_dict(self):
        return {"fo": self.fo.state_dict(), "zo": self.zo.state_dict(), "t": self.t}

    def load_state_dict(self, state_dict):
        self.fo.load_state_dict(state_dict["fo"])
        self.zo.load_state_dict(state_dict["zo"])
        self.t = state_dict["t"]
        self.param_groups = self.fo.param_groups + self.zo.param_groups
        self.state = self.fo.state


@OPTIMIZERS.register("hybrid")
class Hybrid(OptimizerSpec):
    """Hybrid FO-ZO optimizer (arXiv 2510.00761: alternating first- and zeroth-order updates keeps first order's
    forgetting strength and zeroth order's robustness; its schedule, losses and rates are not published, so these
    are our choices). ``schedule``: ``alternate`` (FO, ZO, FO, ...), ``periodic`` (``period`` FO steps, then one ZO
    step), ``split`` (ZO on the forget term and FO on the other terms within every step). ``fo`` is any first-order
    optimizer section (default ``adamw``), ``zo`` the zeroth-order one (default ``zo_sgd``, or ``zo_adam``); ``lr``
    is the run's ``unlearn.lr`` for FO and ``zo_lr`` (default: the same) for ZO, both under the run's schedule.
    Logged: ``fo_loss`` on first-order steps, ``zo_loss`` (the mean of the two-point evaluations) on zeroth-order
    steps, ``zo_lr``. SalUn's state zeroing reaches the FO child's state only."""

    first_order = False

    def __init__(self, fo: Optional[OptimizerSpec] = None, zo: Optional[OptimizerSpec] = None,
                 schedule: Literal[SCHEDULES] = "alternate", period: PositiveInt = 4,
                 zo_lr: Optional[PositiveFloat] = None):
        self.fo = gradient_base(fo if fo is not None else AdamW(), "hybrid")
        self.zo = zo if zo is not None else ZOSGD()
        self.schedule, self.period, self.zo_lr = schedule, period, zo_lr

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        params = list(params)
        return HybridOptimizer(params, self.fo.build(params, lr), self.zo.build(params, self.zo_lr or lr),
                               self.schedule, self.period)

    def check_steps(self, steps: int) -> None:
        self.zo.check_steps(steps)
