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


def test_cli_index_and_localize_index(coll, tmp_path):
    runner = CliRunner()
    out = tmp_path / "two.h5"
    r = runner.invoke(cli, ["index", str(coll["refs"][0]), str(coll["refs"][3]), "--out", str(out), "--device", "cpu",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Indexed 2 video(s), kept 0 from before, 0 failed" in r.output
    r = runner.invoke(cli, ["index", str(coll["refs"][0]), "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "exists already" in r.output
    js = tmp_path / "found.json"
    r = runner.invoke(cli, ["localize", str(coll["q"]), "--index", str(out), "--device", "cpu", "--quiet",
                            "--output-json", str(js)])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    assert doc["segments"][0]["reference"] == str(coll["refs"][3]) and doc["features"]["indexed_videos"] == 2
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
