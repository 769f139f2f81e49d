"""Registers the temporal baselines (ECCV 2018, Tables 1 and 2) with relocbench's registry.

Importing this module (through the ``relocbench.baselines`` entry point) is what makes
``relocbench run-baseline NAME`` find them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional

import numpy as np

from relocbench.baseline import Baseline, TrainConfig
from relocbench.errors import ConfigError
from relocbench.params import Bool, Float, Int, Options
from relocbench.registry import register_baseline


class TemporalBaseline(Baseline):
    """Shared plumbing of the temporal baselines: features of a pair's query and reference."""

    task = "temporal"

    def features(self, video: str, start: int, end: int) -> np.ndarray:
        """A writable copy of steps ``[start, end)`` of a video's features."""
        return np.array(self.ctx.features.get(video)[start:end])

    def train_segments(self):
        """The training segments; with ``--skip-missing``, those whose video has features
        (the others are counted in the feature store's report)."""
        seg = self.ctx.manifest.table("segments", "train")
        if self.ctx.extras.get("skip_missing"):
            store = self.ctx.features
            keep = [v in store for v in seg["video"]]
            for v in seg["video"][[not k for k in keep]]:
                store.report.add("training segments without features (skipped)", v)
            seg = seg[keep].reset_index(drop=True)
        return seg


#: Every temporal baseline writes its ``top_k`` best-ranked segments per pair (best first),
#: so that recall@k and the pooled AP are measured on real rankings.
TOP_K = 10
_TOP_K_CONSTRAINT = {"top_k": Int(ge=1)}


def chance_spans(seed: int, pair_id: str, window_steps: int, k: int) -> List[tuple]:
    """``k`` distinct spans ``(start, end)`` of a window drawn uniformly at random, in draw order.

    Every span ``[s, e)`` of the window is equally likely at each draw (two distinct boundaries
    out of ``w + 1``); a span drawn again is drawn over, so the list is a uniformly random
    ordering of distinct spans (all ``w (w + 1) / 2`` of them when ``k`` is larger). The stream
    is seeded by ``seed`` and the pair id; the first span is the first draw.
    """
    w = int(window_steps)
    rng = np.random.default_rng([int(seed), zlib.crc32(str(pair_id).encode())])
    n = min(int(k), w * (w + 1) // 2)
    out: List[tuple] = []
    seen = set()
    while len(out) < n:
        a = int(rng.integers(0, w + 1))
        b = int(rng.integers(0, w))
        b += b >= a
        span = (min(a, b), max(a, b))
        if span not in seen:
            seen.add(span)
            out.append(span)
    return out


@dataclass
class ChanceConfig(TrainConfig):
    steps: int = 0
    top_k: int = TOP_K

    parameter_constraints: ClassVar[dict] = dict(_TOP_K_CONSTRAINT)


@register_baseline("chance")
class Chance(TemporalBaseline):
    """A span drawn uniformly at random among all spans of the reference window (seeded).

    Writes the ``top_k`` first distinct draws (:func:`chance_spans`), scored
    ``1, 1 - 1/top_k, ...`` in draw order; the first is the single draw.
    """

    Config = ChanceConfig

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        out = {}
        k = int(self.config.top_k)
        for r in pairs.itertuples(index=False):
            spans = chance_spans(self.config.seed, str(r.pair_id), int(r.ref_end_step - r.ref_start_step), k)
            out[str(r.pair_id)] = [{"segment": [s, e], "score": 1.0 - i / k} for i, (s, e) in enumerate(spans)]
        return out


@dataclass
class FrameDPConfig(TrainConfig):
    steps: int = 0
    top_k: int = TOP_K

    parameter_constraints: ClassVar[dict] = dict(_TOP_K_CONSTRAINT)


@register_baseline("frame-dp")
class FrameDP(TemporalBaseline):
    """Frame-level baseline: the smallest-mean-distance monotone path, solved exactly (no training).

    Writes the ``top_k`` best distinct spans (``relocbench.temporal.framedp.k_best_spans``),
    each scored by minus the mean distance of its best path.
    """

    Config = FrameDPConfig

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        from relocbench.temporal.framedp import frame_level_top_k

        out = {}
        for r in pairs.itertuples(index=False):
            q = self.features(r.query_video, int(r.query_start_step), int(r.query_end_step))
            x = self.features(r.ref_video, int(r.ref_start_step), int(r.ref_end_step))
            out[str(r.pair_id)] = [{"segment": [res.start_step, res.end_step], "score": float(-res.mean_distance)}
                                   for res in frame_level_top_k(q, x, int(self.config.top_k))]
        return out


# --------------------------------------------------------------------------- trainable baselines


@dataclass
class PairTrainConfig(TrainConfig):
    """CPU-sized defaults shared by the trainable temporal baselines (minutes on a laptop CPU)."""

    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    eval_every: int = 100
    crop_prob: float = 0.9
    feature_dim: int = 500
    top_k: int = TOP_K

    parameter_constraints: ClassVar[dict] = {"crop_prob": Float(ge=0, le=1), "feature_dim": Int(ge=1),
                                             **_TOP_K_CONSTRAINT}


def _model_config(model_config_cls, config):
    """The model's own config dataclass, filled from the fields of the run config."""
    from dataclasses import fields

    return model_config_cls(**{f.name: getattr(config, f.name) for f in fields(model_config_cls)
                               if hasattr(config, f.name)})


class _PairTrained(TemporalBaseline):
    """Trainable temporal baselines draw step-indexed batches from the training pair sampler."""

    trainable = True

    def prepare(self, model) -> None:
        from relocbench.temporal.data import TrainBatches

        self._batches = TrainBatches(self.train_segments(), self.ctx.features, batch_size=self.config.batch_size,
                                     seed=self.config.seed, crop_prob=self.config.crop_prob)

    def batch(self, step, rank=0, world_size=1):
        return self._batches(step, rank, world_size)


@dataclass
class CGBMRunConfig(PairTrainConfig):
    """Paper model settings (ECCV 2018 Sec. 5.2; reference-algorithms.md Sec. 2) with a CPU-sized
    budget: batch 32 and 500 steps (minutes on a laptop CPU). The paper's batch of 128 and a
    1,000-step budget: ``--config baselines/temporal/configs/paper.yaml``.

    ``recipe`` names a set of values applied together (:data:`CGBM_RECIPES`): ``paper``
    (these defaults) or ``original``, the released code's loss pooling (``loss_pooling``),
    initialisation (``init``), decoding (``decode_form``), training stream
    (``input_pipeline``, ``bucket_span``; :mod:`.original_pipeline`), budget and checkpoint
    selection rule (``val_iou_rule``)."""

    clip_norm: float = 5.0
    hidden: int = 128
    rank: int = 8
    gating: bool = True
    bilinear: bool = True
    keep_aggregation: float = 0.6
    keep_matching: float = 0.8
    forget_bias: float = 1.0
    loss_weight: float = 10.0
    decode_form: str = "paper"
    max_span: int = 64
    eval_batch_size: int = 128
    recipe: str = "paper"
    loss_pooling: str = "pair"
    init: str = "pytorch"
    input_pipeline: str = "relocbench"
    bucket_span: int = 30
    val_iou_rule: str = "inclusive"

    parameter_constraints: ClassVar[dict] = {
        "hidden": Int(ge=1), "rank": Int(ge=1), "gating": Bool(), "bilinear": Bool(),
        "keep_aggregation": Float(gt=0, le=1), "keep_matching": Float(gt=0, le=1), "forget_bias": Float(),
        "loss_weight": Float(gt=0), "decode_form": Options("paper", "original"), "max_span": Int(ge=1),
        "eval_batch_size": Int(ge=1), "recipe": Options("paper", "original"), "loss_pooling": Options("pair", "step"),
        "init": Options("pytorch", "tensorflow"), "input_pipeline": Options("relocbench", "original"),
        "bucket_span": Int(ge=1), "val_iou_rule": Options("inclusive", "strict"),
    }


#: The recipes of the cgbm family: config values set together by ``--recipe NAME`` (or
#: ``recipe: NAME`` in a config file), under any value the config file or the options give.
#: ``paper`` is the paper's model and loss with relocbench's defaults; ``original`` is how the
#: released code (github.com/fengyang0317/video_reloc) trained and decoded, each value
#: following the line of that code named beside it.
CGBM_RECIPES: Dict[str, Dict[str, object]] = {
    "paper": {},
    "original": {
        "loss_pooling": "step",         # match.py 166-170: reduce_mean over every valid step of the batch
        "init": "tensorflow",           # match.py 66-93, match_cell_wrapper.py 43-95: TF 1.x initialisers
        "decode_form": "original",      # match.py 118-127: inside mean over s..e-1
        "input_pipeline": "original",   # input_functions.py 31-55, 82-104 (original_pipeline.py)
        "bucket_span": 30,              # match.py 39: FLAGS.bucket_span
        "batch_size": 128,              # match.py 41
        "steps": 1000,                  # match.py 43: max_steps
        "lr": 1e-3,                     # match.py 47, 193: Adam
        "optimizer": "adam",
        "weight_decay": 0.0,            # match.py 45, 173
        "clip_norm": 5.0,               # match.py 49, 177: global norm
        "eval_every": 100,              # match.py 53, 253-254: a checkpoint (and a validation) every 100 steps
        "val_iou_rule": "strict",       # utils.py 29-34: IoU/mean counts tIoU > t, t = 0.5 ... 0.9
        "crop_prob": 0.9,               # input_functions.py 49-51
        "keep_aggregation": 0.6,        # match.py 26, 70-71
        "keep_matching": 0.8,           # match.py 86: keep_prob + 0.2
        "hidden": 128,                  # match.py 28, 30: mem_dim = att_dim = 128
        "rank": 8,                      # match_cell_wrapper.py 79: k = 8
        "loss_weight": 10.0,            # match.py 163-164: weight 10 on start and end steps
        "forget_bias": 1.0,             # BasicLSTMCell's default, added at run time
        "max_span": 64,                 # match.py 110-111: spans under 1,024 frames
    },
}


@register_baseline("cgbm-bilinear", gating=False, bilinear=True,
                   description="Table 2 ablation of cgbm: factorised bilinear matching, no cross gating.")
@register_baseline("cgbm-gating", gating=True, bilinear=False,
                   description="Table 2 ablation of cgbm: cross gating, concatenation instead of bilinear matching.")
@register_baseline("cgbm-base", gating=False, bilinear=False,
                   description="Table 2 ablation of cgbm: no cross gating, concatenation instead of bilinear "
                               "matching.")
@register_baseline("cgbm", description="Cross gated bilinear matching (ECCV 2018), the full model: cross gating "
                                       "and factorised bilinear matching.")
class CGBM(_PairTrained):
    """Cross gated bilinear matching (ECCV 2018); variants switch cross gating and bilinear matching."""

    Config = CGBMRunConfig
    recipes: ClassVar[Dict[str, Dict[str, object]]] = CGBM_RECIPES
    # Under the passive OpenMP policy a second thread does not pay here: measured on 2026-12-07
    # on an idle 2-core CPU (benchmarks/bench_train.py --only-recipes, OMP_WAIT_POLICY=PASSIVE),
    # median step 307 ms on one thread against 359 ms on two at batch 32, 869 against 864 ms at
    # batch 128; one thread also leaves the other core to whatever else runs.
    cpu_threads: ClassVar[Optional[int]] = 1

    def prepare(self, model) -> None:
        if self.config.input_pipeline == "relocbench":
            super().prepare(model)
            return
        from .original_pipeline import OriginalTrainStream

        self._batches = OriginalTrainStream(self.train_segments(), self.ctx.features,
                                            batch_size=self.config.batch_size, seed=self.config.seed,
                                            crop_prob=self.config.crop_prob, bucket_span=self.config.bucket_span)

    @classmethod
    def create_model(cls, config):
        from .cgbm import CGBMConfig, CrossGatedBilinearMatching

        return CrossGatedBilinearMatching(_model_config(CGBMConfig, config))

    def validation_score(self, pairs, results) -> float:
        """The validation Average the run keeps its best checkpoint by, with the config's tIoU
        rule (``val_iou_rule``: ``>= t``, relocbench's, or ``> t``, the original code's)."""
        from relocbench.metrics.temporal import evaluate_temporal
        from relocbench.tasks import get_task

        doc = get_task(self.task).predictions_doc(self.ctx, "val", results)
        metrics = evaluate_temporal(pairs, doc, iou_rule=self.config.val_iou_rule,
                                    allow_missing=bool(self.ctx.extras.get("skip_missing")))
        return float(metrics["average"])

    def loss(self, model, batch):
        import torch

        from relocbench.temporal.labels import batch_labels

        from .cgbm import cgbm_loss

        t = batch.to_torch(self.ctx.device)
        logits = model(t["query"], t["query_len"], t["ref"], t["ref_len"])
        labels, weights, mask = batch_labels(batch.ref_len, batch.gt_start, batch.gt_end, max_len=logits.shape[1],
                                             cw=self.config.loss_weight)
        dev = self.ctx.device
        pooling = self.config.loss_pooling
        loss = cgbm_loss(logits, torch.from_numpy(labels).to(dev), torch.from_numpy(weights).to(dev),
                         torch.from_numpy(mask).to(dev).to(logits.dtype), pooling=pooling)
        if pooling == "step" and self.ctx.world_size > 1:
            # the mean over the valid steps of the global batch: DDP averages the ranks'
            # gradients, so each rank's share is rescaled by its steps over the mean rank's
            local = float(mask.sum())
            total, = self.ctx.global_sum(local)
            loss = loss * (local * self.ctx.world_size / max(total, 1.0))
        return loss, {}

    def predict(self, model, pairs):
        from relocbench.temporal.data import iterate_pairs

        out = {}
        for batch in iterate_pairs(pairs, self.ctx.features, self.config.eval_batch_size):
            t = batch.to_torch(self.ctx.device)
            ranked = model.predict_top_k(t["query"], t["query_len"], t["ref"], t["ref_len"],
                                         top_k=self.config.top_k, max_span=self.config.max_span,
                                         form=self.config.decode_form)
            for pid, spans in zip(batch.pair_ids, ranked):
                out[pid] = [{"segment": [int(s), int(e)], "score": float(sc)}
                            for s, e, sc in zip(spans.start_step, spans.end_step, spans.score)]
        return out


@dataclass
class VideoTripletRunConfig(PairTrainConfig):
    """Its triplet loss learns from one (anchor, positive, negative) triple per pair, and
    learns slowly: at 500 steps of batch 32 the validation Average is still climbing steeply
    (9 %), at 2,000 it levels off (23 %). A step costs a fraction of a matching model's, so
    2,000 steps take 5 minutes with two CPU threads (9 with one)."""

    steps: int = 2000
    hidden: int = 128
    margin: float = 0.2
    forget_bias: float = 1.0
    max_span: int = 64
    positive_tiou: float = 0.8
    negative_tiou: float = 0.2

    parameter_constraints: ClassVar[dict] = {
        "hidden": Int(ge=1), "margin": Float(gt=0), "forget_bias": Float(), "max_span": Int(ge=1),
        "positive_tiou": Float(gt=0, le=1), "negative_tiou": Float(ge=0, lt=1),
    }

    def validate(self) -> None:
        super().validate()
        if not self.negative_tiou < self.positive_tiou:
            raise ConfigError(f"The 'negative_tiou' parameter of {type(self).__name__} must be below "
                              f"'positive_tiou' ({self.positive_tiou!r}). Got {self.negative_tiou!r} instead.")


@register_baseline("video-triplet")
class VideoTriplet(_PairTrained):
    """Video-level baseline: LSTM segment embeddings, triplet loss, exhaustive span search."""

    Config = VideoTripletRunConfig

    @classmethod
    def create_model(cls, config):
        from .video_triplet import VideoLSTMEncoder, VideoTripletConfig

        return VideoLSTMEncoder(_model_config(VideoTripletConfig, config))

    def batch(self, step, rank=0, world_size=1):
        from .video_triplet import sample_triplet_spans

        rows = self._batches.rows(step, rank, world_size)
        rng = np.random.default_rng([self.config.seed, step, rank, 0x7819])
        store, q, p, n = self.ctx.features, [], [], []
        for r in rows.itertuples(index=False):
            w = int(r.ref_end_step - r.ref_start_step)
            pos, neg = sample_triplet_spans(rng, w, int(r.gt_start_step), int(r.gt_end_step),
                                            max_span=self.config.max_span, positive_tiou=self.config.positive_tiou,
                                            negative_tiou=self.config.negative_tiou)
            if pos is None or neg is None:
                continue  # a window with no negative span (the segment fills it): no triplet
            ref = store.get(r.ref_video)[int(r.ref_start_step):int(r.ref_end_step)]
            q.append(store.get(r.query_video)[int(r.query_start_step):int(r.query_end_step)])
            p.append(ref[pos[0]:pos[1]])
            n.append(ref[neg[0]:neg[1]])
        return [_pad(x) for x in (q, p, n)]

    def loss(self, model, batch):
        import torch

        from .video_triplet import triplet_loss

        dev = self.ctx.device
        (q, lq), (p, lp), (n, ln) = [(torch.from_numpy(x).to(dev), torch.from_numpy(lens).to(dev)) for x, lens in batch]
        if q.shape[0] == 0:
            return q.sum() * 0.0, {"triplets": 0.0}
        loss = triplet_loss(model(q, lq), model(p, lp), model(n, ln), self.config.margin)
        return loss, {"triplets": float(q.shape[0])}

    def predict(self, model, pairs):
        import torch

        from .video_triplet import search_spans

        out = {}
        dev = self.ctx.device
        for r in pairs.itertuples(index=False):
            q = torch.from_numpy(self.features(r.query_video, int(r.query_start_step), int(r.query_end_step))).to(dev)
            x = torch.from_numpy(self.features(r.ref_video, int(r.ref_start_step), int(r.ref_end_step))).to(dev)
            found = search_spans(model, q, x, self.config.max_span, top_k=self.config.top_k)
            out[str(r.pair_id)] = [{"segment": [res.start_step, res.end_step], "score": -res.distance}
                                   for res in found]
        return out


def _pad(arrays):
    lens = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    dim = arrays[0].shape[1] if arrays else 1
    out = np.zeros((len(arrays), max(int(lens.max(initial=1)), 1), dim), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out, lens


@dataclass
class SSTRunConfig(PairTrainConfig):
    hidden: int = 512
    layers: int = 2
    anchors: int = 64
    dropout: float = 0.2
    window: int = 128
    positive_tiou: float = 0.5
    nms_tiou: float = 0.7

    parameter_constraints: ClassVar[dict] = {
        "hidden": Int(ge=1), "layers": Int(ge=1), "anchors": Int(ge=1), "dropout": Float(ge=0, lt=1),
        "window": Int(ge=1), "positive_tiou": Float(gt=0, le=1), "nms_tiou": Float(gt=0, le=1),
    }


@register_baseline("sst")
class SST(_PairTrained):
    """SST action proposals (Buch et al. 2017) trained on the training split; ignores the query.

    Writes its ``top_k`` best proposals after NMS (``relocbench_baselines.temporal.proposals``
    turns a run's into an ActivityNet proposals file).
    """

    Config = SSTRunConfig

    @classmethod
    def create_model(cls, config):
        from .sst import SSTConfig, SSTModel

        return SSTModel(_model_config(SSTConfig, config))

    def prepare(self, model) -> None:
        from relocbench.temporal.sst import anchor_positive_rate, batch_anchor_labels

        super().prepare(model)
        # per-anchor positive rates w_k over one epoch of training windows (the loss weights)
        rows = self._batches.sampler.epoch(0)
        lens, gs, ge = self._windows(rows, np.random.default_rng([self.config.seed, 0x557]))[1:]
        labels, mask = batch_anchor_labels(lens + 1, gs, ge, self.config.anchors, threshold=self.config.positive_tiou)
        self._positive_rate = anchor_positive_rate(labels, mask)

    def _windows(self, rows, rng):
        """Training windows of at most ``window`` steps holding the segment: (starts, lengths, gt s, gt e)."""
        w = (rows["ref_end_step"] - rows["ref_start_step"]).to_numpy()
        gs, ge = rows["gt_start_step"].to_numpy(), rows["gt_end_step"].to_numpy()
        n = np.minimum(w, self.config.window)
        lo, hi = np.maximum(0, ge - n), np.minimum(gs, w - n)
        off = lo + np.floor(rng.random(len(rows)) * (hi - lo + 1)).astype(np.int64)
        return off, n, gs - off, ge - off

    def batch(self, step, rank=0, world_size=1):
        rows = self._batches.rows(step, rank, world_size)
        off, n, gs, ge = self._windows(rows, np.random.default_rng([self.config.seed, step, rank, 0x557]))
        store = self.ctx.features
        xs = [store.get(r.ref_video)[int(r.ref_start_step) + o:int(r.ref_start_step) + o + m]
              for r, o, m in zip(rows.itertuples(index=False), off, n)]
        x, lens = _pad(xs)
        return x, lens, gs, ge

    def loss(self, model, batch):
        import torch

        from relocbench.temporal.sst import batch_anchor_labels

        from .sst import sst_loss

        x, lens, gs, ge = batch
        dev = self.ctx.device
        logits = model(torch.from_numpy(x).to(dev))
        labels, mask = batch_anchor_labels(lens + 1, gs, ge, self.config.anchors, max_outputs=logits.shape[1],
                                           threshold=self.config.positive_tiou)
        loss = sst_loss(logits, torch.from_numpy(labels).to(dev), torch.from_numpy(mask).to(dev),
                        torch.from_numpy(self._positive_rate).to(dev))
        return loss, {}

    def predict(self, model, pairs):
        import torch

        out = {}
        dev = self.ctx.device
        for r in pairs.itertuples(index=False):
            x = torch.from_numpy(self.features(r.ref_video, int(r.ref_start_step), int(r.ref_end_step))).to(dev)
            prop = model.predict(x[None], torch.tensor([x.shape[0]]), top_k=self.config.top_k)[0]
            out[str(r.pair_id)] = [{"segment": [int(s), int(e)], "score": float(sc)}
                                   for s, e, sc in zip(prop.start_step, prop.end_step, prop.score)]
        return out
