"""localize building blocks on arrays: time codes, SRT, the time grid, matchers, NMS, windows, cache keys."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import ConfigError
from relocbench.localize.cache import FeatureCache, default_cache_dir, settings_key
from relocbench.localize.matching import (
    Candidates, WindowConfig, grid_size, match, match_bytes, match_framedp, match_window, nms, normalise,
    resample_to_grid, resolve_matcher, step_centres_s, stretch, window_scores,
)
from relocbench.localize.runs import check_feature_settings, window_plan
from relocbench.localize.timecodes import format_hms, format_srt_time, parse_query_range, parse_time, srt_text

# ----------------------------------------------------------------------------- time codes


@pytest.mark.parametrize("text, expected", [
    ("12.5:18", (12.5, 18.0)),
    ("0:1", (0.0, 1.0)),
    (":18", (None, 18.0)),
    ("12.5:", (12.5, None)),
    ("00:01:02.500:00:01:10.250", (62.5, 70.25)),
    ("01:00:00.000:01:00:01.5", (3600.0, 3601.5)),
    ("01:02.5:01:10", (62.5, 70.0)),
    (" 3 : 4.25 ", (3.0, 4.25)),
])
def test_parse_query_range(text, expected):
    assert parse_query_range(text) == expected


@pytest.mark.parametrize("text, match_", [
    ("18:12.5", "empty"), ("5:5", "empty"), ("abc", "START:END"), ("1:2:3", "START:END"), (":", "START:END"),
    ("00:61:00.000:00:62:00.000", "START:END"), ("-1:2", "START:END"), ("00:00:01.000:", "START:END"),
])
def test_parse_query_range_errors(text, match_):
    with pytest.raises(ConfigError, match=match_):
        parse_query_range(text)


@pytest.mark.parametrize("seconds, text", [
    (0, "00:00:00.000"), (62.5, "00:01:02.500"), (3599.9996, "01:00:00.000"), (0.0004, "00:00:00.000"),
    (0.0005, "00:00:00.001"), (360000.25, "100:00:00.250"), (59.999, "00:00:59.999"),
])
def test_format_hms(seconds, text):
    assert format_hms(seconds) == text
    assert format_srt_time(seconds) == text.replace(".", ",")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_format_hms_rejects(bad):
    with pytest.raises(ConfigError, match="finite number of seconds"):
        format_hms(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10 * 3600 * 1000))
def test_hms_round_trip(ms):
    t = ms / 1000.0
    assert abs(parse_time(format_hms(t)) - t) < 1e-6
    a, b = parse_query_range(f"{format_hms(t)}:{format_hms(t + 1.5)}")
    assert abs(a - t) < 1e-6 and abs(b - (t + 1.5)) < 1e-6


_SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n")


def parse_srt(text):
    """A strict SubRip reader (the oracle): numbered cues, times, one text line, blank-line separated."""
    assert text.endswith("\n") and "\r" not in text
    blocks = text[:-1].split("\n\n") if text else []
    cues = []
    for blk in blocks:
        m = _SRT_CUE.fullmatch(blk + "\n")
        assert m, f"not a SubRip cue: {blk!r}"
        g = m.groups()
        a = int(g[1]) * 3600 + int(g[2]) * 60 + int(g[3]) + int(g[4]) / 1000
        b = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[8]) / 1000
        cues.append((int(g[0]), a, b, g[9]))
    return cues


def test_srt_text_sorted_numbered_and_parses():
    text = srt_text([(70.25, 75.0, "#2 score 0.500"), (3.5, 9.125, "#1 score 0.900"), (3661.001, 3662, "#3")])
    cues = parse_srt(text)
    assert cues == [(1, 3.5, 9.125, "#1 score 0.900"), (2, 70.25, 75.0, "#2 score 0.500"),
                    (3, 3661.001, 3662.0, "#3")]
    assert text.startswith("1\n00:00:03,500 --> 00:00:09,125\n#1 score 0.900\n\n2\n")


def test_srt_text_errors():
    with pytest.raises(ConfigError, match="end after it starts"):
        srt_text([(5.0, 5.0, "x")])
    with pytest.raises(ConfigError, match="one non-empty line"):
        srt_text([(1.0, 2.0, "two\nlines")])
    assert srt_text([]) == ""


# ----------------------------------------------------------------------------- time grid
def test_step_centres_hand_computed():
    # 40 frames at 10 fps, steps of 16: frames [0,16) [16,32) [32,40) -> centres 0.8, 2.4, 3.6 s
    assert np.allclose(step_centres_s(3, 40, 16, 10.0), [0.8, 2.4, 3.6])


def test_resample_to_grid_hand_computed():
    x = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)  # centres 0.8, 2.4, 3.6 s (above)
    g = resample_to_grid(x, fps=10.0, n_frames=40, step_frames=16, grid_s=1.0)
    # 4 s -> cells centred 0.5, 1.5, 2.5, 3.5: hold, interpolate (1.5-0.8)/1.6, (2.5-2.4)/1.2, (3.5-2.4)/1.2
    want = [0.0, 0.7 / 1.6, 1.0 + 2.0 * 0.1 / 1.2, 1.0 + 2.0 * 1.1 / 1.2]
    assert g.shape == (4, 1) and np.allclose(g[:, 0], want, atol=1e-6)
    assert grid_size(4.0, 1.0) == 4 and grid_size(4.01, 1.0) == 5 and grid_size(0.1, 1.0) == 1


def test_resample_same_content_different_fps_agrees():
    # a feature that is a function of time sampled at two frame rates lands on the same grid values
    def feats(fps, n_frames, sf=16):
        c = step_centres_s(math.ceil(n_frames / sf), n_frames, sf, fps)
        return np.stack([np.sin(c / 3.0), np.cos(c / 5.0)], 1).astype(np.float32)

    a = resample_to_grid(feats(30.0, 3000), fps=30.0, n_frames=3000, step_frames=16, grid_s=0.5)
    b = resample_to_grid(feats(12.0, 1200), fps=12.0, n_frames=1200, step_frames=16, grid_s=0.5)
    assert a.shape == b.shape == (200, 2)
    # linear interpolation error bound h^2 / 8 * max|f''| with h = 16 / 12 s and f = sin(t / 3)
    assert np.abs(a[4:-4] - b[4:-4]).max() < 1.1 * (16 / 12) ** 2 / 8 / 9


def test_resample_errors():
    with pytest.raises(ConfigError, match="grid_s"):
        resample_to_grid(np.ones((2, 3)), fps=10, n_frames=32, step_frames=16, grid_s=0)
    with pytest.raises(ConfigError, match="non-empty"):
        resample_to_grid(np.ones((0, 3)), fps=10, n_frames=32, step_frames=16)
    with pytest.raises(ConfigError, match="frame rate"):
        resample_to_grid(np.ones((2, 3)), fps=0.0, n_frames=32, step_frames=16)


def test_stretch_and_normalise():
    x = np.array([[0.0], [2.0]], dtype=np.float32)
    assert np.allclose(stretch(x, 4)[:, 0], [0.0, 0.5, 1.5, 2.0])  # centres at -0.25, 0.25, 0.75, 1.25
    assert stretch(x, 2) is x
    n = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]), centre=np.array([0.0, 0.0]))
    assert np.allclose(n, [[0.6, 0.8], [0.0, 0.0]])


# ----------------------------------------------------------------------------- matchers
def _unit(rng, n, d):
    return normalise(rng.standard_normal((n, d)).astype(np.float32))


@pytest.mark.parametrize("L, T, m", [(5, 30, 5), (5, 30, 3), (4, 9, 8), (7, 7, 7), (1, 6, 1)])
def test_window_scores_equal_plain_loops(L, T, m):
    rng = np.random.default_rng(L * 100 + T + m)
    q, r = _unit(rng, L, 6), _unit(rng, T, 6)
    got = window_scores(q, r, m)
    qm = normalise(stretch(q, m))
    want = [np.mean([float(qm[i] @ r[t + i]) for i in range(m)]) for t in range(T - m + 1)]
    assert np.allclose(got, want, atol=1e-6)


def test_window_finds_a_planted_stretched_copy():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((200, 16)).astype(np.float32)
    query = ref[80:100].copy()
    ref2 = ref.copy()
    ref2[80:108] = stretch(query, 28)  # the same content played 1.4x slower (28 is one of the lengths)
    assert 28 in WindowConfig().lengths(20, 200)
    res = match(query, ref2, method="window")
    best = nms(res.candidates, 1)
    assert (int(best.start[0]), int(best.end[0])) == (80, 108)
    assert res.curve.shape == (200,) and np.isfinite(res.curve).all()
    assert int(np.argmax(res.curve)) in range(90, 100)


def test_framedp_matcher_finds_the_copy_and_masks_for_more():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((120, 16)).astype(np.float32)
    query = ref[40:52].copy()
    res = match(query, ref, method="framedp", top_k=3)
    c = res.candidates
    assert (int(c.start[0]), int(c.end[0])) == (40, 52) and c.score[0] == pytest.approx(1.0)
    spans = list(zip(c.start.tolist(), c.end.tolist()))
    for i, (a, b) in enumerate(spans):  # later segments never overlap earlier ones
        for a2, b2 in spans[:i]:
            assert b <= a2 or a >= b2
    assert list(c.score) == sorted(c.score, reverse=True)


def test_match_window_lengths_and_penalty():
    cfg = WindowConfig()
    assert cfg.lengths(20, 1000).tolist() == sorted(set(np.round(20 * np.exp(np.linspace(np.log(.5), np.log(2), 9)))
                                                       .astype(int).tolist()))
    assert cfg.lengths(20, 15).max() == 15
    assert WindowConfig(n_scales=1).lengths(7, 100).tolist() == [7]
    with pytest.raises(ConfigError, match="min_scale"):
        WindowConfig(min_scale=1.5)
    with pytest.raises(ConfigError, match="n_scales"):
        WindowConfig(n_scales=0)
    q = normalise(np.ones((4, 2), np.float32))
    r = normalise(np.ones((20, 2), np.float32))
    res = match_window(q, r, WindowConfig(length_penalty=0.1))
    best = nms(res.candidates, 1)
    assert int(best.end[0] - best.start[0]) == 4  # uniform content: the query's own length wins


def test_resolve_matcher():
    assert resolve_matcher("auto") == "window" and resolve_matcher("framedp") == "framedp"
    with pytest.raises(ConfigError, match="run folder"):
        resolve_matcher("nearest")


def test_framedp_single_column_reference():
    q = normalise(np.eye(3, dtype=np.float32))
    res = match_framedp(q, q[:1], top_k=3)
    assert res.candidates.start.tolist() == [0] and res.candidates.end.tolist() == [1]


# ----------------------------------------------------------------------------- NMS
def _nms_plain(start, end, score, k):
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    keep = []
    for i in order:
        if len(keep) == k:
            break
        if all(end[i] <= start[j] or start[i] >= end[j] for j in keep):
            keep.append(i)
    return keep


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 10), st.integers(-5, 5)), min_size=1, max_size=40),
       st.integers(1, 6))
def test_nms_equals_plain_greedy(rows, k):
    start = np.array([a for a, _, _ in rows])
    end = start + np.array([n for _, n, _ in rows])
    score = np.array([float(s) for _, _, s in rows])  # integer scores: many ties
    got = nms(Candidates(start, end, score), k)
    keep = _nms_plain(start.tolist(), end.tolist(), score.tolist(), k)
    assert got.start.tolist() == start[keep].tolist() and got.end.tolist() == end[keep].tolist()
    assert got.score.tolist() == score[keep].tolist()


def test_nms_errors_and_nonfinite():
    c = Candidates(np.array([0, 5]), np.array([3, 8]), np.array([np.nan, 1.0]))
    assert nms(c, 5).start.tolist() == [5]
    with pytest.raises(ConfigError, match="top_k"):
        nms(c, 0)


# ----------------------------------------------------------------------------- trained windows, settings
@pytest.mark.parametrize("n, w, ov, want", [
    (10, 300, 64, [(0, 10)]),
    (300, 300, 64, [(0, 300)]),
    (301, 300, 64, [(0, 300), (1, 301)]),
    (700, 300, 64, [(0, 300), (236, 536), (400, 700)]),
])
def test_window_plan(n, w, ov, want):
    plan = window_plan(n, w, ov)
    assert plan == want
    for span in range(1, ov + 2):  # every span of up to overlap + 1 steps lies in one window
        for s in range(0, n - span + 1, 7):
            assert any(a <= s and s + span <= b for a, b in plan)


def test_window_plan_errors():
    with pytest.raises(ConfigError, match="overlap"):
        window_plan(10, 5, 5)


def test_check_feature_settings_names_both():
    run = {"backbone": "handcrafted", "weights": "none", "step_frames": 16, "dim": 521, "pca": "none"}
    check_feature_settings(run, {"backbone": "handcrafted", "step_frames": "16"}, wanted_from="a", have_from="b")
    with pytest.raises(ConfigError, match=r"mismatch in step_frames: the run was trained on .*step_frames=16 .*\(F\)"
                                          r".*step_frames=8 \(asked\)"):
        check_feature_settings(run, {"step_frames": 8}, wanted_from="F", have_from="asked")
    with pytest.raises(ConfigError, match="mismatch in pca"):
        check_feature_settings(run, {"pca": "pca-64 sha256:ab"}, wanted_from="F", have_from="asked")
    with_pca = {**run, "pca": "pca-64 sha256:ab"}
    check_feature_settings(with_pca, {"pca": "pca-64 sha256:ab", "dim": 521}, wanted_from="F", have_from="G")
    with pytest.raises(ConfigError, match="mismatch in pca"):  # another fit of the same size
        check_feature_settings(with_pca, {"pca": "pca-64 sha256:cd"}, wanted_from="F", have_from="G")
    check_feature_settings(with_pca, {"pca": "/some/features.h5"}, wanted_from="F", have_from="asked",
                           pca_presence_only=True)
    with pytest.raises(ConfigError, match="mismatch in pca"):
        check_feature_settings(run, {"pca": "/some/features.h5"}, wanted_from="F", have_from="asked",
                               pca_presence_only=True)


# ----------------------------------------------------------------------------- cache keys
def test_cache_key_depends_on_content_settings_and_range(tmp_path, monkeypatch):
    base = {"backbone": "handcrafted", "weights": "auto", "step_frames": 16, "pca": None, "options": {}}
    k = settings_key("ab" * 32, base, None, None)
    assert k == settings_key("ab" * 32, dict(base), None, None) and len(k) == 64
    others = [settings_key("cd" * 32, base, None, None), settings_key("ab" * 32, {**base, "step_frames": 8}, None, None),
              settings_key("ab" * 32, {**base, "backbone": "r3d_18"}, None, None),
              settings_key("ab" * 32, base, 1.0, None), settings_key("ab" * 32, base, None, 2.0)]
    assert len({k, *others}) == 6
    monkeypatch.setenv("RELOCBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert FeatureCache().path(k) == tmp_path / "c" / "features" / k[:2] / f"{k}.npz"
    monkeypatch.delenv("RELOCBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if default_cache_dir().parent == tmp_path / "xdg":  # Linux layout
        assert default_cache_dir() == tmp_path / "xdg" / "relocbench"


def test_match_bytes_hand_computed():
    # features: 3 float32 copies of (10 + 100) cells x 8 = 10560 bytes; window: the longest window is
    # round(10 x 2) = 20 cells, a [100, 20] float32 table and its sums (2 x 4 x 100 x 20 = 16000);
    # framedp: five [10, 100] float64 tables (40 x 10 x 100 = 40000)
    assert match_bytes("window", 10, 100, 8) == 10560 + 16000
    assert match_bytes("auto", 10, 100, 8) == 10560 + 16000
    assert match_bytes("framedp", 10, 100, 8) == 10560 + 40000
    assert match_bytes("window", 10, 15, 8) == 3 * 4 * 25 * 8 + 2 * 4 * 15 * 15  # windows end at the reference
    assert match_bytes("window", 10, 0, 8) == 3 * 4 * 10 * 8  # the query alone
