"""What an attack may use from the run (no optimizer: an attack that trains configures its own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from unlearn_cli.data.encoding import EncodedQA


@dataclass
class AttackContext:
    """The run's encoded training splits and tokenizer, the attack stage's seed, device and step log; ``encode(items)``
    tokenises other QA items in the run's prompt format (data an attack brings along)."""

    train_encoded: Dict[str, EncodedQA]
    tokenizer: object
    seed: int
    pad_id: int
    device: torch.device
    log: Callable[[str, int, dict], None]
    stage: str
    encode: Optional[Callable] = None
