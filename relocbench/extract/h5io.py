"""Checked reading of the HDF5 files extraction takes as input.

Every HDF5 file that ``extract-features`` and ``merge-features`` read -- the ``--pca-from``
file, the output of an earlier run on ``--resume``, the shards given to ``merge-features`` --
is opened by :func:`open_h5` and read inside :func:`h5_reading`. A missing path, a FIFO or
device, a file that is not HDF5 (text, another format), a truncated or scribbled one, a
missing attribute or one of the wrong type become one :class:`relocbench.errors.FeatureError`
(or the error class the caller names) naming the file, the item and what was expected;
h5py's ``OSError``/``KeyError``/``TypeError`` never reach the user.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any, Iterator, Optional, Type, Union

import numpy as np

from ..errors import FeatureError, RelocbenchError
from ..io import require_file

__all__ = ["open_h5", "h5_reading", "H5_ERRORS", "read_attr", "json_attr", "plain"]

PathLike = Union[str, os.PathLike]

#: What h5py (and numpy conversions of what it returns) raise on a damaged or foreign file.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def open_h5(path: PathLike, what: str, error: Type[RelocbenchError] = FeatureError):
    """``h5py.File(path, "r")`` after checking that ``path`` is a regular, readable HDF5 file.

    ``what`` says what the file should be ("a features file written by relocbench
    extract-features (--pca-from)"); every message ends with "expected WHAT".
    """
    import h5py

    p = require_file(path, "HDF5 file", error)
    try:
        is_h5 = h5py.is_hdf5(str(p))
    except H5_ERRORS as exc:
        raise error(f"unreadable file ({_reason(exc)}); expected {what}", file=p) from None
    if not is_h5:
        raise error(f"not an HDF5 file; expected {what}", file=p)
    try:
        return h5py.File(p, "r")
    except H5_ERRORS as exc:
        raise error(f"unreadable HDF5 file, truncated or damaged ({_reason(exc)}); expected {what}",
                    file=p) from None


@contextlib.contextmanager
def h5_reading(path: PathLike, what: str, item: Optional[str] = None,
               error: Type[RelocbenchError] = FeatureError) -> Iterator[None]:
    """Turn what h5py raises while reading (a truncated or scribbled file) into ``error``."""
    try:
        yield
    except RelocbenchError:
        raise
    except H5_ERRORS as exc:
        raise error(f"unreadable HDF5 content, truncated or damaged ({_reason(exc)}); expected {what}",
                    file=path, item=item) from None


def plain(v: Any) -> Any:
    """An HDF5 attribute value as plain Python (bytes decoded, numpy scalars and arrays unwrapped)."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return plain(v.item())
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()] if v.ndim else plain(v[()])
    return v


def _kind(v: Any) -> str:
    return type(v).__name__ if not isinstance(v, (list, tuple)) else f"a list of {len(v)}"


def read_attr(attrs, key: str, kind: str, path: PathLike, what: str, *, item: Optional[str] = None,
              default: Any = ..., error: Type[RelocbenchError] = FeatureError) -> Any:
    """Attribute ``key`` as ``kind``: ``"str"``, ``"int"`` (a whole number), ``"count"`` (an int >= 0),
    ``"positive"`` (a finite float > 0) or ``"float"`` (finite). ``default``: the value when absent
    (otherwise absence is an error)."""
    try:
        present = key in attrs
        raw = attrs[key] if present else None
    except H5_ERRORS as exc:
        raise error(f"attribute {key!r} is unreadable ({_reason(exc)}); expected {what}", file=path,
                    item=item) from None
    if not present:
        if default is not ...:
            return default
        raise error(f"lacks the {key!r} attribute; expected {what}", file=path, item=item)
    try:
        v = plain(raw)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise error(f"attribute {key!r} is unreadable ({_reason(exc)}); expected {what}", file=path,
                    item=item) from None
    if kind == "str":
        if isinstance(v, str):
            return v
        expected = "a string"
    elif kind in ("int", "count"):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and (kind == "int" or v >= 0):
            return v
        expected = "a whole number" + (" >= 0" if kind == "count" else "")
    elif kind in ("float", "positive"):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
                (kind == "float" or v > 0):
            return float(v)
        expected = "a finite number" + (" > 0" if kind == "positive" else "")
    else:  # pragma: no cover - a programming error
        raise ValueError(kind)
    raise error(f"attribute {key!r} is {v!r} ({_kind(v)}); expected {expected} in {what}", file=path, item=item)


def json_attr(attrs, key: str, path: PathLike, what: str, *, item: Optional[str] = None, default: Any = ...,
              want: type = dict, error: Type[RelocbenchError] = FeatureError) -> Any:
    """Attribute ``key`` parsed as JSON text holding a ``want`` (dict or list)."""
    text = read_attr(attrs, key, "str", path, what, item=item, default=None if default is not ... else ...,
                     error=error)
    if text is None:
        return default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise error(f"attribute {key!r} is not JSON ({_reason(exc)}); expected {what}", file=path,
                    item=item) from None
    if not isinstance(value, want):
        raise error(f"attribute {key!r} holds JSON {type(value).__name__}; expected a JSON "
                    f"{'object' if want is dict else 'list'} in {what}", file=path, item=item)
    return value
