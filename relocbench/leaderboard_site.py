"""``relocbench leaderboard --html DIR``: the leaderboard as a static site.

Everything a page needs is in DIR (no server, no network at view time: no CDN scripts or
fonts): ``index.html`` with one section per board (its features named on a visible line;
one set of tables per features, sortable by clicking a header, mean ± std over seeds, the
pooled 95% interval, the paired comparison with the table's full model; the papers' rows in
tables of their own, labelled ``paper, C3D``), one page per result
(per row: a baseline, or a baseline and a recipe other than its default,
:func:`relocbench.leaderboard.row_name`; ``<board>/<baseline>.html``, or
``<board>/<baseline>.<features>.html`` on a board with several features; names are slugs,
distinct for distinct names, and a clash is refused, never overwritten: the features line,
per-seed runs, breakdowns, the threshold curve as SVG, the qualitative examples, the exact
config of each seed, manifest sha256 and the command that reproduces it), ``submit.html``
and two assets (``style.css``, ``sort.js``).

The numbers come from :func:`relocbench.leaderboard.board_stats`, as in the README.
Regenerating from unchanged results gives byte-identical files: records are read in sorted
order, nothing depends on the clock, and matplotlib writes SVG with a fixed
``svg.hashsalt`` and no date.
"""
from __future__ import annotations

import html
import io
import json
import re
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .errors import ManifestError
from .io import atomic_dir, dumps_json
from .leaderboard import (HEADLINE_COLUMN, board_stats, board_tables, claim, feature_groups, features_summary,
                          fmt_ci, fmt_comparison, fmt_count, fmt_mean_std, group_runs, load_results, paper_label,
                          record_folder, slug)

__all__ = ["build_site", "render_site", "write_site"]

_CSS = """\
body { font-family: sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.sortable thead th { cursor: pointer; background: #f2f2f2; user-select: none; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody.paper td { font-style: italic; color: #666; background: #fafafa; }
tbody.paper tr:first-child td { border-top: 2px solid #888; }
td.ns { color: #a05a00; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
nav a { margin-right: 1.2em; }
p.features { background: #eef4fb; border-left: 4px solid #4477aa; padding: 0.4em 0.8em; }
"""

_JS = """\
// Click a header of a table.sortable to sort the rows of its first tbody by that column.
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    if (v === null) { v = cell.textContent.trim(); }
    var x = parseFloat(v);
    return isNaN(x) ? v.toLowerCase() : x;
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      var missing = (typeof x !== typeof y);
      if (missing) { return typeof x === "number" ? -1 : 1; }   // rows without a number go last
      var c = x < y ? -1 : x > y ? 1 : 0;
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _page(title: str, body: List[str], depth: int = 0) -> str:
    up = "../" * depth
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f'<link rel="stylesheet" href="{up}style.css">', "</head>", "<body>",
        f'<nav><a href="{up}index.html">Leaderboard</a><a href="{up}submit.html">Submit your method</a></nav>',
        *body, f'<script src="{up}sort.js"></script>', "</body>", "</html>", ""])


def _td(text: str, sort: Optional[float] = None, cls: str = "") -> str:
    attrs = "" if sort is None else f' data-sort="{sort!r}"'
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{_e(text)}</td>"


def _slug(name: str) -> str:
    return slug(name)


def _svg_curve(task, runs: List[Dict[str, Any]], title: str) -> Optional[str]:
    """The metric against the IoU threshold, one line per seed (SVG text, deterministic)."""
    curves = [(r.get("seed"), task.curve(r["metrics"])) for r in runs]
    if any(c is None for _, c in curves):
        return None
    return _svg_lines([(f"seed {seed}", *c) for seed, c in curves], title)


def _svg_lines(curves, title: str) -> str:
    """One line per ``(label, xs, ys, x label, y label)`` (ys fractions, drawn in percent),
    as deterministic SVG text."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "relocbench", "svg.fonttype": "path"}):
        fig, ax = plt.subplots(figsize=(5.0, 3.2))
        for label, xs, ys, xl, yl in curves:
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=label)
            ax.set_xlabel(xl)
            ax.set_ylabel(f"{yl} (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    # the RDF metadata block only names vocabularies (URLs); the page needs none of it
    return re.sub(r"\s*<metadata>.*?</metadata>", "", buf.getvalue(), count=1, flags=re.S)


def _proposal_section(runs: List[Dict[str, Any]], name: str, board: str, sub: str, stem: str,
                      files: "_Files") -> List[str]:
    """The official proposal metric of the runs' ranked predictions (``proposals`` of each
    record): AUC and AR@1/5/10 per seed with their mean, and the AR-AN curve."""
    have = [r for r in runs if isinstance(r.get("proposals"), dict)]
    if not have:
        return []
    n = have[0]["proposals"].get("max_avg_nr_proposals")
    out = ["<h2>Proposals (activitynet-proposal)</h2>",
           f"<p>The run's ranked predictions scored as temporal proposals by the official ActivityNet proposal "
           f"metric (<code>relocbench evaluate --protocol activitynet-proposal</code>): each test pair is a video whose "
           f"ground truth is the pair's segment; the curve ends at {_e(n)} proposals per pair. Average recall over "
           f"tIoU 0.5:0.05:0.95, in percent.</p>",
           '<table class="sortable"><thead><tr>' + "".join(
               f"<th>{h}</th>" for h in ("seed", "AUC", "AR@1", "AR@5", "AR@10", "proposals kept")) + "</tr></thead><tbody>"]
    cols = {"AUC": [], "1": [], "5": [], "10": []}
    for r in have:
        p = r["proposals"]
        vals = [p["auc"]] + [p["ar_at_an"].get(k) for k in ("1", "5", "10")]
        for key, v in zip(cols, vals):
            if v is not None:
                cols[key].append(100 * v)
        out.append("<tr>" + _td(str(r.get("seed")), r.get("seed")) + "".join(
            _td("–") if v is None else _td(f"{100 * v:.1f}", 100 * v) for v in vals)
            + _td(f"{p['n_proposals_kept']:,}", p["n_proposals_kept"]) + "</tr>")
    if len(have) > 1:
        out.append("<tr><td>mean ± std</td>" + "".join(
            _td(fmt_mean_std({"mean": statistics.mean(v) / 100, "std": statistics.stdev(v) / 100}) if len(v) > 1 else _td("–"))
            for v in cols.values()) + "<td></td></tr>")
    out.append("</tbody></table>")
    fname = f"{stem}-proposals.svg"
    files[f"{sub}/{fname}"] = _svg_lines(
        [(f"seed {r.get('seed')}", r["proposals"]["average_nr_proposals"], r["proposals"]["average_recall"],
          "average number of proposals per pair", "average recall") for r in have],
        f"{name} on {board}: AR against AN").encode("utf-8")
    out.append(f'<img src="{_e(fname)}" alt="{_e(name)}: average recall against the average number of proposals" '
               f'width="500">')
    return out


def _code_label(rec) -> str:
    """The code a run ran: the package version, and the commit (12 digits) with ``modified``
    when the record carries one (runs recorded before the commit was: the version only)."""
    label = f"relocbench {rec.get('relocbench') or '?'}"
    code = rec.get("code") or {}
    if code.get("commit"):
        label += f" @ {str(code['commit'])[:12]}" + (" (modified)" if code.get("modified") else "")
    return label


def _table_html(task, title: str, names: List[str], runs_by_name, stats, reference, features: str, tid: str,
                pages: Dict[str, str]) -> List[str]:
    cols = [t for _, t in task.columns]
    head = ["baseline"] + cols + [f"95% CI ({HEADLINE_COLUMN.get(task.name, 'headline')})", "seeds"]
    if reference:
        head.append(f"vs {reference} (paired, 95% CI)")
    head += ["parameters", "wall time (s)", "hardware"]
    out = [f"<h3>{_e(title)} — features: {_e(features)}</h3>", f'<table class="sortable" id="{_e(tid)}">',
           f"<caption>Features: {_e(features)}</caption>", "<thead><tr>"
           + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for nm in names:
        st = stats.get(nm)
        if st is None:
            continue
        runs = runs_by_name[nm]
        cells = [f'<td data-sort="{_e(nm)}"><a href="{_e(pages[nm])}">{_e(nm)}</a></td>']
        cells += [_td(fmt_mean_std(st["columns"][c]), 100 * st["columns"][c]["mean"]) for c in cols]
        ci = st["ci95"]
        cells.append(_td(fmt_ci(ci), None if ci is None else 100 * ci[0]))
        cells.append(_td(str(len(st["seeds"])), len(st["seeds"])))
        if reference:
            c = st["comparison"]
            if nm == reference:
                cells.append(_td("reference", 0.0))
            elif c is not None and c.get("available"):
                cells.append(_td(fmt_comparison(c), 100 * c["difference"], "" if c["significant"] else "ns"))
            else:
                cells.append(_td(fmt_comparison(c)))
        walls = [float(r["wall_time_s"]) for r in runs if r.get("wall_time_s") is not None]
        wall = sum(walls) / len(walls) if walls else None
        hw = sorted({str((r.get("hardware") or {}).get("device", "?")) for r in runs})
        params = runs[0].get("parameters")
        cells += [_td(fmt_count(params), None if params is None else int(params)),
                  _td("–") if wall is None else _td(f"{wall:.0f}", round(wall, 2)), _td(", ".join(hw))]
        out.append(f'<tr data-baseline="{_e(nm)}">' + "".join(cells) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    if reference and reference in stats:
        comps = {n: stats[n]["comparison"] for n in names if n in stats and n != reference}
        ns = [n for n, c in comps.items() if c and c["available"] and not c["significant"]]
        avail = [c for c in comps.values() if c and c["available"]]
        if avail:
            out.append(f"<p>Paired bootstrap against <code>{_e(reference)}</code> over the test pairs, pooled over "
                       f"seeds ({avail[0]['n_bootstrap']:,} resamples). Not significant (interval holds 0): "
                       + (", ".join(f"<code>{_e(n)}</code>" for n in ns) if ns else "none") + ".</p>")
    return out


def _paper_table_html(task, title: str, tid: str) -> List[str]:
    """The paper's own numbers of a table, in a table of their own labelled with its features."""
    label = paper_label(task)
    cols = [t for _, t in task.columns]
    out = [f"<h3>{_e(title)} — {_e(label)}</h3>",
           f'<p class="features">Features: <strong>{_e(label.split(", ", 1)[1])}</strong> (the paper\'s own; the '
           "numbers as published, for reference, never ranked with the results of other features).</p>",
           f'<table id="{_e(tid)}"><caption>{_e(label)}</caption><thead><tr>'
           + "".join(f"<th>{_e(h)}</th>" for h in ["baseline"] + cols) + "</tr></thead>", '<tbody class="paper">']
    for pn, vals in task.paper_rows[title].items():
        out.append("<tr>" + _td(f"{label}: {pn}") + "".join(_td(f"{v:.1f}") for v in vals) + "</tr>")
    return out + ["</tbody></table>"]


def _bin_start(name: str) -> float:
    m = re.search(r"-?\d+(\.\d+)?", name)
    return float(m.group(0)) if m else float("inf")


def _breakdown_tables(task, runs) -> List[str]:
    """Per-class, per-query-length and per-ratio tables (temporal) or per-label APs (spatio-temporal),
    averaged over seeds."""
    out: List[str] = []
    m0 = runs[0]["metrics"]
    if task.name == "temporal" and "breakdowns" in m0:
        titles = {"per_class": "class", "query_length_steps": "query length (steps)",
                  "gt_to_window_ratio": "ground truth / window"}
        for key, first in titles.items():
            if key not in m0["breakdowns"]:
                continue
            buckets = list(m0["breakdowns"][key])
            if key != "per_class":   # bins in numeric order ("1-8", "9-16", "17-32"; "(0, 0.1]", ...)
                buckets.sort(key=_bin_start)
            thr = [t for t in ("0.5", "0.6", "0.7", "0.8", "0.9")]
            out += [f"<h3>mAP@1 by {_e(first)} (mean over seeds)</h3>", '<table class="sortable"><thead><tr>'
                    + "".join(f"<th>{_e(h)}</th>" for h in [first] + thr + ["Average", "pairs"])
                    + "</tr></thead><tbody>"]
            for b in buckets:
                vals = [r["metrics"]["breakdowns"][key].get(b) for r in runs]
                vals = [v for v in vals if v is not None]
                cells = [_td(b)]
                for t in thr:
                    x = sum(v["map_at_iou"][t] for v in vals) / len(vals)
                    cells.append(_td(f"{100 * x:.1f}", 100 * x))
                avg = sum(v["average"] for v in vals) / len(vals)
                cells += [_td(f"{100 * avg:.1f}", 100 * avg), _td(str(vals[0]["n_pairs"]), vals[0]["n_pairs"])]
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
    if "per_label" in m0:
        labels = list(m0["per_label"])
        ks = list(m0["per_label"][labels[0]]) if labels else []
        out += ["<h3>AP per combined label (mean over seeds)</h3>", '<table class="sortable"><thead><tr>'
                + "".join(f"<th>{_e(h)}</th>" for h in ["label"] + [f"IoU {k}" for k in ks]) + "</tr></thead><tbody>"]
        for lab in labels:
            cells = [_td(lab)]
            for k in ks:
                vs = [r["metrics"]["per_label"][lab][k] for r in runs if lab in r["metrics"].get("per_label", {})]
                vs = [v for v in vs if v is not None]
                if vs:
                    x = 100 * sum(vs) / len(vs)
                    cells.append(_td(f"{x:.1f}", x))
                else:
                    cells.append(_td("–"))
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    return out


class _Files(dict):
    """``{relative path: bytes}`` of the site; a path given twice is an error, never an overwrite."""

    def __setitem__(self, key: str, value: bytes) -> None:
        if key in self:
            raise ManifestError(f"two results of the leaderboard would both write the site file {key!r}; "
                                "rename one of them")
        super().__setitem__(key, value)


def _external(rec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    src = rec.get("source")
    return src if isinstance(src, dict) and src.get("kind") == "predictions file" else None


def _reproduce(rec: Dict[str, Any], board: str, config_name: str) -> str:
    name, seed = rec["baseline"], rec.get("seed", 0)
    dataset = rec.get("dataset", board)
    src = _external(rec)
    if src is not None:
        cmd = (f"relocbench leaderboard --publish-predictions {src.get('file')} --name {name} --manifest {dataset} "
               f"--split {rec.get('split', 'test')} --seed {seed} --board {board}")
        feats = rec.get("features") or {}
        if isinstance(feats, dict) and feats.get("kind") == "declared":
            cmd += f" --features-name {json.dumps(feats.get('name'))}"
        return cmd
    recipe = rec.get("_recipe")   # a non-default recipe: also in the config file, named for the reader
    cmd = (f"relocbench run-baseline {name} --dataset {dataset} --config {config_name} --seed {seed} --threads 1 "
           + ("" if recipe is None else f"--recipe {recipe} ")
           + f"--out runs/{board}/{record_folder(name, recipe)}/seed-{seed} --leaderboard leaderboard")
    if board != dataset:
        cmd += f" --board {board}"
    feats = rec.get("features")
    if isinstance(feats, dict) and feats.get("kind") not in (None, "synthetic") and feats.get("source") != \
            "synthetic-sprites":
        cmd += " --features PATH"
    return cmd


def _features_line(features: str, runs: List[Dict[str, Any]]) -> str:
    return (f'<p class="features">Features: <strong>{_e(features)}</strong> — '
            f"<code>{_e(features_summary(runs).replace('`', ''))}</code></p>")


def _result_page(task, board: str, name: str, features: str, runs, st, files: _Files, stem: str) -> str:
    sub = _slug(board)
    body = [f"<h1>{_e(name)} on {_e(board)}</h1>", _features_line(features, runs)]
    head = HEADLINE_COLUMN.get(task.name, "headline")
    body.append(f"<p>{_e(head)}: <strong>{_e(fmt_mean_std(st['headline']))}</strong> over "
                f"{len(runs)} seed(s); 95% interval {_e(fmt_ci(st['ci95']))}"
                + (f" ({_e(st['ci95_source'])})" if st["ci95_source"] else "") + ".")
    if st["comparison"] is not None:
        body[-1] += f" Against <code>{_e(st['comparison']['reference'])}</code>: {_e(fmt_comparison(st['comparison']))}."
    body[-1] += "</p>"
    ext = [(r, _external(r)) for r in runs if _external(r) is not None]
    if ext:
        body.append("<p>Published from a predictions file produced outside relocbench and scored by relocbench "
                    "itself (no number of the file is used): " + "; ".join(
                        f"seed {_e(r.get('seed'))}: <code>{_e(s.get('file'))}</code>, sha256 "
                        f"<code>{_e(s.get('sha256'))}</code>" for r, s in ext) + ".</p>")
    cols = [t for _, t in task.columns]
    body += ["<h2>Runs</h2>", '<table class="sortable"><thead><tr>'
             + "".join(f"<th>{_e(h)}</th>" for h in ["seed"] + cols + ["95% CI (run)", "steps", "wall time (s)",
                                                                        "hardware", "parameters", "code"])
             + "</tr></thead><tbody>"]
    for r in runs:
        m = r["metrics"]
        cells = [_td(str(r.get("seed")), r.get("seed"))]
        for path, _ in task.columns:
            cur: Any = m
            for k in path:
                cur = cur[k]
            cells.append(_td(f"{100 * float(cur):.1f}", 100 * float(cur)))
        ci = m.get("ci95")
        hw = r.get("hardware") or {}
        wall = r.get("wall_time_s")
        steps = (r.get("config") or {}).get("steps")
        cells += [_td(fmt_ci(ci)), _td("–" if steps is None else str(steps)),
                  _td("–") if wall is None else _td(f"{float(wall):.0f}", float(wall)),
                  _td(f"{hw.get('device', '?')} ({hw.get('cpu_count', '?')} CPUs, torch {hw.get('torch', '?')}"
                      + (f", {hw['processes']} processes" if hw.get("processes") else "") + ")"
                      if hw else "–"),
                  _td(fmt_count(r.get("parameters"))), _td(_code_label(r))]
        body.append("<tr>" + "".join(cells) + "</tr>")
    body.append("</tbody></table>")
    svg = _svg_curve(task, runs, f"{name} on {board} ({features})")
    if svg is not None:
        fname = f"{stem}-thresholds.svg"
        files[f"{sub}/{fname}"] = svg.encode("utf-8")
        body += ["<h2>Threshold curve</h2>", f'<img src="{_e(fname)}" alt="{_e(name)}: metric against the IoU '
                 f'threshold" width="500">']
    body += ["<h2>Breakdowns</h2>"] + (_breakdown_tables(task, runs) or ["<p>None recorded.</p>"])
    body += _proposal_section(runs, name, board, sub, stem, files)
    ex = runs[0].get("examples") or []
    if ex:
        body += [f"<h2>Qualitative examples (seed {_e(runs[0].get('seed'))})</h2>", "<table><thead><tr>"
                 + "".join(f"<th>{h}</th>" for h in ["pair", "label", "query steps", "window steps", "ground truth",
                                                     "top-1 prediction"]) + "</tr></thead><tbody>"]
        for e in ex:
            pred = e.get("prediction")
            body.append("<tr>" + "".join(_td(x) for x in [
                e["pair_id"], e.get("label", ""), e.get("query_steps", ""), e.get("window_steps", ""),
                "–".join(map(str, e.get("ground_truth") or [])), "–".join(map(str, pred)) if pred else "none"])
                + "</tr>")
        body.append("</tbody></table>")
    body.append("<h2>Reproduce</h2>")
    for r in runs:
        seed = r.get("seed")
        cfg_name = f"{stem}-seed-{seed}-config.json"
        files[f"{sub}/{cfg_name}"] = dumps_json(r.get("config") or {}).encode("utf-8")
        body += [f"<h3>seed {_e(seed)}</h3>",
                 f"<p>Manifest sha256 <code>{_e(r.get('manifest_sha256', '?'))}</code>, relocbench "
                 f"{_e(r.get('relocbench', '?'))}, split <code>{_e(r.get('split', 'test'))}</code>, record "
                 f"<code>{_e(r.get('_file', ''))}</code>. Config: <a href=\"{_e(cfg_name)}\">{_e(cfg_name)}</a>.</p>",
                 f"<pre>{_e(_reproduce(r, board, cfg_name))}</pre>",
                 f"<details><summary>exact config</summary><pre>{_e(dumps_json(r.get('config') or {}))}</pre></details>",
                 f"<details><summary>features (all settings)</summary><pre>{_e(dumps_json(r.get('features')))}</pre>"
                 "</details>"]
    return _page(f"{name} on {board} ({features}) - relocbench", body, depth=1)


def _submit_page() -> str:
    body = ["<h1>Submit your method</h1>",
            "<p>1. Write your predictions for the test split in the relocbench prediction format: one JSON "
            "object per file,</p>",
            "<pre>" + _e(json.dumps({"version": "relocbench/1", "task": "temporal", "manifest": "activitynet",
                                      "split": "test", "unit": "step",
                                      "results": {"PAIR_ID": [{"segment": [4, 29], "score": 0.93}]}}, indent=2))
            + "</pre>",
            "<p>with the ranked segments of every test pair (spatio-temporal: <code>\"task\": "
            "\"spatiotemporal\"</code> and per pair a list of <code>{\"time\": t, \"box\": [x1, y1, x2, y2], "
            "\"score\": s}</code>, boxes normalised <code>xyxy</code>).</p>",
            "<p>2. Score it:</p>",
            "<pre>relocbench evaluate predictions.json --manifest activitynet --split test --output-json "
            "scores.json</pre>",
            "<p>3. To add a baseline of the zoo (or your own, registered through the entry-point group), run it "
            "with several seeds and publish every run with its per-pair scores, then regenerate:</p>",
            "<pre>relocbench run-baseline NAME --seeds 0,1,2 --out runs/NAME --leaderboard leaderboard\n"
            "relocbench leaderboard --publish runs/NAME/seed-0 --publish runs/NAME/seed-1 --dir leaderboard\n"
            "relocbench leaderboard --dir leaderboard --html site</pre>",
            "<p>4. Predictions made outside relocbench go to the leaderboard as they are: relocbench scores them "
            "itself (any number in the file is ignored) and records the file's sha256 and the features you name:</p>",
            "<pre>relocbench leaderboard --publish-predictions predictions.json --name my-model --manifest activitynet "
            "--features-name tsp --dir leaderboard --html site</pre>",
            "<p>The official ActivityNet protocols are available too: <code>relocbench evaluate PRED.json "
            "--protocol activitynet-detection --ground-truth GT.json</code> and <code>--protocol "
            "activitynet-proposal</code> (AR@AN and AUC).</p>"]
    return _page("Submit your method - relocbench", body)



def render_site(results: Dict[str, List[Dict[str, Any]]]) -> Dict[str, bytes]:
    """``{relative path: bytes}`` of the site of ``results`` (:func:`relocbench.leaderboard.load_results`).

    Page, asset and anchor names are slugs (:func:`relocbench.leaderboard.slug`), distinct
    for distinct names; a board with several features gives each result the page
    ``<board>/<baseline>.<features>.html``. Any name met twice is an error, never an overwrite.
    """
    from .tasks import get_task

    if not results:
        raise ManifestError("no results to show: expected results/<board>/<baseline>/seed-<k>.json files")
    files = _Files({"style.css": _CSS.encode("utf-8"), "sort.js": _JS.encode("utf-8")})
    anchors: Dict[str, str] = {}
    toc = []
    for b in results:
        claim(anchors, _slug(b), f"board {b!r}", "anchor")
        toc.append(f'<li><a href="#{_e(_slug(b))}">{_e(b)}</a> — features: '
                   + ", ".join(_e(f) for f in feature_groups(results[b])) + "</li>")
    body = ["<h1>relocbench leaderboard</h1>",
            "<p>Numbers are percentages: mean ± standard deviation over seeds, the bootstrap 95% interval over "
            "test pairs (per-pair scores averaged over seeds), and the paired difference from each table's full "
            "model; differences marked <em>not significant</em> have an interval that holds 0. Click a column "
            "header to sort. Each baseline links to its page. Every table names the features that produced its "
            "numbers: results on different features are never ranked in one table, and the papers' own numbers "
            "are in tables of their own.</p>",
            "<ul>" + "".join(toc) + "</ul>"]
    for board, recs in results.items():
        task = get_task(recs[0]["task"])
        groups = feature_groups(recs)
        bslug = _slug(board)
        body.append(f'<section id="{_e(bslug)}"><h2>{_e(board)}</h2>')
        body.append('<p class="features">Features: ' + "; ".join(f"<strong>{_e(f)}</strong>" for f in groups)
                    + (" (each in tables of its own, never ranked together)" if len(groups) > 1 else "") + "</p>")
        paper_titles: List[str] = []
        for fname, grecs in groups.items():
            by_name = group_runs(grecs)
            stem_of = {nm: _slug(nm) if len(groups) == 1 else f"{_slug(nm)}.{_slug(fname)}" for nm in by_name}
            pages = {nm: f"{bslug}/{stem}.html" for nm, stem in stem_of.items()}
            if len(groups) > 1:
                body.append(_features_line(fname, grecs))
            all_stats: Dict[str, Any] = {}
            for k, (title, names, ref) in enumerate(board_tables(task, grecs), start=1):
                stats = board_stats(task, {n: by_name[n] for n in names if n in by_name}, ref)
                tid = f"t-{bslug}-{k}" if len(groups) == 1 else f"t-{bslug}.{_slug(fname)}-{k}"
                claim(anchors, tid, f"board {board!r} ({fname}) table {k}", "anchor")
                body += _table_html(task, title, names, by_name, stats, ref, fname, tid, pages)
                if task.paper_rows.get(title) and title not in paper_titles:
                    paper_titles.append(title)
                for n, s in stats.items():
                    if n not in all_stats or (s["comparison"] is not None and all_stats[n]["comparison"] is None):
                        all_stats[n] = s
            for nm, runs in by_name.items():
                files[pages[nm]] = _result_page(task, board, nm, fname, runs, all_stats[nm], files,
                                                stem_of[nm]).encode("utf-8")
        for k, title in enumerate(paper_titles, start=1):
            tid = claim(anchors, f"p-{bslug}-{k}", f"board {board!r} paper table {k}", "anchor")
            body += _paper_table_html(task, title, tid)
        body.append("</section>")
    files["index.html"] = _page("relocbench leaderboard", body).encode("utf-8")
    files["submit.html"] = _submit_page().encode("utf-8")
    return dict(files)


def write_site(files: Dict[str, bytes], out: Union[str, Path], *, force: bool = False) -> Path:
    """Write the files of :func:`render_site` into the folder ``out``, atomically."""
    out = Path(out)
    with atomic_dir(out, force=force) as tmp:
        for rel in sorted(files):
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(files[rel])
    return out


def build_site(directory: Union[str, Path], out: Union[str, Path], *, force: bool = False) -> Path:
    """Write the site of the leaderboard folder ``directory`` into ``out`` (atomically; ``out``
    may be neither ``directory`` nor a folder holding it)."""
    from .leaderboard import check_site_output

    check_site_output(out, directory, force=force)
    results = load_results(directory)
    if not results:
        raise ManifestError("no results to show: expected results/<board>/<baseline>/seed-<k>.json files",
                            file=Path(directory) / "results")
    return write_site(render_site(results), out, force=force)
