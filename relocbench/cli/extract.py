"""``relocbench extract-features`` and ``relocbench merge-features``."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import force_option, print_report


def _options(values):
    from ..errors import ConfigError

    out = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option expects KEY=VALUE (e.g. flow=farneback, crop_size=112). Got {item!r} instead.")
        if "," in val or val.isdigit():
            parts = [int(v) if v.strip().isdigit() else v for v in val.split(",")]
            val = parts if "," in val else parts[0]
        out[key] = val
    return out


@click.command("extract-features")
@click.argument("videos", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output HDF5 file (written atomically).")
@click.option("--glob", "glob", default=None, help="In folders, only files matching this pattern (e.g. '*.mp4').")
@click.option("--list", "list_file", type=click.Path(path_type=Path), default=None,
              help="Text file listing one video path per line.")
@click.option("--manifest", default=None, help="Extract exactly this temporal manifest's videos (with --videos-root).")
@click.option("--videos-root", type=click.Path(path_type=Path), default=None,
              help="With --manifest: folder holding v_<id>.* or <id>.* files (any depth).")
@click.option("--split", "splits", multiple=True, help="With --manifest: only the videos of this split (repeatable).")
@click.option("--backbone", default="handcrafted", show_default=True,
              help="handcrafted, a torchvision video model (r2plus1d_18, r3d_18, s3d, mvit_v2_s, swin3d_t, ...) "
                   "or an image model (resnet50, ...).")
@click.option("--weights", default="auto", show_default=True,
              help="auto (torchvision's cached file), FILE (a state dict) or none (random: tests only).")
@click.option("--step-frames", type=int, default=16, show_default=True, help="Frames per output row.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Clips (or frames) per forward pass.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Videos processed at once, each decoded in its own thread ahead of the backbone.")
@click.option("--option", "options", multiple=True, help="Backbone option KEY=VALUE (flow=farneback, crop_size=112).")
@click.option("--pca", "pca_components", type=int, default=None, help="Reduce to N dimensions (PCA fitted on --pca-fit).")
@click.option("--pca-fit", multiple=True,
              help="Videos fitting the PCA: paths, folders, ids, or a split name (train) with --manifest.")
@click.option("--pca-from", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Reuse the PCA stored in this features file.")
@click.option("--layout", type=click.Choice(["relocbench", "c3d"]), default="relocbench", show_default=True,
              help="c3d: the official C3D release's layout (v_<id>/c3d_features, rows 8 frames apart).")
@click.option("--shard", default=None, help="Process shard K/N (0 <= K < N) of the sorted video list.")
@click.option("--resume", is_flag=True, help="Keep finished videos (same source sha256 and settings); do the rest.")
@force_option
@click.option("--strict", is_flag=True, help="Stop (exit 2) at the first video that fails to decode.")
@click.option("--slurm", "slurm_partition", default=None, metavar="PARTITION",
              help="Submit a Slurm job array through submitit to this partition, then merge.")
@click.option("--slurm-array", type=int, default=8, show_default=True, help="With --slurm: number of array tasks.")
@click.option("--slurm-time", type=int, default=240, show_default=True, help="With --slurm: minutes per task.")
@click.option("--slurm-gpus", type=int, default=0, show_default=True, help="With --slurm: GPUs per task.")
@click.option("--slurm-cpus", type=int, default=4, show_default=True, help="With --slurm: CPUs per task.")
@click.option("--slurm-cluster", type=click.Choice(["auto", "slurm", "local", "debug"]), default="auto",
              show_default=True, help="submitit executor: auto or slurm (sbatch must be on PATH), local (the same "
                                      "path as subprocesses here) or debug (in this process).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract_features(videos, out, glob, list_file, manifest, videos_root, splits, backbone, weights, step_frames,
                     device, batch_size, workers, options, pca_components, pca_fit, pca_from, layout, shard, resume,
                     force, strict, slurm_partition, slurm_array, slurm_time, slurm_gpus, slurm_cpus, slurm_cluster,
                     quiet):
    """Extract per-step features of videos into one HDF5 file (one dataset per video).

    \b
    Examples:
      relocbench extract-features videos/ --out features.h5
      relocbench extract-features --manifest activitynet --videos-root /data/anet --out anet-hc.h5 --workers 2
      relocbench extract-features clips/ --backbone r2plus1d_18 --weights auto --device cuda --out r21d.h5
      relocbench extract-features --manifest activitynet --videos-root /data/anet --backbone r2plus1d_18 \\
          --slurm gpu --slurm-array 64 --slurm-gpus 1 --out anet-r21d.h5
      torchrun --nproc_per_node 4 -m relocbench extract-features videos/ --out features.h5
    Then: relocbench run-baseline frame-dp --features features.h5
    """
    from ..extract.config import ExtractConfig
    from ..extract.pipeline import run_extract

    cfg = ExtractConfig(backbone=backbone, weights=weights, step_frames=step_frames, device=device,
                        batch_size=batch_size, pca=None if pca_from is None else str(pca_from),
                        options=_options(options))
    res = run_extract(videos, cfg, out=out, glob=glob, list_file=list_file, manifest=manifest,
                      videos_root=videos_root, splits=splits, pca_components=pca_components, pca_fit=pca_fit,
                      layout=layout, shard=shard, resume=resume, force=force, strict=strict, workers=workers,
                      quiet=quiet, slurm=slurm_partition, slurm_array=slurm_array, slurm_time=slurm_time,
                      slurm_gpus=slurm_gpus, slurm_cpus=slurm_cpus,
                      slurm_cluster=None if slurm_cluster == "auto" else slurm_cluster)
    for line in res.lines:
        click.echo(line)
    if res.report:
        click.echo("Skipped, failed or noticed (also in the file's 'report' attribute):")
        print_report(res.report)


@click.command("merge-features")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Merged HDF5 file.")
@click.option("--layout", type=click.Choice(["relocbench", "c3d"]), default=None,
              help="Layout of the merged file (default: the shards').")
@force_option
def merge_features(shards, out, layout, force):
    """Merge shard files of one extraction (same backbone, weights, step and PCA) into one file.

    \b
    Example:
      relocbench merge-features --out features.h5 features.shard-0000*-of-00004.h5
    """
    from ..extract.shard import merge_features as merge

    res = merge(out, shards, force=force, layout=layout)
    click.echo(f"Merged {res.videos} video(s) from {res.shards} shard(s) into {res.out}"
               + (f" ({res.duplicates} duplicate(s) kept once)" if res.duplicates else ""))
    failed = res.report.get("failed", [])
    if failed:
        click.echo(f"{len(failed)} video(s) failed in the shards:")
        for f in failed[:10]:
            click.echo(f"  {f['error']}")
