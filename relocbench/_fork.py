"""Run one function in a forked child while this process goes on (the second core of a laptop
or a CI machine), for the pure, array-heavy steps of reading and scoring large inputs.

Only on Linux, where ``os.fork`` is cheap and safe for this use (the child computes with
numpy and orjson/msgspec on memory it shares copy-on-write, sends its result down a pipe and
leaves with ``os._exit``). Elsewhere, with one free core, or with
``RELOCBENCH_READ_PROCESSES=1``, :func:`second_process` says no and callers compute in order.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import warnings
from typing import Any, Callable, Optional

__all__ = ["second_process", "Forked"]


def second_process(processes: Optional[int] = None) -> bool:
    """Whether a forked second process may share the work: ``processes`` (or the environment
    variable ``RELOCBENCH_READ_PROCESSES``; by default the cores free to this process, at
    most 2) is at least 2 and the platform forks (Linux)."""
    if processes is None:
        env = os.environ.get("RELOCBENCH_READ_PROCESSES", "").strip()
        if env.isdigit():
            processes = int(env)
        else:
            processes = min(2, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1
    return processes >= 2 and hasattr(os, "fork") and sys.platform.startswith("linux")


def _stop(pid: int) -> None:
    """Kill and reap a child process (gone already is fine)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


_DIED = object()


class Forked:
    """``fn()`` started in a forked child. :meth:`result` returns its value or raises its
    exception (one that pickle cannot carry becomes a RuntimeError naming it); where the
    child died without a result (killed, out of memory) it returns ``fallback()`` computed
    here, or raises RuntimeError without one. :meth:`cancel` kills the child. Use as a
    context manager so that the child never outlives the caller's error."""

    def __init__(self, fn: Callable[[], Any], what: str = "a second process") -> None:
        self.what = what
        r, w = os.pipe()
        with warnings.catch_warnings():  # Python 3.12+ warns about fork beside (idle) native threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child
            try:
                os.close(r)
                with os.fdopen(w, "wb") as fh:
                    try:
                        msg = ("ok", fn())
                    except BaseException as exc:  # sent to the parent, raised there
                        msg = ("error", exc)
                    if msg[0] == "ok":
                        pickle.dump(msg, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    else:
                        try:
                            blob = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
                        except Exception:
                            exc = msg[1]
                            blob = pickle.dumps(("error", RuntimeError(f"{what} failed: {type(exc).__name__}: {exc}")))
                        fh.write(blob)
            finally:
                os._exit(0)
        os.close(w)
        self.pid: Optional[int] = pid
        self._reader = os.fdopen(r, "rb")

    def result(self, fallback: Optional[Callable[[], Any]] = None) -> Any:
        try:
            try:
                msg = pickle.load(self._reader)  # streamed: arrays are built as their bytes arrive
            except (pickle.UnpicklingError, EOFError, ValueError):
                msg = _DIED
            os.waitpid(self.pid, 0)
            self.pid = None
        finally:
            self.cancel()
        if msg is _DIED:
            if fallback is None:
                raise RuntimeError(f"{self.what} died without a result")
            return fallback()
        kind, value = msg
        if kind == "error":
            raise value
        return value

    def cancel(self) -> None:
        self._reader.close()
        if self.pid is not None:
            _stop(self.pid)
            self.pid = None

    def __enter__(self) -> "Forked":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()
