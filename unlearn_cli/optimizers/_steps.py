"""What every first-order optimizer's ``step`` does first: evaluate the closure (with gradients) if given, then
visit the parameters that received a gradient."""

from __future__ import annotations

from typing import Iterator, Tuple

import torch


def evaluate(closure):
    """``closure()`` with gradients enabled (the step itself runs under ``no_grad``), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def with_grads(optimizer: torch.optim.Optimizer) -> Iterator[Tuple[dict, torch.Tensor]]:
    """``(group, parameter)`` for every parameter with a gradient."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                yield group, p


def decay(p: torch.Tensor, group: dict) -> None:
    """Decoupled weight decay: ``theta <- theta * (1 - lr * weight_decay)``."""
    if group["weight_decay"]:
        p.mul_(1 - group["lr"] * group["weight_decay"])


def adam_direction(state: dict, g: torch.Tensor, betas, eps: float) -> torch.Tensor:
    """Advance Adam's moments in ``state`` by the (fp32) gradient ``g``; ``m_hat / (sqrt(v_hat) + eps)``."""
    b1, b2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g)
        state["exp_avg_sq"] = torch.zeros_like(g)
    state["step"] += 1
    state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
    state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
    m_hat = state["exp_avg"] / (1 - b1 ** state["step"])
    v_hat = state["exp_avg_sq"] / (1 - b2 ** state["step"])
    return m_hat / (v_hat.sqrt() + eps)
