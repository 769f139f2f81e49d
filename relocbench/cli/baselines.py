"""``relocbench run-baseline``, ``list-baselines`` and ``leaderboard``."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import force_option, print_table


@click.command("run-baseline")
@click.argument("name")
@click.option("--dataset", default="activitynet", show_default=True,
              help="Built-in manifest name or a manifest folder (spatio-temporal: synthetic-sprites, ucf24, ava).")
@click.option("--features", default="synthetic", show_default=True,
              help="'synthetic', an HDF5 file (official C3D layout or one dataset per video) or a folder of <video>.npy.")
@click.option("--frames", type=click.Path(path_type=Path), default=None,
              help="Spatio-temporal datasets (ucf24, ava): the folder of video frames (same as --features PATH).")
@click.option("--split", default="test", show_default=True, help="Split to predict and score.")
@click.option("--steps", type=int, default=None, help="Training steps (default: the baseline's config).")
@click.option("--batch-size", type=int, default=None, help="Global batch size.")
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--seed", type=int, default=None, help="Seed of everything random in the run.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch (default: torch's choice). Use 1 per process when the CPU is shared.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<dataset>/<name>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML or JSON file overriding fields of the baseline's config.")
@click.option("--skip-missing", is_flag=True, help="Skip pairs whose videos have no features (counted).")
@click.option("--leaderboard", "leaderboard_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also publish the result as <DIR>/results/<board>/<name>.json (e.g. --leaderboard leaderboard).")
@click.option("--board", default=None,
              help="Leaderboard section to publish into (default: the dataset's name), e.g. activitynet-paper "
                   "for runs at the paper's budget.")
@force_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_baseline(name, dataset, features, frames, split, steps, batch_size, lr, seed, device, threads, out, resume, config_file,
                 skip_missing, leaderboard_dir, board, force, quiet):
    """Train (if trainable), select on validation, predict and score a baseline.

    \b
    Example (ECCV 2018 model on the committed ActivityNet manifest, synthetic features):
      relocbench run-baseline cgbm --dataset activitynet --features synthetic --steps 300 --out runs/cgbm
    Multi-GPU (or several CPU processes):
      torchrun --nproc_per_node 2 -m relocbench run-baseline cgbm --out runs/cgbm-ddp
    """
    from ..engine import run_baseline as run
    from ..leaderboard import check_board, metric_value, publish_result
    from ..errors import ConfigError
    from ..tasks import get_task

    if board is not None:
        check_board(board)  # before training, not after
    if frames is not None:
        if features != "synthetic":
            raise ConfigError("give the frames folder once: --frames or --features, not both")
        features = str(frames)
    res = run(name, dataset=dataset, features=features, split=split, out=out,
              overrides={"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed},
              config_file=config_file, device=device, resume=resume, force=force, progress=not quiet,
              skip_missing=skip_missing, threads=threads)
    if not res.result:  # not rank 0 of a distributed run
        return
    task = get_task(res.result["task"])
    cols = [title for _, title in task.columns]
    vals = [f"{100 * metric_value(res.metrics, key):.1f}" for key, _ in task.columns]
    print_table(f"{name} on {res.result['dataset']} ({split})", ["baseline", *cols], [[name, *vals]])
    click.echo(f"Run folder: {res.run_dir}")
    if leaderboard_dir is not None:
        path = publish_result(res.result, leaderboard_dir, force=force, board=board)
        click.echo(f"Published {path}; run `relocbench leaderboard` to regenerate {leaderboard_dir}/README.md")


@click.command("list-baselines")
@click.option("--task", type=click.Choice(["temporal", "spatiotemporal"]), default=None)
def list_baselines(task):
    """List every registered baseline with its parameter count at default (paper) settings.

    \b
    Example:
      relocbench list-baselines --task temporal
    """
    from ..registry import list_baselines as listing

    rows = []
    for cls in listing(task):
        rows.append([cls.name, cls.task, "yes" if cls.trainable else "no", f"{cls.parameter_count():,}",
                     cls.description()])
    print_table("relocbench baselines", ["name", "task", "trains", "parameters", "description"], rows)


@click.command("leaderboard")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Leaderboard folder holding results/<board>/<baseline>.json.")
@click.option("--publish", "run_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="First publish the result.json of these finished run folders (repeatable).")
@click.option("--board", default=None, help="With --publish: the section to publish into (default: the dataset's name).")
@force_option
def leaderboard(directory, run_dirs, board, force):
    """Regenerate the leaderboard README (tables, threshold plot, qualitative figure) from its results.

    \b
    Example:
      relocbench leaderboard --dir leaderboard
    Publish finished runs made at the paper's budget into their own section, then regenerate:
      relocbench leaderboard --publish runs/paper/cgbm --publish runs/paper/cgbm-base --board activitynet-paper
    """
    from ..leaderboard import publish_run, write_leaderboard

    for run_dir in run_dirs:
        click.echo(f"Published {publish_run(run_dir, directory, force=force, board=board)}")
    path = write_leaderboard(directory)
    click.echo(f"Wrote {path}")
