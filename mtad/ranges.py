"""Valid ranges of config fields, stated once next to each default, and the one check of them.

A config dataclass declares a field as ``gamma: int = ranged(4, Int(min=1))``; its
``__post_init__`` (or its base class's) calls ``check_ranges(self, "decoder")``, which refuses the
first value outside its range in one ``UserError`` line naming the field, the range and the value
(``decoder.gamma must be an integer >= 1, got 0``). The configs are built before any model loads
or the results store is opened (``mtad/job/harness.py: Job``), so a bad value stops the job there
instead of being run and recorded as a real result (a 0 s timeout fails every verdict).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

from mtad.errors import UserError

RANGE = "range"  # the dataclass field metadata key


class Range:
    """What values a field takes. ``describe()`` reads after "must be"; ``accepts`` says yes or no."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _note(note: str) -> str:
    return f" ({note})" if note else ""


@dataclasses.dataclass(frozen=True)
class Number(Range):
    """A number within bounds. Integers only with ``integer`` (never a bool, nor 4.0: a float where
    an integer is meant would also change the run id). ``min``/``max`` are inclusive bounds,
    ``above``/``below`` exclusive ones; NaN is never accepted and an infinity only where a bound
    admits it (``max=math.inf``). ``none``: what null means, if null is allowed."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    integer: bool = False
    none: str = ""
    note: str = ""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return bool(self.none)
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if math.isnan(value):
            return False
        if math.isinf(value) and not (value > 0 and self.max == math.inf):
            return False
        return ((self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below))

    def describe(self) -> str:
        low = ("[", self.min) if self.min is not None else ("(", self.above) if self.above is not None else None
        high = ("]", self.max) if self.max is not None else (")", self.below) if self.below is not None else None
        kind = "an integer" if self.integer else "a number" if self.max == math.inf else "a finite number"
        if low and high:
            bounds = f" in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        elif low:
            bounds = f" {'>=' if low[0] == '[' else '>'} {_num(low[1])}"
        elif high:
            bounds = f" {'<=' if high[0] == ']' else '<'} {_num(high[1])}"
        else:
            bounds = ""
        notes = [n for n in (f"null: {self.none}" if self.none else "", self.note) if n]
        return f"{kind}{bounds}{' or null' if self.none else ''}{_note('; '.join(notes))}"


def _num(x: float) -> str:
    return "inf" if x == math.inf else str(int(x)) if float(x).is_integer() else str(x)


def Int(min: int | None = None, max: int | None = None, *, none: str = "", note: str = "") -> Number:
    """An integer in [min, max] (either bound may be left open)."""
    return Number(min=min, max=max, integer=True, none=none, note=note)


def Real(min: float | None = None, max: float | None = None, *, above: float | None = None,
         below: float | None = None, note: str = "") -> Number:
    """A number (int or float) within the given bounds; finite unless ``max=math.inf``."""
    return Number(min=min, max=max, above=above, below=below, note=note)


@dataclasses.dataclass(frozen=True)
class OneOf(Range):
    """One of ``choices``: a tuple, or a live catalogue (a dict whose keys are the names) that may
    grow after this range is declared."""

    choices: Collection
    note: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return f"one of {', '.join(self.choices)}{_note(self.note)}"


@dataclasses.dataclass(frozen=True)
class Flag(Range):
    """true or false (not 1 or 'yes')."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "true or false"


@dataclasses.dataclass(frozen=True)
class Each(Range):
    """A non-empty list (or tuple) whose every item is in ``item``."""

    item: Range

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(map(self.item.accepts, value))

    def describe(self) -> str:
        return f"a non-empty list, each {self.item.describe()}"


FLAG = Flag()
SEED = Int(min=0)


def ranged(default: Any = dataclasses.MISSING, range: Range | None = None, *,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its valid range beside its default (no default: a required field)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={RANGE: range})


def range_of(field: dataclasses.Field) -> Range | None:
    return field.metadata.get(RANGE)


def check_ranges(obj: Any, group: str = "") -> None:
    """One ``UserError`` for the first field of dataclass ``obj`` outside its stated range, named
    as on the command line (``group.field``; a root field by its name alone)."""
    for field in dataclasses.fields(obj):
        rule = range_of(field)
        if rule is not None:
            value = getattr(obj, field.name)
            if not rule.accepts(value):
                name = f"{group}.{field.name}" if group else field.name
                raise UserError(f"{name} must be {rule.describe()}, got {value!r}")
