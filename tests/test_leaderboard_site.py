"""``relocbench leaderboard --html``: content, byte-identical rebuilds, no outside requests, a real browser.

The browser test drives Debian's chromium headless through Selenium pointed at
/usr/bin/chromedriver (Selenium never downloads a browser or driver here); it is skipped,
saying why, where either is absent.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ManifestError, OutputExistsError
from relocbench.leaderboard import board_stats, fmt_ci, fmt_comparison, fmt_mean_std, group_runs, load_results
from relocbench.leaderboard_site import build_site
from relocbench.tasks import get_task

from test_leaderboard import st_run, temporal_record, write

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def st_record(baseline, seed, m05):
    return {"baseline": baseline, "task": "spatiotemporal", "dataset": "sprites", "board": "sprites", "seed": seed,
            "split": "test", "parameters": 5, "wall_time_s": 2.0, "hardware": {"device": "cuda"},
            "config": {"steps": 3, "seed": seed}, "manifest_sha256": "ab" * 32,
            "metrics": {"frame_map": {"0.3": m05 + 0.1, "0.5": m05, "0.7": m05 / 2},
                        "per_label": {"hop": {"0.3": 0.5, "0.5": 0.25, "0.7": 0.125}, "spin": {"0.3": 0.4, "0.5": 0.2,
                                                                                            "0.7": None}}}}


@pytest.fixture()
def board(tmp_path):
    """A temporal board (cgbm reference, 2 seeds each, one single-file record) and a spatio-temporal one."""
    lb = tmp_path / "lb"
    rng = np.random.default_rng(1)
    base = rng.integers(0, 6, 200)
    for s in (0, 1):
        for name, hits in (("cgbm", base), ("sst", np.clip(base - rng.integers(0, 3, 200), 0, 5)),
                           ("cgbm-base", np.clip(base + rng.integers(-1, 2, 200), 0, 5)),
                           ("chance", rng.integers(0, 2, 200))):
            rec = temporal_record(name, s, hits)
            rec["metrics"]["breakdowns"] = {"per_class": {"cls a": {"average": 0.25, "n_pairs": 7, "map_at_iou": {
                t: 0.5 for t in ("0.5", "0.6", "0.7", "0.8", "0.9")}}}}
            rec["examples"] = [{"pair_id": "p0", "label": "cls a", "query_steps": 4, "window_steps": 40,
                                "ground_truth": [3, 9], "prediction": [2, 9]}]
            rec["manifest_sha256"] = "cd" * 32
            if name == "sst":
                rec["proposals"] = {"protocol": "activitynet-proposal", "max_avg_nr_proposals": 10.0,
                                    "auc": 0.3 + 0.01 * s, "ar_at_an": {"1": 0.125, "5": 0.25 + 0.125 * s, "10": 0.5,
                                                                        "100": None},
                                    "average_recall": [0.125, 0.25, 0.5], "average_nr_proposals": [1.0, 5.0, 10.0],
                                    "n_videos": 200, "n_proposals": 2000, "n_proposals_kept": 2000}
            write(lb, rec)
    write(lb, temporal_record("frame-dp", 0, base, with_pairs=False), legacy=True)
    for s in (0, 1):   # spatio-temporal runs with per-detection records (pooled frame-mAP comparisons)
        write(lb, st_run(tmp_path, 1, "stvr-warp", s)[0])
    write(lb, st_run(tmp_path, 2, "stvr-clip", 0)[0])
    write(lb, st_record("stvr-traj", 0, 0.15))
    return lb


def site_files(d: Path):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_site_is_byte_identical_when_rebuilt(board, tmp_path):
    a = build_site(board, tmp_path / "a")
    b = build_site(board, tmp_path / "b")
    fa, fb = site_files(a), site_files(b)
    assert fa == fb
    assert {"index.html", "submit.html", "style.css", "sort.js", "tiny/cgbm.html", "tiny/frame-dp.html",
            "sprites/stvr-warp.html", "tiny/cgbm-thresholds.svg", "tiny/cgbm-seed-1-config.json"} <= set(fa)
    build_site(board, a, force=True)
    assert site_files(a) == fa
    with pytest.raises(OutputExistsError):
        build_site(board, a)


def test_site_needs_nothing_outside_its_folder(board, tmp_path):
    d = build_site(board, tmp_path / "site")
    for rel, data in site_files(d).items():
        if not rel.endswith((".html", ".svg", ".css", ".js")):
            continue
        # namespace names and the SVG DOCTYPE's DTD name are identifiers, never fetched
        text = re.sub(r'xmlns(:\w+)?="[^"]*"|<!DOCTYPE svg[^>]*>', "", data.decode("utf-8"))
        assert not re.search(r"(?i)(https?:|//[a-z0-9]|url\((?!#))", text), rel
        for ref in re.findall(r'(?:src|href)="([^"]*)"', text):
            assert not ref.startswith(("/", "file:")), (rel, ref)
            if not ref.startswith("#"):
                assert (d / Path(rel).parent / ref).resolve().is_file(), (rel, ref)


def test_site_pages_hold_the_numbers(board, tmp_path):
    d = build_site(board, tmp_path / "site")
    index = (d / "index.html").read_text()
    recs = load_results(board)["tiny"]
    task = get_task("temporal")
    stats = board_stats(task, {n: r for n, r in group_runs(recs).items() if n in ("cgbm-base", "cgbm")}, "cgbm")
    assert fmt_comparison(stats["cgbm-base"]["comparison"]) in index
    assert '<tbody class="paper">' in index and "paper, C3D: Chance" in index and "paper: Chance" not in index
    page = (d / "tiny" / "cgbm-base.html").read_text()
    assert fmt_mean_std(stats["cgbm-base"]["headline"]) in page and fmt_ci(stats["cgbm-base"]["ci95"]) in page
    assert "cd" * 32 in page and "relocbench run-baseline cgbm-base --dataset tiny --config " \
           "cgbm-base-seed-1-config.json --seed 1" in page
    assert "mAP@1 by class" in page and "Qualitative examples" in page
    # the features of the numbers, on the index (board line, every table) and on every result page
    assert '<p class="features">Features: <strong>features not recorded</strong>' in page
    assert index.count("<caption>Features: features not recorded</caption>") == 2   # two temporal
    # spatio-temporal tables also name the scoring rule (records without one were scored per keyframe)
    assert index.count("<caption>Features: features not recorded, scoring: keyframe</caption>") == 1
    assert all('<p class="features">Features: ' in f.read_text() for f in d.glob("*/*.html"))
    st = (d / "sprites" / "stvr-traj.html").read_text()
    assert "AP per combined label" in st and "25.0" in st
    sprites = load_results(board)["sprites"]
    sst = board_stats(get_task("spatiotemporal"), group_runs(sprites), "stvr-warp")
    assert sst["stvr-clip"]["comparison"]["available"] and fmt_comparison(sst["stvr-clip"]["comparison"]) in index
    assert "n/a (per-pair scores not published for every seed)" in index   # stvr-traj
    assert "(1,000 resamples)" in index and "(10,000 resamples)" in index
    assert "relocbench evaluate" in (d / "submit.html").read_text()


def test_cli_html(board, tmp_path):
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(board), "--html", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "index.html").is_file() and (board / "README.md").is_file()
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(board), "--html", str(tmp_path / "s")])
    assert res.exit_code == 2 and "exists" in res.output
    with pytest.raises(ManifestError, match="no results to show"):
        build_site(tmp_path / "empty", tmp_path / "s2")


# ----------------------------------------------------------------------------- real browser


def _driver():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"no system browser: {', '.join(missing)} absent (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")   # Selenium Manager must not fetch anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--no-first-run"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _requests(drv):
    urls = []
    for e in drv.get_log("performance"):
        msg = json.loads(e["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_browser(board, tmp_path):
    from selenium.webdriver.common.by import By

    d = build_site(board, tmp_path / "site").resolve()
    recs = load_results(board)
    drv = _driver()
    try:
        drv.get((d / "index.html").as_uri())
        # every result appears with its numbers
        for bname, brecs in recs.items():
            task = get_task(brecs[0]["task"])
            by_name = group_runs(brecs)
            cols = [t for _, t in task.columns]
            for nm, runs in by_name.items():
                rows = drv.find_elements(By.CSS_SELECTOR, f'section#{bname} tr[data-baseline="{nm}"]')
                assert rows, (bname, nm)
                st = board_stats(task, {nm: runs}, None)[nm]
                cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
                assert cells[0] == nm
                assert cells[1:1 + len(cols)] == [fmt_mean_std(st["columns"][c]) for c in cols]
                assert cells[1 + len(cols)] == fmt_ci(st["ci95"])
        # sorting: click "Average" (descending, then ascending) on Table 1 of the temporal board
        table = drv.find_element(By.ID, "t-tiny-1")
        heads = table.find_elements(By.CSS_SELECTOR, "thead th")
        col = [h.text for h in heads].index("Average")

        def order():
            return [r.get_attribute("data-baseline") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
                    if r.get_attribute("data-baseline")]

        before = order()
        means = {nm: board_stats(get_task("temporal"), {nm: runs}, None)[nm]["headline"]["mean"]
                 for nm, runs in group_runs(recs["tiny"]).items() if nm in before}
        heads[col].click()
        assert order() == sorted(before, key=lambda n: -means[n]) != before
        heads[col].click()
        assert order() == sorted(before, key=lambda n: means[n])
        heads[0].click()
        assert order() == sorted(before, reverse=True)
        # the paper's rows are a table of their own, labelled with the paper's features
        assert not table.find_elements(By.CSS_SELECTOR, "tbody.paper tr")
        paper = drv.find_element(By.ID, "p-tiny-1").find_elements(By.CSS_SELECTOR, "tbody.paper tr")
        assert paper and paper[0].find_elements(By.TAG_NAME, "td")[0].text == "paper, C3D: Chance"
        # the features of every table are on the page, visible without opening anything
        line = drv.find_element(By.CSS_SELECTOR, "section#tiny p.features")
        assert line.is_displayed() and line.text == "Features: features not recorded"
        assert table.find_element(By.TAG_NAME, "caption").is_displayed()
        # no page requests anything outside the folder; no script errors
        pages = ["index.html", "submit.html"] + sorted(p.relative_to(d).as_posix() for p in d.glob("*/*.html"))
        seen = _requests(drv)
        for rel in pages[1:]:
            drv.get((d / rel).as_uri())
            seen += _requests(drv)
        root = d.as_uri() + "/"
        assert seen and all(u.startswith(root) for u in seen), [u for u in seen if not u.startswith(root)]
        assert any(u.endswith("sort.js") for u in seen) and any(u.endswith(".svg") for u in seen)
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        drv.quit()


def test_proposal_metric_on_the_result_page(board, tmp_path):
    out = build_site(board, tmp_path / "site")
    page = (out / "tiny" / "sst.html").read_text()
    assert "Proposals (activitynet-proposal)" in page and "ends at 10.0 proposals per pair" in page
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("Proposals (activitynet-proposal)")[1].split("</table>")[0])
    cells = [c for c in (re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows) if c]
    assert cells[0][:5] == ["0", "30.0", "12.5", "25.0", "50.0"] and cells[1][:5] == ["1", "31.0", "12.5", "37.5", "50.0"]
    assert cells[2][0] == "mean ± std" and cells[2][1] == "30.5 ± 0.7" and cells[2][3] == "31.2 ± 8.8"
    assert (out / "tiny" / "sst-proposals.svg").is_file()
    assert "Proposals (activitynet-proposal)" not in (out / "tiny" / "cgbm.html").read_text()
