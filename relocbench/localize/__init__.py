"""Re-localization in your own videos: ``relocbench localize`` and ``relocbench predict``.

>>> from relocbench.localize import localize
>>> res = localize("query.mp4", ["reference.mp4"], query_range="12.5:18")  # doctest: +SKIP
>>> [(s.reference, s.start_hms, s.end_hms, s.score) for s in res.segments]  # doctest: +SKIP

See :mod:`relocbench.localize.core` (the pipeline), :mod:`~relocbench.localize.matching`
(training-free matchers, time grid, NMS), :mod:`~relocbench.localize.bars` (black bars cropped
before their features), :mod:`~relocbench.localize.refine` (frame-accurate boundaries),
:mod:`~relocbench.localize.runs` (trained runs,
``predict``), :mod:`~relocbench.localize.cache`, :mod:`~relocbench.localize.outputs` and
:mod:`~relocbench.localize.timecodes`.
"""
from .core import LocalizeResult, ReferenceInfo, Segment, expand_references, localize, localize_inputs
from .matching import DEFAULT_GRID_S, DEFAULT_MATCHER, WindowConfig, nms
from .outputs import check_outputs, write_clips, write_json, write_plot, write_srt
from .runs import load_run, predict_run
from .timecodes import format_hms, parse_query_range, srt_text

__all__ = [
    "localize", "LocalizeResult", "ReferenceInfo", "Segment", "expand_references", "localize_inputs",
    "check_outputs",
    "DEFAULT_GRID_S", "DEFAULT_MATCHER", "WindowConfig", "nms",
    "write_clips", "write_json", "write_plot", "write_srt",
    "load_run", "predict_run", "format_hms", "parse_query_range", "srt_text",
]
