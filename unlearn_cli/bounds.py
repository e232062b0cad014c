"""Valid ranges of numeric settings, declared next to their types.

A setting's annotation carries its range: ``lr: PositiveFloat``, ``top_p: Fraction``,
``layers: List[NonNegativeInt]``, ``betas: Tuple[Beta, Beta]`` (``Beta = Annotated[float, Range(0, 1,
hi_open=True)]``). The binding (``unlearn_cli.binding``) checks every value against its range before
anything runs and names the key, the value and the range in one line. Every float must also be finite
(``nan`` / ``inf`` are refused wherever a number is expected); ``FiniteFloat`` / ``Integer`` declare a
number with no other limit.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional, Tuple


@dataclass(frozen=True)
class Range:
    """``lo <= x <= hi`` (``lo_open`` / ``hi_open``: strict); ``None`` = unbounded on that side."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    finite: bool = True  # False: +-inf pass where the bounds allow them (a p-norm's order)

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and (math.isnan(value) or (self.finite and math.isinf(value))):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def __str__(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if not self.finite:
            return f"{Range(self.lo, self.hi, self.lo_open, self.hi_open)} (inf allowed)"
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "finite" if self.finite else "a number"

    def outside(self, integer: bool) -> Iterator[float]:
        """Values just outside the range (for tests and examples)."""
        step = 1 if integer else 0.5
        if self.lo is not None:
            yield self.lo if self.lo_open else self.lo - step
        if self.hi is not None:
            yield self.hi if self.hi_open else self.hi + step


def _num(x: Optional[float]) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


PositiveInt = Annotated[int, Range(1)]                                 # counts: steps, sizes, tokens
NonNegativeInt = Annotated[int, Range(0)]                              # indices, seeds, offsets, 0 = off
Integer = Annotated[int, Range()]
PositiveFloat = Annotated[float, Range(0, lo_open=True)]               # rates, temperatures, scales
NonNegativeFloat = Annotated[float, Range(0)]                          # weights, decays, noise
Fraction = Annotated[float, Range(0, 1, lo_open=True)]                 # (0, 1]: a share of something
Probability = Annotated[float, Range(0, 1)]                            # [0, 1]: thresholds, ratios
FiniteFloat = Annotated[float, Range()]
Beta = Annotated[float, Range(0, 1, hi_open=True)]                     # [0, 1): Adam betas, momentum


def strip(annotation: Any) -> Tuple[Any, Optional[Range]]:
    """``Annotated[T, Range]`` -> ``(T, Range)``; anything else -> ``(annotation, None)``."""
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        return base, next((m for m in meta if isinstance(m, Range)), None)
    return annotation, None
