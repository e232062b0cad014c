"""Smoke tests parametrised over the registries (a new component is covered the moment it registers).

Methods and optimizers: a few steps through the pipeline's own setup (``train.unlearn.build``) and the
loop's closure on the tiny model -- the objective on the batch it trained on goes down, every trainable
parameter changes, frozen ones and the reference theta_0 do not. Attacks: the contract (weights change iff
``changes_weights``, a prompt view or None). Metrics: finite, deterministic values through the
evaluation suite, baselines read from the oracle stage. Plug-ins: they run with a method and clean up.
"""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from _method_fixtures import CPU, FORMAT, Harness, changed, data_and_tokenizer, encode, snapshot, tiny_model
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.components import make
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.suite import EvalSuite
from unlearn_cli.eval.views import PromptView
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.methods.rmu import RMU
from unlearn_cli.registry import ATTACKS, METHODS, METRICS, OPTIMIZERS, PLUGINS
from unlearn_cli.train.loop import sum_terms

CONF = Path(__file__).resolve().parent.parent / "conf"


def _yaml(group: str, name: str) -> dict:
    """The option's YAML, resolved as inside a run with seed 0 (a key may follow the run seed: ``${seed}``)."""
    root = OmegaConf.create({"seed": 0, "section": OmegaConf.load(CONF / group / f"{name}.yaml")})
    return OmegaConf.to_container(root, resolve=True)["section"]


def _method(name: str):
    """The method's YAML with the fictional tuning's method settings (layer indices that fit a tiny model)."""
    section = _yaml("method", name)
    section = section.get("method", section)  # a _global_ method file also carries loop defaults
    tuning = CONF / "tuning" / f"fictional_{name}.yaml"
    if tuning.exists():
        section.update(OmegaConf.to_container(OmegaConf.load(tuning)).get("method") or {})
    return make(METHODS, section, "method")


def _reached(h: Harness, batch) -> set:
    """Trainable parameters that the objective's gradient reaches on ``batch``."""
    h.model.zero_grad(set_to_none=True)
    h.objective(batch).backward()
    out = {n for n, p in h.model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    h.model.zero_grad(set_to_none=True)
    return out


def _descends_and_moves_only_trainable(h: Harness, steps: int = 5):
    batch = h.batch()
    trainable = {n for n, p in h.model.named_parameters() if p.requires_grad}
    reached = _reached(h, batch)
    before = snapshot(h.model)
    kept = h.reference is not None and h.reference.model is not None  # released when only its cache is read
    theta0 = snapshot(h.reference.model) if kept else {}
    with torch.no_grad():
        start = float(h.objective(batch))
    for _ in range(steps):
        h.step(batch)
    with torch.no_grad():
        end = float(h.objective(batch))
    assert reached and reached <= trainable
    if not h.method.needs_hooks:  # a loss on the LM's outputs reaches every trainable weight
        assert reached == trainable
    assert changed(h.model, before) == reached  # every reached tensor moved; no frozen or unreached one did
    if kept:
        assert changed(h.reference.model, theta0) == set()  # theta_0 stays theta_0
    assert end < start, f"objective on its own batch rose from {start} to {end}"
    return batch


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_through_the_pipeline_setup(name):
    method = _method(name)
    h = Harness(method, lr=1e-4)  # small steps: the objective on the batch must go down
    batch = _descends_and_moves_only_trainable(h)
    state = method.state_dict()
    terms, logs = method.loss(h.model, batch, h.reference)
    method.load_state_dict(state)
    assert "forget" in terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert "retain" not in terms or method.needs_retain  # a retain term implies retain batches
    assert ("retain" in batch) == method.needs_retain
    assert all(not v.requires_grad for v in logs.values())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_updates_exactly_the_trainable_weights(name):
    spec = make(OPTIMIZERS, _yaml("optimizer", name), "optimizer")
    method = RMU(layer=1, trainable_layers=[0, 1], steering_coeff=20.0, alpha=10.0, mask_padding=True)
    h = Harness(method, optimizer=spec, lr=1e-2)
    _descends_and_moves_only_trainable(h)
    assert isinstance(spec.build([torch.nn.Parameter(torch.zeros(2))], 0.1), torch.optim.Optimizer)


def _ctx():
    data, tok = data_and_tokenizer()
    train_encoded = {k: encode(v) for k, v in data.train.items()}
    return AttackContext(train_encoded, tok, 0, tok.pad_token_id, CPU, lambda *a: None, "attack smoke", encode=encode,
                         train_items=data.train, forget_splits=("forget", "forget_paraphrase"))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_keeps_its_contract(name):
    attack = make(ATTACKS, _yaml("attack", name), f"attack.{name}")
    torch.manual_seed(0)
    model = tiny_model()
    before = snapshot(model)
    out, view = attack.apply(_ctx(), model)
    assert isinstance(out, torch.nn.Module)
    assert view is None or isinstance(view, PromptView)
    moved = changed(out, before)
    if attack.changes_weights:
        assert moved, "a weight attack moves the weights"
    else:
        assert out is model and moved == set()


SMOKE_METRICS = {  # settings on the fictional benchmark's splits; a new metric adds its entry here
    "answer_prob": {},
    "forget_quality": {"split": "forget"},
    "knowmem": {"splits": ["forget"], "icl": {"forget": "retain"}, "max_new_tokens": 4},
    "leak_at_k": {"splits": ["forget"], "n": 4, "ks": [1, 4], "judge": "contains", "max_items": 4,
                  "max_new_tokens": 4},
    "mcq_acc": {"splits": None},
    "mia_auc": {"members": "forget", "nonmembers": "holdout", "attacks": ["loss", "zlib", "min_k", "min_k_pp",
                                                                         "gradnorm"]},
    "exact_memorization": {"splits": ["forget", "retain"]},
    "extraction_strength": {"splits": ["forget", "retain"]},
    "model_utility": {"splits": ["retain", "holdout"], "normalised_splits": ["holdout"]},
    "norm_prob": {"splits": ["holdout"]},
    "open_qa": {"splits": ["forget"]},
    "privleak": {"members": "forget_bios", "nonmembers": "holdout_bios"},
    "qa_acc": {},
    "rouge_l": {},
    "truth_ratio": {"splits": ["forget", "retain"]},
    "verbmem": {"splits": ["forget"], "max_new_tokens": 4},
    "trace_detection": {},
}


def _suite(name):
    data, tok = data_and_tokenizer()
    inputs = EvalInputs(tok, FORMAT, {k: v[:12] for k, v in data.qa.items()},
                        {k: v[:12] for k, v in data.mcq.items()}, {k: v[:12] for k, v in data.texts.items()})
    metric = make(METRICS, {"name": name, **SMOKE_METRICS[name]}, f"eval.metrics.{name}")
    return EvalSuite({name: metric}, inputs, DecodeSettings(batch_size=64, max_new_tokens=8), "fictional"), metric


def test_every_metric_has_smoke_settings():
    assert set(SMOKE_METRICS) == set(METRICS.names())


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_is_finite_deterministic_and_reads_its_baseline(name):
    null = __import__("contextlib").nullcontext
    a, b = tiny_model(0).eval(), tiny_model(1).eval()
    suite, metric = _suite(name)
    # a metric comparing with the target has values at the stages after it; the others at every stage
    first, second = ("target", "unlearned") if metric.baseline == "target" else ("oracle", "target")
    earlier = suite.evaluate(first, a, null).values
    result = suite.evaluate(second, b, null)
    later = result.values
    assert result.examples and all(isinstance(r["index"], int) for r in result.examples)
    assert later and (set(earlier) == set(later) or (metric.baseline == "target" and not earlier))
    assert all(v == v and abs(v) != float("inf") for v in {**earlier, **later}.values())
    fresh = _suite(name)[0]
    assert fresh.evaluate(first, a, null).values == earlier  # a fresh scorer computes the same numbers
    assert fresh.evaluate(second, b, null).values == later
    if metric.baseline is not None:
        alone = _suite(name)[0].evaluate(second, b, null).values  # no baseline stage in this suite
        assert alone != later, f"the {second} stage's values must depend on the {metric.baseline}'s"


@pytest.mark.parametrize("name", PLUGINS.names())
def test_plugin_runs_with_a_method_and_cleans_up(name):
    plugin = make(PLUGINS, _yaml("plugin", name), f"plugin.{name}")
    h = Harness(GradientAscent(), plugins={name: plugin})
    for _ in range(2):
        loss, _ = h.step()
        assert loss == loss
    assert isinstance(plugin.summary(), dict)
    h.u.close()
    assert all(p.requires_grad for p in h.model.parameters())
    batch = h.batch()
    fresh = tiny_model()
    fresh.load_state_dict(h.model.state_dict())
    for model in (h.model, fresh):
        model.zero_grad(set_to_none=True)
        sum_terms(GradientAscent().loss(model, batch)[0]).backward()
    for (n, p), q in zip(h.model.named_parameters(), fresh.parameters()):
        assert torch.equal(p.grad, q.grad), f"{n}: a plug-in hook is still installed"


@pytest.mark.parametrize("kind", sorted(__import__("unlearn_cli.registry", fromlist=["ALL"]).ALL))
def test_the_source_read_summaries_list_what_registering_finds(kind):
    """`unlearn list` reads names and first docstring lines from the source (no torch import); they must be what
    importing the modules registers."""
    from unlearn_cli.registry import ALL
    assert ALL[kind].summaries() == ALL[kind].describe()
