"""The ``spatiotemporal`` task adapter: how the engine opens spatio-temporal data, writes
predictions and scores them (``reloc-spatiotemporal`` frame-mAP).

Datasets (``--dataset``):

* ``synthetic-sprites``: the offline benchmark of :mod:`relocbench.video.sprites` (generated
  on first use into ``$RELOCBENCH_CACHE``, default ``~/.cache/relocbench``); frames are
  rendered on demand, so ``--features`` must stay ``synthetic``. A folder holding a sprites
  manifest (e.g. built with other generator settings by :func:`build_sprites`) works too:
  its ``manifest.json`` carries the generator's parameters.
* ``ucf24``, ``ava`` or a spatio-temporal manifest folder: ``--features`` is the frames
  folder (:class:`relocbench.video.frames.FrameSource`; layout ``ucf24`` for UCF101-24,
  ``ava`` for AVA, ``videos`` for one video file per video); ``--skip-missing`` leaves out
  pairs whose videos have no frames (counted, scored as misses).

Importing this module registers the task (``relocbench.tasks.get_task("spatiotemporal")``
does it on demand).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..baseline import RunContext
from ..errors import ConfigError
from ..tasks import Task, register_task

__all__ = ["SpatiotemporalTask", "TABLE1", "keyframe_stride", "frames_layout"]

TABLE1 = "Table 1 layout (CVPR 2019)"
SPRITES = "synthetic-sprites"


def keyframe_stride(meta: Dict[str, Any]) -> float:
    """Spacing of consecutive scored keyframes in the manifest's time unit: the manifest's
    ``units.keyframe_stride`` or ``params.keyframe_stride`` when present, else 1 for times in
    seconds (AVA: 1 Hz) and 8 for frame indices (one 8-frame clip)."""
    units = meta.get("units") or {}
    params = meta.get("params") or {}
    for src in (units, params):
        v = src.get("keyframe_stride")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    unit = str(units.get("time", ""))
    return 1.0 if unit.startswith("second") else 8.0


def frames_layout(meta: Dict[str, Any]) -> Dict[str, Any]:
    """FrameSource keywords for a manifest: its layout and time unit."""
    name = meta.get("name", "")
    unit = str((meta.get("units") or {}).get("time", ""))
    if name == "ucf24":
        return {"layout": "ucf24"}
    if name == "ava":
        return {"layout": "ava"}
    if unit.startswith("second"):
        return {"layout": "videos", "time_unit": "second"}
    return {"layout": "videos", "time_unit": "frame", "time_fps": float((meta.get("units") or {}).get("fps", 25.0))}


class SpatiotemporalTask(Task):
    """CVPR 2019 spatio-temporal re-localization: manifests + frames, frame-mAP scoring."""

    name = "spatiotemporal"
    columns = [(("frame_map", t), t) for t in ("0.3", "0.5", "0.7")]
    tables = [(TABLE1, ["stvr-clip", "stvr-convlstm", "stvr-flow", "stvr-traj", "stvr-warp"])]
    # The paper reports frame-mAP at IoU 0.5 only (AVA and UCF101-24 columns of its Table 1),
    # so its rows cannot fill the 0.3 / 0.7 columns; they are quoted in the dataset notes:
    # AVA clip 18.8, ConvLSTM 20.8, optical flow 20.2, TrajLSTM 21.0, warp LSTM 21.8;
    # UCF101-24 52.9, 53.5, 52.0, 54.8, 59.4.
    paper_rows: Dict[str, Dict[str, List[float]]] = {}
    PAPER_TABLE1 = {
        "ava": {"stvr-clip": 18.8, "stvr-convlstm": 20.8, "stvr-flow": 20.2, "stvr-traj": 21.0, "stvr-warp": 21.8},
        "ucf24": {"stvr-clip": 52.9, "stvr-convlstm": 53.5, "stvr-flow": 52.0, "stvr-traj": 54.8,
                  "stvr-warp": 59.4},
    }

    def curve(self, metrics):
        fm = metrics["frame_map"]
        keys = sorted(fm, key=float)
        return [float(k) for k in keys], [fm[k] for k in keys], "IoU threshold", "frame-mAP"

    def open(self, dataset, features, *, device, seed, skip_missing):
        from ..manifest import open_manifest
        from .frames import FrameSource
        from .sprites import SpritesConfig, SpriteVideos, open_sprites

        if dataset == SPRITES:
            man = open_sprites(SpritesConfig())
        else:
            man = open_manifest(dataset)
            if man.task != "spatiotemporal":
                raise ConfigError(f"dataset {dataset!r} is a {man.task} manifest; this baseline needs a "
                                  "spatio-temporal one (synthetic-sprites, ucf24, ava)")
        meta = man.meta
        if meta.get("name") == SPRITES:
            if features not in (None, "", "synthetic"):
                raise ConfigError(f"synthetic-sprites renders its own frames; leave --features at 'synthetic' "
                                  f"(got {features!r})")
            try:
                cfg = SpritesConfig.from_dict(meta.get("params") or {})
            except ConfigError as exc:
                raise ConfigError(f"the sprites manifest's params do not describe a generator config ({exc})",
                                  file=man.path / "manifest.json") from None
            source = SpriteVideos(cfg)
        else:
            if features in (None, "", "synthetic"):
                raise ConfigError(f"dataset {meta.get('name')!r} needs its frames: pass --features PATH to the "
                                  "frames folder (see relocbench.video.frames for the layouts)")
            source = FrameSource(features, **frames_layout(meta))
        name = SPRITES if dataset == SPRITES else Path(str(dataset)).name
        extras = {"skip_missing": bool(skip_missing), "keyframe_stride": keyframe_stride(meta)}
        return RunContext(dataset=name, manifest=man, features=source, device=device, extras=extras)

    def pairs(self, ctx, split):
        if split == "train":
            raise ConfigError("the train split has no fixed pairs; evaluate on 'val' or 'test'")
        return ctx.manifest.table("pairs", split)

    def check_training(self, ctx):
        if not ctx.extras.get("skip_missing"):
            return
        tub = ctx.manifest.table("tubelets", "train")
        self._no_training_left("tubelets", len(tub), tub["video"], ctx.features)

    def predictable(self, ctx, pairs):
        """With ``--skip-missing``, the pairs whose query and reference videos have frames
        (the others are counted in ``ctx.extras['skipped_pairs']`` and scored as misses)."""
        if not ctx.extras.get("skip_missing"):
            return pairs
        src = ctx.features
        ok = np.array([(q in src) and (r in src) for q, r in zip(pairs["query_video"], pairs["ref_video"])], bool)
        ctx.extras["skipped_pairs"] = int((~ok).sum())
        return pairs[ok]

    def predictions_doc(self, ctx, split, results):
        return {"version": "relocbench/1", "task": "spatiotemporal", "manifest": ctx.manifest.name, "split": split,
                "results": results}

    def score(self, ctx, pairs, results, *, split):
        from ..metrics.spatiotemporal import evaluate_spatiotemporal

        targets = ctx.manifest.table("targets", split)
        if ctx.extras.get("score_subset"):  # only the given pairs are scored: only their targets count
            targets = targets[targets["pair_id"].isin(set(pairs["pair_id"]))].reset_index(drop=True)
        # a baseline that detects on each keyframe's three clips sets extras["clip_scoring"] = "original"
        return evaluate_spatiotemporal(pairs, targets, self.predictions_doc(ctx, split, results),
                                       allow_missing=bool(ctx.extras.get("skip_missing")),
                                       manifest_name=ctx.manifest.name, split=split,
                                       clip_scoring=ctx.extras.get("clip_scoring", "keyframe"))

    def headline(self, metrics):
        return float(metrics["frame_map"]["0.5"])

    def examples(self, ctx, pairs, results, n=6):
        """Spatio-temporal examples are drawn by ``relocbench_baselines.stvr.figures`` (Fig. 8 style), not
        by the leaderboard's temporal example plot."""
        return []


register_task(SpatiotemporalTask())
