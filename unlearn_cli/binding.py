"""Bind a YAML section to a constructor's signature: the keyword names are the schema.

Unknown keys, missing required keys and wrong types become one-line ``UserError``s that name the
config path and list what would be valid.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Dict, Iterable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from unlearn_cli.errors import UserError, suggest

RESERVED = ("name", "description")


def to_plain(section: Any) -> Any:
    """DictConfig/ListConfig -> dict/list (resolved); anything else unchanged."""
    if isinstance(section, (DictConfig, ListConfig)):
        return OmegaConf.to_container(section, resolve=True)
    return section


def _type_ok(value: Any, annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    if annotation in (list, tuple) or origin in (list, tuple, typing.Sequence):
        return isinstance(value, (list, tuple))
    if annotation is dict or origin in (dict, typing.Mapping):
        return isinstance(value, dict)
    return True


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Union:  # Optional[str] -> "str or null"
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def signature_params(target: Any) -> Dict[str, inspect.Parameter]:
    """Keyword parameters of a class constructor or dataclass (excluding self/*args/**kwargs)."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        out = {}
        for f in dataclasses.fields(target):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            out[f.name] = inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY,
                default=None if has_default else inspect.Parameter.empty,
                annotation=hints.get(f.name, Any))
        return out
    fn = target.__init__ if inspect.isclass(target) else target
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    return {
        n: p.replace(annotation=hints.get(n, p.annotation))
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def bind(target: Any, section: Mapping | None, path: str, runtime: Iterable[str] = (), label: str = "") -> Dict[str, Any]:
    """Check ``section`` against ``target``'s keyword parameters and return the kwargs.

    ``runtime`` names parameters supplied by the pipeline (model, tokenizer, ...), which must not
    come from YAML. ``path`` is the config path used in messages (e.g. ``method``; empty for top-level keys).
    """
    params = signature_params(target)
    runtime = set(runtime)
    section = dict(to_plain(section) or {})
    kwargs = {k: v for k, v in section.items() if k not in RESERVED}
    label = label or f"{path} '{section.get('name', getattr(target, '__name__', path))}'"
    valid = sorted(n for n in params if n not in runtime)
    for key, value in kwargs.items():
        where = f"{path}.{key}" if path else key
        if key not in params or key in runtime:
            raise UserError(
                f"unknown hyperparameter '{where}' for {label};{suggest(key, valid)} "
                f"valid: {', '.join(valid) or '(none)'}")
        ann = params[key].annotation
        if not _type_ok(value, ann):
            raise UserError(f"{where}={value!r}: expected {_describe(ann)} for {label}")
    for name, p in params.items():
        if name not in runtime and name not in kwargs and p.default is inspect.Parameter.empty:
            raise UserError(f"missing required hyperparameter '{f'{path}.{name}' if path else name}' for {label}")
    return kwargs
