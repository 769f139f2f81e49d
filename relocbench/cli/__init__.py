"""The ``relocbench`` command line. Each command is a thin wrapper over a library function.

Errors of the ``RelocbenchError`` family print one line (``Error: file: item: message``)
and exit with status 2; ``relocbench --debug ...`` shows the traceback instead.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from .. import __version__
from ..errors import RelocbenchError

__all__ = ["main", "cli"]


class _Main(click.Group):
    """Click group that turns RelocbenchError (and interrupts) into a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RelocbenchError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo("Interrupted: no partial output was left behind.", err=True)
            ctx.exit(130)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relocbench")
@click.option("--debug", is_flag=True, envvar="RELOCBENCH_DEBUG", help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """Benchmarks and baselines for video re-localization.

    \b
    Examples:
      relocbench build-dataset activitynet --annotations ../shared/data/activitynet/anet_anno_action.json \\
          --lengths ../shared/data/activitynet/c3d_length.json \\
          --class-split ../shared/data/activitynet/class_perm.npy --out manifests/activitynet --force
      relocbench evaluate predictions.json --manifest activitynet --split test
      relocbench run-baseline cgbm --dataset activitynet --features synthetic
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["verbose"] = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from . import build  # noqa: F401  (registers build-dataset)

    cli.add_command(build.build_dataset)
    for mod_name, attr_names in _OPTIONAL_COMMANDS:
        try:
            mod = __import__(f"{__name__}.{mod_name}", fromlist=list(attr_names))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod_name}":
                raise
            continue
        for attr in attr_names:
            cli.add_command(getattr(mod, attr))


# Command modules of later issues; each registers when its module exists.
_OPTIONAL_COMMANDS = (
    ("evaluate", ("evaluate",)),
    ("baselines", ("run_baseline", "list_baselines", "leaderboard")),
)

_register()


def main(argv=None) -> None:
    cli.main(args=argv, prog_name="relocbench")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
