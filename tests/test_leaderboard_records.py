"""Leaderboard edges: names that become paths, injective page names, validated records,
all-or-nothing publishing, outside predictions files, and the features of every table."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, ManifestError, PredictionError
from relocbench.leaderboard import (check_name, features_name, load_results, publish_predictions, publish_result,
                                    render_leaderboard, slug, validate_record, write_leaderboard)
from relocbench.leaderboard_site import build_site, render_site

from test_leaderboard import temporal_record, write


def tree(root: Path):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def one_line_error(res, *parts):
    """A CLI failure as the house style wants it: exit 2, one line, no traceback, naming ``parts``."""
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]


def fake_run(root: Path, rec) -> Path:
    """A run folder holding only ``result.json`` (no per-pair scores can be computed for it)."""
    root.mkdir(parents=True)
    (root / "result.json").write_text(json.dumps(rec))
    return root


# ----------------------------------------------------------------------------- names that become paths


@pytest.mark.parametrize("name,why", [
    ("../../../x", "path separator"), ("a/b", "path separator"), ("a\\b", "path separator"),
    ("..", "names a folder itself"), (".", "names a folder itself"), (".hidden", "starts with a dot"),
    ("a\nb", "control character"), ("a\x00b", "control character"), (" a", "space"), ("a" * 121, "longer than 120"),
    ("", "a non-empty string"), (7, "a non-empty string")])
def test_check_name_refuses_what_is_not_one_path_component(name, why):
    with pytest.raises(ManifestError, match=rf"f\.json: field 'baseline': expected .*{why}"):
        check_name(name, "baseline", file="f.json")


@pytest.mark.parametrize("name", ["cgbm", "x y", "x_y", "fuzz board", "é-model", "a.b", "a" * 120])
def test_check_name_accepts_plain_names(name):
    assert check_name(name, "board") == name


@pytest.mark.parametrize("field,value", [("baseline", "../../../x"), ("baseline", "a/b"), ("board", "../up"),
                                         ("board", "a/b"), ("seed", "one"), ("seed", -1)])
def test_publish_refuses_path_names_and_writes_nothing(tmp_path, field, value):
    rec = temporal_record("a", 0, [1, 2])
    rec[field] = value
    with pytest.raises(ManifestError, match=f"field '{field}'"):
        publish_result(rec, tmp_path / "root" / "lb")
    assert tree(tmp_path) == []


def test_cli_publish_of_a_record_named_to_climb_out(tmp_path):
    rec = temporal_record("../../../x", 0, [1, 2])
    run = fake_run(tmp_path / "deep" / "er" / "run", rec)
    before = tree(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "deep" / "lb"), "--publish", str(run)])
    one_line_error(res, str(run / "result.json"), "field 'baseline'", "path separator")
    assert tree(tmp_path) == before          # nothing outside, nothing inside
    rec["baseline"] = "a/b"                  # used to write a record the board never showed
    (run / "result.json").write_text(json.dumps(rec))
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb"), "--publish", str(run)])
    one_line_error(res, "field 'baseline'")
    assert tree(tmp_path) == before


def test_records_on_disk_are_checked_against_their_place(tmp_path):
    p = write(tmp_path, temporal_record("a", 0, [1, 2]), legacy=True)
    p.rename(p.with_name("b.json"))
    with pytest.raises(ManifestError, match=r"b.json: record of baseline 'a' in the file of 'b'"):
        load_results(tmp_path)
    (p.with_name("b.json")).unlink()
    rec = temporal_record("a", 0, [1, 2])
    rec["board"] = "other"
    p = tmp_path / "results" / "tiny" / "a" / "seed-0.json"
    p.parent.mkdir()
    p.write_text(json.dumps(rec))
    with pytest.raises(ManifestError, match="record of board 'other' in the folder of board 'tiny'"):
        load_results(tmp_path)
    p.unlink()
    (p.parent / "notes.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"notes.json: expected only seed-<k>.json records"):
        load_results(tmp_path)


# ----------------------------------------------------------------------------- injective page names


def test_slug_is_the_name_when_plain_and_distinct_otherwise():
    assert slug("cgbm") == "cgbm" and slug("stvr-warp") == "stvr-warp" and slug("activitynet-paper") == "activitynet-paper"
    names = ["x y", "x_y", "x-y", "X y", "x  y", "fuzz board", "fuzz_board", "Fuzz_Board", "é", "e", "a.b", "a_b",
             "synthetic (embedded)", "synthetic_embedded", "x_y_" + hashlib.sha256(b"x y").hexdigest()[:10]]
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert all("." not in s and "/" not in s for s in slugs)
    assert slug("x y").startswith("x_y_") and slug("x y") == slug("x y")


def test_baselines_whose_plain_slugs_meet_get_their_own_pages(tmp_path):
    lb = tmp_path / "lb"
    write(lb, temporal_record("x y", 0, [5, 5, 5, 5]))
    write(lb, temporal_record("x_y", 0, [0, 0, 0, 0]))
    files = render_site(load_results(lb))
    pages = sorted(k for k in files if k.startswith("tiny/") and k.endswith(".html"))
    assert len(pages) == 2 and "tiny/x_y.html" not in pages
    by_name = {n: files[f"tiny/{slug(n)}.html"].decode() for n in ("x y", "x_y")}
    assert "<h1>x y on tiny</h1>" in by_name["x y"] and "<strong>100.0</strong>" in by_name["x y"]
    assert "<h1>x_y on tiny</h1>" in by_name["x_y"] and "<strong>0.0</strong>" in by_name["x_y"]
    index = files["index.html"].decode()
    assert f'href="tiny/{slug("x y")}.html">x y<' in index and f'href="tiny/{slug("x_y")}.html">x_y<' in index


def test_boards_whose_plain_slugs_meet_get_their_own_sections(tmp_path):
    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [5, 5], board="fuzz board"))
    write(lb, temporal_record("a", 0, [0, 0], board="fuzz_board"))
    out = build_site(lb, tmp_path / "site")
    index = (out / "index.html").read_text()
    for board, avg in (("fuzz board", "100.0"), ("fuzz_board", "0.0")):
        assert f'<section id="{slug(board)}"><h2>{board}</h2>' in index
        page = (out / slug(board) / "a.html").read_text()
        assert f"<h1>a on {board}</h1>" in page and f"<strong>{avg}</strong>" in page
    assert slug("fuzz board") != slug("fuzz_board")
    # the README's figures are named apart too
    text = write_leaderboard(lb).read_text()
    assert f"figures/{slug('fuzz board')}-thresholds.png" in text and f"figures/{slug('fuzz_board')}-thresholds.png" in text


def test_a_collision_is_refused_never_overwritten(tmp_path, monkeypatch):
    import relocbench.leaderboard_site as site

    lb = tmp_path / "lb"
    write(lb, temporal_record("p", 0, [5, 5]))
    write(lb, temporal_record("q", 0, [0, 0]))
    monkeypatch.setattr(site, "slug", lambda name: "same")
    with pytest.raises(ManifestError, match="two results of the leaderboard would both write the site file 'same/same"):
        render_site(load_results(lb))


# ----------------------------------------------------------------------------- validated records


def _set(path, value):
    def edit(rec):
        cur = rec
        for k in path[:-1]:
            cur = cur[k]
        if value is _DROP:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value
    return edit


_DROP = object()
BAD_RECORDS = {
    "average NaN": (_set(("metrics", "average"), math.nan), "'metrics.average'"),
    "average infinity": (_set(("metrics", "average"), math.inf), "'metrics.average'"),
    "average 7.5": (_set(("metrics", "average"), 7.5), "field 'metrics.average': expected a fraction >= 0 and <= 1, found 7.5"),
    "average missing": (_set(("metrics", "average"), _DROP), "field 'metrics.average': expected a fraction, found nothing"),
    "average a word": (_set(("metrics", "average"), "high"), "field 'metrics.average': expected a fraction"),
    "unknown task": (_set(("task",), "detection"), "field 'task': expected one of 'temporal', 'spatiotemporal'"),
    "metrics a list": (_set(("metrics",), [0.5]), "field 'metrics': expected an object, found a list of 1 item"),
    "seed a word": (_set(("seed",), "one"), "field 'seed': expected an integer"),
    "parameters not a number": (_set(("parameters",), "1M"), "field 'parameters': expected a parameter count"),
    "wall time not a number": (_set(("wall_time_s",), "slow"), "field 'wall_time_s': expected a number of seconds"),
    "hardware a list": (_set(("hardware",), ["cpu"]), "field 'hardware': expected an object"),
    "config a list": (_set(("config",), [1]), "field 'config': expected an object"),
    "examples without ids": (_set(("examples",), [{"label": "x"}]), "field 'examples[0]': expected an example"),
    "ci95 of one number": (_set(("metrics", "ci95"), [0.3]), "field 'metrics.ci95': expected a list of two fractions"),
    "column of the curve not a fraction": (_set(("metrics", "map_at_iou", "0.7"), 2), "'metrics.map_at_iou.0.7'"),
    "per_pair hits not digits": (_set(("per_pair", "hits"), "xx"), "per_pair of 'a' seed 0: expected 2 digits"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_records_are_one_line_errors_naming_file_and_field(tmp_path, case):
    edit, msg = BAD_RECORDS[case]
    rec = temporal_record("a", 0, [1, 2])
    edit(rec)
    with pytest.raises(ManifestError, match="f.json: "):   # the shared check, as published
        validate_record(rec, "f.json")
    with pytest.raises(ManifestError):
        publish_result(rec, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()
    lb = tmp_path / "lb"
    p = lb / "results" / "tiny" / "a" / "seed-0.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(rec))          # NaN and Infinity as JSON writes them
    write(lb, temporal_record("b", 0, [1, 2]))
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb)])
    line = one_line_error(res, str(p))
    if "NaN" not in case and "infinity" not in case:   # those are refused as JSON values first
        assert msg in line
    assert not (lb / "README.md").exists()


def test_a_legacy_record_whose_baseline_is_a_number(tmp_path):
    rec = temporal_record("5", 0, [1, 2])
    rec["baseline"] = 5
    p = write(tmp_path, temporal_record("b", 0, [1, 2]))
    legacy = p.parent.parent / "5.json"
    legacy.write_text(json.dumps(rec))
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path)])
    one_line_error(res, str(legacy), "field 'baseline': expected a non-empty string", "found 5")


def test_valid_records_pass_unchanged():
    rec = temporal_record("a", 0, [1, 2, 3])
    rec["parameters"], rec["wall_time_s"], rec["hardware"] = None, None, None
    assert validate_record(rec, "f.json") is rec


# ----------------------------------------------------------------------------- all or nothing


def test_missing_folder_is_an_error_and_stays_missing(tmp_path):
    for args in (["--html", str(tmp_path / "site")], []):
        res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "missing"), *args])
        one_line_error(res, str(tmp_path / "missing"), "no such leaderboard folder")
    assert tree(tmp_path) == []


def test_publish_is_undone_when_the_site_cannot_be_written(tmp_path):
    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2]))
    write_leaderboard(lb)
    (tmp_path / "site").mkdir()
    run = fake_run(tmp_path / "run", temporal_record("b", 0, [5, 5]))
    before = {k: (lb / k).read_bytes() for k in tree(lb) if (lb / k).is_file()}
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(run), "--html",
                                   str(tmp_path / "site")])
    one_line_error(res, str(tmp_path / "site"), "exists already")
    assert {k: (lb / k).read_bytes() for k in tree(lb) if (lb / k).is_file()} == before


def test_a_failing_site_write_rolls_everything_back(tmp_path, monkeypatch):
    import relocbench.leaderboard_site as site

    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2]))
    write_leaderboard(lb)
    before = {k: (lb / k).read_bytes() for k in tree(lb) if (lb / k).is_file()}
    run = fake_run(tmp_path / "run", temporal_record("b", 0, [5, 5]))

    def broken(files, out, force=False):
        raise ConfigError("disk full", file=out)

    monkeypatch.setattr(site, "write_site", broken)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(run), "--html",
                                   str(tmp_path / "site")])
    one_line_error(res, "disk full")
    assert {k: (lb / k).read_bytes() for k in tree(lb) if (lb / k).is_file()} == before
    assert not (lb / "results" / "tiny" / "b").exists()
    monkeypatch.undo()
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(run), "--html",
                                   str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    assert (lb / "results" / "tiny" / "b" / "seed-0.json").is_file() and (tmp_path / "site" / "tiny" / "b.html").is_file()
    assert "| b |" in (lb / "README.md").read_text()


@pytest.mark.parametrize("where", ["lb", "lb/results", "lb/results/tiny", "lb/notes"])
def test_the_site_never_replaces_the_leaderboard(tmp_path, where):
    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2]))
    (lb / "notes").mkdir()
    before = tree(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--html", str(tmp_path / where), "--force"])
    one_line_error(res, "--force does not allow this")
    assert tree(tmp_path) == before


def test_two_runs_of_one_seed_in_one_publish(tmp_path):
    runs = [fake_run(tmp_path / f"run{i}", temporal_record("b", 0, [i, i])) for i in range(2)]
    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2]))
    before = tree(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(runs[0]), "--publish",
                                   str(runs[1])])
    one_line_error(res, "two of the published results would both be this record")
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- outside predictions


@pytest.fixture(scope="module")
def anet_test_pairs():
    from relocbench.manifest import open_manifest

    return open_manifest("activitynet").table("pairs", "test")


def whole_window_file(path: Path, pairs, **extra) -> Path:
    """Each test pair predicted as its whole reference window (tIoU = ground truth / window)."""
    res = {pid: [{"segment": [0, int(e - s)], "score": 1.0}]
           for pid, s, e in zip(pairs["pair_id"], pairs["ref_start_step"], pairs["ref_end_step"])}
    doc = {"version": "relocbench/1", "task": "temporal", "manifest": "activitynet", "split": "test", "unit": "step",
           "results": res, **extra}
    path.write_text(json.dumps(doc))
    return path


def test_publish_predictions_scores_the_file_itself(tmp_path, anet_test_pairs):
    pairs = anet_test_pairs
    bogus = {"metrics": {"average": 0.99, "map_at_iou": {"0.5": 1.0}}, "average": 0.99}
    f = whole_window_file(tmp_path / "preds.json", pairs, **bogus)
    lb = tmp_path / "lb"
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish-predictions", str(f), "--name",
                                   "whole-window", "--features-name", "tsp", "--html", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    p = lb / "results" / "activitynet" / "whole-window" / "seed-0.json"
    rec = json.loads(p.read_text())
    # hand oracle: the whole window's tIoU is (gt_end - gt_start) / (ref_end - ref_start)
    ratio = ((pairs["gt_end_step"] - pairs["gt_start_step"])
             / (pairs["ref_end_step"] - pairs["ref_start_step"])).to_numpy(float)
    want = {t: float(np.mean(ratio >= float(t) - 1e-12)) for t in ("0.5", "0.6", "0.7", "0.8", "0.9")}
    assert {t: rec["metrics"]["map_at_iou"][t] for t in want} == pytest.approx(want, abs=1e-12)
    assert rec["metrics"]["average"] == pytest.approx(np.mean(list(want.values())), abs=1e-12) != 0.99
    assert rec["source"] == {"kind": "predictions file", "file": "preds.json",
                             "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                             "scored_by": "relocbench evaluate --manifest activitynet --split test"}
    assert rec["features"] == {"kind": "declared", "name": "tsp"} and rec["task"] == "temporal"
    assert rec["per_pair"]["n"] == len(pairs) and rec["proposals"]["protocol"] == "activitynet-proposal"
    text = (lb / "README.md").read_text()
    assert "### Other baselines — features: tsp" in text and "predictions file `preds.json`" in text
    page = (tmp_path / "site" / "activitynet" / "whole-window.html").read_text()
    assert "Features: <strong>tsp</strong>" in page and hashlib.sha256(f.read_bytes()).hexdigest() in page
    assert "relocbench leaderboard --publish-predictions preds.json --name whole-window" in page
    # once published, again only with --force
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish-predictions", str(f), "--name",
                                   "whole-window"])
    one_line_error(res, str(p), "exists already")


@pytest.mark.parametrize("args,msg", [
    (["--name", "cgbm"], "--name 'cgbm' is a relocbench baseline"),
    ([], "--publish-predictions FILE needs --name NAME"),
    (["--name", "../x"], "--name: expected a plain folder name (one path component"),
    (["--name", "m", "--split", "val"], "holds predictions for the 'test' split, but --split is 'val'"),
])
def test_publish_predictions_refusals(tmp_path, anet_test_pairs, args, msg):
    f = whole_window_file(tmp_path / "preds.json", anet_test_pairs)
    lb = tmp_path / "lb"
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish-predictions", str(f), *args])
    one_line_error(res, msg)
    assert not lb.exists()


def test_publish_predictions_of_a_file_missing_pairs(tmp_path, anet_test_pairs):
    f = whole_window_file(tmp_path / "preds.json", anet_test_pairs.iloc[:10])
    with pytest.raises(PredictionError):
        publish_predictions(f, tmp_path / "lb", name="m")
    assert not (tmp_path / "lb").exists()


# ----------------------------------------------------------------------------- features of every table


@pytest.mark.parametrize("features,name", [
    ({"kind": "synthetic", "dim": 500, "seed": 0}, "synthetic (embedded)"),
    ({"kind": "npy", "name": "tsp", "dim": 512}, "tsp"),
    ({"config": {"size": 64}, "source": "synthetic-sprites"}, "rendered frames (synthetic-sprites)"),
    ({"source": "frames", "layout": "videos", "fps": 25.0}, "video frames (videos)"),
    ({"kind": "hdf5", "source": "f.h5", "dim": 512, "backbone": "r2plus1d_18"}, "r2plus1d_18"),
    ({"kind": "hdf5", "source": "f.h5", "dim": 512}, "hdf5 features"),
    ("synthetic", "synthetic"), (None, "features not recorded")])
def test_features_name(features, name):
    assert features_name({"features": features}) == name


def test_results_on_different_features_are_never_ranked_together(tmp_path):
    lb = tmp_path / "lb"
    for s in (0, 1):
        r = temporal_record("cgbm", s, [5, 4, 3, 2])
        r["features"] = {"kind": "synthetic", "dim": 500, "seed": s}
        write(lb, r)
    r = temporal_record("sst", 0, [1, 1, 1, 1])
    r["features"] = {"kind": "synthetic", "dim": 500, "seed": 0}
    write(lb, r)
    r = temporal_record("cgbm", 2, [0, 0, 0, 0])
    r["features"] = {"kind": "npy", "name": "tsp", "dim": 512}
    write(lb, r)
    text, figures = render_leaderboard(lb, load_results(lb))
    assert "## tiny — features: synthetic (embedded), tsp" in text
    tables = [t for t in text.split("### ")[1:] if t.startswith("Table 1")]
    syn = next(t for t in tables if t.startswith("Table 1: baselines (ECCV 2018 Table 1 layout) — features: synthetic"))
    tsp = next(t for t in tables if t.startswith("Table 1: baselines (ECCV 2018 Table 1 layout) — features: tsp"))
    assert "| cgbm | 100.0 ± 0.0 |" in syn and "| 2 |" in syn and "| sst |" in syn
    assert "| cgbm | 0.0 |" in tsp and "| 1 |" in tsp and "| sst | – |" in tsp and "not run on these features" in tsp
    assert "paper, C3D: Chance" in text and "paper: Chance" not in text
    assert sorted(figures) == ["figures/tiny.synthetic__embedded__" + slug("synthetic (embedded)").split("_")[-1]
                               + "-thresholds.png", "figures/tiny.tsp-thresholds.png"]
    files = render_site(load_results(lb))
    index = files["index.html"].decode()
    assert "Features: <strong>synthetic (embedded)</strong>; <strong>tsp</strong>" in index
    syn_page, tsp_page = f"tiny/cgbm.{slug('synthetic (embedded)')}.html", "tiny/cgbm.tsp.html"
    assert 'Features: <strong>tsp</strong>' in files[tsp_page].decode()
    assert 'Features: <strong>synthetic (embedded)</strong>' in files[syn_page].decode()
    assert "<strong>0.0</strong>" in files[tsp_page].decode()
    assert render_site(load_results(lb)) == files   # the same bytes when rendered again


def test_records_of_two_tasks_on_one_board_are_one_line_error(tmp_path):
    """A board's tables have its task's columns: a record of another task there is refused by name."""
    from relocbench.tasks import get_task

    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2, 3]))
    st = {"baseline": "b", "task": "spatiotemporal", "board": "tiny", "dataset": "tiny", "seed": 0,
          "metrics": {"frame_map": {t: 0.5 for (_, t), _ in get_task("spatiotemporal").columns}}}
    write(lb, st)
    with pytest.raises(ManifestError, match=r"b/seed-0\.json: record of task 'spatiotemporal' on board 'tiny', "
                                            r"whose records are 'temporal' \(results/tiny/a/seed-0\.json\)"):
        load_results(lb)
    one_line_error(CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb)]), "expected one task per board")
    assert not (lb / "README.md").exists()


def test_publishing_a_record_of_another_task_is_refused_before_writing(tmp_path, monkeypatch):
    """``publish_result`` (and so ``run-baseline --seeds --leaderboard``) reads the board's records first."""
    from types import SimpleNamespace

    import relocbench.engine
    from relocbench.leaderboard import run_seeds
    from relocbench.tasks import get_task

    lb = tmp_path / "lb"
    write(lb, temporal_record("a", 0, [1, 2, 3]))
    st = {"baseline": "b", "task": "spatiotemporal", "board": "tiny", "dataset": "tiny", "seed": 0,
          "metrics": {"frame_map": {t: 0.5 for (_, t), _ in get_task("spatiotemporal").columns}}}
    before = tree(lb)
    msg = (r"record of task 'spatiotemporal' for board 'tiny', whose records are 'temporal' "
           r"\(results/tiny/a/seed-0\.json\); expected one task per board")
    with pytest.raises(ManifestError, match=msg) as exc:
        publish_result(st, lb)
    assert "\n" not in str(exc.value) and tree(lb) == before
    # the same record on its own board, or a temporal record on this one, is written
    assert publish_result(st, lb, board="tiny-st").is_file()
    assert publish_result(temporal_record("c", 0, [0, 1, 2]), lb).is_file()

    def fake_run(name, *, out, overrides, force, **kw):
        return SimpleNamespace(result={**st, "baseline": name, "seed": overrides["seed"]}, run_dir=None,
                               metrics=st["metrics"])

    monkeypatch.setattr(relocbench.engine, "run_baseline", fake_run)
    before = tree(lb)
    with pytest.raises(ManifestError, match=msg):
        run_seeds("d", [0], out=tmp_path / "runs", leaderboard_dir=lb, board="tiny")
    assert tree(lb) == before
