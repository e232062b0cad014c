"""Direction compression for sign-based optimizers (arXiv 2510.00761, "optimizer grade": compressed first order).

``compress(m, bits)`` is the per-coordinate direction a compressed optimizer applies, ``theta -= lr * Q(m)``:

- ``bits = 1``: ``sign(m)`` (sign(0) = 0): every coordinate moves by exactly ``lr``.
- ``bits = N > 1``: a per-tensor symmetric uniform quantiser with ``L = 2^(N-1) - 1`` positive levels on
  ``m / max|m|``, deterministic round-to-nearest: ``Q(m) = round(L * m / max|m|) / L`` in ``[-1, 1]``.

The paper gives no N-bit definition (no public code). Our choice keeps what makes sign methods "compressed":
no coordinate ever moves by more than ``lr``, and the levels are normalised, so ``N = 1`` and ``N > 1`` share one
learning-rate scale (``N = 8`` approaches ``m / max|m|``).
"""

from __future__ import annotations

import torch


def compress(direction: torch.Tensor, bits: int) -> torch.Tensor:
    """``Q(direction; bits)`` (module docstring); a new tensor of the same shape and dtype."""
    if bits == 1:
        return torch.sign(direction)
    scale = direction.abs().max()
    if scale == 0:
        return torch.zeros_like(direction)
    levels = 2 ** (bits - 1) - 1
    return torch.round(direction / scale * levels) / levels
