"""Seeds: one global seed per run, offset per stage so that stages do not share random streams."""

import random

import numpy as np
import torch

STAGE_SEEDS = {"unlearn": 1, "attack": 2}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
