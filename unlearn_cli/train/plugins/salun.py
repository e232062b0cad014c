"""SalUn weight saliency (Fan et al. 2024, arXiv 2310.12508): train only the most salient weights.

The ``salun`` train plug-in (``plugin=[salun]``, any method) wraps the mask maths below.

``compute_mask`` scores every trainable weight by ``|sum over forget batches of grad L_f|`` at
theta_0 and keeps the global top fraction ``sparsity`` (so ``sparsity = 0.5`` leaves the 50% of
weights with the largest scores trainable; ``1.0`` keeps all). During unlearning
``SaliencyMask.install`` zeroes the masked-out gradient coordinates as they are produced
(tensor hooks, so gradient clipping sees masked gradients) and ``SaliencyMask.after_step``
restores masked-out weights to theta_0 and zeroes their optimizer state (decoupled weight decay
and momentum would otherwise still move them).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import torch

from unlearn_cli.bounds import Fraction
from unlearn_cli.contracts import TrainPlugin
from unlearn_cli.errors import UserError
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import PLUGINS

OPTIMIZER_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def _trainable(model) -> Dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def accumulate_gradients(model, loss_fn: Callable, batches: Iterable) -> Dict[str, torch.Tensor]:
    """``sum_b grad loss_fn(model, b)`` for every trainable parameter (zeros where no gradient flows).

    ``loss_fn`` returns a loss tensor or a ``(loss, logs)`` pair. Leaves ``.grad`` cleared.
    """
    params = _trainable(model)
    for p in params.values():
        p.grad = None
    count = 0
    for batch in batches:
        out = loss_fn(model, batch)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        count += 1
    if count == 0:
        raise UserError("SalUn saliency needs at least one forget batch")
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
    for p in params.values():
        p.grad = None
    return grads


def _exact_top(scores: Dict[str, torch.Tensor], keep: int) -> Dict[str, torch.Tensor]:
    """Exactly ``keep`` True entries: the largest scores (ties broken by position)."""
    flat = torch.cat([s.reshape(-1).float().cpu() for s in scores.values()])
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    out, start = {}, 0
    for n, s in scores.items():
        out[n] = chosen[start:start + s.numel()].view(s.shape).to(s.device)
        start += s.numel()
    return out


def _threshold_bisect(scores: Dict[str, torch.Tensor], keep: int, iters: int = 60) -> torch.Tensor:
    """The smallest t with #(score >= t) >= keep, by bisection (no concatenated copy of the scores)."""
    lo = 0.0
    hi = max(float(s.max()) for s in scores.values())
    for _ in range(iters):
        mid = (lo + hi) / 2
        if sum(int((s >= mid).sum()) for s in scores.values()) >= keep:
            lo = mid
        else:
            hi = mid
    return torch.tensor(lo)


def mask_from_scores(scores: Dict[str, torch.Tensor], sparsity: float,
                     exact_limit: int = 1 << 27) -> Dict[str, torch.Tensor]:
    """Bool masks keeping the global top ``sparsity`` fraction (``round(sparsity * total)``) of ``scores``.

    Up to ``exact_limit`` scores exactly that many are kept (top-k over the concatenation);
    larger models use a bisection on the threshold that needs no extra copy of the scores, where
    ties at the cut may keep a few more.
    """
    if not 0 < sparsity <= 1:
        raise UserError(f"method.saliency.sparsity must be in (0, 1] (fraction of weights kept trainable), got {sparsity}")
    total = sum(s.numel() for s in scores.values())
    keep = max(1, int(round(sparsity * total)))
    if keep >= total:
        return {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    if total <= exact_limit:
        return _exact_top(scores, keep)
    cut = _threshold_bisect(scores, keep)
    return {n: s >= cut.to(s.device, s.dtype) for n, s in scores.items()}


def compute_mask(model, loss_fn: Callable, batches: Iterable, sparsity: float,
                 exact_limit: int = 1 << 27) -> Dict[str, torch.Tensor]:
    """SalUn mask: ``{param_name: bool tensor}``, True = trainable, over the model's trainable params.

    Scores are ``|accumulated forget-loss gradient|`` over ``batches``; the global top fraction
    ``sparsity`` is kept. Use the method's forget loss (its sign does not matter).
    """
    grads = accumulate_gradients(model, loss_fn, batches)
    return mask_from_scores({n: g.abs() for n, g in grads.items()}, sparsity, exact_limit)


def mask_gradients(model, mask: Dict[str, torch.Tensor]) -> None:
    """In place ``grad <- mask * grad`` for every masked parameter that has a gradient."""
    for n, p in model.named_parameters():
        if n in mask and p.grad is not None:
            p.grad.mul_(mask[n].to(p.grad.dtype))


class SaliencyMask:
    """Applies a SalUn mask during training: gradient hooks plus a post-step restore to theta_0.

    Construct it at theta_0 (before the first update): it stores the masked-out weight values
    (memory = the frozen fraction of the trainable weights).
    """

    def __init__(self, model, mask: Dict[str, torch.Tensor]):
        self.params = {n: p for n, p in model.named_parameters() if n in mask}
        unknown = sorted(set(mask) - set(self.params))
        if unknown:
            raise ValueError(f"mask names unknown parameters: {unknown[:3]}")
        self.frozen = {n: ~mask[n].to(p.device) for n, p in self.params.items()}
        self.theta0 = {n: p.detach()[self.frozen[n]].clone() for n, p in self.params.items()}
        self.mask = {n: mask[n].to(p.device) for n, p in self.params.items()}
        self._handles: List = []

    def kept_fraction(self) -> float:
        kept = sum(int(m.sum()) for m in self.mask.values())
        return kept / max(1, sum(m.numel() for m in self.mask.values()))

    def install(self) -> "SaliencyMask":
        """Register gradient hooks that zero masked-out coordinates on every backward."""
        self.remove()
        for n, p in self.params.items():
            m = self.mask[n]
            self._handles.append(p.register_hook(lambda g, m=m: g * m.to(g.dtype)))
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore masked-out weights to theta_0 and zero their optimizer state."""
        restore_masked(self.params, self.frozen, self.theta0, optimizer)


@torch.no_grad()
def restore_masked(params: Dict[str, torch.nn.Parameter], frozen: Dict[str, torch.Tensor],
                   theta0: Dict[str, torch.Tensor], optimizer=None) -> None:
    """``p[frozen] <- theta0`` and zero the optimizer moments (``OPTIMIZER_STATE_KEYS``) at ``frozen``."""
    for n, p in params.items():
        f = frozen[n]
        p[f] = theta0[n].to(p.dtype)
        if optimizer is None:
            continue
        state = optimizer.state.get(p, {})
        for key in OPTIMIZER_STATE_KEYS:
            buf = state.get(key)
            if isinstance(buf, torch.Tensor) and buf.shape == p.shape:
                buf[f] = 0


def forget_ga_loss(model, batch) -> torch.Tensor:
    """SalUn's scoring loss (the reference code's): gradient ascent on the forget batch, ``-mean_token_nll``."""
    return -answer_forward(model, batch["forget"]).mean_nll()


@PLUGINS.register("salun")
class SalUn(TrainPlugin):
    """SalUn (Fan et al. 2024, arXiv 2310.12508): only the globally most salient ``sparsity`` fraction of weights train.

    At setup (theta_0, after the method's own setup, so frozen layers stay frozen) every trainable
    weight is scored by ``|sum over one in-order pass of the forget set of grad L_GA|`` (batches of
    ``unlearn.batch_size``; the reference code's scoring loss, whatever the method), and the global
    top ``sparsity`` fraction stays trainable. During unlearning masked gradients are zeroed as they
    are produced (before clipping) and after every step the masked weights are restored to theta_0
    with their optimizer state zeroed. Default sparsity 0.5 (the paper's usual setting). Not under
    DeepSpeed ZeRO (weights are sharded there).
    """

    supports_deepspeed = False

    def __init__(self, sparsity: Fraction = 0.5):
        self.sparsity = float(sparsity)
        self.mask: Optional[SaliencyMask] = None

    def setup(self, ctx) -> None:
        forget, bs = ctx.splits["forget"], ctx.settings.batch_size
        batches = ({"forget": {k: v.to(ctx.device) for k, v in forget.batch(range(i, min(i + bs, len(forget))),
                                                                             ctx.pad_id).items()}}
                   for i in range(0, len(forget), bs))
        with ctx.autocast():
            mask = compute_mask(ctx.model, forget_ga_loss, batches, self.sparsity)
        self.mask = SaliencyMask(ctx.model, mask).install()

    def after_step(self, step: int, optimizer) -> None:
        self.mask.after_step(optimizer)

    def close(self) -> None:
        if self.mask is not None:
            self.mask.remove()

    def summary(self) -> dict:
        return {"sparsity": self.sparsity, "kept_fraction": self.mask.kept_fraction() if self.mask else None}
