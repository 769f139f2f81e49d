"""Registers the spatio-temporal baselines of the CVPR 2019 paper's Table 1 with relocbench.

``stvr-clip``, ``stvr-convlstm``, ``stvr-flow``, ``stvr-traj`` and ``stvr-warp`` are one
baseline class, :class:`STVR` (the model of :mod:`relocbench_baselines.stvr.model`), configured with a
different reference-propagation cell. The defaults are CPU-sized for ``synthetic-sprites``
(64x64 frames, a from-scratch ``tiny3d`` backbone, Adam, 4-clip reference crops); the
paper's training settings are in ``baselines/stvr/configs/paper.yaml``::

    relocbench run-baseline stvr-warp --dataset synthetic-sprites
    relocbench run-baseline stvr-warp --dataset ucf24 --features data/ucf24 \\
        --config baselines/stvr/configs/paper.yaml

Two recipes (``--recipe NAME`` or ``recipe: NAME`` in a config file; :data:`STVR_RECIPES`):
``compact`` (the default) is relocbench's CPU-sized design above; ``original`` is the model as
the authors built it (:mod:`relocbench_baselines.stvr.original_model`: Inception-I3D to
``Mixed_4c``, their ConvLSTM / warp LSTM cells, their RPN, ``block4`` second stage with a 3-way
softmax, and their training schedule), for all five. ``stvr-flow`` and ``stvr-traj`` have no
counterpart in the authors' code: under ``original`` their cell is the authors' cell with this
project's flow / trajectory alignment of ``h`` and ``c`` (``cells.OriginalFlowLSTM``,
``cells.OriginalTrajLSTM``), a documented extension::

    relocbench run-baseline stvr-warp --recipe original --dataset ava --frames data/ava \\
        --weights rgb_imagenet.pt       # Inception-I3D, pytorch-i3d layout; without: random
    relocbench run-baseline stvr-warp --recipe original --dataset synthetic-sprites \\
        --config baselines/stvr/configs/original-tiny.yaml --steps 2   # tiny, on a CPU

Training batches: for each item, a training label, a query tubelet of it and a reference
tubelet of the same label (in another video when there is one); the query is up to
``query_clips`` consecutive keyframes of its tubelet (a random run), the reference a crop of
``ref_clips`` keyframes around a random keyframe of the reference tubelet, padded with zero
clips outside the video (the paper's "randomly cropping or padding zeros"). Everything is
drawn from ``numpy.random.default_rng([seed, step])``, so a resumed run sees the same batches.

Clip sampling (``clip_sampling``): ``keyframe`` (the compact recipe's) cuts one 8-frame clip
centred on each keyframe; ``second`` (the original recipe's) cuts the three contiguous 8-frame
clips of the second that starts at each keyframe, at 24 fps (STVR split_videos.py:33-36; frames
``[8j, 8j + 8)`` after the keyframe for clip ``j``), each labelled with that keyframe's boxes
(input_func.py:258-272). ``ref_clips`` and ``query_clips`` then count clips, three per
keyframe (the recipe's 6 and 30: 2 s references, queries up to 10 s; input_func.py:25,
62-64); the predictions name their clip (``"clip": j``) and the run is scored by the
original's per-clip rule (``clip_scoring: original`` in its metrics; ``relocbench evaluate
--clip-scoring original`` scores the file the same way). On a dataset with keyframes closer
than a second (synthetic-sprites: every 8 frames) consecutive keyframes' clips overlap.

Optical flow of the flow cell (``stvr-flow``, both recipes): one flow per reference clip,
between the centre frames of consecutive clips (:func:`~.cells.sequence_flows` at the feature
map's size; the first is zero): the keyframes with ``clip_sampling: keyframe``, each of the
three clips' centre frames with ``second``. A padding clip's frame is black. A horizontally
flipped reference has its flows computed from the flipped frames.
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

from relocbench.metrics.frame_ap import CLIPS_PER_KEYFRAME

from .model import STVRModel

__all__ = ["STVRConfig", "STVR", "PairData", "STVR_RECIPES", "original_milestones"]

#: Length of the original schedule that the run's steps are scaled to: lr 0.03 for 10k steps,
#: 0.003 to 20k, 0.0003 after (STVR data/faster_rcnn_resnet101_pets.config:89-100); 30k
#: steps makes three equal stages (the original set no end: STVR main.py:46, max_steps 1M).
ORIGINAL_SCHEDULE_STEPS = 30000
ORIGINAL_MILESTONES = (10000, 20000)


def original_milestones(steps: int) -> Tuple[int, ...]:
    """The original's learning-rate milestones for a run of ``steps``: 10k and 20k as they are
    from 30k steps on; below, scaled by ``steps / 30000`` (a third and two thirds of the run,
    at least step 1, without repeats)."""
    if steps >= ORIGINAL_SCHEDULE_STEPS:
        return ORIGINAL_MILESTONES
    out: List[int] = []
    for m in ORIGINAL_MILESTONES:
        v = max(1, int(round(m * steps / ORIGINAL_SCHEDULE_STEPS)))
        if not out or v > out[-1]:
            out.append(v)
    return tuple(out)


@dataclass
class STVRConfig(TrainConfig):
    """Training settings (CPU-sized defaults) and the model's hyperparameters.

    With ``recipe: original`` the model is :class:`~relocbench_baselines.stvr.original_model.
    OriginalSTVRModel`, built from ``cell``, ``backbone`` (``i3d`` or ``tiny3d``), ``weights``,
    ``width``, ``backbone_stride``, ``frame_size``, ``gate_channels``, ``rpn_depth``,
    ``attention_dim``, the ``block_*`` fields and ``links`` (the traj cell); its thresholds and
    counts are the original's constants, so the compact model's fields (``hidden_channels``,
    ``roi_size``, anchors, ``head_*``, proposal and detection counts, ``fusion``) do not apply
    to it. ``flow_method`` sets the flow cell's optical flow in both recipes.
    """

    steps: int = 600
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"
    eval_every: int = 150
    clip_norm: float = 10.0
    cell: str = "warp"  # none | convlstm | flow | traj | warp
    backbone: str = "tiny3d"  # tiny3d | s3d | r3d_18 | r2plus1d_18 | i3d (original recipe)
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
    recipe: str = "compact"  # compact | original (see STVR_RECIPES)
    weights: str = "none"  # original recipe, backbone i3d: none (random, marked so) or a state dict file
    gate_channels: int = 128  # original cells: width of the separable gate convolution
    rpn_depth: int = 512  # original RPN: 3x3 convolution depth
    block_depth: int = 2048  # original second stage (ResNet-v1 block4): output channels
    block_bottleneck: int = 512  # ... and bottleneck width
    block_units: int = 3
    flip: bool = False  # training: horizontal flips of query and reference, drawn independently
    lr_schedule: str = "milestones"  # milestones (lr_milestones as given) | original (scaled to steps)
    clip_sampling: str = "keyframe"  # keyframe (one clip centred on each) | second (3 clips of the second after it)

    parameter_constraints: ClassVar[Dict[str, Any]] = {
        "cell": Options("none", "convlstm", "flow", "traj", "warp"),
        "backbone": Options("tiny3d", "s3d", "r3d_18", "r2plus1d_18", "i3d"),
        "width": Int(ge=4), "backbone_stride": Options(8, 16), "pretrained": Bool(), "pretrained_path": Str(),
        "frame_size": Int(ge=1), "ref_clips": Int(ge=1), "query_clips": Int(ge=1), "hidden_channels": Int(ge=1),
        "kernel_size": Int(ge=1, odd=True), "links": Int(ge=1), "grid_size": Int(ge=1),
        "num_boundary_points": Int(ge=0), "interpolation_order": Int(ge=1), "roi_size": Int(ge=1),
        "anchor_scales": FloatSeq(gt=0, min_len=1), "anchor_ratios": FloatSeq(gt=0, min_len=1),
        "attention_dim": Int(ge=1), "head_channels": Int(ge=1), "head_dim": Int(ge=1),
        "fusion": Options("concat", "concat-product"), "train_proposals": Int(ge=1), "test_proposals": Int(ge=1),
        "detections": Int(ge=1), "flow_method": Options("farneback", "dis"),
        "recipe": Options("compact", "original"), "weights": Str(), "gate_channels": Int(ge=1),
        "rpn_depth": Int(ge=1), "block_depth": Int(ge=1), "block_bottleneck": Int(ge=1), "block_units": Int(ge=1),
        "flip": Bool(), "lr_schedule": Options("milestones", "original"),
        "clip_sampling": Options("keyframe", "second"),
    }

    def validate(self) -> None:
        """Checks across fields; ``lr_schedule: original`` sets ``lr_milestones`` from ``steps``
        (:func:`original_milestones`)."""
        from .original_model import ORIGINAL_BACKBONES

        if self.recipe == "original":
            if self.backbone not in ORIGINAL_BACKBONES:
                raise ConfigError(f"The 'backbone' parameter of the original recipe must be one of "
                                  f"{list(ORIGINAL_BACKBONES)}. Got {self.backbone!r} instead.")
            if self.pretrained or self.pretrained_path:
                raise ConfigError("The 'pretrained' and 'pretrained_path' parameters are the compact recipe's "
                                  "torchvision weights; the original recipe's I3D weights are 'weights' "
                                  "(--weights FILE)")
        else:
            if self.backbone == "i3d":
                raise ConfigError("The 'backbone' parameter i3d belongs to the original recipe (its input is "
                                  "scaled to [-1, 1]); add recipe: original, or pick "
                                  "tiny3d, s3d, r3d_18 or r2plus1d_18")
        if self.weights != "none" and not (self.recipe == "original" and self.backbone == "i3d"):
            raise ConfigError(f"The 'weights' parameter ({self.weights!r}) is the i3d backbone's state dict; "
                              "it needs recipe original and backbone i3d (other backbones: pretrained_path)")
        if self.clip_sampling == "second":
            k = CLIPS_PER_KEYFRAME
            for name in ("ref_clips", "query_clips"):
                if getattr(self, name) % k:
                    raise ConfigError(f"The '{name}' parameter must be a multiple of {k} with clip_sampling second "
                                      f"({k} clips per keyframe). Got {getattr(self, name)!r} instead.")
        if self.lr_schedule == "original":
            want = original_milestones(self.steps)
            if self.lr_milestones and tuple(self.lr_milestones) != want:
                raise ConfigError(f"lr_schedule original sets lr_milestones to {list(want)} for {self.steps} "
                                  f"steps. Got lr_milestones {list(self.lr_milestones)} too; drop one of them")
            self.lr_milestones = want


#: The recipes of the spatio-temporal zoo: config values set together by ``--recipe NAME``
#: (or ``recipe: NAME`` in a config file), under any value the config file or the options
#: give. ``compact`` is relocbench's design (the defaults); ``original`` the authors' model
#: and training, each value following the file and line named beside it (``config`` is
#: STVR data/faster_rcnn_resnet101_pets.config).
STVR_RECIPES: Dict[str, Dict[str, object]] = {
    "compact": {},
    "original": {
        "backbone": "i3d",            # ava_i3d_feature_extractor.py:119-123 (Mixed_4c)
        "frame_size": 320,            # config 10-15; STVR main.py:40
        "backbone_stride": 16,        # config 18
        "ref_clips": 6,               # input_func.py:25 (2 s) x 3 clips a second
        "query_clips": 30,            # input_func.py:62-64 (10 s) x 3 clips a second
        "gate_channels": 128,         # conv_lstm_cell.py:119-124
        "attention_dim": 128,         # ava_meta_arch.py:727-728
        "rpn_depth": 512,             # faster_rcnn.proto default, ava_meta_arch.py:957-963
        "block_depth": 2048,          # ava_i3d_feature_extractor.py:203-208
        "block_bottleneck": 512,
        "block_units": 3,
        "optimizer": "sgd",           # config 87-103: momentum optimizer
        "momentum": 0.9,
        "lr": 0.03,
        "lr_schedule": "original",    # config 90-100, scaled to the run's steps
        "lr_gamma": 0.1,
        "weight_decay": 0.0,          # config 30-33, 55-58: l2 weight 0
        "clip_norm": 10.0,            # config 106
        "batch_size": 8,              # STVR README: main.py --batch_size 8
        "flip": True,                 # config 115-118; input_func.py:283-300
        "steps": 30000,
        "eval_every": 5000,           # STVR main.py:50: a checkpoint every 5000 steps
        "clip_sampling": "second",    # split_videos.py:33-36; input_func.py:258-272; compute_ap.py:69-77
    },
}


def _original_kwargs(cfg: STVRConfig) -> Dict[str, Any]:
    keys = ("cell", "backbone", "weights", "width", "backbone_stride", "frame_size", "gate_channels", "rpn_depth",
            "attention_dim", "block_depth", "block_bottleneck", "block_units", "links")
    return {k: getattr(cfg, k) for k in keys}


def _model_kwargs(cfg: STVRConfig) -> Dict[str, Any]:
    keys = ("cell", "backbone", "width", "backbone_stride", "pretrained", "pretrained_path", "frame_size",
            "hidden_channels", "kernel_size", "links", "grid_size", "num_boundary_points", "interpolation_order",
            "roi_size", "anchor_scales", "anchor_ratios", "attention_dim", "head_channels", "head_dim", "fusion",
            "train_proposals", "test_proposals", "detections")
    return {k: getattr(cfg, k) for k in keys}


def _flip_boxes(boxes: np.ndarray, size: float) -> np.ndarray:
    """``xyxy`` pixel boxes of a ``size``-wide frame after a horizontal flip."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = size - boxes[:, 2], size - boxes[:, 0]
    return out


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
    ConvLSTM, stvr-traj TrajLSTM (5 links), stvr-warp warp LSTM; each in both recipes
    (``original``: the authors' cells, and for flow and traj the authors' cell with this
    project's alignment).
    """

    task = "spatiotemporal"
    Config = STVRConfig
    trainable = True
    recipes: ClassVar[Dict[str, Dict[str, object]]] = STVR_RECIPES

    @classmethod
    def create_model(cls, config):
        if config.recipe == "original":
            from .original_model import OriginalSTVRModel

            return OriginalSTVRModel(**_original_kwargs(config))
        return STVRModel(**_model_kwargs(config))

    # ------------------------------------------------------------------ data
    def prepare(self, model) -> None:
        ctx = self.ctx
        self.source = ctx.features
        self.data = PairData(ctx.manifest, ctx.extras.get("keyframe_stride", 8.0))
        self.size = int(self.config.frame_size)
        self.map_size = self.size // (model.stride if model is not None else 8)
        self._train = None
        self.per_keyframe = CLIPS_PER_KEYFRAME if self.config.clip_sampling == "second" else 1
        # predictions of three clips per keyframe are scored by the original's per-clip rule
        ctx.extras["clip_scoring"] = "original" if self.per_keyframe > 1 else "keyframe"

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

    def _clip_times(self, t: float) -> np.ndarray:
        """Centre times (manifest units) of the clips cut for keyframe ``t``: ``t`` itself, or
        with ``clip_sampling: second`` the centres of its three 8-frame clips at 24 fps, frames
        ``[8j, 8j + 8)`` from the keyframe on (``original.second_clips``)."""
        if self.per_keyframe == 1:
            return np.array([float(t)])
        from .original import CLIP_FRAMES, FPS

        units_per_s = 1.0 / (self.source.seconds(1.0) - self.source.seconds(0.0))  # manifest time is linear
        offsets_s = (CLIP_FRAMES * np.arange(self.per_keyframe) + CLIP_FRAMES // 2) / FPS
        return float(t) + offsets_s * units_per_s

    def _keyframe_clips(self, video: str, times, valid=None) -> np.ndarray:
        """``(len(times) * per_keyframe, 8, size, size, 3)``: each keyframe's clips in order
        (zeros for a keyframe that is not ``valid``)."""
        valid = np.ones(len(times), bool) if valid is None else valid
        return np.stack([self._clip(video, c, ok) for t, ok in zip(times, valid) for c in self._clip_times(t)])

    def _flows(self, video: str, times, valid, flip: bool = False) -> np.ndarray:
        """``(len(times) * per_keyframe, 2, h, w)``: the flow cell's flows between the centre frames of
        consecutive reference clips (each keyframe's clips in order, a black frame for a keyframe that is
        not ``valid``), from the horizontally flipped frames when ``flip``."""
        from .cells import sequence_flows

        black = np.zeros((self.size, self.size, 3), np.uint8)
        frames = [self.source.frame(video, c, size=self.size) if ok else black
                  for t, ok in zip(times, valid) for c in self._clip_times(t)]
        if flip:
            frames = [f[:, ::-1] for f in frames]
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
        k = self.per_keyframe  # clips per keyframe: ref_clips and query_clips count clips
        n_query, n_ref = cfg.query_clips // k, cfg.ref_clips // k
        qt, qb = self.data.keyframes(qid)
        q0 = int(rng.integers(max(1, len(qt) - n_query + 1)))
        qt, qb = qt[q0:q0 + n_query], qb[q0:q0 + n_query]
        rt, _ = self.data.keyframes(rid)
        anchor = float(rt[int(rng.integers(len(rt)))])
        j = int(rng.integers(n_ref))
        times = anchor + (np.arange(n_ref) - j) * self.data.stride
        valid = np.array([self._valid(rvideo, t) for t in times])
        s = float(self.size)
        gt_all, gt_match, gt_matching = [], [], []
        for t, ok in zip(times, valid):
            found = self.data.boxes_at(rvideo, t) if ok else []
            for _ in range(k):  # each clip of the keyframe carries its boxes
                gt_all.append(np.array([b for _, b in found], np.float32).reshape(-1, 4) * s)
                gt_match.append(np.array([b for lb, b in found if lb == lab], np.float32).reshape(-1, 4) * s)
                gt_matching.append(np.array([lb == lab for lb, _ in found], bool))
        item = {
            "ref": self._keyframe_clips(rvideo, times, valid),
            "ref_valid": np.repeat(valid, k),
            "query": self._keyframe_clips(qvideo, qt),
            "query_boxes": np.repeat(qb * s, k, axis=0).astype(np.float32),
            "gt_all": gt_all, "gt_match": gt_match, "gt_matching": gt_matching,
        }
        flip_ref = False
        if cfg.flip:
            # the query and the reference each flipped with probability 1/2, drawn independently
            # (input_func.py:283-300: two random_horizontal_flip calls)
            flip_query, flip_ref = rng.random() < 0.5, rng.random() < 0.5
            if flip_query:
                item["query"] = item["query"][:, :, :, ::-1].copy()
                item["query_boxes"] = _flip_boxes(item["query_boxes"], s)
            if flip_ref:
                item["ref"] = item["ref"][:, :, :, ::-1].copy()
                item["gt_all"] = [_flip_boxes(g, s) for g in gt_all]
                item["gt_match"] = [_flip_boxes(g, s) for g in gt_match]
        if self.config.cell == "flow":
            item["flows"] = self._flows(rvideo, times, valid, flip=flip_ref)
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
        if self.config.recipe == "original":
            out["gt_matching"] = [torch.from_numpy(g).to(dev) for it in items for g in it["gt_matching"]]
        return out

    def loss(self, model, batch):
        """The four losses, each divided by its count over the whole (distributed) batch: RPN
        terms by the valid reference images, head terms by the RoIs. With ``W`` processes the
        returned loss is ``W`` times the rank's share, so that DDP's average of the ranks'
        gradients equals the gradient of one process holding the whole batch (the sampling
        streams are per item too: see ``STVRModel.forward``)."""
        sums = model(**self._collate(batch), reduction="sum")
        # the original recipe divides its second-stage sums by every reference image of the
        # batch (n_head, ava_meta_arch.py:1835-1838), the compact one by the RoIs
        head_key = "n_head" if "n_head" in sums else "n_rois"
        n_images, n_rois = self.ctx.global_sum(sums["n_images"], sums[head_key])
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
        k = self.per_keyframe
        qt, qb = self.data.keyframes(row.query_tubelet_id)
        n = self.config.query_clips // k
        if len(qt) > n:
            pick = np.unique(np.round(np.linspace(0, len(qt) - 1, n)).astype(int))
            qt, qb = qt[pick], qb[pick]
        times = self._ref_times(row)
        valid = np.ones(len(times), bool)
        out = {
            "times": np.repeat(times, k),  # the keyframe of each reference clip
            "clips": np.tile(np.arange(k), len(times)) if k > 1 else None,  # its clip index (second sampling)
            "ref": self._keyframe_clips(row.ref_video, times),
            "query": self._keyframe_clips(row.query_video, qt),
            "query_boxes": np.repeat(qb * self.size, k, axis=0).astype(np.float32),
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
            clips = x["clips"] if x["clips"] is not None else [None] * len(x["times"])
            for t, c, (boxes, scores) in zip(x["times"], clips, dets):
                clip = {} if c is None else {"clip": int(c)}
                for b, sc in zip(boxes.cpu().numpy().astype(float), scores.cpu().numpy().astype(float)):
                    box = np.clip(b / s, 0.0, 1.0)
                    preds.append({"time": float(t), "box": [round(float(v), 6) for v in box],
                                  "score": round(float(sc), 6), **clip})
            preds.sort(key=lambda p: -p["score"])
            out[str(row.pair_id)] = preds
        return out
