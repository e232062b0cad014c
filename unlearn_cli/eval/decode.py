"""Decoding: settings, sampling policies, context fitting and batched generation.

Prompts are length-bucketed and left-padded; greedy decoding or ``n`` samples per prompt under a seeded
RNG that does not disturb the caller's. Prompts longer than the model's context minus the continuation
keep their last tokens (one warning per split and run). ``engine: native`` decodes the buckets on the
project's KV-cache loop (``eval.kv_decode``: finished rows hand their slot to waiting ones); ``engine: generate``
calls transformers' ``model.generate`` per bucket. Both give the same tokens (greedy) and the same
samples for the same seed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import List, Literal, Optional, Sequence

import torch

from unlearn_cli import progress
from unlearn_cli.data.encoding import left_pad
from unlearn_cli.errors import UserError
from unlearn_cli.models.build import context_length
from unlearn_cli.bounds import Fraction, NonNegativeInt, PositiveFloat, PositiveInt

log = logging.getLogger("unlearn_cli")


@dataclass
class DecodeSettings:
    """Decoding settings shared by every generation metric (``eval.decode``).

    Greedy metrics use ``max_new_tokens``; sampling metrics (leak@k) use ``temperature``,
    ``top_p``, ``top_k`` (0 = off) unless they sweep their own grid, seeded by ``seed``.
    ``batch_size`` counts sequences per forward/generate call (prompts x samples).
    ``max_text_tokens`` truncates raw texts scored for membership inference. ``engine``: ``native``
    (the project's KV-cache loop, ``eval.kv_decode``) or ``generate`` (``model.generate`` per length
    bucket: the reference it is tested against, and the path for models without a ``DynamicCache``).
    ``sampling_rng``: ``per_row`` gives every (prompt, sample) its own stream seeded from ``seed``, so
    samples do not depend on ``batch_size`` and sampled rows of different buckets share the batch like greedy
    ones (native engine only); ``generate`` draws as ``model.generate`` does (the same samples under both
    engines, but they depend on the batch size and buckets run one after another: the samples of versions
    before ``per_row`` became the default); ``auto`` (the default) is ``per_row`` on the native engine and
    ``generate`` on ``engine: generate``, the one stream that engine has."""

    max_new_tokens: PositiveInt = 24
    batch_size: PositiveInt = 256
    temperature: PositiveFloat = 1.0
    top_p: Fraction = 1.0
    top_k: NonNegativeInt = 0
    seed: NonNegativeInt = 0
    max_text_tokens: PositiveInt = 512
    engine: Literal["native", "generate"] = "native"
    sampling_rng: Literal["auto", "per_row", "generate"] = "auto"

    def __post_init__(self):
        if self.engine == "generate" and self.sampling_rng == "per_row":
            raise UserError("eval.decode.sampling_rng 'per_row' needs eval.decode.engine 'native' (model.generate "
                            "draws for the whole batch); valid with engine 'generate': auto, generate")


@dataclass(frozen=True)
class Sampling:
    """A sampling policy: ``n`` samples per prompt at ``temperature`` / ``top_p`` / ``top_k``."""

    n: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


_WARNED: set = set()


def fit_prompts(prompts: Sequence[Sequence[int]], context: Optional[int], max_new_tokens: int,
                what: str) -> Sequence[Sequence[int]]:
    """Prompts whose length plus ``max_new_tokens`` exceeds ``context`` keep their LAST tokens (the
    continuation depends on the end of the prefix; positions past the context are untrained), with
    one warning naming how many were cut."""
    if not context:
        return prompts
    room = context - max_new_tokens
    if room < 1:
        raise UserError(f"{what}: {max_new_tokens} continuation tokens (max_new_tokens) leave no room for a "
                        f"prompt in the model's {context}-token context; lower max_new_tokens")
    cut = sum(len(p) > room for p in prompts)
    if not cut:
        return prompts
    what = what.split(":")[-1]  # "eval target:forget" -> "forget": one warning per split and run
    if (what, cut, room) not in _WARNED:
        _WARNED.add((what, cut, room))
        log.warning("%s: %d of %d prompts exceed the %d tokens left in the model's %d-token context after %d "
                    "continuation tokens; keeping their last %d tokens", what, cut, len(prompts), room, context,
                    max_new_tokens, room)
    return [list(p[-room:]) if len(p) > room else p for p in prompts]



def length_buckets(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def left_pad_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding (as ``generate`` computes them)."""
    return (mask.cumsum(-1) - 1).clamp_min(0)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Seed torch's RNG for the block without disturbing the caller's RNG state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int,
             autocast, sampling: Optional[Sampling] = None, seed: int = 0,
             desc: str = "generate", engine: str = "native", sampling_rng: str = "auto") -> List[List[str]]:
    """Continuations of ``prompts`` (decoded, special tokens stripped), one list per prompt:
    one greedy string, or ``sampling.n`` samples. Prompts are length-bucketed and left-padded;
    ``batch_size`` bounds prompts x samples per bucket; ``sampling_rng`` as in ``DecodeSettings``."""
    dev = model_device(model)
    n = sampling.n if sampling else 1
    prompts = fit_prompts(prompts, context_length(model), max_new_tokens, desc)
    out: List[List[str]] = [[] for _ in prompts]
    buckets = length_buckets([len(p) for p in prompts], max(1, batch_size // n))
    rng = seeded(seed, dev) if sampling else contextlib.nullcontext()
    with rng, progress.bar(desc, len(prompts)) as advance:
        if engine == "generate":
            decoded = _generate_per_bucket(model, tokenizer, prompts, buckets, max_new_tokens, autocast, sampling,
                                           advance)
        else:
            decoded = _native(model, tokenizer, prompts, buckets, max_new_tokens, autocast, sampling, advance,
                              seed if sampling_rng in ("auto", "per_row") else None)
    for idx, texts in zip(buckets, decoded):
        for row, i in enumerate(idx):
            out[i] = [t.strip() for t in texts[row * n:(row + 1) * n]]
    return out


def _native(model, tokenizer, prompts, buckets, max_new_tokens, autocast, sampling, advance,
            row_seed: Optional[int]) -> List[List[str]]:
    """The native loop; ``row_seed`` (sampling only): per-row streams seeded from it."""
    from unlearn_cli.eval import kv_decode
    n = sampling.n if sampling else 1
    choose, streams = kv_decode.greedy_choice, None
    if sampling:
        chain = kv_decode.warpers(sampling.temperature, sampling.top_k, sampling.top_p)
        choose = kv_decode.sampling_choice(chain)
        if row_seed is not None:
            choose = kv_decode.per_row_choice(chain)
            order = [i for idx in buckets for i in idx]  # stream of prompt i, sample j, in output-row order
            by_prompt = kv_decode.row_streams(row_seed, len(prompts), n)
            streams = [by_prompt[i * n + j] for i in order for j in range(n)]
    decoder = kv_decode.Decoder(model, tokenizer.pad_token_id, tokenizer.eos_token_id, max_new_tokens, autocast,
                                choose=choose, share_slots=sampling is None or streams is not None, samples=n,
                                streams=streams)
    rows = [[prompts[i] for i in idx] for idx in buckets]
    ids = decoder.run(rows, max(len(r) for r in rows) * n if rows else 1, on_bucket=advance)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    decoded, start = [], 0
    for r in rows:
        decoded.append(texts[start:start + len(r) * n])
        start += len(r) * n
    return decoded


def _generate_per_bucket(model, tokenizer, prompts, buckets, max_new_tokens, autocast, sampling,
                         advance) -> List[List[str]]:
    dev = model_device(model)
    kwargs = dict(do_sample=False)
    if sampling:
        kwargs = dict(do_sample=True, num_return_sequences=sampling.n, temperature=sampling.temperature,
                      top_p=sampling.top_p, top_k=sampling.top_k)
    decoded = []
    for idx in buckets:
        batch = left_pad([prompts[i] for i in idx], tokenizer.pad_token_id)
        with autocast():
            gen = model.generate(input_ids=batch["input_ids"].to(dev),
                                 attention_mask=batch["attention_mask"].to(dev),
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, **kwargs)
        decoded.append(tokenizer.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
        advance(len(idx))
    return decoded
