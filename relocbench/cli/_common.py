"""Options and helpers shared by the CLI commands."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import click

out_option = click.option(
    "--out", "out", type=click.Path(file_okay=False), required=True,
    help="Output folder (written atomically; refused if it exists unless --force).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output.")
#: A seed is an integer >= 0 (NumPy's generators refuse negative ones); shared by every command.
SEED = click.IntRange(min=0)
seed_option = click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed (an integer >= 0).")


def split_columns(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list:
    """Column index groups that each fit ``width`` characters as a boxed table.

    The first (label) column is repeated in every group; a table that fits stays whole.
    Each column takes its widest cell plus 3 (padding and rule), the table 1 more.
    """
    need = [max([len(str(c))] + [len(r[i]) for r in rows]) + 3 for i, c in enumerate(columns)]
    if sum(need) + 1 <= width or len(columns) <= 2:
        return [list(range(len(columns)))]
    groups, cur, used = [], [0], need[0] + 1
    for i in range(1, len(columns)):
        if len(cur) > 1 and used + need[i] > width:
            groups.append(cur)
            cur, used = [0], need[0] + 1
        cur.append(i)
        used += need[i]
    groups.append(cur)
    return groups


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a summary table with rich (plain text when not a terminal).

    A table wider than the terminal is printed in parts (each repeating the first column,
    titled ``part k/n``) instead of being squeezed until its numbers are cut.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cells = [[str(x) for x in r] for r in rows]
    groups = split_columns(columns, cells, console.width)
    for k, group in enumerate(groups, 1):
        table = Table(title=title if len(groups) == 1 else f"{title} (part {k}/{len(groups)})")
        for i in group:
            table.add_column(str(columns[i]), justify="left" if i == 0 else "right")
        for r in cells:
            table.add_row(*[r[i] for i in group])
        console.print(table)


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
