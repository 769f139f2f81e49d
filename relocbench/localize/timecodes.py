"""Times as people write them: query ranges, ``HH:MM:SS.mmm`` and SubRip (``.srt``) cues.

* :func:`parse_query_range` reads ``12.5:18`` (seconds) or
  ``HH:MM:SS.mmm:HH:MM:SS.mmm`` (also ``MM:SS.mmm:MM:SS.mmm``); either side of the
  seconds form may be empty (``:18`` from the start, ``12.5:`` to the end).
* :func:`format_hms` writes seconds as ``HH:MM:SS.mmm`` (rounded to the millisecond).
* :func:`srt_text` writes cues as SubRip text: numbered from 1, ``HH:MM:SS,mmm -->
  HH:MM:SS,mmm``, one text line, a blank line after each cue, in order of start time.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, List, Optional, Tuple

from ..errors import ConfigError

__all__ = ["parse_time", "parse_query_range", "format_hms", "format_srt_time", "srt_text"]

_NUM = r"\d+(?:\.\d*)?|\.\d+"
_CLOCK = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]?\d(?:\.\d*)?)$")


def parse_time(text: str, *, what: str = "time") -> float:
    """Seconds from ``12.5``, ``MM:SS.mmm`` or ``HH:MM:SS.mmm`` (minutes and seconds below 60)."""
    s = str(text).strip()
    if re.fullmatch(_NUM, s):
        return float(s)
    m = _CLOCK.match(s)
    if m is None:
        raise ConfigError(f"The {what} must be seconds (12.5) or HH:MM:SS.mmm. Got {text!r} instead.")
    hours = int(m.group(1) or 0)
    return hours * 3600.0 + int(m.group(2)) * 60.0 + float(m.group(3))


def parse_query_range(text: str) -> Tuple[Optional[float], Optional[float]]:
    """``(start_s, end_s)`` of a range ``START:END``; ``None`` for an empty side (seconds form).

    Accepted: ``12.5:18``, ``:18``, ``12.5:``, ``MM:SS.mmm:MM:SS.mmm`` and
    ``HH:MM:SS.mmm:HH:MM:SS.mmm``. The start must come before the end.
    """
    raw = str(text).strip()
    parts = raw.split(":")
    bad = ConfigError(
        "The query range must be START:END in seconds (12.5:18) or HH:MM:SS.mmm:HH:MM:SS.mmm. "
        f"Got {text!r} instead."
    )
    if len(parts) not in (2, 4, 6):
        raise bad
    half = len(parts) // 2
    a, b = ":".join(parts[:half]).strip(), ":".join(parts[half:]).strip()
    if half > 1 and (not a or not b):
        raise bad
    try:
        start = parse_time(a, what="query range start") if a else None
        end = parse_time(b, what="query range end") if b else None
    except ConfigError:
        raise bad from None
    if start is None and end is None:
        raise bad
    if start is not None and end is not None and not end > start:
        raise ConfigError(f"The query range {text!r} is empty: it must end after it starts "
                          f"({format_hms(start)} to {format_hms(end)}).")
    return start, end


def _split_ms(seconds: float) -> Tuple[int, int, int, int]:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"A time must be a finite number of seconds >= 0. Got {seconds!r} instead.")
    ms = int(math.floor(float(seconds) * 1000.0 + 0.5))  # half up
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return h, m, s, ms


def format_hms(seconds: float) -> str:
    """``HH:MM:SS.mmm``, rounded half up to the millisecond (hours keep growing past 99)."""
    h, m, s, ms = _split_ms(seconds)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def format_srt_time(seconds: float) -> str:
    """SubRip's ``HH:MM:SS,mmm``."""
    h, m, s, ms = _split_ms(seconds)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(cues: Iterable[Tuple[float, float, str]]) -> str:
    """SubRip text of ``(start_s, end_s, text)`` cues, sorted by start (then end), numbered from 1.

    A cue's text must be one non-empty line (SubRip ends a cue at a blank line).
    """
    rows: List[Tuple[float, float, str]] = sorted(((float(a), float(b), str(t)) for a, b, t in cues),
                                                   key=lambda c: (c[0], c[1]))
    out: List[str] = []
    for i, (a, b, t) in enumerate(rows, 1):
        if not b > a:
            raise ConfigError(f"SubRip cue {i} must end after it starts; got {a} to {b} seconds")
        if not t.strip() or "\n" in t or "\r" in t:
            raise ConfigError(f"SubRip cue {i} needs one non-empty line of text; got {t!r}")
        out.append(f"{i}\n{format_srt_time(a)} --> {format_srt_time(b)}\n{t}\n")
    return "\n".join(out)
