"""``relocbench build-dataset NAME``: one subcommand per dataset builder."""
from __future__ import annotations

import click

from ._common import force_option, out_option, seed_option  # noqa: F401


@click.group("build-dataset")
def build_dataset() -> None:
    """Build a benchmark manifest from public annotations.

    \b
    Example:
      relocbench build-dataset activitynet \\
          --annotations ../shared/data/activitynet/anet_anno_action.json \\
          --lengths ../shared/data/activitynet/c3d_length.json \\
          --class-split ../shared/data/activitynet/class_perm.npy \\
          --out /tmp/activitynet-manifest
    """


def _add_builders() -> None:
    # Each dataset's command lives in its own module (cli/build_<name>.py).
    import importlib

    for name in ("activitynet", "ava", "ucf24"):
        try:
            mod = importlib.import_module(f"{__package__}.build_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.build_{name}":
                raise
            continue
        build_dataset.add_command(mod.command)


_add_builders()
