"""What ``localize`` writes: JSON, SubRip subtitles, a figure and the cut segments.

Every writer is atomic and refuses an existing output unless ``force``:

* :func:`write_json` -- the result document (``relocbench/1``);
* :func:`write_srt` -- one cue per found segment (``#rank score``) for a player to show over
  the reference; with several references, one file per reference that has segments
  (``NAME.<reference stem>.srt``);
* :func:`write_plot` -- a PNG in the style of the ECCV 2018 paper's Fig. 4: the query's
  thumbnail strip on top, then for each reference holding a top segment (at most four) its
  similarity or score curve over time with the found segments marked by rank;
* :func:`write_clips` -- the top segments cut out as ``.mp4`` files (OpenCV ``VideoWriter``,
  ``mp4v``) into a folder, one decoding pass per reference.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, check_output
from .timecodes import format_hms, srt_text

__all__ = ["write_json", "srt_paths", "write_srt", "write_plot", "write_clips", "query_thumbnails", "clip_name"]

PathLike = Union[str, os.PathLike]


def write_json(result, path: PathLike, *, force: bool = False) -> Path:
    return atomic_write_json(path, result.to_doc(), force=force)


def srt_paths(result, path: PathLike) -> Dict[str, Path]:
    """Reference -> SRT file: ``path`` itself for one reference, else ``<stem>.<reference stem>.srt``."""
    p = Path(path)
    refs = [r.path for r in result.references if not r.skipped]
    if len(result.references) == 1:
        return {refs[0]: p} if refs else {}
    out: Dict[str, Path] = {}
    used = set()
    stem = p.name[:-4] if p.name.lower().endswith(".srt") else p.name
    for r in refs:
        base = f"{stem}.{Path(r).stem}"
        name, n = f"{base}.srt", 2
        while name in used:
            name, n = f"{base}-{n}.srt", n + 1
        used.add(name)
        out[r] = p.with_name(name)
    return out


def write_srt(result, path: PathLike, *, force: bool = False) -> List[Path]:
    """SubRip file(s) of the found segments (module docstring); returns the files written."""
    targets = srt_paths(result, path)
    for p in targets.values():
        check_output(p, force)
    written = []
    for ref, p in targets.items():
        cues = [(s.start, s.end, f"#{s.rank} score {s.score:.3f}") for s in result.segments if s.reference == ref]
        if not cues and len(targets) > 1:
            continue
        atomic_write_text(p, srt_text(cues), force=force)
        written.append(p)
    return written


def query_thumbnails(path: PathLike, start_s: float, end_s: float, n: int = 8, height: int = 72) -> List[np.ndarray]:
    """``n`` RGB frames evenly spaced over ``[start_s, end_s)`` of a video, ``height`` pixels high."""
    import cv2

    from ..extract.decode import VideoReader, frame_range

    with VideoReader(path) as reader:
        a, b = frame_range(reader.fps, start_s, end_s)
        b = max(a + 1, b if b is not None else a + 1)
        want = sorted(set(np.linspace(a, b - 1, n).round().astype(int).tolist()))
        out = []
        for i, frame in enumerate(reader.frames(a, want[-1] + 1), start=a):
            if i in want:
                h, w = frame.shape[:2]
                small = cv2.resize(frame, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
                out.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    return out


def write_plot(result, path: PathLike, *, force: bool = False, max_references: int = 4, dpi: int = 100) -> Path:
    """The figure (module docstring), written atomically."""
    check_output(path, force)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = result.query
    thumbs = query_thumbnails(q["path"], q["start"], q["end"])
    shown: List[str] = []
    for s in result.segments:
        if s.reference not in shown:
            shown.append(s.reference)
    if not shown:
        shown = [r.path for r in result.references if not r.skipped][:1]
    shown = shown[:max_references]
    infos = {r.path: r for r in result.references}
    n = len(shown)
    fig = plt.figure(figsize=(8.0, 1.1 + 1.6 * max(n, 1)))
    grid = fig.add_gridspec(1 + max(n, 1), 1, height_ratios=[0.6] + [1.2] * max(n, 1), hspace=0.6)
    ax = fig.add_subplot(grid[0])
    if thumbs:
        ax.imshow(np.concatenate([np.pad(t, ((0, 0), (0, 2), (0, 0)), constant_values=255) for t in thumbs], 1))
    ax.set_axis_off()
    method = result.method if isinstance(result.method, str) else result.method.get("baseline", "trained")
    ax.set_title(f"query: {Path(q['path']).name} [{format_hms(q['start'])} - {format_hms(q['end'])}], "
                 f"method {method}", fontsize=9)
    colours = plt.get_cmap("tab10")
    for i, ref in enumerate(shown):
        info = infos[ref]
        ax = fig.add_subplot(grid[1 + i])
        if info.curve is not None:
            ax.plot(info.curve_times, info.curve, color="0.25", lw=0.9, label=info.curve_label)
        for s in result.segments:
            if s.reference != ref:
                continue
            c = colours((s.rank - 1) % 10)
            ax.axvspan(s.start, s.end, color=c, alpha=0.3, lw=0)
            ax.annotate(f"#{s.rank} {s.score:.2f}", xy=((s.start + s.end) / 2, 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7, color=c)
        ax.set_xlim(0, info.duration)
        ax.set_ylabel(info.curve_label or "score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"{Path(ref).name}: seconds", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), force=force)


def clip_name(segment) -> str:
    """``<rank>-<reference stem>-<start>-<end>.mp4`` with times as ``HHhMMmSS.mmm``."""
    def t(x: float) -> str:
        return format_hms(x).replace(":", "h", 1).replace(":", "m", 1)

    return f"{segment.rank:02d}-{Path(segment.reference).stem}-{t(segment.start)}-{t(segment.end)}.mp4"


def write_clips(result, folder: PathLike, *, force: bool = False) -> List[Path]:
    """Cut every found segment into ``folder`` (written as a whole, atomically)."""
    import cv2

    from ..extract.decode import VideoReader, frame_range

    check_output(folder, force)
    by_ref: Dict[str, list] = {}
    for s in result.segments:
        by_ref.setdefault(s.reference, []).append(s)
    names = []
    with atomic_dir(folder, force=force) as tmp:
        for ref, segs in by_ref.items():
            with VideoReader(ref) as reader:
                fps = reader.fps
                spans = []
                for s in segs:
                    a, b = frame_range(fps, s.start, s.end)
                    spans.append((a, max(a + 1, b), tmp / clip_name(s)))
                lo, hi = min(a for a, _, _ in spans), max(b for _, b, _ in spans)
                writers: Dict[int, Optional[object]] = {}
                try:
                    for i, frame in enumerate(reader.frames(lo, hi), start=lo):
                        for k, (a, b, p) in enumerate(spans):
                            if a <= i < b:
                                if k not in writers:
                                    h, w = frame.shape[:2]
                                    vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                                    if not vw.isOpened():
                                        raise InputError("OpenCV cannot open a video writer (mp4v) for this clip",
                                                         file=folder)
                                    writers[k] = vw
                                writers[k].write(frame)
                finally:
                    for vw in writers.values():
                        vw.release()
            names.extend(p.name for _, _, p in spans)
    return [Path(folder) / n for n in names]
