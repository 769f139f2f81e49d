"""``relocbench evaluate``: score predictions with one of the four protocols."""
from __future__ import annotations

import click

from ._common import force_option, print_table, seed_option

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
@click.option("--allow-missing", is_flag=True, help="Score pairs without predictions as misses (counted).")
@click.option("--n-bootstrap", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap draws for the 95% interval of the reloc-temporal Average.")
@click.option("--max-avg-nr-proposals", type=click.FloatRange(min=0), default=100, show_default=True,
              help="activitynet-proposal: proposals per video at the end of the AR@AN curve (0: all).")
@seed_option
@click.option("--output-json", type=click.Path(dir_okay=False), help="Write the results here (fractions in [0, 1]).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG: metric against the IoU threshold, per-class bars.")
@force_option
def evaluate(predictions, protocol, manifest, split, ground_truth, subset, blocked_videos, label_map, exclusions,
             iou_rule, clip, allow_missing, n_bootstrap, max_avg_nr_proposals, seed, output_json, plot, force) -> None:
    """Score PREDICTIONS and print a table (percent); see relocbench.metrics.evaluate.

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
    from ..metrics.api import evaluate as run, plot_result, summary_tables

    for path in (output_json, plot):  # fail before the work, not after it
        if path:
            check_output(path, force)
    result = run(predictions, protocol=protocol, manifest=manifest, split=split, ground_truth=ground_truth,
                 subset=subset, blocked_videos=blocked_videos, label_map=label_map, exclusions=exclusions,
                 iou_rule=iou_rule, clip=clip, allow_missing=allow_missing, n_bootstrap=n_bootstrap, seed=seed,
                 max_avg_nr_proposals=max_avg_nr_proposals)
    for title, columns, rows in summary_tables(result):
        print_table(title, columns, rows)
    for key in ("n_missing", "n_clipped"):
        if result.get(key):
            click.echo(f"  {key.replace('n_', '')} {'pairs' if key == 'n_missing' else 'predictions'}: {result[key]}")
    for reason, n in {**result.get("skipped", {}), **result.get("dropped", {})}.items():
        if n:
            click.echo(f"  {reason}: {n}")
    if output_json:
        atomic_write_json(output_json, result, force=force)
        click.echo(f"Wrote {output_json}")
    if plot:
        plot_result(result, plot, force=force)
        click.echo(f"Wrote {plot}")
