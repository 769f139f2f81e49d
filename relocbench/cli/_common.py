"""Options and helpers shared by the CLI commands."""
from __future__ import annotations

import sys
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


#: Tables of more rows than this, or printed where stdout is not a terminal, are drawn by
#: :func:`render_table` (plain string formatting) instead of rich, whose layout engine
#: costs about 4 ms a row (a 200-class table: 0.75 s, measured on 2026-12-07).
RICH_MAX_ROWS = 40
_MIN_WRAP = 10  # a column of text is wrapped no narrower than this (or its longest word)


def split_columns(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list:
    """Column index groups that each fit ``width`` characters as a boxed table.

    The first (label) column is repeated in every group; a table that fits stays whole.
    Each column takes its widest cell (line) plus 3 (padding and rule), the table 1 more.
    """
    need = _needs(columns, rows)
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


def _width_of(text: str) -> int:
    return max(map(len, text.split("\n"))) if text else 0


def _needs(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list:
    return [max([_width_of(str(c))] + [_width_of(r[i]) for r in rows]) + 3 for i, c in enumerate(columns)]


def shorten_path(text: str, width: int) -> str:
    """A path longer than ``width`` as ``…/`` and its last components that fit (at least the last)."""
    if len(text) <= width or "/" not in text.strip("/"):
        return text
    parts = text.rstrip("/").split("/")
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(tail) + 2 > width:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}"


def _is_path(text: str) -> bool:
    """A cell that looks like a path (a slash, a letter, no space): ``12/34`` is a count."""
    return "/" in text and " " not in text and "\n" not in text and any(ch.isalpha() for ch in text)


def fit_columns(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int):
    """``(columns, rows)`` made to fit ``width`` characters where they can: long paths are
    shortened (``…/last/parts``) and text is wrapped at spaces and the hyphens of words
    (numbers and single words are never cut), widest columns first. A table that still does
    not fit is split by :func:`split_columns` when printed."""
    import textwrap

    columns, rows = [str(c) for c in columns], [list(r) for r in rows]
    need = _needs(columns, rows)
    excess = sum(need) + 1 - width
    if excess <= 0:
        return columns, rows
    # the narrowest each column can get: its longest word (a path: its last component + 2)
    floor = []
    for i, c in enumerate(columns):
        words = [len(w) for cell in [c] + [r[i] for r in rows] for w in
                 (["…/" + cell.rsplit("/", 1)[-1]] if _is_path(cell) else
                  textwrap.wrap(cell, 1, break_long_words=False) or [""])]
        floor.append(max([_MIN_WRAP if need[i] - 3 > _MIN_WRAP else need[i] - 3] + words) + 3)
    target = list(need)
    for i in sorted(range(len(columns)), key=lambda j: -need[j]):
        if excess <= 0:
            break
        cut = min(excess, target[i] - floor[i])
        if cut > 0:
            target[i] -= cut
            excess -= cut
    for i, w in enumerate(target):
        if w == need[i]:
            continue
        w -= 3

        def fit(cell: str) -> str:
            if len(cell) <= w:
                return cell
            if _is_path(cell):
                return shorten_path(cell, w)
            return "\n".join(textwrap.wrap(cell, w, break_long_words=False)) or cell

        columns[i] = fit(columns[i])
        for r in rows:
            r[i] = fit(r[i])
    return columns, rows


def _plain_text(cell: str) -> str:
    """A cell escaped for rich markup (``rich.markup.escape``), as the text rich would show."""
    if "\\[" not in cell:
        return cell
    from rich.markup import render

    return render(cell).plain


def _left(i: int, rows: Sequence[Sequence[str]]) -> bool:
    """The first column and columns of prose (a cell with letters and a space) align left."""
    return i == 0 or any(" " in r[i] and any(ch.isalpha() for ch in r[i]) for r in rows)


def render_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A boxed table drawn as rich draws its default one (heavy header; the first column and
    prose left-aligned, the others right-aligned), by plain string formatting; cells may
    hold newlines."""
    cols = [_plain_text(str(c)) for c in columns]
    body = [[_plain_text(x) for x in r] for r in rows]
    widths = [w - 3 for w in _needs(cols, body)]
    is_left = [_left(i, body) for i in range(len(cols))]

    def lines(cells, left="│", mid="│", right="│"):
        split = [c.split("\n") for c in cells]
        height = max(map(len, split))
        out = []
        for k in range(height):
            parts = []
            for i, (c, w) in enumerate(zip(split, widths)):
                text = c[k] if k < len(c) else ""
                parts.append(" " + (text.ljust(w) if is_left[i] else text.rjust(w)) + " ")
            out.append(left + mid.join(parts) + right)
        return out

    def rule(a, b, c, h):
        return a + b.join(h * (w + 2) for w in widths) + c

    total = sum(widths) + 3 * len(widths) + 1
    out = [title.center(total).rstrip() if len(title) < total else title]
    out.append(rule("┏", "┳", "┓", "━"))
    out += lines(cols, "┃", "┃", "┃")
    out.append(rule("┡", "╇", "┩", "━"))
    for r in body:
        out += lines(r)
    out.append(rule("└", "┴", "┘", "─"))
    return "\n".join(out)


def terminal_width() -> int:
    """The width tables are made for: ``$COLUMNS``, else the terminal's, else 80."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, plain: bool = False) -> None:
    """Print a summary table that fits the terminal (80 columns where there is none).

    Paths are shortened and text wrapped (:func:`fit_columns`) before a table that is still
    too wide is printed in parts (each repeating the first column, titled ``part k/n``),
    never squeezed until its numbers are cut. Drawn with rich on a terminal, by
    :func:`render_table` (the same look, plain formatting) when stdout is not a terminal, the
    table is long or ``plain`` (commands whose own work takes less than rich's import and
    layout, about 0.1 s: ``evaluate``).
    """
    width = terminal_width()
    columns, cells = fit_columns(columns, [[str(x) for x in r] for r in rows], width)
    groups = split_columns(columns, cells, width)
    rich = not plain and len(cells) <= RICH_MAX_ROWS and sys.stdout.isatty()
    if rich:
        from rich.console import Console

        console = Console(width=width)
    for k, group in enumerate(groups, 1):
        name = title if len(groups) == 1 else f"{title} (part {k}/{len(groups)})"
        head, body = [columns[i] for i in group], [[r[i] for i in group] for r in cells]
        if not rich:
            click.echo(render_table(name, head, body))
            continue
        from rich.table import Table

        table = Table(title=name)
        for j, c in enumerate(head):
            table.add_column(c, justify="left" if _left(j, body) else "right")
        for r in body:
            table.add_row(*r)
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
