"""Feature cards: the declared layout and time axis of a feature source, and the shipped presets.

A card is a small YAML or JSON file beside the features (``features.card.yaml``,
``features.card.yml`` or ``features.card.json`` in the folder, or beside the HDF5 file;
``<file name>.card.yaml`` names the card of one file among several)::

    name: tsp-mine                # shown in run records and on the leaderboard
    layout: folder                # folder (per-video files) or hdf5 (one file)
    template: v_{video}.npy       # folder: file names; hdf5: dataset path ({video}, {video}/c3d_features)
    key: feats                    # npz: the array's name; pt/pth: the dict key (optional)
    dim: 512
    time_axis: {kind: clips, fps: 15, clip_frames: 16, stride_frames: 16, offset_frames: 0}
    source: where the features come from
    citation: the paper to cite
    preset: tsp                   # optional: the shipped preset it follows (same time axis)

A preset is a card that ships with relocbench (:data:`PRESETS`, :func:`preset`). A release
whose time axis is not documented, or documented differently by different sources, has no
preset: its user writes the card.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ..errors import ConfigError
from .timeaxis import TimeAxis

__all__ = ["FeatureCard", "PRESETS", "preset", "load_card", "find_card", "CARD_NAMES", "LAYOUTS"]

LAYOUTS = ("folder", "hdf5")
CARD_NAMES = ("features.card.yaml", "features.card.yml", "features.card.json")
_KEYS = ("name", "layout", "template", "key", "dim", "time_axis", "source", "citation", "preset")


@dataclass(frozen=True)
class FeatureCard:
    """A validated feature card (:func:`load_card`)."""

    name: str
    layout: str
    template: str
    time_axis: TimeAxis
    dim: Optional[int] = None
    key: Optional[str] = None
    source: str = ""
    citation: str = ""
    preset: Optional[str] = None
    path: Optional[str] = field(default=None, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """The card as recorded in a run (``path`` left out: it is where the card was, not what it says)."""
        out: Dict[str, Any] = {"name": self.name, "layout": self.layout, "template": self.template,
                               "time_axis": self.time_axis.to_dict(), "dim": self.dim}
        if self.key is not None:
            out["key"] = self.key
        out.update(source=self.source, citation=self.citation)
        if self.preset is not None:
            out["preset"] = self.preset
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, file: Optional[str] = None) -> "FeatureCard":
        """Validate a card mapping; errors name ``file`` and the key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a feature card (a mapping with {', '.join(_KEYS[:6])}, ...). "
                              f"Got {type(d).__name__} instead.", file=file)
        extra = sorted(set(d) - set(_KEYS))
        if extra:
            raise ConfigError(f"unknown feature card key(s) {extra}; expected some of {list(_KEYS)}", file=file)
        for k in ("name", "layout", "time_axis"):
            if k not in d:
                raise ConfigError(f"the feature card lacks {k!r}", file=file)
        name = d["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"The card's 'name' must be a non-empty string. Got {name!r} instead.", file=file)
        layout = d["layout"]
        if layout not in LAYOUTS:
            raise ConfigError(f"The card's 'layout' must be one of {list(LAYOUTS)}. Got {layout!r} instead.",
                              file=file)
        template = d.get("template", "{video}.npy" if layout == "folder" else "{video}")
        if not isinstance(template, str) or "{video}" not in template:
            raise ConfigError(f"The card's 'template' must be a string with '{{video}}'. Got {template!r} instead.",
                              file=file)
        if layout == "folder":
            from .folder import FOLDER_FORMATS

            fmt = template.rsplit(".", 1)[-1].lower() if "." in template else ""
            if fmt not in FOLDER_FORMATS:
                raise ConfigError(f"The card's 'template' must end in one of "
                                  f"{', '.join('.' + f for f in FOLDER_FORMATS)}. Got {template!r} instead.",
                                  file=file)
        dim = d.get("dim")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0):
            raise ConfigError(f"The card's 'dim' must be a positive int. Got {dim!r} instead.", file=file)
        key = d.get("key")
        if key is not None and not isinstance(key, str):
            raise ConfigError(f"The card's 'key' must be a string. Got {key!r} instead.", file=file)
        for k in ("source", "citation"):
            if not isinstance(d.get(k, ""), str):
                raise ConfigError(f"The card's {k!r} must be a string. Got {d[k]!r} instead.", file=file)
        axis = TimeAxis.from_dict(d["time_axis"], file=file)
        name_of_preset = d.get("preset")
        if name_of_preset is not None:  # recorded in every run: a shipped preset with its time axis, or nothing
            if not isinstance(name_of_preset, str) or name_of_preset not in PRESETS:
                raise ConfigError(f"The card's 'preset' must name a shipped preset (one of {sorted(PRESETS)}). "
                                  f"Got {name_of_preset!r} instead (leave the key out for your own card).", file=file)
            want = TimeAxis.from_dict(PRESETS[name_of_preset]["time_axis"])
            if axis != want:
                raise ConfigError(f"The card's 'preset' is {name_of_preset!r}, whose time axis is {want.text()}; "
                                  f"the card declares {axis.text()} (leave 'preset' out for your own card).",
                                  file=file)
        return cls(name=name, layout=layout, template=template, time_axis=axis,
                   dim=dim, key=key, source=d.get("source", ""), citation=d.get("citation", ""),
                   preset=name_of_preset, path=file)


# --------------------------------------------------------------------------- presets
_TSP_CITATION = ("Alwassel, Giancola, Ghanem. TSP: Temporally-Sensitive Pretraining of Video Encoders for "
                 "Localization Tasks. ICCVW 2021.")

#: The public ActivityNet feature releases whose time axis is documented.
PRESETS: Dict[str, Dict[str, Any]] = {
    "c3d-release": {
        "name": "c3d-release", "layout": "hdf5", "template": "v_{video}/c3d_features", "dim": 500,
        "time_axis": {"kind": "clips", "fps": "native", "clip_frames": 16, "stride_frames": 8, "offset_frames": 0},
        "source": "official ActivityNet C3D release (sub_activitynet_v1-3.c3d.hdf5): fc7 of C3D on 16-frame clips "
                  "every 8 frames at the video's own rate, PCA to 500-d",
        "citation": "Tran et al. Learning Spatiotemporal Features with 3D Convolutional Networks. ICCV 2015; "
                    "Caba Heilbron et al. ActivityNet. CVPR 2015.",
    },
    "tsp": {
        "name": "tsp", "layout": "hdf5", "template": "v_{video}", "dim": 512,
        "time_axis": {"kind": "clips", "fps": 15, "clip_frames": 16, "stride_frames": 16, "offset_frames": 0},
        "source": "TSP R(2+1)D-34 release (one HDF5 file, one dataset per video): 16-frame clips every 16 frames "
                  "of the video re-encoded at 15 fps",
        "citation": _TSP_CITATION,
    },
    "opentad-tsp": {
        "name": "opentad-tsp", "layout": "folder", "template": "v_{video}.npy", "dim": 512,
        "time_axis": {"kind": "clips", "fps": 15, "clip_frames": 16, "stride_frames": 16, "offset_frames": 0},
        "source": "OpenTAD's anet_tsp_npy_unresize: the TSP features as v_<id>.npy; its dataset config "
                  "(configs/_base_/datasets/activitynet-1.3/features_tsp_pad.py) declares feature_stride=16, "
                  "offset_frames=8, fps=15: row i at (16 i + 8) / 15 s",
        "citation": _TSP_CITATION,
    },
    "i3d-actionformer": {
        "name": "i3d-actionformer", "layout": "folder", "template": "{video}.npy", "dim": 2048,
        "time_axis": {"kind": "clips", "fps": 25, "clip_frames": 16, "stride_frames": 16, "offset_frames": 0},
        "source": "I3D (RGB + flow, 2 x 1024-d) as ActionFormer's feature files: one .npy per video, 16-frame "
                  "clips every 16 frames of the video re-encoded at 25 fps",
        "citation": "Zhang, Wu, Li. ActionFormer: Localizing Moments of Actions with Transformers. ECCV 2022; "
                    "Carreira, Zisserman. Quo Vadis, Action Recognition? CVPR 2017.",
    },
    "tsn-csv100": {
        "name": "tsn-csv100", "layout": "folder", "template": "v_{video}.csv", "dim": 400,
        "time_axis": {"kind": "resized", "rows": 100, "span": "grid"},
        "source": "BSN/BMN two-stream TSN features csv_mean_100: 100 rows (a header row first) interpolated over "
                  "the corrected duration (BMN's corrected_second = feature_frame / duration_frame * duration)",
        "citation": "Lin et al. BSN: Boundary Sensitive Network for Temporal Action Proposal Generation. ECCV "
                    "2018; Lin et al. BMN: Boundary-Matching Network. ICCV 2019.",
    },
}


def preset(name: str) -> FeatureCard:
    """The shipped card ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown feature preset {name!r}; expected one of {sorted(PRESETS)} "
                          "(or describe your features with --feature-card FILE)")
    return FeatureCard.from_dict({**PRESETS[name], "preset": name}, file=f"preset {name}")


def load_card(card: Union[str, Path, Mapping[str, Any], FeatureCard]) -> FeatureCard:
    """A card from a YAML/JSON file, a mapping (e.g. a run's recorded card) or a FeatureCard."""
    if isinstance(card, FeatureCard):
        return card
    if isinstance(card, Mapping):
        return FeatureCard.from_dict(card)
    p = Path(card)
    if not p.is_file():
        raise ConfigError("feature card not found (expected a YAML or JSON file)", file=p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"unreadable feature card ({exc})", file=p) from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON at line {exc.lineno}: {exc.msg}", file=p) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}", file=p) from None
    return FeatureCard.from_dict(data, file=str(p))


def find_card(path: Union[str, Path]) -> Optional[Path]:
    """The card beside ``path``: in the folder, or ``<file>.card.yaml`` / ``features.card.*`` beside a file."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / n for n in CARD_NAMES]
    else:
        candidates = [p.parent / f"{p.name}.card{ext}" for ext in (".yaml", ".yml", ".json")]
        candidates += [p.parent / n for n in CARD_NAMES]
    for c in candidates:
        if c.is_file():
            return c
    return None
