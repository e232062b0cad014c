"""What the optimised input attacks share: the attacker's forget rows with ``k`` adversarial positions after
``<bos>``, a frozen model, the splits they target and a name per optimised prompt."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Sequence

from unlearn_cli.attacks._forget_sample import forget_sample
from unlearn_cli.data.encoding import EncodedQA, bos_ids
from unlearn_cli.errors import UserError
from unlearn_cli.models.adversarial_tokens import insert_after_bos


def attack_rows(ctx, attack, k: int, placeholder: int) -> EncodedQA:
    """The attacker's forget sample (``attack.fraction`` / ``num_samples`` / ``seed_offset``) with ``k``
    copies of ``placeholder`` after each prompt's ``<bos>``."""
    rows = forget_sample(ctx, attack.fraction, attack.num_samples, attack.seed_offset, attack.registry_name)
    bos = bos_ids(ctx.tokenizer)
    return EncodedQA([insert_after_bos(p, bos, [placeholder] * k) for p in rows.prompts], rows.answers)


def target_splits(ctx, attack) -> tuple:
    """``attack.splits``, else the benchmark's forget-side evaluation splits; a UserError when there are none."""
    splits = tuple(attack.splits) if attack.splits is not None else tuple(ctx.forget_splits)
    if not splits:
        raise UserError(f"attack {attack.registry_name}: the benchmark has no forget-side evaluation split; name "
                        f"them in attack.<id>.splits")
    return splits


def check_splits(data, forget_splits: Sequence[str], attack) -> None:
    """UserError (before anything trains) unless ``attack.splits`` are evaluation splits of the benchmark (or,
    unset, the benchmark has forget-side evaluation splits)."""
    known = (*data.qa, *data.mcq, *data.texts)
    if attack.splits is None:
        if not forget_splits:
            raise UserError(f"attack {attack.registry_name}: the benchmark has no forget-side evaluation split; name "
                            f"them in attack.<id>.splits (known: {', '.join(known)})")
        return
    unknown = [s for s in attack.splits if s not in known]
    if unknown:
        raise UserError(f"attack {attack.registry_name}: unknown evaluation split '{unknown[0]}'; known: "
                        f"{', '.join(known)}")


def view_name(attack, payload: bytes) -> str:
    """``<attack>-<digest>``: a memo name that differs whenever the optimised prompt does."""
    return f"{attack.registry_name}-{hashlib.sha256(payload).hexdigest()[:10]}"


@contextlib.contextmanager
def frozen(model):
    """``model``'s parameters without gradients for the duration (an input attack trains only its prompt and
    must hand the shared unlearned model back as it found it)."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)
