"""Shared helpers for the method tests: a tiny Llama on the fictional benchmark, and a harness built by
``train.unlearn.build`` -- the very setup the pipeline uses (extra splits, reference caching, method and
plug-in setup, aligned batch stream, optimizer) -- stepping through the loop's ``StepClosure``."""

from __future__ import annotations

import functools

import torch

from unlearn_cli.data.encoding import PromptFormat, encode_qa
from unlearn_cli.data.fictional import generate
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.models.build import ModelSpec, build_tiny
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.train import unlearn
from unlearn_cli.train.loop import StepClosure, sum_terms
from unlearn_cli.train.settings import TrainSettings

FORMAT = PromptFormat("Question: {question}\nAnswer: ")
SPEC = ModelSpec(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128)
CPU = torch.device("cpu")


@functools.lru_cache(maxsize=None)
def data_and_tokenizer():
    data = generate(num_people=20)
    return data, train_bpe_tokenizer(data.corpus, 512)


def tiny_model(seed: int = 0):
    _, tok = data_and_tokenizer()
    return build_tiny(SPEC, len(tok), tok, seed)


def encode(items, answers=None):
    _, tok = data_and_tokenizer()
    return encode_qa(tok, items, FORMAT, answers)


class Harness:
    """``train.unlearn.build`` for a method on the tiny model (fp32, no clipping, AdamW with torch's
    default weight decay 0.01) and single steps through ``StepClosure``."""

    def __init__(self, method, model=None, cache: bool = True, batch_size: int = 4, seed: int = 0,
                 lr: float = 1e-3, plugins=None, optimizer=None, max_grad_norm=None, precision: str = "fp32"):
        torch.manual_seed(seed)
        data, tok = data_and_tokenizer()
        self.method = method
        self.model = model if model is not None else tiny_model()
        self.pad_id = tok.pad_token_id
        self.settings = TrainSettings(lr=lr, steps=1000, batch_size=batch_size, retain_batch_size=batch_size,
                                      precision=precision, max_grad_norm=max_grad_norm)
        train_encoded = {k: encode(v) for k, v in data.train.items()}
        self.u = unlearn.build(self.model, method, data, train_encoded, encode, self.settings,
                               optimizer or AdamW(weight_decay=0.01), plugins or {}, seed=seed,
                               pad_id=self.pad_id, device=CPU, cache_reference=cache,
                               tokenizer=tok)
        self.splits, self.reference, self.optimizer = self.u.splits, self.u.reference, self.u.optimizer
        self.stream = iter(self.u.stream)
        self.steps = 0

    def batch(self):
        return next(self.stream)

    def objective(self, batch):
        """The method's (and plug-ins') summed terms on ``batch``, without touching the method's state."""
        state = self.method.state_dict()
        terms, _ = self.u.objective(self.model, batch)
        self.method.load_state_dict(state)
        return sum_terms(terms)

    def step(self, batch=None, after_step=None):
        """One optimizer step on ``batch`` (the stream's next batch by default): ``(loss, logs)``."""
        batch = batch if batch is not None else self.batch()
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        closure = StepClosure(self.model, self.u.objective, [batch], self.settings, params, stage="test",
                              step=self.steps, device=CPU)
        loss = self.optimizer.step(closure)
        self.u.after_step(self.steps)
        if after_step is not None:
            after_step()
        self.steps += 1
        return float(loss), closure.logs

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
    from unlearn_cli.models.forward import answer_forward
    model.eval()
    return float(answer_forward(model, batch).mean_nll())
