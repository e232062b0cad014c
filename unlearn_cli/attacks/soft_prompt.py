"""Soft-prompt attack: a universal embedding-space prefix optimised to make the unlearned model say the forget answers."""

from __future__ import annotations

from typing import List, Literal, Optional

import torch

from unlearn_cli.attacks._adversarial import attack_rows, check_splits, frozen, target_splits, view_name
from unlearn_cli.attacks._forget_sample import check_sample
from unlearn_cli.bounds import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import Attack, OptimizerSpec
from unlearn_cli.data.encoding import bos_ids
from unlearn_cli.eval.views import PromptView
from unlearn_cli.models.adversarial_tokens import EmbeddingOverride, placeholder_id
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.settings import TrainSettings
from unlearn_cli.train.sft import finetune


def vocabulary_tokens(tokenizer, vocab_size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` token ids drawn with ``seed`` from the vocabulary, special tokens excluded."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[[i for i in tokenizer.all_special_ids if i < vocab_size]] = False
    pool = allowed.nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    return pool[torch.randint(len(pool), (n,), generator=gen)]


class _Prompted(torch.nn.Module):
    """The frozen model with a trainable prompt in place of its placeholder positions; it stays in eval mode
    (no dropout) whatever the training loop asks, since only the prompt learns."""

    def __init__(self, model, init: torch.Tensor, placeholder: int, bos: List[int]):
        super().__init__()
        self.model = model
        self.prompt = torch.nn.Parameter(init)
        self.placeholder, self.bos = placeholder, bos

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, **kwargs):
        with EmbeddingOverride(self.model, self.prompt, self.placeholder, self.bos):
            return self.model(**kwargs)


@ATTACKS.register("soft_prompt")
class SoftPrompt(Attack):
    """Embedding-space soft-prompt attack (Schwinn et al. 2024, "Soft Prompt Threats", arXiv 2402.09063; the
    universal variant): ``tokens`` input-embedding vectors ``P`` placed after the ``<bos>`` of every prompt are
    optimised, the weights frozen, to minimise the forget answers' NLL ``min_P E_(x,y)~D_f [ -1/|y| log p(y | P, x) ]``
    on the attacker's forget sample (``fraction`` / ``num_samples`` of the forget training split, as the
    relearning attack draws it), through the one training loop with the attack's ``optimizer`` (AdamW, no weight
    decay). Every prompt of the forget-side evaluation splits (``splits``) is then scored with ``P`` in place
    (``models.adversarial_tokens``), so the stage measures what an attacker with embedding access recovers.

    ``P`` starts at the embeddings of ``tokens`` random vocabulary tokens (seeded). Deviations: the prefix sits
    after ``<bos>`` rather than as a suffix of the instruction (the one position that is the same in every
    prompt representation the scorer builds); no norm constraint on ``P`` (the paper's attacks are unconstrained
    as well)."""

    changes_weights = False
    optimises_prompt = True

    def __init__(self, tokens: PositiveInt = 10, steps: PositiveInt = 100, lr: PositiveFloat = 1e-2,
                 batch_size: PositiveInt = 16, fraction: Fraction = 0.5, num_samples: Optional[PositiveInt] = None,
                 precision: Literal["fp32", "bf16"] = "fp32", max_grad_norm: Optional[PositiveFloat] = None,
                 splits: Optional[List[str]] = None, seed_offset: NonNegativeInt = 4000,
                 optimizer: Optional[OptimizerSpec] = None):
        self.tokens, self.fraction, self.num_samples = tokens, fraction, num_samples
        self.splits, self.seed_offset = splits, seed_offset
        self.optimizer = optimizer if optimizer is not None else AdamW()
        self.settings = TrainSettings(lr=lr, steps=steps, batch_size=batch_size, precision=precision,
                                      max_grad_norm=max_grad_norm)

    def check_data(self, data, forget_splits) -> None:
        check_sample(data, self.fraction, self.num_samples, self.registry_name)
        check_splits(data, forget_splits, self)

    def apply(self, ctx, model):
        splits = target_splits(ctx, self)
        placeholder, bos = placeholder_id(ctx.tokenizer), bos_ids(ctx.tokenizer)
        rows = attack_rows(ctx, self, self.tokens, placeholder)
        embed = model.get_input_embeddings()
        start = vocabulary_tokens(ctx.tokenizer, embed.num_embeddings, self.tokens, ctx.seed + self.seed_offset)
        with frozen(model):
            with torch.no_grad():
                init = embed(start.to(embed.weight.device)).float().clone()
            prompted = _Prompted(model, init, placeholder, bos)
            finetune(prompted, {"train": rows}, self.settings, self.optimizer, seed=ctx.seed + self.seed_offset,
                     pad_id=ctx.pad_id, stage=ctx.stage, log=ctx.log, device=ctx.device, cast_weights=False)
        vectors = prompted.prompt.detach().clone()
        name = view_name(self, vectors.cpu().numpy().tobytes() + repr(splits).encode())
        return model, PromptView(name, splits, tokens=(placeholder,) * self.tokens, embeddings=vectors,
                                 placeholder=placeholder)
