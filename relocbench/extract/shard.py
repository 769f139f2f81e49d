"""Sharding (``--shard K/N``, ``torchrun`` ranks) and ``merge-features``.

A run of N shards gives shard ``K`` (0-based) the videos ``i`` with ``i % N == K`` of the
video ids in sorted order; every shard writes its own file and one merge assembles them.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, FeatureError
from ..io import check_output
from .writer import LAYOUTS, FeaturesFile, refuse_special_output, write_features_file

#: What a ``merge-features`` input should be (the end of a message about one).
SHARD_FILE = "a features file (shard) written by relocbench extract-features"

__all__ = ["parse_shard", "select_shard", "shard_path", "merge_features", "MergeSummary", "extract_distributed",
           "distributed_env"]

PathLike = Union[str, os.PathLike]


def parse_shard(shard: Union[str, Tuple[int, int], Sequence[int]]) -> Tuple[int, int]:
    """``"K/N"`` or ``(K, N)`` -> ``(K, N)`` with ``0 <= K < N``."""
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ConfigError(f"The 'shard' parameter must be 'K/N' (0 <= K < N, e.g. 0/4). Got {shard!r} instead.")
        k, n = int(m.group(1)), int(m.group(2))
    else:
        try:
            k, n = (int(x) for x in shard)
        except (TypeError, ValueError):
            raise ConfigError(f"The 'shard' parameter must be 'K/N' or (K, N). Got {shard!r} instead.") from None
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"The 'shard' parameter must satisfy 0 <= K < N (shards are numbered from 0). "
                          f"Got {k}/{n} instead.")
    return k, n


def select_shard(ids: Sequence[str], shard: Optional[Tuple[int, int]]) -> List[str]:
    """The ids of shard ``(K, N)``: every N-th id of the sorted list, starting at K."""
    ids = sorted(ids)
    if shard is None:
        return ids
    k, n = shard
    return [v for i, v in enumerate(ids) if i % n == k]


def shard_path(out: PathLike, k: int, n: int) -> Path:
    """``features.h5`` -> ``features.shard-00001-of-00004.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{k:05d}-of-{n:05d}{out.suffix or '.h5'}")


# --------------------------------------------------------------------------- merge
@dataclass
class MergeSummary:
    out: Path
    shards: int
    videos: int
    duplicates: int = 0
    report: Dict[str, Any] = field(default_factory=dict)


def merge_features(out: PathLike, shards: Sequence[PathLike], *, force: bool = False,
                   layout: Optional[str] = None) -> MergeSummary:
    """Merge feature files written with the same settings into ``out`` (atomically).

    Refuses shards whose settings (backbone, weights, step, PCA, ...) differ, and a video found
    in two shards with different contents; the same video with identical rows and source is
    kept once (counted). The reports of the shards are added up; ``layout`` defaults to the
    shards' own.
    """
    out = Path(out)
    if not shards:
        raise ConfigError("merge-features needs at least one shard file")
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"The 'layout' parameter must be one of {list(LAYOUTS)}. Got {layout!r} instead.")
    paths = [Path(s) for s in shards]
    check_output(out, force, inputs=paths, option="--out")  # a shard as the output is refused, --force or not
    refuse_special_output(out)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(FeaturesFile(p, SHARD_FILE)) for p in paths]
        for f in files:  # every shard's PCA is read and must be the one its 'pca' attribute names
            fp = f.pca
            held = fp.describe() if fp is not None else "none"
            if f.attrs.get("pca", "none") != held:
                raise FeatureError(f"its 'pca' attribute says {f.attrs.get('pca')!r} but the file holds "
                                   f"{held!r}; expected {SHARD_FILE}", file=f.path)
        first = files[0]
        ref_pca = first.attrs.get("pca")
        for f in files[1:]:
            if f.settings != first.settings or f.attrs.get("pca") != ref_pca or \
                    f.attrs.get("step_frames") != first.attrs.get("step_frames"):
                keys = sorted(k for k in set(f.settings) | set(first.settings)
                              if f.settings.get(k) != first.settings.get(k))
                if f.attrs.get("pca") != ref_pca:
                    keys.append("pca")
                diffs = ", ".join(f"{k} {first.settings.get(k, first.attrs.get(k))!r} vs "
                                  f"{f.settings.get(k, f.attrs.get(k))!r}" for k in keys)
                raise ConfigError(f"was extracted with other settings than {first.path} ({diffs}); "
                                  "shards must share backbone, weights, step and PCA", file=f.path)
        owner: Dict[str, int] = {}
        duplicates = 0
        for i, f in enumerate(files):
            for video, digest in f.index().items():
                j = owner.get(video)
                if j is None:
                    owner[video] = i
                    continue
                a, b = files[j].load(video), f.load(video)
                if a.sha256 != b.sha256 or a.features.shape != b.features.shape or \
                        not (a.features == b.features).all():
                    raise FeatureError(f"is also in {files[j].path} with different contents (source sha256 "
                                       f"{a.sha256[:12]} vs {b.sha256[:12]}, shape {a.features.shape} vs "
                                       f"{b.features.shape}); remove one of them", file=f.path, item=video)
                duplicates += 1
        report = _merge_reports([f.report for f in files])
        if duplicates:
            report["duplicate video in two shards (identical, kept once)"] = {"count": duplicates, "examples": []}
        attrs = {k: v for k, v in first.attrs.items() if k not in ("report", "layout", "relocbench_features")}
        pca = first.pca

        def entries():
            for video in sorted(owner):
                yield files[owner[video]].load(video)

        write_features_file(out, entries(), attrs, pca=pca, report=report, layout=layout or first.layout)
    return MergeSummary(out=out, shards=len(files), videos=len(owner), duplicates=duplicates, report=report)


def _merge_reports(reports: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    failed: List[Any] = []
    for r in reports:
        for key, val in r.items():
            if key == "failed":
                failed.extend(val)
                continue
            if not isinstance(val, Mapping):
                continue
            cur = out.setdefault(key, {"count": 0, "examples": []})
            cur["count"] += int(val.get("count", 0))
            cur["examples"] = (cur["examples"] + list(val.get("examples", [])))[:5]
    out = dict(sorted(out.items()))
    out["failed"] = sorted(failed, key=lambda d: json.dumps(d, sort_keys=True))
    return out


def _inputs_of(paths, cfg, kwargs: Mapping[str, Any]) -> List[Any]:
    """The files an extraction reads (videos, --pca-fit paths, --pca-from, --list): refused as outputs."""
    items: List[Any] = list(paths.values()) if isinstance(paths, Mapping) else (
        [paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    fit = kwargs.get("pca_fit") or ()
    items += list(fit.values()) if isinstance(fit, Mapping) else ([fit] if isinstance(fit, (str, os.PathLike))
                                                                  else [f for f in fit if Path(f).exists()])
    pca = getattr(cfg, "pca", None)
    if isinstance(pca, (str, os.PathLike)):
        items.append(pca)
    items += list(kwargs.get("inputs") or ())
    return items


# --------------------------------------------------------------------------- torchrun
def distributed_env(environ: Optional[Mapping[str, str]] = None) -> Optional[Tuple[int, int]]:
    """``(RANK, WORLD_SIZE)`` under torchrun (``WORLD_SIZE`` > 1), else ``None``."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError:
        raise ConfigError(f"RANK / WORLD_SIZE must be integers; found {env.get('RANK')!r} / "
                          f"{env.get('WORLD_SIZE')!r}") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world})")
    return rank, world


def extract_distributed(paths, cfg=None, *, out: PathLike = "features.h5", rank: Optional[int] = None,
                        world_size: Optional[int] = None, merge: bool = True, **kwargs):
    """One rank of a ``torchrun`` extraction: shard ``RANK/WORLD_SIZE`` into its own file.

    Each rank writes ``<out stem>.shard-<rank>-of-<world><suffix>``. With ``merge`` (and the
    rendezvous torchrun sets up: ``MASTER_ADDR``), the ranks meet at a barrier (gloo, no GPU
    needed) and rank 0 merges the shards into ``out`` and removes them. Returns
    ``(ExtractSummary, MergeSummary or None)``.
    """
    from .api import extract_videos

    if rank is None or world_size is None:
        env = distributed_env()
        if env is None:
            raise ConfigError("not under torchrun (WORLD_SIZE is not > 1); pass rank and world_size")
        rank, world_size = env
    out = Path(out)
    mine = shard_path(out, rank, world_size)
    force = bool(kwargs.get("force"))
    if merge:  # every rank checks (a shared file system), so none waits for a rank that stopped
        check_output(out, force or bool(kwargs.get("resume")), inputs=_inputs_of(paths, cfg, kwargs),
                     option="--out")
        refuse_special_output(out)
    if rank != 0:
        kwargs["missing"] = ()  # counted once, by rank 0, not once per rank in the merged report
    group = merge and bool(os.environ.get("MASTER_ADDR"))
    own = False
    if group:
        import datetime

        import torch.distributed as dist

        from ..engine import refuse_port_zero

        own = not dist.is_initialized()
        if own:  # joined before the work, so a rendezvous problem shows at once; shards may take days
            refuse_port_zero()
            dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(days=7))
    merged = None
    try:
        summary = extract_videos(paths, cfg, out=mine, shard=(rank, world_size), **kwargs)
        if group:
            dist.barrier()
            if rank == 0:
                shards = [shard_path(out, k, world_size) for k in range(world_size)]
                merged = merge_features(out, shards, force=True, layout=kwargs.get("layout"))
                for s in shards:
                    s.unlink()
            dist.barrier()
    finally:
        if own:
            dist.destroy_process_group()
    return summary, merged
