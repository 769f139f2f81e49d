"""``inspect_features``: what a feature source holds and how it covers a manifest (``relocbench features inspect``)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from ..errors import ConfigError
from .base import FeatureStore
from .factory import CardLike, check_declared, open_feature_store, resolve_card
from .synthetic import SyntheticFeatures

__all__ = ["inspect_features"]

#: Mismatched videos listed by name in a report (all are counted).
EXAMPLES = 5


def _layout(store: FeatureStore) -> Dict[str, Any]:
    from .folder import FolderStore
    from .hdf5 import ExtractedHDF5Store, HDF5Store

    if isinstance(store, SyntheticFeatures):
        return {"layout": "synthetic", "format": None, "template": None}
    if isinstance(store, FolderStore):
        return {"layout": "folder", "format": store.format, "template": store.template, "key": store.array_key}
    if isinstance(store, ExtractedHDF5Store):
        return {"layout": "hdf5", "format": "hdf5", "template": store.key, "extracted": True}
    if isinstance(store, HDF5Store):
        return {"layout": "hdf5", "format": "hdf5", "template": store.key}
    return {"layout": store.kind, "format": None, "template": None}


def _declared_by(store: FeatureStore, preset: Optional[str], card: Optional[CardLike]) -> str:
    from .hdf5 import ExtractedHDF5Store

    if isinstance(store, SyntheticFeatures):
        return "synthetic"
    if preset is not None:
        return f"preset {preset}"
    if store.card is not None:
        return f"card {store.card.path}" if store.card.path else "card"
    if isinstance(store, ExtractedHDF5Store):
        return "extract-features attributes"
    return "undeclared (Python default: rows 16 frames apart at the video's own rate)"


def inspect_features(path: Union[str, os.PathLike], *, preset: Optional[str] = None,
                     card: Optional[CardLike] = None, manifest: Any = None,
                     require_declared: bool = True) -> Dict[str, Any]:
    """Describe a feature source: layout, dim, dtype, time axis, rows per video against the rows
    expected, and, with ``manifest``, how many of each split's videos are present, missing or
    mismatched (rows that do not cover the video).

    Returns a JSON-ready dict with ``layout``, ``format``, ``template``, ``dim``, ``dtype``,
    ``time_axis`` (its fields and ``text``), ``declared_by``, ``card``, ``videos`` (one entry
    per video of the source: ``video``, ``rows``, ``expected`` ``[fewest, most]`` or None,
    ``ok``; and ``problem`` when the array is not 2-D or not of the source's dimension) and ``manifest`` (None, or ``name`` and ``present`` / ``missing`` / ``mismatched``
    counts per split, with ``mismatched_examples``).

    Shapes are read without reading the rows where the format allows
    (:meth:`~relocbench.features.folder.FolderStore.shape_of`): the ``.npy`` header (of the
    member, for ``.npz``), the HDF5 dataset's shape, the header and line count of a ``.csv``
    (no number parsed, so a cell of text is found only when the features are read). A
    ``.pt``/``.pth`` file is loaded in full by torch (its shape is known only once unpickled).
    """
    if require_declared:
        check_declared(str(path), preset=preset, card=card)
    resolve_card(path, preset=preset, card=card)  # a bad card is reported before anything is read
    store = open_feature_store(str(path), preset=preset, card=card, manifest=manifest)
    man_name = None
    splits: Dict[str, List[str]] = {}
    if manifest is not None:
        from ..manifest import Manifest, open_manifest

        m = manifest if isinstance(manifest, Manifest) else open_manifest(manifest)
        if m.task != "temporal":
            raise ConfigError(f"features inspect needs a temporal manifest; {m.name!r} is {m.task!r}")
        man_name = m.name
        for split in m.splits:
            seg = m.table("segments", split)
            splits[split] = sorted(set(map(str, seg["video"])))
    own = store.videos()
    videos = []
    dtype = None
    shapes: Dict[str, Any] = {}
    for v in own:
        shape = store.shape_of(v)
        shapes[v] = shape
        if shape is None:
            continue
        if dtype is None:
            dtype = shape[2]
        videos.append(_video_entry(store, v, shape))
    if isinstance(store, SyntheticFeatures):
        dtype = "float32"
    out: Dict[str, Any] = {"path": str(path), **_layout(store), "dim": store.dim if own else None, "dtype": dtype,
                           "time_axis": None, "declared_by": _declared_by(store, preset, card),
                           "card": store.card.to_dict() if store.card is not None else None,
                           "videos": videos, "manifest": None}
    if store.axis is not None:
        out["time_axis"] = {**store.axis.to_dict(), "text": store.axis.text()}
    elif isinstance(store, SyntheticFeatures):
        out["time_axis"] = {"kind": "steps", "text": "one row per 16-frame step (rendered on the grid)"}
    if manifest is not None:
        present: Dict[str, int] = {}
        missing: Dict[str, int] = {}
        mismatched: Dict[str, int] = {}
        examples: List[Dict[str, Any]] = []
        for split, vids in splits.items():
            p = m_ = x = 0
            for v in vids:
                shape = shapes[v] if v in shapes else store.shape_of(v)
                if shape is None:
                    m_ += 1
                    continue
                entry = _video_entry(store, v, shape)
                if entry["ok"] is False:
                    x += 1
                    if len(examples) < EXAMPLES:
                        examples.append({"split": split, **entry, "file": store.file_of(v)})
                else:
                    p += 1
            present[split], missing[split], mismatched[split] = p, m_, x
        out["manifest"] = {"name": man_name, "present": present, "missing": missing, "mismatched": mismatched,
                           "mismatched_examples": examples}
    return out


def _video_entry(store: FeatureStore, video: str, shape) -> Dict[str, Any]:
    rows, width = shape[0], shape[1]
    exp = store.expected_rows(video)
    ok = None if exp is None else bool(exp[0] <= rows <= exp[1])
    if isinstance(store, SyntheticFeatures):
        exp, ok = [rows, rows], True
    entry = {"video": video, "rows": rows, "expected": list(exp) if exp is not None else None, "ok": ok}
    # an array that is not [rows, dim] or not of the source's dimension fails when read: never "ok"
    problem = None
    if width == -1:
        problem = "not a 2-D array [rows, dim]"
    elif width != store.dim:
        problem = f"{width}-dimensional rows, expected {store.dim} (the source's dimension)"
    if problem is not None:
        entry.update(ok=False, problem=problem)
    return entry
