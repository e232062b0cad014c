"""Out-of-domain (benign) fine-tuning attack: fine-tune the unlearned model on unrelated data, then re-evaluate."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import List, Literal, Optional

from unlearn_cli.bounds import NonNegativeInt, PositiveFloat, PositiveInt
from unlearn_cli.contracts import Attack, OptimizerSpec
from unlearn_cli.data.items import QAItem
from unlearn_cli.errors import UserError
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.settings import TrainSettings
from unlearn_cli.train.sft import finetune


def arithmetic_items(n: int, seed: int) -> List[QAItem]:
    """``n`` generated two-number sums and differences ("What is 17 plus 25?" -> "17 plus 25 is 42."): data with
    nothing in common with any benchmark's forget set, made without a download."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        word, value = ("plus", a + b) if rng.random() < 0.5 else ("minus", a - b)
        items.append(QAItem(question=f"What is {a} {word} {b}?", answer=f"{a} {word} {b} is {value}.",
                            value=str(value)))
    return items


def file_items(path: Path, question_field: str, answer_field: str) -> List[QAItem]:
    """QA items from a local ``.jsonl`` / ``.json`` (a list of records) / ``.csv`` file (GSM8K's ``question`` /
    ``answer`` by default; SST-2 with ``question_field: sentence, answer_field: label``). A UserError names the
    file and the missing field."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
    elif path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        raise UserError(f"attack ood_finetune: data '{path}' must be a .jsonl, .json or .csv file")
    items = []
    for i, row in enumerate(rows):
        missing = [k for k in (question_field, answer_field) if k not in row]
        if missing:
            raise UserError(f"attack ood_finetune: record {i} of '{path}' has no field '{missing[0]}' "
                            f"(fields: {', '.join(row)}; set question_field / answer_field)")
        answer = str(row[answer_field])
        items.append(QAItem(question=str(row[question_field]), answer=answer, value=answer))
    if not items:
        raise UserError(f"attack ood_finetune: '{path}' holds no records")
    return items


@ATTACKS.register("ood_finetune")
class OODFinetune(Attack):
    """Out-of-domain fine-tuning attack (the benign fine-tuning of SMOOTH, arXiv 2502.05374, its "perturb" data --
    GSM8K, SST-2, AG News -- and of the full-stack unlearning study arXiv 2510.07626, which reports it apart from
    in-domain relearning): plain SFT (answer-token NLL, the relearning attack's loop and optimizer) of the
    unlearned model on data unrelated to the forget set, then the full evaluation. Forgetting that is only a thin
    layer on top of the weights can come back when the model is trained on anything.

    ``data: arithmetic`` (default) generates ``num_samples`` two-number sums and differences from ``seed_offset``
    plus the run seed. Otherwise ``data`` is a local ``.jsonl`` / ``.json`` / ``.csv`` file of records whose
    ``question_field`` and ``answer_field`` become prompt and answer, in the model's prompt format, with
    ``num_samples`` of them drawn (null = all). Settings as ``relearn``: ``steps``, ``lr``, ``batch_size``,
    ``precision``, ``max_grad_norm``, ``optimizer``, ``schedule``, ``warmup_steps``. The protocol's budgets and rates are not published
    (we reuse relearning's). A file that is missing is refused before any stage runs."""

    def __init__(self, data: str = "arithmetic", num_samples: Optional[PositiveInt] = 256,
                 question_field: str = "question", answer_field: str = "answer", steps: PositiveInt = 10,
                 lr: PositiveFloat = 3e-4, batch_size: PositiveInt = 16,
                 precision: Literal["fp32", "bf16", "bf16_pure"] = "bf16",
                 max_grad_norm: Optional[PositiveFloat] = 1.0, seed_offset: NonNegativeInt = 2000,
                 optimizer: Optional[OptimizerSpec] = None, schedule: Literal["constant", "linear", "cosine"] = "constant",
                 warmup_steps: NonNegativeInt = 0):
        self.data, self.num_samples, self.seed_offset = data, num_samples, seed_offset
        self.question_field, self.answer_field = question_field, answer_field
        self.optimizer = optimizer if optimizer is not None else AdamW(betas=(0.9, 0.98))
        self.settings = TrainSettings(lr=lr, steps=steps, batch_size=batch_size, precision=precision,
                                      max_grad_norm=max_grad_norm, schedule=schedule, warmup_steps=warmup_steps)

    def check(self, device) -> None:
        if self.data != "arithmetic" and not Path(self.data).expanduser().is_file():
            raise UserError(f"attack ood_finetune: data '{self.data}' is not a file; give a local .jsonl, .json or "
                            f".csv file, or data=arithmetic (generated)")

    def items(self, seed: int) -> List[QAItem]:
        """The fine-tuning data of a run with seed ``seed``."""
        if self.data == "arithmetic":
            return arithmetic_items(self.num_samples or 256, seed + self.seed_offset)
        items = file_items(Path(self.data).expanduser(), self.question_field, self.answer_field)
        if self.num_samples is not None and self.num_samples < len(items):
            items = random.Random(seed + self.seed_offset).sample(items, self.num_samples)
        return items

    def apply(self, ctx, model):
        if ctx.encode is None:
            raise RuntimeError("ood_finetune needs the run's encode function in its AttackContext")
        splits = {"train": ctx.encode(self.items(ctx.seed))}
        finetune(model, splits, self.settings, self.optimizer, seed=ctx.seed + self.seed_offset,
                 pad_id=ctx.pad_id, stage=ctx.stage, log=ctx.log, device=ctx.device)
        return model, None
