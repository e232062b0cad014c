"""Binding a composed config into a Plan: instances keyed by id, nested component sections, run settings."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from unlearn_cli import components
from unlearn_cli.cli import conf_dir
from unlearn_cli.errors import UserError
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.optimizers.sgd import SGD


def plan(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return components.build(cfg)


def test_the_default_plan():
    p = plan()
    c, s = p.components, p.settings
    assert list(c.attacks) == ["relearn"] and c.plugins == {}
    assert list(c.metrics) == ["qa_acc", "answer_prob", "rouge_l"]
    relearn = c.attacks["relearn"]
    assert isinstance(relearn.optimizer, AdamW) and relearn.optimizer.betas == (0.9, 0.98)  # the attack's own
    assert s.seed == 0 and s.skip == frozenset() and s.runs("unlearn") and s.checkpoint_every == 0
    assert s.run_name.startswith("fictional-simnpo-adamw-seed0-") and s.run_dir.name == s.run_name
    assert s.config["method"]["name"] == "simnpo"


def test_two_budgets_of_one_attack_are_two_instances():
    p = plan("+attack.relearn_2={name: relearn, steps: 2}", "attack.relearn.optimizer.name=sgd",
             "~attack.relearn.optimizer.betas", "~attack.relearn.optimizer.eps")
    attacks = p.components.attacks
    assert list(attacks) == ["relearn", "relearn_2"]
    assert attacks["relearn_2"].settings.steps == 2 and attacks["relearn"].settings.steps == 10
    assert isinstance(attacks["relearn"].optimizer, SGD) and isinstance(attacks["relearn_2"].optimizer, AdamW)


def test_a_metric_instance_takes_its_name_from_the_id_unless_given():
    p = plan("+eval.metrics.retain_only={name: qa_acc, splits: [retain]}")
    metrics = p.components.metrics
    assert metrics["retain_only"].registry_name == "qa_acc" and metrics["retain_only"].splits == ["retain"]


@pytest.mark.parametrize("overrides,message", [
    (["+attack.relearn.optimizer.nme=adamw"], "unknown hyperparameter 'attack.relearn.optimizer.nme'"),
    (["attack.relearn.optimizer=adamw"], "attack.relearn.optimizer must be a mapping with the optimizer's 'name'"),
    (["attack.relearn.optimizer.name=adamx"], "unknown optimizer 'adamx'; did you mean 'adamw'?"),
    (["+attack.unlearned={name: relearn}"], "attack id 'unlearned' is a stage name of its own"),
    (["+attack.worst={name: relearn}"], "attack id 'worst' is a stage name of its own"),
    (["+attack.relearn_2={name: relearnn}"], "unknown attack 'relearnn'"),
    (["+eval.metrics.x={name: qa_ac}"], "unknown metric 'qa_ac'"),
    (["checkpoint_every=abc"], "checkpoint_every='abc': expected int >= 0 for the run settings"),
    (["threads=two"], "threads='two': expected"),
    (["plugin=[salun]", "plugin.salun.sparsity=0"], "plugin.salun.sparsity=0: must be in (0, 1]"),
    (["plugin=[salun]", "distributed=zero2"], "plugin 'salun' cannot run under DeepSpeed"),
])
def test_bad_sections_fail_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(UserError) as err:
        plan(*overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("split,steps", [("forget01", 2), ("forget10", 13)])
def test_tofu_warms_up_for_one_epoch_of_its_own_forget_split(split, steps):
    """TOFU's recipe: a linear warm-up of one epoch -- 13 steps for forget10 (400 items / 32), 2 for forget01."""
    import torch

    from unlearn_cli.data.benchmarks.tofu import Tofu
    from unlearn_cli.train.settings import make_scheduler, steps_per_epoch, total_steps
    settings = plan("benchmark=tofu", f"benchmark.split={split}").components.unlearn
    n = len(Tofu(split=split).load().train["forget"])
    per_epoch = steps_per_epoch(settings, n, settings.batch_size)
    assert per_epoch == steps and settings.warmup_epochs == 1 and settings.warmup_steps == 0
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    sched = make_scheduler(opt, settings, total_steps(settings, n, settings.batch_size), per_epoch)
    lrs = []
    for _ in range(steps + 2):
        lrs.append(sched.get_last_lr()[0] / settings.lr)
        opt.step()
        sched.step()
    assert lrs[:steps] == pytest.approx([(i + 1) / steps for i in range(steps)])  # linear warm-up ...
    assert lrs[steps] == 1.0 and lrs[steps + 1] < 1.0  # ... to the peak, then the linear decay


def test_warmup_steps_and_epochs_exclude_each_other():
    with pytest.raises(UserError, match="set warmup_steps or warmup_epochs, not both"):
        plan("benchmark=tofu", "unlearn.warmup_steps=5")


@pytest.mark.parametrize("method", ["rmu", "adaptive_rmu"])
def test_rmu_does_not_clip_gradients_unless_asked(method):
    """The official RMU code trains without gradient clipping; the method's YAML says so for every benchmark."""
    assert plan(f"method={method}", "benchmark=wmdp_bio").components.unlearn.max_grad_norm is None
    assert plan(f"method={method}").components.unlearn.max_grad_norm is None
    assert plan(f"method={method}", "unlearn.max_grad_norm=0.5").components.unlearn.max_grad_norm == 0.5
    assert plan("method=npo").components.unlearn.max_grad_norm == 1.0


@pytest.mark.parametrize("split,beta,w_f", [("forget01", 2.5, 0.1375), ("forget05", 2.5, 0.1375),
                                            ("forget10", 4.5, 0.125)])
def test_simnpo_takes_the_papers_settings_for_each_tofu_split(split, beta, w_f):
    method = plan("benchmark=tofu", "method=simnpo", f"benchmark.split={split}").components.method
    assert (method.beta, method.forget_weight) == (beta, w_f)


def test_simnpo_on_muse_takes_the_corpus_beta():
    assert plan("benchmark=muse", "method=simnpo").components.method.beta == 0.7
