"""``relocbench evaluate`` from the command line, for the four protocols."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.manifest import write_manifest

from test_metrics_spatiotemporal import make_tables
from test_metrics_temporal import make_pairs


def meta(task, name="tiny"):
    return {"name": name, "task": task, "builder": {"name": "test", "version": "0"}, "protocol": "test",
            "params": {}, "inputs": {}, "report": {}}


@pytest.fixture
def temporal(tmp_path):
    pairs = make_pairs([("p1", "a", 4, 20, 0, 10), ("p2", "b", 4, 20, 5, 10), ("p3", "a", 9, 40, 10, 30)])
    m = write_manifest(tmp_path / "man", {("pairs", "test"): pairs}, meta("temporal"))
    preds = {"version": "relocbench/1", "task": "temporal", "manifest": "tiny", "split": "test", "unit": "step",
             "results": {"p1": [{"segment": [0, 10], "score": 0.9}], "p2": [{"segment": [0, 10], "score": 0.8}],
                         "p3": [{"segment": [12, 30], "score": 0.5}, {"segment": [0, 4], "score": 0.7}]}}
    f = tmp_path / "preds.json"
    f.write_text(json.dumps(preds))
    return m, f, tmp_path


def invoke(*args):
    return CliRunner(env={"COLUMNS": "80"}).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_temporal_table_json_and_plot(temporal):
    m, f, tmp = temporal
    out, png = tmp / "scores.json", tmp / "curve.png"
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out, "--plot", png)
    assert r.exit_code == 0, r.output
    assert "Average" in r.output and "mAP@1 by class" in r.output
    # an 80-column terminal: every table fits whole, no cell is cut short
    assert "(part" not in r.output and "…" not in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80
    res = json.loads(out.read_text())
    assert res["protocol"] == "reloc-temporal" and res["manifest"] == "tiny" and res["n_pairs"] == 3
    assert set(res["map_at_iou"]) == {f"0.{i}" for i in range(1, 10)}
    # p1 perfect; p2 tIoU 0.5; p3's top-1 [0, 4) misses, its second [12, 30) has tIoU 0.9
    assert res["map_at_iou"]["0.5"] == pytest.approx(2 / 3) and res["map_at_iou"]["0.6"] == pytest.approx(1 / 3)
    assert res["recall_at_k"] == {"1": pytest.approx(2 / 3), "5": 1.0}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # refused without --force, then identical bytes with it (deterministic)
    first = out.read_bytes()
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out)
    assert r.exit_code == 2 and "exists already; pass --force" in r.output
    assert invoke("evaluate", f, "--manifest", m, "--output-json", out, "--force").exit_code == 0
    assert out.read_bytes() == first


def test_temporal_errors_exit_2_with_one_line(temporal):
    m, f, tmp = temporal
    doc = json.loads(f.read_text())
    del doc["results"]["p2"]
    f.write_text(json.dumps(doc))
    r = invoke("evaluate", f, "--manifest", m)
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "no predictions, e.g. 'p2'" in r.output
    r = invoke("evaluate", f, "--manifest", m, "--allow-missing", "--iou-rule", "strict")
    assert r.exit_code == 0 and "missing pairs: 1" in r.output
    r = invoke("evaluate", f, "--manifest", m, "--protocol", "reloc-spatiotemporal")
    assert r.exit_code == 2 and "needs a spatiotemporal manifest" in r.output
    r = invoke("evaluate", f)
    assert r.exit_code == 2 and "give --protocol" in r.output


def test_spatiotemporal(tmp_path):
    box = (0.1, 0.1, 0.5, 0.5)
    pairs, targets = make_tables([("a", "11,59", 900, 910), ("b", "12", 900, 910)], [("a", 902, box), ("b", 905, box)])
    m = write_manifest(tmp_path / "man", {("pairs", "test"): pairs, ("targets", "test"): targets}, meta("spatiotemporal"))
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"task": "spatiotemporal", "results": {
        "a": [{"time": 902, "box": list(box), "score": 0.9}], "b": [{"time": 906, "box": list(box), "score": 0.9}]}}))
    out = tmp_path / "s.json"
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out, "--plot", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["frame_map"] == {"0.3": 0.5, "0.5": 0.5, "0.7": 0.5}
    assert res["per_label"]["11,59"]["0.5"] == 1.0


def test_activitynet_detection(tmp_path):
    gt = {"version": "1.3", "taxonomy": [], "database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0, 20], "label": "run"}]},
        "v2": {"subset": "validation", "annotations": [{"segment": [5, 15], "label": "jump"}]}}}
    pred = {"version": "1.3", "external_data": {}, "results": {
        "v1": [{"label": "run", "segment": [0, 10], "score": 0.9}],
        "v2": [{"label": "jump", "segment": [5, 15], "score": 0.8}]}}
    g, p, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "out.json"
    g.write_text(json.dumps(gt))
    p.write_text(json.dumps(pred))
    r = invoke("evaluate", "--protocol", "activitynet-detection", "--ground-truth", g, p, "--output-json", out,
               "--plot", tmp_path / "a.png")
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res) >= {"tiou_thresholds", "mAP", "average_mAP", "per_class"}
    assert res["average_mAP"] == pytest.approx(0.55)
    assert res["per_class"]["jump"] == [1.0] * 10
    r = invoke("evaluate", "--protocol", "activitynet-detection", p)
    assert r.exit_code == 2 and "needs --ground-truth" in r.output


def test_ava(tmp_path):
    lm = tmp_path / "lm.pbtxt"
    lm.write_text('item {\n  name: "stand"\n  id: 12\n}\nitem {\n  name: "sit"\n  id: 11\n}\n')
    g, d, x, out = tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "ex.csv", tmp_path / "o.json"
    g.write_text("vid,0902,0.1,0.1,0.5,0.5,12,1\nvid,0903,0.1,0.1,0.5,0.5,11,1\n")
    d.write_text("vid,0902,0.1,0.1,0.5,0.5,12,0.9\nvid,0903,0.6,0.6,0.9,0.9,11,0.8\n")
    x.write_text("vid,0904\n")
    r = invoke("evaluate", "--protocol", "ava", "--ground-truth", g, "--label-map", lm, "--exclusions", x, d,
               "--output-json", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["mAP"] == 0.5 and res["per_class"] == {"stand": 1.0, "sit": 0.0}
    r = invoke("evaluate", "--protocol", "ava", "--ground-truth", g, d)
    assert r.exit_code == 2 and "needs --label-map" in r.output


def test_split_columns_oracle():
    from relocbench.cli._common import split_columns

    cols = ["name", "a", "b", "c"]
    rows = [["xx", "1", "22", "333"]]
    # widths + 3 each: name 7, a 4, b 5, c 6; a table needs their sum + 1 = 23
    assert split_columns(cols, rows, 23) == [[0, 1, 2, 3]]
    assert split_columns(cols, rows, 22) == [[0, 1, 2], [0, 3]]      # 7 + 4 + 5 + 1 = 17 fits, + 6 does not
    assert split_columns(cols, rows, 12) == [[0, 1], [0, 2], [0, 3]]
    assert split_columns(cols, rows, 5) == [[0, 1], [0, 2], [0, 3]]  # one data column at least per part
    assert split_columns(["name", "a"], rows, 3) == [[0, 1]]


def test_help_has_an_example():
    r = invoke("evaluate", "--help")
    assert r.exit_code == 0 and "relocbench evaluate preds.json --manifest activitynet" in r.output


# ----------------------------------------------------------------------------- newcomers, 80 columns, speed


def long_anet(tmp_path, n_classes=30):
    """ActivityNet files of ``n_classes`` classes with long names (one video each, one hit)."""
    names = [f"Playing a rather long-named sport number {i:03d} outdoors" for i in range(n_classes)]
    gt = {"database": {f"v{i}": {"subset": "validation", "annotations": [{"segment": [0, 20], "label": c}]}
                       for i, c in enumerate(names)}}
    pred = {"results": {f"v{i}": [{"label": c, "segment": [0, 20], "score": 0.5}] for i, c in enumerate(names)}}
    g, p = tmp_path / "gt.json", tmp_path / "pred.json"
    g.write_text(json.dumps(gt))
    p.write_text(json.dumps(pred))
    return g, p, names


def test_long_per_class_table_is_cut_with_a_count_unless_per_class(tmp_path):
    from relocbench.cli.evaluate import MAX_ROWS

    g, p, names = long_anet(tmp_path)
    r = invoke("evaluate", "--protocol", "activitynet-detection", "--ground-truth", g, p)
    assert r.exit_code == 0, r.output
    shown = [n for n in names if n.split(" number ")[1][:3] in r.output]
    assert len(shown) == MAX_ROWS and f"... and {30 - MAX_ROWS} more rows (--per-class prints them" in r.output
    r = invoke("evaluate", "--protocol", "activitynet-detection", "--ground-truth", g, p, "--per-class")
    assert r.exit_code == 0 and "more rows" not in r.output
    assert all(f"number {i:03d}" in r.output for i in range(30))
    # every table fits 80 columns whole: class names are wrapped, numbers never cut
    assert "(part" not in r.output and max(len(line) for line in r.output.splitlines()) <= 80
    assert "100.0" in r.output and "…" not in r.output


@pytest.mark.parametrize("args", [["list-baselines"], ["run-baseline", "cgbm", "--show-config"],
                                  ["run-baseline", "stvr-warp", "--show-config", "--steps", "5", "--lr", "0.01"]])
def test_tables_fit_80_columns(args):
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    table = [line for line in r.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and "(part" not in r.output
    assert max(len(line) for line in table) <= 80, max(table, key=len)


def test_fit_columns_shortens_paths_and_wraps_text_but_never_numbers():
    from relocbench.cli._common import fit_columns, render_table, shorten_path, split_columns

    cols = ["name", "path", "note", "value"]
    rows = [["a", "/very/long/folder/of/someone/runs/cgbm-seed-0/predictions-test.json",
             "a long remark that can be wrapped over several lines", "1234567890.5"]]
    # natural widths + 3: name 7, path 71, note 55, value 15 (149 with the rule); at 70 the
    # widest goes first down to its floor (last component + "…/" + 3 = 26), then the note to 21
    c, r = fit_columns(cols, rows, 70)
    assert r[0][1] == "…/predictions-test.json" and r[0][3] == "1234567890.5" and r[0][0] == "a"
    assert r[0][2] == "a long remark that\ncan be wrapped\nover several lines"
    assert split_columns(c, r, 70) == [[0, 1, 2, 3]]
    lines = render_table("t", c, r).splitlines()
    assert max(map(len, lines)) <= 70 and lines[1].startswith("┏") and lines[-1].startswith("└")
    assert shorten_path("/a/bb/ccc.json", 13) == "…/bb/ccc.json" and shorten_path("/a/bb/ccc.json", 12) == "…/ccc.json"
    assert shorten_path("/a/b.json", 40) == "/a/b.json"
    assert fit_columns(["n", "kept"], [["a", "123456/654321"]], 10)[1] == [["a", "123456/654321"]]  # a count
    # what cannot fit (single words) is left whole for split_columns to split
    c, r = fit_columns(["x", "y"], [["aaaaaaaaaa", "bbbbbbbbbbbb"]], 10)
    assert r == [["aaaaaaaaaa", "bbbbbbbbbbbb"]]


def test_plain_renderer_matches_rich_layout():
    """render_table draws what rich draws for the same (plain) cells."""
    import io

    from rich.console import Console
    from rich.table import Table

    from relocbench.cli._common import render_table

    cols, rows = ["class", "AP", "note"], [["run", "12.5", "two words\nwrapped"], ["jump", "100.0", "x"]]
    table = Table(title="t")
    table.add_column(cols[0], justify="left")
    table.add_column(cols[1], justify="right")
    table.add_column(cols[2], justify="left")
    for r in rows:
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None, legacy_windows=False).print(table)
    rich_lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
    assert render_table("t", cols, rows).splitlines()[1:] == rich_lines[1:]


def test_empty_prediction_lists_are_counted(temporal):
    m, f, tmp = temporal
    doc = json.loads(f.read_text())
    doc["results"]["p2"] = []
    doc["results"]["p3"] = []
    f.write_text(json.dumps(doc))
    out = tmp / "s.json"
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out)
    assert r.exit_code == 0, r.output
    assert "2 pairs have an empty prediction list (scored as misses)" in r.output
    res = json.loads(out.read_text())
    assert res["n_empty"] == 2 and res["recall_at_k"]["1"] == pytest.approx(1 / 3)
    doc["results"]["p3"] = [{"segment": [12, 30], "score": 0.5}]
    f.write_text(json.dumps(doc))
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out, "--force")
    assert "1 pair has an empty prediction list (scored as misses)" in r.output
    assert json.loads(out.read_text())["n_empty"] == 1


def test_the_manifest_named_by_the_predictions_file_is_used_and_said(temporal, monkeypatch):
    m, f, tmp = temporal
    roots = tmp / "roots"
    roots.mkdir()
    import shutil

    shutil.copytree(m, roots / "tiny")
    monkeypatch.setenv("RELOCBENCH_MANIFESTS", str(roots))
    out = tmp / "s.json"
    r = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["evaluate", str(f), "--output-json", str(out)])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"Using the manifest 'tiny' named by {f}" in r.stderr and "Using" not in r.stdout
    assert json.loads(out.read_text())["manifest"] == "tiny"
    # a name no manifest has: the usual request for --protocol or --manifest
    doc = json.loads(f.read_text())
    doc["manifest"] = "no-such-manifest"
    f.write_text(json.dumps(doc))
    r = invoke("evaluate", f)
    assert r.exit_code == 2 and "give --protocol" in r.output and "names no built-in manifest" in r.output


@pytest.mark.parametrize("protocol,key", [("activitynet-detection", "average"), ("activitynet-proposal", "auc")])
def test_activitynet_protocols_import_no_pandas(tmp_path, protocol, key):
    import subprocess
    import sys

    g, p, _ = long_anet(tmp_path, 3)
    code = ("import sys\nfrom relocbench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('PANDAS', 'pandas' in sys.modules, 'pyarrow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, "evaluate", str(p), "--protocol", protocol,
                        "--ground-truth", str(g)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "PANDAS False False", r.stdout
    assert key in r.stdout.lower()


def test_output_json_and_plot_on_one_path_are_refused_before_scoring(temporal):
    m, f, tmp = temporal
    out = tmp / "same.out"
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out, "--plot", out)
    assert r.exit_code == 2 and not out.exists()
    assert r.output.strip() == (f"Error: --plot names the same path as --output-json ({out}); "
                                "give each output its own path")
