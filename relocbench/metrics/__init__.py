"""Scoring for relocbench: exact, vectorised, pure numpy (this package never imports torch).

Protocols (each a function returning a JSON-ready dict of fractions in [0, 1]):

=========================  ==================================  ==========================================
protocol                   Python                              ground truth
=========================  ==================================  ==========================================
``reloc-temporal``         :func:`evaluate_temporal`           temporal pairs manifest (ECCV 2018)
``reloc-spatiotemporal``   :func:`evaluate_spatiotemporal`     spatio-temporal pairs + targets (CVPR 2019)
``activitynet-detection``  :func:`activitynet_detection`       official ActivityNet JSON (eval_detection.py)
``ava``                    :func:`ava_frame_map`               official AVA CSV + label map (frame-mAP)
=========================  ==================================  ==========================================

:func:`evaluate` reads the files of any protocol and dispatches; ``relocbench evaluate`` is
its command line. Building blocks: :func:`tiou`, :func:`box_iou` (and their pairwise
forms), :func:`voc_ap` and :func:`ap_from_tp_ranks`.

Tie rule
--------
Sorting by score needs a rule for equal scores, and greedy matching one for equal
overlaps. relocbench fixes them so that every result is reproducible:

* ``reloc-temporal`` and ``reloc-spatiotemporal`` (relocbench's own formats): a pair's list
  is a ranking, so among equal scores the entry listed first ranks first; across pairs
  (pooled AP, frame-mAP) equal scores follow the pair's row in the manifest, then the list.
* ``activitynet-detection`` and ``ava`` (drop-ins for the official evaluators): the
  official code sorts with ``argsort()[::-1]`` (AVA also through a heap), which reverses
  equal keys when NumPy's sort happens to be stable and leaves them unspecified otherwise.
  relocbench always reverses: the prediction listed later in the file goes first (also for
  AVA's 50-per-key cap). On equal tIoU, ActivityNet tries the later-listed ground truth first;
  on equal IoU, AVA takes the first-listed box.

Agreement with the official evaluators (to 1e-9) is therefore promised for inputs with
distinct scores; with ties the official result itself depends on NumPy's sort.

Threshold rule: a match needs overlap ``>= t`` everywhere, except ``reloc-temporal`` with
``iou_rule="strict"`` (``> t``, as the original ECCV 2018 code did). Overlaps of empty
unions are 0.
"""

# Public name -> submodule defining it; loaded on first use, so that scoring one protocol
# imports only its own module.
_LAZY = {
    "ANET_TIOU_THRESHOLDS": "activitynet", "activitynet_detection": "activitynet",
    "PROTOCOLS": "api", "evaluate": "api",
    "ava_frame_map": "ava", "read_ava_csv": "ava", "read_exclusions": "ava", "read_label_map": "ava",
    "frame_ap": "frame_ap",
    "ap_from_tp_ranks": "geometry", "box_iou": "geometry", "pairwise_box_iou": "geometry",
    "pairwise_tiou": "geometry", "tiou": "geometry", "voc_ap": "geometry",
    "ST_THRESHOLDS": "spatiotemporal", "evaluate_spatiotemporal": "spatiotemporal",
    "AVERAGE_THRESHOLDS": "temporal", "MAP_THRESHOLDS": "temporal", "evaluate_temporal": "temporal",
}


from .._lazy import lazy_attributes  # noqa: E402

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "PROTOCOLS",
    "evaluate",
    "evaluate_temporal",
    "evaluate_spatiotemporal",
    "activitynet_detection",
    "ava_frame_map",
    "frame_ap",
    "read_ava_csv",
    "read_label_map",
    "read_exclusions",
    "tiou",
    "pairwise_tiou",
    "box_iou",
    "pairwise_box_iou",
    "voc_ap",
    "ap_from_tp_ranks",
    "MAP_THRESHOLDS",
    "AVERAGE_THRESHOLDS",
    "ANET_TIOU_THRESHOLDS",
    "ST_THRESHOLDS",
]
