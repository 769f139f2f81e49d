"""Small I/O helpers: atomic writes, hashing and JSON reading with clear errors.

Outputs (``atomic_write_*``, ``atomic_dir``) are written beside their final path and renamed
into place at the end; the rename never replaces an output that another process finished
meanwhile unless ``force``; an exception, Ctrl-C or (with :func:`install_sigterm_handler`)
SIGTERM removes the temporary file or folder. :func:`check_output` refuses an existing or
unwritable output before the work starts.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Type, Union

from .errors import ConfigError, InputError, OutputExistsError, RelocbenchError

PathLike = Union[str, os.PathLike]

__all__ = [
    "sha256_file",
    "sha256_bytes",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_dir",
    "check_output",
    "check_writable",
    "refuse_output_among_inputs",
    "refuse_special_output",
    "install_sigterm_handler",
    "Terminated",
    "read_json",
    "JsonMapping",
    "Typed",
    "count_json_keys",
    "key_ends",
    "trim_heap",
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


def refuse_special_output(path: PathLike, *, option: str = "output", allow_dir: bool = True) -> None:
    """Refuse an existing output that is a FIFO, socket or device (or a folder, unless
    ``allow_dir``), ``--force`` or not: renaming a file over ``/dev/null`` (as root) would
    destroy the device."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return  # absent (or a broken link): written normally
    if stat.S_ISREG(mode) or (allow_dir and stat.S_ISDIR(mode)):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    raise ConfigError(f"{option} is {kind}, not a file: an output is never written over it (choose another path; "
                      "--force does not allow this)", file=p)


def _refuse_existing(p: Path, force: bool) -> None:
    refuse_special_output(p)
    if not force and (p.exists() or p.is_symlink()):
        raise OutputExistsError("exists already; pass --force to overwrite it", file=p)


def check_writable(path: PathLike) -> Path:
    """Check, before any work, that ``path`` can be created: its nearest existing parent
    must be a folder in which a file can be made (probed, since permission bits say little
    for root, ``/proc`` or a read-only mount). Raises ConfigError naming the path."""
    p = Path(path)
    anc = Path(os.path.abspath(p)).parent
    while not (anc.exists() or anc.is_symlink()) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"cannot be created: {anc} is a file, not a folder", file=p)
    try:
        probe = tempfile.mkdtemp(prefix=".relocbench-probe-", dir=anc)
        os.rmdir(probe)
    except OSError as exc:
        raise ConfigError(f"cannot be written: creating an entry in {anc} fails ({exc.strerror})",
                          file=p) from None
    return p


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same resolved path (through symbolic
    links and ``..``), or, where both exist, the same inode (hard links, bind mounts)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
    except (OSError, ValueError):
        return False
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_output_among_inputs(output: PathLike, inputs: Iterable[PathLike], *,
                               option: str = "output") -> None:
    """Raise ConfigError when ``output`` is, or resolves to, one of ``inputs`` (or a folder
    holding one of them, when the output is written as a folder that replaces its old
    contents). ``--force`` never allows it: writing there would destroy the input."""
    out = Path(output)
    out_real = os.path.realpath(out)
    for item in inputs:
        if item is None:
            continue
        src = Path(item)
        if _same_file(out, src):
            raise ConfigError(f"{option} is the input {src}: writing it would destroy the input "
                              "(choose another path; --force does not allow this)", file=out)
        src_real = os.path.realpath(src)
        if out.is_dir() and not out.is_symlink() and src_real.startswith(out_real.rstrip(os.sep) + os.sep):
            raise ConfigError(f"{option} is a folder that holds the input {src}: replacing it would "
                              "destroy the input (choose another path)", file=out)


def check_output(path: PathLike, force: bool, *, inputs: Iterable[PathLike] = (),
                 option: str = "output") -> Path:
    """Refuse to overwrite an existing output unless ``force``, refuse an output that is one
    of ``inputs`` (whatever ``force`` says), and refuse an output that cannot be written
    (under a file, ``/proc``, a read-only folder) before the work starts."""
    p = Path(path)
    refuse_output_among_inputs(p, inputs, option=option)
    refuse_special_output(p, option=option)
    _refuse_existing(p, force)
    return check_writable(p)


def _prepare_parent(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {p.parent} ({exc.strerror})", file=p) from None


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (atomically where the system allows:
    ``renameat2(RENAME_NOREPLACE)`` on Linux); raise OutputExistsError if it does."""
    appeared = OutputExistsError(
        "appeared while this command was running (another process wrote it?); it was left as it "
        "is and nothing was written; pass --force to overwrite it", file=dst)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        rc = renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise appeared
        if err not in (errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL)):
            raise OSError(err, os.strerror(err), str(dst))
    # Portable fallback: a hard link refuses an existing name; renaming a folder refuses a
    # non-empty one; the check just before leaves only a short race for an empty folder.
    if os.path.lexists(dst):
        raise appeared
    if src.is_dir():
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise appeared from None
            raise
        return
    try:
        os.link(src, dst)
    except FileExistsError:
        raise appeared from None
    os.unlink(src)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _commit(tmp: Path, p: Path, force: bool) -> None:
    """Move the finished ``tmp`` to ``p``: without ``force`` never over an entry that
    appeared meanwhile; with ``force`` over whatever is there (restored if the move fails)."""
    if not force:
        _rename_noreplace(tmp, p)
        return
    for _ in range(3):  # another forced writer may move things between the steps
        if not (p.exists() or p.is_symlink()):
            try:
                _rename_noreplace(tmp, p)
                return
            except OutputExistsError:
                continue
        refuse_special_output(p)  # a device or FIFO that appeared meanwhile is never moved aside
        old = p.with_name(f".{p.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.replace(p, old)
        except FileNotFoundError:
            continue
        try:
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.replace(old, p)
            raise
        try:
            _remove(old)
        except BaseException:  # an interrupt during the removal: finish it, then go on
            _remove(old)
            raise
        return
    os.replace(tmp, p)


def atomic_write_bytes(path: PathLike, data: bytes, *, force: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    Without ``force`` an existing ``path`` is refused, also one that appeared while writing.
    """
    p = Path(path)
    _refuse_existing(p, force)
    _prepare_parent(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise ConfigError(f"cannot be written ({exc.strerror})", file=p) from None
    try:
        os.chmod(tmp, _umask_mode(0o666))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _commit(Path(tmp), p, force)
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

    On any exception (including KeyboardInterrupt, and SIGTERM once
    :func:`install_sigterm_handler` is installed) the temporary folder is removed and
    ``path`` is left as it was. Without ``force`` the final rename refuses a ``path`` that
    appeared while the body ran (two concurrent builds: the later one fails with
    OutputExistsError instead of replacing the other's output).
    """
    p = check_output(path, force)
    _prepare_parent(p)
    tmp: Optional[Path] = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
        os.chmod(tmp, _umask_mode(0o777))
        yield tmp
        _commit(tmp, p, force)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM, once
    :func:`install_sigterm_handler` is installed.

    It is a KeyboardInterrupt, so every cleanup that handles Ctrl-C (the atomic writers
    here, training loops) handles SIGTERM the same way. ``exit_code`` is ``128 + signum``
    (143 for SIGTERM), the status a shell reports for a process ended by the signal.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"terminated by {signal.Signals(self.signum).name}")


_sigterm = {"installed": False, "received": False}


def _on_sigterm(signum, frame) -> None:
    if _sigterm["received"]:
        return  # the first one is being handled: let its cleanup finish
    _sigterm["received"] = True
    raise Terminated(signum)


def install_sigterm_handler() -> bool:
    """Make SIGTERM raise :class:`Terminated` in the main thread, so that temporary outputs
    are removed as on Ctrl-C. Further SIGTERMs while the first is being handled are ignored
    (the cleanup finishes; SIGKILL still ends the process at once).

    Idempotent. Returns False (and does nothing) outside the main thread, where Python
    cannot install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm["installed"] = True
    _sigterm["received"] = False
    return True


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def require_file(path: PathLike, what: str = "file", error: Type[RelocbenchError] = InputError) -> Path:
    """Check that ``path`` is a readable regular file (following symbolic links); raise
    ``error`` naming the file and what it is instead (missing, a broken link, a folder, a
    FIFO, a device, ...)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise error(f"{what} not found: a symbolic link to the missing {os.readlink(p)}", file=p) from None
        raise error(f"{what} not found", file=p) from None
    except NotADirectoryError:
        raise error(f"{what} not found: a part of the path is a file, not a folder", file=p) from None
    except OSError as exc:
        raise error(f"cannot read the {what} ({exc.strerror})", file=p) from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"expected a regular file ({what}), found {kind}", file=p)
    if not os.access(p, os.R_OK):
        raise error(f"{what} is not readable", file=p)
    return p


# ----------------------------------------------------------------------------- JSON reading
#
# One reading layer for every JSON input. Text is parsed with orjson (fast, strict JSON);
# where orjson refuses something (NaN, Infinity, 1e400, a lone surrogate, a syntax error)
# the text is parsed again with the standard library, so that the language accepted and the
# syntax messages stay those of ``json``. The checks every reader needs are made here once:
# UTF-8 text, no lone surrogate, no integer a float cannot hold, nesting Python can read,
# and (``unique_keys``) no key twice in one object, which ``json`` and orjson both resolve
# silently by keeping the last. A document whose bulk is one mapping (prediction
# ``results``, an ActivityNet ``database``) is read in chunks by :class:`JsonMapping`, so
# that memory stays near the size of the arrays made from it.

_JSON_MAX_DIGITS = 308  # an integer with more digits than this may not fit a float
_CHUNK_BYTES = 1 << 18
_MAP_BYTES = 1 << 25  # files at least this large are memory-mapped and released as they are read
_RELEASE_BYTES = 1 << 26  # ... in steps of this many bytes
_SPLIT_BYTES = 1 << 26  # a mapping member at least this large is read by two processes (see JsonMapping.map_chunks)


def _json_position(data: bytes, offset: int) -> str:
    """``line L, column C`` of byte ``offset`` of ``data`` (columns count characters, as ``json``'s)."""
    offset = max(0, min(offset, len(data)))
    if not isinstance(data, bytes):  # a memory map
        data = bytes(data[:offset])
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", "replace")) + 1
    return f"line {line}, column {col}"


class Typed:
    """The flag of a slice decoded by a typed decoder (see :meth:`JsonMapping.map_chunks`):
    ``info`` is what the decoder attached to it."""

    __slots__ = ("info",)

    def __init__(self, info: Any = None) -> None:
        self.info = info


class _BadCut(Exception):
    """A guessed boundary between two members is not one: read on in order from ``pos``."""

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


def _page_size() -> int:
    import mmap

    return mmap.PAGESIZE


class _TooLarge(Exception):
    """An integer in the text that no float can hold (raised by :func:`_parse_int`)."""


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits <= _JSON_MAX_DIGITS:
        return int(text)
    if digits > 4000:  # longer than Python converts (sys.get_int_max_str_digits)
        raise _TooLarge(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _TooLarge(text) from None
    return value


class _Duplicates(Exception):
    """Keys listed twice: ``top`` in the outermost object, ``nested`` in objects inside it."""

    def __init__(self, top, nested) -> None:
        super().__init__((top + nested)[0])
        self.top, self.nested = top, nested


def _lone_surrogate(obj: Any) -> Optional[str]:
    """The first string (key or value) in ``obj`` that UTF-8 cannot hold, or None."""
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    return v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def _loads_exact(data: bytes, where, *, file: Path, error: Type[RelocbenchError], malformed: str,
                 unique_keys: bool, object_pairs_hook=None) -> Any:
    """Parse ``data`` with the standard library plus this layer's checks. ``where(i)`` names
    the place in the file (``line L, column C``) of byte ``i`` of ``data``."""
    import re

    calls = [0]
    dups = []  # (index of the object's hook call, key); the outermost object is the last call

    def hook(pairs):
        d = dict(pairs)
        if unique_keys and len(d) != len(pairs):
            seen = set()
            for k, _ in pairs:
                if k in seen:
                    dups.append((calls[0], k))
                seen.add(k)
        calls[0] += 1
        return d if object_pairs_hook is None else object_pairs_hook(pairs)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"expected UTF-8 JSON text, found the undecodable byte 0x{data[exc.start]:02x} at "
                    f"{where(exc.start)}", file=file) from None
    try:
        doc = json.loads(text, parse_int=_parse_int,
                         object_pairs_hook=hook if (unique_keys or object_pairs_hook) else None)
    except json.JSONDecodeError as exc:
        raise error(f"{malformed} JSON at {where(len(text[:exc.pos].encode('utf-8')))}: {exc.msg}",
                    file=file) from None
    except _TooLarge as exc:
        s = str(exc)
        d = s.lstrip("-")
        shown = d if len(d) <= 24 else f"{d[:12]}... ({len(d):,} digits)"
        m = re.compile(rb"(?<![0-9.eE+\-])-?" + d[:64].encode()).search(data)
        at = f" at {where(m.start())}" if m else ""
        raise error(f"expected a number that fits a float (below 1.8e308), found the integer "
                    f"{'-' if s.startswith('-') else ''}{shown}{at}", file=file) from None
    except RecursionError:
        raise error("expected JSON nested at most about 900 levels deep, found deeper nesting of "
                    "arrays or objects", file=file) from None
    if dups:
        last = calls[0] - 1
        raise _Duplicates([k for c, k in dups if c == last], [k for c, k in dups if c != last])
    bad = _lone_surrogate(doc)
    if bad is not None:
        ch = next(c for c in bad if 0xD800 <= ord(c) <= 0xDFFF)
        m = re.compile(rb"\\u" + f"{ord(ch):04x}".encode(), re.I).search(data)
        at = f" at {where(m.start())}" if m else ""
        raise error(f"expected text that UTF-8 can hold, found a string with a lone surrogate "
                    f"({ascii(bad)[:60]}){at}", file=file)
    return doc


def _loads_fast(data: bytes):
    """orjson's parse of ``data``, or None where orjson refuses it (the exact reader decides)."""
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def count_json_keys(obj: Any) -> int:
    """The number of keys of every object in ``obj`` (nested ones included)."""
    n = 0
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            n += len(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


_KEY_END = None


def key_ends(text: bytes) -> int:
    """The number of places in JSON ``text`` where a ``"`` is followed (after optional
    whitespace) by ``:``.

    Every key ends so, so this is at least the number of keys in the text; it is more only
    where a string starts with ``:`` or holds ``\\"`` then ``:``. A parse holding as many keys
    as this (:func:`count_json_keys`) therefore lost none to a repeated key; a parse holding
    fewer either lost one or met such a string, and the exact reader decides. Counted with
    array operations (the byte before every ``:``), or a regular expression where whitespace
    precedes a colon.
    """
    global _KEY_END
    import numpy as np

    a = np.frombuffer(text, dtype=np.uint8)
    pos = np.flatnonzero(a == 58)  # ':'
    prev = a[pos[pos > 0] - 1] if pos.size and pos[0] == 0 else a[pos - 1]
    if not ((prev == 32) | (prev == 9) | (prev == 10) | (prev == 13)).any():
        return int(np.count_nonzero(prev == 34))  # '"'
    if _KEY_END is None:
        import re

        _KEY_END = re.compile(rb'"[ \t\n\r]*:')
    return sum(1 for _ in _KEY_END.finditer(text))


def _duplicate_error(keys, name: str, where: str, file, error) -> RelocbenchError:
    return error(f"{name} {keys[0]!r} appears more than once {where} ({len(keys)} duplicate key(s) in all)",
                 file=file)


def _read_bytes(p: Path, what: str, error) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise error(f"cannot read the {what} ({exc.strerror})", file=p) from None


def read_json(path: PathLike, what: str = "JSON file", error: Type[RelocbenchError] = InputError,
              *, object_pairs_hook=None, malformed: str = "malformed", unique_keys: bool = False) -> Any:
    """Read a JSON document, turning every failure into one line naming the file, the line
    and the column.

    The text must be UTF-8, hold no lone surrogate (``"\\ud800"``, which Parquet and UTF-8
    output refuse) and no integer too large for a float, and nest no deeper than Python
    reads; with ``unique_keys`` no object may list a key twice (``json`` keeps the last one
    silently). NaN and Infinity are read as floats, as ``json`` does: readers that need
    finite numbers check their values.
    """
    p = require_file(path, what, error)
    data = _read_bytes(p, what, error)
    if object_pairs_hook is None:
        doc = _loads_fast(data)
        if doc is not None and (not unique_keys or count_json_keys(doc) == key_ends(data)):
            return doc
    try:
        return _loads_exact(data, lambda i: _json_position(data, i), file=p, error=error, malformed=malformed,
                            unique_keys=unique_keys, object_pairs_hook=object_pairs_hook)
    except _Duplicates as exc:
        raise _duplicate_error(exc.top + exc.nested, "key", "in one JSON object", p, error) from None


_LIBC = []


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). The chunk buffers freed while reading otherwise stay in the heap, counted in
    the process's memory for the rest of the run."""
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(getattr(ctypes.CDLL(None), "malloc_trim", None))
        except (OSError, AttributeError, TypeError):  # pragma: no cover - not glibc
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


def _map_file(p: Path, what: str, error):
    """The bytes of ``p``: a read-only memory map for a large file (its pages can be released
    once read, see :meth:`JsonMapping._release`), else the file read into memory."""
    import mmap

    try:
        size = p.stat().st_size
        if size < _MAP_BYTES or not hasattr(mmap.mmap, "madvise"):
            return _read_bytes(p, what, error)
        with open(p, "rb") as fh:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read the {what} ({getattr(exc, 'strerror', None) or exc})", file=p) from None


class JsonMapping:
    """A JSON document (an object) whose member ``key`` is a large object, read in chunks.

    ``header`` is the document with ``header[key]`` replaced by ``{}``; :meth:`chunks`
    yields consecutive slices of ``document[key]`` as dicts, in file order, each checked as
    :func:`read_json` checks a document with ``unique_keys``. A key of ``document[key]``
    listed twice is an error calling it ``item_name``, raised after the last chunk. Where the
    member is not an object, or the layout is unusual, the whole document is read at once:
    ``chunked`` is False, ``header`` is the whole document and :meth:`chunks` yields nothing.

    ``boundary`` is a regular expression (bytes) whose first ``,`` separates two members of
    the mapping: the chunks are cut there (a wrong cut, inside a string, is noticed by the
    parser and the chunk taken longer). ``count_keys(chunk)`` returns the number of keys of
    the objects in a chunk (see :func:`count_json_keys`, the default; a reader that knows
    the layout counts faster), compared with :func:`key_ends` of its text to notice a key
    listed twice. ``whole=True`` reads the whole document
    at once (for callers that want it as Python objects).
    """

    def __init__(self, path: PathLike, key: str, what: str, error: Type[RelocbenchError] = InputError, *,
                 boundary: bytes = rb'\}\s*\]\s*,\s*"', malformed: str = "malformed", item_name: str = "key",
                 count_keys=None, chunk_bytes: int = _CHUNK_BYTES, whole: bool = False) -> None:
        import re

        self.path = require_file(path, what, error)
        self.key, self.what, self.error, self.malformed, self.item_name = key, what, error, malformed, item_name
        self._boundary = re.compile(boundary)
        self._count = count_keys or count_json_keys
        self._chunk = max(1, int(chunk_bytes))
        self._released = 0
        self._typed = None
        self.data = _read_bytes(self.path, what, error) if whole else _map_file(self.path, what, error)
        self.span = None if whole else self._locate()
        self.chunked = self.span is not None
        if not self.chunked and not isinstance(self.data, bytes):
            self.data = bytes(self.data)
        data = self.data
        if self.chunked:
            start, end = self.span
            text = data[:start] + b"{}" + data[end + 1:]
            shift = end - start - 1  # header byte i >= start + 2 is file byte i + shift
            self.header = self._parse(text, lambda i: _json_position(data, i if i <= start else i + shift))
        else:
            self.header = self._parse(data, lambda i: _json_position(data, i), whole=True)
            self.data = b""

    def _parse(self, text: bytes, where, *, whole: bool = False, top_dups=None):
        """``text`` parsed with every check; repeated keys of its outermost object go to
        ``top_dups`` when given (a chunk), else raise."""
        doc = _loads_fast(text)
        if doc is not None and self._keys(doc, whole) == key_ends(text):
            return doc
        try:
            return _loads_exact(text, where, file=self.path, error=self.error, malformed=self.malformed,
                                unique_keys=True)
        except _Duplicates as exc:
            if top_dups is not None and not exc.nested:
                top_dups.extend(exc.top)
                return _loads_exact(text, where, file=self.path, error=self.error, malformed=self.malformed,
                                    unique_keys=False)
            keys = exc.nested + exc.top
            if whole:  # keys of the member are named as items
                member = _loads_exact(text, where, file=self.path, error=self.error, malformed=self.malformed,
                                      unique_keys=False)
                member = member.get(self.key) if isinstance(member, dict) else None
                if isinstance(member, dict) and keys[0] in member:
                    raise _duplicate_error(keys, self.item_name, f"in {self.key!r}", self.path,
                                           self.error) from None
            raise _duplicate_error(keys, "key", "in one JSON object", self.path, self.error) from None

    def _keys(self, doc, whole: bool) -> int:
        """:func:`count_json_keys` of a document; the mapping of a whole one counted with
        ``count_keys`` (faster where the layout is known)."""
        member = doc.get(self.key) if whole and isinstance(doc, dict) else None
        if isinstance(member, dict):
            try:
                n = self._count(member)
            except (TypeError, AttributeError, KeyError):
                n = count_json_keys(member)
            rest = {k: v for k, v in doc.items() if k != self.key}
            return n + count_json_keys(rest) + 1
        return count_json_keys(doc)

    def _locate(self):
        """(offset of the member's ``{``, offset of its ``}``) when cheaply found, else None."""
        import re

        data = self.data
        pat = re.compile(rb'"' + re.escape(json.dumps(self.key).encode()[1:-1]) + rb'"\s*:\s*\{')
        for tries, m in enumerate(pat.finditer(data)):
            if tries >= 4:
                return None
            # a key of the outermost object iff the text before it starts an object
            if _loads_fast(data[:m.start()] + b'"": 0}') is None:
                continue
            start = m.end() - 1
            head = data[:start] + b"{}"
            lo = max(start + 1, len(data) - (1 << 16))
            end = len(data)
            for _ in range(64):  # the last '}' after which the rest of the text completes the head
                end = data.rfind(b"}", lo, end)
                if end < 0:
                    return None
                if _loads_fast(head + data[end + 1:]) is not None:
                    break
            else:
                return None
            # the text from the last cut point to `end` must be the member's tail, else the
            # member closed earlier (an object member follows it): take that end
            cut = start + 1
            for b in self._boundary.finditer(data, max(start + 1, end - 4 * self._chunk), end):
                cut = b.start() + b.group().index(b",") + 1
            try:
                tail = "{" + data[cut:end].decode("utf-8") + "}"
                _, stop = json.JSONDecoder().raw_decode(tail)
            except (UnicodeDecodeError, ValueError, RecursionError):
                return None
            if stop != len(tail):
                end = cut - 1 + len(tail[:stop].encode("utf-8")) - 1
                if _loads_fast(head + data[end + 1:]) is None:
                    return None
            return start, end
        return None

    def _release(self, pos: int) -> None:
        """Give the pages of a memory-mapped file before ``pos`` back to the system (they are
        read again from the file if needed), and the heap's freed chunk buffers, so that
        memory stays near the arrays made so far plus one chunk."""
        import mmap

        if pos - self._released >= _RELEASE_BYTES:
            upto = pos - pos % mmap.PAGESIZE
            if isinstance(self.data, mmap.mmap):
                self.data.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
            self._released = upto
            trim_heap()

    def chunks(self, flags: bool = False):
        """Consecutive slices of ``document[key]`` as dicts, each checked (see the class doc).

        With ``flags``, (slice, may hold booleans) pairs: the second is False when the
        slice's text holds no ``true`` or ``false`` (a number column then needs no check
        that none of its values is a boolean)."""
        if not self.chunked:
            return
        seen, dups = set(), []
        try:
            for d in self._run(self._first_member(self.span[0]), self.span[1], seen, dups):
                yield d if flags else d[0]
                d = None
        finally:
            self._close()
        if dups:
            raise _duplicate_error(dups, self.item_name, f"in {self.key!r}", self.path, self.error)

    def map_chunks(self, fn, processes: Optional[int] = None, typed=None) -> list:
        """``[fn(slice, may hold booleans) for each slice of chunks(flags=True)]``, in file
        order, with the same checks and errors.

        ``typed(text)`` (optional) decodes a slice's text straight into the layout its reader
        expects, returning ``(slice, number of keys in it, info)``, or None where the text is
        not exactly that layout: a slice so decoded whose key count equals :func:`key_ends` of
        its text is passed as ``fn(slice, Typed(info))``; every other slice is parsed and
        checked as :meth:`chunks` does (so the errors stay the same).

        A large member is read by two processes where the machine has two cores and
        ``os.fork`` (Linux): this one reads the first half, a forked child the second and
        sends back its results (``fn`` must return picklable values; it may raise, and the
        first error in file order is raised, as when reading in order). Repeated keys across
        the halves are found on the keys the child sends. ``processes=1`` (or the
        environment variable ``RELOCBENCH_READ_PROCESSES=1``) reads in order in one process;
        by default two are used where two cores are free to this process.
        """
        if not self.chunked:
            return []
        start, end = self.span
        seen, dups = set(), []
        self._typed = typed
        try:
            mid = self._split_point(processes)
            if mid is None:
                out = [fn(*d) for d in self._run(self._first_member(start), end, seen, dups)]
            else:
                out = self._map_in_two(fn, start, mid, end, seen, dups)
        finally:
            self._typed = None
            self._close()
        if dups:
            raise _duplicate_error(dups, self.item_name, f"in {self.key!r}", self.path, self.error)
        return out

    def _close(self) -> None:
        if hasattr(self.data, "close"):
            self.data.close()
        self.data = b""
        trim_heap()

    def _first_member(self, after: int) -> int:
        """The offset of the first non-blank byte after offset ``after``."""
        import re

        return re.compile(rb"\s*").match(self.data, after + 1).end()

    def _split_point(self, processes: Optional[int]):
        """Where a second process starts reading (the offset of a ``,`` between two
        members near the middle), or None to read in one process."""
        from ._fork import second_process

        start, end = self.span
        if end - start < _SPLIT_BYTES or not second_process(processes):
            return None
        m = self._boundary.search(self.data, start + (end - start) // 2, end)
        return None if m is None else m.start() + m.group().index(b",")

    def _map_in_two(self, fn, start: int, mid: int, end: int, seen: set, dups: list) -> list:
        from ._fork import Forked

        def second_half():  # in the child
            self._released = mid - mid % _page_size()
            s2, d2, keys = set(), [], []
            return [fn(*d) for d in self._run(self._first_member(mid), end, s2, d2, keys)], keys, d2

        with Forked(second_half, f"reading {self.path} in a second process") as child:
            first = []
            try:
                for d in self._run(self._first_member(start), mid, seen, dups, strict_end=False):
                    first.append(fn(*d))
                    d = None
            except _BadCut as cut:  # the middle cut is not a member boundary: go on in order
                child.cancel()
                first.extend(fn(*d) for d in self._run(cut.pos, end, seen, dups))
                return first
            got = child.result(fallback=lambda: None)
        if got is None:  # the child died (killed, out of memory): read its half here
            return first + [fn(*d) for d in self._run(self._first_member(mid), end, seen, dups)]
        res, keys, d2 = got
        got = None
        if d2 or not seen.isdisjoint(keys):
            for k in keys:
                if k in seen:
                    dups.append(k)
                else:
                    seen.add(k)
        return first + res

    def _run(self, pos: int, end: int, seen: set, dups: list, keys: Optional[list] = None,
             strict_end: bool = True):
        """(slice, may hold booleans) of the members from offset ``pos`` to ``end``, with
        garbage collection off while each is parsed (the parsed chunks hold no reference
        cycles: collecting while they are made would only walk them again and again)."""
        gc_was_on = gc.isenabled()
        parts = self._chunks(self.data, pos, end, seen, dups, keys, strict_end)
        while True:
            gc.disable()
            try:
                d = next(parts, None)
            finally:
                if gc_was_on:
                    gc.enable()
            if d is None:
                return
            yield d
            d = None

    def _chunks(self, data: bytes, pos: int, end: int, seen: set, dups: list, keys: Optional[list],
                strict_end: bool):
        """``strict_end=False``: ``end`` is a guessed boundary; a last slice that only the
        exact reader would take raises :class:`_BadCut` (the caller reads on in order)."""
        import re

        space = re.compile(rb"\s*")
        view = memoryview(data)
        typed = self._typed
        while pos < end:
            size = self._chunk
            while True:
                cut = end
                if pos + size < end:
                    m = self._boundary.search(data, pos + size, end)
                    if m is not None:
                        cut = m.start() + m.group().index(b",")
                buf = b"".join((b"{", view[pos:cut], b"}"))  # one copy of the slice
                got = typed(buf) if typed is not None else None
                if got is not None:
                    break
                d = _loads_fast(buf)
                if d is not None or cut == end:
                    break
                size = 2 * (cut - pos)  # perhaps cut inside a string or a nested value: take more
            flag = None
            if got is not None:
                if got[1] == key_ends(buf):  # every key of the text is one of the layout's
                    d, flag = got[0], Typed(got[2])
                else:
                    d = _loads_fast(buf)
                got = None
            if flag is None and d is not None:
                try:
                    n = self._count(d)
                except (TypeError, AttributeError, KeyError):
                    n = -1
                ends = key_ends(buf)
                if n != ends and count_json_keys(d) != ends:
                    d = None
            if flag is None and d is None:
                if not strict_end and cut == end:
                    raise _BadCut(pos)
                top = []
                off = pos - 1
                d = self._parse(buf, lambda i: _json_position(data, off + i), top_dups=top)
                dups.extend(top)
            if not seen.isdisjoint(d):
                dups.extend(k for k in d if k in seen)
            seen.update(d)
            if keys is not None:
                keys.extend(d)
            yield d, (flag or b"true" in buf or b"false" in buf)
            pos = space.match(data, cut + 1).end()
            self._release(pos)
        view.release()  # the memory map can be closed now
