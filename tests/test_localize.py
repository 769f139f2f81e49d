"""``localize`` on generated videos: re-encoded queries found, references ranked, outputs, errors, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, InputError, OutputExistsError
from relocbench.localize import localize, write_clips, write_json, write_plot, write_srt
from relocbench.localize.cache import FeatureCache
from relocbench.localize.synthetic import recode, write_scene_video

from test_localize_units import parse_srt

# Reference A: ten scenes of 5 to 9 s (68 s at 25 fps, 96x72); B and C: other scenes.
TIMELINE_A = list(zip(range(10), [6.0, 8.0, 5.0, 9.0, 7.0, 6.0, 8.0, 5.0, 7.0, 7.0]))
TIMELINE_B = list(zip(range(20, 27), [9.0, 7.0, 8.0, 6.0, 9.0, 8.0, 7.0]))
TIMELINE_C = list(zip(range(40, 46), [8.0, 6.0, 9.0, 7.0, 8.0, 8.0]))


def tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("localize-videos")
    refs = d / "refs"
    out = {
        "a": write_scene_video(refs / "a.mp4", TIMELINE_A, fps=25, size=(96, 72), seed=0),
        "b": write_scene_video(refs / "b.mp4", TIMELINE_B, fps=30, size=(96, 72), seed=0),
        "c": write_scene_video(refs / "c.mp4", TIMELINE_C, fps=20, size=(80, 60), seed=0),
        "short": write_scene_video(d / "short.mp4", [(60, 4.0)], fps=25, size=(96, 72), seed=0),
        "dir": d, "refs": refs, "cache": d / "cache",
    }
    # queries cut from A and re-encoded: other frame rate, size and brightness
    out["q1"] = recode(out["a"], d / "q1.mp4", start_s=17.3, end_s=29.1, fps=15, size=(128, 96), brightness=1.25)
    out["q2"] = recode(out["a"], d / "q2.mp4", start_s=40.2, end_s=47.0, fps=30, size=(64, 48), brightness=0.8)
    # and one played 1.3 times as fast: 11.8 s of A in 9.08 s
    out["q3"] = recode(out["a"], d / "q3.mp4", start_s=17.3, end_s=29.1, fps=24, size=(96, 72), speed=1.3)
    return out


def run(videos, query, refs, **kw):
    kw.setdefault("cache", videos["cache"])
    kw.setdefault("device", "cpu")
    return localize(query, refs, **kw)


@pytest.mark.parametrize("method", ["auto", "window", "framedp"])
@pytest.mark.parametrize("qname, truth", [("q1", (17.3, 29.1)), ("q2", (40.2, 47.0))])
def test_reencoded_query_is_found(videos, method, qname, truth):
    res = run(videos, videos[qname], [videos["a"]], method=method)
    top = res.segments[0]
    assert top.reference == str(videos["a"]) and top.rank == 1
    assert tiou((top.start, top.end), truth) >= 0.8
    assert res.method == ("window" if method == "auto" else method)
    starts = [(s.start, s.end) for s in res.segments]
    for i, (a, b) in enumerate(starts):  # non-overlapping within the reference
        assert all(b <= a2 or a >= b2 for a2, b2 in starts[:i])
    assert [s.score for s in res.segments] == sorted((s.score for s in res.segments), reverse=True)
    assert len(res.segments) <= 5


@pytest.mark.parametrize("method", ["window", "framedp"])
def test_faster_query_is_found_at_its_length_in_the_reference(videos, method):
    res = run(videos, videos["q3"], [videos["a"]], method=method)
    assert res.query["end"] == pytest.approx(11.8 / 1.3, abs=0.05)
    top = res.segments[0]
    assert tiou((top.start, top.end), (17.3, 29.1)) >= 0.8


def test_query_in_one_of_several_references_is_ranked_first(videos):
    refs = [videos["b"], videos["c"], videos["a"]]
    res = run(videos, videos["q1"], refs, top_k=6, min_score=float("-inf"))  # no floor: every reference ranked
    assert res.segments[0].reference == str(videos["a"])
    assert tiou((res.segments[0].start, res.segments[0].end), (17.3, 29.1)) >= 0.8
    assert {s.reference for s in res.segments} > {str(videos["a"])}  # others are ranked too, lower
    assert [s.rank for s in res.segments] == list(range(1, len(res.segments) + 1))
    # a folder means every video in it, by name
    res2 = run(videos, videos["q1"], [videos["refs"]], top_k=6)
    assert [r.path for r in res2.references] == [str(videos["refs"] / n) for n in ("a.mp4", "b.mp4", "c.mp4")]
    assert res2.segments[0].reference == str(videos["refs"] / "a.mp4")


def test_query_range_form(videos):
    for rng in ("17.3:29.1", "00:00:17.300:00:00:29.100", (17.3, 29.1)):
        res = run(videos, videos["a"], [videos["b"], videos["a"]], query_range=rng)
        assert res.query["path"] == str(videos["a"])
        assert res.query["start"] == pytest.approx(17.32, abs=0.05) and res.query["end"] == pytest.approx(29.12, abs=0.05)
        top = res.segments[0]
        assert top.reference == str(videos["a"]) and tiou((top.start, top.end), (17.3, 29.1)) >= 0.8


def test_query_longer_than_a_reference_is_skipped_others_ranked(videos):
    res = run(videos, videos["q1"], [videos["short"], videos["a"]])
    assert res.skipped == [{"reference": str(videos["short"]),
                            "reason": "reference shorter than the query (00:00:04.000 < 00:00:11.800)"}]
    assert res.segments and all(s.reference == str(videos["a"]) for s in res.segments)
    doc = res.to_doc()
    assert doc["skipped"] == res.skipped and len(doc["references"]) == 2


def test_outputs_json_srt_plot_clips(videos, tmp_path):
    res = run(videos, videos["q1"], [videos["a"], videos["b"]], top_k=3, min_score=float("-inf"))
    p = write_json(res, tmp_path / "out.json")
    doc = json.loads(p.read_text())
    assert doc["version"] == "relocbench/1" and doc["method"] == "window"
    assert set(doc["query"]) == {"path", "start", "end"} and doc["query"]["path"] == str(videos["q1"])
    assert doc["features"]["backbone"] == "handcrafted" and doc["features"]["step_frames"] == 16
    assert doc["features"]["dim"] == 521 and doc["features"]["grid_s"] == 0.5
    assert [set(s) for s in doc["segments"]] == [{"reference", "start", "end", "score", "start_frame", "end_frame",
                                                  "refined"}] * 3
    assert [s["score"] for s in doc["segments"]] == sorted((s["score"] for s in doc["segments"]), reverse=True)
    with pytest.raises(OutputExistsError):
        write_json(res, p)
    # SRT: one file per reference with segments (two references given)
    files = write_srt(res, tmp_path / "found.srt")
    names = sorted(f.name for f in files)
    refs_with = sorted({Path(s.reference).stem for s in res.segments})
    assert names == [f"found.{r}.srt" for r in refs_with]
    cues = parse_srt((tmp_path / "found.a.srt").read_text())
    mine = [s for s in res.segments if s.reference == str(videos["a"])]
    assert [(round(a, 3), round(b, 3)) for _, a, b, _ in cues] == sorted((round(s.start, 3), round(s.end, 3))
                                                                         for s in mine)
    assert any(t == f"#1 score {res.segments[0].score:.3f}" for _, _, _, t in cues)
    single = run(videos, videos["q1"], [videos["a"]], top_k=2, min_score=float("-inf"))
    assert write_srt(single, tmp_path / "one.srt") == [tmp_path / "one.srt"]
    assert len(parse_srt((tmp_path / "one.srt").read_text())) == 2
    # plot: a PNG
    png = write_plot(res, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # clips: one playable file per segment, about as long as the segment
    clips = write_clips(res, tmp_path / "clips")
    import cv2

    assert len(clips) == 3 and sorted(p.name for p in (tmp_path / "clips").iterdir()) == sorted(c.name for c in clips)
    for seg, c in zip(res.segments, clips):
        cap = cv2.VideoCapture(str(c))
        n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        assert abs(n / fps - (seg.end - seg.start)) < 0.1
    with pytest.raises(OutputExistsError):
        write_clips(res, tmp_path / "clips")


def test_cache_second_query_reads_features_and_no_cache(videos, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    first = run(videos, videos["q1"], [videos["a"]], cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    second = run(videos, videos["q1"], [videos["a"]], cache=cache)
    assert (cache.hits, cache.misses) == (2, 2)
    assert second.to_doc() == first.to_doc()
    assert second.timings["extract_s"] == 0.0
    # the cached reference with another query: only the query is extracted
    run(videos, videos["q2"], [videos["a"]], cache=cache)
    assert (cache.hits, cache.misses) == (3, 3)
    nocache = run(videos, videos["q1"], [videos["a"]], cache=False)
    assert nocache.to_doc() == first.to_doc() and nocache.cache == {}
    # a renamed copy has the same content: a hit
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(Path(videos["a"]).read_bytes())
    run(videos, videos["q1"], [copy], cache=cache)
    assert cache.hits == 5


def test_unreadable_cache_entry_is_recomputed_and_replaced(videos, tmp_path, capsys):
    cache = FeatureCache(tmp_path / "c")
    first = run(videos, videos["q2"], [videos["a"]], cache=cache)
    entries = sorted((tmp_path / "c").rglob("*.npz"))
    entries[0].write_bytes(b"not a zip")
    capsys.readouterr()
    again = run(videos, videos["q2"], [videos["a"]], cache=cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {entries[0]}: bad feature cache entry")
    assert "not a readable .npz" in err[0] and err[0].endswith("recomputing and replacing it")
    assert again.to_doc() == first.to_doc() and cache.bad == 1 and again.cache["bad"] == 1
    assert entries[0].read_bytes()[:2] == b"PK"  # replaced by a good entry
    run(videos, videos["q2"], [videos["a"]], cache=cache)
    assert cache.bad == 1 and capsys.readouterr().err == ""


def test_input_errors(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="bad.mp4: unreadable video"):
        run(videos, bad, [videos["a"]])
    with pytest.raises(InputError, match="bad.mp4: unreadable video"):
        run(videos, videos["q1"], [bad])
    with pytest.raises(InputError, match="missing.mp4: reference not found"):
        run(videos, videos["q1"], [tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: holds no video files"):
        run(videos, videos["q1"], [tmp_path / "empty"])
    with pytest.raises(ConfigError, match="is empty"):
        run(videos, videos["a"], [videos["a"]], query_range="20:10")
    with pytest.raises(InputError, match="a.mp4: the query range ends at 00:01:40.000, after the end of the video"):
        run(videos, videos["a"], [videos["b"]], query_range="60:100")
    with pytest.raises(InputError, match="a.mp4: the requested start .* lies past the end"):
        run(videos, videos["a"], [videos["b"]], query_range="200:210")
    with pytest.raises(ConfigError, match="top_k"):
        run(videos, videos["q1"], [videos["a"]], top_k=0)
    with pytest.raises(ConfigError, match="'auto', 'window', 'framedp' or a run folder"):
        run(videos, videos["q1"], [videos["a"]], method="nearest")
    with pytest.raises(ConfigError, match="nope: run folder not found"):
        run(videos, videos["q1"], [videos["a"]], method=str(tmp_path / "nope"))


def test_same_inputs_byte_identical_json(videos, tmp_path):
    a = write_json(run(videos, videos["q2"], [videos["a"], videos["b"]]), tmp_path / "1.json")
    b = write_json(run(videos, videos["q2"], [videos["a"], videos["b"]], cache=False), tmp_path / "2.json")
    assert a.read_bytes() == b.read_bytes()


def test_cli_localize(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("RELOCBENCH_CACHE", str(videos["cache"]))
    runner = CliRunner()
    out = tmp_path / "r.json"
    args = ["localize", str(videos["q1"]), str(videos["b"]), str(videos["a"]), "--device", "cpu", "--top-k", "2",
            "--output-json", str(out), "--srt", str(tmp_path / "r.srt"), "--plot", str(tmp_path / "r.png"),
            "--clip-out", str(tmp_path / "clips"), "--quiet", "--min-score", "-inf"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["segments"][0]["reference"] == str(videos["a"]) and len(doc["segments"]) == 2
    assert "00:00:17" in r.output and "Wrote" in r.output
    assert len(list((tmp_path / "clips").iterdir())) == 2
    r = runner.invoke(cli, args)  # outputs exist: refused before any work
    assert r.exit_code == 2 and "exists already; pass --force" in r.output
    r = runner.invoke(cli, args + ["--force"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["localize", str(videos["q1"]), str(videos["short"]), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0 and "Skipped" in r.output and "No segment found" in r.output
    r = runner.invoke(cli, ["localize", str(videos["a"]), str(videos["a"]), "--query-range", "30:20", "--quiet"])
    assert r.exit_code == 2 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    r = runner.invoke(cli, ["localize", str(bad), str(videos["a"]), "--quiet", "--no-cache"])
    assert r.exit_code == 2 and "bad.mp4: unreadable video" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["localize", "--help"])
    assert r.exit_code == 0 and "Examples:" in r.output
