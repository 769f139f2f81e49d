"""``relocbench build-dataset ucf24``."""
from __future__ import annotations

from pathlib import Path

import click

from ..datasets.ucf24 import UCF24Config, build_ucf24
from ._common import SEED, force_option, out_option, print_build_summary, seed_option

_EXAMPLE = """\b
Example (the committed manifest, from the files in ../shared/data):
  relocbench build-dataset ucf24 \\
      --annotations ../shared/data/ucf24/pyannot_with_class_names.pkl --out /tmp/ucf24
"""

_file = click.Path(dir_okay=False, path_type=Path)


@click.command("ucf24", help=f"""Build the CVPR 2019 spatio-temporal re-localization manifest from
the UCF101-24 tube annotations: one tubelet per tube, a 14/5/5 class split, fixed
query/reference pairs (references from another video) and target boxes every
--keyframe-stride frames (protocol feng2019).

{_EXAMPLE}""")
@click.option("--annotations", type=_file, required=True,
              help="pyannot_with_class_names.pkl (or the original pyannot.pkl).")
@click.option("--test-list", type=_file, default=None,
              help="testlist01.txt: train tubes only from official training videos, val/test only from test videos.")
@click.option("--class-split", type=_file, default=None, help='JSON {"train": [...], "val": [...], "test": [...]}.')
@click.option("--split-seed", type=SEED, default=0, show_default=True, help="Seed of the 14/5/5 class split.")
@click.option("--keyframe-stride", type=int, default=8, show_default=True, help="Frames between scored keyframes.")
@click.option("--min-context", type=int, default=75, show_default=True,
              help="Least context on each side of a reference tube (frames; 75 = 3 s at 25 fps).")
@out_option
@seed_option
@force_option
def command(annotations, test_list, class_split, split_seed, keyframe_stride, min_context, out, seed, force):
    config = UCF24Config(seed=seed, split_seed=split_seed, keyframe_stride=keyframe_stride,
                         min_context_frames=min_context)
    res = build_ucf24(annotations, Path(out), test_list=test_list, class_split_file=class_split, config=config,
                      force=force, progress=True)
    print_build_summary("UCF101-24 spatio-temporal re-localization manifest",
                        ["split", "tubelets", "videos", "labels", "pairs", "target boxes"], res)
