"""Shared helpers for the method tests: a tiny Llama on the fictional benchmark, and a harness that
mirrors ``Run._unlearn`` (extra splits, reference caching, setup, aligned batch stream)."""

from __future__ import annotations

import contextlib
import functools

import torch

from unlearn_cli.data.encoding import encode_qa
from unlearn_cli.data.fictional import generate
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.models.build import ModelSpec, build_tiny, frozen_copy
from unlearn_cli.train.reference import Reference
from unlearn_cli.train.loop import BatchStream

TEMPLATE = "Question: {question}\nAnswer:"
SPEC = ModelSpec(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128)


@functools.lru_cache(maxsize=None)
def data_and_tokenizer():
    data = generate(num_people=20)
    return data, train_bpe_tokenizer(data.corpus, 512)


def tiny_model(seed: int = 0):
    _, tok = data_and_tokenizer()
    return build_tiny(SPEC, len(tok), tok, seed)


def encode(items, answers=None):
    _, tok = data_and_tokenizer()
    return encode_qa(tok, items, TEMPLATE, answers)


class Harness:
    """Everything ``Run._unlearn`` builds for a method, minus the training loop's extras."""

    def __init__(self, method, model=None, cache: bool = True, batch_size: int = 4, seed: int = 0,
                 lr: float = 1e-3):
        torch.manual_seed(seed)
        data, tok = data_and_tokenizer()
        self.method = method
        self.model = model if model is not None else tiny_model()
        self.pad_id = tok.pad_token_id
        self.splits = {"forget": encode(data.train["forget"])}
        sizes = {"forget": batch_size}
        if method.needs_retain:
            self.splits["retain"] = encode(data.train["retain"])
            sizes["retain"] = batch_size
        extra = method.extra_splits(data.train, encode) if hasattr(method, "extra_splits") else {}
        self.splits.update(extra)
        self.reference = None
        if method.needs_reference:
            self.reference = Reference(frozen_copy(self.model), self.pad_id, cache=cache,
                                       autocast=contextlib.nullcontext)
            for split in getattr(method, "reference_splits", ("forget",)):
                self.reference.precompute(split, self.splits[split])
        if hasattr(method, "setup"):
            method.setup(self.model, self.reference)
        self.stream = iter(BatchStream(self.splits, sizes, self.pad_id, seed, aligned={k: "forget" for k in extra}))
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr)

    def batch(self):
        return next(self.stream)

    def step(self, batch=None, after_step=None):
        batch = batch if batch is not None else self.batch()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.method.loss(self.model, batch, self.reference)
        loss.backward()
        self.optimizer.step()
        if after_step is not None:
            after_step()
        return float(loss.detach()), logs

    def run(self, steps: int, **kw):
        return [self.step(**kw) for _ in range(steps)]

    def full(self, split: str):
        """One batch holding every example of ``split``."""
        enc = self.splits[split]
        return enc.batch(range(len(enc)), self.pad_id)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


@torch.no_grad()
def mean_nll(model, batch):
    from unlearn_cli.losses import mean_token_nll
    model.eval()
    return float(mean_token_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"]))
