"""One entry point for every protocol: read the files, score, and present the result."""
from __future__ import annotations

import io as _io
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ConfigError

# The manifest and prediction readers (pandas, pyarrow) are imported by the reloc-* protocols
# only: the official protocols (ActivityNet, AVA) read their own files without them.

__all__ = ["PROTOCOLS", "evaluate", "summary_tables", "plot_result", "manifest_named_by"]

PROTOCOLS = ("reloc-temporal", "reloc-spatiotemporal", "activitynet-detection", "activitynet-proposal", "ava")
_TASK_OF = {"reloc-temporal": "temporal", "reloc-spatiotemporal": "spatiotemporal"}
PathLike = Union[str, os.PathLike]


def _need(value, option: str, protocol: str):
    if value is None:
        raise ConfigError(f"protocol {protocol!r} needs {option}")
    return value


def manifest_named_by(predictions: PathLike) -> Optional[str]:
    """The built-in manifest that a relocbench predictions file names in its ``manifest``
    field, or None (no such field, not a relocbench predictions file, or a name that no
    built-in or installed manifest has). Reads the file's header only."""
    from ..errors import RelocbenchError
    from ..io import JsonMapping

    try:
        header = JsonMapping(predictions, "results", "predictions file", item_name="pair id").header
    except RelocbenchError:
        return None  # the protocol's own reader names what is wrong with the file
    name = header.get("manifest") if isinstance(header, dict) else None
    if not isinstance(name, str) or not name or "/" in name or os.sep in name or name in (".", ".."):
        return None
    from ..manifest import resolve_manifest

    try:
        resolve_manifest(name)
    except RelocbenchError:
        return None
    return name


def evaluate(
    predictions: PathLike,
    *,
    protocol: Optional[str] = None,
    manifest: Optional[PathLike] = None,
    split: str = "test",
    ground_truth: Optional[PathLike] = None,
    subset: str = "validation",
    blocked_videos: Optional[PathLike] = None,
    label_map: Optional[PathLike] = None,
    exclusions: Optional[PathLike] = None,
    iou_rule: str = "inclusive",
    clip: bool = False,
    allow_missing: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    max_avg_nr_proposals: Optional[float] = 100,
    clip_scoring: str = "keyframe",
) -> Dict[str, Any]:
    """Score a predictions file; the Python twin of ``relocbench evaluate``.

    ``protocol`` defaults to the task of ``manifest`` (``reloc-temporal`` or
    ``reloc-spatiotemporal``); without either, ``manifest`` is the built-in manifest that
    the predictions file names in its ``manifest`` field (:func:`manifest_named_by`). The
    official protocols take ``ground_truth`` (and ``label_map`` for AVA) instead of a manifest.

    The reloc-* results also hold ``n_empty``: the pairs whose prediction list is empty
    (scored as misses). ``clip_scoring`` (``reloc-spatiotemporal`` only): ``"keyframe"``, or
    ``"original"`` for the CVPR 2019 authors' per-clip scoring (see
    :mod:`relocbench.metrics.spatiotemporal`).
    """
    if protocol is None and manifest is None:
        manifest = manifest_named_by(predictions)
        if manifest is None:
            raise ConfigError(f"give --protocol (one of {list(PROTOCOLS)}) or a --manifest to take it from "
                              "(the predictions file names no built-in manifest)")
    if protocol is None:
        from ..manifest import open_manifest

        protocol = {"temporal": "reloc-temporal", "spatiotemporal": "reloc-spatiotemporal"}[open_manifest(manifest).task]
    if protocol not in PROTOCOLS:
        raise ConfigError(f"The 'protocol' parameter must be one of {list(PROTOCOLS)}. Got {protocol!r} instead.")
    if clip_scoring != "keyframe" and protocol != "reloc-spatiotemporal":
        raise ConfigError(f"--clip-scoring {clip_scoring} applies to the reloc-spatiotemporal protocol only "
                          f"(this is {protocol!r})")
    if protocol == "activitynet-detection":
        from .activitynet import activitynet_detection
        return activitynet_detection(_need(ground_truth, "--ground-truth", protocol), predictions,
                                     subset=subset, blocked_videos=blocked_videos)
    if protocol == "activitynet-proposal":
        from .proposal import activitynet_proposal
        return activitynet_proposal(_need(ground_truth, "--ground-truth", protocol), predictions, subset=subset,
                                    max_avg_nr_proposals=max_avg_nr_proposals, blocked_videos=blocked_videos)
    if protocol == "ava":
        from .ava import ava_frame_map
        return ava_frame_map(_need(ground_truth, "--ground-truth", protocol), predictions,
                             _need(label_map, "--label-map", protocol), exclusions=exclusions)
    from ..manifest import open_manifest
    from ..predictions import read_predictions

    m = open_manifest(_need(manifest, "--manifest", protocol))
    task = _TASK_OF[protocol]
    if m.task != task:
        raise ConfigError(f"protocol {protocol!r} needs a {task} manifest; {m.path} is a {m.task} manifest")
    preds = read_predictions(predictions, task=task)
    import numpy as np

    n_empty = int(np.count_nonzero(np.diff(preds.offsets) == 0))
    common = dict(clip=clip, allow_missing=allow_missing, manifest_name=m.name, split=split)
    if protocol == "reloc-temporal":
        from .temporal import evaluate_temporal
        pairs = m.table("pairs", split)
        _release_arrow_memory()
        res = evaluate_temporal(pairs, preds, iou_rule=iou_rule, n_bootstrap=n_bootstrap, seed=seed, **common)
    else:
        from .spatiotemporal import ST_PAIR_COLUMNS, evaluate_spatiotemporal
        pairs, targets = m.table("pairs", split), m.table("targets", split)
        # the columns scoring reads: the others (lists of target ids) are dropped before it
        pairs = pairs[[c for c in ST_PAIR_COLUMNS if c in pairs.columns]]
        _release_arrow_memory()
        res = evaluate_spatiotemporal(pairs, targets, preds, clip_scoring=clip_scoring, **common)
    return {"manifest": m.name, "split": split, **res, "n_empty": n_empty}


def _release_arrow_memory() -> None:
    """Hand the memory pyarrow kept after reading the tables back to the system (its pool
    keeps freed blocks for reuse; scoring needs none of them)."""
    import pyarrow as pa

    release = getattr(pa.default_memory_pool(), "release_unused", None)
    if release is not None:
        release()


def _pct(x) -> str:
    return "-" if x is None else f"{100.0 * x:.1f}"


Table = Tuple[str, List[str], List[List[str]]]


def summary_tables(result: Dict[str, Any]) -> List[Table]:
    """(title, columns, rows) tables of a result, in percent, for printing."""
    p = result["protocol"]
    if p == "reloc-temporal":
        m = result["map_at_iou"]
        avg_keys = [f"{t:g}" for t in result["average_thresholds"]]
        rec = result["recall_at_k"]
        # two tables of one row each, so that each fits 80 columns
        row = (["mAP@1"] + [_pct(m[k]) for k in avg_keys] + [_pct(result["average"]),
               f"{_pct(result['ci95'][0])}-{_pct(result['ci95'][1])}"])
        more = [_pct(rec.get("1")), _pct(rec.get("5")), _pct(result["ap"]), str(result["n_pairs"]),
                str(result["n_missing"])]
        tables = [(f"reloc-temporal ({result['unit']}s, tIoU {'>' if result['iou_rule'] == 'strict' else '>='} t)",
                   ["tIoU"] + avg_keys + ["Average", "95% CI"], [row]),
                  ("reloc-temporal recall and pooled AP", ["R@1", "R@5", "AP", "pairs", "missing"], [more])]
        for name, br in result["breakdowns"].items():
            rows = [[k] + [_pct(v["map_at_iou"][t]) for t in avg_keys] + [_pct(v["average"]), str(v["n_pairs"])]
                    for k, v in br.items()]
            first = {"per_class": "class", "query_length_steps": "query steps",
                     "gt_to_window_ratio": "gt / window"}.get(name, name)
            tables.append((f"mAP@1 by {first}", [first] + avg_keys + ["Average", "pairs"], rows))
        return tables
    if p == "reloc-spatiotemporal":
        ks = list(result["frame_map"])
        rows = [["mean"] + [_pct(result["frame_map"][k]) for k in ks]]
        rows += [[lab] + [_pct(v[k]) for k in ks] for lab, v in result["per_label"].items()]
        how = " (original clip scoring)" if result.get("clip_scoring") == "original" else ""
        return [(f"reloc-spatiotemporal frame-mAP{how}", ["label"] + [f"IoU {k}" for k in ks], rows)]
    if p == "activitynet-detection":
        # mAP at every threshold as a column (fits 80 columns); per class, the first, middle
        # and last threshold and the average (every value is in the JSON output)
        thr = result["tiou_thresholds"]
        rows = [[f"{t:g}", _pct(v)] for t, v in zip(thr, result["mAP"])] + [["average", _pct(result["average_mAP"])]]
        shown = sorted({0, len(thr) // 2, len(thr) - 1}) if thr else []
        per = [[c] + [_pct(aps[j]) for j in shown] + [_pct(sum(aps) / len(aps) if aps else None)]
               for c, aps in result["per_class"].items()]
        return [(f"activitynet-detection ({result['subset']})", ["tIoU", "mAP"], rows),
                ("AP by class", ["class"] + [f"AP@{thr[j]:g}" for j in shown] + ["average"], per)]
    if p == "activitynet-proposal":
        ar = result["ar_at_an"]
        head = ["AUC"] + [f"AR@{k}" for k in ar] + ["videos", "proposals kept"]
        rows = [[_pct(result["auc"])] + [_pct(v) for v in ar.values()]
                + [str(result["n_videos"]), f"{result['n_proposals_kept']}/{result['n_proposals']}"]]
        an = f"{result['average_nr_proposals'][-1]:g}"
        rec = [[f"{t:g}", _pct(r[-1])] for t, r in zip(result["tiou_thresholds"], result["recall"])]
        return [(f"activitynet-proposal ({result['subset']}, up to {an} proposals per video)", head, rows),
                (f"recall at {an} proposals per video by tIoU", ["tIoU", "recall"], rec)]
    if p == "ava":
        rows = [["mAP", _pct(result["mAP"])]] + [[c, _pct(v)] for c, v in result["per_class"].items()]
        return [(f"AVA frame-mAP @ IoU {result['iou']:g}", ["class", "AP"], rows)]
    raise ConfigError(f"unknown protocol {p!r} in the result")


def _curve_and_bars(result: Dict[str, Any]):
    p = result["protocol"]
    if p == "reloc-temporal":
        curve = {float(k): v for k, v in result["map_at_iou"].items()}
        bars = {k: v["average"] for k, v in result["breakdowns"]["per_class"].items()}
        return curve, bars, "mAP@1", "Average per class"
    if p == "reloc-spatiotemporal":
        curve = {float(k): v for k, v in result["frame_map"].items()}
        bars = {k: v.get("0.5", next(iter(v.values()))) for k, v in result["per_label"].items()}
        return curve, bars, "frame-mAP", "AP@0.5 per label"
    if p == "activitynet-detection":
        curve = dict(zip(result["tiou_thresholds"], result["mAP"]))
        bars = {k: sum(v) / len(v) for k, v in result["per_class"].items()}
        return curve, bars, "mAP", "average AP per class"
    if p == "activitynet-proposal":
        curve = {t: r[-1] for t, r in zip(result["tiou_thresholds"], result["recall"])}
        bars = {f"AR@{k}": v for k, v in result["ar_at_an"].items() if v is not None}
        return curve, bars, "recall at the largest AN", "average recall at AN proposals per video"
    curve = {result["iou"]: result["mAP"]}
    bars = {k: v for k, v in result["per_class"].items() if v is not None}
    return curve, bars, "frame-mAP", f"AP@{result['iou']:g} per class"


def plot_result(result: Dict[str, Any], path: PathLike, *, force: bool = False) -> None:
    """PNG: the metric against the overlap threshold, and per-class bars; written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, bars, ylabel, bar_title = _curve_and_bars(result)
    n_bars = max(len(bars), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6 + min(0.18 * n_bars, 30), 4),
                                   gridspec_kw={"width_ratios": [1, max(1.0, 0.06 * n_bars)]})
    xs = sorted(curve)
    ax1.plot(xs, [100 * curve[x] for x in xs], marker="o")
    ax1.set_xlabel("IoU threshold")
    ax1.set_ylabel(f"{ylabel} (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title(result["protocol"])
    names = list(bars)
    ax2.bar(range(len(names)), [100 * bars[n] for n in names])
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=90, fontsize=6)
    ax2.set_ylim(0, 100)
    ax2.set_title(bar_title)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    from ..io import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue(), force=force)
