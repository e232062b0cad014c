"""Supervised fine-tuning on QA data through the one training loop (prepare stage, attacks)."""

from __future__ import annotations

from typing import Callable, Dict

from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.losses import mean_token_nll
from unlearn_cli.train.loop import BatchStream, TrainSettings, total_steps, train


def sft_loss(model, batch):
    """Mean answer-token NLL of the ``train`` batch (plus the ``mix`` batch when present)."""
    loss = 0.0
    logs = {}
    for name, b in batch.items():
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        part = mean_token_nll(out.logits, b["labels"])
        logs[f"{name}_nll"] = part.detach()
        loss = loss + part
    return loss, logs


def finetune(model, splits: Dict[str, EncodedQA], settings: TrainSettings, optimizer_spec, *, seed: int,
             pad_id: int, stage: str, log: Callable, device) -> Dict[str, float]:
    """Fine-tune ``model`` in place with NLL on ``splits['train']`` (and ``splits['mix']``)."""
    sizes = {name: settings.batch_size for name in splits}
    stream = BatchStream(splits, sizes, pad_id, seed)
    steps = total_steps(settings, len(splits["train"]), settings.batch_size)
    optimizer = optimizer_spec.build([p for p in model.parameters() if p.requires_grad], settings.lr)
    return train(model, sft_loss, stream, optimizer, settings, steps, stage=stage, log=log, device=device)
