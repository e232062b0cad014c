"""The forget items an attacker holds: a seeded sample of the forget training split (relearning, optimised prompts)."""

from __future__ import annotations

from typing import Optional

import torch

from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.errors import UserError


def check_sample(data, fraction: float, num_samples: Optional[int], attack: str) -> None:
    """UserError (before anything trains) unless the benchmark has a forget training split holding the sample."""
    forget = data.train_split("forget")
    if not forget:
        raise UserError(f"attack {attack}: the benchmark's forget training split is empty; the attacker's sample "
                        f"is drawn from it")
    if num_samples is not None and num_samples > len(forget):
        raise UserError(f"attack {attack}: num_samples={num_samples} exceeds the forget set size {len(forget)}")


def forget_sample(ctx, fraction: float, num_samples: Optional[int], seed_offset: int, attack: str) -> EncodedQA:
    """``num_samples`` forget QA pairs (else ``fraction`` of them, at least one) drawn with the stage seed +
    ``seed_offset``; a UserError naming ``attack`` when more are asked than the split holds."""
    forget = ctx.train_encoded["forget"]
    n = num_samples or max(1, round(fraction * len(forget)))
    if n > len(forget):
        raise UserError(f"attack {attack}: num_samples={n} exceeds the forget set size {len(forget)}")
    gen = torch.Generator().manual_seed(ctx.seed + seed_offset)
    return forget.subset(torch.randperm(len(forget), generator=gen)[:n].tolist())
