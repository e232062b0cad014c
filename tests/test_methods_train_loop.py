"""Every added method runs two steps of the real training loop (bf16 autocast, clipping, logging)."""

import pytest
import torch
from omegaconf import OmegaConf

from _method_fixtures import Harness
from unlearn_cli.binding import bind
from unlearn_cli.registry import METHODS
from unlearn_cli.train.loop import BatchStream, TrainSettings, train

SMALL = {"rmu": {"layer": 1}, "adaptive_rmu": {"layer": 1}, "rr": {"layers": [1, 2], "trainable_layers": [1, 2]}}


@pytest.mark.parametrize("name", ["wga", "satimp", "ceu", "undial", "rmu", "adaptive_rmu", "rr",
                                  "idk_nll", "idk_dpo", "dpo", "kto"])
def test_two_steps_in_training_loop(name):
    cfg = OmegaConf.merge(OmegaConf.load(f"conf/method/{name}.yaml"), SMALL.get(name, {}))
    cls = METHODS.get(name)
    method = cls(**bind(cls, cfg, "method"))
    h = Harness(method)
    extra = [k for k in h.splits if k not in ("forget", "retain")]
    sizes = {k: 4 for k in ("forget", "retain") if k in h.splits}
    stream = BatchStream(h.splits, sizes, h.pad_id, 0, aligned={k: "forget" for k in extra})
    settings = TrainSettings(lr=1e-4, precision="bf16", batch_size=4, retain_batch_size=4)
    logged = []
    last = train(h.model, lambda m, b: method.loss(m, b, h.reference), stream, h.optimizer, settings, 2,
                 stage="unlearn", log=lambda stage, step, values: logged.append(values), device=torch.device("cpu"))
    assert len(logged) == 2 and all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert "forget_loss" in last
