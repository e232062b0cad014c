"""What the forget-term wrappers (``sam``, ``rs``, ``gp``, ``cr``) share: the forget gradient taken at shifted
weights, the double back-prop of a penalty on it, and the step on the forget gradient plus every other term's at
theta."""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from unlearn_cli.optimizers._wrapping import Wrapper


def global_norm(tensors: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
    """The l2 norm over all tensors together (None entries: parameters without a gradient)."""
    return torch.sqrt(sum((t.float() ** 2).sum() for t in tensors if t is not None))


def unit(tensors: Sequence[Optional[torch.Tensor]]) -> List[Optional[torch.Tensor]]:
    """``tensors / ||tensors||`` (global norm; zero stays zero)."""
    norm = global_norm(tensors)
    return [None if t is None else t / (norm + 1e-12) for t in tensors]


def gradient_dot(loss: torch.Tensor, params: Sequence[torch.Tensor], u: Sequence[Optional[torch.Tensor]]):
    """``<grad loss, u>`` with the graph of the gradient kept (``create_graph``), so back-propagating the result
    gives the Hessian-vector product ``H u``: double back-prop."""
    grads = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
    return sum((g.float() * d).sum() for g, d in zip(grads, u) if g is not None and d is not None)


@contextlib.contextmanager
def double_backprop():
    """The math attention kernel: the fused SDPA kernels have no derivative of their backward."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


class ForgetSmoothing(Wrapper):
    """A wrapper around ``base`` (which owns state and parameter groups) with hyperparameters ``hyper`` (attributes
    and ``defaults``); a subclass names itself in ``name`` and implements ``update(closure)``, which computes the
    forget gradient and calls :meth:`finish`."""

    name = ""

    def __init__(self, params, base: torch.optim.Optimizer, **hyper):
        super().__init__(params, base, dict(hyper))
        for key, value in hyper.items():
            setattr(self, key, value)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise RuntimeError(f"optimizer '{self.name}' needs the step closure (it re-evaluates the forget term)")
        return self.update(closure)  # every subclass defines update(closure) (sam, rs, gp, cr)

    @torch.no_grad()
    def forget_gradient_at(self, closure, shifts: List[Optional[torch.Tensor]], **evaluation):
        """``(grad L_f(theta + shift), L_f(theta + shift))``; the weights are restored afterwards. ``evaluation``
        goes to the closure (``transform``, ``clip``)."""
        params = self.params
        for p, s in zip(params, shifts):
            if s is not None:
                p.add_(s.to(p.dtype))
        with torch.enable_grad():
            loss = closure(terms=["forget"], **evaluation)
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        for p, s in zip(params, shifts):
            if s is not None:
                p.sub_(s.to(p.dtype))
        return grads, loss

    @torch.no_grad()
    def finish(self, closure, g_forget: List[Optional[torch.Tensor]], forget_loss: torch.Tensor,
               **evaluation) -> torch.Tensor:
        """Take every other term's gradient at theta (``evaluation`` to that closure call), add ``g_forget``, clip the
        sum once (``unlearn.max_grad_norm``, as a plain step clips its one gradient), step the base optimizer;
        returns ``forget_loss +`` the other terms at theta."""
        params = self.params
        others = [t for t in closure.term_names if t != "forget"]
        loss = forget_loss
        if others:
            with torch.enable_grad():
                loss = forget_loss + closure(terms=others, clip=False, **evaluation)
        else:
            for p in params:
                p.grad = None
        for p, g in zip(params, g_forget):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        closure.clip_gradients()
        self.base.step()
        return loss
