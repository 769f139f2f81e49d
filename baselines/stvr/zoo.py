"""Registers the spatio-temporal baselines of the CVPR 2019 paper's Table 1 with relocbench.

``stvr-clip``, ``stvr-convlstm``, ``stvr-flow``, ``stvr-traj`` and ``stvr-warp`` are one
baseline class, :class:`STVR` (the model of :mod:`relocbench_baselines.stvr.model`), configured with a
different reference-propagation cell. The defaults are CPU-sized for ``synthetic-sprites``
(64x64 frames, a from-scratch ``tiny3d`` backbone, Adam, 4-clip reference crops); the
paper's training settings are in ``baselines/stvr/configs/paper.yaml``::

    relocbench run-baseline stvr-warp --dataset synthetic-sprites
    relocbench run-baseline stvr-warp --dataset ucf24 --features data/ucf24 \\
        --config baselines/stvr/configs/paper.yaml

Training batches: for each item, a training label, a query tubelet of it and a reference
tubelet of the same label (in another video when there is one); the query is up to
``query_clips`` consecutive keyframes of its tubelet (a random run), the reference a crop of
``ref_clips`` keyframes around a random keyframe of the reference tubelet, padded with zero
clips outside the video (the paper's "randomly cropping or padding zeros"). Everything is
drawn from ``numpy.random.default_rng([seed, step])``, so a resumed run sees the same batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Tuple

import numpy as np
import torch

from relocbench.baseline import Baseline, TrainConfig
from relocbench.errors import ConfigError
from relocbench.params import Bool, FloatSeq, Int, Options, Str
from relocbench.registry import register_baseline

from .model import STVRModel

__all__ = ["STVRConfig", "STVR", "PairData"]


@dataclass
class STVRConfig(TrainConfig):
    """Training settings (CPU-sized defaults) and the model's hyperparameters."""

    steps: int = 600
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"
    eval_every: int = 150
    clip_norm: float = 10.0
    cell: str = "warp"  # none | convlstm | flow | traj | warp
    backbone: str = "tiny3d"  # tiny3d | s3d | r3d_18 | r2plus1d_18
    width: int = 16  # tiny3d channels of the first layer
    backbone_stride: int = 8  # tiny3d: 8 or 16 (torchvision backbones: 16)
    pretrained: bool = False  # Kinetics-400 weights of a torchvision backbone, from disk only
    pretrained_path: str = ""
    frame_size: int = 64  # clips are resized to frame_size x frame_size (paper: 320)
    ref_clips: int = 4  # reference crop length in keyframes (paper: 2 s = 6 clips)
    query_clips: int = 3  # query keyframes used (at most)
    hidden_channels: int = 32  # cell bottleneck (paper: 128)
    kernel_size: int = 3
    links: int = 5  # TrajLSTM
    grid_size: int = 3  # warp LSTM control points per side
    num_boundary_points: int = 2
    interpolation_order: int = 2
    roi_size: int = 4  # paper: 7
    anchor_scales: Tuple[float, ...] = (0.14, 0.22, 0.34)  # anchor sides as fractions of the frame
    anchor_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    attention_dim: int = 64
    head_channels: int = 64
    head_dim: int = 128
    fusion: str = "concat"  # concat (paper) | concat-product
    train_proposals: int = 24
    test_proposals: int = 32
    detections: int = 5  # boxes kept per keyframe
    flow_method: str = "farneback"  # optical flow of the flow cell: farneback | dis

    parameter_constraints: ClassVar[Dict[str, Any]] = {
        "cell": Options("none", "convlstm", "flow", "traj", "warp"),
        "backbone": Options("tiny3d", "s3d", "r3d_18", "r2plus1d_18"),
        "width": Int(ge=4), "backbone_stride": Options(8, 16), "pretrained": Bool(), "pretrained_path": Str(),
        "frame_size": Int(ge=1), "ref_clips": Int(ge=1), "query_clips": Int(ge=1), "hidden_channels": Int(ge=1),
        "kernel_size": Int(ge=1, odd=True), "links": Int(ge=1), "grid_size": Int(ge=1),
        "num_boundary_points": Int(ge=0), "interpolation_order": Int(ge=1), "roi_size": Int(ge=1),
        "anchor_scales": FloatSeq(gt=0, min_len=1), "anchor_ratios": FloatSeq(gt=0, min_len=1),
        "attention_dim": Int(ge=1), "head_channels": Int(ge=1), "head_dim": Int(ge=1),
        "fusion": Options("concat", "concat-product"), "train_proposals": Int(ge=1), "test_proposals": Int(ge=1),
        "detections": Int(ge=1), "flow_method": Options("farneback", "dis"),
    }


def _model_kwargs(cfg: STVRConfig) -> Dict[str, Any]:
    keys = ("cell", "backbone", "width", "backbone_stride", "pretrained", "pretrained_path", "frame_size",
            "hidden_channels", "kernel_size", "links", "grid_size", "num_boundary_points", "interpolation_order",
            "roi_size", "anchor_scales", "anchor_ratios", "attention_dim", "head_channels", "head_dim", "fusion",
            "train_proposals", "test_proposals", "detections")
    return {k: getattr(cfg, k) for k in keys}


class PairData:
    """Manifest lookups of the baseline: boxes per tubelet and per (video, keyframe)."""

    def __init__(self, manifest, stride: float) -> None:
        self.stride = float(stride)
        self.manifest = manifest
        self._tubes: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self._loaded: set = set()
        self._by_frame: Dict[Tuple[str, int], List[Tuple[str, np.ndarray]]] = {}

    @staticmethod
    def key(t: float) -> int:
        return int(round(float(t) * 1e6))

    def load(self, split: str) -> None:
        if split in self._loaded:
            return
        self._loaded.add(split)
        tub = self.manifest.table("tubelets", split)
        boxes = self.manifest.table("boxes", split).sort_values(["tubelet_id", "time"], kind="mergesort")
        info = tub.set_index("tubelet_id")[["video", "label"]]
        for tid, g in boxes.groupby("tubelet_id", sort=True):
            t = g["time"].to_numpy(float)
            b = g[["x1", "y1", "x2", "y2"]].to_numpy(float)
            self._tubes[tid] = (t, b)
            if tid in info.index:
                video, label = info.loc[tid, "video"], info.loc[tid, "label"]
                for ti, bi in zip(t, b):
                    self._by_frame.setdefault((video, self.key(ti)), []).append((label, bi))

    def tube(self, tid: str) -> Tuple[np.ndarray, np.ndarray]:
        if tid not in self._tubes:
            for split in self.manifest.splits:
                self.load(split)
        if tid not in self._tubes:
            raise ConfigError(f"tubelet {tid!r} has no boxes in the manifest", file=self.manifest.path)
        return self._tubes[tid]

    def keyframes(self, tid: str) -> Tuple[np.ndarray, np.ndarray]:
        """The tubelet's box times on its keyframe grid (every ``stride`` from its first)."""
        t, b = self.tube(tid)
        on = np.abs(((t - t[0]) / self.stride) - np.round((t - t[0]) / self.stride)) < 1e-6
        return t[on], b[on]

    def boxes_at(self, video: str, t: float) -> List[Tuple[str, np.ndarray]]:
        return self._by_frame.get((video, self.key(t)), [])


@register_baseline("stvr-warp", cell="warp",
                   description="CVPR 2019 STVR model (Fig. 5) with the warp LSTM: a learned spline warp of the "
                               "state between reference clips (the paper's model).")
@register_baseline("stvr-traj", cell="traj",
                   description="CVPR 2019 STVR model (Fig. 5) with a TrajLSTM (5 links) over the reference clips.")
@register_baseline("stvr-flow", cell="flow",
                   description="CVPR 2019 STVR model (Fig. 5) with a ConvLSTM whose state is warped by optical "
                               "flow between reference clips.")
@register_baseline("stvr-convlstm", cell="convlstm",
                   description="CVPR 2019 STVR model (Fig. 5) with a ConvLSTM over the reference clips.")
@register_baseline("stvr-clip", cell="none",
                   description="CVPR 2019 STVR model (Fig. 5), clip baseline: each reference clip alone, no "
                               "propagation.")
class STVR(Baseline):
    """CVPR 2019 STVR model (Fig. 5); the variant sets the reference cell.

    Propagation cells: stvr-clip none, stvr-convlstm ConvLSTM, stvr-flow optical-flow-warped
    ConvLSTM, stvr-traj TrajLSTM (5 links), stvr-warp warp LSTM.
    """

    task = "spatiotemporal"
    Config = STVRConfig
    trainable = True

    @classmethod
    def create_model(cls, config):
        return STVRModel(**_model_kwargs(config))

    # ------------------------------------------------------------------ data
    def prepare(self, model) -> None:
        ctx = self.ctx
        self.source = ctx.features
        self.data = PairData(ctx.manifest, ctx.extras.get("keyframe_stride", 8.0))
        self.size = int(self.config.frame_size)
        self.map_size = self.size // (model.stride if model is not None else 8)
        self._train = None

    def _train_index(self):
        if self._train is None:
            self.data.load("train")
            tub = self.ctx.manifest.table("tubelets", "train")
            src = self.source
            if self.ctx.extras.get("skip_missing"):
                tub = tub[[v in src for v in tub["video"]]]
            tub = tub[[tid in self.data._tubes for tid in tub["tubelet_id"]]]
            by_label = {lab: g.sort_values("tubelet_id")[["tubelet_id", "video"]].to_numpy(object)
                        for lab, g in tub.groupby("label", sort=True) if len(g) >= 2}
            if not by_label:
                raise ConfigError("no training label has two tubelets: nothing to train on",
                                  file=self.ctx.manifest.path)
            self._train = (sorted(by_label), by_label)
        return self._train

    def _valid(self, video: str, t: float) -> bool:
        s = self.source.seconds(t)
        return 0.0 <= s < self.source.duration_s(video) + 1e-9

    def _clip(self, video: str, t: float, valid: bool = True) -> np.ndarray:
        if not valid:
            return np.zeros((8, self.size, self.size, 3), np.uint8)
        return self.source.clip(video, t, size=self.size)

    def _flows(self, video: str, times, valid) -> np.ndarray:
        from .cells import sequence_flows

        frames = [self.source.frame(video, t, size=self.size) if ok else np.zeros((self.size, self.size, 3), np.uint8)
                  for t, ok in zip(times, valid)]
        return sequence_flows(frames, size=(self.map_size, self.map_size), method=self.config.flow_method).numpy()

    def _item(self, rng: np.random.Generator) -> Dict[str, Any]:
        labels, by_label = self._train_index()
        cfg = self.config
        lab = labels[int(rng.integers(len(labels)))]
        rows = by_label[lab]
        qi = int(rng.integers(len(rows)))
        others = [i for i in range(len(rows)) if rows[i][1] != rows[qi][1]] or [i for i in range(len(rows)) if i != qi]
        ri = others[int(rng.integers(len(others)))]
        (qid, qvideo), (rid, rvideo) = rows[qi], rows[ri]
        qt, qb = self.data.keyframes(qid)
        q0 = int(rng.integers(max(1, len(qt) - cfg.query_clips + 1)))
        qt, qb = qt[q0:q0 + cfg.query_clips], qb[q0:q0 + cfg.query_clips]
        rt, _ = self.data.keyframes(rid)
        anchor = float(rt[int(rng.integers(len(rt)))])
        j = int(rng.integers(cfg.ref_clips))
        times = anchor + (np.arange(cfg.ref_clips) - j) * self.data.stride
        valid = np.array([self._valid(rvideo, t) for t in times])
        s = float(self.size)
        gt_all, gt_match = [], []
        for t, ok in zip(times, valid):
            found = self.data.boxes_at(rvideo, t) if ok else []
            gt_all.append(np.array([b for _, b in found], np.float32).reshape(-1, 4) * s)
            gt_match.append(np.array([b for lb, b in found if lb == lab], np.float32).reshape(-1, 4) * s)
        item = {
            "ref": np.stack([self._clip(rvideo, t, ok) for t, ok in zip(times, valid)]),
            "ref_valid": valid,
            "query": np.stack([self._clip(qvideo, t) for t in qt]),
            "query_boxes": (qb * s).astype(np.float32),
            "gt_all": gt_all, "gt_match": gt_match,
        }
        if self.config.cell == "flow":
            item["flows"] = self._flows(rvideo, times, valid)
        return item

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> List[Dict[str, Any]]:
        b = self.config.batch_size
        if b % world_size:
            raise ConfigError(f"batch_size {b} is not divisible by the {world_size} distributed processes")
        rng = np.random.default_rng([int(self.config.seed), int(step)])
        seeds = rng.integers(0, 2**63 - 1, size=b)
        per = b // world_size
        return [{**self._item(np.random.default_rng(int(s))), "seed": int(s)} for s in seeds[rank * per:(rank + 1) * per]]

    def _collate(self, items: List[Dict[str, Any]]):
        dev = self.ctx.device
        q = max(len(it["query"]) for it in items)
        qclips = np.zeros((len(items), q) + items[0]["query"].shape[1:], np.uint8)
        qboxes = np.zeros((len(items), q, 4), np.float32)
        qvalid = np.zeros((len(items), q), bool)
        for i, it in enumerate(items):
            n = len(it["query"])
            qclips[i, :n], qboxes[i, :n], qvalid[i, :n] = it["query"], it["query_boxes"], True
            qboxes[i, n:] = it["query_boxes"][-1]
        out = {
            "ref_clips": torch.from_numpy(np.stack([it["ref"] for it in items])).to(dev),
            "ref_valid": torch.from_numpy(np.stack([it["ref_valid"] for it in items])).to(dev),
            "query_clips": torch.from_numpy(qclips).to(dev),
            "query_boxes": torch.from_numpy(qboxes).to(dev),
            "query_valid": torch.from_numpy(qvalid).to(dev),
            "gt_all": [torch.from_numpy(g).to(dev) for it in items for g in it["gt_all"]],
            "gt_match": [torch.from_numpy(g).to(dev) for it in items for g in it["gt_match"]],
            "flows": None,
            "seeds": [it["seed"] for it in items] if all("seed" in it for it in items) else None,
        }
        if "flows" in items[0]:
            out["flows"] = torch.from_numpy(np.stack([it["flows"] for it in items])).to(dev)
        return out

    def loss(self, model, batch):
        """The four losses, each divided by its count over the whole (distributed) batch: RPN
        terms by the valid reference images, head terms by the RoIs. With ``W`` processes the
        returned loss is ``W`` times the rank's share, so that DDP's average of the ranks'
        gradients equals the gradient of one process holding the whole batch (the sampling
        streams are per item too: see ``STVRModel.forward``)."""
        sums = model(**self._collate(batch), reduction="sum")
        n_images, n_rois = self.ctx.global_sum(sums["n_images"], sums["n_rois"])
        w = float(self.ctx.world_size)
        rpn = (sums["rpn_cls"] + sums["rpn_box"]) * (w / max(1.0, n_images))
        head = (sums["cls"] + sums["box"]) * (w / max(1.0, n_rois))
        logs = {k: float(sums[k].detach()) / max(1.0, n_images if k.startswith("rpn") else n_rois)
                for k in ("rpn_cls", "rpn_box", "cls", "box")}  # this rank's part of each batch-wide mean
        return rpn + head, logs

    # ------------------------------------------------------------------ prediction
    def _ref_times(self, row) -> np.ndarray:
        kf = getattr(row, "ref_keyframes", None)
        if kf is not None and len(kf):
            return np.asarray(list(kf), dtype=float)
        return np.arange(float(row.ref_start), float(row.ref_end), self.data.stride)

    def pair_inputs(self, row) -> Dict[str, Any]:
        """Model inputs of one manifest pair (``row`` a pairs-table namedtuple)."""
        qt, qb = self.data.keyframes(row.query_tubelet_id)
        n = self.config.query_clips
        if len(qt) > n:
            pick = np.unique(np.round(np.linspace(0, len(qt) - 1, n)).astype(int))
            qt, qb = qt[pick], qb[pick]
        times = self._ref_times(row)
        valid = np.ones(len(times), bool)
        out = {
            "times": times,
            "ref": np.stack([self._clip(row.ref_video, t) for t in times]),
            "query": np.stack([self._clip(row.query_video, t) for t in qt]),
            "query_boxes": (qb * self.size).astype(np.float32),
            "flows": self._flows(row.ref_video, times, valid) if self.config.cell == "flow" else None,
        }
        return out

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        out: Dict[str, List[dict]] = {}
        dev = self.ctx.device
        s = float(self.size)
        for row in pairs.itertuples(index=False):
            x = self.pair_inputs(row)
            flows = None if x["flows"] is None else torch.from_numpy(x["flows"]).to(dev)
            dets = model.detect(torch.from_numpy(x["ref"]).to(dev), torch.from_numpy(x["query"]).to(dev),
                                torch.from_numpy(x["query_boxes"]).to(dev), flows)
            preds = []
            for t, (boxes, scores) in zip(x["times"], dets):
                for b, sc in zip(boxes.cpu().numpy().astype(float), scores.cpu().numpy().astype(float)):
                    box = np.clip(b / s, 0.0, 1.0)
                    preds.append({"time": float(t), "box": [round(float(v), 6) for v in box],
                                  "score": round(float(sc), 6)})
            preds.sort(key=lambda p: -p["score"])
            out[str(row.pair_id)] = preds
        return out
