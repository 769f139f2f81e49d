"""``relocbench index`` and ``localize --index``: the right video and segment, resume after a kill, settings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, InputError, OutputExistsError
from relocbench.extract.writer import journal_dir
from relocbench.localize.degrade import Degradation, degrade
from relocbench.localize.index import build_index, load_index, rank_references, search_index
from relocbench.localize.synthetic import write_scene_video

FPS = 25


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    d = tmp_path_factory.mktemp("collection")
    refs = [write_scene_video(d / "videos" / f"v{k}.mp4", [(50 * k + i, 5.0) for i in range(4)], fps=FPS,
                              size=(96, 72), seed=3) for k in range(5)]
    index = d / "coll.h5"
    s = build_index([d / "videos"], index, device="cpu")
    assert (s.extracted, s.resumed, len(s.failed)) == (5, 0, 0)
    # frames [160, 310) of v3 (6.4 s to 12.4 s), saved again smaller, at 15 fps, darker
    q = degrade(refs[3], d / "q.mp4", 160, 310, Degradation(fps=15.0, size=(64, 48), brightness=0.8))
    return {"dir": d, "refs": refs, "index": index, "q": q}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_search_finds_the_right_video_and_segment(coll):
    res = search_index(coll["q"], coll["index"], device="cpu", candidates=2)
    top = res.segments[0]
    assert top.reference == str(coll["refs"][3]) and top.refined
    assert abs(top.start_frame - 160) <= 2 and abs(top.end_frame - 310) <= 2
    assert res.features["indexed_videos"] == 5 and len(res.references) == 2
    assert res.features["first_stage"][0]["reference"] == str(coll["refs"][3])
    assert {"rank_s", "index_load_s", "refine_s"} <= set(res.timings)
    # the same answer as localize over the videos given by hand
    from relocbench.localize import localize

    plain = localize(coll["q"], coll["refs"], device="cpu", cache=False).segments[0]
    assert (plain.reference, plain.start_frame, plain.end_frame) == (top.reference, top.start_frame, top.end_frame)


def test_first_stage_ranks_the_source_video_first(coll):
    from relocbench.extract import ExtractConfig, extract_video

    idx = load_index(coll["index"])
    assert idx.videos == [f"v{k}" for k in range(5)] and idx.step_frames == 16
    qf = extract_video(coll["q"], ExtractConfig(device="cpu"))
    scores = rank_references(idx, qf.features, qf.fps, qf.n_frames)
    assert scores.shape == (5,) and int(np.argmax(scores)) == 3 and np.isfinite(scores).all()


def test_index_made_with_other_settings_is_refused(coll):
    with pytest.raises(ConfigError, match=r"coll.h5: was made with other settings than this search: "
                                          r"step_frames 16 in the index, 8 asked"):
        search_index(coll["q"], coll["index"], device="cpu", step_frames=8)
    with pytest.raises(InputError, match="nothing.h5"):
        search_index(coll["q"], coll["dir"] / "nothing.h5", device="cpu")


def test_bad_min_score_is_refused_before_the_index_is_read(tmp_path):
    # neither file exists: the floor is checked first, so its message comes before theirs
    for bad in ("high", float("nan"), True):
        with pytest.raises(ConfigError, match=r"The 'min_score' parameter must be a number or 'auto'"):
            search_index(tmp_path / "q.mp4", tmp_path / "none.h5", device="cpu", min_score=bad)


def test_grid_with_index_sets_the_full_matchers_grid(coll, tmp_path):
    # the first stage keeps the index's 1 s grid; the candidates are matched on the grid asked for
    out = {}
    for grid in ("0.5", "2.0"):
        js = tmp_path / f"g{grid}.json"
        r = CliRunner().invoke(cli, ["localize", str(coll["q"]), "--index", str(coll["index"]), "--device", "cpu",
                                     "--quiet", "--candidates", "1", "--no-refine", "--grid", grid,
                                     "--output-json", str(js)])
        assert r.exit_code == 0, r.output
        out[grid] = json.loads(js.read_text())
    assert out["0.5"]["features"]["grid_s"] == 0.5 and out["2.0"]["features"]["grid_s"] == 2.0
    assert out["0.5"]["features"]["first_stage"] == out["2.0"]["features"]["first_stage"]
    # the coarse answers snap to their grid: 6.4-12.4 s is found as 6.5-12.5 s, then on 2 s cells
    top = {g: (d["segments"][0]["start"], d["segments"][0]["end"]) for g, d in out.items()}
    assert top["0.5"] != top["2.0"]
    assert all(round(t / 2.0, 6).is_integer() for t in top["2.0"]), top
    res = search_index(coll["q"], coll["index"], device="cpu", candidates=1, refine=False, grid_s=2.0)
    assert res.references[0].curve.shape == (10,)  # a 20 s video on 2 s cells


def test_index_search_refuses_no_cache_and_outputs_onto_the_index(tmp_path):
    base = ["localize", str(tmp_path / "q.mp4"), "--index", str(tmp_path / "i.h5"), "--quiet"]
    r = CliRunner().invoke(cli, base + ["--no-cache"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "--no-cache applies to REFERENCE... searches" in r.output
    for option in ("--output-json", "--srt", "--plot"):
        for name in ("i.h5", "i.h5.coarse.npy", "i.h5.coarse.json"):
            r = CliRunner().invoke(cli, base + [option, str(tmp_path / name), "--force"])
            assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
            assert f"{option} is the input {tmp_path / name}" in r.output, r.output
    r = CliRunner().invoke(cli, base + ["--clip-out", str(tmp_path)])
    assert r.exit_code == 2 and "--clip-out is a folder that holds the input" in r.output, r.output


@pytest.fixture
def pair(tmp_path):
    """An index of an 8 s video and a 2 s one, and a 4 s query cut from the first."""
    a = write_scene_video(tmp_path / "videos" / "a.mp4", [(7, 4.0), (8, 4.0)], fps=FPS, size=(64, 48), seed=1)
    write_scene_video(tmp_path / "videos" / "b.mp4", [(9, 2.0)], fps=FPS, size=(64, 48), seed=2)
    q = degrade(a, tmp_path / "q.mp4", 40, 140, Degradation(size=(48, 36)))
    index = tmp_path / "pair.h5"
    build_index([tmp_path / "videos"], index, device="cpu")
    return {"a": a, "q": q, "index": index, "dir": tmp_path}


def test_videos_shorter_than_the_query_are_counted_and_reported(pair, tmp_path):
    res = search_index(pair["q"], pair["index"], device="cpu", min_score=float("-inf"))
    # b (2 s) is shorter than 3/4 of the 4 s query: not ranked, but counted and reported
    assert [f["reference"] for f in res.features["first_stage"]] == [str(pair["a"])]
    assert res.features["first_stage_skipped"] == {"shorter_than_query": 1}
    assert res.skipped == [{"reference": str(pair["index"]), "reason": "1 indexed video(s) shorter than 3/4 of "
                            "the query (00:00:04.000), not ranked"}]
    js = tmp_path / "found.json"
    r = CliRunner().invoke(cli, ["localize", str(pair["q"]), "--index", str(pair["index"]), "--device", "cpu",
                                 "--quiet", "--output-json", str(js)])
    assert r.exit_code == 0, r.output
    assert (f"Skipped {pair['index']}: 1 indexed video(s) shorter than 3/4 of the query (00:00:04.000), "
            "not ranked") in r.stderr
    doc = json.loads(js.read_text())
    assert doc["skipped"] == res.skipped and doc["features"]["first_stage_skipped"] == {"shorter_than_query": 1}


def test_a_source_changed_since_indexing_is_not_refined(pair, monkeypatch):
    from relocbench.localize import index as mod

    mod._MEMO.clear()
    mod._SOURCE_OK.clear()
    hashed = []
    import relocbench.io as rio

    sha = rio.sha256_file
    monkeypatch.setattr(rio, "sha256_file", lambda p, *a, **k: hashed.append(str(p)) or sha(p, *a, **k))
    lines = []
    # unchanged: size and modification time as recorded, nothing hashed, refined
    res = search_index(pair["q"], pair["index"], device="cpu", min_score=float("-inf"), warn=lines.append)
    assert res.segments[0].refined and lines == [] and hashed == [] and res.features["changed_since_indexed"] == []
    # touched, same bytes: the SHA-256 recorded at index time says it is the same video
    st = os.stat(pair["a"])
    os.utime(pair["a"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = search_index(pair["q"], pair["index"], device="cpu", min_score=float("-inf"), warn=lines.append)
    assert res.segments[0].refined and lines == [] and hashed == [str(pair["a"])]
    # edited after indexing: the coarse answer (from the indexed rows) kept, unrefined, one warning
    write_scene_video(pair["a"], [(8, 4.0), (7, 4.0)], fps=FPS, size=(64, 48), seed=5)
    res = search_index(pair["q"], pair["index"], device="cpu", min_score=float("-inf"), warn=lines.append)
    top = res.segments[0]
    assert top.reference == str(pair["a"]) and not top.refined
    assert abs(top.start - 40 / FPS) <= 0.6 and abs(top.end - 140 / FPS) <= 0.6
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"warning: {pair['a']}: changed since it was indexed (") and "not refined" in lines[0]
    assert res.features["changed_since_indexed"] == [str(pair["a"])]


def test_moved_source_is_needed_by_the_refinement_only(tmp_path):
    ref = write_scene_video(tmp_path / "videos" / "a.mp4", [(7, 4.0), (8, 4.0)], fps=FPS, size=(64, 48), seed=1)
    q = degrade(ref, tmp_path / "q.mp4", 40, 140, Degradation(size=(48, 36)))
    index = tmp_path / "one.h5"
    build_index([ref], index, device="cpu")
    os.rename(ref, tmp_path / "moved.mp4")
    with pytest.raises(InputError, match=r"a\.mp4: .*indexed video \(moved or deleted since it was indexed\?\)"):
        search_index(q, index, device="cpu", min_score=float("-inf"))
    res = search_index(q, index, device="cpu", refine=False, min_score=float("-inf"))
    top = res.segments[0]
    assert top.reference == str(ref) and not top.refined
    assert abs(top.start - 40 / FPS) <= 0.6 and abs(top.end - 140 / FPS) <= 0.6


def test_cli_index_and_localize_index(coll, tmp_path):
    runner = CliRunner()
    out = tmp_path / "two.h5"
    r = runner.invoke(cli, ["index", str(coll["refs"][0]), str(coll["refs"][3]), "--out", str(out), "--device", "cpu",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Indexed 2 video(s), kept 0 from before, 0 failed" in r.output
    assert (tmp_path / "two.h5.coarse.npy").is_file() and (tmp_path / "two.h5.coarse.json").is_file()
    r = runner.invoke(cli, ["index", str(coll["refs"][0]), "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "exists already" in r.output
    js = tmp_path / "found.json"
    r = runner.invoke(cli, ["localize", str(coll["q"]), "--index", str(out), "--device", "cpu", "--quiet",
                            "--output-json", str(js)])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    assert doc["segments"][0]["reference"] == str(coll["refs"][3]) and doc["features"]["indexed_videos"] == 2
    assert "warning" not in r.stderr  # the matrix written by index is used as it is
    r = runner.invoke(cli, ["localize", str(coll["q"]), str(coll["refs"][0]), "--index", str(out), "--quiet"])
    assert r.exit_code == 2 and "not both" in r.output
    r = runner.invoke(cli, ["localize", str(coll["q"]), "--quiet"])
    assert r.exit_code == 2 and "--index INDEX" in r.output
    r = runner.invoke(cli, ["localize", str(coll["q"]), "--index", str(out), "--step-frames", "8", "--quiet"])
    assert r.exit_code == 2 and "other settings" in r.output and len(r.output.strip().splitlines()) == 1


def test_index_resumes_after_a_kill(coll, tmp_path):
    vids = coll["refs"]
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "relocbench", "index", *map(str, vids), "--out", str(out), "--device", "cpu",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = journal_dir(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_dir() and len(list(journal.glob("*.npz"))) >= 1:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    finished = len(list(journal.glob("*.npz")))
    assert not out.exists() and 1 <= finished < 5
    with pytest.raises(OutputExistsError, match="interrupted extraction left"):
        build_index(vids, out, device="cpu")
    s = build_index(vids, out, device="cpu", resume=True)
    assert (s.resumed, s.extracted) == (finished, 5 - finished) and not journal.exists()
    assert out.read_bytes() == coll["index"].read_bytes()  # the same index as a run never interrupted


# --------------------------------------------------------------------------- the stored first-stage matrix
def _old_scores(index_path, qf):
    """The first stage as computed before the matrix was stored: every video's rows read and put
    on the grid in this process (the oracle the stored matrix must reproduce exactly)."""
    from relocbench.extract.writer import read_features_file
    from relocbench.localize.index import COARSE_GRID_S, COARSE_SCALES
    from relocbench.localize.matching import normalise, resample_to_grid, stretch

    attrs, entries = read_features_file(index_path)
    es = [entries[v] for v in sorted(entries)]
    sf = json.loads(attrs["settings"])["step_frames"]
    cells = [resample_to_grid(e.features, fps=e.fps, n_frames=e.n_frames, step_frames=sf, grid_s=COARSE_GRID_S)
             for e in es]
    allc = np.concatenate(cells)
    centre = allc.mean(axis=0)
    R = normalise(allc, centre)
    q = normalise(resample_to_grid(qf.features, fps=qf.fps, n_frames=qf.n_frames, step_frames=sf,
                                   grid_s=COARSE_GRID_S), centre)
    out, a = [], 0
    for c in cells:
        best = -np.inf
        for s in COARSE_SCALES:
            m = max(1, int(round(q.shape[0] * s)))
            qm = normalise(stretch(q, m))
            S = R[a:a + c.shape[0]] @ qm.T
            for j in range(c.shape[0] - m + 1):
                best = max(best, float(np.mean([S[j + i, i] for i in range(m)])))
        out.append(best)
        a += c.shape[0]
    return np.array(out)


@pytest.fixture
def copy(coll, tmp_path):
    """A private copy of the index and its matrix, not yet read by this process."""
    import shutil

    from relocbench.localize import index as mod

    mod._MEMO.clear()
    out = tmp_path / "copy.h5"
    for src, dst in zip([coll["index"], *mod.coarse_paths(coll["index"])], [out, *mod.coarse_paths(out)]):
        shutil.copy2(src, dst)
    rec = mod.coarse_paths(out)[1]
    doc = json.loads(rec.read_text())
    st = os.stat(out)
    doc["index"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}  # the copy's own file
    rec.write_text(json.dumps(doc))
    yield out
    mod._MEMO.clear()


def test_build_index_stores_the_first_stage_matrix(coll):
    from relocbench.localize.index import coarse_paths

    npy, rec = coarse_paths(coll["index"])
    assert npy.name == "coll.h5.coarse.npy" and rec.name == "coll.h5.coarse.json"
    doc = json.loads(rec.read_text())
    mat = np.load(npy)
    assert mat.dtype == np.float32 and mat.flags.c_contiguous and list(mat.shape) == doc["shape"]
    # five 20 s videos on a 1 s grid: 20 cells each, rows of unit length
    assert [v["cells"] for v in doc["videos"]] == [20] * 5 and mat.shape[0] == 100
    assert np.allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-5)
    assert doc["settings"]["step_frames"] == 16 and doc["grid_s"] == 1.0
    assert [v["video"] for v in doc["videos"]] == [f"v{k}" for k in range(5)]


def test_stored_matrix_ranks_as_the_rows_do(coll, copy):
    from relocbench.extract import ExtractConfig, extract_video

    lines = []
    idx = load_index(copy, warn=lines.append)
    assert lines == [] and idx.coarse_status == "read" and isinstance(idx.coarse[0], np.memmap)
    qf = extract_video(coll["q"], ExtractConfig(device="cpu"))
    got = rank_references(idx, qf.features, qf.fps, qf.n_frames)
    np.testing.assert_allclose(got, _old_scores(copy, qf), rtol=0, atol=1e-5)
    assert list(np.argsort(-got, kind="stable")) == list(np.argsort(-_old_scores(copy, qf), kind="stable"))


def test_search_reads_only_the_candidates_rows(coll, copy, monkeypatch):
    from relocbench.extract.writer import FeaturesFile

    loaded = []
    real = FeaturesFile.load
    monkeypatch.setattr(FeaturesFile, "load", lambda self, v, name=None: loaded.append(v) or real(self, v, name))
    res = search_index(coll["q"], copy, device="cpu", candidates=2)
    from pathlib import Path

    assert sorted(loaded) == sorted(["v3", Path(res.features["first_stage"][1]["reference"]).stem])
    assert res.segments[0].reference == str(coll["refs"][3])


def _answer(res):
    return ([(s.reference, s.start_frame, s.end_frame, round(s.score, 9)) for s in res.segments],
            res.features["first_stage"])


@pytest.mark.parametrize("spoil, why", [
    ("touch", "is stale"),
    ("flip", "does not match its checksum"),
    ("grid", "was made with other settings"),
    ("settings", "records other settings"),
    ("delete", "no first-stage matrix beside it"),
    ("garbage", "cannot be read"),
])
def test_a_stale_or_damaged_matrix_is_computed_again_with_one_warning(coll, copy, spoil, why):
    from relocbench.localize import index as mod

    npy, rec = mod.coarse_paths(copy)
    before = _answer(search_index(coll["q"], copy, device="cpu", candidates=2))
    mod._MEMO.clear()
    if spoil == "touch":
        os.utime(copy, ns=(os.stat(copy).st_atime_ns, os.stat(copy).st_mtime_ns + 10**9))
    elif spoil == "flip":
        data = bytearray(npy.read_bytes())
        data[-7] ^= 0x55
        npy.write_bytes(bytes(data))
    elif spoil in ("grid", "settings"):
        doc = json.loads(rec.read_text())
        if spoil == "grid":
            doc["grid_s"] = 0.5
        else:
            doc["settings"]["step_frames"] = 8
        rec.write_text(json.dumps(doc))
    elif spoil == "delete":
        rec.unlink()
    else:
        rec.write_text("{not json")
    lines = []
    idx = load_index(copy, warn=lines.append)
    assert len(lines) == 1 and why in lines[0] and str(copy) in lines[0] and "\n" not in lines[0]
    assert why in idx.coarse_status
    assert _answer(search_index(coll["q"], copy, device="cpu", candidates=2)) == before
    mod._MEMO.clear()  # written again: the next reading uses it, without a warning
    lines = []
    assert load_index(copy, warn=lines.append).coarse_status == "read" and lines == []


def test_a_record_that_disagrees_with_the_rows_is_refused(coll, copy):
    from relocbench.localize import index as mod

    rec = mod.coarse_paths(copy)[1]
    doc = json.loads(rec.read_text())
    doc["videos"][3]["n_frames"] += 1
    rec.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"copy.h5: video 'v3' is .* in the index, .* in copy.h5.coarse.json; "
                                         r"expected the same"):
        search_index(coll["q"], copy, device="cpu", candidates=1)


def test_cli_warns_in_one_line_when_it_computes_the_matrix(coll, copy):
    from relocbench.localize import index as mod

    mod.coarse_paths(copy)[0].unlink()
    r = CliRunner().invoke(cli, ["localize", str(coll["q"]), "--index", str(copy), "--device", "cpu", "--quiet",
                             "--candidates", "1"])
    assert r.exit_code == 0, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "no first-stage matrix beside it" in r.stderr
    assert mod.coarse_paths(copy)[0].is_file()
