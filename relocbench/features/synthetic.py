"""The synthetic feature generator (the default store: runs offline, same numbers everywhere).

Moved unchanged from the former ``relocbench/features.py``: the committed leaderboard was
produced with it, so every number it renders must stay the same bit for bit.
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, FeatureError
from .base import FeatureStore, stable_rng

if TYPE_CHECKING:  # pandas is imported where a timelines table is read, not by `import relocbench.features`
    import pandas as pd

__all__ = ["TIMELINE_COLUMNS", "SyntheticFeatures"]

TIMELINE_COLUMNS = ("video", "label", "start_step", "end_step", "n_steps")


class SyntheticFeatures(FeatureStore):
    """Deterministic features rendered on real timelines (the default store: runs offline).

    For every annotated segment of a video (every row of the ``timelines`` table, kept or
    not) the steps ``start_step .. end_step - 1`` carry the signal of its class; the other
    steps carry the video's background. Segments of zero steps render nothing; where
    segments overlap, their signals are averaged.

    * **Classes.** Each class has a fixed sequence of 3 to 6 latent *phase* vectors
      (the number derives from the class name). Phase ``p`` of class ``c`` is
      ``sqrt(s) G_p + sqrt(1 - s) U_{c,p}`` with ``G`` phase vectors shared by every class,
      ``U`` the class's own and ``s = class_similarity``: at ``s = 0`` classes are unrelated,
      at ``s = 1`` identical.
    * **Instances.** An instance of ``L`` steps plays its class's phases in order, stretched
      to ``L`` with a random tempo: the phase knots sit at cumulative random (log-normal)
      durations, and the signal interpolates linearly between consecutive phase vectors.
      Its amplitude varies by a random factor in [0.8, 1.2]; ``background_leak`` of the
      background stays under the action.
    * **Unannotated activity.** Real backgrounds are not static, so the steps outside every
      annotation are cut into chunks of 4 to 32 steps, each of which, with probability
      ``background_activity``, plays the phases of one of ``background_classes``
      pseudo-classes that belong to no split. A model that only tells action from
      background (SST ignores the query) is then misled; matching the query is needed.
    * **Videos.** Each video has a background scene vector, and an appearance: a
      near-identity random linear map ``x -> x + a (x U) V^T`` (rank ``appearance_rank``;
      ``a = appearance_shift`` is the standard deviation it adds per dimension to a
      unit-variance input) plus an offset of standard deviation ``a``. Noise is temporally
      correlated: a moving average of white noise over ``noise_corr_steps`` steps, scaled to
      standard deviation ``noise``.

    Phase, background and noise vectors have unit variance per dimension. Everything
    derives from ``(seed, class name)`` and ``(seed, video id)`` through SHA-256
    (:func:`stable_rng`), so any video is computed on demand in about a millisecond and is
    identical on every machine (the low-rank map is computed in float64 and rounded to
    float32, so BLAS summation order cannot show).

    Defaults (``noise=3.5``, ``appearance_shift=1.25``, ``class_similarity=0.85``,
    ``background_activity=0.5``) were set with the frame-level baseline on every fourth
    validation pair of the committed ActivityNet manifest (seed 0): it reaches an average
    mAP@1 (0.5 ... 0.9) of about 15 % against about 4 % for chance, so matching is possible
    but far from solved; a ``cgbm`` trained for only 300 steps of batch 32 reaches 26 %
    there, so the task is learnable with room to spare. Without background activity the
    frame-level baseline reaches 19 % and such a ``cgbm`` (400 steps) 78 %: too easy.
    Lower noise or similarity make it easier (noise 1.0 / shift 0.5 / similarity 0.6, no
    background activity: the frame-level baseline reaches 84 %).
    """

    kind = "synthetic"

    def __init__(
        self,
        timelines: pd.DataFrame,
        *,
        seed: int = 0,
        dim: int = 500,
        noise: float = 3.5,
        appearance_shift: float = 1.25,
        class_similarity: float = 0.85,
        appearance_rank: int = 8,
        noise_corr_steps: int = 4,
        background_leak: float = 0.3,
        background_activity: float = 0.5,
        background_classes: int = 64,
        skip_missing: bool = False,
        cache_mb: Optional[float] = None,
        source: Optional[str] = None,
    ) -> None:
        super().__init__(dim=dim, skip_missing=skip_missing, cache_mb=cache_mb)
        checks = [
            ("noise", noise, noise >= 0, "a number >= 0"),
            ("appearance_shift", appearance_shift, appearance_shift >= 0, "a number >= 0"),
            ("class_similarity", class_similarity, 0 <= class_similarity <= 1, "a number in [0, 1]"),
            ("background_leak", background_leak, background_leak >= 0, "a number >= 0"),
            ("background_activity", background_activity, 0 <= background_activity <= 1, "a number in [0, 1]"),
            ("background_classes", background_classes,
             isinstance(background_classes, int) and background_classes >= 1, "an int >= 1"),
            ("appearance_rank", appearance_rank, isinstance(appearance_rank, int) and appearance_rank >= 1,
             "an int >= 1"),
            ("noise_corr_steps", noise_corr_steps, isinstance(noise_corr_steps, int) and noise_corr_steps >= 1,
             "an int >= 1"),
            ("seed", seed, isinstance(seed, (int, np.integer)), "an int"),
        ]
        for name, val, ok, what in checks:
            if not ok or (isinstance(val, float) and not math.isfinite(val)):
                raise ConfigError(f"The {name!r} parameter of SyntheticFeatures must be {what}. Got {val!r} instead.")
        self.seed = int(seed)
        self.noise = float(noise)
        self.appearance_shift = float(appearance_shift)
        self.class_similarity = float(class_similarity)
        self.appearance_rank = int(appearance_rank)
        self.noise_corr_steps = int(noise_corr_steps)
        self.background_leak = float(background_leak)
        self.background_activity = float(background_activity)
        self.background_classes = int(background_classes)
        self._source = source
        self._videos = self._index(timelines, source)
        self._phases: Dict[str, np.ndarray] = {}
        self._shared: Optional[np.ndarray] = None

    # ---- construction
    @staticmethod
    def _index(df: pd.DataFrame, source: Optional[str]) -> Dict[str, Tuple[int, list]]:
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise ConfigError(f"SyntheticFeatures needs the timelines table as a DataFrame. Got {type(df).__name__}.")
        missing = [c for c in TIMELINE_COLUMNS if c not in df.columns]
        if missing:
            raise FeatureError(f"the timelines table lacks columns {missing}", file=source)
        out: Dict[str, Tuple[int, list]] = {}
        videos = df["video"].astype(str).to_numpy()
        labels = df["label"].astype(str).to_numpy()
        starts = df["start_step"].to_numpy(np.int64)
        ends = df["end_step"].to_numpy(np.int64)
        nsteps = df["n_steps"].to_numpy(np.int64)
        for v, lab, s, e, n in zip(videos, labels, starts, ends, nsteps):
            if v in out:
                if out[v][0] != n:
                    raise FeatureError(
                        f"the timelines table gives two lengths for this video ({out[v][0]} and {n} steps)",
                        file=source, item=v,
                    )
            else:
                if n <= 0:
                    raise FeatureError(f"the timelines table gives the video {n} steps; expected > 0",
                                       file=source, item=v)
                out[v] = (int(n), [])
            out[v][1].append((lab, int(s), int(e)))
        for v, (_, segs) in out.items():
            segs.sort(key=lambda t: (t[1], t[2], t[0]))
        return out

    @classmethod
    def from_manifest(cls, manifest: Any, **kwargs: Any) -> "SyntheticFeatures":
        """Build from a manifest name, folder, :class:`~relocbench.manifest.Manifest` or timelines table."""
        import pandas as pd

        from ..manifest import Manifest, open_manifest

        if isinstance(manifest, pd.DataFrame):
            return cls(manifest, **kwargs)
        m = manifest if isinstance(manifest, Manifest) else open_manifest(manifest)
        if m.task != "temporal":
            raise FeatureError(
                f"synthetic features need a temporal manifest; this one is {m.task!r}", file=m.path
            )
        df = m.table("timelines", None)
        kwargs.setdefault("source", str(m.file_for("timelines", None)))
        return cls(df, **kwargs)

    # ---- interface
    @property
    def source(self) -> Optional[str]:
        return self._source

    def describe(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "seed": self.seed, "dim": self.dim, "noise": self.noise,
            "appearance_shift": self.appearance_shift, "class_similarity": self.class_similarity,
            "appearance_rank": self.appearance_rank, "noise_corr_steps": self.noise_corr_steps,
            "background_leak": self.background_leak, "background_activity": self.background_activity,
            "background_classes": self.background_classes,
        }

    def videos(self) -> List[str]:
        return sorted(self._videos)

    def shape_of(self, video: str):
        """``(n_steps, dim, 'float32')`` of a video of the timelines table, or None."""
        if video not in self._videos:
            return None
        return self._videos[video][0], self.dim, "float32"

    def n_steps(self, video: str) -> int:
        if video not in self._videos:
            raise FeatureError("video not in the timelines table", file=self.source, item=video)
        return self._videos[video][0]

    def _has(self, video: str) -> bool:
        return video in self._videos

    def _infer_dim(self) -> int:  # pragma: no cover - dim is always given
        return 500

    # ---- rendering
    def class_phases(self, label: str) -> np.ndarray:
        """The class's phase vectors ``[n_phases, dim]`` (3 to 6 of them), float32."""
        ph = self._phases.get(label)
        if ph is None:
            if self._shared is None:
                self._shared = stable_rng("relocbench-synthetic", self.seed, "shared-phases").standard_normal(
                    (6, self.dim), dtype=np.float32)
            rng = stable_rng("relocbench-synthetic", self.seed, "class", label)
            n = 3 + int(hashlib.sha256(f"phases\x1f{label}".encode()).digest()[0]) % 4
            own = rng.standard_normal((n, self.dim), dtype=np.float32)
            s = self.class_similarity
            ph = (math.sqrt(s) * self._shared[:n] + math.sqrt(1.0 - s) * own).astype(np.float32)
            ph.setflags(write=False)
            self._phases[label] = ph
        return ph

    @staticmethod
    def _instance(phases: np.ndarray, length: int, irng: np.random.Generator) -> np.ndarray:
        """One instance of ``length`` steps playing ``phases`` in order with a random tempo."""
        k = phases.shape[0]
        durations = np.exp(0.5 * irng.standard_normal(k - 1))
        knots = np.concatenate([[0.0], np.cumsum(durations) / durations.sum()])
        amp = np.float32(irng.uniform(0.8, 1.2))
        u = np.interp((np.arange(length) + 0.5) / length, knots, np.arange(k, dtype=np.float64))
        lo = np.minimum(np.floor(u).astype(np.int64), k - 1)
        hi = np.minimum(lo + 1, k - 1)
        f = (u - lo).astype(np.float32)[:, None]
        return amp * ((1.0 - f) * phases[lo] + f * phases[hi])

    def _background_activity(self, video: str, x: np.ndarray, act: np.ndarray, background: np.ndarray) -> None:
        """Unannotated activity: background chunks of 4..32 steps play pseudo-class phases."""
        n = x.shape[0]
        rng = stable_rng("relocbench-synthetic", self.seed, "background-activity", video)
        bounds = np.concatenate([[0], np.cumsum(rng.integers(4, 33, size=n // 4 + 1))])
        bounds = bounds[bounds < n].tolist() + [n]
        play = rng.random(len(bounds) - 1) < self.background_activity
        which = rng.integers(0, self.background_classes, size=len(bounds) - 1)
        for a, b, on, k in zip(bounds[:-1], bounds[1:], play, which):
            free = ~act[a:b]
            if not on or not free.any():
                continue
            sig = self._instance(self.class_phases(f"\x00background-{int(k)}"), b - a, rng)
            x[a:b][free] = self.background_leak * background + sig[free]

    def _load(self, video: str) -> Optional[np.ndarray]:
        if video not in self._videos:
            return None
        n, segs = self._videos[video]
        d = self.dim
        rng = stable_rng("relocbench-synthetic", self.seed, "video", video)
        background = rng.standard_normal(d, dtype=np.float32)
        x = np.broadcast_to(background, (n, d)).copy()
        acc = np.zeros((n, d), dtype=np.float32)
        cover = np.zeros(n, dtype=np.float32)
        for label, s, e in segs:
            s, e = max(0, s), min(n, e)
            if e <= s:
                continue
            irng = stable_rng("relocbench-synthetic", self.seed, "instance", video, label, s, e)
            acc[s:e] += self._instance(self.class_phases(label), e - s, irng)
            cover[s:e] += 1.0
        act = cover > 0
        if act.any():
            x[act] = self.background_leak * background + acc[act] / cover[act, None]
        if self.background_activity > 0 and not act.all():
            self._background_activity(video, x, act, background)
        a = self.appearance_shift
        if a > 0:
            # Low-rank map in float64 then rounded to float32: a reduction order that differs
            # between CPUs stays far below float32 resolution.
            r = self.appearance_rank
            u_map = rng.standard_normal((d, r)) / math.sqrt(d)
            v_map = rng.standard_normal((r, d)) / math.sqrt(r)
            offset = rng.standard_normal(d)
            # np.einsum (optimize=False) runs its own loops instead of multi-threaded BLAS,
            # which is much slower for these thin products on a busy machine.
            low = np.einsum("nd,dr->nr", x.astype(np.float64), u_map)
            x = (x + a * np.einsum("nr,rd->nd", low, v_map) + a * offset).astype(np.float32)
        if self.noise > 0:
            w = self.noise_corr_steps
            z = rng.standard_normal((n + w - 1, d), dtype=np.float32)
            ma = z[:n].copy()
            for k in range(1, w):  # moving sum of w white rows
                ma += z[k:k + n]
            x = x + np.float32(self.noise / math.sqrt(w)) * ma  # unit variance before scaling
        return x.astype(np.float32, copy=False)


