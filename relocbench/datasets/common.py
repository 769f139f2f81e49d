"""Pieces every dataset builder shares: the drop report, input hashing and statistics files."""
from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from ..io import sha256_file

__all__ = ["Report", "input_record", "input_records", "check_separate_outputs", "histogram_png", "markdown_table"]


class Report:
    """Counts of everything a builder dropped or skipped, with a few example items each.

    Nothing is dropped silently: every skip goes through ``add`` and ends up in
    ``manifest.json`` (``report``) and in the command's summary.
    """

    def __init__(self, max_examples: int = 5) -> None:
        self._counts: "OrderedDict[str, int]" = OrderedDict()
        self._examples: Dict[str, List[str]] = {}
        self.max_examples = max_examples

    def add(self, reason: str, item: Optional[str] = None, n: int = 1) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + n
        ex = self._examples.setdefault(reason, [])
        if item is not None and len(ex) < self.max_examples:
            ex.append(str(item))

    def count(self, reason: str) -> int:
        return self._counts.get(reason, 0)

    def to_dict(self) -> Dict[str, dict]:
        return {
            k: {"count": int(v), "examples": list(self._examples.get(k, []))}
            for k, v in sorted(self._counts.items())
        }

    def __bool__(self) -> bool:
        return bool(self._counts)


def input_record(path: Optional[Path]) -> Optional[dict]:
    """What manifest.json says of one input file: its base name and sha256 (no absolute path,
    so that builds on different machines are byte-identical)."""
    if path is None:
        return None
    return {"file": Path(path).name, "sha256": sha256_file(path)}


def input_records(**paths: Optional[Path]) -> Dict[str, dict]:
    """``{role: input_record(path)}`` for every input that was given (None is left out)."""
    return {role: input_record(p) for role, p in paths.items() if p is not None}


def check_separate_outputs(**paths: Optional[Path]) -> None:
    """Refuse two outputs (``--out``, ``--export``, ...) that are the same folder or one
    inside the other: each is replaced as a whole, so one would swallow the other."""
    given = [(name, Path(p)) for name, p in paths.items() if p is not None]
    for i, (a, pa) in enumerate(given):
        for b, pb in given[i + 1:]:
            ra, rb = pa.resolve(), pb.resolve()
            if ra == rb or ra in rb.parents or rb in ra.parents:
                raise ConfigError(f"--{a} {pa} and --{b} {pb}: expected two separate folders, found "
                                  f"{'the same folder twice' if ra == rb else 'one inside the other'}")


def histogram_png(
    path: Path,
    panels: Sequence[Tuple[str, Sequence[float], str]],
    *,
    bins: int = 40,
    title: str = "",
) -> None:
    """Write one PNG with a histogram per panel ``(title, values, x label)``.

    Deterministic: matplotlib's Agg backend with no date metadata.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, (ptitle, values, xlabel) in zip(axes[0], panels):
        vals = np.asarray(list(values), dtype=float)
        if vals.size:
            ax.hist(vals, bins=bins, color="#4477aa", edgecolor="white", linewidth=0.4)
        ax.set_title(ptitle, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    Path(path).write_bytes(buf.getvalue())


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(map(str, r)) + " |")
    return "\n".join(lines) + "\n"
