"""Black bars cropped before the first stage's features of ``localize`` (letterbox, pillarbox)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import ConfigError
from relocbench.extract import ExtractConfig, extract_videos
from relocbench.extract.backbones import make_backbone
from relocbench.localize import localize
from relocbench.localize import bars as bars_mod
from relocbench.localize.bars import BARS_SETTING, BarCropped, bar_box, crop_bars
from relocbench.localize.cache import settings_doc
from relocbench.localize.degrade import Degradation, degrade
from relocbench.localize.index import search_index
from relocbench.localize.synthetic import write_scene_video

FPS = 25


def _content(rng, n, h, w):
    return rng.integers(60, 256, (n, h, w, 3)).astype(np.uint8)


def test_bar_box_crops_black_edges_and_one_blended_row_beside_them():
    rng = np.random.default_rng(0)
    f = _content(rng, 4, 32, 40)
    assert bar_box(list(f)) == (0, 32, 0, 40)
    lb = f.copy()
    lb[:, :4] = 0
    lb[:, 28:] = 10  # dark, not quite black: still a bar
    assert bar_box(list(lb)) == (5, 27, 0, 40)  # 4 bar rows + 1 on each side
    pb = f.copy()
    pb[:, :, :6] = 0
    assert bar_box(list(pb)) == (0, 32, 7, 40)
    # dark but saturated content (blue 200, green and red 0) is not a bar
    blue = f.copy()
    blue[:, :4] = (200, 0, 0)
    assert bar_box(list(blue)) == (0, 32, 0, 40)
    # a row bright in one frame of four (25 % of its pixels over the step) is content
    once = lb.copy()
    once[0, :4] = 200
    assert bar_box(list(once))[0] == 0
    # bars leaving less than half of the height: the whole frame
    most = f.copy()
    most[:, :17] = 0
    assert bar_box(list(most)) == (0, 32, 0, 40)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 30), st.integers(0, 30), st.integers(0, 10 ** 6))
def test_bar_box_finds_any_letterbox_and_pillarbox(top, bottom, left, right, seed):
    """Oracle: content of random bright pixels framed by black bars of the given sizes; the box
    is the content less one row or column beside each bar (the whole frame when less than half
    the height or width would stay)."""
    h, w = 72, 96
    f = _content(np.random.default_rng(seed), 3, h, w)
    f[:, :top] = 0
    f[:, h - bottom:] = 0
    f[:, :, :left] = 0
    f[:, :, w - right:] = 0
    y0, y1 = top + (top > 0), h - bottom - (bottom > 0)
    x0, x1 = left + (left > 0), w - right - (right > 0)
    want_y = (y0, y1) if y1 - y0 >= h // 2 else (0, h)
    want_x = (x0, x1) if x1 - x0 >= w // 2 else (0, w)
    assert bar_box(list(f)) == (*want_y, *want_x)


def test_crop_bars_works_per_step_and_keeps_the_frame_size():
    rng = np.random.default_rng(1)
    plain = list(_content(rng, 3, 24, 32))
    boxed = list(_content(rng, 2, 24, 32))
    for f in boxed:
        f[:4] = 0
        f[20:] = 0
    out = list(crop_bars(iter(plain + boxed), 3))
    assert len(out) == 5 and all(o.shape == (24, 32, 3) for o in out)
    assert all(o is f for o, f in zip(out[:3], plain))  # a step without bars passes unchanged
    import cv2

    want = cv2.resize(np.ascontiguousarray(boxed[0][5:19]), (32, 24), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out[3], want)


def test_the_crop_is_a_recorded_setting():
    bb = BarCropped(make_backbone(ExtractConfig(device="cpu")))
    assert bb.attrs()["bars"] == BARS_SETTING and bb.name == "handcrafted" and bb.dim == 521
    assert bb.flow == "dis"  # the wrapped backbone's attributes
    s = {"backbone": "handcrafted", "weights": "auto", "step_frames": 16, "pca": None, "options": {}}
    assert "bars" not in settings_doc("0" * 64, s, None, None)
    assert settings_doc("0" * 64, {**s, "bars": BARS_SETTING}, None, None)["bars"] == BARS_SETTING


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    d = tmp_path_factory.mktemp("bars")
    refs = [write_scene_video(d / f"r{k}.mp4", [(10 * k + i, 4.0) for i in range(3)], fps=FPS, size=(96, 72),
                              seed=5) for k in range(3)]
    # frames [110, 210) of r1 (4.4 s to 8.4 s), letterboxed by 25 %, at 15 fps and 128x96
    q = degrade(refs[1], d / "q.mp4", 110, 210, Degradation(letterbox=0.25, fps=15.0, size=(128, 96)))
    return {"dir": d, "refs": refs, "q": q}


def test_a_letterboxed_query_finds_its_reference_first_among_three(three, monkeypatch):
    res = localize(three["q"], three["refs"], device="cpu", cache=False, top_k=3)
    top = res.segments[0]
    assert top.reference == str(three["refs"][1]) and top.score >= 0.8 and top.refined
    assert abs(top.start_frame - 110) <= 2 and abs(top.end_frame - 210) <= 2
    assert all(s.reference == str(three["refs"][1]) for s in res.segments)  # the others stay under the floor
    assert res.to_doc()["features"]["bars"] == BARS_SETTING
    # the same features without the crop: the bars drag the copy's score under the floor
    monkeypatch.setattr(bars_mod, "crop_bars", lambda frames, step: frames)
    seen = localize(three["q"], three["refs"][1:2], device="cpu", cache=False, top_k=1, min_score=float("-inf"))
    assert seen.segments[0].score < 0.5 < top.score


def test_an_index_made_without_the_crop_is_refused_as_other_settings(three, tmp_path):
    old = tmp_path / "old.h5"
    extract_videos(three["refs"][:1], ExtractConfig(device="cpu"), out=old)  # rows of the uncropped frames
    with pytest.raises(ConfigError, match=r"old.h5: was made with other settings than this search: bars None in "
                                          rf"the index, '{BARS_SETTING}' asked"):
        search_index(three["q"], old, device="cpu")
