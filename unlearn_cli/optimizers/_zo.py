"""Two-point zeroth-order gradient estimate (SPSA / MeZO) shared by ``zo_sgd``, ``zo_adam`` and ``hybrid``.

For directions ``u_1..u_q ~ N(0, I)`` over all trainable weights and radius ``mu``:

    g_hat = (1/q) sum_i  [L(theta + mu u_i) - L(theta - mu u_i)] / (2 mu)  *  u_i

``E[g_hat]`` is the gradient of the Gaussian-smoothed loss ``E_u L(theta + mu u)`` (for a quadratic: exactly the
gradient). As in MeZO the directions are never stored: each ``u_i`` is regenerated, tensor by tensor, from a seed
(``seed``, the step number, the query index and the tensor's position), the weights are perturbed in place
(+mu u, then -2 mu u, then +mu u back), so the memory is that of inference plus one tensor-sized temporary. Losses
come from the closure's forward-only evaluation (``closure(backward=False)``: no graph, fp32 accumulation, so the
difference of two nearby losses is not lost to bf16 rounding). The same micro-batches serve both evaluations.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional

import torch

MASK = (1 << 64) - 1


def mix(*values: int) -> int:
    """A well-spread 63-bit generator seed from integers (splitmix64 finaliser over each value in turn), so the
    directions of consecutive steps, queries and tensors come from unrelated streams."""
    x = 0
    for v in values:
        x = (x + v + 0x9E3779B97F4A7C15) & MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
        x ^= x >> 31
    return x >> 1


def _direction(p: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=p.device)
    gen.manual_seed(seed)
    return torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32)


class Estimate:
    """The ``q`` projected differences of one step and how to replay their directions."""

    def __init__(self, params: List[torch.Tensor], seeds: List[int], projections: List[float], losses: List[float]):
        self.params, self.seeds, self.projections, self.losses = params, seeds, projections, losses

    def gradient(self, index: int) -> torch.Tensor:
        """``g_hat`` restricted to parameter ``index`` (fp32, materialised for that tensor only)."""
        p = self.params[index]
        g = torch.zeros(p.shape, device=p.device, dtype=torch.float32)
        for seed, proj in zip(self.seeds, self.projections):
            g.add_(_direction(p, mix(seed, index)), alpha=proj / len(self.seeds))
        return g

    @property
    def loss(self) -> float:
        """The mean of the ``2q`` evaluated losses (the step's logged loss; no extra forward)."""
        return sum(self.losses) / len(self.losses)


def perturb(params: Iterable[torch.Tensor], seed: int, scale: float) -> None:
    for index, p in enumerate(params):
        p.add_(_direction(p, mix(seed, index)).to(p.dtype), alpha=scale)


@torch.no_grad()
def estimate(params: List[torch.Tensor], evaluate: Callable[[], torch.Tensor], mu: float, queries: int,
             seed: int, step: int) -> Estimate:
    """Perturb, evaluate ``evaluate()`` (a forward-only loss) at ``theta +- mu u_i``, restore; returns the estimate."""
    seeds, projections, losses = [], [], []
    for q in range(queries):
        s = mix(seed, step, q)
        perturb(params, s, mu)
        plus = float(evaluate())
        perturb(params, s, -2 * mu)
        minus = float(evaluate())
        perturb(params, s, mu)
        seeds.append(s)
        projections.append((plus - minus) / (2 * mu))
        losses += [plus, minus]
    return Estimate(params, seeds, projections, losses)


def group_estimates(optimizer: torch.optim.Optimizer, closure, name: str):
    """``(group, params, estimate)`` for each parameter group at this step (then the group's step counter, which
    seeds the next step's directions and is saved with the optimizer state, advances)."""
    if closure is None:
        raise RuntimeError(f"{name} needs the step closure (it evaluates the loss at perturbed weights)")
    for group in optimizer.param_groups:
        params = list(group["params"])
        est = estimate(params, forward_only(closure), group["mu"], group["queries"], group["seed"], group["step"])
        group["step"] += 1
        yield group, params, est


def forward_only(closure, terms: Optional[List[str]] = None) -> Callable[[], torch.Tensor]:
    """The closure's forward-only evaluation (of ``terms``, default all)."""
    return lambda: closure(terms=terms, backward=False)
