"""What the forget-term smoothing wrappers (``sam``, ``rs``) share: a base optimizer that owns the state, the
forget gradient taken at shifted weights, and the step on that gradient plus every other term's at theta."""

from __future__ import annotations

from typing import List, Optional

import torch


class ForgetSmoothing(torch.optim.Optimizer):
    """A wrapper around ``base``: its state and parameter groups are the base optimizer's (so the scheduler's lr and
    checkpoints reach it); subclasses compute the forget gradient and call :meth:`finish`."""

    def __init__(self, params, base: torch.optim.Optimizer, defaults: dict):
        self.base = base
        super().__init__(params, defaults)
        self.state = base.state
        self.param_groups = base.param_groups

    @property
    def params(self) -> List[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def forget_gradient_at(self, closure, shifts: List[Optional[torch.Tensor]]):
        """``(grad L_f(theta + shift), L_f(theta + shift))``; the weights are restored afterwards."""
        params = self.params
        for p, s in zip(params, shifts):
            if s is not None:
                p.add_(s.to(p.dtype))
        with torch.enable_grad():
            loss = closure(terms=["forget"])
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        for p, s in zip(params, shifts):
            if s is not None:
                p.sub_(s.to(p.dtype))
        return grads, loss

    @torch.no_grad()
    def finish(self, closure, g_forget: List[Optional[torch.Tensor]], forget_loss: torch.Tensor) -> torch.Tensor:
        """Take every other term's gradient at theta, add ``g_forget``, step the base optimizer; returns the loss
        ``forget_loss + other terms at theta``."""
        params = self.params
        others = [t for t in closure.term_names if t != "forget"]
        loss = forget_loss
        if others:
            with torch.enable_grad():
                loss = forget_loss + closure(terms=others)
        else:
            for p in params:
                p.grad = None
        for p, g in zip(params, g_forget):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        self.base.step()
        return loss

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict):
        self.base.load_state_dict(state_dict)
        self.state, self.param_groups = self.base.state, self.base.param_groups
