"""Turn a composed config into validated component objects and run settings (before anything runs).

Every section binds to its constructor's signature (``binding.bind``), so an unknown or mistyped
key, a wrong type or an unknown registry name fails here with one line, before any training. A
constructor parameter annotated with a component protocol (``contracts.OptimizerSpec``, ...) takes
a nested section with a ``name`` and is built from that kind's registry (an attack's optimizer, a
wrapper's base optimizer). Attacks, metrics and train plug-ins are instances keyed by id
(``attack.<id>``, ``eval.metrics.<id>``, ``plugin.<id>``) whose ``name`` defaults to the id.
After :func:`build` the pipeline reads only the returned :class:`Plan`, never the raw config.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional

from omegaconf import DictConfig, OmegaConf

from unlearn_cli import resolvers, rundir  # noqa: F401 - resolvers: registers ${pick:...} before any config resolves
from unlearn_cli.binding import bind, signature_params, to_plain
from unlearn_cli.bounds import NonNegativeInt, PositiveInt
from unlearn_cli.errors import UserError, suggest
from unlearn_cli.eval import stored
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.files import redact
from unlearn_cli.models.build import ModelSpec
from unlearn_cli.optimizers._wrapping import first_order_names
from unlearn_cli.registry import (ATTACKS, BENCHMARKS, BY_PROTOCOL, LOGGERS, METHODS, METRICS, OPTIMIZERS, PLUGINS,
                                  Registry)
from unlearn_cli.train.distributed import DistributedSpec
from unlearn_cli.train.settings import TrainSettings

STAGES = ("eval_target", "unlearn", "eval_unlearned", "attack", "eval_oracle")
RESERVED_STAGES = ("oracle", "target", "unlearned", "worst")
INSTANCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_@-]*$")


@dataclass
class PrepareSpec:
    """How target / oracle models are built (the ``prepare`` section): tiny models from scratch with
    ``train`` / ``optimizer``, a pretrained base (``finetune``) with ``finetune_train`` / ``finetune_optimizer``."""

    seed: int
    optimizer: Any
    train: TrainSettings
    recipe: dict  # the section as given: part of the prepared models' cache key
    finetune: bool = False
    finetune_train: Optional[TrainSettings] = None
    finetune_optimizer: Any = None


@dataclass
class Components:
    model: ModelSpec
    benchmark: Any
    method: Any
    optimizer: Any
    attacks: Dict[str, Any]
    metrics: Dict[str, Any]
    plugins: Dict[str, Any]
    decode: DecodeSettings
    unlearn: TrainSettings
    prepare: PrepareSpec
    logger: Any
    distributed: DistributedSpec = field(default_factory=DistributedSpec)


@dataclass
class RunOptions:
    """The top-level keys of ``conf/config.yaml`` (types checked like any section)."""

    seed: NonNegativeInt = 0
    output_root: str = "outputs"
    output_dir: Optional[str] = None
    overwrite: bool = False
    save_model: bool = False
    cache_dir: str = "~/.cache/unlearn_cli"
    cache_reference: bool = True
    cache_eval: bool = True
    progress: bool = True
    threads: Optional[PositiveInt] = None
    sweep_name: str = "sweep"
    checkpoint_every: NonNegativeInt = 0
    skip: List[str] = ()
    oracle_results: Optional[str] = None


@dataclass
class PrepareOptions:
    """The ``prepare`` section's own keys (its optimizers and loops bind to their own types)."""

    seed: NonNegativeInt = 0
    finetune: bool = False
    optimizer: Optional[dict] = None
    train: Optional[dict] = None
    finetune_optimizer: Optional[dict] = None
    finetune_train: Optional[dict] = None


# sections that are settings rather than components: config path ("" = the top-level keys) -> dataclass
SETTINGS = {"": RunOptions, "model": ModelSpec, "distributed": DistributedSpec, "unlearn": TrainSettings,
            "prepare": PrepareOptions, "prepare.train": TrainSettings, "prepare.finetune_train": TrainSettings,
            "eval.decode": DecodeSettings}


@dataclass(frozen=True)
class RunSettings:
    """Everything about one run that is not a component: options, names, where it writes."""

    seed: int
    skip: FrozenSet[str]
    overwrite: bool
    save_model: bool
    cache_dir: Path
    cache_reference: bool
    cache_eval: bool
    checkpoint_every: int
    progress: bool
    threads: Optional[int]
    sweep_name: str
    run_dir: Path
    run_name: str
    config_hash: str
    config: dict          # the resolved config with secrets redacted (config.yaml, loggers)
    method_name: str
    benchmark_name: str
    oracle_results: Optional[Path] = None  # an earlier run whose oracle values this run reuses

    def runs(self, stage: str) -> bool:
        """Whether ``stage`` (one of ``STAGES``) is not skipped."""
        return stage not in self.skip


@dataclass
class Plan:
    """A validated run: its components and its settings."""

    components: Components
    settings: RunSettings


def _nested_registry(annotation) -> Optional[Registry]:
    """The registry of a component-protocol annotation (``Optional[...]`` included), if any."""
    for arg in (annotation, *typing.get_args(annotation)):
        if arg in BY_PROTOCOL:
            return BY_PROTOCOL[arg]
    return None


def make(registry: Registry, section, path: str):
    """Instantiate ``registry[section.name]`` with the section's other keys as keywords; nested
    component sections (parameters annotated with a component protocol) are built first."""
    if section is None or "name" not in section:
        raise UserError(f"config section '{path}' needs a 'name' (one of: {', '.join(registry.names())})")
    cls = registry.get(str(section["name"]))
    kwargs = bind(cls, section, path)
    params = signature_params(cls)
    for key, value in kwargs.items():
        nested = _nested_registry(params[key].annotation)
        if nested is not None and value is not None:
            if not isinstance(value, dict):
                raise UserError(f"{path}.{key} must be a mapping with the {nested.kind}'s 'name' "
                                f"(one of: {', '.join(nested.names())}) and its settings, got {value!r}")
            kwargs[key] = make(nested, value, f"{path}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path} '{section['name']}': {err}") from err


def instances(registry: Registry, sections, path: str) -> Dict[str, Any]:
    """``{id: component}`` of a mapping of instance sections (``name`` defaults to the id)."""
    out: Dict[str, Any] = {}
    for key, section in (to_plain(sections) or {}).items():
        if not INSTANCE_ID.match(str(key)):
            raise UserError(f"{path}: id '{key}' must start with a letter and hold only letters, digits, "
                            f"'_', '-' or '@' (it names stages and result keys)")
        if not isinstance(section, dict) and section is not None:
            raise UserError(f"{path}.{key} must be a mapping of settings (with an optional 'name')")
        out[str(key)] = make(registry, {"name": key, **(section or {})}, f"{path}.{key}")
    return out


# sections that are one component of a registry (chosen by the section's ``name``) and mappings of instances
COMPONENT_SECTIONS = {"method": METHODS, "optimizer": OPTIMIZERS, "benchmark": BENCHMARKS, "logger": LOGGERS,
                      "prepare.optimizer": OPTIMIZERS, "prepare.finetune_optimizer": OPTIMIZERS}
INSTANCE_SECTIONS = {"attack": ATTACKS, "eval.metrics": METRICS, "plugin": PLUGINS}


def section_schema(cfg: DictConfig, path: str) -> Optional[type]:
    """The class (settings dataclass or component) that the section at ``path`` binds to, or None when ``path``
    is no bound section or names an unknown component."""
    if path in SETTINGS:
        return SETTINGS[path]
    section = OmegaConf.select(cfg, path) if path else None
    name = section.get("name") if isinstance(section, DictConfig) else None
    parent, _, key = path.rpartition(".")
    registry = COMPONENT_SECTIONS.get(path)
    if registry is None and parent in INSTANCE_SECTIONS:
        registry, name = INSTANCE_SECTIONS[parent], name or key
    if registry is None and parent:  # a nested component (an attack's optimizer)
        owner = section_schema(cfg, parent)
        param = signature_params(owner).get(key) if owner is not None else None
        registry = _nested_registry(param.annotation) if param is not None else None
    if registry is None or name is None or str(name) not in registry.names():
        return None
    return registry.get(str(name))


def settings_section(cfg: DictConfig, path: str):
    """The settings dataclass ``SETTINGS[path]`` bound to that section of ``cfg`` (a preset's ``name`` aside; the
    top level keeps the run options, its other keys being sections)."""
    cls = SETTINGS[path]
    section = to_plain(OmegaConf.select(cfg, path) if path else cfg) or {}
    if path:
        section = {k: v for k, v in section.items() if k != "name"}
    else:
        known = {f.name for f in fields(RunOptions)}
        section = {k: v for k, v in section.items() if k in known}
    return cls(**bind(cls, section, path, label=f"'{path}'" if path else "the run settings"))


def build(cfg: DictConfig, sweep_dir: Optional[str] = None) -> Plan:
    """Validate and build every component named by ``cfg`` and the run's settings."""
    opts = settings_section(cfg, "")
    for stage in opts.skip:
        if stage not in STAGES:
            raise UserError(f"skip: unknown stage '{stage}';{suggest(stage, STAGES)} valid: {', '.join(STAGES)}")
    attacks = {k: a for k, a in instances(ATTACKS, cfg.get("attack"), "attack").items() if not a.skip}
    clash = [k for k in attacks if k in RESERVED_STAGES]
    if clash:
        raise UserError(f"attack id '{clash[0]}' is a stage name of its own; rename it (reserved: "
                        f"{', '.join(RESERVED_STAGES)})")
    if not to_plain(cfg.eval.get("metrics")):
        raise UserError("eval.metrics is empty; name at least one metric (known: " + ", ".join(METRICS.names()) + ")")
    metrics = instances(METRICS, cfg.eval.get("metrics"), "eval.metrics")
    plugins = instances(PLUGINS, cfg.get("plugin"), "plugin")
    dist = settings_section(cfg, "distributed")
    optimizer = make(OPTIMIZERS, cfg.optimizer, "optimizer")
    if dist.kind == "deepspeed" and not optimizer.first_order:
        raise UserError(f"optimizer '{cfg.optimizer.name}' re-evaluates the loss or keeps weight state of its own "
                        f"and cannot run under DeepSpeed (which steps first-order optimizers only: {first_order_names()}); "
                        f"use distributed=ddp or distributed=none")
    if dist.kind == "deepspeed" and "bf16_pure" in (str(cfg.unlearn.get("precision")),):
        raise UserError("unlearn.precision=bf16_pure has no DeepSpeed equivalent (its bf16 mode keeps fp32 master "
                        "weights: use unlearn.precision=bf16)")
    for key, plugin in plugins.items():
        if dist.kind == "deepspeed" and not plugin.supports_deepspeed:
            raise UserError(f"plugin '{key}' cannot run under DeepSpeed ZeRO (weights are sharded); "
                            f"use distributed=ddp or distributed=none")
    prep = settings_section(cfg, "prepare")
    model = settings_section(cfg, "model")
    if model.kind == "tiny" and prep.finetune:
        raise UserError("prepare.finetune fine-tunes a pretrained model.path; model.kind=tiny is trained from scratch "
                        "anyway (drop prepare.finetune or pick model=hf model.path=...)")
    if model.kind == "tiny" and (model.path or model.oracle_path):
        key = "model.path" if model.path else "model.oracle_path"
        raise UserError(f"{key} is read only with model.kind=pretrained (model '{cfg.model.name}' builds a tiny model); "
                        f"add model.kind=pretrained or pick model=hf")
    if model.kind == "pretrained" and not model.path:
        raise UserError(f"model '{cfg.model.name}' (kind pretrained) needs model.path=<local directory or Hugging "
                        f"Face id>")
    components = Components(
        model=model,
        benchmark=make(BENCHMARKS, cfg.benchmark, "benchmark"),
        method=make(METHODS, cfg.method, "method"),
        optimizer=optimizer,
        attacks=attacks,
        metrics=metrics,
        plugins=plugins,
        decode=settings_section(cfg, "eval.decode"),
        unlearn=settings_section(cfg, "unlearn"),
        prepare=PrepareSpec(seed=prep.seed, optimizer=make(OPTIMIZERS, cfg.prepare.optimizer, "prepare.optimizer"),
                            train=settings_section(cfg, "prepare.train"),
                            recipe=OmegaConf.to_container(cfg.prepare, resolve=True), finetune=prep.finetune,
                            finetune_train=settings_section(cfg, "prepare.finetune_train"),
                            finetune_optimizer=make(OPTIMIZERS, cfg.prepare.finetune_optimizer,
                                                    "prepare.finetune_optimizer")),
        logger=make(LOGGERS, cfg.logger, "logger"),
        distributed=dist,
    )
    config = redact(to_plain(cfg))
    oracle_results = Path(opts.oracle_results).expanduser() if opts.oracle_results else None
    if oracle_results is not None:
        stored.check_compatible(oracle_results, config)
    settings = RunSettings(
        seed=opts.seed, skip=frozenset(opts.skip), overwrite=opts.overwrite, save_model=opts.save_model,
        cache_dir=Path(opts.cache_dir).expanduser(), cache_reference=opts.cache_reference,
        cache_eval=opts.cache_eval,
        checkpoint_every=int(opts.checkpoint_every or 0), progress=opts.progress, threads=opts.threads,
        sweep_name=opts.sweep_name, run_dir=rundir.resolve(cfg, sweep_dir), run_name=rundir.run_name(cfg),
        config_hash=rundir.config_hash(cfg), config=config, method_name=str(cfg.method.name),
        benchmark_name=str(cfg.benchmark.name), oracle_results=oracle_results)
    return Plan(components, settings)
