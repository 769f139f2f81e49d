"""``extract_video`` and ``extract_videos``: the library behind ``relocbench extract-features``."""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..datasets.common import Report
from ..errors import ConfigError, InputError, OutputExistsError, RelocbenchError
from ..io import check_writable, refuse_output_among_inputs, sha256_file
from .backbones import make_backbone
from .backbones.base import Backbone
from .config import ExtractConfig, VideoFeatures
from .decode import VideoReader, frame_range, prefetch, require_video
from .pca import FeaturePCA, fit_pca, load_pca
from .shard import parse_shard, select_shard
from .writer import (LAYOUTS, Entry, FeaturesFile, Journal, OutputLock, _c3d_repeat, refuse_special_output,
                     write_features_file)

__all__ = ["extract_video", "extract_videos", "ExtractSummary", "video_ids", "settings_for"]

PathLike = Union[str, os.PathLike]
Videos = Union[Sequence[PathLike], Mapping[str, PathLike]]

#: Report key of a manifest video whose decoded frame count is off by more than 1%.
FRAME_MISMATCH = "decoded frame count differs from the manifest's n_frames by over 1% (steps would not line up)"
FAILED = "failed to decode (unreadable, truncated or zero-frame)"
#: What the output read back by ``--resume`` should be (the end of a message about it).
RESUMED_FILE = ("the features file of an earlier extraction, which --resume continues (pass --force instead of "
                "--resume to start over)")


# --------------------------------------------------------------------------- helpers
def video_ids(paths: Videos) -> Dict[str, Path]:
    """``{video id: path}``: the file stem of each path, or the keys of a mapping.

    Two files with the same stem are an error (their rows would share one dataset).
    """
    if isinstance(paths, Mapping):
        return {str(k): Path(v) for k, v in paths.items()}
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: Dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        vid = p.stem
        if vid in out and out[vid] != p:
            raise InputError(f"two videos share the id {vid!r} (file stem): {out[vid]} and {p}; rename one or pass "
                             "a mapping {id: path}", file=p)
        out[vid] = p
    return out


def _resolve_pca(cfg: ExtractConfig) -> Optional[FeaturePCA]:
    if cfg.pca is None or isinstance(cfg.pca, FeaturePCA):
        return cfg.pca
    if isinstance(cfg.pca, str):
        return load_pca(cfg.pca)
    raise ConfigError(
        f"The 'pca' setting of ExtractConfig must be None, a FeaturePCA or a features file with a fitted PCA. "
        f"Got {cfg.pca!r} instead (to fit one, pass pca_components=N and pca_fit=... to extract_videos)."
    )


def settings_for(backbone: Backbone, cfg: ExtractConfig) -> Dict[str, Any]:
    """The settings a features file records and ``--resume`` compares (rows before PCA)."""
    s = dict(backbone.attrs())
    s["step_frames"] = cfg.step_frames
    s["raw_dim"] = s.pop("dim")
    return s


def _raw_features(path: Path, video: str, backbone: Backbone, cfg: ExtractConfig, *, start_s=None, end_s=None,
                  prefetch_frames: int = 0, sha256: Optional[str] = None) -> Entry:
    """Decode ``path`` and run the backbone; rows before PCA."""
    if start_s is not None and end_s is not None and not end_s > start_s:
        raise ConfigError(f"end_s must be after start_s; got start_s={start_s}, end_s={end_s}")
    require_video(path)  # a FIFO or device is refused before it is hashed or opened
    digest = sha256 or _sha256(path)
    with VideoReader(path) as reader:
        start, end = frame_range(reader.fps, start_s, end_s)
        frames = reader.frames(start, end)
        if prefetch_frames:
            frames = prefetch(frames, prefetch_frames)
        rows = backbone.rows(frames, reader.fps, cfg.step_frames)
        n = reader.n_decoded - start
        expected = math.ceil(n / cfg.step_frames)
        if rows.shape[0] != expected:
            raise ConfigError(f"backbone {backbone.name!r} gave {rows.shape[0]} rows for {n} frames; "
                              f"expected ceil({n} / {cfg.step_frames}) = {expected}")
        return Entry(video=video, features=rows, fps=reader.fps, n_frames=n, source=str(path), sha256=digest,
                     start_frame=start, warnings=tuple(reader.warnings))


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise InputError("video file not found", file=path) from None
    except OSError as exc:
        raise InputError(f"video file is not readable ({exc.strerror})", file=path) from None


def _to_video_features(e: Entry, attrs: Dict[str, Any], pca: Optional[FeaturePCA]) -> VideoFeatures:
    feats = pca.transform(e.features) if pca is not None else e.features
    a = dict(attrs)
    a["dim"] = int(feats.shape[1])
    a["pca"] = pca.describe() if pca is not None else "none"
    return VideoFeatures(video=e.video, features=feats, fps=e.fps, n_frames=e.n_frames, sha256=e.sha256,
                         source=e.source, attrs=a, start_frame=e.start_frame, warnings=e.warnings)


# --------------------------------------------------------------------------- one video
def extract_video(path: PathLike, cfg: Optional[ExtractConfig] = None, *, start_s: Optional[float] = None,
                  end_s: Optional[float] = None, backbone: Optional[Backbone] = None,
                  video: Optional[str] = None) -> VideoFeatures:
    """Features of one video (or of its frames with start times in ``[start_s, end_s)``).

    Returns a :class:`VideoFeatures` with ``features`` float32 ``[ceil(n_frames / step_frames), dim]``.
    Pass ``backbone=make_backbone(cfg)`` to reuse a loaded model across calls.
    Raises :class:`relocbench.errors.InputError` naming the file when it is unreadable,
    truncated or holds no frame.

    >>> vf = extract_video("clip.mp4", ExtractConfig(backbone="handcrafted"))  # doctest: +SKIP
    >>> vf.features.shape  # doctest: +SKIP
    (7, 521)
    """
    cfg = cfg or ExtractConfig()
    bb = backbone or make_backbone(cfg)
    pca = _resolve_pca(cfg)
    _check_pca_width(pca, None, settings_for(bb, cfg), bb)
    p = Path(path)
    e = _raw_features(p, video or p.stem, bb, cfg, start_s=start_s, end_s=end_s)
    settings = settings_for(bb, cfg)
    settings.pop("raw_dim")
    return _to_video_features(e, settings, pca)


# --------------------------------------------------------------------------- many videos
@dataclass
class ExtractSummary:
    """What ``extract_videos`` did: counts, failures (``(source, message)``) and the report."""

    out: Optional[Path]
    videos: int = 0                 # videos asked for (this shard)
    extracted: int = 0
    resumed: int = 0                # already finished (output or journal), skipped
    failed: List[Tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    shard: Optional[Tuple[int, int]] = None
    report: Dict[str, Any] = field(default_factory=dict)
    warnings: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> Dict[str, Any]:
        return {"out": None if self.out is None else str(self.out), "videos": self.videos,
                "extracted": self.extracted, "resumed": self.resumed,
                "failed": [{"source": s, "error": m} for s, m in self.failed], "frames": self.frames,
                "seconds": round(self.seconds, 3), "shard": None if self.shard is None else list(self.shard),
                "report": self.report}


def _progress(total: int, quiet: bool):
    from ..progress import Progress

    return Progress(total=total, desc="extract", unit="video", quiet=quiet)


def _run_many(items: List[Tuple[str, Path, Optional[str]]], backbone: Backbone, cfg: ExtractConfig, workers: int):
    """Yield ``(video, Entry or InputError)`` in the order of ``items``; ``workers`` videos at a time."""
    if workers <= 0:
        for vid, path, digest in items:
            try:
                yield vid, _raw_features(path, vid, backbone, cfg, sha256=digest)
            except InputError as exc:
                yield vid, exc
        return

    def job(vid, path, digest):
        try:
            return _raw_features(path, vid, backbone, cfg, sha256=digest, prefetch_frames=2 * cfg.step_frames)
        except InputError as exc:
            return exc

    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relocbench-extract") as pool:
        pending: List[Tuple[str, cf.Future]] = []
        it = iter(items)
        for vid, path, digest in it:
            pending.append((vid, pool.submit(job, vid, path, digest)))
            if len(pending) >= workers + 1:
                break
        while pending:
            vid, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt[0], pool.submit(job, *nxt)))
            yield vid, fut.result()


def extract_videos(
    paths: Videos,
    cfg: Optional[ExtractConfig] = None,
    *,
    out: PathLike = "features.h5",
    resume: bool = False,
    force: bool = False,
    shard: Union[None, str, Tuple[int, int]] = None,
    strict: bool = False,
    workers: int = 0,
    layout: str = "relocbench",
    pca_components: Optional[int] = None,
    pca_fit: Optional[Videos] = None,
    expected_frames: Optional[Mapping[str, int]] = None,
    missing: Sequence[str] = (),
    quiet: bool = True,
    backbone: Optional[Backbone] = None,
    inputs: Sequence[PathLike] = (),
) -> ExtractSummary:
    """Extract every video of ``paths`` into the HDF5 file ``out`` (see :mod:`relocbench.extract.writer`).

    * ``paths``: video paths (id = file stem) or a mapping ``{id: path}``.
    * ``resume``: keep the videos ``out`` (or the journal of an interrupted run) already holds
      with the same source sha256 and settings; extract only the rest. Settings that differ
      are refused unless ``force`` (which starts over).
    * ``shard``: ``"K/N"`` or ``(K, N)``: only the videos ``i`` (in id order) with
      ``i % N == K``. ``None``: under ``torchrun`` (``WORLD_SIZE`` > 1) use
      :func:`relocbench.extract.shard.extract_distributed` instead.
    * ``strict``: stop at the first video that fails (what finished is still written) and
      raise :class:`InputError`; otherwise failures are counted, listed in the summary and
      in the file's ``report`` attribute.
    * ``workers``: videos decoded and processed at the same time, each decoding in its own
      thread ahead of the backbone (0: one video at a time, no extra thread).
    * ``pca_components`` with ``pca_fit`` (paths or ids of ``paths``): fit a PCA on the rows
      of those videos and apply it to every video (stored in the file). ``cfg.pca`` reuses one.
    * ``expected_frames``: ``{id: n_frames}`` (a manifest's); a decoded count off by more than
      1% is reported. ``missing``: ids that had no file (counted in the report).
    * ``inputs``: other files the run reads (the ``--list`` file), refused as ``out`` like the
      videos, the ``pca_fit`` videos and the ``--pca-from`` file.

    Every argument is checked before anything is written; ``out`` is refused (``force`` or
    not) when it is, or resolves to, one of the inputs; while it runs, the extraction holds
    a lock on ``out`` (a second one into the same file stops with "another extraction is
    writing OUT (pid N)").
    """
    t0 = time.perf_counter()
    cfg = cfg or ExtractConfig()
    out = Path(out)
    # ---- every argument is checked before anything is created (no journal, lock or .tmp is left
    # behind by a refused argument)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"The 'workers' parameter must be an int >= 0. Got {workers!r} instead.")
    if layout not in LAYOUTS:
        raise ConfigError(f"The 'layout' parameter must be one of {list(LAYOUTS)}. Got {layout!r} instead.")
    if layout == "c3d":
        _c3d_repeat(cfg.step_frames)
    if pca_components is not None:
        if isinstance(pca_components, bool) or not isinstance(pca_components, (int, np.integer)) \
                or pca_components < 1:
            raise ConfigError(f"The 'pca' parameter (--pca N) must be an int >= 1. Got {pca_components!r} instead.")
        pca_components = int(pca_components)
    if pca_components is not None and cfg.pca is not None:
        raise ConfigError("give either a PCA to fit (pca_components / --pca N) or one to reuse (--pca-from), not both")
    if pca_components is not None and not pca_fit:
        raise ConfigError("--pca N needs --pca-fit VIDEOS: the videos whose rows fit the PCA")
    all_ids = video_ids(paths)
    shard_kn = parse_shard(shard) if shard is not None else None
    if shard_kn is not None and pca_components is not None:
        raise ConfigError("a sharded run cannot fit a PCA (each shard would fit its own): fit it once with "
                          "--pca N --pca-fit on one machine and pass --pca-from, or merge-features --pca N")
    ids = select_shard(sorted(all_ids), shard_kn)
    bb = backbone or make_backbone(cfg)
    settings = settings_for(bb, cfg)
    pca = _resolve_pca(cfg)
    _check_pca_width(pca, pca_components, settings, bb)
    fit_ids = _fit_ids(pca_fit, all_ids) if pca_components is not None else {}
    for vid, p in fit_ids.items():
        if vid not in all_ids or all_ids[vid] != p:
            try:
                require_video(p)
            except InputError as exc:
                raise InputError(f"{exc.message} (a --pca-fit video)", file=p) from None
    sources = list(all_ids.values()) + list(fit_ids.values()) + list(inputs)
    if isinstance(cfg.pca, (str, os.PathLike)):
        sources.append(cfg.pca)
    refuse_output_among_inputs(out, sources, option="--out")
    refuse_special_output(out)
    check_writable(out)  # an output under a file or /proc is refused before any decoding

    # ---- one extraction at a time writes `out`
    with OutputLock(out):
        return _extract_locked(t0, out, all_ids, ids, shard_kn, bb, cfg, settings, pca, pca_components, fit_ids,
                               resume=resume, force=force, strict=strict, workers=workers, layout=layout,
                               expected_frames=expected_frames, missing=missing, quiet=quiet)


def _check_pca_width(pca: Optional[FeaturePCA], pca_components: Optional[int], settings: Mapping[str, Any],
                     bb: Backbone) -> None:
    raw = int(settings["raw_dim"])
    if pca is not None and pca.input_dim != raw:
        raise ConfigError(f"its PCA takes rows of {pca.input_dim} values, the backbone {bb.name!r} gives {raw}; "
                          "expected a --pca-from file extracted with the same backbone", file=pca.source)
    if pca_components is not None and pca_components > raw:
        raise ConfigError(f"--pca {pca_components}: the backbone {bb.name!r} gives rows of {raw} values; expected "
                          f"--pca at most {raw}")


def _extract_locked(t0, out, all_ids, ids, shard_kn, bb, cfg, settings, pca, pca_components, fit_ids, *, resume,
                    force, strict, workers, layout, expected_frames, missing, quiet) -> ExtractSummary:
    """The work of :func:`extract_videos` once its arguments are checked and ``out`` is locked."""
    journal = Journal(out)
    kept: Dict[str, str] = {}           # video -> source sha256, in the previous output
    old_pca: Optional[FeaturePCA] = None
    if out.exists() and not resume and not force:
        raise OutputExistsError("exists already; pass --resume to add the missing videos or --force to overwrite",
                                file=out)
    if journal.exists() and not resume and not force:
        raise OutputExistsError(
            f"an interrupted extraction left {journal.count()} finished video(s) in {journal.dir}; pass --resume to "
            "continue it or --force to start over", file=out)
    if force and not resume:
        journal.remove()
    if resume:
        if out.exists():
            with FeaturesFile(out, RESUMED_FILE) as ff:
                if ff.settings != settings:
                    if not force:
                        raise ConfigError(_diff_message(ff.settings, settings, out))
                else:
                    old_pca = ff.pca
                    kept = ff.index()
                    for v in kept:  # every kept video is read (and checked) now, not after hours of work
                        ff.load(v)
        js = journal.settings()
        if js is not None and js != settings:
            if not force:
                raise ConfigError(_diff_message(js, settings, journal.dir))
            journal.remove()
    if kept:
        if old_pca is not None and pca_components is not None and old_pca.n_components == pca_components:
            pca, pca_components = old_pca, None  # resume reuses the PCA the earlier run fitted
        old_id = old_pca.sha256 if old_pca is not None else None
        new_id = pca.sha256 if pca is not None else ("fit" if pca_components is not None else None)
        if old_id != new_id:
            if not force:
                want = pca.describe() if pca is not None else (
                    f"a new pca-{pca_components}" if pca_components is not None else "none")
                raise ConfigError(f"{out}: holds features with pca {old_pca.describe() if old_pca else 'none'}, "
                                  f"this run asks for {want}; pass --force to start over")
            kept = {}
    journal.start(settings)
    done = journal.index()              # video -> header of its journal file
    done = {v: m for v, m in done.items() if v in all_ids}
    kept = {v: h for v, h in kept.items() if v in all_ids and v not in done}

    summary = ExtractSummary(out=out, videos=len(ids), shard=shard_kn)
    report = Report()
    for m in missing:
        report.add("video file missing", m)
    todo: List[Tuple[str, Path, Optional[str]]] = []
    for vid in ids:
        path = all_ids[vid]
        prev = done[vid]["sha256"] if vid in done else kept.get(vid)
        if prev is None:
            todo.append((vid, path, None))
            continue
        try:
            digest = _sha256(require_video(path))
        except InputError:
            digest = None
        if digest == prev:
            summary.resumed += 1
        else:
            done.pop(vid, None)
            kept.pop(vid, None)
            todo.append((vid, path, digest))
    # (the count of resumed videos is in the summary, not in the file's report: a resumed run
    # writes the same bytes as a run that was never interrupted)

    with _resume_hint(journal):
        # ---- extract
        stop_exc: Optional[InputError] = None
        with _progress(len(todo), quiet) as bar:
            for vid, res in _run_many(todo, bb, cfg, workers):
                if isinstance(res, InputError):
                    summary.failed.append((str(all_ids[vid]), str(res)))
                    report.add(FAILED, vid)
                    bar.update(1)
                    if strict:
                        stop_exc = res
                        break
                    continue
                journal.add(res)
                done[vid] = res.meta()
                summary.extracted += 1
                summary.frames += res.n_frames
                for w in res.warnings:
                    report.add(w.split(":")[0], vid)
                    summary.warnings.setdefault(vid, []).append(w)
                if expected_frames and vid in expected_frames:
                    exp = int(expected_frames[vid])
                    if abs(res.n_frames - exp) > 0.01 * max(exp, 1):
                        report.add(FRAME_MISMATCH, f"{vid} ({res.n_frames} vs {exp})")
                fps = summary.frames / max(time.perf_counter() - t0, 1e-9)
                bar.update(1, frames_per_s=round(fps, 1))

        # ---- PCA and the file (rows read back one video at a time: memory stays small)
        if pca_components is not None:
            pca = _fit(fit_ids, done, journal, all_ids, bb, cfg, pca_components, report)
        summary.report = report.to_dict()
        summary.report["failed"] = [{"source": s, "error": m} for s, m in summary.failed]
        n_written = len(done) + len(kept)
        with contextlib.ExitStack() as stack:
            old = stack.enter_context(FeaturesFile(out, RESUMED_FILE)) if kept else None

            def final():
                for v in sorted(set(done) | set(kept)):
                    yield _apply_pca(journal.load(v), pca) if v in done else old.load(v)

            write_features_file(out, final(), _file_attrs(settings, pca), pca=pca, report=summary.report,
                                layout=layout)
    journal.remove()
    summary.seconds = time.perf_counter() - t0
    if stop_exc is not None:
        raise InputError(f"stopped at the first failed video (--strict; the {n_written} finished video(s) are "
                         f"in {out}): {stop_exc}")
    return summary


@contextlib.contextmanager
def _resume_hint(journal: Journal):
    """On Ctrl-C or SIGTERM, tell the CLI's message that the finished videos stay for --resume;
    on an error after videos finished (a PCA that cannot be fitted), say where they are kept."""
    try:
        yield
    except KeyboardInterrupt as exc:
        n = journal.count() if journal.exists() else 0
        if n:
            exc.resume_hint = f"{n} finished video(s) kept in {journal.dir}: rerun with --resume to continue"
        raise
    except RelocbenchError as exc:
        n = journal.count() if journal.exists() else 0
        if not n or (exc.file and Path(exc.file).parent == journal.dir):  # not when the journal is the problem
            raise
        raise type(exc)(f"{exc.message} ({n} finished video(s) kept in {journal.dir}: rerun with --resume to "
                        "keep them)", file=exc.file, item=exc.item) from None


def _diff_message(old: Mapping[str, Any], new: Mapping[str, Any], where: Path) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    diffs = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f"{where}: was extracted with other settings ({diffs}); pass --force to start over"


def _file_attrs(settings: Mapping[str, Any], pca: Optional[FeaturePCA]) -> Dict[str, Any]:
    # plain values only (an int beyond 64 bits would become an object-dtype attribute HDF5 cannot
    # store); every setting is in the JSON ``settings`` attribute anyway
    attrs = {k: v for k, v in settings.items() if isinstance(v, (str, float)) or (
        isinstance(v, int) and not isinstance(v, bool) and -2 ** 63 <= v < 2 ** 63)}
    attrs["settings"] = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))
    attrs["dim"] = int(pca.n_components if pca is not None else settings["raw_dim"])
    attrs["pca"] = pca.describe() if pca is not None else "none"
    return attrs


def _apply_pca(e: Entry, pca: Optional[FeaturePCA]) -> Entry:
    if pca is None:
        return e
    return Entry(video=e.video, features=pca.transform(e.features), fps=e.fps, n_frames=e.n_frames,
                 source=e.source, sha256=e.sha256, start_frame=e.start_frame, warnings=e.warnings)


def _fit_ids(pca_fit: Videos, all_ids: Mapping[str, Path]) -> Dict[str, Optional[Path]]:
    """``{id: path or None}`` of the fitting videos: ids of the extracted set, or other paths."""
    if isinstance(pca_fit, Mapping):
        return {str(k): Path(v) for k, v in pca_fit.items()}
    if isinstance(pca_fit, (str, os.PathLike)):
        pca_fit = [pca_fit]
    out: Dict[str, Optional[Path]] = {}
    for item in pca_fit:
        s = str(item)
        if s in all_ids:
            out[s] = all_ids[s]
        else:
            p = Path(item)
            out[p.stem] = p
    return out


def _fit(fit_ids, done, journal, all_ids, bb, cfg, n, report) -> FeaturePCA:
    from .pca import MAX_FIT_ROWS, even_rows

    per_video = max(1, MAX_FIT_ROWS // max(1, len(fit_ids)))
    rows, failed = [], []
    for vid in sorted(fit_ids):
        path = fit_ids[vid]
        if vid in done and all_ids.get(vid) == path:
            rows.append(even_rows(journal.load(vid).features, per_video))
            continue
        try:
            rows.append(even_rows(_raw_features(path, vid, bb, cfg).features, per_video))
        except InputError as exc:
            report.add("PCA fitting video failed to decode", vid)
            failed.append(f"{path} ({exc.message if exc.file else exc})")
    if not rows:
        shown = "; ".join(failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
        raise ConfigError(f"no rows to fit the PCA on: all {len(fit_ids)} --pca-fit video(s) failed: {shown}")
    return fit_pca(rows, n)
