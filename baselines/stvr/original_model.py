"""The spatio-temporal model as the authors built it: the heads of the ``original`` recipe.

Everything here follows the authors' released code, cited by file and line (read, not
copied): ``ava_meta_arch.py`` is github.com/fengyang0317/tf_models, branch warp_c (head
ee24960d), ``research/object_detection/meta_architectures/ava_meta_arch.py``;
``ava_i3d_feature_extractor.py``, ``target_assigner.py``, ``argmax_matcher.py`` and
``losses.py`` are files of the same branch; ``config`` is
github.com/fengyang0317/STVR ``data/faster_rcnn_resnet101_pets.config``, ``compute_ap.py``
and ``input_func.py`` the files of that repository.

=====================  ==========================================================================
part                   the original, as built here
=====================  ==========================================================================
backbone               Inception-I3D to ``Mixed_4c``, frozen batch norm, input in ``[-1, 1]``
                       (:mod:`.i3d`; ``input_func.py:223``), time folded into channels; a tiny
                       ``tiny3d`` may stand in for CPU tests (``backbone="tiny3d"``)
cell                   ``create_cell(cell, recipe="original")`` over the reference clips
                       (``ava_meta_arch.py:941-949``); the query clips skip it (lines 578-581).
                       ``flow`` and ``traj`` are the authors' cell with this project's
                       alignment (no counterpart in the authors' code); ``flow`` is given
                       the optical flow between consecutive reference clips
pooling                ``crop_and_resize`` to 14x14, 2x2 max pool stride 2 -> 7x7 (config
                       lines 46-48; ``ava_meta_arch.py:1489-1497``): :func:`crop_and_pool`
RPN                    3x3 conv of depth 512 + ReLU6 (``ava_meta_arch.py:955-963``; proto
                       default depth 512), 1x1 convolutions to 2 objectness logits (softmax)
                       and 4 deltas per anchor (lines 346-354: ``num_classes=1``,
                       ``kernel_size=1``); weights truncated normal 0.01 (config 35-39)
anchors                :func:`.original.rpn_anchors`; pruned to the image when training, clipped
                       at inference (``ava_meta_arch.py:586-600``)
RPN targets            IoU >= 0.7 positive, < 0.3 negative, between ignored, each ground-truth
                       box forces its best anchor (``target_assigner.py:384-391``):
                       :func:`rpn_targets`; 256 anchors sampled, at most half positive
                       (proto defaults; ``ava_meta_arch.py:1718-1729``)
box coder              Faster R-CNN deltas scaled (10, 10, 5, 5) in both stages
                       (``target_assigner.py:390-391, 399-400``)
proposals              softmax objectness, NMS 0.7, 32 kept (config 41-43;
                       ``ava_meta_arch.py:1206-1226``), no gradient (line 1228)
matching               attention of each RoI over the query clips: ``tanh(fc_query(q) +
                       fc_ref(r))`` -> ``fc_g`` -> softmax, 128 wide, on the spatial means; the
                       weighted 7x7 query map is concatenated to the RoI's (lines 715-745)
second stage           ResNet-v1 ``block4``: 3 bottleneck units to 2048 / 512, stride 1, batch
                       norm in inference mode with trainable scale and offset
                       (``ava_i3d_feature_extractor.py:181-212``): :class:`ResNetV1Block`;
                       spatial mean, fully connected to 3 logits (background, another actor,
                       the matching actor) and to one box per class (config 49-69: the Mask
                       R-CNN box predictor, Xavier-uniform weights)
RoI targets            ``roi_labels`` rule (IoU >= 0.5 with any actor; ``target_assigner.py:
                       393-400``): :func:`head_targets`; 16 RoIs per image, at most 25 %
                       positive (config 79; proto default 0.25), no ground-truth box added
                       (``ava_meta_arch.py:1227-1237``)
losses                 RPN: 2-way softmax cross-entropy and smooth-L1 (delta 1), each summed
                       over the sampled anchors and divided by their count, averaged over the
                       valid reference images, localisation weight 2.0 (config 44-45;
                       ``ava_meta_arch.py:1731-1757``). Second stage: 3-way softmax
                       cross-entropy and smooth-L1 on the box of the RoI's class, each image's
                       sum divided by its RoI count *and by the number of images in the batch*
                       (padding included), summed over the valid images, localisation weight 2.0
                       (config 80-81; ``ava_meta_arch.py:1835-1916``)
inference              softmax, per-class boxes clipped to the image, per-class NMS 0.6 with 15
                       per class, 30 in all (config 70-78); only the "matching actor" class is
                       kept (``compute_ap.py:78-82``)
=====================  ==========================================================================

Boxes are ``xyxy`` in pixels of the ``frame_size`` square network input.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, nms, roi_align

from relocbench.errors import ConfigError

from .cells import create_cell
from .model import BoxCoder, STVRModel, Tiny3D, _image_generator, _sample
from .original import (
    ANCHOR_BASE_SIZE,
    BACKGROUND,
    IMAGE_SIZE,
    MATCHING_ACTOR,
    OTHER_ACTOR,
    anchors_inside,
    rpn_anchors,
)


#: ``weights.note`` of a run whose backbone had no weights file: what the run's numbers rest on.
WEIGHTS_NOTE_SCRATCH = {
    "i3d": ("no pretrained weights: Inception-I3D from random initialisation, trained in the run "
            "(the authors start from the Kinetics rgb_imagenet weights)"),
    "tiny3d": "no pretrained weights: the tiny3d backbone from random initialisation, trained in the run",
}

__all__ = [
    "WEIGHTS_NOTE_SCRATCH",
    "BOX_CODER_WEIGHTS",
    "CROP_SIZE",
    "RPN_POSITIVE_IOU",
    "RPN_NEGATIVE_IOU",
    "RPN_BATCH",
    "RPN_POSITIVE_FRACTION",
    "RPN_NMS_IOU",
    "PROPOSALS",
    "HEAD_BATCH",
    "HEAD_POSITIVE_FRACTION",
    "HEAD_POSITIVE_IOU",
    "LOCALIZATION_WEIGHT",
    "DETECTION_NMS_IOU",
    "DETECTIONS_PER_CLASS",
    "DETECTIONS_TOTAL",
    "ORIGINAL_BACKBONES",
    "ORIGINAL_CELLS",
    "normalize_clips_signed",
    "tf_crop_boxes",
    "crop_and_pool",
    "rpn_targets",
    "head_targets",
    "rpn_loss",
    "head_loss",
    "multiclass_nms",
    "ResNetV1Block",
    "OriginalSTVRModel",
]

#: Box coder scale factors ``(x, y, w, h)`` of both stages (target_assigner.py:390-391,
#: 399-400; TensorFlow's order is y, x, h, w, the same numbers).
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
#: ``initial_crop_size`` (config line 46); the 2x2 max pool halves it (lines 47-48).
CROP_SIZE = 14
RPN_POSITIVE_IOU, RPN_NEGATIVE_IOU = 0.7, 0.3
RPN_BATCH, RPN_POSITIVE_FRACTION = 256, 0.5
RPN_NMS_IOU, PROPOSALS = 0.7, 32
HEAD_BATCH, HEAD_POSITIVE_FRACTION, HEAD_POSITIVE_IOU = 16, 0.25, 0.5
#: Localisation loss weight of both stages (config lines 44 and 80); classification 1.0.
LOCALIZATION_WEIGHT = 2.0
DETECTION_NMS_IOU, DETECTIONS_PER_CLASS, DETECTIONS_TOTAL = 0.6, 15, 30
ORIGINAL_BACKBONES = ("i3d", "tiny3d")
#: Cells of the original recipe: the authors' ConvLSTM and warp LSTM, no cell (the clip model),
#: and the authors' cell with this project's flow or trajectory alignment (``flow``, ``traj``:
#: no counterpart in the authors' code; :class:`~.cells.OriginalFlowLSTM`,
#: :class:`~.cells.OriginalTrajLSTM`).
ORIGINAL_CELLS = ("none", "convlstm", "flow", "traj", "warp")


def normalize_clips_signed(clips: torch.Tensor) -> torch.Tensor:
    """``(N, T, H, W, 3)`` uint8 -> ``(N, 3, T, H, W)`` float in ``[-1, 1]``
    (``2 * rgb / 255 - 1``, input_func.py:222-223)."""
    return clips.permute(0, 4, 1, 2, 3).float().mul_(2.0 / 255.0).sub_(1.0)


# --------------------------------------------------------------------------- pooling
def tf_crop_boxes(boxes: torch.Tensor, *, image_size: float, map_height: int, map_width: int,
                  crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Boxes for :func:`torchvision.ops.roi_align` (``aligned=True``, ``sampling_ratio=1``,
    ``spatial_scale=1``) that sample where TensorFlow's ``crop_and_resize`` samples.

    The original normalises a pixel box by the input size (``to_normalized_coordinates``)
    and ``crop_and_resize`` reads the bilinear value at ``y1n * (H - 1) + i * (y2n - y1n) *
    (H - 1) / (crop - 1)``, ``i = 0 .. crop - 1`` (the box's edges are the first and last
    samples, the map's corners are the pixel centres 0 and ``H - 1``). ``roi_align`` with one
    sample per bin reads at ``s + (i + 0.5) * (e - s) / crop - 0.5`` (``aligned=True``
    subtracts the half pixel, and, unlike ``aligned=False``, does not widen boxes under one
    pixel). The two agree for every ``i`` when ``s = a - d / 2 + 0.5`` and ``e = b + d / 2 +
    0.5`` with ``a, b`` the TensorFlow end points and ``d = (b - a) / (crop - 1)``. They
    differ only for samples outside the map: TensorFlow returns 0 there (its
    ``extrapolation_value``), roi_align clamps samples within one pixel of the border and
    returns 0 beyond; the original's proposals are clipped to the image and the query boxes
    lie in it, so no sample falls outside.
    """
    sy = (map_height - 1) / float(image_size)
    sx = (map_width - 1) / float(image_size)
    x1, y1, x2, y2 = boxes.unbind(-1)
    a_x, b_x, a_y, b_y = x1 * sx, x2 * sx, y1 * sy, y2 * sy
    d_x = (b_x - a_x) / (crop_size - 1)
    d_y = (b_y - a_y) / (crop_size - 1)
    return torch.stack((a_x - d_x / 2 + 0.5, a_y - d_y / 2 + 0.5,
                        b_x + d_x / 2 + 0.5, b_y + d_y / 2 + 0.5), -1)


def crop_and_pool(maps: torch.Tensor, boxes: Sequence[torch.Tensor], *, image_size: float,
                  crop_size: int = CROP_SIZE) -> torch.Tensor:
    """``crop_and_resize`` of each box (a list per map of ``(k, 4)`` pixel boxes) to
    ``crop_size`` square, then a 2x2 max pool of stride 2: ``(K, C, crop/2, crop/2)``
    (ava_meta_arch.py:1446-1497)."""
    h, w = maps.shape[-2:]
    rois = []
    for i, b in enumerate(boxes):
        if len(b):
            tb = tf_crop_boxes(b.to(maps.dtype), image_size=image_size, map_height=h, map_width=w,
                               crop_size=crop_size)
            rois.append(torch.cat((torch.full((len(b), 1), float(i), dtype=maps.dtype,
                                              device=maps.device), tb), 1))
    if not rois:
        return maps.new_zeros(0, maps.shape[1], crop_size // 2, crop_size // 2)
    crops = roi_align(maps, torch.cat(rois), crop_size, spatial_scale=1.0, sampling_ratio=1,
                      aligned=True)
    return F.max_pool2d(crops, 2, 2)


# --------------------------------------------------------------------------- targets
def rpn_targets(anchors: torch.Tensor, gt: torch.Tensor, *, positive_iou: float = RPN_POSITIVE_IOU,
                negative_iou: float = RPN_NEGATIVE_IOU) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(labels, matched)`` of the anchors: 1 positive, 0 negative, -1 ignored, and the index
    of the ground-truth box each positive regresses to.

    TensorFlow's ``ArgMaxMatcher(0.7, 0.3, force_match_for_each_row=True)``
    (target_assigner.py:384-391; argmax_matcher.py): an anchor's best IoU ``>= 0.7`` is a
    match, ``< 0.3`` a negative, between ignored; then every ground-truth box takes its best
    anchor (the first on ties) as a match whatever the IoU, an anchor chosen by several boxes
    going to the first of them. Without ground truth every anchor is negative.
    """
    n = anchors.shape[0]
    labels = torch.zeros(n, dtype=torch.long, device=anchors.device)
    matched = torch.zeros(n, dtype=torch.long, device=anchors.device)
    if n == 0 or gt.shape[0] == 0:
        return labels, matched
    iou = box_iou(anchors, gt)
    best = iou.max(1).values
    arg = iou.argmax(1)  # the first box on ties
    labels[(best >= negative_iou) & (best < positive_iou)] = -1
    labels[best >= positive_iou] = 1
    matched.copy_(arg)
    forced = iou.argmax(0)
    for j in range(gt.shape[0] - 1, -1, -1):  # lowest box index last, so it wins
        labels[forced[j]] = 1
        matched[forced[j]] = j
    return labels, matched


def head_targets(rois: torch.Tensor, gt: torch.Tensor, matching: torch.Tensor, *,
                 positive_iou: float = HEAD_POSITIVE_IOU) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(labels, matched)``: each RoI's class (0 background, 1 another actor, 2 the matching
    actor; the rule of :func:`.original.roi_labels`) and the actor box it regresses to."""
    labels = torch.full((rois.shape[0],), BACKGROUND, dtype=torch.long, device=rois.device)
    matched = torch.zeros(rois.shape[0], dtype=torch.long, device=rois.device)
    if rois.shape[0] == 0 or gt.shape[0] == 0:
        return labels, matched
    iou = box_iou(rois, gt)
    arg = iou.argmax(1)
    best = iou.gather(1, arg[:, None]).squeeze(1)
    positive = best >= positive_iou
    cls = torch.where(matching.to(torch.bool)[arg], MATCHING_ACTOR, OTHER_ACTOR)
    labels[positive] = cls[positive]
    matched.copy_(arg)
    return labels, matched


# --------------------------------------------------------------------------- losses
_CODER = BoxCoder(BOX_CODER_WEIGHTS)


def rpn_loss(logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, gt: torch.Tensor, *,
             batch: int = RPN_BATCH, positive_fraction: float = RPN_POSITIVE_FRACTION,
             generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's RPN ``(objectness, localisation)`` losses, unweighted: the 2-way softmax
    cross-entropy and the smooth-L1 (delta 1, summed over the 4 deltas, positives only) of
    the sampled anchors, each divided by the number sampled (ava_meta_arch.py:1708-1751).
    ``logits`` ``(A, 2)`` (background first), ``deltas`` ``(A, 4)``, ``anchors`` ``(A, 4)``
    (the training anchors, already pruned), ``gt`` ``(g, 4)``."""
    labels, matched = rpn_targets(anchors, gt)
    pos, neg = _sample(labels, batch, positive_fraction, generator)
    idx = torch.cat((pos, neg))
    count = max(1, idx.numel())
    cls = F.cross_entropy(logits[idx], (labels[idx] > 0).long(), reduction="sum") / count
    if pos.numel():
        target = _CODER.encode(anchors[pos], gt[matched[pos]])
        box = F.smooth_l1_loss(deltas[pos], target, beta=1.0, reduction="sum") / count
    else:
        box = deltas.sum() * 0.0
    return cls, box


def head_loss(logits: torch.Tensor, deltas: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor,
              targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's second-stage ``(classification, localisation)`` sums, unweighted and not
    yet normalised: 3-way softmax cross-entropy over its RoIs, and smooth-L1 (delta 1) of
    each positive RoI's box *of its own class* against its actor box (ava_meta_arch.py:
    1863-1892). ``deltas`` ``(k, 2, 4)`` (classes 1 and 2), ``targets`` ``(k, 4)`` boxes."""
    cls = F.cross_entropy(logits, labels, reduction="sum")
    pos = labels > BACKGROUND
    if pos.any():
        own = deltas[pos, labels[pos] - 1]
        box = F.smooth_l1_loss(own, _CODER.encode(rois[pos], targets[pos]), beta=1.0, reduction="sum")
    else:
        box = deltas.sum() * 0.0
    return cls, box


# --------------------------------------------------------------------------- inference
def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, *, iou: float = DETECTION_NMS_IOU,
                   per_class: int = DETECTIONS_PER_CLASS, total: int = DETECTIONS_TOTAL
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS of ``boxes`` ``(k, C, 4)`` with ``scores`` ``(k, C)`` (the classes after
    background): boxes of zero area dropped, NMS at ``iou`` keeping ``per_class``, then the
    ``total`` best over all classes (the config's ``batch_non_max_suppression``, lines
    70-78; score threshold 0). Returns ``(boxes, scores, classes)``, best first, classes
    counted from 1 (1 another actor, 2 the matching actor)."""
    out_b, out_s, out_c = [], [], []
    for c in range(scores.shape[1]):
        b, s = boxes[:, c], scores[:, c]
        ok = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0) & (s > 0)
        b, s = b[ok], s[ok]
        keep = nms(b, s, iou)[:per_class]
        out_b.append(b[keep])
        out_s.append(s[keep])
        out_c.append(torch.full((len(keep),), c + 1, dtype=torch.long, device=boxes.device))
    b, s, c = torch.cat(out_b), torch.cat(out_s), torch.cat(out_c)
    order = torch.sort(s, descending=True, stable=True).indices[:total]
    return b[order], s[order], c[order]


# --------------------------------------------------------------------------- second stage
class _FixedStatsBatchNorm(nn.Module):
    """Batch norm in inference mode from its initial statistics (mean 0, variance 1, eps
    1e-5) with a trainable scale and offset: slim's ``batch_norm(is_training=False,
    scale=True)`` of a layer that no checkpoint initialises (ava_i3d_feature_extractor.py:
    196-202; block4 is not part of I3D)."""

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


def _variance_scaling_(weight: torch.Tensor) -> None:
    """slim's ``variance_scaling_initializer()`` (factor 2, fan in, truncated normal), the
    convolution initialiser of ``resnet_arg_scope``."""
    fan_in = weight[0].numel()
    std = math.sqrt(1.3 * 2.0 / fan_in)
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class _Bottleneck(nn.Module):
    """ResNet-v1 bottleneck unit (slim ``resnet_v1.bottleneck``, stride 1): 1x1 to
    ``bottleneck``, 3x3, 1x1 to ``depth``, batch norm after each, ReLU after the first two
    and after the sum; the shortcut is the input when it has ``depth`` channels, else a 1x1
    convolution with batch norm."""

    def __init__(self, in_channels: int, depth: int, bottleneck: int) -> None:
        super().__init__()
        self.shortcut = None
        if in_channels != depth:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, depth, 1, bias=False), _FixedStatsBatchNorm(depth))
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.bn1 = _FixedStatsBatchNorm(bottleneck)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False)
        self.bn2 = _FixedStatsBatchNorm(bottleneck)
        self.conv3 = nn.Conv2d(bottleneck, depth, 1, bias=False)
        self.bn3 = _FixedStatsBatchNorm(depth)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _variance_scaling_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(short + self.bn3(self.conv3(y)))


class ResNetV1Block(nn.Module):
    """``block4`` of ResNet-v1: ``units`` bottleneck units to ``depth`` channels (2048) with
    ``bottleneck`` (512) inside, stride 1 (ava_i3d_feature_extractor.py:203-211)."""

    def __init__(self, in_channels: int, *, depth: int = 2048, bottleneck: int = 512, units: int = 3) -> None:
        super().__init__()
        layers, c = [], in_channels
        for _ in range(units):
            layers.append(_Bottleneck(c, depth, bottleneck))
            c = depth
        self.units = nn.Sequential(*layers)
        self.out_channels = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"The '{name}' parameter of OriginalSTVRModel must be an int >= 1. "
                          f"Got {value!r} instead.")
    return value


# --------------------------------------------------------------------------- model
class OriginalSTVRModel(nn.Module):
    """The authors' two-stage model, with the same interface as
    :class:`relocbench_baselines.stvr.model.STVRModel` (``forward`` returns the training
    losses, ``detect`` the scored boxes of one pair).

    Keyword-only hyperparameters; the widths are keywords so that tests can be tiny:
    ``backbone`` ``i3d`` (``weights``: ``"none"`` for random weights marked so, or a local
    state dict in the pytorch-i3d layout) or ``tiny3d`` (``width``, ``backbone_stride``;
    random weights only), ``cell`` ``none`` / ``convlstm`` / ``flow`` / ``traj`` / ``warp``
    with ``gate_channels`` (128; ``links`` for ``traj``, 5), ``rpn_depth`` (512),
    ``attention_dim`` (128), ``block_depth`` (2048), ``block_bottleneck`` (512),
    ``block_units`` (3). Anchors: :func:`rpn_anchors` of
    the feature grid, base size ``256 * frame_size / 320`` and the backbone's stride (at 320
    pixels and I3D's stride 16, the original's).
    """

    def __init__(self, *, cell: str = "warp", backbone: str = "i3d", weights: str = "none", width: int = 16,
                 backbone_stride: int = 16, frame_size: int = IMAGE_SIZE, gate_channels: int = 128,
                 rpn_depth: int = 512, attention_dim: int = 128, block_depth: int = 2048,
                 block_bottleneck: int = 512, block_units: int = 3, links: int = 5) -> None:
        super().__init__()
        if cell not in ORIGINAL_CELLS:
            raise ConfigError(f"The 'cell' parameter of the original recipe must be one of "
                              f"{list(ORIGINAL_CELLS)}. Got {cell!r} instead.")
        if backbone not in ORIGINAL_BACKBONES:
            raise ConfigError(f"The 'backbone' parameter of the original recipe must be one of "
                              f"{list(ORIGINAL_BACKBONES)}. Got {backbone!r} instead.")
        for name, value in (("frame_size", frame_size), ("gate_channels", gate_channels),
                            ("rpn_depth", rpn_depth), ("attention_dim", attention_dim),
                            ("block_depth", block_depth), ("block_bottleneck", block_bottleneck),
                            ("block_units", block_units)):
            _positive(value, name)
        if backbone == "i3d":
            from .i3d import build_i3d

            self.backbone = build_i3d(weights)
            self.stride = 16
        else:
            if str(weights) != "none":
                raise ConfigError("The 'weights' parameter must be 'none' with the tiny3d backbone (it has "
                                  f"no trained weights). Got {weights!r} instead.")
            self.backbone = Tiny3D(width=width, stride=backbone_stride)
            self.backbone.weights_id = "none"
            from relocbench.extract.backbones.base import WEIGHTS_NOTE_RANDOM

            self.backbone.weights_note = WEIGHTS_NOTE_RANDOM
            self.stride = self.backbone.stride
        self.weights_id = self.backbone.weights_id
        # the run's record: without a weights file the backbone is not a test-only random
        # module but the start of training from scratch (its convolutions train with the rest)
        self.weights_note = (self.backbone.weights_note if self.weights_id != "none"
                             else WEIGHTS_NOTE_SCRATCH[backbone])
        if frame_size % self.stride:
            raise ConfigError(f"The 'frame_size' parameter must be a multiple of the backbone stride {self.stride}. "
                              f"Got {frame_size!r} instead.")
        self.frame_size = int(frame_size)
        self.map_size = self.frame_size // self.stride
        c = int(self.backbone.out_channels)
        self.channels = c
        self.cell_name = cell
        kw = {"in_channels": c}
        if cell != "none":
            kw["gate_channels"] = gate_channels
        if cell == "traj":
            kw["links"] = links
        self.cell = create_cell(cell, recipe="original", **kw)
        self.needs_flow = bool(getattr(self.cell, "needs_flow", False))
        # anchors: all (inference, clipped to the image) and the training subset inside it
        scale = self.frame_size / float(IMAGE_SIZE)
        grid = rpn_anchors(self.map_size, self.map_size, base_size=ANCHOR_BASE_SIZE * scale,
                           stride=float(self.stride))
        inside = anchors_inside(grid, self.frame_size, self.frame_size)
        full = torch.from_numpy(grid).float()
        self.register_buffer("anchors", full.clamp(0, self.frame_size), persistent=False)
        self.register_buffer("train_anchors", full[torch.from_numpy(inside)], persistent=False)
        self.register_buffer("inside", torch.from_numpy(inside), persistent=False)
        self.n_anchor_types = grid.shape[0] // (self.map_size * self.map_size)
        a = self.n_anchor_types
        # RPN (ava_meta_arch.py:955-963, 346-354)
        self.rpn_conv = nn.Conv2d(c, rpn_depth, 3, padding=1)
        self.rpn_obj = nn.Conv2d(rpn_depth, 2 * a, 1)
        self.rpn_box = nn.Conv2d(rpn_depth, 4 * a, 1)
        for m in (self.rpn_conv, self.rpn_obj, self.rpn_box):
            nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
            nn.init.zeros_(m.bias)
        # attention (ava_meta_arch.py:723-735): slim fully_connected, Xavier weights, zero biases
        self.att_query = nn.Linear(c, attention_dim)
        self.att_ref = nn.Linear(c, attention_dim)
        self.att_g = nn.Linear(attention_dim, 1)
        # second stage
        self.block = ResNetV1Block(2 * c, depth=block_depth, bottleneck=block_bottleneck, units=block_units)
        self.cls = nn.Linear(block_depth, 3)
        self.box = nn.Linear(block_depth, 2 * 4)
        for m in (self.att_query, self.att_ref, self.att_g, self.cls, self.box):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        self.coder = _CODER

    # ------------------------------------------------------------------ pieces
    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """``(N, 8, S, S, 3)`` uint8 clips -> ``(N, C, S/s, S/s)`` maps."""
        if clips.dim() != 5 or tuple(clips.shape[2:]) != (self.frame_size, self.frame_size, 3):
            raise ConfigError(f"clips must be (N, 8, {self.frame_size}, {self.frame_size}, 3) uint8. "
                              f"Got {tuple(clips.shape)} instead.")
        return self.backbone(normalize_clips_signed(clips))

    def rpn(self, maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Objectness logits ``(N, h*w*A, 2)`` and deltas ``(N, h*w*A, 4)``, in the anchors'
        order (row, column, anchor)."""
        x = F.relu6(self.rpn_conv(maps))
        n = maps.shape[0]
        obj = self.rpn_obj(x).permute(0, 2, 3, 1).reshape(n, -1, 2)
        box = self.rpn_box(x).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return obj, box

    def proposals(self, obj: torch.Tensor, deltas: torch.Tensor, *, training: bool) -> List[torch.Tensor]:
        """Up to 32 proposals per image: the anchors (inside ones when training, all clipped
        when not) moved by their deltas, clipped to the image, boxes of zero area dropped, NMS
        0.7 on the softmax objectness (ava_meta_arch.py:1206-1228). No gradient."""
        anchors = self.train_anchors if training else self.anchors
        out = []
        s = float(self.frame_size)
        for i in range(obj.shape[0]):
            o, d = (obj[i][self.inside], deltas[i][self.inside]) if training else (obj[i], deltas[i])
            boxes = self.coder.decode(anchors, d.detach()).clamp(0.0, s)
            scores = torch.softmax(o.detach(), -1)[:, 1]
            ok = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
            boxes, scores = boxes[ok], scores[ok]
            out.append(boxes[nms(boxes, scores, RPN_NMS_IOU)[:PROPOSALS]])
        return out

    def query_features(self, qclips: torch.Tensor, qboxes: torch.Tensor) -> torch.Tensor:
        """``(B, Q, C, 7, 7)`` pooled query features; the query clips skip the cell."""
        b, q = qclips.shape[:2]
        maps = self.encode(qclips.reshape(b * q, *qclips.shape[2:]))
        feat = crop_and_pool(maps, list(qboxes.reshape(b * q, 1, 4).float()), image_size=self.frame_size)
        return feat.reshape(b, q, *feat.shape[1:])

    def head(self, maps: torch.Tensor, rois: List[torch.Tensor], qfeat: torch.Tensor, qmask: torch.Tensor,
             item_of_image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(K, 3)`` and per-class deltas ``(K, 2, 4)`` of the RoIs (a list per image)."""
        fp = crop_and_pool(maps, rois, image_size=self.frame_size)
        img = torch.cat([torch.full((len(r),), i, dtype=torch.long, device=maps.device) for i, r in enumerate(rois)])
        item = item_of_image[img]
        g = torch.tanh(self.att_query(qfeat.mean((-2, -1)))[item] + self.att_ref(fp.mean((-2, -1)))[:, None, :])
        logit = self.att_g(g).squeeze(-1).masked_fill(~qmask[item], float("-inf"))
        alpha = torch.softmax(logit, -1)
        fq = torch.einsum("kq,kqcxy->kcxy", alpha, qfeat[item])
        h = self.block(torch.cat((fp, fq), 1)).mean((-2, -1))
        return self.cls(h), self.box(h).reshape(-1, 2, 4)

    #: ``(B, T, C, h, w)`` -> the cell's outputs over the reference clips, ``flows``
    #: ``(B, T, 2, h, w)`` for the flow cell: the compact model's propagation, shared.
    propagate = STVRModel.propagate

    # ------------------------------------------------------------------ training
    def forward(self, ref_clips: torch.Tensor, ref_valid: torch.Tensor, query_clips: torch.Tensor,
                query_boxes: torch.Tensor, query_valid: torch.Tensor, gt_all: List[torch.Tensor],
                gt_match: List[torch.Tensor], gt_matching: Optional[List[torch.Tensor]] = None,
                flows: Optional[torch.Tensor] = None, seeds: Optional[Sequence[int]] = None,
                reduction: str = "mean") -> Dict[str, torch.Tensor]:
        """Training losses of a batch (inputs as :meth:`STVRModel.forward`, plus
        ``gt_matching``: per reference image, which of ``gt_all``'s boxes is an actor doing the
        query's action). ``reduction="mean"``: the four weighted losses. ``"sum"``: their
        numerators with ``n_images`` (valid reference images, the RPN's count) and ``n_head``
        (every reference image, padding included: the second stage's count)."""
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' or 'sum'. Got {reduction!r} instead.")
        if gt_matching is None:
            raise ConfigError("the original recipe needs gt_matching (which actor of each reference image "
                              "does the query's action)")
        b, t = ref_clips.shape[:2]
        maps = self.encode(ref_clips.reshape(b * t, *ref_clips.shape[2:]))
        maps = maps * ref_valid.reshape(b * t, 1, 1, 1).to(maps.dtype)
        maps = self.propagate(maps.reshape(b, t, *maps.shape[1:]), flows).reshape(b * t, *maps.shape[1:])
        qfeat = self.query_features(query_clips, query_boxes)
        valid = ref_valid.reshape(-1)
        obj, deltas = self.rpn(maps)
        zero = obj.sum() * 0.0
        rpn_cls, rpn_box, n_images = zero, zero, 0
        for i in torch.nonzero(valid).flatten().tolist():
            c, bx = rpn_loss(obj[i][self.inside], deltas[i][self.inside], self.train_anchors, gt_all[i].float(),
                             generator=_image_generator(seeds, i, t, 0))
            rpn_cls, rpn_box, n_images = rpn_cls + c, rpn_box + bx, n_images + 1
        props = self.proposals(obj, deltas, training=True)
        rois, labels, targets = [], [], []
        for i in range(b * t):
            if not bool(valid[i]):
                rois.append(props[i][:0])
                labels.append(torch.zeros(0, dtype=torch.long, device=maps.device))
                targets.append(props[i][:0])
                continue
            gts = gt_all[i].float()
            lab, idx = head_targets(props[i], gts, gt_matching[i])
            pos, neg = _sample((lab > 0).long(), HEAD_BATCH, HEAD_POSITIVE_FRACTION, _image_generator(seeds, i, t, 1))
            keep = torch.cat((pos, neg))
            rois.append(props[i][keep])
            labels.append(lab[keep])
            targets.append(gts[idx[keep]] if len(gts) else props[i][keep])
        cls, box = zero, zero
        if sum(len(r) for r in rois):
            item_of_image = torch.arange(b, device=maps.device).repeat_interleave(t)
            logits, bdeltas = self.head(maps, rois, qfeat, query_valid, item_of_image)
            start = 0
            for r, lab, tgt in zip(rois, labels, targets):
                k = len(r)
                if k:
                    c, bx = head_loss(logits[start:start + k], bdeltas[start:start + k], r, lab, tgt)
                    cls, box = cls + c / k, box + bx / k
                start += k
        rpn_box, box = LOCALIZATION_WEIGHT * rpn_box, LOCALIZATION_WEIGHT * box
        if reduction == "sum":
            return {"rpn_cls": rpn_cls, "rpn_box": rpn_box, "cls": cls, "box": box,
                    "n_images": n_images, "n_head": b * t}
        ni = max(1, n_images)
        return {"rpn_cls": rpn_cls / ni, "rpn_box": rpn_box / ni, "cls": cls / (b * t), "box": box / (b * t)}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, ref_clips: torch.Tensor, query_clips: torch.Tensor, query_boxes: torch.Tensor,
               flows: Optional[torch.Tensor] = None, *, return_maps: bool = False):
        """Per reference clip, the "matching actor" detections ``(boxes (k, 4) pixels, scores
        (k,))`` best first, after the per-class NMS of :func:`multiclass_nms`. ``flows``
        ``(T, 2, h, w)``: the flow cell's flows between consecutive reference clips."""
        t = ref_clips.shape[0]
        maps = self.encode(ref_clips)
        maps = self.propagate(maps.unsqueeze(0), None if flows is None else flows.unsqueeze(0))[0]
        qfeat = self.query_features(query_clips.unsqueeze(0), query_boxes.unsqueeze(0))
        qmask = torch.ones(1, query_clips.shape[0], dtype=torch.bool, device=maps.device)
        obj, deltas = self.rpn(maps)
        props = self.proposals(obj, deltas, training=False)
        out = []
        if sum(len(p) for p in props):
            logits, bd = self.head(maps, props, qfeat, qmask, torch.zeros(t, dtype=torch.long, device=maps.device))
            probs = torch.softmax(logits, -1)
        start = 0
        s = float(self.frame_size)
        for p in props:
            k = len(p)
            if not k:
                out.append((p, p[:, 0]))
                continue
            pr, d = probs[start:start + k], bd[start:start + k]
            start += k
            boxes = torch.stack([self.coder.decode(p, d[:, c]) for c in range(2)], 1).clamp(0.0, s)
            bx, sc, cl = multiclass_nms(boxes, pr[:, 1:])
            keep = cl == MATCHING_ACTOR
            out.append((bx[keep], sc[keep]))
        return (out, maps) if return_maps else out

