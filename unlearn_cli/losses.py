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


# -- token-weighted forget objectives (divergence-driven family) -------------------------------

def _masked_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def wga_loss(nll: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Weighted gradient ascent: ``-mean_tokens(w_t * nll_t)`` with ``w_t = p_t^beta`` detached.

    ``nll, mask`` are :func:`token_nll`'s; ``p_t = exp(-nll_t)`` is the probability of the gold
    token; the mean runs over supervised tokens.
    """
    weight = torch.exp(-beta * nll).detach()
    return -_masked_token_mean(weight * nll, mask)


def satimp_loss(nll: torch.Tensor, mask: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp: ``-mean_tokens(p_t^beta1 (1 - p_t)^beta2 * nll_t)``, weights detached (``nll, mask``: :func:`token_nll`)."""
    p = torch.exp(-nll).detach()
    weight = p.pow(beta1) * (1.0 - p).clamp_min(0).pow(beta2)
    return -_masked_token_mean(weight * nll, mask)


def drop_first_answer_tokens(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``labels`` with the first ``n`` supervised tokens of every row set to ``IGNORE``."""
    if n <= 0:
        return labels
    supervised = labels != IGNORE
    rank = supervised.long().cumsum(-1)  # 1 for the first supervised token of a row, 2 for the second, ...
    return labels.masked_fill(supervised & (rank <= n), IGNORE)


def unlikelihood_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean_tokens(-log(1 - p_t))`` over supervised tokens, computed stably in logit space.

    ``log(1 - p_y) = logsumexp_{v != y} z_v - logsumexp_v z_v``, so no ``log(0)`` when ``p_y -> 1``.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    gold = shift_labels.clamp_min(0).unsqueeze(-1)
    others = shift_logits.scatter(-1, gold, float("-inf"))
    log_not_gold = torch.logsumexp(others, -1) - torch.logsumexp(shift_logits, -1)
    return _masked_token_mean(-log_not_gold, mask)


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL: cross-entropy to ``softmax(ref_logits - beta * onehot(y_t))``, mean over supervised tokens."""
    shift_logits = logits[:, :-1, :].float()
    shift_ref = ref_logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    onehot = F.one_hot(shift_labels.clamp_min(0), shift_ref.size(-1)).to(shift_ref.dtype)
    target = F.softmax(shift_ref - beta * onehot, dim=-1).detach()
    ce = -(target * F.log_softmax(shift_logits, dim=-1)).sum(-1)
    return _masked_token_mean(ce, mask)


# -- preference objectives (rejection-based family) --------------------------------------------

def dpo_loss(nll_w: torch.Tensor, nll_l: torch.Tensor, ref_nll_w: torch.Tensor, ref_nll_l: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO with summed NLLs: ``-(2/beta) mean log sigmoid(beta * delta)``.

    ``delta = [log pi(y_w) - log pi(y_l)] - [log pi_ref(y_w) - log pi_ref(y_l)]
            = (l_l - l_w) - (l_ref_l - l_ref_w)``.
    """
    delta = (nll_l - nll_w) - (ref_nll_l - ref_nll_w)
    return (2.0 / beta) * F.softplus(-beta * delta).mean()


def kto_undesirable_loss(nll: torch.Tensor, ref_nll: torch.Tensor, z0: torch.Tensor | float,
                         beta: float) -> torch.Tensor:
    """KTO loss of undesirable examples: ``mean(1 - sigmoid(beta * (z0 - r)))``.

    ``r = log pi(y|x) - log pi_ref(y|x) = l_ref - l`` per sequence; ``z0`` is the (detached) reference
    point. Lowering ``r`` (making y less likely than under theta_0) lowers the loss.
    """
    r = ref_nll - nll
    return (1.0 - torch.sigmoid(beta * (z0 - r))).mean()


# -- representation objectives (representation-misalignment family) ----------------------------

def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over (positions x hidden units); with ``mask`` (B, T) only those positions count.

    ``y`` broadcasts against ``x`` (B, T, d), e.g. a control vector of shape (d,) or (B, 1, d).
    """
    sq = (x.float() - y.float()).pow(2)
    if mask is None:
        return sq.mean()
    m = mask.to(sq.dtype).unsqueeze(-1)
    return (sq * m).sum() / (m.sum().clamp_min(1) * sq.size(-1))


def relu_cosine(h: torch.Tensor, h_ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions of ``ReLU(cos(h_t, h_ref_t))`` (the circuit-breaker rerouting term)."""
    cos = F.cosine_similarity(h.float(), h_ref.float(), dim=-1, eps=1e-8)
    value = F.relu(cos)
    if mask is None:
        return value.mean()
    return _masked_token_mean(value, mask)


def masked_l2(h: torch.Tensor, h_ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions of the L2 distance ``||h_t - h_ref_t||_2`` (the circuit-breaker retain term)."""
    dist = (h.float() - h_ref.float()).norm(dim=-1)
    if mask is None:
        return dist.mean()
    return _masked_token_mean(dist, mask)


def mean_position_norm(h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sequence mean over positions of ``||h_t||_2``, shape (B,) (Adaptive RMU's scale)."""
    norms = h.float().norm(dim=-1)
    if mask is None:
        return norms.mean(-1)
    m = mask.to(norms.dtype)
    return (norms * m).sum(-1) / m.sum(-1).clamp_min(1)
