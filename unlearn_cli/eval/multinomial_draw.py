"""``torch.multinomial(probs, 1)``'s draw for some rows of a batch, at a fraction of its cost on a CPU.

``torch.multinomial`` with one sample returns ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn by ``exponential_``
for the whole ``(rows, vocabulary)`` tensor. ``model.generate`` draws it for every row of its batch at every
step, finished rows included, so a loop that reproduces generate's samples must consume the same stream
(``eval.kv_decode``). On a CPU that draw is the dominant cost of sampling from a small model: ``exponential_``
runs the Mersenne twister serially and takes a logarithm per entry (24 ns each here; 1.6 ms for 64 rows of a
1024-token vocabulary, 200 ms for 64 rows of 128 k).

On the CPU generator ``exponential_(1)`` is ``-log1p(-u)`` with ``u`` the 53-bit uniform that
``uniform_`` on a float64 tensor draws from the same generator state (each entry takes the generator's
``random64``; the logarithm is the C library's ``log1p``, computed in double and rounded to the tensor's
dtype), and both leave the generator in the same state. So ``draw`` takes the uniforms (a quarter of the cost)
and computes ``q`` only where it can decide the argmax: entries of the rows asked for with ``p > 0`` (a
top-k of 20 leaves 20 per row), plus any entry whose ``u`` is exactly 0 (there ``p / q`` is ``inf`` or
``nan``, which ``argmax`` ranks first). Every other entry of ``p / q`` is ``0 / q = 0``, as in the dense
computation. The logarithm is Python's ``math.log1p``, the same C function, because torch's vectorised
``log1p`` differs from it in the last bit of about 3 % of doubles.

The identity is checked once per process on a private generator (``exact_on_cpu``); where it does not hold
(another torch build), on other devices, and when more than ``SPARSE_FRACTION`` of the batch's entries would
need ``q`` (a Python ``log1p`` costs about 60 ns, against the 18 ns per entry the uniforms save), the draw is
``exponential_`` over the whole tensor as before.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

SPARSE_FRACTION = 0.25  # of the batch's entries, at most, get q one by one; beyond that the dense draw is cheaper


def neg_log1p(values: torch.Tensor) -> torch.Tensor:
    """``-log1p(-u)`` in float64 through the C library's ``log1p`` (what ``exponential_`` computes)."""
    return torch.tensor([-math.log1p(-x) for x in values.tolist()], dtype=torch.float64)


@lru_cache(maxsize=None)
def exact_on_cpu() -> bool:
    """Whether this torch's CPU ``exponential_(1)`` equals ``-log1p(-uniform_())`` entry for entry (float32 and
    float64) and leaves the generator where ``uniform_`` does."""
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(20261202)
        expected = torch.empty(3, 4099, dtype=dtype).exponential_(1, generator=gen)
        state = gen.get_state()
        gen = torch.Generator().manual_seed(20261202)
        u = torch.empty(3, 4099, dtype=torch.float64).uniform_(generator=gen)
        got = neg_log1p(u.flatten()).to(dtype)
        if not (torch.equal(got, expected.flatten()) and torch.equal(gen.get_state(), state)):
            return False
    return True


def dense(probs: torch.Tensor, rows: torch.Tensor, bucket_rows: int) -> torch.Tensor:
    """``multinomial``'s own computation: Exp(1) noise for the bucket's full shape, the asked rows' argmax."""
    noise = torch.empty(bucket_rows, probs.shape[-1], dtype=probs.dtype, device=probs.device).exponential_(1)
    return (probs / noise[rows]).argmax(-1)


def uniforms(rows: int, vocabulary: int) -> torch.Tensor:
    """The default generator's float64 uniforms for a ``(rows, vocabulary)`` tensor, in ``exponential_``'s order."""
    return torch.empty(rows, vocabulary, dtype=torch.float64).uniform_()


def draw(probs: torch.Tensor, rows: torch.Tensor, bucket_rows: int) -> torch.Tensor:
    """The tokens ``torch.multinomial(P, 1)`` picks for rows ``rows`` of a ``(bucket_rows, vocabulary)`` batch
    ``P`` whose rows ``rows`` are ``probs``, drawing from the default generator exactly what it draws."""
    candidates = probs > 0
    if (probs.device.type != "cpu" or probs.dtype not in (torch.float32, torch.float64)
            or int(candidates.sum()) > SPARSE_FRACTION * bucket_rows * probs.shape[-1] or not exact_on_cpu()):
        return dense(probs, rows, bucket_rows)
    u = uniforms(bucket_rows, probs.shape[-1])
    if bool((u == 0).any()):  # about once in 2^53 entries
        candidates |= u[rows] == 0
    r, c = candidates.nonzero(as_tuple=True)
    q = neg_log1p(u[rows[r], c]).to(probs.dtype)
    ratio = torch.zeros_like(probs)
    ratio[r, c] = probs[r, c] / q
    return ratio.argmax(-1)
