"""Continuous batching for the native decoding loop: a fixed number of slots, refilled as rows finish.

A decode step costs far from in proportion to its rows: on a 57 M-parameter Llama on 2 CPU threads a step
of 16 rows costs half of a step of 64, so a batch that empties as its rows stop wastes most of what dropping
them saves (more so on a GPU, where a decode step is bound by reading the weights). Here the batch stays
full. Each length bucket is prefilled exactly as ``model.generate`` prefills it; its rows then
wait, with their first token chosen, and take the slot of a row that emitted EOS or its last token, so a
decode step computes ``batch_size`` rows until the last bucket's rows are running out.

Every slot holds one sequence from column 0 of its cache (no padding): a slot's next token is written at
the column equal to its length, which is also the token's position id (``generate``'s position ids skip
left padding, so they are the same). Attention sees the columns up to the longest live row; a row's columns
past its own length are masked, so each row attends to exactly its own tokens. Tokens equal
``generate``'s per-bucket greedy tokens and seeded ``per_row`` samples equal the bucket-by-bucket loop's
(tested); float sums over a differently padded row may round differently, which has not changed a token in
the tests or the bench.

Needs every layer to see the whole sequence: full attention, or a sliding window at least as long as the
longest prompt plus the continuation. The bucket-by-bucket loop in ``eval.kv_decode`` serves shorter windows,
and ``generate``'s own sampling stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

COMPACT_FRACTION = 8  # finished rows leave the batch once they are 1/8 of it (here: once no row waits)


class SlotLayer(DynamicLayer):
    """A full-attention cache layer of ``rows`` slots, each holding one sequence from column 0.

    ``place`` writes waiting rows' prompt caches into free slots. Before each forward the decoder sets ``at``
    (the write column of each slot computed: a prefix) and ``columns`` (``arange`` of the columns attention
    sees); ``update`` then writes each slot's new key and value at its own column.

    The buffers hold ``limit`` columns (the longest prompt plus the continuation: what ``generate``'s cache
    reaches at worst) and are never reallocated. They are allocated uninitialised and zeroed column by column
    as attention first reaches a column, so every column attention reads holds a real or a stale key (or
    zero), never garbage, and on a CPU only the pages of the columns reached so far become resident: memory
    follows the longest live row. Reallocating to grow would copy the cache and, on glibc, leave hundreds of
    MiB of freed heap resident."""

    def __init__(self, rows: int, limit: int):
        super().__init__()
        self.rows, self.limit = rows, limit
        self.at = self.columns = None
        self.zeroed = 0  # columns [0, zeroed) of every slot hold no garbage
        self._rows = torch.arange(rows)

    def reserve(self, columns: int) -> None:
        """Make columns ``[0, columns)`` of every slot safe to read (zero where never written)."""
        if columns > self.limit:
            raise RuntimeError(f"SlotLayer holds at most {self.limit} positions; {columns} were needed")
        if columns > self.zeroed:
            self._keys[:, :, self.zeroed:columns].zero_()
            self._values[:, :, self.zeroed:columns].zero_()
            self.zeroed = columns

    def place(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Rows' caches, aligned at column 0 (``keys``: (rows, heads, columns, dim)), into ``slots``."""
        if not self.is_initialized:
            self._keys = keys.new_empty(self.rows, keys.shape[1], self.limit, keys.shape[-1])
            self._values = values.new_empty(self.rows, values.shape[1], self.limit, values.shape[-1])
            self._rows = self._rows.to(keys.device)
            self.device, self.is_initialized = keys.device, True
        self.reserve(keys.shape[2])
        self._keys[slots, :, :keys.shape[2]] = keys
        self._values[slots, :, :values.shape[2]] = values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, width = key_states.shape[0], self.columns.shape[0]  # the slots computed, the columns attention sees
        rows = self._rows[:n]
        self._keys[rows, :, self.at] = key_states[:, :, -1]
        self._values[rows, :, self.at] = value_states[:, :, -1]
        self.keys = self._keys[:n, :, :width]
        self.values = self._values[:n, :, :width]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return max(self.columns.shape[0] - 1, 0) if self.columns is not None else 0

    def move(self, source: torch.Tensor, target: torch.Tensor, columns: int) -> None:
        """Copy the first ``columns`` columns of slots ``source`` into slots ``target``."""
        self._keys[target, :, :columns] = self._keys[source, :, :columns]
        self._values[target, :, :columns] = self._values[source, :, :columns]


_TRIM = None  # glibc's malloc_trim once looked up; False where there is none


def return_freed_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    A bucket's prefill allocates its per-layer caches and activations on the heap (each below glibc's mmap
    threshold); once they are freed, glibc keeps the pages resident. Measured on the bench's 57 M stand-in:
    140 MiB of the native loop's peak, which a trim per bucket (about a millisecond) returns."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util
        import sys
        name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
        try:
            _TRIM = ctypes.CDLL(name).malloc_trim if name else False
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            _TRIM = False
    if _TRIM:
        _TRIM(0)


def full_attention(config, limit: int) -> bool:
    """Whether every layer of ``config`` attends to all of a sequence of up to ``limit`` tokens (what slots
    hold): full-attention layers, and sliding-window layers whose window is at least ``limit`` (Mistral's
    4096-token window, say, never drops a position of a TOFU prompt and its answer)."""
    def whole(layer) -> bool:
        return type(layer) is DynamicLayer or (type(layer) is DynamicSlidingWindowLayer
                                               and layer.sliding_window >= limit)
    return all(whole(layer) for layer in DynamicCache(config=config).layers)


@dataclass
class Waiting:
    """A prefilled bucket's rows that have not taken a slot yet (first token chosen, not finished)."""

    keys: List[torch.Tensor]  # per layer: (prompts, heads, columns, dim), the bucket's left-padded prefill cache
    values: List[torch.Tensor]
    pad: torch.Tensor  # (prompts,) left padding of each prompt
    source: torch.Tensor  # (rows,) prompt of each row within the bucket (a prompt has ``samples`` rows)
    out: torch.Tensor  # (rows,) output row
    nxt: torch.Tensor  # (rows,) first token
    streams: Optional[list] = None
    taken: int = 0
    prompts: int = 0  # the bucket's prompt count, reported once all its rows have a slot

    def left(self) -> int:
        return len(self.out) - self.taken

    def shrink(self) -> None:
        """Drop the rows already taken, and the caches of prompts no row still waits for."""
        rest = slice(self.taken, None)
        prompts, source = torch.unique(self.source[rest], return_inverse=True)
        self.keys = [k[prompts] for k in self.keys]
        self.values = [v[prompts] for v in self.values]
        self.pad = self.pad[prompts]
        self.source, self.out, self.nxt = source, self.out[rest], self.nxt[rest]
        self.streams = self.streams[rest] if self.streams is not None else None
        self.taken = 0


@dataclass
class Slots:
    """The batch: per-slot state of the active prefix of a ``SlotLayer`` cache."""

    cache: DynamicCache
    out: torch.Tensor  # (slots,) output row; -1: finished or never filled
    nxt: torch.Tensor  # (slots,) the token fed next
    at: torch.Tensor  # (slots,) its column and position id
    count: torch.Tensor  # (slots,) tokens generated so far
    streams: list  # (slots,) per-row stream of each slot (per_row sampling), else None
    active: int = 0  # slots computed: a prefix
    live: int = 0  # rows among them still decoding

    def layers(self) -> List[SlotLayer]:
        return self.cache.layers


def aligned(states: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Rows of a left-padded cache tensor (rows, heads, columns, dim) with each row's tokens moved to column 0
    (its padding after them)."""
    width = states.shape[2]
    index = (torch.arange(width, device=states.device)[None] + pad[:, None]) % width
    return states.gather(2, index[:, None, :, None].expand(-1, states.shape[1], -1, states.shape[-1]))


class SlotSchedule:
    """Continuous batching over ``batch_size`` slots (see the module docstring) for a ``kv_decode.Decoder``:
    its ``prefill_forward`` (``generate``'s prefill of a bucket), ``step_logits`` (one decode step), ``choose`` (the token
    choice), ``samples`` (rows per prompt), ``streams`` (per-row streams), ``max_new_tokens`` and ``eos_id``."""

    def __init__(self, decoder, batch_size: int, limit: int):
        self.decoder = decoder
        self.batch_size = batch_size
        self.limit = limit
        self.sdpa = getattr(decoder.model.config, "_attn_implementation", None) == "sdpa"

    def run(self, buckets, tokens: torch.Tensor, on_bucket: Callable[[int], None]) -> None:
        dec = self.decoder
        dev = dec.device
        cache = DynamicCache(config=dec.model.config)
        cache.layers = [SlotLayer(self.batch_size, self.limit) for _ in cache.layers]
        none = torch.full((self.batch_size,), -1, dtype=torch.long, device=dev)
        slots = Slots(cache, none.clone(), none.clone(), none.clone(), torch.zeros_like(none),
                      [None] * self.batch_size)
        waiting: List[Waiting] = []
        start, queue = 0, list(buckets)
        while True:
            while queue and sum(w.left() for w in waiting) < self.batch_size - slots.live:
                bucket = queue.pop(0)
                group = self._prefill(bucket, start, tokens)
                if dec.device.type == "cpu":
                    return_freed_heap()
                start += len(bucket) * dec.samples
                if group.left():
                    waiting.append(group)
                else:
                    on_bucket(len(bucket))
            if waiting and slots.live < self.batch_size:
                waiting = self._fill(slots, waiting, on_bucket)
            if not slots.live:
                break
            if not waiting and not queue and slots.active - slots.live >= max(1, slots.active // COMPACT_FRACTION):
                self._compact(slots)
            self._step(slots, tokens)

    def _prefill(self, bucket, start: int, tokens: torch.Tensor) -> Waiting:
        dec = self.decoder
        n = dec.samples
        out = torch.arange(start, start + len(bucket) * n, device=dec.device)
        cache, mask, logits = dec.prefill_forward(bucket, DynamicCache(config=dec.model.config))
        keys, values = [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
        source = torch.arange(len(bucket), device=dec.device).repeat_interleave(n)
        streams = [dec.streams[i] for i in out.tolist()] if dec.streams is not None else None
        rows = _Rows(streams)
        nxt = dec.choose(logits.repeat_interleave(n, dim=0) if n > 1 else logits, rows, len(out))
        tokens[out, 0] = nxt
        first = torch.ones_like(out)
        idx = (~dec.finished(nxt, first, first.bool())).nonzero().flatten()
        return Waiting(keys, values, mask.shape[1] - mask.sum(1), source[idx], out[idx], nxt[idx],
                       [streams[i] for i in idx.tolist()] if streams is not None else None, prompts=len(bucket))

    def _fill(self, slots: Slots, waiting: List[Waiting], on_bucket) -> List[Waiting]:
        """Waiting rows into free slots (finished slots of the active prefix first), oldest bucket first."""
        free = (slots.out[:slots.active] < 0).nonzero().flatten().tolist()
        free += list(range(slots.active, self.batch_size))
        for group in waiting:
            if not free:
                break
            take = min(len(free), group.left())
            where = torch.tensor(free[:take], dtype=torch.long, device=slots.out.device)
            free = free[take:]
            pick = slice(group.taken, group.taken + take)
            source = group.source[pick]
            pad = group.pad[source]
            for layer, keys, values in zip(slots.layers(), group.keys, group.values):
                layer.place(where, aligned(keys[source], pad), aligned(values[source], pad))
            slots.out[where], slots.nxt[where] = group.out[pick], group.nxt[pick]
            slots.at[where] = group.keys[0].shape[2] - pad  # prompt length: column and position of the token fed next
            slots.count[where] = 1
            if group.streams is not None:
                for slot, stream in zip(where.tolist(), group.streams[pick]):
                    slots.streams[slot] = stream
            slots.active = max(slots.active, int(where.max()) + 1)
            slots.live += take
            group.taken += take
        still = []
        for group in waiting:
            if not group.left():
                on_bucket(group.prompts)
                continue
            if group.left() * 2 <= len(group.keys[0]) * self.decoder.samples:  # half its cache waits for nobody
                group.shrink()
            still.append(group)
        return still

    def _compact(self, slots: Slots) -> None:
        """The live rows into a prefix: the live rows past it move into its finished slots (a row's slot
        does not matter, its output row goes with it), so only those rows' caches are copied."""
        live = slots.out[:slots.active] >= 0
        count = int(live.sum())
        target = (~live[:count]).nonzero().flatten()
        source = live[count:].nonzero().flatten() + count
        columns = int(slots.at[source].max()) if len(source) else 0  # a row's columns before its next write
        for layer in slots.layers():
            layer.move(source, target, columns)
        for name in ("out", "nxt", "at", "count"):
            tensor = getattr(slots, name)
            tensor[target] = tensor[source]
        for t, s in zip(target.tolist(), source.tolist()):
            slots.streams[t] = slots.streams[s]
        slots.active = count

    def _step(self, slots: Slots, tokens: torch.Tensor) -> None:
        dec = self.decoder
        n = slots.active
        at = slots.at[:n]
        width = int(at.max()) + 1
        columns = torch.arange(width, device=at.device)
        for layer in slots.layers():
            layer.reserve(width)
            layer.at, layer.columns = at, columns
        mask = columns[None] <= at[:, None]
        # SDPA takes the boolean mask as it is (transformers would build the same one from the 2-D form each step)
        mask = mask[:, None, None, :] if self.sdpa else mask.long()
        logits = dec.step_logits(slots.nxt[:n, None], mask, at[:, None], slots.cache)
        nxt = dec.choose(logits, _Rows(slots.streams[:n]), n)
        out, count = slots.out[:n], slots.count[:n]
        alive = out >= 0
        tokens[out, count] = nxt
        count += alive
        at += alive
        done = dec.finished(nxt, count, alive)
        out.masked_fill_(done, -1)
        slots.nxt[:n] = nxt
        slots.live -= int(done.sum())


@dataclass
class _Rows:
    """What a token choice reads of the rows it chooses for (their per-row streams)."""

    streams: Optional[list]
