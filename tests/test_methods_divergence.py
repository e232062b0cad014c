"""WGA, SatImp, CE-U and UNDIAL on a tiny Llama: forget NLL rises, every weight trains, configs bind."""

import pytest
import torch
from omegaconf import OmegaConf

from _method_fixtures import Harness, changed, mean_nll, snapshot
from unlearn_cli.binding import bind
from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.losses import undial_loss, unlikelihood_loss
from unlearn_cli.methods.ceu import CEU
from unlearn_cli.methods.satimp import SatImp
from unlearn_cli.methods.undial import UNDIAL
from unlearn_cli.methods.wga import WGA
from unlearn_cli.registry import METHODS

@pytest.mark.parametrize("name", METHODS.names())
def test_yaml_binds_and_is_described(name):
    path = f"conf/method/{name}.yaml"
    first = next(line for line in open(path) if not line.startswith("# @package"))
    assert first.startswith("# ") and len(first.strip()) > 10
    cfg = OmegaConf.load(path)
    cfg = cfg.method if "method" in cfg else cfg  # a _global_ method file also carries loop defaults
    assert cfg.name == name
    cls = METHODS.get(name)
    method = cls(**bind(cls, cfg, "method"))
    assert isinstance(method.needs_reference, bool) and isinstance(method.needs_retain, bool)
    assert "arXiv" in cls.__doc__


@pytest.mark.parametrize("make", [
    lambda: WGA(beta=1.0, retain_weight=0.0),
    lambda: SatImp(beta1=1.0, beta2=1.0, retain_weight=0.0),
    lambda: CEU(retain_weight=0.0),
    lambda: UNDIAL(beta=10.0, retain_weight=0.0),
])
def test_forget_nll_rises(make):
    method = make()
    h = Harness(method)
    forget = h.full("forget")
    before, start = snapshot(h.model), mean_nll(h.model, forget)
    h.run(6)
    assert mean_nll(h.model, forget) > start + 0.05
    assert len(changed(h.model, before)) == len(before)  # full fine-tuning


@pytest.mark.parametrize("make", [
    lambda: WGA(retain_loss="kl"), lambda: SatImp(retain_loss="kl"), lambda: CEU(retain_weight=1.0, retain_loss="kl"),
    lambda: UNDIAL(retain_weight=1.0, retain_loss="kl"),
])
def test_kl_retain_variant_runs(make):
    method = make()
    assert method.needs_reference and method.needs_retain
    h = Harness(method)
    loss, logs = h.step()
    assert torch.isfinite(torch.tensor(loss)) and float(logs["retain_loss"]) == pytest.approx(0.0, abs=1e-5)


def test_retain_weight_zero_drops_retain():
    for method in (WGA(retain_weight=0.0), CEU(retain_weight=0.0), SatImp(retain_weight=0.0)):
        assert not method.needs_retain and not method.needs_reference
    assert not CEU().needs_retain and not UNDIAL().needs_retain  # the reference configurations: forget term only


def test_ceu_skips_each_answers_first_token():
    h = Harness(CEU())
    f = h.batch()["forget"]
    terms, _ = CEU().loss(h.model, {"forget": f})
    with torch.no_grad():
        logits = h.model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
    labels = f["labels"].clone()
    for row in labels:  # by hand: the first supervised position of every row
        row[(row != -100).nonzero()[0]] = -100
    assert terms["forget"].item() == pytest.approx(float(unlikelihood_loss(logits, labels)), rel=1e-6)
    assert terms["forget"].item() != pytest.approx(float(unlikelihood_loss(logits, f["labels"])), rel=1e-6)


def test_undial_at_theta0_matches_distillation_to_adjusted_own_logits():
    method = UNDIAL(beta=4.0, retain_weight=0.0)
    h = Harness(method)
    batch = h.batch()
    terms, _ = method.loss(h.model, batch, h.reference)
    loss = terms["forget"]
    with torch.no_grad():
        f = batch["forget"]
        logits = h.model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
    assert float(loss.detach()) == pytest.approx(float(undial_loss(logits, logits, f["labels"], 4.0)), rel=1e-5)


@pytest.mark.parametrize("section", [{"name": "wga", "beta": -1.0}, {"name": "satimp", "beta2": -0.5},
                                     {"name": "undial", "beta": -2.0}])
def test_bad_hyperparameters(section):
    key = next(k for k in section if k != "name")
    with pytest.raises(UserError, match=rf"method\.{key}=-[0-9.]+: must be"):
        make(METHODS, section, "method")
