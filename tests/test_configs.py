"""Every YAML of every config group composes and binds to its constructor's signature."""


import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from unlearn_cli import components
from unlearn_cli.cli import GROUPS, conf_dir
from unlearn_cli.errors import UserError
from unlearn_cli.models.build import check_paths
from unlearn_cli.registry import ALL

CONF = conf_dir()
REGISTRY_GROUPS = {"method": "method", "optimizer": "optimizer", "attack": "attack", "logger": "logger",
                   "benchmark": "benchmark", "plugin": "plugin"}


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


POINTS = [(g, o) for g in GROUPS for o in _options(g)]


@pytest.mark.parametrize("group,option", POINTS, ids=[f"{g}={o}" for g, o in POINTS])
def test_group_option_composes_and_binds(group, option):
    extra = ["model.path=/some/checkpoint"] if (group, option) == ("model", "hf") else []  # the one required key
    cfg = _compose([f"{group}=[{option}]" if group in ("attack", "plugin") else f"{group}={option}", *extra])
    built = components.build(cfg).components
    assert built.method is not None and built.metrics
    if group == "plugin":
        assert list(built.plugins) == [option] and built.plugins[option].registry_name == option
    if group in REGISTRY_GROUPS and group not in ("attack", "plugin"):
        section = cfg.benchmark if group == "benchmark" else cfg[group]
        assert section.name == option, f"{group}/{option}.yaml must have name: {option}"


@pytest.mark.parametrize("tuning", _options("tuning"))
def test_tuning_files_name_existing_benchmark_and_method(tuning):
    benchmarks, methods = _options("benchmark"), _options("method")
    match = [(b, m) for b in benchmarks for m in methods if f"{b}_{m}" == tuning]
    assert match, f"tuning/{tuning}.yaml matches no <benchmark>_<method> pair"
    bench, method = match[0]
    cfg = _compose([f"benchmark={bench}", f"method={method}"])
    components.build(cfg)


def test_every_registry_entry_has_a_yaml_and_vice_versa():
    for group, kind in REGISTRY_GROUPS.items():
        names = set(ALL[kind].names())
        assert names == set(_options(group)), f"{group}: registry {sorted(names)} vs YAML {_options(group)}"


def test_every_registered_metric_is_documented():
    for kind, registry in ALL.items():
        for name, doc in registry.describe():
            assert doc, f"{kind} '{name}' has no docstring"


def test_the_default_preset_takes_a_checkpoint_only_with_kind_pretrained():
    built = components.build(_compose(["model.kind=pretrained", "model.path=/ckpt/target",
                                       "model.oracle_path=/ckpt/retain90"])).components
    assert (built.model.kind, built.model.path, built.model.oracle_path) == ("pretrained", "/ckpt/target",
                                                                            "/ckpt/retain90")
    with pytest.raises(UserError, match=r"^model.oracle_path is read only with model.kind=pretrained"):
        components.build(_compose(["model.oracle_path=/ckpt/retain90"]))
    with pytest.raises(UserError, match=r"^model.path=3: expected str or null for 'model'$"):
        components.build(_compose(["model.path=3"]))


def test_a_hub_id_is_left_to_the_loader_and_a_missing_local_path_is_refused(tmp_path, monkeypatch):
    """The presets' hub ids (``namespace/name``) pass the path check, which a check for a path separator refused;
    a local path that is not there is one line naming the setting."""
    import re

    from unlearn_cli.errors import check_local_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    for present in ("gpt2", "locuslab/tofu_ft_llama2-7b", "HuggingFaceH4/zephyr-7b-beta", "runs/a", str(tmp_path)):
        check_local_path("model.path", present)
    for missing in (str(tmp_path / "nope"), "./nope", "../nope", "~/nope", "runs/a/model"):
        with pytest.raises(UserError, match=rf"^model.oracle_path '{re.escape(missing)}' does not exist$"):
            check_local_path("model.oracle_path", missing)
    for name in ("llama2_7b_tofu", "zephyr_7b_beta", "muse_news_target"):
        spec = components.build(_compose([f"model={name}"])).components.model
        check_paths(spec)  # the presets validate as they are
