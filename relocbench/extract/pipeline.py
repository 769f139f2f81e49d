"""``run_extract``: inputs -> the right engine (one process, a shard, torchrun ranks or Slurm)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import ConfigError
from .api import extract_videos, video_ids
from .inputs import collect_videos, manifest_videos
from .shard import distributed_env, extract_distributed

__all__ = ["run_extract", "RunResult"]


@dataclass
class RunResult:
    """What the command prints: summary lines and the report."""

    lines: List[str] = field(default_factory=list)
    report: Dict[str, Any] = field(default_factory=dict)
    summary: Any = None


def _pca_fit_set(pca_fit: Sequence[str], manifest, videos_root, glob) -> Union[List[Any], Dict[str, Path]]:
    fit: Dict[str, Path] = {}
    names: List[str] = []
    for item in pca_fit:
        if manifest is not None and not Path(item).exists() and item in ("train", "val", "test"):
            fit.update(manifest_videos(manifest, videos_root, splits=[item]).paths)
        elif Path(item).exists():
            fit.update(video_ids(collect_videos([item], glob=glob)))
        else:
            names.append(item)  # an id of the extracted videos
    return list(fit.values()) + names if names else fit


def run_extract(videos: Sequence[os.PathLike], cfg, *, out, glob=None, list_file=None, manifest=None,
                videos_root=None, splits=(), pca_components=None, pca_fit=(), layout="relocbench", shard=None,
                resume=False, force=False, strict=False, workers=0, quiet=False, slurm=None, slurm_array=8,
                slurm_time=240, slurm_gpus=0, slurm_cpus=4, slurm_cluster=None) -> RunResult:
    """Gather the videos and run the extraction the way the environment asks for.

    ``--manifest`` with ``--videos-root`` takes exactly the manifest's videos (missing ones
    counted); otherwise files, folders and ``--list``. Then ``--slurm`` submits an array,
    ``torchrun`` (``WORLD_SIZE`` > 1) runs this rank's shard and merges at rank 0, and
    otherwise one process extracts (``--shard K/N``: only that shard).
    """
    expected, missing = None, []
    if manifest is not None:
        if videos_root is None:
            raise ConfigError("--manifest needs --videos-root DIR: the folder holding the manifest's videos")
        if videos:
            raise ConfigError("give either video paths or --manifest, not both")
        mv = manifest_videos(manifest, videos_root, splits=splits or None)
        paths: Any = mv.paths
        expected, missing = mv.n_frames, mv.missing
        if not paths:
            raise ConfigError(f"none of the {len(missing)} videos of --manifest {manifest} is under {videos_root} "
                              "(expected v_<id>.* or <id>.*)")
    else:
        if splits:
            raise ConfigError("--split applies to --manifest only")
        paths = video_ids(collect_videos(videos, glob=glob, list_file=list_file))
    fit = _pca_fit_set(pca_fit, manifest, videos_root, glob) if pca_fit else None
    kwargs = dict(strict=strict, workers=workers, layout=layout, expected_frames=expected, missing=missing,
                  quiet=quiet, inputs=[list_file] if list_file is not None else [])
    res = RunResult()
    if slurm is not None:
        if shard is not None:
            raise ConfigError("--slurm makes its own shards (--slurm-array N); drop --shard")
        from .slurm import submit_slurm

        if pca_components is not None:
            raise ConfigError("--slurm cannot fit a PCA (each task would fit its own): fit it on one machine with "
                              "--pca N --pca-fit, then pass --pca-from")
        r = submit_slurm(paths, cfg, out=out, partition=slurm, array=slurm_array, time_min=slurm_time,
                         gpus_per_task=slurm_gpus, cpus_per_task=slurm_cpus, cluster=slurm_cluster, force=force,
                         **kwargs)
        res.lines.append(f"{len(r.job_ids)} array task(s) finished ({', '.join(r.job_ids[:4])}"
                         f"{', ...' if len(r.job_ids) > 4 else ''}); merged {r.merged.videos} video(s) into {out}")
        res.report = {k: v for k, v in r.merged.report.items() if k != "failed"}
        res.lines.extend(f"failed: {f['error']}" for f in r.merged.report.get("failed", []))
        return res
    env = distributed_env() if shard is None else None
    if env is not None:
        summary, merged = extract_distributed(paths, cfg, out=out, rank=env[0], world_size=env[1], resume=resume,
                                              force=force, pca_components=pca_components, pca_fit=fit, **kwargs)
        res.summary = summary
        res.lines.append(_line(summary, f"rank {env[0]}/{env[1]}"))
        if merged is not None:
            res.lines.append(f"Merged {merged.videos} video(s) from {merged.shards} rank(s) into {merged.out}")
        res.report = _shown(summary.report)
        return res
    summary = extract_videos(paths, cfg, out=out, resume=resume, force=force, shard=shard,
                             pca_components=pca_components, pca_fit=fit, **kwargs)
    res.summary = summary
    res.lines.append(_line(summary, None if summary.shard is None else f"shard {summary.shard[0]}/{summary.shard[1]}"))
    for source, msg in summary.failed:
        res.lines.append(f"failed: {msg}")
    res.report = _shown(summary.report)
    return res


def _shown(report: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in report.items() if k != "failed"}


def _line(s, where: Optional[str]) -> str:
    rate = f", {s.frames_per_s:.0f} frames/s" if s.frames else ""
    return (f"{'[' + where + '] ' if where else ''}Wrote {s.out}: {s.extracted} video(s) extracted, {s.resumed} "
            f"kept from an earlier run, {len(s.failed)} failed ({s.frames} frames in {s.seconds:.1f} s{rate})")
