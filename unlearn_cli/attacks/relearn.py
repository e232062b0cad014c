"""In-domain relearning attack."""

from __future__ import annotations

from typing import Literal, Optional

from unlearn_cli.attacks._forget_sample import check_sample, forget_sample
from unlearn_cli.bounds import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import Attack, OptimizerSpec
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.settings import TrainSettings
from unlearn_cli.train.sft import finetune


@ATTACKS.register("relearn")
class Relearn(Attack):
    """Relearning attack: fine-tune the unlearned model on a few forget samples, then re-evaluate.

    Follows the relearning protocol of Hu et al. 2024 / Fan et al. 2025 (arXiv 2502.05374, §4.1 of
    docs/method_reference.md): plain SFT (answer-token NLL) on ``num_samples`` forget QA pairs (or a ``fraction``
    of them) drawn with the attack seed, for ``steps`` steps with the attack's own ``optimizer``
    (default AdamW, betas (0.9, 0.98), no weight decay). ``mix_retain`` adds a retain batch of the
    same size to each step (an attacker who also keeps utility). The full forget split is then
    evaluated, so recovery on the *unseen* forget facts measures how shallow the unlearning was.
    ``schedule`` (``constant``, ``linear`` or ``cosine`` decay) after ``warmup_steps`` linear warm-up steps: SMOOTH's
    WMDP protocol warms up for ``max(1, S/10)`` steps then decays linearly, its MUSE protocol decays by cosine.
    Give several budgets as several instances: ``attack.relearn_50: {name: relearn, steps: 50}``.
    """

    def __init__(self, fraction: Fraction = 0.5, num_samples: Optional[PositiveInt] = None, steps: PositiveInt = 10,
                 lr: PositiveFloat = 3e-4, batch_size: PositiveInt = 16, mix_retain: bool = False, precision: Literal["fp32", "bf16", "bf16_pure"] = "bf16",
                 max_grad_norm: Optional[PositiveFloat] = 1.0, seed_offset: NonNegativeInt = 1000,
                 optimizer: Optional[OptimizerSpec] = None, schedule: Literal["constant", "linear", "cosine"] = "constant",
                 warmup_steps: NonNegativeInt = 0):
        self.fraction, self.num_samples, self.mix_retain = fraction, num_samples, mix_retain
        self.seed_offset = seed_offset
        self.optimizer = optimizer if optimizer is not None else AdamW(betas=(0.9, 0.98))
        self.settings = TrainSettings(lr=lr, steps=steps, batch_size=batch_size, precision=precision,
                                      max_grad_norm=max_grad_norm, schedule=schedule, warmup_steps=warmup_steps)

    def check_data(self, data, forget_splits) -> None:
        check_sample(data, self.fraction, self.num_samples, "relearn")
        if self.mix_retain:
            data.train_split("retain")

    def apply(self, ctx, model):
        splits = {"train": forget_sample(ctx, self.fraction, self.num_samples, self.seed_offset, "relearn")}
        if self.mix_retain:
            splits["mix"] = ctx.train_encoded["retain"]
        finetune(model, splits, self.settings, self.optimizer, seed=ctx.seed + self.seed_offset,
                 pad_id=ctx.pad_id, stage=ctx.stage, log=ctx.log, device=ctx.device)
        return model, None
