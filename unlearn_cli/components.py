"""Turn a composed config into validated component objects (before anything runs).

Every section binds to its constructor's signature (``binding.bind``), so an unknown or mistyped
key, a wrong type or an unknown registry name fails here with one line, before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig

from unlearn_cli.binding import bind, to_plain
from unlearn_cli.train.distributed import DistributedSpec
from unlearn_cli.errors import UserError, suggest
from unlearn_cli.models.build import ModelSpec
from unlearn_cli.registry import ATTACKS, BENCHMARKS, LOGGERS, METHODS, METRICS, OPTIMIZERS, Registry
from unlearn_cli.eval.scorer import DecodeSettings
from unlearn_cli.train.loop import TrainSettings

STAGES = ("eval_target", "unlearn", "eval_unlearned", "attack", "eval_oracle")


@dataclass
class PrepareSpec:
    seed: int
    optimizer: Any
    train: TrainSettings


@dataclass
class SaliencySettings:
    """``method.saliency``: SalUn mask; ``sparsity`` = fraction of weights kept trainable."""

    sparsity: Optional[float] = None

    def __post_init__(self):
        if self.sparsity is not None and not 0 < self.sparsity <= 1:
            raise UserError(f"method.saliency.sparsity must be in (0, 1], got {self.sparsity}")


@dataclass
class Components:
    model: ModelSpec
    benchmark: Any
    method: Any
    optimizer: Any
    attacks: List[Tuple[str, Any]]
    metrics: List[Any]
    decode: DecodeSettings
    unlearn: TrainSettings
    prepare: PrepareSpec
    logger: Any
    saliency: SaliencySettings = field(default_factory=SaliencySettings)
    distributed: DistributedSpec = field(default_factory=DistributedSpec)
    skip: set = field(default_factory=set)


def make(registry: Registry, section, path: str):
    """Instantiate ``registry[section.name]`` with the section's other keys as keywords."""
    if section is None or "name" not in section:
        raise UserError(f"config section '{path}' needs a 'name' (one of: {', '.join(registry.names())})")
    cls = registry.get(str(section["name"]))
    kwargs = bind(cls, section, path)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path} '{section['name']}': {err}") from err


def _dataclass(cls, section, path: str):
    return cls(**bind(cls, section, path, label=f"'{path}'"))


def build(cfg: DictConfig) -> Components:
    """Validate and build every component named by ``cfg``."""
    attacks = []
    for key, section in (to_plain(cfg.get("attack")) or {}).items():
        if not isinstance(section, dict):
            raise UserError(f"attack.{key} must be a mapping with a 'name'")
        attack = make(ATTACKS, section, f"attack.{key}")
        if not getattr(attack, "skip", False):
            attacks.append((section["name"], attack))
    metrics_cfg = to_plain(cfg.eval.get("metrics")) or {}
    if not metrics_cfg:
        raise UserError("eval.metrics is empty; name at least one metric (known: " + ", ".join(METRICS.names()) + ")")
    metrics = [make(METRICS, {"name": name, **(opts or {})}, f"eval.metrics.{name}") for name, opts in metrics_cfg.items()]
    skip = set(to_plain(cfg.get("skip")) or [])
    for stage in skip:
        if stage not in STAGES:
            raise UserError(f"skip: unknown stage '{stage}';{suggest(stage, STAGES)} valid: {', '.join(STAGES)}")
    dist_section = {k: v for k, v in (to_plain(cfg.distributed) or {}).items() if k != "name"}
    dist = _dataclass(DistributedSpec, dist_section, "distributed")
    prep = cfg.prepare
    method_section = dict(to_plain(cfg.method))
    saliency = _dataclass(SaliencySettings, method_section.pop("saliency", None), "method.saliency")
    model_section = {k: v for k, v in (to_plain(cfg.model) or {}).items() if k != "name"}
    optimizer = make(OPTIMIZERS, cfg.optimizer, "optimizer")
    if dist.kind == "deepspeed" and not getattr(optimizer, "first_order", True):
        raise UserError(f"optimizer '{cfg.optimizer.name}' re-evaluates the loss (step(closure)) and cannot run "
                        f"under DeepSpeed; use distributed=ddp or distributed=none")
    if dist.kind == "deepspeed" and saliency.sparsity is not None:
        raise UserError("method.saliency (SalUn) restores masked weights itself and cannot run under DeepSpeed "
                        "ZeRO; use distributed=ddp or distributed=none")
    return Components(
        model=_dataclass(ModelSpec, model_section, "model"),
        benchmark=make(BENCHMARKS, cfg.benchmark, "benchmark"),
        method=make(METHODS, method_section, "method"),
        optimizer=optimizer,
        attacks=attacks,
        metrics=metrics,
        decode=_dataclass(DecodeSettings, cfg.eval.get("decode"), "eval.decode"),
        unlearn=_dataclass(TrainSettings, cfg.unlearn, "unlearn"),
        prepare=PrepareSpec(seed=int(prep.seed), optimizer=make(OPTIMIZERS, prep.optimizer, "prepare.optimizer"),
                            train=_dataclass(TrainSettings, prep.train, "prepare.train")),
        logger=make(LOGGERS, cfg.logger, "logger"),
        saliency=saliency,
        distributed=dist,
        skip=skip,
    )
