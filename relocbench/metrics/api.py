"""One entry point for every protocol: read the files, score, and present the result."""
from __future__ import annotations

import io as _io
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import ConfigError
from ..io import atomic_write_bytes
from ..manifest import open_manifest
from ..predictions import read_predictions

__all__ = ["PROTOCOLS", "evaluate", "summary_tables", "plot_result"]

PROTOCOLS = ("reloc-temporal", "reloc-spatiotemporal", "activitynet-detection", "activitynet-proposal", "ava")
_TASK_OF = {"reloc-temporal": "temporal", "reloc-spatiotemporal": "spatiotemporal"}
PathLike = Union[str, os.PathLike]


def _need(value, option: str, protocol: str):
    if value is None:
        raise ConfigError(f"protocol {protocol!r} needs {option}")
    return value


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
) -> Dict[str, Any]:
    """Score a predictions file; the Python twin of ``relocbench evaluate``.

    ``protocol`` defaults to the task of ``manifest`` (``reloc-temporal`` or
    ``reloc-spatiotemporal``). The official protocols take ``ground_truth`` (and
    ``label_map`` for AVA) instead of a manifest.
    """
    if protocol is None:
        if manifest is None:
            raise ConfigError(f"give --protocol (one of {list(PROTOCOLS)}) or a --manifest to take it from")
        protocol = {"temporal": "reloc-temporal", "spatiotemporal": "reloc-spatiotemporal"}[open_manifest(manifest).task]
    if protocol not in PROTOCOLS:
        raise ConfigError(f"The 'protocol' parameter must be one of {list(PROTOCOLS)}. Got {protocol!r} instead.")
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
    m = open_manifest(_need(manifest, "--manifest", protocol))
    task = _TASK_OF[protocol]
    if m.task != task:
        raise ConfigError(f"protocol {protocol!r} needs a {task} manifest; {m.path} is a {m.task} manifest")
    preds = read_predictions(predictions, task=task)
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
        res = evaluate_spatiotemporal(pairs, targets, preds, **common)
    return {"manifest": m.name, "split": split, **res}


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
        head = (["mAP@1"] + avg_keys + ["Average", "95% CI", "R@1", "R@5", "AP", "pairs", "missing"])
        rec = result["recall_at_k"]
        row = (["all"] + [_pct(m[k]) for k in avg_keys] + [_pct(result["average"]),
               f"{_pct(result['ci95'][0])}-{_pct(result['ci95'][1])}", _pct(rec.get("1")), _pct(rec.get("5")),
               _pct(result["ap"]), str(result["n_pairs"]), str(result["n_missing"])])
        tables = [(f"reloc-temporal ({result['unit']}s, tIoU {'>' if result['iou_rule'] == 'strict' else '>='} t)",
                   head, [row])]
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
        return [("reloc-spatiotemporal frame-mAP", ["label"] + [f"IoU {k}" for k in ks], rows)]
    if p == "activitynet-detection":
        thr = [f"{t:g}" for t in result["tiou_thresholds"]]
        rows = [["mAP"] + [_pct(v) for v in result["mAP"]] + [_pct(result["average_mAP"])]]
        rows += [[c] + [_pct(v) for v in aps] + [_pct(sum(aps) / len(aps))] for c, aps in result["per_class"].items()]
        return [(f"activitynet-detection ({result['subset']})", ["class"] + thr + ["average"], rows)]
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
    atomic_write_bytes(path, buf.getvalue(), force=force)
