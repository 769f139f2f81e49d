"""Declared parameter constraints for config dataclasses, and the one checker that applies them.

A config dataclass lists a constraint for each of its fields in the class attribute
``parameter_constraints`` (merged along the class hierarchy, subclasses win)::

    @dataclass
    class CGBMRunConfig(PairTrainConfig):
        hidden: int = 128
        keep_matching: float = 0.8
        parameter_constraints: ClassVar[dict] = {
            "hidden": Int(ge=1),
            "keep_matching": Float(gt=0, le=1),
        }

:func:`check_params` checks every given value against its field's constraint and returns
the values converted to the field's type (an int where an int is expected, a tuple for a
sequence). The message says which parameter of which config, what it must be and what it
got, and names the config file (or the command-line option) the value came from::

    paper.yaml: The 'lr' parameter must be a finite float > 0. Got inf instead.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any, Dict, Mapping, Optional

from .errors import ConfigError

__all__ = ["Constraint", "Int", "Float", "Bool", "Options", "Str", "Sequence_", "IntSeq", "FloatSeq",
           "declared_constraints", "constraints_of", "check_params", "describe_constraint", "MAX_INT"]

MAX_INT = 2**63 - 1  # every int parameter must fit an int64 (seeds, steps, sizes)


class _Bad(Exception):
    """Raised by a constraint: the value does not satisfy it."""


def _bounds_text(ge=None, gt=None, le=None, lt=None) -> str:
    lo = f">= {ge:g}" if ge is not None else (f"> {gt:g}" if gt is not None else "")
    hi = f"<= {le:g}" if le is not None else (f"< {lt:g}" if lt is not None else "")
    if lo and hi:
        left = "[" if ge is not None else "("
        right = "]" if le is not None else ")"
        a = ge if ge is not None else gt
        b = le if le is not None else lt
        return f"in {left}{a:g}, {b:g}{right}"
    return lo or hi


class Constraint:
    """One field's allowed values. ``convert`` returns the checked value or raises ``_Bad``."""

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def plural(self) -> str:
        """The description of several such values (used by sequences)."""
        return "values that are each " + self.describe()

    def convert(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()


class _Range(Constraint):
    def __init__(self, *, ge=None, gt=None, le=None, lt=None) -> None:
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def _in_range(self, v) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def _bounds(self) -> str:
        return _bounds_text(self.ge, self.gt, self.le, self.lt)


class Int(_Range):
    """An int (an integral float such as YAML's ``1e3`` is accepted), optionally bounded;
    ``odd=True``: an odd one (kernel sizes with same-size padding)."""

    def __init__(self, *, odd: bool = False, **bounds: Any) -> None:
        super().__init__(**bounds)
        self.odd = odd

    def describe(self) -> str:
        b = self._bounds()
        kind = "an odd int" if self.odd else "an int"
        return f"{kind} {b}" if b else kind

    def plural(self) -> str:
        b = self._bounds()
        kind = "odd ints" if self.odd else "ints"
        return f"{kind} {b}" if b else kind

    def convert(self, value: Any) -> int:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise _Bad
            value = int(value)
        if not isinstance(value, int) or not -MAX_INT <= value <= MAX_INT or not self._in_range(value):
            raise _Bad
        if self.odd and value % 2 == 0:
            raise _Bad
        return int(value)


class Float(_Range):
    """A finite number, optionally bounded. A string holding a number is accepted, because
    YAML 1.1 reads ``1e-3`` (no dot) as a string."""

    def describe(self) -> str:
        b = self._bounds()
        return f"a finite float {b}" if b else "a finite float"

    def plural(self) -> str:
        b = self._bounds()
        return f"finite floats {b}" if b else "finite floats"

    def convert(self, value: Any) -> float:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _Bad from None
        if not isinstance(value, (int, float)):
            raise _Bad
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            raise _Bad from None
        if not math.isfinite(value) or not self._in_range(value):
            raise _Bad
        return value


class Bool(Constraint):
    def describe(self) -> str:
        return "a bool (true or false)"

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Bad
        return value


class Str(Constraint):
    def describe(self) -> str:
        return "a string"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad
        return value


class Options(Constraint):
    """One of a fixed set of strings, or of ints (``Options(8, 16)``)."""

    def __init__(self, *options: Any) -> None:
        self.options = tuple(options)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def convert(self, value: Any) -> Any:
        if all(isinstance(o, int) for o in self.options):
            value = Int().convert(value)
        elif not isinstance(value, str):
            raise _Bad
        if value not in self.options:
            raise _Bad
        return value


class Sequence_(Constraint):
    """A list of items, each satisfying ``item``; ``min_len``, and ``increasing`` (strictly)."""

    def __init__(self, item: Constraint, *, min_len: int = 0, increasing: bool = False) -> None:
        self.item, self.min_len, self.increasing = item, min_len, increasing

    def describe(self) -> str:
        what = "a list" if self.min_len == 0 else f"a list of at least {self.min_len}"
        order = " in increasing order" if self.increasing else ""
        return f"{what} of {self.item.plural()}{order}"

    def convert(self, value: Any) -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
            raise _Bad
        out = tuple(self.item.convert(v) for v in value)
        if self.increasing and any(b <= a for a, b in zip(out, out[1:])):
            raise _Bad
        return out


def IntSeq(*, min_len: int = 0, increasing: bool = False, **bounds: Any) -> Sequence_:
    return Sequence_(Int(**bounds), min_len=min_len, increasing=increasing)


def FloatSeq(*, min_len: int = 0, increasing: bool = False, **bounds: Any) -> Sequence_:
    return Sequence_(Float(**bounds), min_len=min_len, increasing=increasing)


def declared_constraints(cls: type) -> Dict[str, Constraint]:
    """The ``parameter_constraints`` of config class ``cls`` merged over its bases."""
    out: Dict[str, Constraint] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get("parameter_constraints", {}) or {})
    return out


def _from_default(default: Any) -> Optional[Constraint]:
    """The type-only constraint of a field that declares none (configs of outside packages)."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Float()
    if isinstance(default, str):
        return Str()
    if isinstance(default, tuple) and default:
        inner = _from_default(default[0])
        return Sequence_(inner) if inner is not None else None
    return None


def constraints_of(cls: type) -> Dict[str, Constraint]:
    """Every field's constraint: the declared ones, else one derived from the default's type
    (a field whose default is ``None`` or an empty tuple and that declares nothing is not checked)."""
    declared = declared_constraints(cls)
    out: Dict[str, Constraint] = {}
    for f in fields(cls):
        c = declared.get(f.name)
        if c is None and f.default is not MISSING:
            c = _from_default(f.default)
        if c is not None:
            out[f.name] = c
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_params(cls: type, values: Mapping[str, Any], *, origins: Optional[Mapping[str, Optional[str]]] = None,
                 source: Optional[str] = None) -> Dict[str, Any]:
    """Check ``values`` (field name -> value) against the declared constraints of ``cls``.

    ``origins`` maps a field to where its value came from (a command-line option such as
    ``--lr``); other fields are named with ``source`` (the config file).
    Fields that declare no constraint are checked by the type of their default. Returns the
    converted values.
    """
    cons = constraints_of(cls)
    out: Dict[str, Any] = {}
    for key, value in values.items():
        c = cons.get(key)
        if c is None:
            out[key] = value
            continue
        try:
            out[key] = c.convert(value)
        except (_Bad, TypeError, ValueError):
            origin = (origins or {}).get(key)
            raise ConfigError(
                f"The {key!r} parameter must be {c.describe()}. Got {_show(value)} instead.",
                file=None if origin else (source or None), item=origin,
            ) from None
    return out


def describe_constraint(cls: type, name: str) -> str:
    """What field ``name`` of ``cls`` must be (for ``--show-config``)."""
    c = constraints_of(cls).get(name)
    return c.describe() if c is not None else ""

