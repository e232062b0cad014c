"""The project's own decoding loop on a KV cache (``eval.decode.engine: native``).

It computes what ``model.generate`` computes for a length bucket of left-padded prompts -- the same
prefill forward, the same position ids, argmax or the same sampling warpers -- without the work that a
batch does not need:

* **Rows leave at EOS.** A row that emitted EOS, or its ``max_new_tokens``, is dropped from the batch and
  its KV cache (``generate`` keeps computing every finished row until the whole bucket is done).
* **The batch stays full** (greedy, and ``per_row`` sampling, when every layer sees the whole sequence):
  rows that finish hand their slot to the next bucket's prefilled rows (``eval.slot_decode``), so a step
  computes ``batch_size`` rows until the last rows run out. The prefill of every bucket is the one
  ``generate`` runs, so greedy outputs are the same (tested, token for token).
* **A stream per row** (``sampling_rng: per_row``, which the default ``auto`` means on this engine):
  inverse-CDF sampling with one uniform per row and step from the row's own seeded stream, so samples do not
  depend on the batch and sampled rows share slots too.
* **Or generate's random stream** (``sampling_rng: generate``). ``torch.multinomial`` with one sample is argmax
  of ``p / q`` with ``q ~ Exp(1)`` drawn for the whole ``(rows, vocabulary)`` tensor, so drawing ``q`` for the
  bucket's full shape each step and keeping the live rows' slots reproduces generate's samples for the
  same seed while only live rows are computed (on a CPU from the same generator's uniforms, with ``q``
  computed only where it can decide the argmax: ``eval.multinomial_draw``). Sampled buckets are therefore
  decoded one after the other (refilling slots from other buckets would reorder the draws). The warpers are
  transformers' own (``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper``), applied in
  generate's order.
* **One prefill per prompt** when it is sampled ``n`` times: its cache is copied into its ``n`` rows
  (``generate`` prefills each copy).

Deviation from ``generate``: only the eval's decode settings are in force; a checkpoint's
``generation_config`` (say a repetition penalty) is not applied, so a number does not depend on what a
checkpoint's author left in that file. Models whose sliding window is shorter than a prompt plus its
continuation decode bucket by bucket; models whose cache is not transformers' ``DynamicCache`` (state-space or
encoder-decoder models) use ``engine: generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from unlearn_cli.data.encoding import left_pad
from unlearn_cli.eval import multinomial_draw
from unlearn_cli.eval.decode import left_pad_positions
from unlearn_cli.eval.decode_step import decode_step
from unlearn_cli.eval.slot_decode import COMPACT_FRACTION, SlotSchedule, full_attention


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer that writes into a buffer sized for the whole continuation.

    ``DynamicLayer`` concatenates every step (copying the whole cache: quadratic in the length); this one
    reserves ``room`` positions beyond the first write (``max_new_tokens``, so prompt + continuation: what
    ``generate``'s cache reaches at worst) and hands attention views of the filled part."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room  # positions reserved beyond the first write
        self.filled = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        b, h, t, d = key_states.shape
        self._keys = key_states.new_empty(b, h, t + self.room, d)
        self._values = value_states.new_empty(b, h, t + self.room, value_states.shape[-1])
        self.is_initialized = True

    def _views(self) -> None:
        self.keys, self.values = self._keys[:, :, :self.filled], self._values[:, :, :self.filled]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.filled + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            raise RuntimeError(f"GrowingLayer holds {self._keys.shape[-2]} positions; {end} were written")
        self._keys[:, :, self.filled:end] = key_states
        self._values[:, :, self.filled:end] = value_states
        self.filled = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.filled

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            keys = self._keys.new_empty(len(indices), *self._keys.shape[1:])
            values = self._values.new_empty(len(indices), *self._values.shape[1:])
            keys[:, :, :self.filled] = self._keys[indices, :, :self.filled]
            values[:, :, :self.filled] = self._values[indices, :, :self.filled]
            self._keys, self._values = keys, values
            self._views()


@dataclass
class LiveRows:
    """The rows of one batch still decoding: their cache and what the next forward needs."""

    out: torch.Tensor  # (b,) output row of each row; -1 once it finished (it writes to a scratch row)
    slot: torch.Tensor  # (b,) row within the bucket's sampling noise
    cache: DynamicCache
    mask: torch.Tensor  # (b, cached positions): 1 for a real token, 0 for padding
    pos: torch.Tensor  # (b,) position id of the token fed next
    nxt: torch.Tensor  # (b,) the token fed next: the last one chosen
    count: torch.Tensor  # (b,) tokens generated so far
    streams: Optional[list] = None  # per-row RowStream (sampling_rng: per_row)
    live: int = -1  # rows still decoding (kept by ``Decoder.record``; -1: all of them)

    def __post_init__(self):
        if self.live < 0:
            self.live = len(self.out)

    def __len__(self) -> int:
        return len(self.out)

    def alive(self) -> torch.Tensor:
        return self.out >= 0

    def compacted(self) -> "LiveRows":
        """The rows still decoding only (finished rows leave the batch and the cache)."""
        if self.live == len(self):
            return self
        keep = self.alive().nonzero().flatten()
        self.cache.batch_select_indices(keep)
        streams = [self.streams[i] for i in keep.tolist()] if self.streams is not None else None
        return LiveRows(self.out[keep], self.slot[keep], self.cache, self.mask[keep], self.pos[keep],
                        self.nxt[keep], self.count[keep], streams)


def growing_cache(config, room: int) -> DynamicCache:
    """transformers' cache for ``config`` with every full-attention layer a ``GrowingLayer``."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def warpers(temperature: float, top_k: int, top_p: float) -> LogitsProcessorList:
    """transformers' sampling warpers in ``generate``'s order and under its conditions (one token kept)."""
    chain = LogitsProcessorList()
    if temperature != 1.0:
        chain.append(TemperatureLogitsWarper(temperature))
    if top_k:
        chain.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return chain


def greedy_choice(logits: torch.Tensor, rows: LiveRows, bucket_rows: int) -> torch.Tensor:
    return logits.argmax(-1)


def sampling_choice(chain: LogitsProcessorList) -> Callable:
    """The draw of ``torch.multinomial(softmax(warped), 1)`` over the bucket's full shape, for the live rows."""
    def choose(logits: torch.Tensor, rows: LiveRows, bucket_rows: int) -> torch.Tensor:
        return multinomial_draw.draw(torch.softmax(chain(None, logits), dim=-1), rows.slot, bucket_rows)
    return choose


class RowStream:
    """The uniforms of one (prompt, sample): numpy's PCG64 seeded with ``SeedSequence([seed, prompt, sample])``
    (independent streams, no collisions between neighbouring indices), drawn 1024 at a time, one per step."""

    CHUNK = 1024

    def __init__(self, seed: int, prompt: int, sample: int):
        import numpy as np
        self.generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, prompt, sample])))
        self.buffer: List[float] = []

    def next(self) -> float:
        if not self.buffer:
            self.buffer = self.generator.random(self.CHUNK).tolist()[::-1]
        return self.buffer.pop()


def row_streams(seed: int, prompts: int, samples: int) -> List[RowStream]:
    """One stream per (prompt, sample), prompt-major."""
    return [RowStream(seed, i, j) for i in range(prompts) for j in range(samples)]


def per_row_choice(chain: LogitsProcessorList) -> Callable:
    """Inverse-CDF sampling with one uniform per row and step from the row's own stream: the token whose
    cumulative probability (float64) first exceeds ``u``, so a row's k-th token depends only on its stream's
    k-th uniform and its own logits. The same distribution as ``multinomial``, at the cost of a cumulative sum
    instead of an Exp(1) draw for every vocabulary entry."""
    def choose(logits: torch.Tensor, rows: LiveRows, bucket_rows: int) -> torch.Tensor:
        cdf = torch.softmax(chain(None, logits), dim=-1).double().cumsum(-1)
        u = torch.tensor([s.next() for s in rows.streams], dtype=torch.float64, device=cdf.device) * cdf[:, -1]
        return torch.searchsorted(cdf, u[:, None], right=True).squeeze(1).clamp_max(cdf.shape[-1] - 1)
    return choose


class Decoder:
    """Continuations of many prompts: buckets prefilled as ``generate`` would, then decoded on slots that
    stay full (``eval.slot_decode``), or bucket by bucket (``generate``'s sampling stream, sliding windows)."""

    def __init__(self, model, pad_id: int, eos_id: Optional[int], max_new_tokens: int, autocast,
                 choose: Callable = greedy_choice, share_slots: bool = True, samples: int = 1,
                 streams: Optional[List[RowStream]] = None):
        self.model = model
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.max_new_tokens = max_new_tokens
        self.autocast = autocast
        self.choose = choose
        self.share_slots = share_slots  # rows of different buckets may decode together (not generate's stream)
        self.samples = samples  # rows per prompt: the prompt is prefilled once, its cache repeated
        self.streams = streams  # per-row generators in output-row order (sampling_rng: per_row)
        self.device = next(model.parameters()).device
        self.step = decode_step(model)  # the model's decode step without transformers' plumbing, where exact

    def logits(self, **inputs) -> torch.Tensor:
        with self.autocast():
            out = self.model(**inputs, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].to(dtype=torch.float32)

    def step_logits(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        """The next-token logits of one decode step: through ``eval.decode_step`` when the model has one and
        ``mask`` is the boolean 4-D mask of the positions each row sees, else through ``model(...)``."""
        if self.step is not None and mask.dim() == 4:
            with self.autocast():
                return self.step(ids, mask, pos, cache).to(dtype=torch.float32)
        return self.logits(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache)

    def prefill_forward(self, prompts: Sequence[Sequence[int]], cache) -> tuple:
        """``generate``'s prefill of a bucket: left-padded, position ids that skip the padding; the cache, the
        mask and the last position's logits (one row per prompt)."""
        batch = left_pad(prompts, self.pad_id)
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        logits = self.logits(input_ids=ids, attention_mask=mask, position_ids=left_pad_positions(mask), cache=cache)
        return cache, mask, logits

    def prefill(self, prompts: Sequence[Sequence[int]], out_rows: torch.Tensor, bucket_rows: int) -> LiveRows:
        """The bucket's prefill forward; each prompt's cache and logits then stand for its ``samples`` rows
        (``generate`` prefills every repeated row)."""
        cache, mask, logits = self.prefill_forward(prompts, growing_cache(self.model.config, self.max_new_tokens))
        pos = left_pad_positions(mask)
        if self.samples > 1:
            cache.batch_repeat_interleave(self.samples)
            logits, mask, pos = (t.repeat_interleave(self.samples, dim=0) for t in (logits, mask, pos))
        zeros = torch.zeros(len(mask), dtype=torch.long, device=self.device)
        streams = [self.streams[i] for i in out_rows.tolist()] if self.streams is not None else None
        rows = LiveRows(out_rows.to(self.device), torch.arange(len(mask), device=self.device), cache, mask,
                        pos[:, -1] + 1, zeros, zeros.clone(), streams)
        rows.nxt = self.choose(logits, rows, bucket_rows)
        return rows

    def finished(self, chosen: torch.Tensor, count: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Which live rows are done once ``chosen`` is their ``count``-th token: EOS, or ``max_new_tokens``."""
        done = alive & (count >= self.max_new_tokens)
        return done | (alive & (chosen == self.eos_id)) if self.eos_id is not None else done

    def record(self, rows: LiveRows, tokens: torch.Tensor) -> Optional[LiveRows]:
        """Write the chosen tokens of the rows still decoding; a row that emitted EOS or its last token is
        finished (None: every row is). Finished rows leave the batch and its cache once they are an eighth of
        it; until then they are computed and write to the scratch row (``-1``), which costs less than copying
        the cache at every step a row ends."""
        alive = rows.alive()
        tokens[rows.out, rows.count] = rows.nxt
        rows.count += alive
        done = self.finished(rows.nxt, rows.count, alive)
        if bool(done.any()):
            rows.out = rows.out.masked_fill(done, -1)
            alive &= ~done
        rows.live = int(alive.sum())
        if not rows.live:
            return None
        if len(rows) - rows.live >= max(1, len(rows) // COMPACT_FRACTION):
            rows = rows.compacted()
        return rows

    def advance(self, rows: Optional[LiveRows], tokens: torch.Tensor, bucket_rows: int, whole: bool) -> None:
        """Decode one bucket's recorded rows until none is left (``whole``: every layer sees every position)."""
        while rows is not None:
            rows.mask = torch.cat([rows.mask, rows.mask.new_ones(len(rows), 1)], 1)
            # with full attention the last query sees exactly its row's unpadded columns
            mask = rows.mask.bool()[:, None, None, :] if whole and self.step is not None else rows.mask
            logits = self.step_logits(rows.nxt[:, None], mask, rows.pos[:, None], rows.cache)
            rows.pos = rows.pos + 1
            rows.nxt = self.choose(logits, rows, bucket_rows)
            rows = self.record(rows, tokens)

    def run(self, buckets: List[List[Sequence[int]]], batch_size: int,
            on_bucket: Callable[[int], None] = lambda rows: None) -> List[List[int]]:
        """Generated token ids (up to and including EOS): ``samples`` rows per prompt, buckets in order;
        ``on_bucket`` hears each bucket's prompt count once all its rows are decoding or done."""
        total = sum(len(b) for b in buckets) * self.samples
        # one scratch row (index -1) and column past the last for rows that finished
        tokens = torch.full((total + 1, self.max_new_tokens + 1), -1, dtype=torch.long, device=self.device)
        limit = max((len(p) for b in buckets for p in b), default=0) + self.max_new_tokens
        whole = bool(buckets) and full_attention(self.model.config, limit)
        if self.share_slots and whole:
            SlotSchedule(self, batch_size, limit).run(buckets, tokens, on_bucket)
        else:
            start = 0
            for bucket in buckets:
                size = len(bucket) * self.samples
                rows = self.prefill(bucket, torch.arange(start, start + size), size)
                start += size
                self.advance(self.record(rows, tokens), tokens, size, whole)
                on_bucket(len(bucket))
        rows_out = tokens[:-1].tolist()
        return [[t for t in row if t >= 0] for row in rows_out]
