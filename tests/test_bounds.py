"""Declared ranges: every numeric setting of every section carries one, and a value outside it, a non-finite value
or a wrong type fails in one line naming the key, the value and the range -- walked over every settings section
and every registered component, composed as the CLI composes them."""

import copy
import math
import typing
from typing import Dict, List, Optional, Tuple

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from unlearn_cli import components
from unlearn_cli.binding import problem, signature_params
from unlearn_cli.bounds import Beta, Fraction, PositiveInt, Range, strip
from unlearn_cli.cli import conf_dir, parse_overrides
from unlearn_cli.errors import UserError


def test_range_membership_and_wording():
    assert Range(0, 1, lo_open=True).holds(1) and not Range(0, 1, lo_open=True).holds(0)
    assert Range(0, 1, hi_open=True).holds(0) and not Range(0, 1, hi_open=True).holds(1)
    assert not Range().holds(float("nan")) and not Range().holds(float("inf")) and Range().holds(-1e300)
    assert Range(1, finite=False).holds(float("inf")) and not Range(1, finite=False).holds(float("nan"))
    assert [str(r) for r in (Range(1), Range(0, lo_open=True), Range(0, 1, lo_open=True), Range(0, 1, hi_open=True),
                             Range(hi=5), Range())] == [">= 1", "> 0", "in (0, 1]", "in [0, 1)", "<= 5", "finite"]
    assert list(Range(1).outside(integer=True)) == [0] and list(Range(0, 1, lo_open=True).outside(False)) == [0, 1.5]


def test_problem_reads_ranges_through_optional_lists_tuples_and_mappings():
    assert problem(3, Optional[PositiveInt]) is None and problem(None, Optional[PositiveInt]) is None
    assert problem(0, Optional[PositiveInt]) == "must be >= 1"
    assert problem(2.0, PositiveInt) == "expected int >= 1"
    assert problem([0.9, 1.0], Tuple[Beta, Beta]) == "item 1 (1.0) must be in [0, 1)"
    assert problem([0.9], Tuple[Beta, Beta]) == "expected 2 values, got 1"
    assert problem([1.0, float("nan")], List[Fraction]) == "item 1 (nan) must be a finite number in (0, 1]"
    assert problem({"mmlu": -1}, typing.Union[PositiveInt, Dict[str, PositiveInt]]) == "entry 'mmlu' (-1) must be >= 1"
    assert problem(True, PositiveInt) == "expected int >= 1"  # a bool is no count


# -- the walk over every schema --------------------------------------------------------------------------------
def _numeric_leaves(annotation):
    base, bound = strip(annotation)
    if base in (int, float):
        yield base, bound
        return
    for arg in typing.get_args(base):
        if arg is not Ellipsis and typing.get_origin(base) is not typing.Literal:
            yield from _numeric_leaves(arg)


def _sections():
    """(config path, class, overrides that select it) for every bound section the CLI composes."""
    for path, cls in components.SETTINGS.items():
        yield path, cls, []
    for group, registry in components.COMPONENT_SECTIONS.items():
        if "." not in group:  # prepare.optimizer binds the same classes as the optimizer group
            for name in registry.names():
                yield group, registry.get(name), [f"{group}={name}"]
    for group, registry in components.INSTANCE_SECTIONS.items():
        for name in registry.names():
            yield f"{group}.{name}", registry.get(name), ([f"{group}=[{name}]"] if group != "eval.metrics" else [])


def _numeric_keys():
    for path, cls, base in _sections():
        for key, param in signature_params(cls).items():
            leaves = list(_numeric_leaves(param.annotation))
            if leaves:
                yield path, cls, base, key, param.annotation, leaves


KEYS = list(_numeric_keys())


def test_every_numeric_setting_declares_its_range():
    assert len(KEYS) > 100  # the walk reaches every section (guards against an empty parametrisation)
    undeclared = [f"{path}.{key} ({cls.__name__})" for path, cls, _, key, _, leaves in KEYS
                  if any(bound is None for _, bound in leaves)]
    assert not undeclared, f"declare a range (unlearn_cli.bounds) for: {', '.join(undeclared)}"


def _shape(annotation):
    """('scalar', leaf) or ('list', leaf, length) of a numeric setting (Optional and dict alternatives aside)."""
    members = list(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Union else [annotation]
    for member in members:
        inner, _ = strip(member)
        origin = typing.get_origin(inner)
        if inner in (int, float):
            return "scalar", member, 1
        if origin in (list, tuple):
            args = [a for a in typing.get_args(inner) if a is not Ellipsis]
            fixed = origin is tuple and Ellipsis not in typing.get_args(inner)
            return "list", args[0], len(args) if fixed else 1
    raise AssertionError(f"no numeric shape in {annotation}")


def _bad_values(leaf):
    base, bound = strip(leaf)
    integer = base is int
    out = [(v, str(bound)) for v in bound.outside(integer)]
    out += [(float("nan"), "expected int" if integer else "")]
    if not integer and bound.finite:
        out += [(float("inf"), "finite")]
    out += [("abc", "expected"), *([(1.5, "expected int")] if integer else [])]
    return out


def _text(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return str(value)


CASES = []
for _path, _cls, _base, _key, _ann, _ in KEYS:
    _kind, _leaf, _n = _shape(_ann)
    if strip(_leaf)[1] is None:
        continue  # reported by test_every_numeric_setting_declares_its_range
    for _value, _hint in _bad_values(_leaf):
        _given = [_value] * _n if _kind == "list" else _value
        CASES.append(pytest.param(_path, _base, _key, _given, _hint, id=f"{_path or 'run'}.{_key}={_text(_given)}"))


@pytest.fixture(scope="module")
def composed():
    """The composed config of each section selection (composed once; each case edits a copy)."""
    GlobalHydra.instance().clear()
    cache = {}

    def get(base):
        if tuple(base) not in cache:
            cache[tuple(base)] = compose(config_name="config", overrides=list(base))
        return copy.deepcopy(cache[tuple(base)])

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield get
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("path,base,key,value,hint", CASES)
def test_a_value_outside_the_declared_range_fails_in_one_line(composed, path, base, key, value, hint):
    where = f"{path}.{key}" if path else key
    (override,) = parse_overrides([f"++{where}={_text(value)}"])  # Hydra's own parse of the value, as `unlearn run`
    cfg = composed(base)
    with open_dict(cfg):
        OmegaConf.update(cfg, where, override.value(), force_add=True)
    with pytest.raises(UserError) as err:
        components.build(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{where}="), message
    assert hint in message, message


def test_an_override_applied_by_hydra_fails_the_same_way(composed):
    cfg = compose(config_name="config", overrides=["++unlearn.lr=nan"])
    with pytest.raises(UserError, match=r"^unlearn.lr=nan: must be a finite number > 0 for 'unlearn'$"):
        components.build(cfg)
