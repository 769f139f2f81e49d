"""The leaderboard: result records under ``results/<board>/<baseline>.json`` and a README.

A *board* is one section of the leaderboard: by default the dataset's name; runs at another
budget of the same dataset go to their own board (``activitynet-paper``: the paper's batch
and steps) so that every table compares runs made alike. ``publish_result`` copies a run's
``result.json`` into the leaderboard folder (refusing to overwrite without ``force``);
``write_leaderboard`` regenerates ``README.md`` from every record: per board, the tables in
the layout of the papers (with the papers' own numbers as reference rows), a plot of the
metric against the IoU threshold for every baseline, and a qualitative figure of a few test
pairs (ground truth and each baseline's top prediction). Hand-written analysis lives in
``notes/<board>.md`` and is included verbatim.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from .errors import ManifestError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, check_output, read_json

__all__ = ["check_board", "publish_result", "publish_run", "write_leaderboard", "metric_value", "load_results"]


def metric_value(metrics: Dict[str, Any], path: Sequence[str]) -> float:
    cur: Any = metrics
    for key in path:
        cur = cur[key]
    return float(cur)


def check_board(board: str) -> str:
    """``board`` if it is a plain folder name (no separators, not hidden); else a ManifestError."""
    if not board or "/" in board or "\\" in board or board.startswith("."):
        raise ManifestError(f"a leaderboard board is a plain folder name; got {board!r}")
    return board


def publish_result(result: Dict[str, Any], directory: Union[str, Path], *, force: bool = False,
                   board: Union[str, None] = None) -> Path:
    """Write ``result`` as ``<directory>/results/<board>/<baseline>.json`` (board: the dataset's
    name unless given; recorded in the copy as ``board``)."""
    board = check_board(board or result.get("board") or result["dataset"])
    path = Path(directory) / "results" / board / f"{result['baseline']}.json"
    check_output(path, force)
    atomic_write_json(path, {**result, "board": board})
    return path


def publish_run(run_dir: Union[str, Path], directory: Union[str, Path], *, force: bool = False,
                board: Union[str, None] = None) -> Path:
    """Publish the ``result.json`` of a finished run folder (see :func:`publish_result`)."""
    f = Path(run_dir) / "result.json"
    if not f.is_file():
        raise ManifestError("no result.json here: expected the folder of a finished run-baseline run", file=run_dir)
    rec = read_json(f, "run result", ManifestError)
    for key in ("baseline", "task", "dataset", "metrics"):
        if key not in rec:
            raise ManifestError(f"run result lacks {key!r}", file=f)
    return publish_result(rec, directory, force=force, board=board)


def load_results(directory: Union[str, Path]) -> Dict[str, List[Dict[str, Any]]]:
    """``{board: [result records]}`` from ``<directory>/results``."""
    root = Path(directory) / "results"
    out: Dict[str, List[Dict[str, Any]]] = {}
    if not root.is_dir():
        return out
    for ds in sorted(p for p in root.iterdir() if p.is_dir()):
        recs = []
        for f in sorted(ds.glob("*.json")):
            rec = read_json(f, "leaderboard result", ManifestError)
            for key in ("baseline", "task", "metrics"):
                if key not in rec:
                    raise ManifestError(f"leaderboard result lacks {key!r}", file=f)
            recs.append(rec)
        if recs:
            out[ds.name] = recs
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _curve_plot(task, recs, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for rec in recs:
        c = task.curve(rec["metrics"])
        if c is None:
            continue
        xs, ys, xl, yl = c
        ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=rec["baseline"])
        ax.set_xlabel(xl)
        ax.set_ylabel(f"{yl} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _examples_plot(recs) -> bytes:
    """Fig. 4 style: per example pair, the reference window with the ground truth and each
    baseline's top-1 span."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    first = next(r for r in recs if r.get("examples"))
    examples = first["examples"]
    names = [r["baseline"] for r in recs if r.get("examples")]
    by_name = {r["baseline"]: {e["pair_id"]: e for e in r["examples"]} for r in recs if r.get("examples")}
    n = len(examples)
    fig, axes = plt.subplots(n, 1, figsize=(7, 0.45 * (len(names) + 1) * n + 0.6), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        w = ex["window_steps"]
        rows = [("ground truth", ex["ground_truth"])] + [(nm, by_name[nm].get(ex["pair_id"], {}).get("prediction"))
                                                         for nm in names]
        for i, (nm, span) in enumerate(rows):
            y = len(rows) - 1 - i
            ax.plot([0, w], [y, y], color="#dddddd", lw=6, solid_capstyle="butt")
            if span:
                ax.plot(span, [y, y], color="#228833" if i == 0 else "#4477aa", lw=6, solid_capstyle="butt")
                ax.text(w * 1.01, y, f"{span[0]}-{span[1]}", va="center", fontsize=6)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r[0] for r in rows][::-1], fontsize=6)
        ax.set_xlim(0, w * 1.12)
        ax.set_title(f"{ex['label']} (query {ex['query_steps']} steps, reference {w} steps)", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _table(task, title: str, names: List[str], recs_by_name: Dict[str, Dict[str, Any]]) -> List[str]:
    cols = [t for _, t in task.columns]
    lines = [f"### {title}", "", "| baseline | " + " | ".join(cols) + " | parameters |",
             "|---|" + "---|" * (len(cols) + 1)]
    for nm in names:
        rec = recs_by_name.get(nm)
        if rec is None:
            lines.append(f"| {nm} | " + " | ".join("–" for _ in cols) + " | not run on this board |")
            continue
        vals = [f"{100 * metric_value(rec['metrics'], p):.1f}" for p, _ in task.columns]
        lines.append(f"| {nm} | " + " | ".join(vals) + f" | {rec.get('parameters', 0):,} |")
    paper = task.paper_rows.get(title)
    if paper:
        for nm, vals in paper.items():
            lines.append(f"| *paper: {nm}* | " + " | ".join(f"*{v:.1f}*" for v in vals) + " | |")
    lines.append("")
    return lines


def write_leaderboard(directory: Union[str, Path]) -> Path:
    """Regenerate ``<directory>/README.md`` and its figures from the result records."""
    from .tasks import get_task

    directory = Path(directory)
    results = load_results(directory)
    lines = ["# relocbench leaderboard", "",
             "Generated by `relocbench leaderboard` from `results/<board>/<baseline>.json`; do not edit by hand "
             "(analysis goes into `notes/<board>.md`). Numbers are percentages.", ""]
    if not results:
        lines.append("No results yet: run `relocbench run-baseline NAME --leaderboard leaderboard`.")
    for ds, recs in results.items():
        task = get_task(recs[0]["task"])
        by_name = {r["baseline"]: r for r in recs}
        lines += [f"## {ds}", ""]
        listed: List[str] = []
        for title, names in task.tables:
            if any(n in by_name for n in names):
                lines += _table(task, title, names, by_name)
                listed += names
        others = [r["baseline"] for r in recs if r["baseline"] not in listed]
        if others:
            lines += _table(task, "Other baselines", others, by_name)
        feats = {json.dumps(r.get("features"), sort_keys=True) for r in recs}
        lines += ["Runs: " + "; ".join(
            f"`{r['baseline']}` seed {r.get('seed')}, {r.get('config', {}).get('steps', 0)} steps, "
            f"{r.get('wall_time_s', 0):.0f} s on {r.get('hardware', {}).get('device', '?')}" for r in recs) + ".", ""]
        if len(feats) == 1:
            lines += [f"Features: `{next(iter(feats))}`.", ""]
        fig_dir = directory / "figures"
        curve = _curve_plot(task, recs, f"{ds}: metric against the IoU threshold")
        atomic_write_bytes(fig_dir / f"{ds}-thresholds.png", curve)
        lines += [f"![{ds} thresholds](figures/{ds}-thresholds.png)", ""]
        if any(r.get("examples") for r in recs):
            atomic_write_bytes(fig_dir / f"{ds}-examples.png", _examples_plot(recs))
            lines += [f"![{ds} examples](figures/{ds}-examples.png)", ""]
        notes = directory / "notes" / f"{ds}.md"
        if notes.is_file():
            lines += [notes.read_text(encoding="utf-8").rstrip(), ""]
    out = directory / "README.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
