"""The ``relocbench`` command line. Each command is a thin wrapper over a library function.

Errors of the ``RelocbenchError`` family print one line (``Error: file: item: message``)
and exit with status 2; ``relocbench --debug ...`` shows the traceback before that line
(exit status 2 as well).

``import relocbench`` (the package, imported before anything here) chooses the OpenMP
wait policy of PyTorch's CPU threads before torch is imported: see ``relocbench/_openmp.py``.

Commands are listed in ``COMMANDS`` and imported only when they run or their own
``--help`` is asked, so ``relocbench --version`` and ``relocbench --help`` import neither
numpy, pandas nor pyarrow.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

__all__ = ["main", "cli", "COMMANDS"]

# Every command: name -> (module under relocbench.cli, attribute, short help shown by --help).
# Add one row per command; a row whose module does not exist (yet) is left out of the listing.
COMMANDS = {
    "build-dataset": ("build", "build_dataset", "Build a benchmark manifest from public annotations."),
    "evaluate": ("evaluate", "evaluate", "Score predictions and print a table (percent)."),
    "run-baseline": ("baselines", "run_baseline", "Train, select on validation, predict and score a baseline."),
    "list-baselines": ("baselines", "list_baselines", "List every registered baseline with its parameter count."),
    "leaderboard": ("baselines", "leaderboard", "Regenerate the leaderboard README (or --html site) from its results."),
    "localize": ("localize", "localize", "Find where a clip happens in your own videos."),
    "index": ("index", "index", "Extract a video collection's features once, for localize --index."),
    "predict": ("predict", "predict", "Predict with a finished run on another split, manifest or features."),
    "extract-features": ("extract", "extract_features", "Extract per-step features from real videos into HDF5."),
    "merge-features": ("extract", "merge_features", "Merge shard feature files into one HDF5 file."),
    "features": ("features", "features", "Inspect feature files you already have: layout, time axis, coverage."),
}


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{module}") is not None


class _Main(click.Group):
    """Lazy Click group: turns RelocbenchError (and interrupts) into a one-line message."""

    def list_commands(self, ctx: click.Context):
        names = set(super().list_commands(ctx))
        names.update(n for n, (mod, _, _) in COMMANDS.items() if _module_exists(mod))
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in COMMANDS:
            return cmd
        mod_name, attr, _ = COMMANDS[name]
        if not _module_exists(mod_name):
            return None
        return getattr(importlib.import_module(f"{__name__}.{mod_name}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing takes the short help from COMMANDS instead of importing each command.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, COMMANDS[name][2]))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from ..errors import RelocbenchError

        try:
            return super().invoke(ctx)
        except RelocbenchError as exc:
            if (ctx.obj or {}).get("debug"):  # the traceback, and the same exit status as without --debug
                import traceback

                click.echo(traceback.format_exc().rstrip(), err=True)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # a bad option or argument: one line, like every other error
            if (ctx.obj or {}).get("debug") or ctx.params.get("debug"):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"Error: {where}: {exc.format_message()} (see '{where} --help')", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (relocbench.io.Terminated)
            if (ctx.obj or {}).get("debug"):
                raise
            code = getattr(exc, "exit_code", 130)
            what = "Terminated" if code != 130 else "Interrupted"
            hint = getattr(exc, "resume_hint", None)
            click.echo(f"{what}: no partial output was left behind" + (f"; {hint}." if hint else "."), err=True)
            ctx.exit(code)


def _version() -> str:
    from .. import __version__

    return __version__


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="relocbench")
@click.option("--debug", is_flag=True, envvar="RELOCBENCH_DEBUG", help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """Benchmarks and baselines for video re-localization.

    \b
    Examples:
      relocbench build-dataset activitynet --annotations ../shared/data/activitynet/anet_anno_action.json \\
          --lengths ../shared/data/activitynet/c3d_length.json \\
          --class-split ../shared/data/activitynet/class_perm.npy --out runs/activitynet-manifest
      relocbench evaluate predictions.json --manifest activitynet --split test
      relocbench run-baseline cgbm --dataset activitynet --features synthetic
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["verbose"] = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv=None) -> None:
    from .. import io

    if hasattr(io, "install_sigterm_handler"):  # SIGTERM cleans temporary outputs as Ctrl-C does
        io.install_sigterm_handler()
    cli.main(args=argv, prog_name="relocbench")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
