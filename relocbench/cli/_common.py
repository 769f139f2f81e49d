"""Options and helpers shared by the CLI commands."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import click

out_option = click.option(
    "--out", "out", type=click.Path(file_okay=False), required=True,
    help="Output folder (written atomically; refused if it exists unless --force).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a summary table with rich (falls back to plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(str(c), justify="right" if c != columns[0] else "left")
    for r in rows:
        table.add_row(*[str(x) for x in r])
    Console().print(table)


def print_report(report: Mapping[str, object]) -> None:
    """Print what a command skipped or dropped, one line per reason, with counts."""
    for key, val in report.items():
        if isinstance(val, Mapping):
            n = val.get("count", 0)
            ex = val.get("examples")
            extra = f" (e.g. {', '.join(map(str, ex[:3]))})" if ex else ""
            click.echo(f"  {key}: {n}{extra}")
        else:
            click.echo(f"  {key}: {val}")


def print_build_summary(title: str, columns: Sequence[str], result, *also: object) -> None:
    """The end of every build-dataset command: summary table, drop report, where it wrote."""
    print_table(title, columns, result.summary_rows())
    if result.report:
        click.echo("Dropped or skipped (see manifest.json 'report'):")
        print_report(result.report.to_dict())
    click.echo("Wrote " + " and ".join(str(x) for x in (result.out, *also) if x is not None))
