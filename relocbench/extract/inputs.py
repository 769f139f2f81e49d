"""Which videos to extract: files, folders, list files and manifests."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, InputError
from ..io import require_file
from .decode import VIDEO_EXTENSIONS

__all__ = ["collect_videos", "read_video_list", "manifest_videos", "ManifestVideos"]

PathLike = Union[str, os.PathLike]


def _in_folder(folder: Path, glob: Optional[str]) -> List[Path]:
    found = []
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            continue
        # a FIFO, socket, device or broken link named like a video is kept: it is refused (and
        # counted as failed, with what it is) by the video check, never skipped silently
        rel = p.relative_to(folder).as_posix()
        if glob is not None:
            if fnmatch.fnmatch(rel, glob) or fnmatch.fnmatch(p.name, glob):
                found.append(p)
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(p)
    return found


def collect_videos(inputs: Sequence[PathLike] = (), *, glob: Optional[str] = None,
                   list_file: Optional[PathLike] = None) -> List[Path]:
    """Video paths from files, folders (searched recursively: files with a video extension, or
    matching ``glob``) and a text file listing one path per line (``#`` comments; relative paths
    are relative to the list file). A path that does not exist is an error."""
    paths: List[Path] = []
    items: List[Tuple[Path, str]] = [(Path(p), "argument") for p in inputs]
    if list_file is not None:
        items.extend(read_video_list(list_file))
    for p, where in items:
        try:
            is_dir = p.is_dir()
        except OSError as exc:  # a name too long, a loop of links, ...
            raise InputError(f"cannot read the path ({exc.strerror}) (from {where})", file=p) from None
        if is_dir:
            found = _in_folder(p, glob)
            if not found:
                raise InputError(f"folder holds no video files (extensions {', '.join(VIDEO_EXTENSIONS)}"
                                 + (f", --glob {glob!r}" if glob else "") + ")", file=p)
            paths.extend(found)
            continue
        if not (p.exists() or p.is_symlink()):
            raise InputError(f"video not found (from {where})", file=p)
        try:  # a FIFO, socket or device is refused here, before anything opens it (an empty or
            # unreadable video file is counted as failed by the extraction, like any broken video)
            require_file(p, "video file", InputError)
        except InputError as exc:
            raise InputError(f"{exc.message} (from {where})", file=p) from None
        paths.append(p)
    if not paths:
        raise ConfigError("no videos given: pass files, folders, --list FILE or --manifest NAME --videos-root DIR")
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def read_video_list(list_file: PathLike) -> List[Tuple[Path, str]]:
    """``[(path, "LIST line N")]`` of a ``--list`` file: one path per line, blank lines and ``#``
    comments ignored, relative paths relative to the list file. The file must be UTF-8 text
    (the error names the line of the first byte that is not) holding at least one path."""
    lf = Path(list_file)
    if not (lf.exists() or lf.is_symlink()):
        raise InputError("video list not found; expected a text file with one video path per line", file=lf)
    require_file(lf, "video list", InputError)
    try:
        data = lf.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the video list ({exc.strerror})", file=lf) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "expected a text file with one video path per line", file=lf) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    items: List[Tuple[Path, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            if "\x00" in line:
                raise InputError(f"line {lineno}: holds a NUL character; expected a path", file=lf)
            p = Path(line)
            items.append((p if p.is_absolute() else lf.parent / p, f"{lf} line {lineno}"))
    if not items:
        n = len(text.splitlines())
        raise InputError(f"video list names no video ({n} line(s), all blank or # comments); expected one video "
                         "path per line", file=lf)
    return items


class ManifestVideos:
    """The videos of a manifest found under a root folder: ``paths`` ``{id: path}``, the manifest's
    ``n_frames`` per id, and the ids without a file (``missing``)."""

    def __init__(self, paths: Dict[str, Path], n_frames: Dict[str, int], missing: List[str]) -> None:
        self.paths, self.n_frames, self.missing = paths, n_frames, missing


def manifest_videos(manifest, videos_root: PathLike, *, splits: Optional[Sequence[str]] = None) -> ManifestVideos:
    """Exactly the videos of a temporal manifest (its ``timelines`` table, or the ``segments`` of
    ``splits``), each found under ``videos_root`` as ``v_<id>.*`` or ``<id>.*`` (any depth)."""
    from ..manifest import open_manifest

    m = open_manifest(manifest) if not hasattr(manifest, "table") else manifest
    if m.task != "temporal":
        raise ConfigError(f"--manifest {m.name}: extraction follows temporal manifests (16-frame steps); "
                          f"this one is {m.task}")
    root = Path(videos_root)
    if not root.is_dir():
        raise InputError("videos root not found; expected the folder holding the manifest's videos", file=root)
    timelines = m.table("timelines")
    frames = timelines.groupby("video")["n_frames"].first().astype(int).to_dict()
    if splits:
        wanted = set()
        for s in splits:
            if s not in m.splits:
                raise ConfigError(f"--manifest {m.name} has no split {s!r}; expected one of {m.splits}")
            wanted.update(m.table("segments", s)["video"].astype(str))
    else:
        wanted = set(frames)
    by_stem: Dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        # not p.is_file(): a FIFO or device named like a video is taken, then refused by what it is
        if not p.is_dir() and p.suffix.lower() in VIDEO_EXTENSIONS:
            by_stem.setdefault(p.stem, p)
    paths, missing = {}, []
    for vid in sorted(wanted):
        p = by_stem.get(f"v_{vid}") or by_stem.get(vid)
        if p is None:
            missing.append(vid)
        else:
            paths[vid] = p
    return ManifestVideos(paths, {v: frames[v] for v in paths if v in frames}, missing)
