"""``relocbench run-baseline``, ``list-baselines`` and ``leaderboard``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ._common import force_option, print_report, print_table


def _show(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def _print_config(info) -> None:
    """The table of ``run-baseline NAME --show-config``."""
    from rich.markup import escape

    changed = any(r["value"] != r["default"] for r in info["fields"])
    cols = ["field", "allowed", "default", "paper.yaml"] + (["this run"] if changed else [])
    rows = []
    for r in info["fields"]:
        allowed = r["allowed"].split(" ", 1)[1] if r["allowed"].startswith(("a ", "an ")) else r["allowed"]
        row = [r["name"], allowed, _show(r["default"]), _show(r["paper"])]
        if changed:
            row.append(_show(r["value"]))
        rows.append([escape(x) for x in row])
    print_table(f"{info['baseline']} config ({info['config_class']})", cols, rows)
    paper = info["paper_config"] or "none"
    if info["paper_config"]:
        try:
            paper = str(Path(paper).relative_to(Path.cwd()))
        except ValueError:
            pass
    click.echo(f"Paper config: {paper}. Any field can be set in a YAML or JSON file given to --config.")


def print_coverage(cov) -> None:
    """What ``--skip-missing`` / ``--score-subset`` left out (printed under the table)."""
    lost = f"{cov['missing']} pairs ({cov['missing_videos']} videos without features)"
    if cov["subset"]:
        click.echo(f"Scored a subset: {cov['scored']} of {cov['pairs']} pairs, those whose videos have features; "
                   f"{lost} left out. Not comparable with full-split results.")
    else:
        click.echo(f"Scored {cov['pairs']} pairs: {cov['scored']} predicted, {lost} counted as misses"
                   + ("; --score-subset scores only the predicted ones" if cov["missing"] else "") + ".")
    if cov.get("skipped"):
        click.echo("Skipped by --skip-missing:")
        print_report(cov["skipped"])


def _default_cpu_threads(name: str, device: str) -> Optional[int]:
    """The baseline's own CPU thread count (``Baseline.cpu_threads``) for a run on the CPU under
    passive OpenMP waits, when the user chose no count (``--threads``, ``OMP_NUM_THREADS``);
    ``None`` (torch's default) otherwise."""
    import os

    from ..registry import get_baseline

    n = getattr(get_baseline(name), "cpu_threads", None)
    if not n or "OMP_NUM_THREADS" in os.environ or os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return None
    if device != "cpu":
        import torch

        if device != "auto" or torch.cuda.is_available():
            return None
    return n


def _check_publish(leaderboard_dir: Path, board, name: str, dataset: str, seed: int, force: bool,
                   recipe=None) -> None:
    """Before the run: the leaderboard record it will write can be written (and does not
    exist without --force)."""
    from .. import leaderboard as lb
    from ..io import check_output, check_writable

    target_board = lb.check_board(board or Path(str(dataset)).name)
    check_writable(leaderboard_dir / "results" / target_board)
    record_path = getattr(lb, "record_path", None)  # the per-seed layout of the leaderboard
    path = (record_path(leaderboard_dir, target_board, name, seed, recipe) if record_path is not None
            else leaderboard_dir / "results" / target_board / f"{name}.json")
    check_output(path, force)


@click.command("run-baseline")
@click.argument("name")
@click.option("--dataset", default="activitynet", show_default=True,
              help="Built-in manifest name or a manifest folder (spatio-temporal: synthetic-sprites, ucf24, ava).")
@click.option("--features", default="synthetic", show_default=True,
              help="'synthetic', an HDF5 file or a folder of per-video files whose time axis is declared: a "
                   "features.card.yaml beside it, --feature-preset or --feature-card (relocbench extract-features "
                   "files declare their own).")
@click.option("--feature-preset", default=None, metavar="NAME",
              help="Time axis and layout of --features PATH: a shipped preset (c3d-release, tsp, opentad-tsp, "
                   "i3d-actionformer, tsn-csv100); needed unless a features.card.yaml is beside PATH.")
@click.option("--feature-card", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Time axis and layout of --features PATH: a feature card (YAML or JSON).")
@click.option("--frames", type=click.Path(path_type=Path), default=None,
              help="Spatio-temporal datasets (ucf24, ava): the folder of video frames (same as --features PATH).")
@click.option("--split", default="test", show_default=True,
              help="Split to predict and score (checked before training): val or test.")
@click.option("--steps", type=int, default=None, help="Training steps (default: the baseline's config).")
@click.option("--batch-size", type=int, default=None, help="Global batch size.")
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--seed", type=int, default=None, help="Seed of everything random in the run (an int >= 0).")
@click.option("--recipe", default=None,
              help="A named set of config values of baselines that have recipes (cgbm family: paper, the default, "
                   "or original, the released code's training and decoding; the five stvr-* baselines: "
                   "compact, the default, or original, the authors' model); --show-config shows its values.")
@click.option("--weights", default=None,
              help="Backbone weights of baselines with a 'weights' field (the spatio-temporal original recipe: a "
                   "local Inception-I3D state dict in the pytorch-i3d layout; none: random, marked so).")
@click.option("--seeds", default=None,
              help="Comma-separated seeds (e.g. 0,1,2): one run folder <out>/seed-<k> each, each published.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch, >= 1 (default: the baseline's own count on a CPU under passive "
                   "OpenMP waits, 1 for the cgbm family; else torch's choice). Use 1 per process when the "
                   "CPU is shared.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<dataset>/<name>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML or JSON file overriding fields of the baseline's config (see --show-config).")
@click.option("--show-config", is_flag=True,
              help="Print the config fields, their allowed values, defaults and the paper config's values; run nothing.")
@click.option("--skip-missing", is_flag=True,
              help="Skip pairs whose videos have no features: not predicted, scored as misses, counted.")
@click.option("--score-subset", is_flag=True,
              help="With missing features: score only the pairs that have them (implies --skip-missing; labelled a "
                   "subset in the table, metrics and result.json; cannot be published with --leaderboard).")
@click.option("--leaderboard", "leaderboard_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also publish the result into <DIR>/results/<board>/ (e.g. --leaderboard leaderboard).")
@click.option("--board", default=None,
              help="With --leaderboard: the section to publish into (default: the dataset's name), e.g. "
                   "activitynet-paper for runs at the paper's budget.")
@force_option
@click.option("--quiet", is_flag=True, help="No progress bar or progress lines.")
def run_baseline(name, dataset, features, feature_preset, feature_card, frames, split, steps, batch_size, lr, seed,
                 recipe, weights, seeds, device, threads, out, resume, config_file, show_config, skip_missing,
                 score_subset, leaderboard_dir, board, force, quiet):
    """Train (if trainable), select on validation, predict and score a baseline.

    Progress goes to stderr: a bar on a terminal, else one line at least every 30 s
    ($RELOCBENCH_PROGRESS_INTERVAL seconds) with step, loss, last validation score and ETA.

    \b
    Example (ECCV 2018 model on the committed ActivityNet manifest, synthetic features):
      relocbench run-baseline cgbm --dataset activitynet --features synthetic --steps 300 --out runs/cgbm
    What --config may set (fields, defaults, the paper config):
      relocbench run-baseline cgbm --show-config
    Multi-GPU (or several CPU processes):
      torchrun --nproc_per_node 2 -m relocbench run-baseline cgbm --out runs/cgbm-ddp
    Three seeds (runs/chance/seed-0, seed-1, seed-2), each published with its per-pair scores:
      relocbench run-baseline chance --seeds 0,1,2 --out runs/chance --leaderboard leaderboard
    """
    from ..engine import describe_config, resolve_config
    from ..engine import run_baseline as run
    from ..errors import ConfigError
    from ..leaderboard import metric_value, publish_result
    from ..tasks import get_task

    overrides = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "recipe": recipe, "weights": weights}
    if show_config:
        _print_config(describe_config(name, config_file=config_file, overrides=overrides))
        return
    # everything checkable is checked before training, not after it
    if board is not None and leaderboard_dir is None:
        raise ConfigError(f"--board {board} names a leaderboard section, but nothing is published without "
                          "--leaderboard DIR; add --leaderboard DIR or drop --board")
    if score_subset and leaderboard_dir is not None:
        raise ConfigError("--score-subset scores only the pairs that have features: such a result is not a "
                          "benchmark number and is never published; drop --leaderboard or --score-subset")
    if leaderboard_dir is not None and seeds is None:
        _, cfg = resolve_config(name, config_file=config_file, overrides=overrides)
        _check_publish(leaderboard_dir, board, name, dataset, cfg.seed, force, getattr(cfg, "recipe", None))
    if frames is not None:
        if features != "synthetic":
            raise ConfigError("give the frames folder once: --frames or --features, not both")
        features = str(frames)
    declared = {"feature_preset": feature_preset, "feature_card": feature_card}
    if frames is None and not show_config:  # the command line needs the features' time axis declared
        from ..features import check_declared
        from ..registry import get_baseline
        if feature_preset or feature_card or get_baseline(name).task == "temporal":
            check_declared(features, preset=feature_preset, card=feature_card)
    if threads is None:
        threads = _default_cpu_threads(name, device)
    if seeds is not None:
        from ..leaderboard import run_seeds
        run_seeds(name, seeds, out=out, leaderboard_dir=leaderboard_dir, board=board, force=force, echo=click.echo,
                  overrides=overrides, dataset=dataset, features=features, split=split, config_file=config_file,
                  device=device, resume=resume, progress=not quiet, skip_missing=skip_missing,
                  score_subset=score_subset, threads=threads, **declared)
        return
    res = run(name, dataset=dataset, features=features, split=split, out=out, overrides=overrides,
              config_file=config_file, device=device, resume=resume, force=force, progress=not quiet,
              skip_missing=skip_missing, score_subset=score_subset, threads=threads, **declared)
    if not res.result:  # not rank 0 of a distributed run
        return
    task = get_task(res.result["task"])
    cols = [title for _, title in task.columns]
    vals = [f"{100 * metric_value(res.metrics, key):.1f}" for key, _ in task.columns]
    cov = res.coverage
    title = f"{name} on {res.result['dataset']} ({split})"
    if cov is not None and cov["subset"]:
        title += f", SUBSET: {cov['scored']} of {cov['pairs']} pairs"
    print_table(title, ["baseline", *cols], [[name, *vals]])
    if cov is not None:
        print_coverage(cov)
    click.echo(f"Run folder: {res.run_dir}")
    if leaderboard_dir is not None:
        path = publish_result(res.result, leaderboard_dir, force=force, board=board, run_dir=res.run_dir,
                              manifest=dataset)
        click.echo(f"Published {path}; run `relocbench leaderboard` to regenerate {leaderboard_dir}/README.md")


@click.command("list-baselines")
@click.option("--task", type=click.Choice(["temporal", "spatiotemporal"]), default=None,
              help="Only the baselines of this task (default: all).")
def list_baselines(task):
    """List every registered baseline with its parameter count at default settings.

    \b
    Example:
      relocbench list-baselines --task temporal
    """
    from rich.markup import escape

    from ..registry import baseline_rows

    rows = [[r["name"], r["task"], "yes" if r["trainable"] else "no", f"{r['parameters']:,}",
             escape(r["description"])] for r in baseline_rows(task)]
    print_table("relocbench baselines", ["name", "task", "trains", "parameters", "description"], rows)


@click.command("leaderboard")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Leaderboard folder holding results/<board>/<baseline>/seed-<k>.json.")
@click.option("--publish", "run_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="First publish the result.json of these finished run folders (repeatable).")
@click.option("--publish-predictions", "predictions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="First publish a predictions file made outside relocbench, scored here (numbers in the file "
                   "are ignored); needs --name.")
@click.option("--name", default=None, help="With --publish-predictions: the row's name (not a relocbench baseline).")
@click.option("--manifest", default=None,
              help="With --publish-predictions: the manifest to score on (default: the one the file names).")
@click.option("--split", default="test", show_default=True, help="With --publish-predictions: the split to score.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --publish-predictions: the seed the file is published as (one file per seed).")
@click.option("--features-name", default=None,
              help="With --publish-predictions: the features the predictions were made from (e.g. tsp); "
                   "default 'not stated'.")
@click.option("--board", default=None,
              help="With --publish or --publish-predictions: the section to publish into (default: the dataset's name).")
@click.option("--html", "html_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also build the static site into this folder (refused if it exists unless --force).")
@force_option
def leaderboard(directory, run_dirs, predictions, name, manifest, split, seed, features_name, board, html_dir, force):
    """Regenerate the leaderboard README (tables, threshold plot, qualitative figure) from its results.

    Every record is validated; all is checked and rendered before anything is written, and
    a failure leaves the folder as it was (no record kept without its README and site).

    \b
    Example:
      relocbench leaderboard --dir leaderboard
    Publish finished runs made at the paper's budget into their own section, then regenerate:
      relocbench leaderboard --publish runs/paper/cgbm --publish runs/paper/cgbm-base --board activitynet-paper
    Publish a predictions file made outside relocbench (scored here, on the test split):
      relocbench leaderboard --publish-predictions preds.json --name my-model --manifest activitynet --features-name tsp
    The browsable site (open site/index.html; no server or network needed):
      relocbench leaderboard --dir leaderboard --html site
    """
    from ..leaderboard import publish_and_regenerate

    out = publish_and_regenerate(directory, run_dirs=run_dirs, predictions=predictions, name=name, board=board,
                                 manifest=manifest, split=split, seed=seed, features_name=features_name,
                                 html=html_dir, force=force)
    for path in out["published"]:
        click.echo(f"Published {path}")
    click.echo(f"Wrote {out['readme']}")
    if html_dir is not None:
        click.echo(f"Wrote the site {out['site']}/index.html")
