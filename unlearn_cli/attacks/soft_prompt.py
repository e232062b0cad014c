"""Soft-prompt attack: a universal embedding-space prefix optimised to make the unlearned model say the forget answers."""

from __future__ import annotations

from typing import List, Literal, Optional

import torch

from unlearn_cli.attacks._adversarial import check_attacker_data, frozen, prompt_search, view_name
from unlearn_cli.bounds import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import Attack, OptimizerSpec
from unlearn_cli.eval.views import PromptView
from unlearn_cli.models.adversarial_tokens import EmbeddingOverride
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.settings import TrainSettings
from unlearn_cli.train.sft import finetune


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
        check_attacker_data(data, forget_splits, self)

    def apply(self, ctx, model):
        s = prompt_search(ctx, self, model)
        embed = model.get_input_embeddings()
        with frozen(model):
            with torch.no_grad():
                init = embed(s.start.to(embed.weight.device)).float().clone()
            prompted = _Prompted(model, init, s.placeholder, s.bos)
            finetune(prompted, {"train": s.rows}, self.settings, self.optimizer, seed=ctx.seed + self.seed_offset,
                     pad_id=ctx.pad_id, stage=ctx.stage, log=ctx.log, device=ctx.device, cast_weights=False)
        vectors = prompted.prompt.detach().clone()
        name = view_name(self, vectors.cpu().numpy().tobytes() + repr(s.splits).encode())
        return model, PromptView(name, s.splits, tokens=(s.placeholder,) * self.tokens, embeddings=vectors,
                                 placeholder=s.placeholder)
