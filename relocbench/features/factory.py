"""``open_feature_store``: a feature store from a spec string, a preset or a card."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import ConfigError, FeatureError
from .base import STEP_FRAMES, FeatureStore
from .cards import PRESETS, FeatureCard, find_card, load_card, preset as get_preset
from .folder import FolderStore, NpyFolderStore
from .hdf5 import C3DHDF5Store, ExtractedHDF5Store, HDF5Store, _declared_layout, _h5py
from .synthetic import SyntheticFeatures
from .timeaxis import video_infos

__all__ = ["open_feature_store", "resolve_card", "check_declared", "store_from_card"]

CardLike = Union[str, os.PathLike, Mapping[str, Any], FeatureCard]


def resolve_card(spec: Any, *, preset: Optional[str] = None, card: Optional[CardLike] = None) -> Optional[FeatureCard]:
    """The card that declares ``spec``: ``preset``, else ``card``, else a card beside the path; or None."""
    if preset is not None and card is not None:
        raise ConfigError("give --feature-preset or --feature-card, not both")
    if preset is not None:
        return get_preset(preset)
    if card is not None:
        return load_card(card)
    if isinstance(spec, (str, os.PathLike)) and str(spec) != "synthetic":
        found = find_card(spec)
        if found is not None:
            return load_card(found)
    return None


def _open_h5(path: Path):
    """``h5py.File(path, "r")``; a truncated or damaged file is a FeatureError naming it (no traceback)."""
    try:
        return _h5py().File(path, "r")
    except OSError as exc:
        raise FeatureError(f"not a readable HDF5 file ({exc})", file=path) from None


def _is_extracted(path: Path) -> bool:
    if not path.is_file():
        return False
    h5py = _h5py()
    if not h5py.is_hdf5(str(path)):
        return False
    with _open_h5(path) as f:
        return "relocbench_features" in f.attrs


def check_declared(spec: Any, *, preset: Optional[str] = None, card: Optional[CardLike] = None) -> None:
    """Refuse features whose time axis is not declared (the command line's rule).

    Declared: ``synthetic``, a file of ``relocbench extract-features`` (its attributes), a
    path with a card beside it, or a path given with a preset or a card.
    """
    if isinstance(spec, FeatureStore) or spec in (None, "", "synthetic"):
        if spec in (None, "", "synthetic") and (preset is not None or card is not None):
            raise ConfigError("--feature-preset / --feature-card describe a feature file or folder: "
                              "give it with --features PATH")
        return
    if preset is not None or card is not None:
        return
    p = Path(spec)
    if not p.exists() or find_card(p) is not None or _is_extracted(p):
        return  # a missing path is reported by open_feature_store, naming it
    raise ConfigError(
        "the time axis of these features is not declared (no features.card.yaml / .json beside them), so their "
        "rows cannot be placed on the benchmark's 16-frame steps; pass --feature-preset NAME (one of "
        f"{', '.join(sorted(PRESETS))}) or --feature-card FILE (see `relocbench features inspect --help`)",
        file=p)


def store_from_card(path: Union[str, os.PathLike], card: FeatureCard, *, manifest: Any = None,
                    skip_missing: bool = False, dim: Optional[int] = None,
                    cache_mb: Optional[float] = None) -> FeatureStore:
    """The store of ``path`` read as ``card`` says (``manifest``: durations for the time axis)."""
    p = Path(path)
    videos = video_infos(manifest) if manifest is not None else None
    want_dim = dim if dim is not None else card.dim
    common = dict(dim=want_dim, skip_missing=skip_missing, cache_mb=cache_mb, axis=card.time_axis, videos=videos,
                  card=card)
    if card.layout == "folder":
        if p.exists() and not p.is_dir():
            raise FeatureError(f"the feature card {card.name!r} describes a folder of per-video files "
                               f"({card.template}); this is a file", file=p)
        if not p.exists():
            raise FeatureError("feature folder not found", file=p)
        return FolderStore(p, template=card.template, array_key=card.key, **common)
    if p.is_dir():
        raise FeatureError(f"the feature card {card.name!r} describes one HDF5 file; this is a folder", file=p)
    if not p.exists():
        raise FeatureError("feature file not found", file=p)
    if not _h5py().is_hdf5(str(p)):
        raise FeatureError(f"not an HDF5 file; the feature card {card.name!r} describes one", file=p)
    return HDF5Store(p, key=card.template, **common)


def open_feature_store(
    spec: Union[str, os.PathLike, FeatureStore] = "synthetic",
    *,
    manifest: Any = None,
    seed: int = 0,
    skip_missing: bool = False,
    stride_frames: Optional[float] = None,
    dim: Optional[int] = None,
    preset: Optional[str] = None,
    card: Optional[CardLike] = None,
    cache_mb: Optional[float] = None,
    **synthetic: Any,
) -> FeatureStore:
    """Open a feature store from ``spec``: ``"synthetic"`` or a path.

    * ``"synthetic"``: :class:`SyntheticFeatures` on the ``timelines`` table of ``manifest``
      (a name such as ``"activitynet"``, a folder, a Manifest or the table itself), with
      ``seed`` and the knobs in ``synthetic`` (``noise``, ``appearance_shift``,
      ``class_similarity``, ...).
    * a path with a declared time axis: ``preset`` (one of
      :data:`~relocbench.features.cards.PRESETS`), ``card`` (a YAML/JSON file or a mapping), or
      a card beside the path (``features.card.yaml``, ...). With ``manifest``, every video's
      rows are checked against its duration and placed on the manifest's 16-frame steps
      (:mod:`relocbench.features.timeaxis`).
    * a file of ``relocbench extract-features``: read at the step it declares (a
      ``stride_frames`` that disagrees with it is refused).
    * otherwise (Python only; the command line requires a declaration): an HDF5 file in the
      official C3D layout (groups holding ``c3d_features``; stride 8 frames unless
      ``stride_frames`` says otherwise) or with one dataset per video, or a folder of
      ``<video>.npy``, rows ``stride_frames`` frames apart (16 unless told) at the native rate.

    ``cache_mb``: the store's LRU cache budget (default :func:`default_cache_mb`).

    >>> store = open_feature_store("synthetic", manifest="activitynet")  # doctest: +SKIP
    >>> store.get("---9CpRcKoU").shape  # doctest: +SKIP
    (26, 500)
    >>> open_feature_store("tsp.h5", preset="tsp", manifest="activitynet")  # doctest: +SKIP
    """
    if isinstance(spec, FeatureStore):
        return spec
    if isinstance(spec, str) and spec == "synthetic":
        if preset is not None or card is not None:
            raise ConfigError("a feature preset or card describes a feature file or folder, not 'synthetic'")
        if manifest is None:
            raise ConfigError("synthetic features need a manifest (its timelines table); pass manifest=...")
        return SyntheticFeatures.from_manifest(
            manifest, seed=seed, skip_missing=skip_missing, cache_mb=cache_mb, **({"dim": dim} if dim else {}),
            **synthetic)
    if synthetic:
        raise ConfigError(f"options {sorted(synthetic)} apply only to synthetic features, not to {spec!s}")
    declared = resolve_card(spec, preset=preset, card=card)
    if declared is not None:
        if stride_frames is not None:
            raise ConfigError("stride_frames is a shorthand for undeclared features; the card declares the time "
                              f"axis ({declared.time_axis.text()})")
        return store_from_card(spec, declared, manifest=manifest, skip_missing=skip_missing, dim=dim,
                               cache_mb=cache_mb)
    videos = video_infos(manifest) if manifest is not None else None
    p = Path(spec)
    if p.is_dir():
        return NpyFolderStore(p, stride_frames=stride_frames or STEP_FRAMES, dim=dim, skip_missing=skip_missing,
                              videos=videos, cache_mb=cache_mb)
    if not p.exists():
        raise FeatureError(
            "feature store not found; expected 'synthetic', an HDF5 file (.h5/.hdf5) or a folder of <video>.npy",
            file=p,
        )
    h5py = _h5py()
    if not h5py.is_hdf5(str(p)):
        raise FeatureError("not an HDF5 file; expected 'synthetic', an .h5/.hdf5 file or a folder of .npy", file=p)
    with _open_h5(p) as f:
        attrs = _declared_layout(f, p)
        if attrs is not None:
            return ExtractedHDF5Store(p, attrs, stride_frames=stride_frames, dim=dim, skip_missing=skip_missing,
                                      videos=videos, cache_mb=cache_mb)
        layout = None
        for name in f:
            node = f[name]
            if isinstance(node, h5py.Group) and isinstance(node.get("c3d_features"), h5py.Dataset):
                layout = "c3d"
            elif isinstance(node, h5py.Dataset):
                layout = "per-video"
            if layout:
                break
    if layout == "c3d":
        return C3DHDF5Store(p, stride_frames=stride_frames or 8, dim=dim, skip_missing=skip_missing, videos=videos,
                            cache_mb=cache_mb)
    if layout == "per-video":
        return HDF5Store(p, stride_frames=stride_frames or STEP_FRAMES, dim=dim, skip_missing=skip_missing,
                         videos=videos, cache_mb=cache_mb)
    raise FeatureError(
        "holds neither groups v_<id>/c3d_features (official C3D layout) nor one dataset per video", file=p
    )
