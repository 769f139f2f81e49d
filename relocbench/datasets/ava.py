"""The AVA spatio-temporal re-localization dataset of Feng et al. (CVPR 2019, Sec. 5).

Inputs: the official AVA box CSVs (v2.1 or v2.2, no header, one row per person, keyframe
and action: ``video_id, timestamp, x1, y1, x2, y2, action_id, person_id`` with normalised
coordinates), the label map (``.pbtxt``, ``item {name id}`` or ``label {name label_id}``
blocks), optionally the excluded-timestamps CSVs (``video_id, timestamp``), and the class
split of the paper (``stvr_test_val_combined_labels.json``: ``[test, val]``, 27 combined
labels each) or a seed. Download from https://research.google.com/ava/download.html:
``ava_train_v2.2.csv``, ``ava_val_v2.2.csv``, ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``,
``ava_train_excluded_timestamps_v2.2.csv`` and ``ava_val_excluded_timestamps_v2.2.csv``.

Protocol ``feng2019`` (reference-algorithms.md Sec. 4), step by step:

1. Rows whose action is not in the label map, and rows at excluded timestamps, are dropped
   (counted). All rows of one (video, timestamp, person) must carry the same box (an input
   error naming both lines otherwise); coordinates outside [0, 1] are clipped (counted);
   person-keyframes whose box has zero area are dropped (counted).
2. Per (video, person) and keyframe, the sorted action ids joined by ``+`` form the combined
   label (``"11+59+74"``). Runs of keyframes one second apart with the same combined label
   are tubelets: ``start`` is the first keyframe, ``end`` one past the last (seconds);
   ``tubelet_id`` is ``video:person:start``.
3. Split: the 27 test and 27 validation labels of the class-split file, or (``split_seed``)
   the ``n_heldout`` labels with more than ``min_tubelets`` tubelets in the validation videos
   (most tubelets first), shuffled with the seed, first half test, second half validation.
   Validation and test tubelets come from the validation CSV (tubelets of other labels are
   dropped, counted). Training tubelets come from the training CSV after removing every
   keyframe (video, timestamp) at which some person carries a validation or test label
   (tubelets split around removed keyframes).
4. Labels with a single tubelet in their split are dropped (counted).
5. Pairs (val and test): each tubelet is a query; its reference is a different tubelet of
   the same label (any video, ``stable_rng(seed, split, label)``), widened by
   ``max(own length, min_context_s)`` on each side within the annotated range of its clip
   (first to one past the last timestamp of the video in the CSV). ``context="original"``:
   the own length on each side only for tubelets shorter than 10 s, within 900..1800 s.
   Scored keyframes: every integer second of the window that is not an excluded timestamp.
   Targets: the box of every person carrying the label at each scored keyframe.
"""
from __future__ import annotations

import io
import re
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
    "AVAConfig",
    "read_label_map",
    "read_class_split",
    "read_ava_csv",
    "read_exclusions",
    "person_keyframes",
    "link_tubelets",
    "build_tables",
    "build_ava",
    "BuildResult",
]

BUILDER_NAME = "ava"
BUILDER_VERSION = "1.0.0"
CSV_COLUMNS = ["video", "time", "x1", "y1", "x2", "y2", "action", "person"]
_MAX_ACTION = 128
#: Largest timestamp (s) and person id accepted.
_MAX_INT = 2 ** 31 - 1


@dataclass(frozen=True)
class AVAConfig:
    """Every parameter of an AVA build; all of it goes into manifest.json."""

    protocol: str = "feng2019"
    seed: int = 0
    split_seed: Optional[int] = None
    context: str = "default"
    min_context_s: float = 3.0
    original_max_len_s: float = 10.0
    original_range_s: Tuple[float, float] = (900.0, 1800.0)
    min_tubelets: int = 100
    n_heldout: int = 54

    def validate(self) -> "AVAConfig":
        if self.protocol != "feng2019":
            raise ConfigError(f"The 'protocol' parameter of AVAConfig must be 'feng2019'. Got {self.protocol!r} instead.")
        V.seed(self.seed, "seed", owner="AVAConfig")
        V.seed(self.split_seed, "split_seed", owner="AVAConfig", allow_none=True)
        where = "the {!r} parameter of AVAConfig".format
        V.finite(self.min_context_s, item=where("min_context_s"), min=0.0, error=ConfigError)
        V.finite(self.original_max_len_s, item=where("original_max_len_s"), min=0.0, min_open=True, error=ConfigError)
        V.sequence(self.original_range_s, item=where("original_range_s"), length=2, what="a pair (lo, hi)",
                   error=ConfigError)
        for x in self.original_range_s:
            V.finite(x, item=where("original_range_s"), error=ConfigError)
        V.integer(self.min_tubelets, item=where("min_tubelets"), min=0, error=ConfigError)
        V.integer(self.n_heldout, item=where("n_heldout"), min=2, error=ConfigError)
        if self.context not in ("default", "original"):
            raise ConfigError(f"The 'context' parameter of AVAConfig must be 'default' or 'original'. "
                              f"Got {self.context!r} instead.")
        if not self.min_context_s >= 0:
            raise ConfigError(f"The 'min_context_s' parameter of AVAConfig must be >= 0. Got {self.min_context_s!r} instead.")
        if self.n_heldout < 2 or self.n_heldout % 2:
            raise ConfigError(f"The 'n_heldout' parameter of AVAConfig must be an even number >= 2. "
                              f"Got {self.n_heldout!r} instead.")
        if self.min_tubelets < 0:
            raise ConfigError(f"The 'min_tubelets' parameter of AVAConfig must be >= 0. Got {self.min_tubelets!r} instead.")
        lo, hi = self.original_range_s
        if not lo < hi:
            raise ConfigError(f"The 'original_range_s' parameter of AVAConfig must be (lo, hi) with lo < hi. "
                              f"Got {self.original_range_s!r} instead.")
        return self

    def rule(self) -> ContextRule:
        if self.context == "original":
            return ContextRule(min_pad=0.0, max_len=self.original_max_len_s)
        return ContextRule(min_pad=self.min_context_s)


# --------------------------------------------------------------------------- reading inputs


def read_label_map(path: Path) -> Dict[int, str]:
    """Read an AVA label map (``item { name: "..." id: N }`` or ``label { name: ... label_id: N }``)."""
    p = require_file(path, "AVA label map")
    text = V.read_text(p, "AVA label map")
    out: Dict[int, str] = {}
    for m in re.finditer(r"(?:item|label)\s*\{(.*?)\}", text, flags=re.S):
        body = m.group(1)
        name = re.search(r'name:\s*"([^"]*)"', body)
        ident = re.search(r"\b(?:label_id|id):\s*([^\s}]+)", body)
        line = text.count("\n", 0, m.start()) + 1
        if name is None or ident is None:
            raise InputError(f"the block at line {line} lacks a name or an id (expected name: \"...\" and id: N)", file=p)
        digits = ident.group(1)
        if not digits.isascii() or not digits.isdigit():
            raise InputError(f"action id at line {line}: expected an integer in 1..{_MAX_ACTION}, found "
                             f"{digits!r}", file=p)
        if len(digits) > 6:
            raise InputError(f"action id at line {line}: expected an integer in 1..{_MAX_ACTION}, found an integer "
                             f"of {len(digits)} digits", file=p)
        i = int(digits)
        if not 1 <= i <= _MAX_ACTION:
            raise InputError(f"action id {i} at line {line} is outside 1..{_MAX_ACTION}", file=p)
        if i in out:
            raise InputError(f"action id {i} appears twice (again at line {line})", file=p)
        out[i] = name.group(1)
    if not out:
        raise InputError("no item { name: ... id: ... } blocks found; expected an AVA label map", file=p)
    return out


def _label_str(ids: Sequence[int]) -> str:
    return "+".join(str(i) for i in sorted(ids))


def read_class_split(path: Path, label_ids: Optional[Dict[int, str]] = None) -> Dict[str, str]:
    """Read ``stvr_test_val_combined_labels.json`` (``[test, val]``, each a list of combined
    labels given as lists of action ids) into ``{label string: "test" | "val"}``."""
    p = require_file(path, "AVA class split")
    doc = read_json(p, "AVA class split")
    if not (isinstance(doc, list) and len(doc) == 2 and all(isinstance(x, list) for x in doc)):
        raise InputError("expected a JSON list [test, val] of two lists of combined labels", file=p)
    out: Dict[str, str] = {}
    for split, labels in zip(("test", "val"), doc):
        for k, lab in enumerate(labels):
            if not (isinstance(lab, list) and lab):
                raise V.fail("a non-empty list of action ids", lab, file=p, item=f"{split} label #{k}")
            for i in lab:
                V.integer(i, file=p, item=f"{split} label #{k}", min=1, max=_MAX_ACTION, what="action ids, integers")
            if len(set(lab)) != len(lab):
                raise InputError(f"{split} label #{k} {lab!r} repeats an action id", file=p)
            if label_ids is not None:
                unknown = [i for i in lab if i not in label_ids]
                if unknown:
                    raise InputError(f"{split} label {lab!r} uses action ids {unknown} that the label map lacks", file=p)
            s = _label_str(lab)
            if s in out:
                raise InputError(f"combined label {s} appears twice (in {out[s]} and {split})", file=p)
            out[s] = split
    return out


def read_ava_csv(path: Path) -> pd.DataFrame:
    """Read an AVA box CSV into columns ``video, time, x1, y1, x2, y2, action, person, line``."""
    p = require_file(path, "AVA CSV")
    text = V.read_text(p, "AVA CSV")
    try:
        df = pd.read_csv(io.StringIO(text), header=None, dtype={0: str}, skip_blank_lines=True, na_filter=True)
    except pd.errors.EmptyDataError:
        raise InputError("is empty; expected rows video_id, timestamp, x1, y1, x2, y2, action_id, person_id",
                         file=p) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"malformed CSV ({str(exc).strip()}); expected 8 fields a row", file=p) from None
    if df.shape[1] != 8:
        raise InputError(f"expected 8 columns (video_id, timestamp, x1, y1, x2, y2, action_id, person_id), "
                         f"found {df.shape[1]}", file=p)
    df.columns = CSV_COLUMNS
    df["line"] = np.arange(1, len(df) + 1, dtype=np.int64)
    for col in CSV_COLUMNS[1:]:
        if not pd.api.types.is_numeric_dtype(df[col]):
            num = pd.to_numeric(df[col], errors="coerce")
            unparsed = num.isna().to_numpy() & df[col].notna().to_numpy()
            if unparsed.any():
                bad = int(np.flatnonzero(unparsed)[0])
                raise InputError(f"line {bad + 1}: column {col!r} must be a number, found {df[col].iloc[bad]!r}",
                                 file=p)
            df[col] = num.astype(np.float64)  # numbers pandas kept as text (beyond int64)
        if df[col].isna().any():
            bad = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            raise InputError(f"line {bad + 1}: column {col!r}: expected a finite number, found an empty field or NaN",
                             file=p)
        vals = df[col].to_numpy(dtype=np.float64)
        if not np.isfinite(vals).all():
            bad = int(np.flatnonzero(~np.isfinite(vals))[0])
            raise V.fail("a finite number", vals[bad], file=p, item=f"line {bad + 1}: column {col!r}")
    if df["video"].isna().any():
        bad = int(np.flatnonzero(df["video"].isna().to_numpy())[0])
        raise InputError(f"line {bad + 1}: the video id is empty", file=p)
    for col in ("time", "action", "person"):
        v = df[col].to_numpy()
        big = np.abs(v.astype(np.float64)) > _MAX_INT
        if big.any():
            bad = int(np.flatnonzero(big)[0])
            raise V.fail(f"an integer in 0..{_MAX_INT}", v[bad], file=p, item=f"line {bad + 1}: column {col!r}")
        if not pd.api.types.is_integer_dtype(v.dtype):
            frac = v != np.floor(v)
            if frac.any():
                bad = int(np.flatnonzero(frac)[0])
                raise InputError(f"line {bad + 1}: {col} must be an integer, found {v[bad]!r}", file=p)
        df[col] = v.astype(np.int64)
        if (df[col].to_numpy() < 0).any():
            bad = int(np.flatnonzero(df[col].to_numpy() < 0)[0])
            raise InputError(f"line {bad + 1}: {col} must be >= 0, found {v[bad]!r}", file=p)
    for col in ("x1", "y1", "x2", "y2"):
        df[col] = df[col].astype(np.float64)
    return df


def read_exclusions(path: Optional[Path]) -> pd.DataFrame:
    """Read an excluded-timestamps CSV (``video_id, timestamp``)."""
    if path is None:
        return pd.DataFrame({"video": pd.Series([], dtype=object), "time": pd.Series([], dtype=np.int64)})
    p = require_file(path, "AVA excluded-timestamps CSV")
    text = V.read_text(p, "AVA excluded-timestamps CSV")
    try:
        df = pd.read_csv(io.StringIO(text), header=None, dtype={0: str})
    except pd.errors.EmptyDataError:
        return read_exclusions(None)
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"malformed CSV ({str(exc).strip()}); expected video_id, timestamp", file=p) from None
    if df.shape[1] != 2:
        raise InputError(f"expected 2 columns (video_id, timestamp), found {df.shape[1]}", file=p)
    t = pd.to_numeric(df[1], errors="coerce")
    if t.isna().any():
        bad = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise InputError(f"line {bad + 1}: the timestamp must be a number, found {df[1].iloc[bad]!r}", file=p)
    tv = t.to_numpy(dtype=np.float64)
    bad_t = ~np.isfinite(tv) | (tv != np.floor(tv)) | (tv < 0) | (tv > _MAX_INT)
    if bad_t.any():
        bad = int(np.flatnonzero(bad_t)[0])
        raise V.fail(f"a timestamp in whole seconds (an integer in 0..{_MAX_INT})", t.iloc[bad], file=p,
                     item=f"line {bad + 1}")
    return pd.DataFrame({"video": df[0].astype(str), "time": t.to_numpy().astype(np.int64)}).drop_duplicates()


# --------------------------------------------------------------------------- tubelets


def _label_strings(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    pairs = np.stack([lo, hi], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    names = []
    for a, b in uniq:
        a, b = int(a), int(b)
        ids = [k + 1 for k in range(64) if (a >> k) & 1] + [k + 65 for k in range(64) if (b >> k) & 1]
        names.append(_label_str(ids))
    return np.asarray(names, dtype=object)[np.asarray(inv).reshape(-1)]


def person_keyframes(
    rows: pd.DataFrame,
    *,
    label_ids: Optional[Dict[int, str]],
    exclusions: pd.DataFrame,
    report: Report,
    role: str,
    file: Optional[Path] = None,
) -> pd.DataFrame:
    """One record per (video, person, keyframe): ``video, person, time, label, x1, y1, x2, y2``,
    sorted by video, person and time. ``rows`` is what :func:`read_ava_csv` returns."""
    n = len(rows)
    vcode, vnames = pd.factorize(rows["video"], sort=True)
    person = rows["person"].to_numpy(np.int64)
    time = rows["time"].to_numpy(np.int64)
    action = rows["action"].to_numpy(np.int64)
    order = np.lexsort((action, time, person, vcode))
    vc, pe, ti, ac = vcode[order], person[order], time[order], action[order]
    box = np.stack([rows[c].to_numpy(np.float64)[order] for c in ("x1", "y1", "x2", "y2")], axis=1)
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = (vc[1:] != vc[:-1]) | (pe[1:] != pe[:-1]) | (ti[1:] != ti[:-1])
    key = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    diff = (box != box[first[key]]).any(axis=1)
    if diff.any():
        i = int(np.flatnonzero(diff)[0])
        j = int(first[key[i]])
        lines = rows["line"].to_numpy()

        def fmt(b: np.ndarray) -> str:
            return "(" + ", ".join(f"{float(x):g}" for x in b) + ")"

        raise InputError(
            f"person {int(pe[i])} at timestamp {int(ti[i])} has two different boxes: line {int(lines[order[j]])} "
            f"has {fmt(box[j])} and line {int(lines[order[i]])} has {fmt(box[i])}; every row of one person "
            "and keyframe must carry the same box", file=file, item=f"video {vnames[vc[i]]}")
    keep = np.ones(n, dtype=bool)
    if label_ids is not None:
        known = np.isin(ac, np.fromiter(label_ids, dtype=np.int64))
        if (~known).any():
            bad = np.flatnonzero(~known)
            report.add(f"{role} rows with an action id outside the label map (dropped)",
                       f"action {int(ac[bad[0]])} line {int(rows['line'].to_numpy()[order[bad[0]]])}",
                       n=int(len(bad)))
        keep &= known
    else:
        out_of_range = (ac < 1) | (ac > _MAX_ACTION)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise InputError(f"line {int(rows['line'].to_numpy()[order[i]])}: action id {int(ac[i])} is outside "
                             f"1..{_MAX_ACTION}", file=file)
    if len(exclusions):
        ex_idx = pd.MultiIndex.from_frame(exclusions[["video", "time"]])
        here = pd.MultiIndex.from_arrays([np.asarray(vnames)[vc], ti])
        excluded = here.isin(ex_idx) & keep
        if excluded.any():
            i = int(np.flatnonzero(excluded)[0])
            report.add(f"{role} rows at excluded timestamps (dropped)", f"{vnames[vc[i]]} {int(ti[i])}",
                       n=int(excluded.sum()))
        keep &= ~excluded
    vc, pe, ti, ac, box = vc[keep], pe[keep], ti[keep], ac[keep], box[keep]
    m = len(vc)
    new = np.ones(m, dtype=bool)
    if m:
        new[1:] = (vc[1:] != vc[:-1]) | (pe[1:] != pe[:-1]) | (ti[1:] != ti[:-1])
    dup = ~new.copy()
    if m:
        dup[1:] &= ac[1:] == ac[:-1]
    if dup.any():
        report.add(f"{role} duplicate rows (same video, timestamp, person and action; merged)", n=int(dup.sum()))
    starts = np.flatnonzero(new)
    bit = np.left_shift(np.uint64(1), ((ac - 1) % 64).astype(np.uint64))
    lo = np.where(ac <= 64, bit, np.uint64(0)).astype(np.uint64)
    hi = np.where(ac > 64, bit, np.uint64(0)).astype(np.uint64)
    if m:
        lo = np.bitwise_or.reduceat(lo, starts)
        hi = np.bitwise_or.reduceat(hi, starts)
    kbox = box[starts]
    clipped = np.clip(kbox, 0.0, 1.0)
    n_clip = int((clipped != kbox).any(axis=1).sum())
    if n_clip:
        report.add(f"{role} boxes with coordinates outside [0, 1] (clipped)", n=n_clip)
    zero = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    rec = pd.DataFrame({
        "video": np.asarray(vnames, dtype=object)[vc[starts]],
        "person": pe[starts], "time": ti[starts],
        "label": _label_strings(lo, hi) if m else np.zeros(0, dtype=object),
        "x1": clipped[:, 0], "y1": clipped[:, 1], "x2": clipped[:, 2], "y2": clipped[:, 3],
    })
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        report.add(f"{role} person-keyframes with a zero-area box (dropped)",
                   f"{rec['video'].iloc[i]} person {int(rec['person'].iloc[i])} t={int(rec['time'].iloc[i])}",
                   n=int(zero.sum()))
        rec = rec[~zero].reset_index(drop=True)
    return rec


def link_tubelets(records: pd.DataFrame, split: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Link person-keyframes (sorted by video, person, time) into tubelets: runs of keyframes
    one second apart with the same combined label. Returns ``(tubelets, boxes)``."""
    v = records["video"].to_numpy(object)
    p = records["person"].to_numpy(np.int64)
    t = records["time"].to_numpy(np.int64)
    lab = records["label"].to_numpy(object)
    m = len(records)
    new = np.ones(m, dtype=bool)
    if m:
        new[1:] = (v[1:] != v[:-1]) | (p[1:] != p[:-1]) | (t[1:] != t[:-1] + 1) | (lab[1:] != lab[:-1])
    run = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, m - 1) if m else first
    ids = np.asarray([f"{a}:{b}:{c}" for a, b, c in zip(v[first], p[first], t[first])], dtype=object)
    tub = pd.DataFrame({
        "tubelet_id": ids, "video": v[first], "label": lab[first], "split": split,
        "start": t[first].astype(float), "end": (t[last] + 1).astype(float),
        "n_keyframes": (last - first + 1).astype(np.int64), "person_id": p[first],
    }, columns=TUBELET_COLUMNS)
    boxes = pd.DataFrame({
        "tubelet_id": ids[run] if m else np.zeros(0, dtype=object), "time": t.astype(float),
        "x1": records["x1"].to_numpy(float), "y1": records["y1"].to_numpy(float),
        "x2": records["x2"].to_numpy(float), "y2": records["y2"].to_numpy(float),
    }, columns=BOX_COLUMNS)
    return tub, boxes


def _frame_keys(video: np.ndarray, time: np.ndarray) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([video, time])


def _choose_seeded_split(val_tub: pd.DataFrame, config: AVAConfig, report: Report) -> Dict[str, str]:
    counts = val_tub["label"].value_counts()
    eligible = sorted((lab for lab in counts.index if counts[lab] > config.min_tubelets),
                      key=lambda lab: (-int(counts[lab]), lab))
    chosen = eligible[: config.n_heldout]
    if len(chosen) < 2:
        raise InputError(f"only {len(chosen)} combined labels have more than {config.min_tubelets} tubelets in the "
                         "validation videos; at least 2 are needed for a seeded val/test split")
    if len(chosen) < config.n_heldout:
        report.add(f"seeded split: fewer than {config.n_heldout} labels with more than {config.min_tubelets} "
                   "validation tubelets (all used)", n=config.n_heldout - len(chosen))
    rng = np.random.default_rng(int(config.split_seed))
    perm = [chosen[i] for i in rng.permutation(len(chosen))]
    half = len(perm) // 2
    return {**{lab: "test" for lab in perm[:half]}, **{lab: "val" for lab in perm[half:]}}


def build_tables(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    class_split: Optional[Dict[str, str]],
    config: AVAConfig,
    *,
    label_ids: Optional[Dict[int, str]] = None,
    train_exclusions: Optional[pd.DataFrame] = None,
    val_exclusions: Optional[pd.DataFrame] = None,
    files: Tuple[Optional[Path], Optional[Path]] = (None, None),
    progress: bool = False,
) -> Tuple[Dict[Tuple[str, Optional[str]], pd.DataFrame], Report, Dict[str, str]]:
    """Tables of the AVA manifest from parsed CSV rows (see the module docstring).

    ``class_split`` maps combined label strings to ``"val"``/``"test"``; ``None`` draws it with
    ``config.split_seed``. Returns ``(tables, report, class_split)``.
    """
    config.validate()
    if class_split is None and config.split_seed is None:
        raise ConfigError("pass a class split (the paper's JSON) or a split seed")
    from ..progress import Progress

    with Progress(total=3, desc="ava", unit="stage", quiet=not progress) as bar:
        # the bar ends its line on failure too, so that an error starts on a line of its own
        return _build_tables(train_rows, val_rows, class_split, config, label_ids, train_exclusions,
                             val_exclusions, files, lambda name: bar.update(1, stage=name))


def _build_tables(train_rows, val_rows, class_split, config, label_ids, train_exclusions, val_exclusions, files,
                  step):
    report = Report()
    empty = read_exclusions(None)
    both = sorted(set(train_rows["video"].unique()) & set(val_rows["video"].unique()))
    if both:
        raise InputError(f"{len(both)} video(s) appear in both the training and the validation CSV "
                         f"(e.g. {both[0]!r}); expected disjoint videos")
    val_kf = person_keyframes(val_rows, label_ids=label_ids, exclusions=val_exclusions if val_exclusions is not None
                              else empty, report=report, role="validation", file=files[1])
    val_tub, val_boxes = link_tubelets(val_kf, "val")
    if class_split is None:
        class_split = _choose_seeded_split(val_tub, config, report)
    sp = val_tub["label"].map(class_split)
    other = sp.isna().to_numpy()
    if other.any():
        report.add("validation-video tubelets whose label is neither a val nor a test label (not used)",
                   n=int(other.sum()))
    val_tub = val_tub[~other].assign(split=sp[~other].to_numpy())
    missing = sorted(set(class_split) - set(val_tub["label"]))
    for lab in missing:
        report.add("val/test labels without any tubelet in the validation videos", lab)
    step("validation CSV")

    tr_kf = person_keyframes(train_rows, label_ids=label_ids, exclusions=train_exclusions
                             if train_exclusions is not None else empty, report=report, role="training",
                             file=files[0])
    held = tr_kf["label"].isin(list(class_split)).to_numpy()
    if held.any():
        frames = _frame_keys(tr_kf["video"].to_numpy(object)[held], tr_kf["time"].to_numpy()[held]).unique()
        gone = _frame_keys(tr_kf["video"].to_numpy(object), tr_kf["time"].to_numpy()).isin(frames)
        report.add("training person-keyframes removed (their frame overlaps a val/test label)",
                   f"{tr_kf['video'].iloc[int(np.flatnonzero(gone)[0])]} t={int(tr_kf['time'].iloc[int(np.flatnonzero(gone)[0])])}",
                   n=int(gone.sum()))
        tr_kf = tr_kf[~gone].reset_index(drop=True)
    tr_tub, tr_boxes = link_tubelets(tr_kf, "train")
    step("training CSV")

    tubelets = pd.concat([tr_tub, val_tub], ignore_index=True)
    tubelets = drop_single_tubelet_labels(tubelets, report)
    boxes = pd.concat([tr_boxes, val_boxes], ignore_index=True)
    boxes = boxes[boxes["tubelet_id"].isin(tubelets["tubelet_id"])]

    if config.context == "original":
        lo, hi = config.original_range_s
        vr = {v: (lo, hi) for v in val_rows["video"].unique()}
    else:
        g = val_rows.groupby("video")["time"].agg(["min", "max"])
        vr = {v: (float(a), float(b) + 1.0) for v, a, b in zip(g.index, g["min"], g["max"])}
    ex = val_exclusions if val_exclusions is not None else empty
    ex_by_video = {v: np.asarray(sorted(g["time"]), dtype=float) for v, g in ex.groupby("video")}

    def keyframes(video: str, ws: float, we: float) -> np.ndarray:
        kf = np.arange(np.ceil(ws), we, 1.0)
        e = ex_by_video.get(video)
        return kf if e is None else kf[~np.isin(kf, e)]

    pairs = {}
    for split in EVAL_SPLITS:
        t = tubelets[tubelets["split"] == split]
        pairs[split] = make_pairs(t, boxes, split=split, seed=config.seed, rule=config.rule(), video_range=vr,
                                  keyframes=keyframes, other_video=False, report=report)
    step("pairs")
    return split_tables(tubelets, boxes, pairs), report, class_split


@dataclass
class BuildResult:
    out: Path
    tables: Dict[Tuple[str, Optional[str]], pd.DataFrame]
    report: Report

    def summary_rows(self) -> List[List[object]]:
        return summary_rows(self.tables)


def build_ava(
    train_csv: Path,
    val_csv: Path,
    out: Path,
    *,
    label_map: Path,
    class_split: Optional[Path] = None,
    train_exclusions: Optional[Path] = None,
    val_exclusions: Optional[Path] = None,
    config: AVAConfig = AVAConfig(),
    force: bool = False,
    progress: bool = False,
) -> BuildResult:
    """Build the AVA spatio-temporal re-localization manifest into ``out`` (atomically).

    >>> build_ava(Path("ava_train_v2.2.csv"), Path("ava_val_v2.2.csv"), Path("out"),   # doctest: +SKIP
    ...           label_map=Path("ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
    ...           class_split=Path("stvr_test_val_combined_labels.json"))
    """
    config.validate()
    out = Path(out)
    check_output(out, force)
    if class_split is None and config.split_seed is None:
        raise ConfigError("pass --class-split (the paper's stvr_test_val_combined_labels.json) or --split-seed N")
    if class_split is not None and config.split_seed is not None:
        raise ConfigError("pass either --class-split or --split-seed, not both")
    labels = read_label_map(label_map)
    split_map = read_class_split(class_split, labels) if class_split is not None else None
    train_rows = read_ava_csv(train_csv)
    val_rows = read_ava_csv(val_csv)
    tables, report, split_map = build_tables(
        train_rows, val_rows, split_map, config, label_ids=labels,
        train_exclusions=read_exclusions(train_exclusions), val_exclusions=read_exclusions(val_exclusions),
        files=(Path(train_csv), Path(val_csv)), progress=progress,
    )
    params = asdict(config)
    params["original_range_s"] = list(config.original_range_s)
    params["class_split_source"] = "file" if class_split is not None else "split_seed"
    meta = {
        "name": "ava",
        "task": "spatiotemporal",
        "builder": {"name": BUILDER_NAME, "version": BUILDER_VERSION},
        "protocol": config.protocol,
        "params": params,
        "inputs": input_records(train_csv=train_csv, val_csv=val_csv, label_map=label_map, class_split=class_split,
                                train_exclusions=train_exclusions, val_exclusions=val_exclusions),
        "classes": {s: sorted(lab for lab, v in split_map.items() if v == s) for s in EVAL_SPLITS},
        "units": {"time": "seconds", "keyframes": "every integer second of the window except excluded timestamps",
                  "boxes": "normalised xyxy"},
        "report": report.to_dict(),
    }

    def names(lab: str) -> str:
        return " + ".join(labels.get(int(i), "?") for i in lab.split("+"))

    write_manifest(out, tables, meta, force=force,
                   extras=st_stats_writer("AVA spatio-temporal re-localization", tables, report, unit="seconds",
                                          command="relocbench build-dataset ava", label_names=names))
    return BuildResult(out, tables, report)

