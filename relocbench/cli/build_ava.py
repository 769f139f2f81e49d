"""``relocbench build-dataset ava``."""
from __future__ import annotations

from pathlib import Path

import click

from ..datasets.ava import AVAConfig, build_ava
from ._common import SEED, force_option, out_option, print_build_summary, seed_option

_EXAMPLE = """\b
Example (official files from https://research.google.com/ava/download.html):
  relocbench build-dataset ava --train-csv ava_train_v2.2.csv --val-csv ava_val_v2.2.csv \\
      --label-map ava_action_list_v2.2_for_activitynet_2019.pbtxt \\
      --train-exclusions ava_train_excluded_timestamps_v2.2.csv \\
      --val-exclusions ava_val_excluded_timestamps_v2.2.csv \\
      --class-split ../shared/data/ava/stvr_test_val_combined_labels.json --out /tmp/ava
"""

_file = click.Path(exists=False, dir_okay=False, path_type=Path)


@click.command("ava", help=f"""Build the CVPR 2019 spatio-temporal re-localization manifest from
the AVA box CSVs (v2.1 or v2.2): combined-label tubelets, class-disjoint splits, fixed
query/reference pairs and per-keyframe target boxes (protocol feng2019).

{_EXAMPLE}""")
@click.option("--train-csv", type=_file, required=True, help="AVA training CSV (ava_train_v2.x.csv).")
@click.option("--val-csv", type=_file, required=True, help="AVA validation CSV (ava_val_v2.x.csv).")
@click.option("--label-map", type=_file, required=True, help="AVA label map .pbtxt; other action ids are dropped.")
@click.option("--class-split", type=_file, default=None,
              help="The paper's [test, val] combined labels (stvr_test_val_combined_labels.json).")
@click.option("--split-seed", type=SEED, default=None,
              help="Instead of --class-split: split the 54 labels with > 100 validation tubelets 27/27 with this seed.")
@click.option("--train-exclusions", type=_file, default=None, help="Excluded timestamps of the training videos.")
@click.option("--val-exclusions", type=_file, default=None, help="Excluded timestamps of the validation videos.")
@click.option("--context", type=click.Choice(["default", "original"]), default="default", show_default=True,
              help="default: own length (at least --min-context s) on each side within the clip; "
                   "original: own length only below 10 s, within 900..1800 s.")
@click.option("--min-context", type=float, default=3.0, show_default=True, help="Least context on each side (s).")
@out_option
@seed_option
@force_option
def command(train_csv, val_csv, label_map, class_split, split_seed, train_exclusions, val_exclusions, context,
            min_context, out, seed, force):
    config = AVAConfig(seed=seed, split_seed=split_seed, context=context, min_context_s=min_context)
    res = build_ava(train_csv, val_csv, Path(out), label_map=label_map, class_split=class_split,
                    train_exclusions=train_exclusions, val_exclusions=val_exclusions, config=config,
                    force=force, progress=True)
    print_build_summary("AVA spatio-temporal re-localization manifest",
                        ["split", "tubelets", "videos", "labels", "pairs", "target boxes"], res)
