"""``relocbench build-dataset activitynet``."""
from __future__ import annotations

from pathlib import Path

import click

from ..datasets.activitynet import ActivityNetConfig, build_activitynet
from ._common import SEED, force_option, out_option, print_build_summary, seed_option

_EXAMPLE = """\b
Example (the committed manifest, from the files in ../shared/data):
  relocbench build-dataset activitynet \\
      --annotations ../shared/data/activitynet/anet_anno_action.json \\
      --lengths ../shared/data/activitynet/c3d_length.json \\
      --class-split ../shared/data/activitynet/class_perm.npy \\
      --out /tmp/activitynet --export video-reloc-json /tmp/activitynet-json
"""


@click.command("activitynet", help=f"""Build the ECCV 2018 temporal re-localization manifest
from ActivityNet v1.3 annotations (protocol feng2018).

{_EXAMPLE}""")
@click.option("--annotations", type=click.Path(path_type=Path), required=True,
              help="ActivityNet v1.3 JSON (official database/taxonomy layout or per-video layout).")
@click.option("--lengths", type=click.Path(path_type=Path), default=None,
              help="c3d_length.json: n_frames and n_feat per video. Without it, steps come from duration and --fps.")
@click.option("--class-split", type=click.Path(path_type=Path), default=None,
              help=".npy permutation of the sorted classes, or JSON {train: [...], val: [...], test: [...]}.")
@click.option("--split-seed", type=SEED, default=None, help="Without --class-split: seed of a random 80/10/10 class split.")
@click.option("--fps", type=float, default=30.0, show_default=True, help="Frame rate assumed without --lengths.")
@click.option("--pairs-per-query", type=int, default=1, show_default=True, help="References drawn per evaluation query.")
@click.option("--allow-self-pairs", is_flag=True, help="Allow a query to be its own reference (the original's behaviour).")
@click.option("--strict", is_flag=True, help="Fail on a video without a lengths entry instead of skipping it.")
@click.option("--export", nargs=2, type=(click.Choice(["video-reloc-json"]), click.Path(path_type=Path)), default=None,
              metavar="FORMAT DIR", help="Also write the original release's JSON layout into DIR.")
@out_option
@seed_option
@force_option
def command(annotations, lengths, class_split, split_seed, fps, pairs_per_query, allow_self_pairs, strict,
            export, out, seed, force):
    config = ActivityNetConfig(seed=seed, split_seed=split_seed, fps=fps, pairs_per_query=pairs_per_query,
                               allow_self_pairs=allow_self_pairs, strict=strict)
    res = build_activitynet(annotations, Path(out), lengths=lengths, class_split=class_split, config=config,
                            force=force, export=export[1] if export else None, progress=True)
    print_build_summary("ActivityNet re-localization manifest",
                        ["split", "segments", "videos", "classes", "pairs"], res, res.export)
