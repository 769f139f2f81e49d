"""Recipes on the leaderboard: a recipe other than the baseline's default is a row of its own,
stored in its own folder (``<baseline>@<recipe>``), never overwriting the default's records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ManifestError
from relocbench.leaderboard import (board_tables, load_results, record_path, render_leaderboard, row_name,
                                    validate_record)
from relocbench.leaderboard_site import render_site
from relocbench.tasks import get_task

from test_leaderboard import temporal_record, write
from test_leaderboard_records import fake_run, one_line_error, tree

TASK = get_task("temporal")
TABLE2 = "Table 2: ablations (ECCV 2018 Table 2 layout)"


def rec_of(baseline, seed, hits, recipe=None):
    rec = temporal_record(baseline, seed, hits)
    if recipe is not None:
        rec["config"]["recipe"] = recipe
    return rec


def put(lb: Path, rec, folder: str) -> Path:
    p = lb / "results" / rec["board"] / folder / f"seed-{rec['seed']}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec))
    return p


def test_registered_defaults_and_row_names():
    # cgbm declares paper (its default) and original; the default recipe is the baseline's own row
    assert row_name(rec_of("cgbm", 0, [1], "paper")) == "cgbm"
    assert row_name(rec_of("cgbm", 0, [1])) == "cgbm"
    assert row_name(rec_of("cgbm-base", 0, [1], "original")) == "cgbm-base (original recipe)"
    assert row_name(rec_of("stvr-warp", 0, [1], "original")) == "stvr-warp (original recipe)"
    assert row_name(rec_of("stvr-warp", 0, [1], "compact")) == "stvr-warp"
    lb = Path("lb")
    assert record_path(lb, "b", "cgbm", 2, "original") == lb / "results" / "b" / "cgbm@original" / "seed-2.json"
    assert record_path(lb, "b", "cgbm", 2, "paper") == lb / "results" / "b" / "cgbm" / "seed-2.json"
    assert record_path(lb, "b", "cgbm", 2) == lb / "results" / "b" / "cgbm" / "seed-2.json"


def test_two_records_differing_only_in_recipe_are_two_rows_and_two_files(tmp_path):
    paper = rec_of("cgbm", 0, [5, 5, 0, 0], "paper")
    orig = rec_of("cgbm", 0, [5, 5, 5, 5], "original")
    lb = tmp_path / "lb"
    r1 = fake_run(tmp_path / "r1", paper)
    r2 = fake_run(tmp_path / "r2", orig)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(r1)])
    assert res.exit_code == 0, res.output
    first = (lb / "results" / "tiny" / "cgbm" / "seed-0.json").read_bytes()
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(lb), "--publish", str(r2)])
    assert res.exit_code == 0, res.output      # no --force needed: another row's file
    assert [p for p in tree(lb / "results") if p.endswith(".json")] == ["tiny/cgbm/seed-0.json",
                                                                       "tiny/cgbm@original/seed-0.json"]
    assert (lb / "results" / "tiny" / "cgbm" / "seed-0.json").read_bytes() == first   # nothing overwritten
    assert json.loads((lb / "results" / "tiny" / "cgbm@original" / "seed-0.json").read_text())["config"] == \
        orig["config"]
    recs = load_results(lb)["tiny"]
    assert [(r["baseline"], r["_recipe"]) for r in recs] == [("cgbm", None), ("cgbm", "original")]
    readme = (lb / "README.md").read_text()
    # same table, right after the full model, compared with it: pair means 0.5 vs 1.0 -> +50.0, 4 pairs
    row = next(line for line in readme.splitlines() if line.startswith("| cgbm (original recipe) |"))
    assert "| 100.0 |" in row and "+50.0 [" in row and "| 1 |" in row
    assert readme.count("| cgbm (original recipe) |") == 2          # Table 1 and Table 2 (both hold cgbm)


def test_ablation_rows_of_the_original_recipe_sit_beside_theirs(tmp_path):
    for name in ("cgbm", "cgbm-base", "cgbm-gating"):
        write(tmp_path, rec_of(name, 0, [5, 0]))
    for name in ("cgbm-base", "cgbm"):
        put(tmp_path, rec_of(name, 0, [5, 5], "original"), f"{name}@original")
    recs = load_results(tmp_path)["tiny"]
    tables = dict((t, (rows, ref)) for t, rows, ref in board_tables(TASK, recs))
    assert tables[TABLE2] == (["cgbm-base", "cgbm-base (original recipe)", "cgbm-gating", "cgbm-bilinear", "cgbm",
                               "cgbm (original recipe)"], "cgbm")
    text, _ = render_leaderboard(tmp_path, {"tiny": recs})
    t2 = text.split(TABLE2)[1].split("###")[0]
    row = next(line for line in t2.splitlines() if line.startswith("| cgbm-base (original recipe) |"))
    assert "+50.0 [+0.0, +100.0]" in row   # pairs (1, 1) vs the full model's (1, 0): +0.5
    assert "| cgbm-bilinear | – |" in t2


def test_an_unknown_recipe_is_refused_with_the_file_named(tmp_path):
    run = fake_run(tmp_path / "run", rec_of("cgbm", 0, [1, 2], "fancy"))
    before = tree(tmp_path)
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb"), "--publish", str(run)])
    one_line_error(res, str(run / "result.json"), "field 'config.recipe'", "'fancy'", "original, paper")
    assert tree(tmp_path) == before
    p = put(tmp_path / "lb2", rec_of("cgbm", 0, [1, 2], "fancy"), "cgbm@fancy")
    with pytest.raises(ManifestError, match=rf"{p}: field 'config.recipe': expected one of the recipes baseline "
                                            r"'cgbm' declares \(original, paper\), found the string 'fancy'"):
        load_results(tmp_path / "lb2")
    with pytest.raises(ManifestError,
                       match=r"expected no recipe \(baseline 'sst' declares none\), found the string 'paper'"):
        validate_record(rec_of("sst", 0, [1], "paper"), "x.json")


def test_the_folder_must_agree_with_baseline_and_recipe(tmp_path):
    p = put(tmp_path, rec_of("cgbm", 0, [1, 2], "original"), "cgbm")
    with pytest.raises(ManifestError, match=r"seed-0.json: record of baseline 'cgbm', recipe 'original', in the "
                                            r"folder of 'cgbm' \(expected the folder 'cgbm@original'\)"):
        load_results(tmp_path)
    p.unlink()
    put(tmp_path, rec_of("cgbm", 0, [1, 2], "paper"), "cgbm@original")
    with pytest.raises(ManifestError, match=r"record of baseline 'cgbm' in the folder of 'cgbm@original'"):
        load_results(tmp_path)


def test_a_baseline_name_holding_the_separator_is_refused():
    with pytest.raises(ManifestError, match=r"x.json: field 'baseline': expected a baseline name without '@'"):
        validate_record(rec_of("cgbm@original", 0, [1]), "x.json")


def test_an_unregistered_baseline_keeps_any_recipe_as_a_row_of_its_own(tmp_path):
    run = fake_run(tmp_path / "run", rec_of("my-model", 0, [1, 2], "big"))
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb"), "--publish", str(run)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lb" / "results" / "tiny" / "my-model@big" / "seed-0.json").is_file()
    assert "| my-model (big recipe) |" in (tmp_path / "lb" / "README.md").read_text()


def test_a_default_recipe_record_reads_as_one_without_a_recipe(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, hits in ((0, [5, 1]), (1, [2, 3])):
        write(a, rec_of("cgbm", seed, hits))
        write(b, rec_of("cgbm", seed, hits, "paper"))
        write(a, rec_of("sst", seed, hits[::-1]))
        write(b, rec_of("sst", seed, hits[::-1]))
    ta, fa = render_leaderboard(a, load_results(a))
    tb, fb = render_leaderboard(b, load_results(b))
    assert ta == tb and fa == fb and "(paper recipe)" not in ta


def test_the_site_has_a_page_per_baseline_and_recipe(tmp_path):
    write(tmp_path, rec_of("cgbm", 0, [5, 0]))
    put(tmp_path, rec_of("cgbm", 0, [5, 5], "original"), "cgbm@original")
    files = render_site(load_results(tmp_path))
    pages = sorted(k for k in files if k.startswith("tiny/") and k.endswith(".html"))
    assert len(pages) == 2 and "tiny/cgbm.html" in pages
    other = next(p for p in pages if p != "tiny/cgbm.html")
    page = files[other].decode()
    assert "<h1>cgbm (original recipe) on tiny</h1>" in page
    assert "--recipe original --out runs/tiny/cgbm@original/seed-0" in page
    assert f'href="{other}"' in files["index.html"].decode()


@pytest.mark.parametrize("seed_option", ["--seed", "--seeds"])
def test_run_baseline_checks_the_recipe_s_own_record_before_training(tmp_path, seed_option):
    rec = rec_of("cgbm", 0, [1, 2], "original")
    rec["board"] = "activitynet"
    put(tmp_path, rec, "cgbm@original")
    res = CliRunner().invoke(cli, ["run-baseline", "cgbm", "--recipe", "original", seed_option, "0", "--steps", "1",
                                   "--out", str(tmp_path / "run"), "--leaderboard", str(tmp_path)])
    one_line_error(res, str(tmp_path / "results" / "activitynet" / "cgbm@original" / "seed-0.json"))
    assert not (tmp_path / "run").exists()
