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
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_temporal_table_json_and_plot(temporal):
    m, f, tmp = temporal
    out, png = tmp / "scores.json", tmp / "curve.png"
    r = invoke("evaluate", f, "--manifest", m, "--output-json", out, "--plot", png)
    assert r.exit_code == 0, r.output
    assert "Average" in r.output and "mAP@1 by class" in r.output
    # an 80-column terminal: the wide summary comes in parts, no cell is cut short
    assert "(part 1/2)" in r.output and "…" not in r.output
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
