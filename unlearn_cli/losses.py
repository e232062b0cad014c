"""Pure loss maths shared by methods, the prepare stage and attacks.

Notation (see the README's method table): for a sequence with prompt x and supervised answer y,
``l = -sum_t log p(y_t | x, y_<t)`` is the summed token NLL, ``|y|`` the number of supervised
tokens and ``l_bar = l / |y|``. ``mean_token_nll`` is the Hugging Face ``outputs.loss``: the mean
over all supervised tokens of a batch.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from unlearn_cli.data.encoding import IGNORE


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-position NLL (B, T-1) of next-token prediction and the supervision mask (B, T-1)."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.clamp_min(0).reshape(-1),
        reduction="none",
    ).view_as(shift_labels)
    return nll * mask, mask


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL per sequence ``l``, supervised token count ``|y|``), both shape (B,)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum(-1), mask.sum(-1)


def mean_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL over every supervised token of the batch (HF ``outputs.loss``)."""
    nll, mask = token_nll(logits, labels)
    return nll.sum() / mask.sum().clamp_min(1)


def npo_loss(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024, arXiv 2404.05868): ``(2/beta) mean softplus(-beta (l - l_ref))``.

    Equals ``-(2/beta) mean log sigmoid(beta r)`` with ``r = l_theta - l_ref = -log pi/pi_ref``;
    ``(2/beta) log 2`` at theta = theta_0, decreasing towards 0 as the forget NLL grows.
    """
    return (2.0 / beta) * F.softplus(-beta * (nll - ref_nll)).mean()


def simnpo_loss(mean_nll: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024, arXiv 2410.07163): ``(2/beta) mean softplus(-beta (l_bar - gamma))``.

    Reference-free and length-normalised; the margin ``gamma`` sits inside beta as in the
    authors' TOFU code (``beta*l_bar - beta*gamma``).
    """
    return (2.0 / beta) * F.softplus(-beta * (mean_nll - gamma)).mean()


def forward_kl(ref_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions of KL(p_ref || p_theta) over the full vocabulary.

    With ``mask`` (B, T) only those positions count; without it every position counts, which is
    the reduction of the reference code (``kl_div(..., reduction='batchmean')`` on (B*T, V)).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    if mask is None:
        return kl.mean()
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1)
