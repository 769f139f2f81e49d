"""What the spatio-temporal builders (AVA, UCF101-24) share: reference windows with context,
evaluation pairs and their targets, and the ``STATS.md`` of a spatio-temporal manifest.

Tables (``relocbench.manifest.SCHEMAS``, task ``spatiotemporal``), one file per split:

- ``tubelets``: one row per tubelet (``start``/``end``: first keyframe and one past the last;
  seconds for AVA, frame indices for UCF101-24).
- ``boxes``: one normalised xyxy box per tubelet and keyframe.
- ``pairs`` (val and test): one row per evaluation pair. Two of the schema's optional columns
  make the scoring rule explicit: ``ref_tubelet_id`` (the tubelet drawn as the reference)
  and ``ref_keyframes`` (the times at which the reference window is scored, increasing and
  inside the window; a keyframe without any target is still scored, detections there are
  false positives, and a prediction at any other time is an error).
- ``targets`` (val and test): every box the evaluation counts, at every scored keyframe of a
  pair's window, with the optional column ``tubelet_id`` naming the tubelet it belongs to.

A reference window is the reference tubelet ``[start, end)`` widened on both sides by
``pad = max(min_pad, length if max_len is None or length < max_len else 0)`` and clipped to
the range ``[lo, hi)`` that the video allows (:func:`context_windows`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .common import Report, histogram_png, markdown_table

__all__ = [
    "SPLITS",
    "EVAL_SPLITS",
    "TUBELET_COLUMNS",
    "BOX_COLUMNS",
    "PAIR_COLUMNS",
    "TARGET_COLUMNS",
    "ContextRule",
    "context_windows",
    "stable_rng",
    "drop_single_tubelet_labels",
    "make_pairs",
    "split_tables",
    "st_stats_writer",
    "summary_rows",
]

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
TUBELET_COLUMNS = ["tubelet_id", "video", "label", "split", "start", "end", "n_keyframes", "person_id"]
BOX_COLUMNS = ["tubelet_id", "time", "x1", "y1", "x2", "y2"]
PAIR_COLUMNS = ["pair_id", "label", "query_tubelet_id", "query_video", "query_start", "query_end",
                "ref_tubelet_id", "ref_video", "ref_start", "ref_end", "target_tubelet_ids", "ref_keyframes"]
TARGET_COLUMNS = ["pair_id", "time", "x1", "y1", "x2", "y2", "tubelet_id"]


@dataclass(frozen=True)
class ContextRule:
    """Background added on each side of a reference tubelet of length ``L``:
    ``pad = max(min_pad, L if max_len is None or L < max_len else 0)``.

    The default of both builders is ``ContextRule(min_pad=3 s)``; the original AVA rule is
    ``ContextRule(min_pad=0, max_len=10)`` with the window clipped to seconds 900..1800.
    """

    min_pad: float = 0.0
    max_len: Optional[float] = None

    def validate(self) -> "ContextRule":
        if not (np.isfinite(self.min_pad) and self.min_pad >= 0):
            raise ConfigError(f"The 'min_pad' parameter of ContextRule must be >= 0. Got {self.min_pad!r} instead.")
        if self.max_len is not None and not self.max_len > 0:
            raise ConfigError(f"The 'max_len' parameter of ContextRule must be > 0 or None. Got {self.max_len!r} instead.")
        return self


def context_windows(
    start: np.ndarray, end: np.ndarray, lo: np.ndarray, hi: np.ndarray, rule: ContextRule
) -> Tuple[np.ndarray, np.ndarray]:
    """Reference windows ``[ws, we)`` around tubelets ``[start, end)``, clipped to ``[lo, hi)``.

    >>> context_windows(np.array([10.]), np.array([12.]), np.array([0.]), np.array([100.]), ContextRule(3))
    (array([7.]), array([15.]))
    """
    rule.validate()
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    length = end - start
    own = length if rule.max_len is None else np.where(length < rule.max_len, length, 0.0)
    pad = np.maximum(own, rule.min_pad)
    ws = np.maximum(np.minimum(lo, start), start - pad)
    we = np.minimum(np.maximum(hi, end), end + pad)
    return ws, we


def stable_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (so one label's draws do not
    change when another label is added or removed)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(k.encode("utf-8")) for k in keys])


def drop_single_tubelet_labels(tubelets: pd.DataFrame, report: Report) -> pd.DataFrame:
    """Remove the tubelets of labels that have a single tubelet in their split (no pair is
    possible); count them in the report."""
    n = tubelets.groupby(["split", "label"], sort=False)["tubelet_id"].transform("size")
    single = tubelets[n.to_numpy() < 2]
    for split, lab, tid in sorted(zip(single["split"], single["label"], single["tubelet_id"])):
        report.add(f"labels with a single tubelet in split {split} (dropped)", f"{lab} ({tid})")
    return tubelets[n.to_numpy() >= 2]


class _BoxIndex:
    """Boxes of one split grouped by (video, label), for the targets of a window."""

    def __init__(self, tubelets: pd.DataFrame, boxes: pd.DataFrame) -> None:
        info = tubelets.set_index("tubelet_id")[["video", "label"]]
        b = boxes.join(info, on="tubelet_id", how="inner")
        b = b.sort_values(["video", "label", "time", "tubelet_id"], kind="mergesort").reset_index(drop=True)
        self.boxes = b
        self.times = b["time"].to_numpy(float)
        self.ids = b["tubelet_id"].to_numpy(object)
        self._groups: Dict[Tuple[str, str], np.ndarray] = {
            key: np.asarray(idx) for key, idx in b.groupby(["video", "label"], sort=False).indices.items()
        }

    def within(self, video: str, label: str, times: np.ndarray) -> np.ndarray:
        """Row numbers (into ``self.boxes``) of the label's boxes in ``video`` at ``times``."""
        g = self._groups.get((video, label))
        if g is None or len(times) == 0:
            return np.zeros(0, dtype=np.int64)
        return g[np.isin(self.times[g], times)]


def make_pairs(
    tubelets: pd.DataFrame,
    boxes: pd.DataFrame,
    *,
    split: str,
    seed: int,
    rule: ContextRule,
    video_range: Mapping[str, Tuple[float, float]],
    keyframes: Callable[[str, float, float], np.ndarray],
    other_video: bool,
    report: Report,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Fixed evaluation pairs of one split and their targets.

    Every tubelet of the split is a query (in ``tubelet_id`` order); its reference is a
    different tubelet of the same label (in another video when ``other_video``) drawn with
    ``stable_rng(seed, split, label)``. The reference window is the reference tubelet with
    context (``rule``) within ``video_range[ref_video]``; it is scored at
    ``keyframes(ref_video, ws, we)``; the targets are the boxes of every tubelet of the label
    in the reference video at those keyframes. A pair without any target box at its scored
    keyframes (a reference shorter than the keyframe stride) is dropped and counted.
    """
    tub = tubelets.sort_values("tubelet_id", kind="mergesort").reset_index(drop=True)
    index = _BoxIndex(tub, boxes)
    ids = tub["tubelet_id"].to_numpy(object)
    videos = tub["video"].to_numpy(object)
    starts = tub["start"].to_numpy(float)
    ends = tub["end"].to_numpy(float)
    pair_rows: List[dict] = []
    target_rows: List[np.ndarray] = []
    target_pairs: List[np.ndarray] = []
    for label, idx in sorted(tub.groupby("label", sort=False).indices.items()):
        idx = np.sort(idx)
        rng = stable_rng(seed, split, label)
        for qi in idx:
            if other_video:
                cand = idx[videos[idx] != videos[qi]]
            else:
                cand = idx[idx != qi]
            if len(cand) == 0:
                why = "another video" if other_video else "another tubelet"
                report.add(f"queries in split {split} without a reference in {why} (no pair)", ids[qi])
                continue
            ri = int(cand[rng.integers(len(cand))])
            rv = videos[ri]
            if rv not in video_range:
                raise ConfigError(f"video_range has no entry for video {rv!r} (expected one per video)")
            lo, hi = video_range[rv]
            ws, we = context_windows(starts[ri:ri + 1], ends[ri:ri + 1], np.array([lo]), np.array([hi]), rule)
            ws, we = float(ws[0]), float(we[0])
            kf = np.asarray(keyframes(rv, ws, we), dtype=float)
            pair_id = f"{ids[qi]}/0"
            tg = index.within(rv, label, kf)
            if len(tg) == 0:
                report.add(f"pairs in split {split} without any target box at a scored keyframe (dropped)", pair_id)
                continue
            pair_rows.append({
                "pair_id": pair_id, "label": label,
                "query_tubelet_id": ids[qi], "query_video": videos[qi],
                "query_start": starts[qi], "query_end": ends[qi],
                "ref_tubelet_id": ids[ri], "ref_video": rv, "ref_start": ws, "ref_end": we,
                "target_tubelet_ids": sorted(set(index.ids[tg].tolist())),
                "ref_keyframes": [float(t) for t in kf],
            })
            target_rows.append(tg)
            target_pairs.append(np.full(len(tg), pair_id, dtype=object))
    pairs = pd.DataFrame(pair_rows, columns=PAIR_COLUMNS)
    for c in ("query_start", "query_end", "ref_start", "ref_end"):
        pairs[c] = pairs[c].astype(float)
    rows = np.concatenate(target_rows) if target_rows else np.zeros(0, dtype=np.int64)
    targets = index.boxes.iloc[rows][["time", "x1", "y1", "x2", "y2", "tubelet_id"]].reset_index(drop=True)
    targets.insert(0, "pair_id", np.concatenate(target_pairs) if target_pairs else np.zeros(0, dtype=object))
    targets = targets[TARGET_COLUMNS].sort_values(["pair_id", "time", "tubelet_id"], kind="mergesort")
    return pairs.reset_index(drop=True), targets.reset_index(drop=True)


def split_tables(
    tubelets: pd.DataFrame,
    boxes: pd.DataFrame,
    pairs: Mapping[str, Tuple[pd.DataFrame, pd.DataFrame]],
) -> Dict[Tuple[str, Optional[str]], pd.DataFrame]:
    """The ``{(table, split): DataFrame}`` mapping that ``write_manifest`` takes, sorted."""
    tub = tubelets.sort_values("tubelet_id", kind="mergesort")[TUBELET_COLUMNS]
    box_split = boxes.join(tub.set_index("tubelet_id")["split"], on="tubelet_id", how="inner")
    box_split = box_split.sort_values(["tubelet_id", "time"], kind="mergesort")
    out: Dict[Tuple[str, Optional[str]], pd.DataFrame] = {}
    for split in SPLITS:
        out[("tubelets", split)] = tub[tub["split"] == split].reset_index(drop=True)
        out[("boxes", split)] = box_split[box_split["split"] == split][BOX_COLUMNS].reset_index(drop=True)
    for split, (p, t) in pairs.items():
        out[("pairs", split)] = p.sort_values("pair_id", kind="mergesort").reset_index(drop=True)
        out[("targets", split)] = t.reset_index(drop=True)
    return out


def summary_rows(tables: Mapping[Tuple[str, Optional[str]], pd.DataFrame]) -> List[List[object]]:
    """Rows ``split, tubelets, videos, labels, pairs, target boxes`` for the summary tables."""
    rows = []
    for split in SPLITS:
        tub = tables[("tubelets", split)]
        pairs = tables.get(("pairs", split))
        targets = tables.get(("targets", split))
        rows.append([split, len(tub), tub["video"].nunique(), tub["label"].nunique(),
                     "-" if pairs is None else len(pairs), "-" if targets is None else len(targets)])
    return rows


def _timelines_png(path: Path, tables, unit: str, n_pairs: int = 6) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    chosen: List[Tuple[str, pd.Series]] = []
    for split in EVAL_SPLITS:
        p = tables.get(("pairs", split))
        if p is not None and len(p):
            picks = np.unique(np.linspace(0, len(p) - 1, num=min(len(p), n_pairs // 2)).astype(int))
            chosen += [(split, p.iloc[int(i)]) for i in picks]
    tub = pd.concat([tables[("tubelets", s)] for s in SPLITS]).set_index("tubelet_id")
    fig, ax = plt.subplots(figsize=(9, 1.3 + 0.75 * max(1, len(chosen))))
    yticks, ylabels = [], []
    for k, (split, pr) in enumerate(chosen):
        y = len(chosen) - 1 - k
        ws, we = float(pr["ref_start"]), float(pr["ref_end"])
        ax.barh(y + 0.18, float(pr["query_end"]) - float(pr["query_start"]), left=0, height=0.25,
                color="#4477aa", label="query (aligned at 0)" if k == 0 else None)
        ax.barh(y - 0.12, we - ws, left=0, height=0.3, color="#dddddd", edgecolor="#999999",
                label="reference window" if k == 0 else None)
        for j, tid in enumerate(pr["target_tubelet_ids"]):
            t = tub.loc[tid]
            s, e = max(float(t["start"]), ws) - ws, min(float(t["end"]), we) - ws
            col = "#228833" if tid == pr["ref_tubelet_id"] else "#66ccee"
            lab = None
            if k == 0 and j == 0:
                lab = "target tubelets (dark: the drawn reference)"
            ax.barh(y - 0.12 - 0.1 + 0.2 * (j % 3) / 2, e - s, left=s, height=0.08, color=col, label=lab)
        yticks.append(y)
        ylabels.append(f"{split}: {pr['label']}"[:38])
    ax.set_yticks(yticks)
    ax.set_yticklabels(ylabels, fontsize=7)
    ax.set_xlabel(f"time from the window start ({unit})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("A few evaluation pairs: query length, reference window and target tubelets", fontsize=9)
    if chosen:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    Path(path).write_bytes(buf.getvalue())


def _q(x: np.ndarray) -> List[object]:
    if len(x) == 0:
        return ["-", "-", "-"]
    return [f"{x.min():g}", f"{np.median(x):g}", f"{x.max():g}"]


def st_stats_writer(
    title: str,
    tables: Mapping[Tuple[str, Optional[str]], pd.DataFrame],
    report: Report,
    *,
    unit: str,
    command: str,
    label_names: Optional[Callable[[str], str]] = None,
    max_labels: int = 30,
) -> Callable[[Path], List[str]]:
    """An ``extras`` function for ``write_manifest``: writes ``STATS.md``, ``lengths.png``
    and ``pairs.png`` (a few pairs' timelines) and returns their names."""

    def write(tmp: Path) -> List[str]:
        tub_all = {s: tables[("tubelets", s)] for s in SPLITS}
        lines = [f"# {title}: statistics", "",
                 f"Generated by `{command}`; do not edit by hand. Times are in {unit}.", "",
                 markdown_table(["split", "tubelets", "videos", "labels", "pairs", "target boxes"],
                                summary_rows(tables)),
                 "## Lengths", ""]
        len_rows = []
        for s in SPLITS:
            t = tub_all[s]
            len_rows.append([f"{s} tubelets", *_q((t["end"] - t["start"]).to_numpy(float))])
        for s in EVAL_SPLITS:
            p = tables.get(("pairs", s))
            if p is not None:
                len_rows.append([f"{s} reference windows", *_q((p["ref_end"] - p["ref_start"]).to_numpy(float))])
                n_kf = np.array([len(k) for k in p["ref_keyframes"]], dtype=float)
                len_rows.append([f"{s} scored keyframes per pair", *_q(n_kf)])
        lines += [markdown_table(["what", "min", "median", "max"], len_rows),
                  "![length histograms](lengths.png)", "",
                  "![pair timelines](pairs.png)", "", "## Labels per split", ""]
        for s in SPLITS:
            counts = tub_all[s]["label"].value_counts()
            order = sorted(counts.index, key=lambda lab: (-int(counts[lab]), lab))
            shown = order[:max_labels]
            name = (lambda lab: f"{lab} ({label_names(lab)})") if label_names else (lambda lab: lab)
            more = f", ... and {len(order) - len(shown)} more" if len(order) > len(shown) else ""
            lines.append(f"- **{s}**, {len(order)} label(s), tubelets per label: "
                         + ", ".join(f"{name(lab)}: {int(counts[lab])}" for lab in shown) + more)
        lines += ["", "## Dropped and skipped items", ""]
        rep = report.to_dict()
        lines.append(markdown_table(["reason", "count", "examples"],
                                    [[k, v["count"], "; ".join(v["examples"][:3])] for k, v in rep.items()])
                     if rep else "none\n")
        (tmp / "STATS.md").write_text("\n".join(lines), encoding="utf-8")
        panels = [(f"{s} tubelet length", (tub_all[s]["end"] - tub_all[s]["start"]).to_numpy(float), unit)
                  for s in SPLITS]
        wl = [(tables[("pairs", s)]["ref_end"] - tables[("pairs", s)]["ref_start"]).to_numpy(float)
              for s in EVAL_SPLITS if ("pairs", s) in tables]
        panels.append(("val+test reference window length", np.concatenate(wl) if wl else np.zeros(0), unit))
        histogram_png(tmp / "lengths.png", panels, title=f"{title}: length histograms")
        _timelines_png(tmp / "pairs.png", tables, unit)
        return ["STATS.md", "lengths.png", "pairs.png"]

    return write
