"""What an attack may use from the run (no optimizer: an attack that trains configures its own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from unlearn_cli.data.encoding import EncodedQA


@dataclass
class AttackContext:
    """The run's encoded training splits and tokenizer, the attack stage's seed, device and step log; ``encode(items)``
    tokenises other QA items in the run's prompt format (data an attack brings along); ``train_items`` are the raw
    training items (few-shot demonstrations), ``forget_splits`` the evaluation splits whose names start with one
    of the benchmark's ``forget_prefixes`` (what input attacks target)."""

    train_encoded: Dict[str, EncodedQA]
    tokenizer: object
    seed: int
    pad_id: int
    device: torch.device
    log: Callable[[str, int, dict], None]
    stage: str
    encode: Optional[Callable] = None
    train_items: Dict[str, List] = field(default_factory=dict)   # the raw training QA items by split
    forget_splits: Tuple[str, ...] = ()                            # the forget-side evaluation splits
