"""The temporal re-localization dataset of Feng et al. (ECCV 2018), rebuilt from ActivityNet v1.3.

Protocol ``feng2018`` (reference-algorithms.md Sec. 1), step by step:

1. Classes are the annotation's leaf classes sorted by name; the class split is a ``.npy``
   permutation of their indices (``[:n-2m]`` train, next ``m`` val, last ``m`` test with
   ``m = round(n / 10)``, i.e. 160/20/20 for ActivityNet) or a JSON ``{"train": [...],
   "val": [...], "test": [...]}`` of class names; without one, ``split_seed`` draws a
   permutation.
2. Per video, annotations sorted by start time; for each ``i`` and ``j = i+1, ...`` while
   ``start_j <= end_i``: the same label merges ``j`` into ``i`` (``j`` marked removed,
   ``end_i = max(end_i, end_j)``), a different label drops the whole video. The loop visits
   marked annotations as ``i`` too, exactly as the original release was built.
3. Seconds to 16-frame steps: ``start = floor(n_frames * t / duration / 16)``,
   ``end = min(n_steps, floor(n_frames * t / duration / 16) + 1)`` (end exclusive), with
   ``n_frames`` and ``n_steps`` from ``c3d_length.json``. Without a lengths file,
   ``n_frames = round(duration * fps)`` and ``n_steps = n_frames // 16`` (the relation that
   holds for 98% of the C3D release).
4. A segment is kept when ``0 < end - start <= 32`` steps.
5. Its reference window runs from the end of the preceding same-label annotation (start
   formula; 0 if none) to the start of the following one (end formula; the video's end if
   none). Windows longer than 300 steps are cropped to 300 at a seeded random position that
   keeps the segment inside.
6. Evaluation pairs (val and test): every segment is a query; each of its
   ``pairs_per_query`` references is a different segment of the same class whose window is
   at least as long as the query, drawn with the seed.

Seconds columns of ``segments`` and ``pairs`` are the step boundaries converted back with
``t = step * 16 * duration / n_frames`` (clipped to the duration), so that step and second
units describe the same spans. ``timelines`` keeps the annotation seconds as annotated.
Video ids are YouTube ids without the ``v_`` prefix (the release's convention).

Input problems: annotations that end before they start, start below 0 or at/after the end of
the video are dropped; annotations that end after the video's duration are clipped to it;
videos without annotations or without a lengths entry are skipped (``strict=True`` makes a
missing lengths entry an error). Every one of these is counted in the report. Every value
read is checked for its type and range first (:mod:`relocbench.validate`): a wrong container,
a non-finite or non-integer number, a label that is not a string is an InputError naming the
file and the item.

The manifest and the ``export`` folder are committed together at the end (the export first),
so that a build that fails, or is interrupted by Ctrl-C or SIGTERM, leaves neither.
"""
from __future__ import annotations

import math
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .. import validate as V
from ..errors import ConfigError, InputError
from ..io import atomic_dir, check_output, dumps_json, read_json, require_file
from ..manifest import write_manifest_into
from .common import Report, check_separate_outputs, histogram_png, input_records, markdown_table

__all__ = [
    "BUILDER_NAME",
    "BUILDER_VERSION",
    "ActivityNetConfig",
    "VideoInfo",
    "read_annotations",
    "read_lengths",
    "read_class_split",
    "build_tables",
    "build_activitynet",
    "export_video_reloc_json",
]

BUILDER_NAME = "activitynet"
BUILDER_VERSION = "1.0.0"
SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
#: Largest frame or step count accepted (exact in a float64, so seconds and steps agree).
MAX_COUNT = 2 ** 53


@dataclass(frozen=True)
class ActivityNetConfig:
    """Every parameter of a build; all of it goes into manifest.json."""

    protocol: str = "feng2018"
    seed: int = 0
    split_seed: Optional[int] = None
    fps: float = 30.0
    step_frames: int = 16
    max_segment_steps: int = 32
    max_window_steps: int = 300
    pairs_per_query: int = 1
    allow_self_pairs: bool = False
    strict: bool = False

    def validate(self) -> "ActivityNetConfig":
        if self.protocol != "feng2018":
            raise ConfigError(f"protocol must be 'feng2018', got {self.protocol!r}")
        V.seed(self.seed, "seed", owner="ActivityNetConfig")
        V.seed(self.split_seed, "split_seed", owner="ActivityNetConfig", allow_none=True)
        where = "the {!r} parameter of ActivityNetConfig".format
        V.finite(self.fps, item=where("fps"), min=0.0, min_open=True, error=ConfigError)
        for name in ("pairs_per_query", "step_frames", "max_segment_steps", "max_window_steps"):
            V.integer(getattr(self, name), item=where(name), min=1, error=ConfigError)
        if self.max_window_steps < self.max_segment_steps:
            raise ConfigError(
                f"max_window_steps ({self.max_window_steps}) must be >= max_segment_steps "
                f"({self.max_segment_steps})"
            )
        return self


@dataclass
class VideoInfo:
    """One video's annotations as read from either ActivityNet layout."""

    video: str  # YouTube id, no "v_" prefix
    duration_s: float
    subset: Optional[str]
    annotations: List[Tuple[float, float, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- reading inputs


def _strip_v(video: str) -> str:
    return video[2:] if video.startswith("v_") else video


def read_annotations(path: Path) -> Tuple[Dict[str, VideoInfo], Dict[str, object], List[str]]:
    """Read ActivityNet annotations in the official layout (``database``/``taxonomy``) or the
    per-video layout (``{"v_<id>": {duration_second, annotations, ...}}``).

    Returns ``(videos, taxonomy ids by class name, class names)``; the class names are the
    taxonomy's leaf classes when there is a taxonomy, else every label annotated.
    """
    data = read_json(path, "ActivityNet annotation file")
    V.mapping(data, file=path, what="a JSON object of videos (or with 'database' and 'taxonomy')")
    node_ids: Dict[str, object] = {}
    if "database" in data:
        db = V.mapping(data["database"], file=path, item="'database'", what="an object of videos")
        taxonomy = data.get("taxonomy")
        taxonomy = [] if taxonomy is None else V.sequence(taxonomy, file=path, item="'taxonomy'",
                                                          what="a list of taxonomy nodes")
        nodes = []
        for k, node in enumerate(taxonomy):
            where = f"taxonomy node {k}"
            V.mapping(node, file=path, item=where, what="an object {nodeId, nodeName, parentId}")
            for key in ("nodeId", "parentId"):
                if node.get(key) is not None and not isinstance(node[key], str):
                    V.integer(node[key], file=path, item=f"{where} {key!r}", what="an integer, a string or null")
            if "nodeName" in node:
                V.string(node["nodeName"], file=path, item=f"{where} 'nodeName'")
            nodes.append(node)
        parents = {n.get("parentId") for n in nodes}
        leaves = [n for n in nodes if n.get("nodeId") not in parents]
        node_ids = {n["nodeName"]: n["nodeId"] for n in leaves if "nodeName" in n}
        dur_key = "duration"
        official = True
    else:
        official = False
        db = data
        dur_key = "duration_second"
    videos: Dict[str, VideoInfo] = {}
    for key, entry in db.items():
        V.string(key, file=path, item=f"video key {key!r}", what="a video id (a non-empty string)")
        item = f"video {key!r}"
        V.mapping(entry, file=path, item=item, what=f"an object with {dur_key!r} and 'annotations'",
                  required=(dur_key,))
        duration = V.finite(entry[dur_key], file=path, item=f"{item} {dur_key!r}", what="a finite number of seconds")
        subset = entry.get("subset")
        if subset is not None:
            V.string(subset, file=path, item=f"{item} 'subset'", what="a subset name (a string) or null")
        raw_anns = V.sequence(entry.get("annotations", []), file=path, item=f"{item} 'annotations'",
                              what="a list of annotations")
        anns = []
        for k, ann in enumerate(raw_anns):
            where = f"{item} annotation {k}"
            V.mapping(ann, file=path, item=where, what="an object {'segment': [start, end], 'label': name}",
                      required=("segment", "label"))
            seg = V.sequence(ann["segment"], file=path, item=f"{where} 'segment'", length=2,
                             what="a list [start, end] of two numbers")
            s, e = (V.finite(x, file=path, item=f"{where} 'segment'", what="a finite number of seconds")
                    for x in seg)
            label = V.string(ann["label"], file=path, item=f"{where} 'label'", what="a class name (a non-empty string)")
            anns.append((s, e, label))
        vid = str(key) if official else _strip_v(str(key))
        videos[vid] = VideoInfo(vid, duration, subset, anns)
    if node_ids:
        classes = sorted(node_ids)
    else:
        classes = sorted({a[2] for v in videos.values() for a in v.annotations})
    return videos, node_ids, classes


def read_lengths(path: Path) -> Dict[str, Tuple[int, int]]:
    """Read ``c3d_length.json``: ``{youtube_id: {"n_frames": int, "n_feat": int}}`` (keys are
    YouTube ids as they are, without a ``v_`` prefix)."""
    data = read_json(path, "lengths file")
    V.mapping(data, file=path, what="a JSON object {video: {n_frames, n_feat}}")
    out = {}
    for key, entry in data.items():
        V.string(key, file=path, item=f"video key {key!r}", what="a video id (a non-empty string)")
        item = f"video {key!r}"
        V.mapping(entry, file=path, item=item, what="an object {'n_frames': int, 'n_feat': int}",
                  required=("n_frames", "n_feat"))
        nf = V.integer(entry["n_frames"], file=path, item=f"{item} 'n_frames'", min=1, max=MAX_COUNT,
                       integral_floats=True)
        nfeat = V.integer(entry["n_feat"], file=path, item=f"{item} 'n_feat'", min=0, max=MAX_COUNT,
                          integral_floats=True)
        out[str(key)] = (nf, nfeat)
    return out


def _split_sizes(n: int) -> Tuple[int, int, int]:
    m = int(round(n / 10))
    return n - 2 * m, m, m


def read_class_split(path: Optional[Path], classes: Sequence[str], split_seed: Optional[int]) -> Dict[str, str]:
    """Map every class name to ``train``/``val``/``test``.

    ``path`` is a ``.npy`` permutation of ``range(len(classes))`` indexing the sorted class
    names, or a JSON object of class-name lists; it must partition ``classes`` exactly.
    """
    classes = sorted(classes)
    n = len(classes)
    n_train, n_val, _ = _split_sizes(n)
    if path is None:
        perm = np.random.default_rng(0 if split_seed is None else split_seed).permutation(n)
    elif Path(path).suffix == ".npy":
        require_file(path, "class split")
        try:
            perm = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"unreadable .npy class split ({exc})", file=path) from None
        if perm.ndim != 1 or not np.issubdtype(perm.dtype, np.integer):
            raise InputError(f"expected a 1-D integer permutation, found shape {perm.shape} dtype {perm.dtype}", file=path)
        if sorted(perm.tolist()) != list(range(n)):
            raise InputError(
                f"is not a permutation of 0..{n - 1} (the annotation has {n} classes; "
                f"found {perm.size} entries)", file=path,
            )
    else:
        doc = read_json(path, "class split")
        if not isinstance(doc, dict) or set(doc) != set(SPLITS):
            has = f"an object with the keys {sorted(map(str, doc))}" if isinstance(doc, dict) else V.found(doc)
            raise InputError(f"expected a JSON object with exactly the keys {list(SPLITS)}, found {has}", file=path)
        mapping: Dict[str, str] = {}
        for split in SPLITS:
            names = V.sequence(doc[split], file=path, item=repr(split), what="a list of class names")
            for k, name in enumerate(names):
                V.string(name, file=path, item=f"{split!r} entry {k}", what="a class name (a non-empty string)")
                if name in mapping:
                    raise InputError(f"is not a partition: class {name!r} is in {mapping[name]!r} and {split!r}", file=path)
                mapping[name] = split
        unknown = sorted(set(mapping) - set(classes))
        missing = sorted(set(classes) - set(mapping))
        if unknown or missing:
            raise InputError(
                "is not a partition of the annotation's classes: "
                + (f"unknown {unknown[:3]}{'...' if len(unknown) > 3 else ''} " if unknown else "")
                + (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else ""),
                file=path,
            )
        return mapping
    mapping = {}
    for rank, idx in enumerate(perm.tolist()):
        mapping[classes[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return mapping


# --------------------------------------------------------------------------- the protocol


def _merge_literal(anns: List[List]) -> Optional[List[List]]:
    """Step 2 of the protocol on ``[start, end, label, removed]`` rows sorted by start.

    Returns the surviving rows, or None when two different labels overlap.
    """
    n = len(anns)
    for i in range(n):
        j = i + 1
        while j < n and anns[j][0] <= anns[i][1]:
            if anns[j][2] != anns[i][2]:
                return None
            anns[j][3] = True
            anns[i][1] = max(anns[i][1], anns[j][1])
            j += 1
    return [a for a in anns if not a[3]]


class _StepClock:
    """Seconds <-> 16-frame steps for one video, with the original code's formulas."""

    def __init__(self, n_frames: int, n_steps: int, duration: float, step_frames: int) -> None:
        self.n_frames, self.n_steps, self.duration, self.sf = n_frames, n_steps, duration, step_frames

    def start(self, t: float) -> int:
        return int(math.floor(self.n_frames * t / self.duration / self.sf))

    def end(self, t: float) -> int:
        return min(self.n_steps, int(math.floor(self.n_frames * t / self.duration / self.sf)) + 1)

    def seconds(self, step) -> np.ndarray:
        step = np.asarray(step, dtype=np.float64)
        return np.minimum(self.duration, step * self.sf * self.duration / self.n_frames)


def _stable_rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(k.encode("utf-8")) for k in keys])


def build_tables(
    videos: Dict[str, VideoInfo],
    lengths: Optional[Dict[str, Tuple[int, int]]],
    class_split: Dict[str, str],
    config: ActivityNetConfig,
    report: Optional[Report] = None,
    progress: bool = False,
    *,
    annotations_file: Optional[Path] = None,
    lengths_file: Optional[Path] = None,
) -> Tuple[Dict[Tuple[str, Optional[str]], pd.DataFrame], Report]:
    """Apply the protocol; return ``{(table, split): DataFrame}`` and the drop report.

    ``annotations_file`` and ``lengths_file`` only name the inputs in error messages.
    """
    from ..progress import Progress

    config.validate()
    report = report if report is not None else Report()
    video_ids = sorted(videos)
    with Progress(total=len(video_ids), desc="videos", unit="video", quiet=not progress) as bar:
        seg_rows, timeline_rows = _segments_and_timelines(
            videos, video_ids, lengths, class_split, config, report, bar, annotations_file, lengths_file)
    return _assemble(seg_rows, timeline_rows, videos, lengths, config, report)


def _segments_and_timelines(videos, video_ids, lengths, class_split, config, report, bar, annotations_file,
                            lengths_file) -> Tuple[List[dict], List[dict]]:
    """Steps 2-5 of the protocol, video by video: segment rows and timeline rows."""
    seg_rows: List[dict] = []
    timeline_rows: List[dict] = []
    crop_rng = _stable_rng(config.seed, "window-crop")
    for vid in video_ids:
        bar.update(1)
        info = videos[vid]
        if not info.annotations:
            report.add("videos without annotations (skipped)", vid)
            continue
        if lengths is not None:
            if vid not in lengths:
                if config.strict:
                    raise InputError(
                        f"has no entry for video {vid!r} of the annotation file (--strict refuses a video "
                        "without one; without --strict it is skipped and counted)", file=lengths_file,
                    )
                report.add("videos without a lengths entry (skipped)", vid)
                continue
            n_frames, n_steps = lengths[vid]
        else:
            frames = info.duration_s * config.fps
            if not frames <= MAX_COUNT:
                raise InputError(
                    f"expected a duration of at most {MAX_COUNT} frames at {config.fps:g} fps, found "
                    f"{info.duration_s:g} s", file=annotations_file, item=f"video {vid!r}",
                )
            n_frames = int(round(frames))
            n_steps = n_frames // config.step_frames
        if not info.duration_s > 0 or n_steps <= 0:
            report.add("videos with zero duration or no feature steps (skipped)", vid)
            continue
        clock = _StepClock(n_frames, n_steps, info.duration_s, config.step_frames)
        raw = []
        for s, e, label in info.annotations:
            if label not in class_split:
                raise InputError(f"label {label!r} is not a class of the class split (a taxonomy leaf when the "
                                 "file has a taxonomy)", file=annotations_file, item=f"video {vid!r}")
            if e < s or s < 0:
                report.add("annotations ending before they start or starting below 0 (dropped)", f"{vid} [{s}, {e}]")
                continue
            if s >= info.duration_s:
                report.add("annotations starting at or after the video's end (dropped)", f"{vid} [{s}, {e}]")
                continue
            if e > info.duration_s:
                report.add("annotations ending after the video's end (clipped to its duration)", f"{vid} [{s}, {e}]")
                e = info.duration_s
            raw.append((s, e, label))
        if not raw:
            report.add("videos left without valid annotations (skipped)", vid)
            continue
        rows = [[s, e, label, False, k] for k, (s, e, label) in enumerate(sorted(raw, key=lambda a: a[0]))]
        merged = _merge_literal(rows)
        if merged is None:
            report.add("videos with overlapping annotations of different classes (dropped)", vid)
            continue
        kept_any = False
        kept_spans: List[Tuple[float, float]] = []
        for k, (s, e, label, _, _) in enumerate(merged):
            start, end = clock.start(s), clock.end(e)
            if not 0 < end - start <= config.max_segment_steps:
                reason = (
                    f"segments longer than {config.max_segment_steps} steps (dropped)"
                    if end - start > config.max_segment_steps else "segments with no feature step inside the video (dropped)"
                )
                report.add(reason, f"{vid} [{s:.2f}, {e:.2f}]")
                continue
            prev = [m for m in merged[:k] if m[2] == label]
            nxt = [m for m in merged[k + 1:] if m[2] == label]
            ws = clock.start(prev[-1][1]) if prev else 0
            we = clock.end(nxt[0][0]) if nxt else n_steps
            if we - ws > config.max_window_steps:
                lo = max(ws, end - config.max_window_steps)
                hi = min(start, we - config.max_window_steps)
                ws = int(crop_rng.integers(lo, hi + 1))
                we = ws + config.max_window_steps
                report.add(f"windows cropped to {config.max_window_steps} steps (kept)", f"{vid} [{start}, {end})")
            secs = clock.seconds([start, end, ws, we])
            seg_rows.append({
                "segment_id": f"{vid}_{start}_{end}", "video": vid, "label": label,
                "split": class_split[label], "start_step": start, "end_step": end,
                "window_start_step": ws, "window_end_step": we,
                "start_s": secs[0], "end_s": secs[1], "window_start_s": secs[2], "window_end_s": secs[3],
                "duration_s": info.duration_s, "n_steps": n_steps,
            })
            kept_any = True
            kept_spans.append((s, e))
        if not kept_any:
            continue
        for s, e, label in sorted(raw, key=lambda a: (a[0], a[1], a[2])):
            kept = any(ks <= s and e <= ke for ks, ke in kept_spans)
            timeline_rows.append({
                "video": vid, "label": label, "start_s": s, "end_s": e,
                "start_step": clock.start(s), "end_step": max(clock.start(s), clock.end(e)), "kept": kept,
                "duration_s": info.duration_s, "n_frames": n_frames, "n_steps": n_steps,
            })
    return seg_rows, timeline_rows


def _assemble(seg_rows, timeline_rows, videos, lengths, config, report):
    seg_cols = ["segment_id", "video", "label", "split", "start_step", "end_step",
                "window_start_step", "window_end_step", "start_s", "end_s",
                "window_start_s", "window_end_s", "duration_s", "n_steps"]
    segments = pd.DataFrame(seg_rows, columns=seg_cols)
    tables: Dict[Tuple[str, Optional[str]], pd.DataFrame] = {}
    for split in SPLITS:
        part = segments[segments["split"] == split].reset_index(drop=True)
        tables[("segments", split)] = part
        if split in EVAL_SPLITS:
            tables[("pairs", split)] = _make_pairs(part, videos, lengths, config, split, report)
    tl_cols = ["video", "label", "start_s", "end_s", "start_step", "end_step", "kept",
               "duration_s", "n_frames", "n_steps"]
    tables[("timelines", None)] = pd.DataFrame(timeline_rows, columns=tl_cols)
    return tables, report


def _make_pairs(
    segments: pd.DataFrame,
    videos: Dict[str, VideoInfo],
    lengths: Optional[Dict[str, Tuple[int, int]]],
    config: ActivityNetConfig,
    split: str,
    report: Report,
) -> pd.DataFrame:
    """Fixed evaluation pairs: every segment a query, references of the same class."""
    rng = _stable_rng(config.seed, "pairs", split)
    seg = segments.sort_values("segment_id").reset_index(drop=True)
    qlen = (seg["end_step"] - seg["start_step"]).to_numpy()
    wlen = (seg["window_end_step"] - seg["window_start_step"]).to_numpy()
    labels = seg["label"].to_numpy()
    by_label: Dict[str, np.ndarray] = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    for lab, idx in sorted(by_label.items()):
        if len(idx) < 2:
            report.add(f"classes with fewer than two segments in split {split} (no pair possible)", lab)
    per_second = {
        v: (seg.loc[i, "duration_s"], _frames_for(videos, lengths, v, config))
        for i, v in zip(seg.index, seg["video"])
    }
    rows = []
    for qi in range(len(seg)):
        cand = by_label[labels[qi]]
        ok = cand[(wlen[cand] >= qlen[qi]) & ((cand != qi) | config.allow_self_pairs)]
        if ok.size == 0:
            report.add(f"queries without a possible reference in split {split} (no pair)", seg.loc[qi, "segment_id"])
            continue
        k = min(config.pairs_per_query, ok.size)
        if k < config.pairs_per_query:
            report.add(f"queries with fewer than {config.pairs_per_query} possible references in split {split}",
                       seg.loc[qi, "segment_id"])
        refs = rng.choice(ok, size=k, replace=False)
        q = seg.loc[qi]
        for n, ri in enumerate(refs.tolist()):
            r = seg.loc[ri]
            rows.append(_pair_row(q, r, n, per_second, config))
    cols = ["pair_id", "label", "query_segment_id", "query_video", "query_start_step", "query_end_step",
            "ref_segment_id", "ref_video", "ref_start_step", "ref_end_step", "gt_start_step", "gt_end_step",
            "query_start_s", "query_end_s", "ref_start_s", "ref_end_s", "gt_start_s", "gt_end_s"]
    return pd.DataFrame(rows, columns=cols)


def _frames_for(videos, lengths, vid, config) -> int:
    if lengths is not None:
        return lengths[vid][0]
    return int(round(videos[vid].duration_s * config.fps))


def _pair_row(q: pd.Series, r: pd.Series, n: int, per_second, config: ActivityNetConfig) -> dict:
    q_dur, q_frames = per_second[q["video"]]
    r_dur, r_frames = per_second[r["video"]]
    qc = _StepClock(q_frames, int(q["n_steps"]), q_dur, config.step_frames)
    rc = _StepClock(r_frames, int(r["n_steps"]), r_dur, config.step_frames)
    ws, we = int(r["window_start_step"]), int(r["window_end_step"])
    gs, ge = int(r["start_step"]) - ws, int(r["end_step"]) - ws
    qs_s, qe_s = qc.seconds([q["start_step"], q["end_step"]])
    rs_s, re_s, gs_abs, ge_abs = rc.seconds([ws, we, ws + gs, ws + ge])
    return {
        "pair_id": f"{q['segment_id']}/{n}", "label": q["label"],
        "query_segment_id": q["segment_id"], "query_video": q["video"],
        "query_start_step": int(q["start_step"]), "query_end_step": int(q["end_step"]),
        "ref_segment_id": r["segment_id"], "ref_video": r["video"],
        "ref_start_step": ws, "ref_end_step": we, "gt_start_step": gs, "gt_end_step": ge,
        "query_start_s": float(qs_s), "query_end_s": float(qe_s),
        "ref_start_s": float(rs_s), "ref_end_s": float(re_s),
        "gt_start_s": float(gs_abs - rs_s), "gt_end_s": float(ge_abs - rs_s),
    }


# --------------------------------------------------------------------------- outputs


def export_video_reloc_json(
    tables: Dict[Tuple[str, Optional[str]], pd.DataFrame],
    out_dir: Path,
    node_ids: Dict[str, object],
    *,
    force: bool = False,
) -> Path:
    """Write ``{train,val,test}.json`` in the original release's layout.

    Each segment is ``{"id": youtube id, "label": taxonomy node id (the class name when the
    annotation has no taxonomy), "location": [window start, end), "groundtruth": [start,
    end) relative to the window start}`` in steps.
    """
    with atomic_dir(out_dir, force=force) as tmp:
        _write_video_reloc_json(tmp, tables, node_ids)
    return Path(out_dir)


def _write_video_reloc_json(folder: Path, tables, node_ids: Dict[str, object]) -> None:
    for split in SPLITS:
        seg = tables[("segments", split)].sort_values(["video", "start_step"])
        items = [
            {
                "id": r.video,
                "label": node_ids.get(r.label, r.label),
                "location": [int(r.window_start_step), int(r.window_end_step)],
                "groundtruth": [int(r.start_step - r.window_start_step), int(r.end_step - r.window_start_step)],
            }
            for r in seg.itertuples()
        ]
        (folder / f"{split}.json").write_text(dumps_json(items), encoding="utf-8")


def _stats_writer(tables, report: Report, class_split: Dict[str, str]):
    def write(tmp: Path) -> List[str]:
        rows = []
        for split in SPLITS:
            seg = tables[("segments", split)]
            pairs = tables.get(("pairs", split))
            rows.append([
                split, len(seg), seg["video"].nunique(), seg["label"].nunique(),
                sum(1 for v in class_split.values() if v == split),
                "-" if pairs is None else len(pairs),
            ])
        allseg = pd.concat([tables[("segments", s)] for s in SPLITS])
        qlen = (allseg["end_step"] - allseg["start_step"]).to_numpy()
        wlen = (allseg["window_end_step"] - allseg["window_start_step"]).to_numpy()
        ratio = qlen / np.maximum(wlen, 1)
        histogram_png(
            tmp / "lengths.png",
            [
                ("segment (query) length", qlen, "steps (16 frames)"),
                ("reference window length", wlen, "steps (16 frames)"),
                ("segment / window", ratio, "fraction of the window"),
            ],
            title="ActivityNet re-localization (feng2018): length histograms",
        )
        lines = [
            "# ActivityNet re-localization manifest: statistics",
            "",
            "Generated by `relocbench build-dataset activitynet`; do not edit by hand.",
            "",
            markdown_table(
                ["split", "segments", "videos", "classes with segments", "classes in split", "pairs"], rows
            ),
            "## Lengths (steps of 16 frames)",
            "",
            markdown_table(
                ["split", "segment min", "segment median", "segment max", "window min", "window median", "window max"],
                [
                    [s, *_quantiles(tables[("segments", s)], "start_step", "end_step"),
                     *_quantiles(tables[("segments", s)], "window_start_step", "window_end_step")]
                    for s in SPLITS
                ],
            ),
            "![length histograms](lengths.png)",
            "",
            "## Classes per split",
            "",
        ]
        for split in SPLITS:
            seg = tables[("segments", split)]
            counts = seg["label"].value_counts()
            names = sorted(c for c, v in class_split.items() if v == split)
            lines.append(f"- **{split}** ({len(names)}): " + ", ".join(f"{c} ({int(counts.get(c, 0))})" for c in names))
        lines += ["", "## Dropped and skipped items", ""]
        rep = report.to_dict()
        lines.append(markdown_table(["reason", "count"], [[k, v["count"]] for k, v in rep.items()]) if rep else "none\n")
        (tmp / "STATS.md").write_text("\n".join(lines), encoding="utf-8")
        return ["STATS.md", "lengths.png"]

    return write


def _quantiles(df: pd.DataFrame, a: str, b: str) -> List[object]:
    if len(df) == 0:
        return ["-", "-", "-"]
    x = (df[b] - df[a]).to_numpy()
    return [int(x.min()), float(np.median(x)), int(x.max())]


@dataclass
class BuildResult:
    out: Path
    tables: Dict[Tuple[str, Optional[str]], pd.DataFrame]
    report: Report
    export: Optional[Path] = None

    def summary_rows(self) -> List[List[object]]:
        rows = []
        for split in SPLITS:
            seg = self.tables[("segments", split)]
            pairs = self.tables.get(("pairs", split))
            rows.append([split, len(seg), seg["video"].nunique(), seg["label"].nunique(),
                         "-" if pairs is None else len(pairs)])
        return rows


def build_activitynet(
    annotations: Path,
    out: Path,
    *,
    lengths: Optional[Path] = None,
    class_split: Optional[Path] = None,
    config: ActivityNetConfig = ActivityNetConfig(),
    force: bool = False,
    export: Optional[Path] = None,
    progress: bool = False,
) -> BuildResult:
    """Build the ActivityNet re-localization manifest into ``out`` (atomically).

    >>> build_activitynet(Path("anet_anno_action.json"), Path("out"),            # doctest: +SKIP
    ...                   lengths=Path("c3d_length.json"), class_split=Path("class_perm.npy"))
    """
    config.validate()
    out = Path(out)
    check_output(out, force)
    if export is not None:
        export = Path(export)
        check_output(export, force)
        check_separate_outputs(out=out, export=export)
    annotations = require_file(annotations, "ActivityNet annotation file")
    videos, node_ids, classes = read_annotations(annotations)
    lens = read_lengths(require_file(lengths, "lengths file")) if lengths is not None else None
    split_map = read_class_split(class_split, classes, config.split_seed)
    tables, report = build_tables(videos, lens, split_map, config, progress=progress,
                                  annotations_file=annotations, lengths_file=lengths)
    params = asdict(config)
    params["class_split_source"] = "file" if class_split is not None else "split_seed"
    meta = {
        "name": "activitynet",
        "task": "temporal",
        "builder": {"name": BUILDER_NAME, "version": BUILDER_VERSION},
        "protocol": config.protocol,
        "params": params,
        "inputs": input_records(annotations=annotations, lengths=lengths, class_split=class_split),
        "classes": {s: sorted(c for c, v in split_map.items() if v == s) for s in SPLITS},
        "units": {"step_frames": config.step_frames, "seconds": "step * step_frames * duration / n_frames"},
        "report": report.to_dict(),
    }
    # The manifest and the export are committed together: the export first, then the
    # manifest, so that a failed export never leaves a complete manifest at ``out`` (and a
    # manifest that fails at the last step takes the export it came with away again).
    export_written = False
    try:
        with atomic_dir(out, force=force) as out_tmp:
            write_manifest_into(out_tmp, tables, meta, extras=_stats_writer(tables, report, split_map), out=out)
            if export is not None:
                with atomic_dir(export, force=force) as exp_tmp:
                    _write_video_reloc_json(exp_tmp, tables, node_ids)
                export_written = True
    except BaseException:
        if export_written:
            shutil.rmtree(export, ignore_errors=True)
        raise
    return BuildResult(out, tables, report, export)
