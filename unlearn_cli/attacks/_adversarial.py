"""What the optimised input attacks share: the attacker's forget rows with ``k`` adversarial positions after
``<bos>``, a frozen model, the splits they target and a name per optimised prompt."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import List, Sequence

import torch

from unlearn_cli.attacks._forget_sample import check_sample, forget_sample
from unlearn_cli.data.encoding import EncodedQA, bos_ids
from unlearn_cli.errors import UserError
from unlearn_cli.models.adversarial_tokens import insert_after_bos, placeholder_id


def special_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) bool: the tokenizer's special tokens (never proposed as adversarial tokens)."""
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[[i for i in tokenizer.all_special_ids if i < vocab_size]] = True
    return special


def vocabulary_tokens(tokenizer, vocab_size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` token ids drawn with ``seed`` from the vocabulary, special tokens excluded."""
    pool = (~special_ids(tokenizer, vocab_size)).nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    return pool[torch.randint(len(pool), (n,), generator=gen)]


@dataclass
class PromptSearch:
    """What an optimised input attack starts from: the splits it targets, the placeholder id and ``<bos>`` ids,
    the attacker's rows with ``k`` placeholders after ``<bos>``, and ``k`` seeded starting tokens."""

    splits: tuple
    placeholder: int
    bos: List[int]
    rows: EncodedQA
    start: torch.Tensor


def prompt_search(ctx, attack, model) -> PromptSearch:
    """The set-up shared by ``soft_prompt`` and ``gcg`` (``attack.tokens`` positions, seeds from ``seed_offset``)."""
    placeholder = placeholder_id(ctx.tokenizer)
    vocab = model.get_input_embeddings().num_embeddings
    return PromptSearch(target_splits(ctx, attack), placeholder, bos_ids(ctx.tokenizer),
                        attack_rows(ctx, attack, attack.tokens, placeholder),
                        vocabulary_tokens(ctx.tokenizer, vocab, attack.tokens, ctx.seed + attack.seed_offset))


def check_attacker_data(data, forget_splits: Sequence[str], attack) -> None:
    """``Attack.check_data`` of an attack that draws the attacker's forget sample and targets ``attack.splits``."""
    check_sample(data, attack.fraction, attack.num_samples, attack.registry_name)
    check_splits(data, forget_splits, attack)


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
