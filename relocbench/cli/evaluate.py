"""``relocbench evaluate``: score predictions with one of the four protocols."""
from __future__ import annotations

import os

import click

from ._common import force_option, print_table, seed_option

#: Rows a table shows without --per-class (the rest are counted; --output-json holds them all).
MAX_ROWS = 15

_PROTOCOLS = ("reloc-temporal", "reloc-spatiotemporal", "activitynet-detection", "activitynet-proposal", "ava")


@click.command("evaluate")
@click.argument("predictions", type=click.Path(dir_okay=False))
@click.option("--protocol", type=click.Choice(_PROTOCOLS), default=None,
              help="Scoring protocol [default: the task of --manifest].")
@click.option("--manifest", help="Ground-truth manifest (built-in name or folder) for the reloc-* protocols.")
@click.option("--split", default="test", show_default=True, help="Manifest split.")
@click.option("--ground-truth", type=click.Path(dir_okay=False),
              help="Official ground truth: ActivityNet JSON or AVA CSV.")
@click.option("--subset", default="validation", show_default=True, help="ActivityNet subset.")
@click.option("--blocked-videos", type=click.Path(dir_okay=False),
              help="Local list of blocked ActivityNet videos (JSON list or one id per line).")
@click.option("--label-map", type=click.Path(dir_okay=False), help="AVA label map (.pbtxt).")
@click.option("--exclusions", type=click.Path(dir_okay=False), help="AVA excluded timestamps (CSV).")
@click.option("--iou-rule", type=click.Choice(["inclusive", "strict"]), default="inclusive", show_default=True,
              help="reloc-temporal hit rule: tIoU >= t, or > t as the original code.")
@click.option("--clip", is_flag=True, help="Clip segments/boxes outside the window/[0, 1] (counted) instead of failing.")
@click.option("--clip-scoring", type=click.Choice(["keyframe", "original"]), default="keyframe", show_default=True,
              help="reloc-spatiotemporal: one image per keyframe, or the CVPR 2019 code's three clips per "
                   "keyframe (each prediction names its \"clip\"; every box counted three times).")
@click.option("--allow-missing", is_flag=True, help="Score pairs without predictions as misses (counted).")
@click.option("--n-bootstrap", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap draws for the 95% interval of the reloc-temporal Average.")
@click.option("--max-avg-nr-proposals", type=click.FloatRange(min=0), default=100, show_default=True,
              help="activitynet-proposal: proposals per video at the end of the AR@AN curve (0: all).")
@seed_option
@click.option("--output-json", type=click.Path(dir_okay=False), help="Write the results here (fractions in [0, 1]).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: metric against the IoU threshold, per-class bars.")
@click.option("--per-class", is_flag=True,
              help=f"Print every row of the per-class tables (default: the first {MAX_ROWS} and a count).")
@force_option
def evaluate(predictions, protocol, manifest, split, ground_truth, subset, blocked_videos, label_map, exclusions,
             iou_rule, clip, clip_scoring, allow_missing, n_bootstrap, max_avg_nr_proposals, seed, output_json, plot, per_class,
             force) -> None:
    """Score PREDICTIONS and print a table (percent); see relocbench.metrics.evaluate.

    Without --protocol and --manifest, the manifest is the built-in one that PREDICTIONS
    names in its "manifest" field (said on stderr).

    \b
    Examples:
      relocbench evaluate preds.json --manifest activitynet --split test --output-json scores.json
      relocbench evaluate preds.json --protocol activitynet-detection \\
          --ground-truth activity_net.v1-3.min.json --subset validation --blocked-videos blocked.json
      relocbench evaluate detections.csv --protocol ava --ground-truth ava_val_v2.2.csv \\
          --label-map ava_action_list_v2.1_for_activitynet_2018.pbtxt --exclusions excluded.csv
      relocbench evaluate proposals.json --protocol activitynet-proposal \\
          --ground-truth activity_net.v1-3.min.json --max-avg-nr-proposals 100
    """
    from ..io import atomic_write_json, check_output
    from ..metrics.api import evaluate as run, manifest_named_by, plot_result

    if output_json and plot and os.path.realpath(output_json) == os.path.realpath(plot):
        from ..errors import ConfigError

        raise ConfigError(f"--plot names the same path as --output-json ({plot}); give each output its own path")
    for path in (output_json, plot):  # fail before the work, not after it
        if path:
            check_output(path, force, inputs=[x for x in (predictions, ground_truth, blocked_videos, label_map,
                                                          exclusions) if x])
    if protocol is None and manifest is None:
        manifest = manifest_named_by(predictions)
        if manifest is not None:
            click.echo(f"Using the manifest {manifest!r} named by {predictions} (pass --manifest to choose another)",
                       err=True)
    result = run(predictions, protocol=protocol, manifest=manifest, split=split, ground_truth=ground_truth,
                 subset=subset, blocked_videos=blocked_videos, label_map=label_map, exclusions=exclusions,
                 iou_rule=iou_rule, clip=clip, allow_missing=allow_missing, n_bootstrap=n_bootstrap, seed=seed,
                 max_avg_nr_proposals=max_avg_nr_proposals, clip_scoring=clip_scoring)
    print_result(result, per_class=per_class)
    if output_json:
        atomic_write_json(output_json, result, force=force)
        click.echo(f"Wrote {output_json}")
    if plot:
        plot_result(result, plot, force=force)
        click.echo(f"Wrote {plot}")


def print_result(result, *, per_class: bool = False) -> None:
    """The tables (long ones cut to ``MAX_ROWS`` rows and a count unless ``per_class``) and
    the counts of what was missing, empty, clipped, skipped or dropped."""
    from ..metrics.api import summary_tables

    for title, columns, rows in summary_tables(result):
        # plain rendering: rich's import and layout (about 0.1 s) would cost more than scoring
        if per_class or len(rows) <= MAX_ROWS:
            print_table(title, columns, rows, plain=True)
        else:
            print_table(title, columns, rows[:MAX_ROWS], plain=True)
            click.echo(f"  ... and {len(rows) - MAX_ROWS} more rows (--per-class prints them; --output-json holds "
                       "every value)")
    if result.get("n_empty"):
        n = result["n_empty"]
        click.echo(f"  {n} pair{'s have' if n != 1 else ' has'} an empty prediction list (scored as misses)")
    for key in ("n_missing", "n_clipped"):
        if result.get(key):
            click.echo(f"  {key.replace('n_', '')} {'pairs' if key == 'n_missing' else 'predictions'}: {result[key]}")
    for reason, n in {**result.get("skipped", {}), **result.get("dropped", {})}.items():
        if n:
            click.echo(f"  {reason}: {n}")
