"""Supervised fine-tuning on QA data through the one training loop (prepare stage, attacks)."""

from __future__ import annotations

from typing import Callable, Dict

from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import train
from unlearn_cli.train.settings import TrainSettings, make_scheduler, steps_per_epoch, total_steps, weight_regime


def sft_loss(model, batch):
    """One term per split of the batch (``train``, and ``mix`` when present): its mean answer-token NLL."""
    terms, logs = {}, {}
    for name, b in batch.items():
        terms[name] = answer_forward(model, b).mean_nll()
        logs[f"{name}_nll"] = terms[name].detach()
    return terms, logs


def finetune(model, splits: Dict[str, EncodedQA], settings: TrainSettings, optimizer_spec, *, seed: int,
             pad_id: int, stage: str, log: Callable, device, cast_weights: bool = True) -> Dict[str, float]:
    """Fine-tune ``model``'s trainable parameters in place with NLL on ``splits['train']`` (and
    ``splits['mix']``); the optimizer comes from ``optimizer_spec`` (``contracts.OptimizerSpec``).
    ``cast_weights`` puts the weights in the precision's regime first (``weight_regime``); an attack that
    trains only its own parameters on a shared frozen model passes False."""
    sizes = {name: settings.batch_size for name in splits}
    stream = BatchStream(splits, sizes, pad_id, seed)
    steps = total_steps(settings, len(splits["train"]), settings.batch_size)
    if cast_weights:
        weight_regime(model, settings.precision)
    optimizer = optimizer_spec.build([p for p in model.parameters() if p.requires_grad], settings.lr)
    scheduler = make_scheduler(optimizer, settings, steps, steps_per_epoch(settings, len(splits["train"]),
                                                                            settings.batch_size))
    return train(model, sft_loss, stream, optimizer, settings, steps, stage=stage, log=log, device=device,
                 scheduler=scheduler)
