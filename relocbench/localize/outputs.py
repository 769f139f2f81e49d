"""What ``localize`` writes: JSON, SubRip subtitles, a figure and the cut segments.

Every writer is atomic, refuses an existing output unless ``force`` and refuses, ``force`` or
not, an output that is (or resolves to) one of the files the result was computed from
(``result.inputs``: the query, the references, a run folder's files, its features file);
:func:`check_outputs` checks all of them before the work starts:

* :func:`write_json` -- the result document (``relocbench/1``);
* :func:`write_srt` -- one cue per found segment (``#rank score``) for a player to show over
  the reference; with several references, one file per reference that has segments
  (``NAME.<reference stem>.srt``);
* :func:`write_plot` -- a PNG in the style of the ECCV 2018 paper's Fig. 4: the query's
  thumbnail strip on top, then every searched reference's similarity or score curve over time
  on one y-scale, with the found segments marked by rank (:mod:`relocbench.localize.plot`);
* :func:`write_clips` -- the top segments cut out as ``.mp4`` files (OpenCV ``VideoWriter``,
  ``mp4v``) into a folder, one decoding pass per reference.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, InputError
from ..io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, check_output
from .timecodes import format_hms, srt_text

__all__ = ["write_json", "srt_paths", "check_outputs", "table_names", "result_table", "write_srt", "write_plot",
           "write_clips", "query_thumbnails", "clip_name"]

PathLike = Union[str, os.PathLike]


def _inputs(result) -> List[str]:
    return list(getattr(result, "inputs", None) or [])


def write_json(result, path: PathLike, *, force: bool = False) -> Path:
    check_output(path, force, inputs=_inputs(result), option="--output-json")
    return atomic_write_json(path, result.to_doc(), force=force)


def _srt_names(path: PathLike, references: Sequence[str]) -> Dict[str, Path]:
    """Reference -> SRT file for every reference searched (named over all of them, so that a
    reference's file name does not depend on which others were skipped)."""
    p = Path(path)
    if len(references) == 1:
        return {references[0]: p}
    out: Dict[str, Path] = {}
    used = set()
    stem = p.name[:-4] if p.name.lower().endswith(".srt") else p.name
    for r in references:
        base = f"{stem}.{Path(r).stem}"
        name, n = f"{base}.srt", 2
        while name in used:
            name, n = f"{base}-{n}.srt", n + 1
        used.add(name)
        out[r] = p.with_name(name)
    return out


def srt_paths(result, path: PathLike) -> Dict[str, Path]:
    """Reference -> SRT file: ``path`` itself for one reference, else ``<stem>.<reference stem>.srt``
    (references that were skipped get none)."""
    names = _srt_names(path, [r.path for r in result.references])
    return {r.path: names[r.path] for r in result.references if not r.skipped}


def table_names(paths: Sequence[str], width: int = 30) -> Dict[str, str]:
    """Short names of ``paths`` for a table cell of at most ``width`` characters: the file name
    where it tells the paths apart, else the shortest tail of the path that does; a name
    still too long keeps its start and end around ``...`` (the full paths are in the JSON)."""
    uniq = list(dict.fromkeys(str(p) for p in paths))
    parts = {p: Path(p).parts or (p,) for p in uniq}
    depth = 1
    while True:
        short = {p: "/".join(parts[p][-depth:]) for p in uniq}
        if len(set(short.values())) == len(uniq) or depth >= max((len(v) for v in parts.values()), default=1):
            break
        depth += 1
    width = max(int(width), 7)
    out = {}
    for p, name in short.items():
        if len(name) > width:
            head = (width - 3) // 2
            name = name[:head] + "..." + name[len(name) - (width - 3 - head):]
        out[p] = name
    return out


def result_table(result, width: int = 80):
    """``(title, columns, rows)`` of the result table, its cells short enough for the table to
    fit ``width`` columns: the reference column gets what the others leave (references by
    :func:`table_names`)."""
    columns = ["rank", "reference", "start", "end", "score"]
    rows = [[str(s.rank), s.reference, s.start_hms, s.end_hms, f"{s.score:.4f}"] for s in result.segments]
    # a boxed table takes each column's widest cell + 3, and 1 more (cli._common.split_columns)
    others = sum(max([len(c)] + [len(r[i]) for r in rows]) + 3 for i, c in enumerate(columns) if i != 1)
    names = table_names([s.reference for s in result.segments], width=width - 1 - others - 3)
    for r in rows:
        r[1] = names[r[1]]
    q = result.query
    title = (f"{table_names([q['path']], width=max(20, width - 40))[q['path']]} [{q['start']:.2f}s, "
             f"{q['end']:.2f}s) in {len(result.references)} reference(s)")
    return title, columns, rows


def check_outputs(inputs: Sequence[PathLike], references: Sequence[str], *, force: bool = False,
                  output_json: Optional[PathLike] = None, srt: Optional[PathLike] = None,
                  plot: Optional[PathLike] = None, clip_out: Optional[PathLike] = None) -> None:
    """Every output of ``localize`` checked before any work and before any is written: none
    may be (or resolve to) an input (whatever ``force`` says), two options may not name one
    path, and without ``force`` none may exist. ``srt`` is checked for every file it may
    become (one per reference when there are several)."""
    targets: List[tuple] = []
    if output_json:
        targets.append(("--output-json", Path(output_json)))
    if srt:
        targets += [("--srt", p) for p in _srt_names(srt, list(references)).values()]
    if plot:
        targets.append(("--plot", Path(plot)))
    if clip_out:
        targets.append(("--clip-out", Path(clip_out)))
    seen: Dict[str, str] = {}
    for option, p in targets:
        real = os.path.realpath(p)
        if real in seen:
            raise ConfigError(f"{option} names the same path as {seen[real]}; give each output its own path", file=p)
        seen[real] = option
        check_output(p, force, inputs=inputs, option=option)


def write_srt(result, path: PathLike, *, force: bool = False) -> List[Path]:
    """SubRip file(s) of the found segments (module docstring); returns the files written."""
    targets = srt_paths(result, path)
    for p in targets.values():
        check_output(p, force, inputs=_inputs(result), option="--srt")
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


def write_plot(result, path: PathLike, *, force: bool = False, max_references: Optional[int] = None,
               dpi: int = 100) -> Path:
    """The figure of :func:`relocbench.localize.plot.make_figure` (every searched reference on one
    y-scale), written atomically."""
    check_output(path, force, inputs=_inputs(result), option="--plot")
    import matplotlib.pyplot as plt

    from .plot import make_figure

    fig = make_figure(result, max_references=max_references)
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

    check_output(folder, force, inputs=_inputs(result), option="--clip-out")
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
