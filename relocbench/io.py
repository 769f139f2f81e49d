"""Small I/O helpers: atomic writes, hashing and JSON reading with clear errors."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Type, Union

from .errors import InputError, OutputExistsError, RelocbenchError

PathLike = Union[str, os.PathLike]

__all__ = [
    "sha256_file",
    "sha256_bytes",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_dir",
    "check_output",
    "read_json",
    "require_file",
    "dumps_json",
]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _umask_mode(mode: int) -> int:
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def check_output(path: PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force``."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(
            "exists already; pass --force to overwrite it", file=p
        )
    return p


def atomic_write_bytes(path: PathLike, data: bytes, *, force: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    p = check_output(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, _umask_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p


def atomic_write_text(path: PathLike, text: str, *, force: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), force=force)


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: PathLike, obj: Any, *, force: bool = True) -> Path:
    return atomic_write_text(path, dumps_json(obj), force=force)


@contextlib.contextmanager
def atomic_dir(path: PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    On any exception (including KeyboardInterrupt) the temporary folder is removed and
    ``path`` is left as it was.
    """
    p = check_output(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    os.chmod(tmp, _umask_mode(0o777))
    try:
        yield tmp
        if p.exists():
            old = p.with_name(f".{p.name}.old-{os.getpid()}")
            os.replace(p, old)
            os.replace(tmp, p)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_file(path: PathLike, what: str = "file", error: Type[RelocbenchError] = InputError) -> Path:
    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found", file=p)
    if not p.is_file():
        raise error(f"expected a {what}, found a folder", file=p)
    if not os.access(p, os.R_OK):
        raise error(f"{what} is not readable", file=p)
    return p


def read_json(path: PathLike, what: str = "JSON file", error: Type[RelocbenchError] = InputError,
              *, object_pairs_hook=None, malformed: str = "malformed") -> Any:
    """Read JSON, turning every failure into a one-line error naming the file and line."""
    p = require_file(path, what, error)
    try:
        with open(p, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"), object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        raise error(
            f"{malformed} JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=p
        ) from None
    except UnicodeDecodeError:
        raise error("expected UTF-8 JSON text, found undecodable bytes", file=p) from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}", file=p) from None
