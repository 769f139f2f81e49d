"""Pure functions of the ``original`` spatio-temporal recipe: the authors' choices, checkable alone.

Each follows the authors' released code, cited by file and line:
``STVR/...`` is github.com/fengyang0317/STVR (``input_func.py``, ``compute_ap.py``,
``split_videos.py``, ``data/faster_rcnn_resnet101_pets.config``); ``tf_models/...`` is
github.com/fengyang0317/tf_models, branch warp_c (head ee24960d), ``research/object_detection/``.

* :func:`rpn_anchors` and :func:`anchors_inside`: the RPN anchor set and the training-time
  pruning of anchors that leave the image.
* :func:`roi_labels`: the 3-way label of a region of interest (background / another actor /
  the matching actor).
* :func:`second_clips`: the three contiguous 8-frame clips of each 1-second, 24 fps file, each
  labelled with that second's box.
* :func:`count_ground_truth`, :func:`clip_true_positives`, :func:`original_mean_ap`: the AVA
  scoring rule, where every second counts once for each of its three clips. They live in
  :mod:`relocbench.metrics.frame_ap` (the metrics never import the zoo) and are re-exported
  here; ``relocbench evaluate --clip-scoring original`` scores a predictions file by that rule.

Boxes are ``xyxy``: in pixels of the 320x320 network input for the anchors, in any one
consistent unit elsewhere (IoU does not depend on it).
"""
from __future__ import annotations

from typing import List, NamedTuple, Sequence

import numpy as np

from relocbench.errors import ConfigError
from relocbench.metrics.frame_ap import _boxes, clip_true_positives, count_ground_truth, original_mean_ap
from relocbench.metrics.geometry import pairwise_box_iou

__all__ = [
    "ANCHOR_SCALES",
    "ANCHOR_ASPECT_RATIOS",
    "ANCHOR_BASE_SIZE",
    "ANCHOR_STRIDE",
    "IMAGE_SIZE",
    "FPS",
    "CLIP_FRAMES",
    "CLIPS_PER_SECOND",
    "TRAIN_REFERENCE_SECONDS",
    "MAX_QUERY_SECONDS",
    "BACKGROUND",
    "OTHER_ACTOR",
    "MATCHING_ACTOR",
    "rpn_anchors",
    "anchors_inside",
    "roi_labels",
    "Clip",
    "second_clips",
    "count_ground_truth",
    "clip_true_positives",
    "original_mean_ap",
]

#: Anchor scales and aspect ratios (width / height): the config's ``grid_anchor_generator``
#: (STVR/data/faster_rcnn_resnet101_pets.config:20-27).
ANCHOR_SCALES = (0.25, 0.5, 1.0, 2.0)
ANCHOR_ASPECT_RATIOS = (0.5, 1.0, 2.0)
#: Base anchor size and stride in input pixels: the proto defaults (height/width 256, offset 0;
#: tf_models/.../protos/grid_anchor_generator.proto) and the config's stride 16.
ANCHOR_BASE_SIZE = 256.0
ANCHOR_STRIDE = 16.0
#: Network input side (config ``fixed_shape_resizer``, lines 10-15).
IMAGE_SIZE = 320
#: Frame rate of the 1-second clip files and the clip length (STVR/split_videos.py:33-36;
#: tf_models/.../meta_architectures/ava_meta_arch.py:934 reshapes frames to ``[-1, 8, ...]``).
FPS = 24
CLIP_FRAMES = 8
CLIPS_PER_SECOND = FPS // CLIP_FRAMES
#: Training reference length (``--ref_sec 2``, STVR/input_func.py:25) and the longest
#: training query (STVR/input_func.py:62-64), in seconds.
TRAIN_REFERENCE_SECONDS = 2
MAX_QUERY_SECONDS = 10
#: Second-stage classes, background first (tf_models ``unmatched_class_label`` ``[1, 0, 0]``,
#: ava_meta_arch.py:1428; STVR/input_func.py:82 ``same = (label == query label)`` one-hot).
BACKGROUND, OTHER_ACTOR, MATCHING_ACTOR = 0, 1, 2


def _positive(value, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"The '{name}' parameter of {owner} must be a number > 0. "
                          f"Got {value!r} instead.")
    return float(value)


# --------------------------------------------------------------------------- anchors
def rpn_anchors(grid_height: int = 20, grid_width: int = 20, *,
                scales: Sequence[float] = ANCHOR_SCALES,
                aspect_ratios: Sequence[float] = ANCHOR_ASPECT_RATIOS,
                base_size: float = ANCHOR_BASE_SIZE, stride: float = ANCHOR_STRIDE,
                offset: float = 0.0) -> np.ndarray:
    """The RPN anchors ``(grid_height * grid_width * K, 4)``, ``xyxy`` in input pixels.

    As TensorFlow's ``GridAnchorGenerator`` (tf_models/.../anchor_generators/
    grid_anchor_generator.py:112-122, 173-191): an anchor of scale ``s`` and aspect ratio
    ``r`` (width / height) is ``s * base_size / sqrt(r)`` high and ``s * base_size * sqrt(r)``
    wide, centred on ``(offset + stride * row, offset + stride * col)`` -- with the default
    offset 0 the first centre is the image corner, not the middle of the first cell. Order:
    row, then column, then the ``K = len(scales) * len(aspect_ratios)`` anchors with the
    aspect ratio outer and the scale inner (``ops.meshgrid(scales, aspect_ratios)``).
    On the 20x20 grid of a 320x320 input: 4800 anchors.
    """
    owner = "rpn_anchors"
    for name, value in (("grid_height", grid_height), ("grid_width", grid_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The '{name}' parameter of {owner} must be an int >= 1. "
                              f"Got {value!r} instead.")
    scales = [_positive(s, "scales", owner) for s in scales]
    ratios = [_positive(r, "aspect_ratios", owner) for r in aspect_ratios]
    if not scales or not ratios:
        raise ConfigError(f"The 'scales' and 'aspect_ratios' parameters of {owner} must not be "
                          f"empty. Got {len(scales)} scales and {len(ratios)} ratios instead.")
    base = _positive(base_size, "base_size", owner)
    step = _positive(stride, "stride", owner)
    s = np.tile(np.asarray(scales), len(ratios))  # scale inner
    r = np.repeat(np.asarray(ratios), len(scales))  # aspect ratio outer
    heights = s / np.sqrt(r) * base
    widths = s * np.sqrt(r) * base
    cy = offset + step * np.arange(grid_height, dtype=np.float64)
    cx = offset + step * np.arange(grid_width, dtype=np.float64)
    cy = np.broadcast_to(cy[:, None, None], (grid_height, grid_width, s.size))
    cx = np.broadcast_to(cx[None, :, None], (grid_height, grid_width, s.size))
    out = np.stack((cx - widths / 2, cy - heights / 2, cx + widths / 2, cy + heights / 2), -1)
    return out.reshape(-1, 4)


def anchors_inside(anchors, height: float = IMAGE_SIZE, width: float = IMAGE_SIZE) -> np.ndarray:
    """Which anchors lie wholly inside the ``height x width`` image (boolean ``(n,)``).

    During training the original keeps only these (``prune_outside_window``: ``x1 >= 0``,
    ``y1 >= 0``, ``x2 <= width``, ``y2 <= height``; ava_meta_arch.py:588-596 and
    core/box_list_ops.py:159-169); at inference it clips them to the image instead (lines
    598-600).
    """
    a = _boxes(anchors, "anchors", "anchors_inside")
    return (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= width) & (a[:, 3] <= height)


# --------------------------------------------------------------------------- RoI labels
def roi_labels(rois, actor_boxes, matching, *, iou_threshold: float = 0.5) -> np.ndarray:
    """The second-stage class of each RoI: 0 background, 1 another actor, 2 the matching actor.

    As the Faster R-CNN detection-stage target assigner (tf_models/.../core/
    target_assigner.py:393-400, an ``ArgMaxMatcher`` at 0.5 with equal matched and unmatched
    thresholds): each RoI takes the actor box of highest IoU (the first on ties); it is
    positive when that IoU is ``>= iou_threshold`` and then takes that actor's class (2 when
    ``matching[actor]``, the actor doing the query's action, else 1); below, background.
    No ground-truth box is added to the RoIs.
    """
    owner = "roi_labels"
    r = _boxes(rois, "rois", owner)
    g = _boxes(actor_boxes, "actor_boxes", owner)
    m = np.asarray(matching)
    if m.shape != (g.shape[0],) or (m.size and m.dtype != np.bool_):
        raise ConfigError(f"The 'matching' parameter of {owner} must be a boolean array with one "
                          f"entry per actor box ({g.shape[0]}). Got shape {m.shape} and dtype "
                          f"{m.dtype} instead.")
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"The 'iou_threshold' parameter of {owner} must be in (0, 1]. "
                          f"Got {iou_threshold!r} instead.")
    labels = np.full(r.shape[0], BACKGROUND, dtype=np.int64)
    if r.shape[0] == 0 or g.shape[0] == 0:
        return labels
    iou = pairwise_box_iou(r, g)
    best = np.argmax(iou, axis=1)
    positive = iou[np.arange(r.shape[0]), best] >= iou_threshold
    labels[positive] = np.where(m.astype(bool)[best[positive]], MATCHING_ACTOR, OTHER_ACTOR)
    return labels


# --------------------------------------------------------------------------- clips
class Clip(NamedTuple):
    """One 8-frame clip: its second, index in the second (0..2) and half-open frame range
    ``[start_frame, stop_frame)`` on the video's 24 fps timeline (frame 0 at time 0)."""

    second: int
    index: int
    start_frame: int
    stop_frame: int


def second_clips(second: int, *, fps: int = FPS, clip_frames: int = CLIP_FRAMES) -> List[Clip]:
    """The three contiguous 8-frame clips of AVA second ``second``.

    The original cuts each video into 1-second files at 24 fps starting on the second
    (``ffmpeg -ss 900 ... -segment_time 1 -r 24``, file ``<video>_<second>.mkv`` holding
    ``[second, second + 1)``; STVR/split_videos.py:33-36), decodes the 24 frames
    (STVR/input_func.py:209-233) and reshapes them into clips of 8 (ava_meta_arch.py:934);
    the second's box is repeated for its three clips (STVR/input_func.py:258-272). The clips
    therefore start on the keyframe and cover the second after it, not a window centred on it.
    """
    if isinstance(second, bool) or not isinstance(second, (int, np.integer)) or second < 0:
        raise ConfigError("The 'second' parameter of second_clips must be an int >= 0. "
                          f"Got {second!r} instead.")
    for name, value in (("fps", fps), ("clip_frames", clip_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The '{name}' parameter of second_clips must be an int >= 1. "
                              f"Got {value!r} instead.")
    if fps % clip_frames:
        raise ConfigError(f"The 'clip_frames' parameter of second_clips must divide fps={fps} "
                          f"(whole clips per second). Got {clip_frames} instead.")
    start = int(second) * fps
    return [Clip(int(second), j, start + j * clip_frames, start + (j + 1) * clip_frames)
            for j in range(fps // clip_frames)]
