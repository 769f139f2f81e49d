"""``relocbench features inspect PATH``: what a feature source holds and how it covers a manifest."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import print_table


@click.group("features")
def features() -> None:
    """Feature files you already have: check their layout and time axis against a manifest.

    \b
    Example:
      relocbench features inspect tsp_features.h5 --feature-preset tsp --manifest activitynet
    """


@features.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--feature-preset", default=None, metavar="NAME",
              help="Read PATH as a shipped preset (c3d-release, tsp, opentad-tsp, i3d-actionformer, tsn-csv100).")
@click.option("--feature-card", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read PATH as this feature card (YAML or JSON) says [default: a card beside PATH].")
@click.option("--manifest", default=None,
              help="Manifest (built-in name or folder): rows expected per video, and its videos present, missing "
                   "or mismatched per split.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def inspect(path, feature_preset, feature_card, manifest, as_json):
    """Layout, dimension, dtype and time axis of PATH, its rows per video against the rows expected,
    and with --manifest how many of each split's videos are present, missing or mismatched.

    \b
    Examples:
      relocbench features inspect tsp_features.h5 --feature-preset tsp --manifest activitynet
      relocbench features inspect my_feats/ --manifest activitynet --json
    """
    from ..features import inspect_features

    info = inspect_features(path, preset=feature_preset, card=feature_card, manifest=manifest)
    if as_json:
        click.echo(json.dumps(info, indent=None, sort_keys=False))
        return
    axis = info["time_axis"] or {}
    rows = [["layout", info["layout"] + (f" ({info['template']})" if info.get("template") else "")],
            ["dim", info["dim"]], ["dtype", info["dtype"]], ["time axis", axis.get("text")],
            ["declared by", info["declared_by"]], ["videos", len(info["videos"])]]
    counts = [v["rows"] for v in info["videos"]]
    if counts:
        rows.append(["rows per video", f"{min(counts)} to {max(counts)}"])
    malformed = [v for v in info["videos"] if v.get("problem")]
    if malformed:
        rows.append(["malformed", len(malformed)])
    print_table(str(path), ["", "value"], rows)
    for v in malformed[:5]:
        click.echo(f"Malformed: {v['video']}: {v['problem']}")
    man = info["manifest"]
    if man is not None:
        splits = list(man["present"])
        print_table(f"videos of {man['name']}", ["split", "present", "missing", "mismatched"],
                    [[s, man["present"][s], man["missing"][s], man["mismatched"][s]] for s in splits])
        for ex in man["mismatched_examples"]:
            if ex.get("problem") or ex["expected"] is None:
                click.echo(f"Mismatched: {ex['file']}: {ex['video']}: {ex.get('problem') or 'rows not checked'}")
                continue
            lo, hi = ex["expected"]
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            click.echo(f"Mismatched: {ex['file']}: {ex['video']}: {ex['rows']} rows, expected {want}")
