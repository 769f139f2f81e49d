"""Task adapters: how the engine opens data, writes predictions and scores, per task.

A task (``temporal``, ``spatiotemporal``) tells the engine where a baseline's data comes
from (manifest + feature or frame source), which pairs to predict, the prediction file
format, the scorer and its headline number. Tasks register with ``register_task``; the
spatio-temporal one lives with its data sources.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from .baseline import RunContext
from .errors import ConfigError, FeatureError
from .io import sha256_file

__all__ = ["Task", "TemporalTask", "register_task", "get_task", "TASK_ADAPTERS"]

TASK_ADAPTERS: Dict[str, "Task"] = {}


def register_task(task: "Task") -> "Task":
    TASK_ADAPTERS[task.name] = task
    return task


def get_task(name: str) -> "Task":
    if name not in TASK_ADAPTERS and name == "spatiotemporal":
        import importlib

        try:  # registers itself on import
            importlib.import_module("relocbench.video.task")
        except ModuleNotFoundError:
            pass
    if name not in TASK_ADAPTERS:
        raise ConfigError(f"unknown task {name!r}; expected one of {sorted(TASK_ADAPTERS)}")
    return TASK_ADAPTERS[name]


class Task:
    name = ""
    #: metric paths (tuples of keys) the leaderboard tables show, in order, with column titles
    columns: List[tuple] = []
    #: leaderboard tables: (title, [baseline names in row order]); others go to a last table
    tables: List[tuple] = []
    #: the paper's numbers for reference rows: {table title: {row name: [values per column]}}
    paper_rows: Dict[str, Dict[str, List[float]]] = {}

    def curve(self, metrics: Dict[str, Any]):
        """(x values, y values, x label, y label) of the metric-vs-threshold plot, or None."""
        return None

    def open(self, dataset: str, features: str, *, device, seed: int, skip_missing: bool) -> RunContext:
        raise NotImplementedError

    def pairs(self, ctx: RunContext, split: str):
        raise NotImplementedError

    def predictable(self, ctx: RunContext, pairs):
        """The subset of ``pairs`` the baseline is asked to predict (all, by default)."""
        return pairs

    def prediction_chunks(self, ctx: RunContext, pairs, size: int):
        """``pairs`` cut into consecutive chunks of ``size`` rows (the engine predicts chunk by
        chunk to report progress)."""
        size = max(1, int(size))
        return [pairs.iloc[i:i + size] for i in range(0, len(pairs), size)]

    def prediction_work(self, chunk) -> float:
        """How much a chunk of :meth:`prediction_chunks` costs to predict, relative to the others
        (what a distributed run shares out: :func:`relocbench.engine.share_chunks`): its pairs."""
        return float(len(chunk))

    def coverage(self, ctx: RunContext, pairs, predicted) -> Dict[str, Any]:
        """How many of ``pairs`` were predicted, how many distinct videos the missing ones lack,
        and what else the feature source skipped (its ``report``: training segments, ...)."""
        src = ctx.features
        have = set(predicted["pair_id"])
        lost = pairs[[pid not in have for pid in pairs["pair_id"]]]
        videos = set(lost["query_video"]) | set(lost["ref_video"])
        missing_videos = sorted(v for v in videos if v not in src)
        report = getattr(src, "report", None)
        return {"pairs": int(len(pairs)), "scored": int(len(predicted)), "missing": int(len(lost)),
                "missing_videos": len(missing_videos), "missing_video_examples": missing_videos[:3],
                "features": self.describe_features(ctx),
                "skipped": report.to_dict() if report else {}}

    def check_training(self, ctx: RunContext) -> None:
        """Before training: raise when ``--skip-missing`` leaves no training data (naming the
        feature or frame source and how many videos it lacks)."""

    @staticmethod
    def _no_training_left(what: str, n_items: int, videos, src) -> None:
        videos = sorted(set(videos))
        missing = [v for v in videos if v not in src]
        if n_items and len(missing) == len(videos):
            source = getattr(src, "source", None) or getattr(src, "root", None)
            raise FeatureError(
                f"--skip-missing left no training pair: all {len(videos)} videos of the {n_items} training "
                f"{what} are missing from the {type(src).__name__} (e.g. {missing[0]!r}); give features that "
                "cover the training split", file=source)

    def predictions_doc(self, ctx: RunContext, split: str, results: Dict[str, list]) -> Dict[str, Any]:
        raise NotImplementedError

    def score(self, ctx: RunContext, pairs, results: Dict[str, list], *, split: str) -> Dict[str, Any]:
        raise NotImplementedError

    def headline(self, metrics: Dict[str, Any]) -> float:
        raise NotImplementedError

    def describe_features(self, ctx: RunContext) -> Any:
        feats = ctx.features
        return feats.describe() if hasattr(feats, "describe") else str(feats)

    def manifest_sha256(self, ctx: RunContext) -> str:
        return sha256_file(ctx.manifest.path / "manifest.json")

    def examples(self, ctx: RunContext, pairs, results: Dict[str, list], n: int = 6) -> List[Dict[str, Any]]:
        return []


def example_ids(pair_ids, n: int) -> List[str]:
    """``n`` pair ids spread evenly over the sorted ids (deterministic)."""
    ids = sorted(pair_ids)
    if len(ids) <= n:
        return ids
    step = len(ids) / n
    return [ids[int(i * step)] for i in range(n)]


class TemporalTask(Task):
    """ECCV 2018 temporal re-localization on a temporal manifest and a feature store."""

    name = "temporal"
    columns = [(("map_at_iou", t), t) for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] + [(("average",), "Average")]
    tables = [
        ("Table 1: baselines (ECCV 2018 Table 1 layout)", ["chance", "frame-dp", "video-triplet", "sst", "cgbm"]),
        ("Table 2: ablations (ECCV 2018 Table 2 layout)", ["cgbm-base", "cgbm-gating", "cgbm-bilinear", "cgbm"]),
    ]
    paper_rows = {
        "Table 1: baselines (ECCV 2018 Table 1 layout)": {
            "Chance": [16.2, 11.0, 5.4, 2.9, 1.2, 7.3],
            "Frame-level baseline": [18.8, 13.9, 9.6, 5.0, 2.3, 9.9],
            "Video-level baseline": [24.3, 17.4, 12.0, 5.9, 2.2, 12.4],
            "SST": [33.2, 24.7, 17.2, 7.8, 2.7, 17.1],
            "Our model": [43.5, 35.1, 27.3, 16.2, 6.5, 25.7],
        },
        "Table 2: ablations (ECCV 2018 Table 2 layout)": {
            "Base": [40.8, 32.4, 22.8, 15.9, 6.4, 23.7],
            "Base + cross gating": [40.5, 33.5, 25.1, 16.2, 6.1, 24.3],
            "Base + bilinear": [42.3, 34.9, 25.7, 15.4, 6.5, 25.0],
            "Ours": [43.5, 35.1, 27.3, 16.2, 6.5, 25.7],
        },
    }

    def curve(self, metrics):
        keys = sorted(metrics["map_at_iou"], key=float)
        return [float(k) for k in keys], [metrics["map_at_iou"][k] for k in keys], "tIoU threshold", "mAP@1"

    def open(self, dataset, features, *, device, seed, skip_missing, feature_preset=None, feature_card=None):
        from .features import open_feature_store
        from .manifest import open_manifest

        man = open_manifest(dataset)
        if man.task != "temporal":
            raise ConfigError(f"dataset {dataset!r} is a {man.task} manifest; this baseline needs a temporal one")
        store = open_feature_store(features, manifest=man, seed=seed, skip_missing=skip_missing,
                                   preset=feature_preset, card=feature_card)
        extras = {"skip_missing": bool(skip_missing)}
        # leaderboard/run name: the built-in name, or the manifest folder's name
        return RunContext(dataset=Path(str(dataset)).name, manifest=man, features=store, device=device,
                          extras=extras)

    def pairs(self, ctx, split):
        if split == "train":
            raise ConfigError("the train split has no fixed pairs; evaluate on 'val' or 'test'")
        return ctx.manifest.table("pairs", split)

    def prediction_chunks(self, ctx, pairs, size):
        """Chunks in order of window length, as :func:`relocbench.temporal.data.iterate_pairs`
        sorts them: a batched predictor whose batch size divides ``size`` sees the same
        batches chunk by chunk as in one call."""
        import numpy as np

        wlen = (pairs["ref_end_step"] - pairs["ref_start_step"]).to_numpy()
        ordered = pairs.iloc[np.argsort(wlen, kind="stable")]
        return super().prediction_chunks(ctx, ordered, size)

    def prediction_work(self, chunk) -> float:
        """The chunk's reference steps: the models step through every reference window."""
        return float((chunk["ref_end_step"] - chunk["ref_start_step"]).sum())

    def check_training(self, ctx):
        if not ctx.extras.get("skip_missing"):
            return
        seg = ctx.manifest.table("segments", "train")
        self._no_training_left("segments", len(seg), seg["video"], ctx.features)

    def predictable(self, ctx, pairs):
        """The pairs whose videos the feature store has; with ``--skip-missing`` the others are
        left out of prediction (and scored as misses), otherwise a missing video is an error."""
        if not ctx.extras.get("skip_missing"):
            return pairs
        store = ctx.features
        ok = [(q in store) and (r in store) for q, r in zip(pairs["query_video"], pairs["ref_video"])]
        return pairs[ok]

    def predictions_doc(self, ctx, split, results):
        return {"version": "relocbench/1", "task": "temporal", "manifest": ctx.manifest.name, "split": split,
                "unit": "step", "results": results}

    def score(self, ctx, pairs, results, *, split):
        from .metrics.temporal import evaluate_temporal

        return evaluate_temporal(pairs, self.predictions_doc(ctx, split, results),
                                 allow_missing=bool(ctx.extras.get("skip_missing")))

    def headline(self, metrics):
        return float(metrics["average"])

    def examples(self, ctx, pairs, results, n=6):
        out = []
        by_id = pairs.set_index("pair_id")
        for pid in example_ids(pairs["pair_id"], n):
            row = by_id.loc[pid]
            preds = results.get(pid) or []
            out.append({
                "pair_id": pid, "label": row["label"],
                "query_steps": int(row["query_end_step"] - row["query_start_step"]),
                "window_steps": int(row["ref_end_step"] - row["ref_start_step"]),
                "ground_truth": [int(row["gt_start_step"]), int(row["gt_end_step"])],
                "prediction": list(preds[0]["segment"]) if preds else None,
            })
        return out


register_task(TemporalTask())
