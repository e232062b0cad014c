"""Step batches: one shuffled mini-batch per named split, reproducible and resumable."""

from __future__ import annotations

from typing import Dict, Iterator, Optional

import torch

from unlearn_cli.data.encoding import EncodedQA


class BatchStream:
    """Infinite stream of step batches: one mini-batch per named split, each reshuffled per epoch.

    ``sizes`` maps split name to batch size; the seeded generator makes the stream reproducible.
    ``aligned`` maps a split to a primary split whose indices it reuses, for index-aligned views
    of the same examples (e.g. forget questions with refusal answers next to the true answers).
    ``shard=(rank, world)`` keeps rows ``rank::world`` of each global batch.
    """

    def __init__(self, splits: Dict[str, EncodedQA], sizes: Dict[str, int], pad_id: int, seed: int,
                 aligned: Optional[Dict[str, str]] = None, shard: tuple = (0, 1)):
        self.aligned = dict(aligned or {})
        for name, primary in self.aligned.items():
            if len(splits[name]) != len(splits[primary]):
                raise ValueError(f"split '{name}' must be index-aligned with '{primary}'")
        self.splits = splits
        self.sizes = {k: min(sizes[k], len(v)) for k, v in splits.items() if k not in self.aligned}
        self.pad_id = pad_id
        self.gen = torch.Generator().manual_seed(seed)
        self._orders = {k: [] for k in self.sizes}
        self.rank, self.world = shard

    def _take(self, name: str):
        order = self._orders[name]
        need = self.sizes[name]
        while len(order) < need:
            order.extend(torch.randperm(len(self.splits[name]), generator=self.gen).tolist())
        idx, self._orders[name] = order[:need], order[need:]
        return idx

    def state_dict(self) -> dict:
        """Position in the stream: pending shuffle orders and the generator state."""
        return {"orders": {k: list(v) for k, v in self._orders.items()}, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._orders = {k: list(v) for k, v in state["orders"].items()}
        self.gen.set_state(state["gen"])

    def __iter__(self) -> Iterator[Dict[str, Dict[str, torch.Tensor]]]:
        while True:
            # every rank draws the same global batch, then keeps its rows (data parallelism)
            idx = {k: self._take(k)[self.rank::self.world] for k in self.sizes}
            idx.update({k: idx[p] for k, p in self.aligned.items()})
            yield {k: self.splits[k].batch(idx[k], self.pad_id) for k in self.splits}


def to_device(batch, dev):
    """A (nested) batch dict with every tensor on ``dev``."""
    return {k: (to_device(v, dev) if isinstance(v, dict) else v.to(dev)) for k, v in batch.items()}
