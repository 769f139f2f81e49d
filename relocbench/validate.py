"""Checks of parsed input values, with one message shape for every reader.

Every check returns the value in the type the caller uses, or raises an error of the
``relocbench.errors`` family whose one line reads ``file: item: expected ..., found ...``::

    >>> from relocbench.validate import finite
    >>> finite(float("inf"), file="anno.json", item="video 'x' duration_second")
    Traceback (most recent call last):
    ...
    relocbench.errors.InputError: anno.json: video 'x' duration_second: expected a finite number, found Infinity

The readers of annotation files parse with their usual tools (``read_json``, pandas,
regular expressions) and then pass each value they use through these checks, so that a
wrong type, a non-finite number, an integer out of range, a string that is not valid
Unicode, undecodable bytes or a corrupted pickle all give the same kind of message, naming
the file and the item. Booleans are never accepted as numbers.

Nothing here imports numpy; numpy scalars are accepted through the ``numbers`` ABCs.
"""
from __future__ import annotations

import math
import numbers
import os
import pickle
from typing import Any, Collection, Iterable, Optional, Tuple, Type, Union

from .errors import ConfigError, InputError, RelocbenchError

__all__ = [
    "found",
    "fail",
    "finite",
    "integer",
    "string",
    "mapping",
    "sequence",
    "one_of",
    "seed",
    "read_text",
    "read_pickle",
    "NUMPY_PICKLE_GLOBALS",
]

PathLike = Union[str, os.PathLike]
ErrorType = Type[RelocbenchError]

_MAX_SHOWN = 60


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def found(value: Any) -> str:
    """A short description of ``value`` for the ``found ...`` part of a message, in JSON
    words where there is one (``null``, ``true``, ``NaN``, ``Infinity``, ``a list of 3 items``)."""
    if value is None:
        return "null"
    if isinstance(value, bool) or _is_numpy_bool(value):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        v = abs(int(value))
        if v.bit_length() <= 64:
            return str(int(value))
        try:
            return f"an integer of {len(str(v))} digits"
        except ValueError:  # longer than Python converts to text (4,300 digits by default)
            return f"an integer of about {int(v.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(value, str):
        if not _valid_unicode(value):
            return f"a string with a lone surrogate ({_short(ascii(value))})"
        return f"the string {_short(repr(value))}"
    if isinstance(value, (bytes, bytearray)):
        return f"bytes {_short(repr(bytes(value)))}"
    if isinstance(value, dict):
        keys = ", ".join(_short(repr(k)) for k in list(value)[:3]) + (", ..." if len(value) > 3 else "")
        return f"an object with {len(value)} key{'s' if len(value) != 1 else ''}" + (f" ({keys})" if value else "")
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"an array of shape {tuple(shape)} and dtype {value.dtype}"
    return f"a {type(value).__name__} ({_short(repr(value))})"


def fail(expected: str, value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None,
         error: ErrorType = InputError) -> RelocbenchError:
    """The error ``file: item: expected <expected>, found <found(value)>`` (returned, to raise)."""
    return error(f"expected {expected}, found {found(value)}", file=file, item=item)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not _is_numpy_bool(value)


def _is_numpy_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool_", "bool") and type(value).__module__ == "numpy"


def _bounds(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}" if isinstance(low, float) else
                     f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}" if isinstance(high, float) else
                     f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def finite(value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None,
           min: Optional[float] = None, max: Optional[float] = None, min_open: bool = False,
           max_open: bool = False, what: str = "a finite number", error: ErrorType = InputError) -> float:
    """``value`` as a finite float within the bounds (``min_open``: ``> min``).

    Rejects booleans, strings, null, NaN, Infinity and integers too large for a float
    (``1e400`` written as an integer, 5,000-digit integers).
    """
    bounds = _bounds(min, max, min_open, max_open)
    expected = what + (f" {bounds}" if bounds else "")
    if not _is_number(value):
        raise fail(expected, value, file=file, item=item, error=error)
    try:
        v = float(value)
    except (OverflowError, ValueError):
        raise fail(expected, value, file=file, item=item, error=error) from None
    if not math.isfinite(v):
        raise fail(expected, value, file=file, item=item, error=error)
    if ((min is not None and (v <= min if min_open else v < min))
            or (max is not None and (v >= max if max_open else v > max))):
        raise fail(expected, value, file=file, item=item, error=error)
    return v


def integer(value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None,
            min: Optional[int] = None, max: Optional[int] = None, integral_floats: bool = False,
            what: str = "an integer", error: ErrorType = InputError) -> int:
    """``value`` as an int within ``[min, max]``.

    Integers of any Python or numpy type; with ``integral_floats`` also finite floats
    without a fraction (``12.0``). Booleans, strings and null are refused.
    """
    bounds = _bounds(min, max, False, False)
    expected = what + (f" {bounds}" if bounds else "")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and not _is_numpy_bool(value):
        v = int(value)
    elif integral_floats and _is_number(value):
        try:
            fv = float(value)
        except (OverflowError, ValueError):
            raise fail(expected, value, file=file, item=item, error=error) from None
        if not (math.isfinite(fv) and fv == math.floor(fv)):
            raise fail(expected, value, file=file, item=item, error=error)
        v = int(fv)
    else:
        raise fail(expected, value, file=file, item=item, error=error)
    if (min is not None and v < min) or (max is not None and v > max):
        raise fail(expected, value, file=file, item=item, error=error)
    return v


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def string(value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None, nonempty: bool = True,
           what: Optional[str] = None, error: ErrorType = InputError) -> str:
    """``value`` as a str that UTF-8 can hold (no lone surrogates such as ``"\\ud800"``,
    which JSON allows and Parquet refuses); non-empty unless ``nonempty=False``."""
    expected = what or ("a non-empty string" if nonempty else "a string")
    if not isinstance(value, str) or (nonempty and not value) or not _valid_unicode(value):
        raise fail(expected, value, file=file, item=item, error=error)
    return value


def mapping(value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None,
            what: str = "an object", required: Iterable[str] = (), error: ErrorType = InputError) -> dict:
    """``value`` if it is a dict (a JSON object) holding every ``required`` key."""
    if not isinstance(value, dict):
        raise fail(what, value, file=file, item=item, error=error)
    missing = [k for k in required if k not in value]
    if missing:
        keys = ", ".join(repr(k) for k in missing)
        raise error(f"expected {what} with the key{'s' if len(missing) > 1 else ''} {keys}, found "
                    f"{found(value)} without {'them' if len(missing) > 1 else 'it'}", file=file, item=item)
    return value


def sequence(value: Any, *, file: Optional[PathLike] = None, item: Optional[str] = None, what: str = "a list",
             length: Optional[int] = None, error: ErrorType = InputError) -> list:
    """``value`` as a list if it is a list or tuple (of ``length`` items when given)."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        raise fail(what, value, file=file, item=item, error=error)
    return list(value)


def one_of(value: Any, choices: Collection[Any], *, file: Optional[PathLike] = None, item: Optional[str] = None,
           error: ErrorType = InputError) -> Any:
    """``value`` if it is one of ``choices`` (compared with ``==``, types checked first)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        shown = ", ".join(repr(c) for c in choices)
        raise fail(f"one of {shown}", value, file=file, item=item, error=error)
    return value


def seed(value: Any, name: str = "seed", *, allow_none: bool = False, owner: Optional[str] = None) -> Optional[int]:
    """A random seed: an integer >= 0 (NumPy's generators refuse negative seeds)."""
    if value is None and allow_none:
        return None
    item = f"the {name!r} parameter" + (f" of {owner}" if owner else "")
    return integer(value, item=item, min=0, what="an integer", error=ConfigError)


# --------------------------------------------------------------------------- files


def read_text(path: PathLike, what: str = "text file", *, error: ErrorType = InputError) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark is dropped); undecodable bytes
    raise ``error`` naming the line and byte offset of the first one."""
    from .io import require_file

    p = require_file(path, what, error)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise error(f"cannot read the {what} ({exc.strerror})", file=p) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"expected UTF-8 text, found the undecodable byte 0x{data[exc.start]:02x} at line {line} "
                    f"(byte offset {exc.start})", file=p) from None


#: What :func:`read_pickle` lets a pickle construct besides plain Python containers:
#: NumPy arrays, dtypes and scalars (as NumPy 1.x and 2.x name them).
NUMPY_PICKLE_GLOBALS: Tuple[Tuple[str, str], ...] = (
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
)

_SAFE_BUILTINS = {(m, n) for m in ("builtins", "__builtin__")
                  for n in ("bool", "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict",
                            "set", "frozenset")}
_SAFE_BUILTINS.add(("_codecs", "encode"))  # how protocol-2 pickles written by Python 3 store bytes


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, allowed, **kwargs) -> None:
        super().__init__(fh, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not allowed here")
        if module == "__builtin__":
            module = "builtins"
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix):  # NumPy 2 renamed numpy.core to numpy._core
                import importlib

                rest = module[len(prefix):]
                for cand in (f"numpy._core.{rest}", f"numpy.core.{rest}"):
                    try:
                        return getattr(importlib.import_module(cand), name)
                    except (ImportError, AttributeError):
                        continue
        return super().find_class(module, name)


def read_pickle(path: PathLike, what: str = "pickle", *, error: ErrorType = InputError,
                allowed: Iterable[Tuple[str, str]] = NUMPY_PICKLE_GLOBALS, encoding: str = "latin1") -> Any:
    """Load a pickle that may hold only plain Python values and the classes in ``allowed``
    (NumPy arrays by default), so that a hostile file cannot run code; a corrupted,
    truncated or hostile file raises ``error`` naming the file and what went wrong.

    ``encoding="latin1"`` reads the NumPy arrays of Python 2 pickles.
    """
    from .io import require_file

    p = require_file(path, what, error)
    allowed_set = set(allowed) | _SAFE_BUILTINS
    try:
        with open(p, "rb") as fh:
            return _RestrictedUnpickler(fh, allowed_set, encoding=encoding).load()
    except OSError as exc:
        raise error(f"cannot read the {what} ({exc.strerror})", file=p) from None
    except RecursionError:
        raise error(f"expected a {what}, found a pickle nested too deeply to read", file=p) from None
    except MemoryError:
        raise error(f"expected a {what}, found a pickle too large for memory (corrupted?)", file=p) from None
    except Exception as exc:  # a corrupted pickle raises almost any type; each becomes one message
        raise error(f"expected a {what}, found an unreadable pickle ({exc.__class__.__name__}: {exc})",
                    file=p) from None
