"""Extraction as a Slurm job array through ``submitit`` (its local executor runs the same path).

``submit_slurm`` splits the videos into ``array`` shards (:func:`relocbench.extract.shard.select_shard`),
submits one array task per shard (each runs :func:`relocbench.extract.extract_videos` with
``shard=(K, array)`` into its own shard file, with ``resume`` so a requeued or re-submitted
task continues where it stopped), waits for the array, merges the shards into ``out`` and
removes them. Job logs live in ``<out folder>/.<out name>.submitit/``.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..errors import ConfigError, RelocbenchError
from ..io import check_output
from .shard import MergeSummary, merge_features, shard_path

__all__ = ["submit_slurm", "SlurmResult"]

PathLike = Union[str, os.PathLike]


@dataclass
class SlurmResult:
    job_ids: List[str]
    summaries: List[Any]
    merged: MergeSummary
    folder: Path


def _run_shard(videos: Dict[str, Path], cfg, out: str, k: int, n: int, kwargs: Dict[str, Any]):
    from .api import extract_videos

    return extract_videos(videos, cfg, out=shard_path(out, k, n), shard=(k, n), resume=True, **kwargs)


def submit_slurm(videos, cfg, *, out: PathLike, partition: Optional[str], array: int, time_min: int = 240,
                 gpus_per_task: int = 0, cpus_per_task: int = 4, mem_gb: Optional[float] = None,
                 cluster: Optional[str] = None, force: bool = False, layout: str = "relocbench",
                 **kwargs) -> SlurmResult:
    """Submit ``array`` shard tasks, wait for them, merge into ``out``.

    ``cluster``: ``None`` or ``"slurm"`` (Slurm: ``sbatch`` and ``srun`` must be on the path,
    otherwise a one-line error says so, rather than running somewhere else than asked),
    ``"local"`` (subprocesses on this machine: the same code path, for tests and laptops) or
    ``"debug"`` (in this process).
    """
    from .api import video_ids
    from .shard import _inputs_of
    from .writer import refuse_special_output

    if isinstance(array, bool) or not isinstance(array, int) or array < 1:
        raise ConfigError(f"The 'slurm_array' parameter must be an int >= 1. Got {array!r} instead.")
    for name, value, low in (("slurm_time", time_min, 1), ("slurm_gpus", gpus_per_task, 0),
                             ("slurm_cpus", cpus_per_task, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000:
            raise ConfigError(f"The '{name}' parameter must be an int in [{low}, 1000000]. Got {value!r} instead.")
    if kwargs.get("pca_components") is not None:
        raise ConfigError("a Slurm array cannot fit a PCA (each task would fit its own): fit it once with --pca N "
                          "--pca-fit on one machine and pass --pca-from")
    if cluster not in (None, "slurm", "local", "debug"):
        raise ConfigError(f"The 'cluster' parameter must be None, 'slurm', 'local' or 'debug'. Got {cluster!r} "
                          "instead.")
    if cluster in (None, "slurm"):
        missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
        if missing:
            raise ConfigError(f"--slurm {partition or ''}: {' and '.join(missing)} not found on PATH (no Slurm on "
                              "this machine); run it on a Slurm login node, or pass --slurm-cluster local to run "
                              "the array tasks as processes here")
    try:
        import submitit
    except ImportError:
        raise ConfigError("--slurm needs the submitit package (pip install submitit)") from None
    out = Path(out)
    check_output(out, force, inputs=_inputs_of(videos, cfg, kwargs), option="--out")
    refuse_special_output(out)
    ids = video_ids(videos)
    if array > len(ids):
        raise ConfigError(f"--slurm-array {array} asks for more array tasks than there are videos ({len(ids)}); "
                          f"expected at most {len(ids)}")
    folder = out.parent / f".{out.name}.submitit"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: Dict[str, Any] = {"timeout_min": int(time_min), "cpus_per_task": int(cpus_per_task),
                              "name": "relocbench-extract"}
    if gpus_per_task:
        params["gpus_per_node"] = int(gpus_per_task)
    if mem_gb:
        params["mem_gb"] = float(mem_gb)
    if ex.cluster == "slurm":
        if partition:
            params["slurm_partition"] = partition
        params["slurm_array_parallelism"] = int(array)
    ex.update_parameters(**params)
    kwargs = {**kwargs, "layout": layout}
    later = {**kwargs, "missing": ()}  # missing videos are counted once, by task 0
    with ex.batch():
        jobs = [ex.submit(_run_shard, ids, cfg, str(out), k, array, kwargs if k == 0 else later)
                for k in range(array)]
    summaries = []
    for k, job in enumerate(jobs):
        try:
            summaries.append(job.result())
        except RelocbenchError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()
            tail = first[-1] if first else type(exc).__name__
            raise ConfigError(f"array task {k} (job {job.job_id}) failed: {tail[:300]}; its log: "
                              f"{job.paths.stderr}") from None
    shards = [shard_path(out, k, array) for k in range(array)]
    merged = merge_features(out, shards, force=force, layout=layout)
    for s in shards:
        s.unlink()
    return SlurmResult(job_ids=[str(j.job_id) for j in jobs], summaries=summaries, merged=merged, folder=folder)
