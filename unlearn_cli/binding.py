"""Bind a YAML section to a constructor's signature: the keyword names are the schema.

Unknown keys, missing required keys, wrong types and values outside a setting's declared range
(``unlearn_cli.bounds``) become one-line ``UserError``s that name the config path, the value and
what would be valid.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import typing
from typing import Any, Dict, Iterable, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from unlearn_cli.bounds import strip
from unlearn_cli.errors import UserError, suggest

RESERVED = ("name", "description")


def to_plain(section: Any) -> Any:
    """DictConfig/ListConfig -> dict/list (resolved); anything else unchanged. An interpolation that cannot be
    resolved is one UserError naming the key."""
    if isinstance(section, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(section, resolve=True)
        except InterpolationResolutionError as err:
            key = getattr(err, "full_key", None) or "?"
            raise UserError(f"config key '{key}': {str(err).splitlines()[0]}") from None
    return section


def _type_ok(value: Any, annotation: Any) -> bool:
    annotation, _ = strip(annotation)
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
    if annotation in (list, tuple) or origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    if annotation is dict or origin in (dict, typing.Mapping, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def problem(value: Any, annotation: Any) -> Optional[str]:
    """Why ``value`` does not fit ``annotation`` -- its type, its declared ``Range`` (``unlearn_cli.bounds``),
    finiteness, or the same of a list's items / a mapping's values -- or None when it fits."""
    base, bound = strip(annotation)
    if base is inspect.Parameter.empty or base is Any:
        return None
    origin = typing.get_origin(base)
    if origin is typing.Union or str(origin) == "types.UnionType":
        members = typing.get_args(base)
        found = [problem(value, a) for a in members]
        if any(p is None for p in found):
            return None
        typed = [p for a, p in zip(members, found) if _type_ok(value, a)]
        return typed[0] if typed else f"expected {_describe(base)}"
    if not _type_ok(value, base):
        return f"expected {_describe(annotation)}"
    if base in (int, float):
        if isinstance(value, float) and not math.isfinite(value) and (bound is None or bound.finite):
            return "must be a finite number" + ("" if bound is None or str(bound) == "finite" else f" {bound}")
        return None if bound is None or bound.holds(value) else f"must be {bound}"
    args = typing.get_args(base)
    if isinstance(value, (list, tuple)) and args:
        fixed = origin is tuple and Ellipsis not in args
        if fixed and len(value) != len(args):
            return f"expected {len(args)} values, got {len(value)}"
        for i, item in enumerate(value):
            found = problem(item, args[i] if fixed else args[0])
            if found:
                return f"item {i} ({item!r}) {found}"
    if isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            found = problem(item, args[1])
            if found:
                return f"entry '{key}' ({item!r}) {found}"
    return None


def _describe(annotation: Any) -> str:
    annotation, bound = strip(annotation)
    if bound is not None:
        return f"{_describe(annotation)} {bound}"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Union:  # Optional[str] -> "str or null"
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def signature_params(target: Any) -> Dict[str, inspect.Parameter]:
    """Keyword parameters of a class constructor or dataclass (excluding self/*args/**kwargs)."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target, include_extras=True)
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
    hints = typing.get_type_hints(fn, include_extras=True)
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
        found = problem(value, params[key].annotation)
        if found:
            raise UserError(f"{where}={value!r}: {found} for {label}")
    for name, p in params.items():
        if name not in runtime and name not in kwargs and p.default is inspect.Parameter.empty:
            raise UserError(f"missing required hyperparameter '{f'{path}.{name}' if path else name}' for {label}")
    return kwargs
