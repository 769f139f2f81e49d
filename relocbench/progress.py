"""One progress reporter for every long command.

    from relocbench.progress import Progress
    with Progress(total=n, desc="extract", unit="video") as bar:
        for video in videos:
            ...
            bar.update(1, loss=0.53, val=41.0)

On a terminal it draws a tqdm bar with the keyword fields after the counts. When stderr is
not a terminal (a log file, CI, ``nohup``) it prints one plain line at least every
``RELOCBENCH_PROGRESS_INTERVAL`` seconds (30 by default): on the first update after the
interval has passed, or from a background heartbeat when no update comes (one long step),
and a final line when it closes::

    extract: 12/40 videos (30%), loss 0.53, 2.1 video/s, ETA 13s
    extract: 40/40 videos (100%), loss 0.41, 2.1 video/s, done in 19s

Every line ends with a newline (the terminal bar too, when it closes), so an error printed
afterwards starts on a line of its own. Fields keep their last value until updated again;
a field set to ``None`` is left out. ``quiet=True`` prints nothing.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, TextIO

from .errors import ConfigError

__all__ = ["Progress", "progress_interval_s", "format_duration", "INTERVAL_ENV"]

INTERVAL_ENV = "RELOCBENCH_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


def progress_interval_s(environ: Optional[Dict[str, str]] = None) -> float:
    """Seconds between plain progress lines: ``$RELOCBENCH_PROGRESS_INTERVAL`` or 30."""
    env = os.environ if environ is None else environ
    raw = env.get(INTERVAL_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"expected a finite number of seconds >= 0, found {raw!r}",
            item=f"${INTERVAL_ENV}",
        )
    return value


def format_duration(seconds: float) -> str:
    """``13s``, ``2m05s``, ``1h02m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plural(unit: str, count: float) -> str:
    if count == 1 or unit.endswith("s") or unit in ("it", ""):
        return unit
    return unit + "s"


class Progress:
    """Progress of ``total`` units of work (``total=None`` when unknown).

    ``stream`` defaults to ``sys.stderr`` at construction time; ``interval`` (seconds
    between plain lines) defaults to :func:`progress_interval_s`; ``initial``: units done
    already (a resumed run; the rate counts from there); ``leave=False``: the terminal bar
    is erased when it closes (a pass nested in another one); ``heartbeat`` (default: on
    with the real clock) prints plain lines from a background thread when updates stop
    coming; ``clock`` and ``isatty`` exist for tests.
    """

    def __init__(
        self,
        total: Optional[float] = None,
        desc: str = "",
        unit: str = "it",
        quiet: bool = False,
        *,
        stream: Optional[TextIO] = None,
        interval: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        isatty: Optional[bool] = None,
        initial: float = 0,
        leave: bool = True,
        heartbeat: Optional[bool] = None,
    ) -> None:
        if total is not None and (not math.isfinite(float(total)) or total < 0):
            raise ConfigError(f"expected a finite total >= 0 or None, found {total!r}",
                              item="Progress total")
        self.total = total
        self.desc = desc
        self.unit = unit
        self.quiet = quiet
        self.count: float = initial
        self._initial = initial
        self.fields: Dict[str, Any] = {}
        self._stream = sys.stderr if stream is None else stream
        self._interval = progress_interval_s() if interval is None else float(interval)
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._closed = False
        self._bar = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if isatty is None:
            isatty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.terminal = isatty and not quiet
        if self.terminal:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self._stream, leave=leave,
                dynamic_ncols=True, initial=initial,
            )
        if heartbeat is None:  # a test's fake clock does not advance by itself
            heartbeat = clock is time.monotonic
        if heartbeat and not self.terminal and not quiet and self._interval > 0:
            self._thread = threading.Thread(target=Progress._beat, args=(weakref.ref(self), self._stop),
                                            name=f"progress {desc}", daemon=True)
            self._thread.start()

    # context manager -------------------------------------------------------------
    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    # updates -----------------------------------------------------------------------
    def update(self, n: float = 1, **fields: Any) -> None:
        """Advance by ``n`` units and set the keyword fields shown after the counts."""
        with self._lock:  # the heartbeat thread reads them
            self.count += n
            self._set_fields(fields)
        if self.quiet or self._closed:
            return
        if self._bar is not None:
            if fields:
                self._bar.set_postfix(self._shown_fields(), refresh=False)
            self._bar.update(n)
            return
        self._maybe_line()

    def _maybe_line(self) -> None:
        with self._lock:
            now = self._clock()
            if not self._closed and now - self._last_line >= self._interval:
                self._last_line = now
                self._emit(self.line(now))

    @staticmethod
    def _beat(ref: "weakref.ref[Progress]", stop: threading.Event) -> None:
        """Background heartbeat: a line when ``interval`` passes without an update. It holds
        the reporter weakly, so one that is dropped without ``close()`` stops beating."""
        while True:
            bar = ref()
            if bar is None:
                return
            wait = max(bar._interval / 4, 0.01)
            bar._maybe_line()
            del bar
            if stop.wait(wait):
                return

    def set_fields(self, **fields: Any) -> None:
        """Set fields without advancing (shown with the next line)."""
        self.update(0, **fields)

    def write(self, message: str) -> None:
        """Print one line without breaking the bar."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            with self._lock:
                self._emit(message)

    def close(self, failed: bool = False) -> None:
        """Finish: close the bar, or print the final plain line (``stopped`` on failure)."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._closed = True
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.close()
            return
        with self._lock:
            now = self._clock()
            elapsed = format_duration(now - self._start)
            end = f"stopped after {elapsed}" if failed else f"done in {elapsed}"
            self._emit(self.line(now, end=end))

    # formatting --------------------------------------------------------------------
    def _set_fields(self, fields: Dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                self.fields.pop(key, None)
            else:
                self.fields[key] = value

    def _shown_fields(self) -> Dict[str, str]:
        return {k: _format_value(v) for k, v in self.fields.items()}

    def rate(self, now: Optional[float] = None) -> Optional[float]:
        """Units per second since the start (None before any time has passed)."""
        elapsed = (self._clock() if now is None else now) - self._start
        if elapsed <= 0:
            return None
        return (self.count - self._initial) / elapsed

    def line(self, now: Optional[float] = None, end: Optional[str] = None) -> str:
        """The plain progress line (without the newline)."""
        now = self._clock() if now is None else now
        count = _format_value(self.count) if isinstance(self.count, float) else str(self.count)
        head = f"{self.desc}: " if self.desc else ""
        if self.total is not None:
            total = _format_value(self.total) if isinstance(self.total, float) else str(self.total)
            pct = 100.0 * self.count / self.total if self.total else 100.0
            parts = [f"{head}{count}/{total} {_plural(self.unit, self.total)} ({pct:.0f}%)"]
        else:
            parts = [f"{head}{count} {_plural(self.unit, self.count)}"]
        parts += [f"{k} {v}" for k, v in self._shown_fields().items()]
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{rate:.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s")
        if end is not None:
            parts.append(end)
        elif self.total is not None and rate:
            parts.append(f"ETA {format_duration(max(self.total - self.count, 0) / rate)}")
        return ", ".join(parts)

    def _emit(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
