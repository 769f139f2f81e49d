"""``synthetic-sprites``: an offline spatio-temporal re-localization benchmark whose classes
are *motions*.

Every video is a short clip (default 96 frames at 24 fps, 64x64 RGB) of textured actors on a
textured background seen by a slowly panning camera. An actor's class is its motion pattern
(:data:`MOTIONS`: bouncing, circling, zig-zag, growing, spinning, ...); its appearance (shape,
size, colours, texture) is drawn afresh for every instance, so the only thing a query and its
targets share is how they move. A video holds several actors of its split's classes
(distractors of other classes included), each present over a run of 8-frame clips, and
static opaque occluders that actors pass behind. Classes are split into train / val / test
(:data:`DEFAULT_SPLIT`), so test motions are never seen in training.

Nothing is stored but the manifest: frames are rendered on demand from ``(seed, video id)``
(:class:`SpriteVideos`, about a millisecond a frame), deterministically.

Manifest (task ``spatiotemporal``, tables of :mod:`relocbench.datasets.spatiotemporal`):

- time unit: frame index (0-based) at 24 fps; clip ``k`` is frames ``[8k, 8k + 8)`` and its
  keyframe is its centre frame ``8k + 4``.
- ``tubelets``: one per actor, ``start``/``end`` the first frame of its first clip and one
  past the last frame of its last clip; ``person_id`` the actor's index in the video;
  ``label`` its motion; ``tubelet_id`` ``video:actor``.
- ``boxes``: the actor's full (amodal) box at each keyframe of its run, normalised xyxy,
  clipped to the frame (a box left with less than ``min_visible`` of its area inside the
  frame is dropped and counted).
- ``pairs``/``targets`` (val and test): by :func:`relocbench.datasets.spatiotemporal.make_pairs`:
  every tubelet is a query; its reference is a tubelet of the same motion in another video,
  widened by ``max(own length, 16 frames)`` on each side within the video, scored at the
  keyframes of the clips inside that window.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from ..errors import ConfigError, OutputExistsError
from ..manifest import Manifest, open_manifest, write_manifest

__all__ = [
    "MOTIONS",
    "DEFAULT_SPLIT",
    "SpritesConfig",
    "SpriteVideos",
    "sprites_tables",
    "build_sprites",
    "sprites_cache_dir",
    "open_sprites",
    "FPS",
    "CLIP_LEN",
]

FPS = 24
CLIP_LEN = 8
BUILDER_NAME = "relocbench.video.sprites"
BUILDER_VERSION = 1

# --------------------------------------------------------------------------- motions
# A motion maps frame times ``t`` (float array) and the instance's parameters to the actor's
# centre (x, y) in pixels of the frame *before* the camera pan, a scale, a rotation (radians)
# and an aspect factor (width multiplier; height gets its inverse).
MotionFn = Callable[[np.ndarray, dict], Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave with period 1, in [0, 1] (0 at integers, 1 at halves)."""
    f = x - np.floor(x)
    return 1.0 - np.abs(2.0 * f - 1.0)


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Position of a point moving freely, bounced between ``lo`` and ``hi``."""
    span = hi - lo
    return lo + span * _tri((p - lo) / (2.0 * span))


def _ones(t):
    return np.ones_like(t)


def _zeros(t):
    return np.zeros_like(t)


def _bounce(t, p):
    x = _reflect(p["x0"] + p["v"] * math.cos(p["dir"]) * t, 12.0, 52.0)
    y = _reflect(p["y0"] + p["v"] * math.sin(p["dir"]) * t, 12.0, 52.0)
    return x, y, _ones(t), _zeros(t), _ones(t)


def _drift(t, p):
    x = _reflect(p["x0"] + 0.35 * p["sign"] * math.cos(p["dir"]) * t, 12.0, 52.0)
    y = _reflect(p["y0"] + 0.35 * math.sin(p["dir"]) * t, 12.0, 52.0)
    return x, y, _ones(t), _zeros(t), _ones(t)


def _circle(t, p):
    a = p["phase"] + p["sign"] * 2 * math.pi * t / (40.0 * p["speed"])
    return p["cx"] + 11.0 * np.cos(a), p["cy"] + 11.0 * np.sin(a), _ones(t), _zeros(t), _ones(t)


def _figure8(t, p):
    a = p["phase"] + p["sign"] * 2 * math.pi * t / (56.0 * p["speed"])
    return p["cx"] + 13.0 * np.sin(a), p["cy"] + 7.0 * np.sin(2 * a), _ones(t), _zeros(t), _ones(t)


def _spiral(t, p):
    a = p["phase"] + p["sign"] * 2 * math.pi * t / (32.0 * p["speed"])
    r = 3.0 + 11.0 * _tri(t / (64.0 * p["speed"]) + p["phase"])
    return p["cx"] + r * np.cos(a), p["cy"] + r * np.sin(a), _ones(t), _zeros(t), _ones(t)


def _zigzag(t, p):
    x = _reflect(p["x0"] + 0.9 * p["sign"] * t / p["speed"], 12.0, 52.0)
    y = p["cy"] + 8.0 * (2.0 * _tri(t / (20.0 * p["speed"]) + p["phase"]) - 1.0)
    return x, y, _ones(t), _zeros(t), _ones(t)


def _bob(t, p):
    y = p["cy"] + 9.0 * np.sin(p["phase"] + 2 * math.pi * t / (28.0 * p["speed"]))
    return p["cx"] + 0.0 * t, y, _ones(t), _zeros(t), _ones(t)


def _pendulum(t, p):
    th = 0.9 * np.sin(p["phase"] + 2 * math.pi * t / (36.0 * p["speed"]))
    return p["cx"] + 16.0 * np.sin(th), p["cy"] - 10.0 + 16.0 * np.cos(th), _ones(t), th, _ones(t)


def _stopgo(t, p):
    period = 24.0 * p["speed"]
    k = np.floor(t / period)
    frac = np.clip((t / period - k) * 2.0, 0.0, 1.0)  # moves during the first half, rests after
    x = _reflect(p["x0"] + p["sign"] * 12.0 * (k + frac), 12.0, 52.0)
    return x, p["cy"] + 0.0 * t, _ones(t), _zeros(t), _ones(t)


def _shake(t, p):
    rng = np.random.default_rng(p["noise_seed"])
    jx = rng.uniform(-2.5, 2.5, size=256)
    jy = rng.uniform(-2.5, 2.5, size=256)
    i = np.mod(np.round(t).astype(int), 256)
    return p["cx"] + jx[i], p["cy"] + jy[i], _ones(t), _zeros(t), _ones(t)


def _hop(t, p):
    period = 18.0 * p["speed"]
    x = _reflect(p["x0"] + 0.7 * p["sign"] * t, 12.0, 52.0)
    y = p["cy"] + 6.0 - 14.0 * np.abs(np.sin(np.pi * t / period + p["phase"]))
    return x, y, _ones(t), _zeros(t), _ones(t)


def _grow(t, p):
    s = 0.55 + 0.9 * np.mod(t / (40.0 * p["speed"]) + p["phase"], 1.0)
    return p["cx"] + 0.0 * t, p["cy"] + 0.0 * t, s, _zeros(t), _ones(t)


def _pulse(t, p):
    s = 1.0 + 0.3 * np.sin(p["phase"] + 2 * math.pi * t / (12.0 * p["speed"]))
    return p["cx"] + 0.0 * t, p["cy"] + 0.0 * t, s, _zeros(t), _ones(t)


def _spin(t, p):
    a = p["sign"] * 2 * math.pi * t / (24.0 * p["speed"]) + p["phase"]
    return p["cx"] + 0.0 * t, p["cy"] + 0.0 * t, _ones(t), a, _ones(t)


def _squash(t, p):
    asp = np.exp(0.45 * np.sin(p["phase"] + 2 * math.pi * t / (16.0 * p["speed"])))
    return p["cx"] + 0.0 * t, p["cy"] + 0.0 * t, _ones(t), _zeros(t), asp


def _static(t, p):
    return p["cx"] + 0.0 * t, p["cy"] + 0.0 * t, _ones(t), _zeros(t), _ones(t)


#: motion name -> function; the class of an actor is its motion.
MOTIONS: Dict[str, MotionFn] = {
    "bounce": _bounce, "drift": _drift, "circle": _circle, "figure8": _figure8, "spiral": _spiral,
    "zigzag": _zigzag, "bob": _bob, "pendulum": _pendulum, "stopgo": _stopgo, "shake": _shake, "hop": _hop,
    "grow": _grow, "pulse": _pulse, "spin": _spin, "squash": _squash, "static": _static,
}

#: the class split: test motions are never seen in training.
DEFAULT_SPLIT: Dict[str, Tuple[str, ...]] = {
    "train": ("bounce", "drift", "circle", "spiral", "bob", "stopgo", "shake", "pulse", "squash"),
    "val": ("figure8", "grow", "static"),
    "test": ("zigzag", "spin", "pendulum", "hop"),
}


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SpritesConfig:
    """Every parameter of the generator (all of them go into ``manifest.json``)."""

    seed: int = 0
    size: int = 64  # frame height and width, pixels
    n_clips: int = 12  # clips per video (8 frames each): 96 frames = 4 s at 24 fps
    videos: Tuple[int, int, int] = (240, 24, 48)  # train, val, test
    actors: Tuple[int, int] = (3, 4)  # actors per video, inclusive range
    min_run_clips: int = 5  # shortest run of clips an actor is present
    occluders: Tuple[int, int] = (0, 2)  # static occluders per video, inclusive range
    max_pan: float = 0.12  # camera pan speed bound, pixels per frame
    min_context: int = 16  # reference window padding, frames (make_pairs' min_pad)
    min_visible: float = 0.3  # boxes with less of their area inside the frame are dropped
    split: Tuple[Tuple[str, Tuple[str, ...]], ...] = tuple((k, v) for k, v in DEFAULT_SPLIT.items())

    def validate(self) -> "SpritesConfig":
        def bad(name, want, got):
            raise ConfigError(f"The '{name}' parameter of SpritesConfig must be {want}. Got {got!r} instead.")

        if self.size < 32 or self.size % 16:
            bad("size", "a multiple of 16 >= 32", self.size)
        if self.n_clips < 2:
            bad("n_clips", "an int >= 2", self.n_clips)
        if len(self.videos) != 3 or any(v < 1 for v in self.videos):
            bad("videos", "three ints >= 1 (train, val, test)", self.videos)
        if len(self.actors) != 2 or not 1 <= self.actors[0] <= self.actors[1]:
            bad("actors", "(min, max) with 1 <= min <= max", self.actors)
        if not 1 <= self.min_run_clips <= self.n_clips:
            bad("min_run_clips", f"in [1, n_clips={self.n_clips}]", self.min_run_clips)
        if len(self.occluders) != 2 or not 0 <= self.occluders[0] <= self.occluders[1]:
            bad("occluders", "(min, max) with 0 <= min <= max", self.occluders)
        if not 0 <= self.max_pan <= 1:
            bad("max_pan", "in [0, 1] pixels per frame", self.max_pan)
        if not 0 <= self.min_visible <= 1:
            bad("min_visible", "in [0, 1]", self.min_visible)
        names = [s for s, _ in self.split]
        if sorted(names) != ["test", "train", "val"]:
            bad("split", "a mapping of train, val and test to motion names", dict(self.split))
        seen: Dict[str, str] = {}
        for s, motions in self.split:
            if len(motions) < 1:
                bad("split", f"at least one motion in split {s!r}", dict(self.split))
            for m in motions:
                if m not in MOTIONS:
                    bad("split", f"made of motions from {sorted(MOTIONS)}", m)
                if m in seen:
                    bad("split", f"class-disjoint ({m!r} is in {seen[m]!r} and {s!r})", dict(self.split))
                seen[m] = s
        return self

    @property
    def n_frames(self) -> int:
        return self.n_clips * CLIP_LEN

    def classes(self, split: str) -> Tuple[str, ...]:
        return dict(self.split)[split]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["split"] = {k: list(v) for k, v in self.split}
        d["videos"], d["actors"], d["occluders"] = list(self.videos), list(self.actors), list(self.occluders)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpritesConfig":
        """The inverse of :meth:`to_dict` (e.g. from a manifest's ``params``)."""
        try:
            d = dict(d)
            split = d.pop("split")
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()},
                       split=tuple((k, tuple(v)) for k, v in split.items())).validate()
        except (TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"not a synthetic-sprites generator config ({exc})") from None

    def digest(self) -> str:
        doc = json.dumps({"config": self.to_dict(), "builder": BUILDER_VERSION}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- scenes
def video_ids(config: SpritesConfig, split: str) -> List[str]:
    n = dict(zip(("train", "val", "test"), config.videos))[split]
    return [f"{split}{i:04d}" for i in range(n)]


def _split_of(video: str) -> str:
    for s in ("train", "val", "test"):
        if video.startswith(s) and video[len(s):].isdigit():
            return s
    raise ConfigError(f"not a synthetic-sprites video id: {video!r} (expected train0000, val0003, test0012, ...)")


def _video_rng(config: SpritesConfig, video: str, what: str) -> np.random.Generator:
    key = int(hashlib.sha256(f"{video}/{what}".encode()).hexdigest()[:12], 16)
    return np.random.default_rng([int(config.seed), key])


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random float32 RGB texture in [0, 1]: two colours mixed by stripes, checks or blobs."""
    c1, c2 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    while np.abs(c1 - c2).sum() < 0.6:
        c2 = rng.uniform(0.05, 0.95, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:  # stripes
        ang, freq = rng.uniform(0, np.pi), rng.uniform(0.25, 0.8)
        m = (np.sin(freq * (xx * np.cos(ang) + yy * np.sin(ang))) > 0).astype(np.float32)
    elif kind == 1:  # checks
        cell = int(rng.integers(2, 5))
        m = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    else:  # blobs
        import cv2

        small = rng.uniform(0, 1, (max(2, h // 4), max(2, w // 4))).astype(np.float32)
        m = (cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) > 0.5).astype(np.float32)
    return (m[..., None] * c1 + (1 - m[..., None]) * c2).astype(np.float32)


@dataclass
class _Actor:
    motion: str
    params: dict
    start_clip: int
    end_clip: int
    width: float
    height: float
    shape: int  # 0 rectangle, 1 ellipse, 2 diamond
    texture: np.ndarray = field(repr=False)


@dataclass
class _Scene:
    background: np.ndarray  # (size + 2 * margin, ...) float32 RGB
    margin: int
    pan: Tuple[float, float]  # pixels per frame (x, y)
    actors: List[_Actor]
    occluders: List[Tuple[int, int, int, int, np.ndarray]]  # world x1, y1, x2, y2, texture


def _motion_params(rng: np.random.Generator, size: int) -> dict:
    s = size / 64.0
    return {
        "x0": float(rng.uniform(14, 50)), "y0": float(rng.uniform(14, 50)),
        "cx": float(rng.uniform(20, 44)), "cy": float(rng.uniform(20, 44)),
        "v": float(rng.uniform(0.9, 1.5)), "dir": float(rng.uniform(0, 2 * np.pi)),
        "sign": float(rng.choice([-1.0, 1.0])), "phase": float(rng.uniform(0, 1)),
        "speed": float(rng.uniform(0.85, 1.2)), "noise_seed": int(rng.integers(2**31)), "scale": s,
    }


def make_scene(config: SpritesConfig, video: str) -> _Scene:
    """The actors, background, pan and occluders of ``video`` (from ``(seed, video)`` only)."""
    split = _split_of(video)
    classes = config.classes(split)
    rng = _video_rng(config, video, "scene")
    size = config.size
    margin = int(math.ceil(config.max_pan * config.n_frames)) + 2
    bg = _texture(rng, size + 2 * margin, size + 2 * margin)
    # soften the background so actors stand out by their edges, not by contrast alone
    bg = 0.55 * bg + 0.45 * rng.uniform(0.2, 0.8, 3).astype(np.float32)
    pan = tuple(float(v) for v in rng.uniform(-config.max_pan, config.max_pan, 2))
    n_act = int(rng.integers(config.actors[0], config.actors[1] + 1))
    # distinct motions while the split has enough (then every class once, and random extras):
    # the other actors of a video are distractors of other classes
    order = list(rng.permutation(len(classes)))
    extra = [int(i) for i in rng.integers(len(classes), size=max(0, n_act - len(classes)))]
    motions = [classes[int(i)] for i in (order + extra)[:n_act]]
    actors = []
    for m in motions:
        run = int(rng.integers(config.min_run_clips, config.n_clips + 1))
        start = int(rng.integers(0, config.n_clips - run + 1))
        base = rng.uniform(10, 15) * size / 64.0
        asp = rng.uniform(0.75, 1.33)
        w, h = float(base * math.sqrt(asp)), float(base / math.sqrt(asp))
        tex = _texture(rng, 32, 32)
        actors.append(_Actor(m, _motion_params(rng, size), start, start + run, w, h, int(rng.integers(3)), tex))
    occ = []
    for _ in range(int(rng.integers(config.occluders[0], config.occluders[1] + 1))):
        vertical = bool(rng.integers(2))
        thick = int(rng.integers(5, 9))
        lo = int(rng.integers(margin + 8, margin + size - 8 - thick))
        a = int(rng.integers(margin, margin + size // 2))
        b = int(rng.integers(a + size // 3, margin + size + 1))
        x1, y1, x2, y2 = (lo, a, lo + thick, b) if vertical else (a, lo, b, lo + thick)
        occ.append((x1, y1, x2, y2, _texture(rng, y2 - y1, x2 - x1)))
    return _Scene(bg, margin, pan, actors, occ)


def _actor_geometry(actor: _Actor, t: np.ndarray, size: int):
    """Centre (x, y) in frame pixels before the pan, half sizes and rotation at frame times t."""
    x, y, s, rot, asp = MOTIONS[actor.motion](t.astype(np.float64), actor.params)
    k = size / 64.0
    hw = 0.5 * actor.width * s * asp
    hh = 0.5 * actor.height * s / asp
    return x * k, y * k, hw, hh, rot


def _boxes_of(actor: _Actor, t: np.ndarray, config: SpritesConfig, pan) -> np.ndarray:
    """Amodal axis-aligned boxes (pixels, xyxy) of the rotated actor at frame times t."""
    x, y, hw, hh, rot = _actor_geometry(actor, t, config.size)
    x = x - pan[0] * t
    y = y - pan[1] * t
    c, s = np.abs(np.cos(rot)), np.abs(np.sin(rot))
    if actor.shape == 1:  # ellipse: exact extent of a rotated ellipse
        ex = np.sqrt((hw * np.cos(rot)) ** 2 + (hh * np.sin(rot)) ** 2)
        ey = np.sqrt((hw * np.sin(rot)) ** 2 + (hh * np.cos(rot)) ** 2)
    elif actor.shape == 2:  # diamond: the vertices on the axes
        ex = np.maximum(hw * c, hh * s)
        ey = np.maximum(hw * s, hh * c)
    else:
        ex = hw * c + hh * s
        ey = hw * s + hh * c
    return np.stack([x - ex, y - ey, x + ex, y + ey], axis=1)


def _render_actor(frame: np.ndarray, actor: _Actor, t: float, config: SpritesConfig, pan) -> None:
    import cv2

    x, y, hw, hh, rot = (float(v[0]) for v in _actor_geometry(actor, np.array([t]), config.size))
    x -= pan[0] * t
    y -= pan[1] * t
    n = actor.texture.shape[0]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    u, v = (xx + 0.5) / n * 2 - 1, (yy + 0.5) / n * 2 - 1
    if actor.shape == 0:
        mask = np.ones((n, n), np.float32)
    elif actor.shape == 1:
        mask = (u * u + v * v <= 1.0).astype(np.float32)
    else:
        mask = (np.abs(u) + np.abs(v) <= 1.0).astype(np.float32)
    # affine map from texture pixels to frame pixels: scale to the half sizes, rotate, move
    sx, sy = 2 * hw / n, 2 * hh / n
    c, s = math.cos(rot), math.sin(rot)
    a = np.array([[c * sx, -s * sy], [s * sx, c * sy]], np.float64)
    centre = np.array([n / 2.0, n / 2.0])
    off = np.array([x, y]) - a @ centre
    m = np.hstack([a, off[:, None]]).astype(np.float64)
    size = config.size
    rgb = cv2.warpAffine(actor.texture, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    frame *= 1 - alpha[..., None]
    frame += alpha[..., None] * rgb


class SpriteVideos:
    """Frames of the synthetic-sprites videos, rendered on demand and cached per video.

    ``frames(video)`` is the whole video ``(n_frames, size, size, 3)`` uint8 RGB;
    ``clip(video, time)`` the 8-frame clip whose keyframe (centre frame) is ``time``.
    """

    fps = FPS
    time_unit = "frame"

    def __init__(self, config: SpritesConfig, *, cache_videos: int = 320) -> None:
        self.config = config.validate()
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._scenes: "OrderedDict[str, _Scene]" = OrderedDict()
        self.cache_videos = int(cache_videos)

    def describe(self) -> dict:
        return {"source": "synthetic-sprites", "config": self.config.to_dict()}

    def __contains__(self, video: str) -> bool:
        try:
            s = _split_of(video)
        except ConfigError:
            return False
        return video in set(video_ids(self.config, s))

    def scene(self, video: str) -> _Scene:
        if video not in self._scenes:
            if video not in self:
                raise ConfigError(f"synthetic-sprites has no video {video!r} with this config")
            self._scenes[video] = make_scene(self.config, video)
            if len(self._scenes) > 4 * self.cache_videos:
                self._scenes.popitem(last=False)
        return self._scenes[video]

    def render_frame(self, video: str, t: int) -> np.ndarray:
        sc = self.scene(video)
        size, mg = self.config.size, sc.margin
        import cv2

        m = np.array([[1.0, 0.0, -(mg + sc.pan[0] * t)], [0.0, 1.0, -(mg + sc.pan[1] * t)]])
        frame = cv2.warpAffine(sc.background, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        k = t // CLIP_LEN
        for a in sc.actors:
            if a.start_clip <= k < a.end_clip:
                _render_actor(frame, a, float(t), self.config, sc.pan)
        for (x1, y1, x2, y2, tex) in sc.occluders:
            # occluders are fixed in the world: they move with the background
            fx1 = x1 - mg - sc.pan[0] * t
            fy1 = y1 - mg - sc.pan[1] * t
            mo = np.array([[1.0, 0.0, fx1], [0.0, 1.0, fy1]])
            rgb = cv2.warpAffine(tex, mo, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(np.ones(tex.shape[:2], np.float32), mo, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            frame = frame * (1 - alpha[..., None]) + alpha[..., None] * rgb
        return np.clip(np.round(frame * 255.0), 0, 255).astype(np.uint8)

    def frames(self, video: str) -> np.ndarray:
        hit = self._cache.get(video)
        if hit is not None:
            self._cache.move_to_end(video)
            return hit
        arr = np.stack([self.render_frame(video, t) for t in range(self.config.n_frames)])
        arr.setflags(write=False)
        self._cache[video] = arr
        if len(self._cache) > self.cache_videos:
            self._cache.popitem(last=False)
        return arr

    def n_frames(self, video: str) -> int:
        return self.config.n_frames

    def duration_s(self, video: str) -> float:
        return self.config.n_frames / FPS

    def seconds(self, time: float) -> float:
        """A manifest time (frame index) in seconds."""
        return float(time) / FPS

    def clip(self, video: str, time: float, size=None) -> np.ndarray:
        """``(8, size, size, 3)`` uint8: frames ``[time - 4, time + 4)``, edge frames repeated
        (resized when ``size`` differs from the generator's)."""
        fr = self.frames(video)
        idx = np.clip(np.arange(CLIP_LEN) + int(round(time)) - CLIP_LEN // 2, 0, len(fr) - 1)
        return _resized(fr[idx], size)

    def frame(self, video: str, time: float, size=None) -> np.ndarray:
        """The keyframe itself."""
        fr = self.frames(video)
        return _resized(fr[int(np.clip(round(time), 0, len(fr) - 1))][None], size)[0]


def _resized(frames: np.ndarray, size) -> np.ndarray:
    if size is None:
        return frames
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (h, w):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])


# --------------------------------------------------------------------------- tables
def sprites_tables(config: SpritesConfig):
    """``({(table, split): DataFrame}, report dict)`` of the manifest (no I/O)."""
    from ..datasets.common import Report
    from ..datasets.spatiotemporal import BOX_COLUMNS, TUBELET_COLUMNS, ContextRule, make_pairs, split_tables

    config.validate()
    report = Report()
    tub_rows, box_parts = [], []
    size = float(config.size)
    for split in ("train", "val", "test"):
        for video in video_ids(config, split):
            sc = make_scene(config, video)
            for i, a in enumerate(sc.actors):
                tid = f"{video}:{i}"
                kf = np.arange(a.start_clip, a.end_clip) * CLIP_LEN + CLIP_LEN // 2
                b = _boxes_of(a, kf.astype(float), config, sc.pan)
                area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                cl = np.clip(b, 0.0, size)
                inside = (cl[:, 2] - cl[:, 0]).clip(0) * (cl[:, 3] - cl[:, 1]).clip(0)
                ok = inside >= config.min_visible * area
                if not ok.all():
                    report.add("keyframe boxes mostly outside the frame (dropped)", tid, n=int((~ok).sum()))
                if not ok.any():
                    report.add("actors never inside the frame at a keyframe (dropped)", tid)
                    continue
                tub_rows.append((tid, video, a.motion, split, float(a.start_clip * CLIP_LEN),
                                 float(a.end_clip * CLIP_LEN), int(ok.sum()), i))
                nb = cl[ok] / size
                box_parts.append(pd.DataFrame({"tubelet_id": tid, "time": kf[ok].astype(float),
                                               "x1": nb[:, 0], "y1": nb[:, 1], "x2": nb[:, 2], "y2": nb[:, 3]}))
    tubelets = pd.DataFrame(tub_rows, columns=TUBELET_COLUMNS)
    boxes = pd.concat(box_parts, ignore_index=True)[BOX_COLUMNS]
    n = config.n_frames

    def keyframes(video: str, ws: float, we: float) -> np.ndarray:
        k = np.arange(config.n_clips)
        ok = (k * CLIP_LEN >= ws - 1e-9) & ((k + 1) * CLIP_LEN <= we + 1e-9)
        return (k[ok] * CLIP_LEN + CLIP_LEN // 2).astype(float)

    rule = ContextRule(min_pad=float(config.min_context))
    pairs = {}
    for split in ("val", "test"):
        tub = tubelets[tubelets["split"] == split]
        video_range = {v: (0.0, float(n)) for v in tub["video"].unique()}
        pairs[split] = make_pairs(tub, boxes, split=split, seed=config.seed, rule=rule, video_range=video_range,
                                  keyframes=keyframes, other_video=True, report=report)
    return split_tables(tubelets, boxes, pairs), report.to_dict()


def build_sprites(out, config: Optional[SpritesConfig] = None, *, force: bool = False) -> Path:
    """Generate the synthetic-sprites manifest into folder ``out`` (atomically).

    >>> build_sprites("/tmp/sprites", SpritesConfig(videos=(8, 4, 4)))  # doctest: +SKIP
    """
    config = (config or SpritesConfig()).validate()
    tables, report = sprites_tables(config)
    meta = {
        "name": "synthetic-sprites", "task": "spatiotemporal",
        "builder": {"name": BUILDER_NAME, "version": BUILDER_VERSION},
        "protocol": "synthetic-sprites", "params": config.to_dict(), "inputs": {},
        "units": {"time": f"frame index (0-based) at {FPS} fps",
                  "keyframes": f"centre frame {CLIP_LEN}k + {CLIP_LEN // 2} of each {CLIP_LEN}-frame clip",
                  "fps": FPS, "keyframe_stride": CLIP_LEN},
        "report": report,
    }
    return write_manifest(out, tables, meta, force=force)


def sprites_cache_dir() -> Path:
    """Where generated manifests are cached: ``$RELOCBENCH_CACHE`` or ``~/.cache/relocbench``."""
    env = os.environ.get("RELOCBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "relocbench"


def open_sprites(config: Optional[SpritesConfig] = None, *, cache_dir=None) -> Manifest:
    """The synthetic-sprites manifest of ``config``, generated on first use and cached under
    ``<cache_dir>/synthetic-sprites-<config digest>``."""
    config = (config or SpritesConfig()).validate()
    root = Path(cache_dir) if cache_dir is not None else sprites_cache_dir()
    path = root / f"synthetic-sprites-{config.digest()}"
    if not (path / "manifest.json").is_file():
        try:
            build_sprites(path, config)
        except OutputExistsError:  # another process (e.g. a DDP rank) generated it meanwhile
            pass
    return open_manifest(path)
