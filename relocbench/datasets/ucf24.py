"""The UCF101-24 spatio-temporal re-localization dataset of Feng et al. (CVPR 2019, Sec. 5).

Input: the corrected UCF101-24 tube annotations ``pyannot_with_class_names.pkl`` (a Python 2
pickle: ``{"classes": [24 names], "trainvideos": [...], "db": {video: {"numf", "label",
"annotations": [{"label", "sf", "ef", "boxes"}]}}}``, boxes one row per frame ``x, y, w, h``
in pixels of a 320x240 frame, stored as small unsigned integers), or the original
``pyannot.pkl`` that was converted from the THUMOS XML files (the bare ``db`` dictionary, no
class names: the names come from the video folders, ``Basketball/v_Basketball_g01_c01``).
The pickle is read with :func:`relocbench.validate.read_pickle`, which builds only plain
Python values and NumPy arrays (a pickle naming any other class is refused, so that a
hostile file cannot run code), and every value is checked for its type and range.

Protocol ``feng2019``, step by step:

1. Every annotated tube becomes a tubelet: ``label`` is the class name, ``start``/``end`` its
   first frame and one past its last (0-based frame indices), ``person_id`` the tube's index
   in its video, ``tubelet_id`` ``video:index:start``. Boxes become normalised xyxy
   (``x / 320, y / 240, (x + w) / 320, (y + h) / 240``), clipped to the frame (counted); a box
   of zero area is dropped (counted), and a tube left without boxes is dropped (counted).
2. Classes: the 24 sorted class names, permuted with ``split_seed`` (default 0): the first 14
   are training classes, the next 5 validation, the last 5 test (the paper does not list
   its classes), or a JSON ``{"train": [...], "val": [...], "test": [...]}``.
   With ``test_list`` (``testlist01.txt``) training tubelets come only from the official
   training videos and validation/test tubelets only from the official test videos, so that
   a backbone trained on UCF101 split 1 never saw an evaluation video (other tubes counted).
3. Classes with a single tubelet in their split are dropped (counted).
4. Pairs (val and test): each tubelet is a query; its reference is a tube of the same class in
   a different video (``stable_rng(seed, split, class)``), widened by
   ``max(own length, min_context_frames)`` frames on each side (default 75 = 3 s at 25 fps)
   within the video. Scored keyframes: ``ref_start + k * keyframe_stride`` (default 8, the
   clip length of the paper's model) inside the window. Targets: every box of the class in
   the reference video at each scored keyframe.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .. import validate as V
from ..errors import ConfigError, InputError
from ..io import check_output, read_json, require_file
from ..manifest import write_manifest
from .common import Report, input_records
from .spatiotemporal import (
    BOX_COLUMNS,
    EVAL_SPLITS,
    SPLITS,
    TUBELET_COLUMNS,
    ContextRule,
    drop_single_tubelet_labels,
    make_pairs,
    split_tables,
    st_stats_writer,
    summary_rows,
)

__all__ = [
    "BUILDER_NAME",
    "BUILDER_VERSION",
    "UCF24Config",
    "UCF24Annotations",
    "read_annotations",
    "read_test_list",
    "class_split",
    "tubes_to_tables",
    "build_tables",
    "build_ucf24",
    "BuildResult",
]

BUILDER_NAME = "ucf24"
BUILDER_VERSION = "1.0.0"
#: Largest frame index or count accepted.
MAX_FRAMES = 2 ** 31 - 1


@dataclass(frozen=True)
class UCF24Config:
    """Every parameter of a UCF101-24 build; all of it goes into manifest.json."""

    protocol: str = "feng2019"
    seed: int = 0
    split_seed: int = 0
    n_train: int = 14
    n_val: int = 5
    n_test: int = 5
    keyframe_stride: int = 8
    min_context_frames: int = 75
    frame_width: int = 320
    frame_height: int = 240

    def validate(self) -> "UCF24Config":
        if self.protocol != "feng2019":
            raise ConfigError(f"The 'protocol' parameter of UCF24Config must be 'feng2019'. Got {self.protocol!r} instead.")
        V.seed(self.seed, "seed", owner="UCF24Config")
        V.seed(self.split_seed, "split_seed", owner="UCF24Config")
        for name in ("keyframe_stride", "frame_width", "frame_height"):
            V.integer(getattr(self, name), item=f"the {name!r} parameter of UCF24Config", min=1, max=MAX_FRAMES,
                      error=ConfigError)
        for name in ("min_context_frames", "n_train", "n_val", "n_test"):
            V.integer(getattr(self, name), item=f"the {name!r} parameter of UCF24Config", min=0, max=MAX_FRAMES,
                      error=ConfigError)
        return self


@dataclass
class UCF24Annotations:
    """The parsed pickle: class names (index = label), and per video its frame count and tubes
    ``(label, sf, ef, boxes as an int64 (n, 4) array)``."""

    classes: List[str]
    videos: Dict[str, Tuple[int, List[Tuple[int, int, int, np.ndarray]]]]
    layout: str


def _boxes(value, p: Path, where: str) -> np.ndarray:
    """A tube's boxes as an int64 array (stored as uint8/uint16 arrays; lists are accepted)."""
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise V.fail("an (n, 4) array of x, y, w, h boxes", value, file=p, item=where)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise V.fail("an (n, 4) array of x, y, w, h boxes", value, file=p, item=where) from None
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if arr.dtype.kind not in "iuf":
        raise V.fail("an (n, 4) array of numbers (x, y, w, h)", arr, file=p, item=where)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise V.fail("finite box coordinates", arr[~np.isfinite(arr)].flat[0], file=p, item=where)
    if np.abs(arr).max() > MAX_FRAMES:
        raise V.fail(f"box coordinates within +-{MAX_FRAMES} pixels", arr.flat[int(np.abs(arr).argmax())],
                     file=p, item=where)
    return arr.astype(np.int64)


def read_annotations(path: Path) -> UCF24Annotations:
    """Read ``pyannot_with_class_names.pkl`` (or the original bare-``db`` ``pyannot.pkl``)."""
    p = require_file(path, "UCF101-24 annotation pickle")
    doc = V.read_pickle(p, "UCF101-24 annotation pickle")
    V.mapping(doc, file=p, what="a dictionary at the top level ({'db', 'classes'} or the bare db)")
    if "db" in doc:
        db, layout = doc["db"], "pyannot_with_class_names"
        classes = V.sequence(doc.get("classes"), file=p, item="'classes'", what="a list of class names")
        for k, c in enumerate(classes):
            V.string(c, file=p, item=f"'classes' entry {k}", what="a class name (a non-empty string)")
    else:
        db, layout, classes = doc, "pyannot", None
    V.mapping(db, file=p, item="'db'" if classes is not None else None,
              what="a dictionary of videos {name: {'numf', 'annotations'}}")
    for video in db:
        V.string(video, file=p, item=f"video name {video!r}", what="a video name (a non-empty string)")
    videos: Dict[str, Tuple[int, list]] = {}
    folder_names: Dict[int, str] = {}
    for video in sorted(db):
        entry = db[video]
        item = f"video {video}"
        V.mapping(entry, file=p, item=item, what="a dictionary with 'numf' and 'annotations'",
                  required=("numf", "annotations"))
        numf = V.integer(entry["numf"], file=p, item=f"{item} 'numf'", min=0, max=MAX_FRAMES,
                         what="a frame count (an integer)")
        tubes = []
        anns = V.sequence(entry["annotations"], file=p, item=f"{item} 'annotations'", what="a list of tubes")
        for k, ann in enumerate(anns):
            where = f"video {video} tube {k}"
            V.mapping(ann, file=p, item=where, what="a dictionary with 'label', 'sf', 'ef' and 'boxes'",
                      required=("label", "sf", "ef", "boxes"))
            label = V.integer(ann["label"], file=p, item=f"{where} 'label'", min=0, max=MAX_FRAMES,
                              what="a class index (an integer)")
            sf = V.integer(ann["sf"], file=p, item=f"{where} 'sf'", min=-MAX_FRAMES, max=MAX_FRAMES,
                           what="a frame index (an integer)")
            ef = V.integer(ann["ef"], file=p, item=f"{where} 'ef'", min=-MAX_FRAMES, max=MAX_FRAMES,
                           what="a frame index (an integer)")
            boxes = _boxes(ann["boxes"], p, f"{where} 'boxes'")
            if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
                raise InputError(f"boxes must have shape (n, 4), found {boxes.shape}", file=p, item=where)
            boxes = boxes.reshape(-1, 4)
            if len(boxes) and len(boxes) != ef - sf:
                raise InputError(f"has {len(boxes)} boxes for frames {sf}..{ef} (expected ef - sf = {ef - sf})",
                                 file=p, item=where)
            if sf < 0 or ef > numf:
                raise InputError(f"frames {sf}..{ef} are outside the video's {numf} frames", file=p, item=where)
            if classes is not None and not 0 <= label < len(classes):
                raise InputError(f"label {label} is not an index into the {len(classes)} classes", file=p, item=where)
            if classes is None:
                folder = video.split("/")[0]
                if folder_names.setdefault(label, folder) != folder:
                    raise InputError(f"label {label} names both {folder_names[label]!r} and {folder!r} (no 'classes' "
                                     "key: class names come from the video folders)", file=p, item=where)
            tubes.append((label, sf, ef, boxes))
        videos[str(video)] = (numf, tubes)
    if classes is None:
        if not folder_names:
            raise InputError("holds no tubes", file=p)
        n = max(folder_names) + 1
        missing = [i for i in range(n) if i not in folder_names]
        if missing:
            raise InputError(f"labels {missing} have no tube, so their class names are unknown", file=p)
        classes = [folder_names[i] for i in range(n)]
    if len(set(classes)) != len(classes):
        raise InputError("class names repeat", file=p)
    return UCF24Annotations(classes, videos, layout)


def read_test_list(path: Path) -> List[str]:
    """Read ``testlist01.txt`` (one ``Class/v_Class_gXX_cYY[.avi]`` a line)."""
    p = require_file(path, "UCF101 test list")
    names = []
    for line in V.read_text(p, "UCF101 test list").splitlines():
        name = line.strip().split(" ")[0]
        if name:
            names.append(name[:-4] if name.endswith(".avi") else name)
    if not names:
        raise InputError("is empty; expected one video name a line", file=p)
    return names


def class_split(classes: Sequence[str], config: UCF24Config, path: Optional[Path] = None) -> Dict[str, str]:
    """``{class: split}``: from a JSON file, or the sorted names permuted with ``split_seed``."""
    if path is not None:
        p = require_file(path, "class split")
        doc = read_json(p, "class split")
        if not (isinstance(doc, dict) and set(doc) == set(SPLITS)):
            has = f"an object with the keys {sorted(map(str, doc))}" if isinstance(doc, dict) else V.found(doc)
            raise InputError(f'expected {{"train": [...], "val": [...], "test": [...]}}, found {has}', file=p)
        out = {}
        for split in SPLITS:
            names = V.sequence(doc[split], file=p, item=repr(split), what="a list of class names")
            for k, c in enumerate(names):
                V.string(c, file=p, item=f"{split!r} entry {k}", what="a class name (a non-empty string)")
                if c in out:
                    raise InputError(f"class {c!r} is in both {out[c]} and {split}", file=p)
                out[c] = split
        if set(out) != set(classes):
            extra, miss = sorted(set(out) - set(classes)), sorted(set(classes) - set(out))
            raise InputError(f"is not a partition of the annotation's classes (unknown: {extra}, missing: {miss})",
                             file=p)
        return out
    n = config.n_train + config.n_val + config.n_test
    if n != len(classes):
        raise ConfigError(f"n_train + n_val + n_test must equal the {len(classes)} classes, got {n}")
    perm = np.random.default_rng(int(config.split_seed)).permutation(len(classes))
    names = sorted(classes)
    order = [names[i] for i in perm]
    sizes = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    out, i = {}, 0
    for split in SPLITS:
        for c in order[i:i + sizes[split]]:
            out[c] = split
        i += sizes[split]
    return out


def tubes_to_tables(ann: UCF24Annotations, config: UCF24Config, report: Report) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Every tube as a tubelet (split left empty) and its per-frame normalised boxes."""
    w, h = float(config.frame_width), float(config.frame_height)
    tub_rows, box_parts = [], []
    for video, (numf, tubes) in ann.videos.items():
        for k, (label, sf, ef, boxes) in enumerate(tubes):
            tid = f"{video}:{k}:{sf}"
            if len(boxes) == 0 or ef <= sf:
                report.add("empty tubes (no frames or no boxes; dropped)", tid)
                continue
            b = boxes.astype(np.float64)
            xyxy = np.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 0] + b[:, 2]) / w, (b[:, 1] + b[:, 3]) / h], axis=1)
            clipped = np.clip(xyxy, 0.0, 1.0)
            n_clip = int((clipped != xyxy).any(axis=1).sum())
            if n_clip:
                report.add("boxes reaching outside the frame (clipped)", tid, n=n_clip)
            ok = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
            if not ok.all():
                report.add("boxes with zero area (dropped)", tid, n=int((~ok).sum()))
            frames = np.arange(sf, ef)[ok]
            if len(frames) == 0:
                report.add("tubes without any box of nonzero area (dropped)", tid)
                continue
            tub_rows.append((tid, video, ann.classes[label], "", float(frames[0]), float(frames[-1] + 1),
                             int(len(frames)), k))
            box_parts.append(pd.DataFrame({
                "tubelet_id": tid, "time": frames.astype(float), "x1": clipped[ok, 0], "y1": clipped[ok, 1],
                "x2": clipped[ok, 2], "y2": clipped[ok, 3],
            }))
    tubelets = pd.DataFrame(tub_rows, columns=TUBELET_COLUMNS)
    boxes = pd.concat(box_parts, ignore_index=True) if box_parts else pd.DataFrame(
        {c: pd.Series([], dtype=object if c == "tubelet_id" else float) for c in BOX_COLUMNS})
    return tubelets, boxes


def build_tables(
    ann: UCF24Annotations,
    split_map: Dict[str, str],
    config: UCF24Config,
    *,
    test_videos: Optional[Sequence[str]] = None,
    progress: bool = False,
) -> Tuple[Dict[Tuple[str, Optional[str]], pd.DataFrame], Report]:
    """Tables of the UCF101-24 manifest (see the module docstring)."""
    config.validate()
    report = Report()
    tubelets, boxes = tubes_to_tables(ann, config, report)
    tubelets["split"] = tubelets["label"].map(split_map)
    if test_videos is not None:
        listed = set(test_videos)
        unknown = sorted(listed - set(ann.videos))
        for v in unknown:
            report.add("test-list videos without annotations", v)
        in_test = tubelets["video"].isin(listed).to_numpy()
        is_train = (tubelets["split"] == "train").to_numpy()
        wrong = (is_train & in_test) | (~is_train & ~in_test)
        for split in SPLITS:
            n = int((wrong & (tubelets["split"] == split).to_numpy()).sum())
            if n:
                where = "official test" if split == "train" else "official training"
                report.add(f"{split} tubes in {where} videos (dropped: --test-list keeps video splits apart)", n=n)
        tubelets = tubelets[~wrong]
    tubelets = drop_single_tubelet_labels(tubelets, report)
    boxes = boxes[boxes["tubelet_id"].isin(tubelets["tubelet_id"])]
    vr = {v: (0.0, float(numf)) for v, (numf, _) in ann.videos.items()}
    stride = float(config.keyframe_stride)

    def keyframes(video: str, ws: float, we: float) -> np.ndarray:
        return np.arange(ws, we, stride)

    from ..progress import Progress

    pairs = {}
    with Progress(total=len(EVAL_SPLITS), desc="ucf24 pairs", unit="split", quiet=not progress) as bar:
        for split in EVAL_SPLITS:
            t = tubelets[tubelets["split"] == split]
            pairs[split] = make_pairs(t, boxes, split=split, seed=config.seed,
                                      rule=ContextRule(min_pad=float(config.min_context_frames)), video_range=vr,
                                      keyframes=keyframes, other_video=True, report=report)
            bar.update(1)
    return split_tables(tubelets, boxes, pairs), report


@dataclass
class BuildResult:
    out: Path
    tables: Dict[Tuple[str, Optional[str]], pd.DataFrame]
    report: Report
    classes: Dict[str, List[str]]

    def summary_rows(self) -> List[List[object]]:
        return summary_rows(self.tables)


def build_ucf24(
    annotations: Path,
    out: Path,
    *,
    test_list: Optional[Path] = None,
    class_split_file: Optional[Path] = None,
    config: UCF24Config = UCF24Config(),
    force: bool = False,
    progress: bool = False,
) -> BuildResult:
    """Build the UCF101-24 spatio-temporal re-localization manifest into ``out`` (atomically).

    >>> build_ucf24(Path("../shared/data/ucf24/pyannot_with_class_names.pkl"), Path("out"))  # doctest: +SKIP
    """
    config.validate()
    out = Path(out)
    check_output(out, force)
    ann = read_annotations(annotations)
    split_map = class_split(ann.classes, config, class_split_file)
    test_videos = read_test_list(test_list) if test_list is not None else None
    tables, report = build_tables(ann, split_map, config, test_videos=test_videos, progress=progress)
    classes = {s: sorted(c for c, v in split_map.items() if v == s) for s in SPLITS}
    params = asdict(config)
    params["class_split_source"] = "file" if class_split_file is not None else "split_seed"
    params["video_split"] = "official split 1 (test list)" if test_list is not None else "all videos"
    meta = {
        "name": "ucf24",
        "task": "spatiotemporal",
        "builder": {"name": BUILDER_NAME, "version": BUILDER_VERSION},
        "protocol": config.protocol,
        "params": params,
        "inputs": input_records(annotations=annotations, test_list=test_list, class_split=class_split_file),
        "annotation_layout": ann.layout,
        "classes": classes,
        "units": {"time": "frame index (0-based)", "keyframes": f"ref_start + k * {config.keyframe_stride}",
                  "boxes": f"normalised xyxy of a {config.frame_width}x{config.frame_height} frame"},
        "report": report.to_dict(),
    }
    write_manifest(out, tables, meta, force=force,
                   extras=st_stats_writer("UCF101-24 spatio-temporal re-localization", tables, report, unit="frames",
                                          command="relocbench build-dataset ucf24"))
    return BuildResult(out, tables, report, classes)
