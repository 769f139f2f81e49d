"""Feature sources with a declared time axis: layouts, presets, the grid mapping and the coverage check.

The sources are written by the tests for three real ActivityNet videos (durations and frame
counts from the committed manifest's timelines). Rows encode their own centre time, so a
step's value is the step's centre time clamped to the first and last row centres; the
presets are also checked against hand-computed row positions.
"""
from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import ConfigError, FeatureError
from relocbench.features import (
    PRESETS,
    FeatureCard,
    TimeAxis,
    VideoInfo,
    load_card,
    open_feature_store,
    preset,
    video_infos,
)
from relocbench.manifest import open_manifest

#: three real videos: 14.07 s / 420 frames (29.85 fps), 64.831 s / 1909 frames (29.45 fps),
#: and the first test video
VIDEOS = ["---9CpRcKoU", "-0i3BpAQAgE"]


@pytest.fixture(scope="module")
def timelines():
    return open_manifest("activitynet").table("timelines", None)


@pytest.fixture(scope="module")
def infos(timelines):
    got = video_infos(timelines)
    test_video = str(open_manifest("activitynet").table("segments", "test")["video"].iloc[0])
    vids = VIDEOS + [test_video]
    assert got["---9CpRcKoU"] == VideoInfo(14.07, 420, 26)
    assert got["-0i3BpAQAgE"] == VideoInfo(64.831, 1909, 119)
    return {v: got[v] for v in vids}


def _timed_rows(axis: TimeAxis, info: VideoInfo, n_rows: int, dim: int) -> np.ndarray:
    """Rows whose every value is the row's centre time in seconds."""
    t = axis.row_centres_s(n_rows, info)
    return np.repeat(t[:, None], dim, axis=1).astype(np.float32)


def _oracle(axis: TimeAxis, info: VideoInfo, n_rows: int) -> np.ndarray:
    """Each step's centre time (16 j + 8) * duration / n_frames, clamped to the rows' centres."""
    t = axis.row_centres_s(n_rows, info)
    s = (16 * np.arange(info.n_steps) + 8) * info.duration_s / info.n_frames
    return np.clip(s, t[0], t[-1])


def _n_rows(axis: TimeAxis, info: VideoInfo) -> int:
    lo, hi = axis.expected_rows(info)
    return (lo + hi) // 2


# --------------------------------------------------------------------------- layouts
def _write(tmp_path, layout, fmt, rows_by_video, *, key=None, prefix=""):
    """Write the rows in one layout; returns (path, card template)."""
    if layout == "hdf5":
        path = tmp_path / "f.h5"
        with h5py.File(path, "w") as f:
            for v, a in rows_by_video.items():
                name = f"{prefix}{v}"
                if key:
                    f.create_group(name).create_dataset(key, data=a)
                else:
                    f.create_dataset(name, data=a)
        return path, (f"{prefix}{{video}}/{key}" if key else f"{prefix}{{video}}")
    folder = tmp_path / "feats"
    folder.mkdir()
    template = f"{prefix}{{video}}.{fmt}"
    for v, a in rows_by_video.items():
        p = folder / template.format(video=v)
        if fmt == "npy":
            np.save(p, a)
        elif fmt == "npz":
            np.savez(p, feats=a, other=np.zeros(3))
        elif fmt in ("pt", "pth"):
            import torch

            t = torch.from_numpy(a)
            torch.save({"feats": t, "n": 3} if key else t, p)
        elif fmt == "csv":
            header = ",".join(f"f{k}" for k in range(a.shape[1]))
            np.savetxt(p, a, delimiter=",", header=header, comments="", fmt="%.9g")
    return folder, template


LAYOUTS = [
    ("hdf5", "hdf5", None, ""),            # root datasets named by id
    ("hdf5", "hdf5", None, "v_"),          # root datasets v_<id>
    ("hdf5", "hdf5", "c3d_features", "v_"),  # template v_{video}/c3d_features
    ("hdf5", "hdf5", "c3d_features", ""),  # template {video}/c3d_features
    ("folder", "npy", None, ""),
    ("folder", "npy", None, "v_"),
    ("folder", "npz", "feats", ""),
    ("folder", "pt", None, ""),
    ("folder", "pth", "feats", "v_"),
    ("folder", "csv", None, "v_"),
]


@pytest.mark.parametrize("layout,fmt,key,prefix", LAYOUTS)
@pytest.mark.parametrize("axis", [
    TimeAxis.clips(fps=15, clip_frames=16, stride_frames=16),
    TimeAxis.clips(fps="native", clip_frames=16, stride_frames=8),
])
def test_every_layout_places_rows_at_their_centre_times(tmp_path, infos, layout, fmt, key, prefix, axis):
    dim = 3
    rows = {v: _timed_rows(axis, info, _n_rows(axis, info), dim) for v, info in infos.items()}
    path, template = _write(tmp_path, layout, fmt, rows, key=key if layout == "hdf5" else None, prefix=prefix)
    if layout == "hdf5" and key:
        template = f"{prefix}{{video}}/{key}"
    card = {"name": "mine", "layout": layout, "template": template, "dim": dim, "time_axis": axis.to_dict()}
    if layout == "folder" and key:
        card["key"] = key
    store = open_feature_store(path, card=card, manifest=_tl(infos))
    for v, info in infos.items():
        # ids are found with and without the v_ prefix
        for vid in (v, "v_" + v):
            got = store.get(vid)
            assert got.shape == (info.n_steps, dim) and got.dtype == np.float32
        want = _oracle(axis, info, rows[v].shape[0])
        np.testing.assert_allclose(store.get(v)[:, 0], want, rtol=2e-6, atol=2e-6)
        assert v in store and ("v_" + v) in store
    assert store.dim == dim and "nope" not in store


def _tl(infos):
    """A timelines-shaped table of the chosen videos (what open_feature_store reads from a manifest)."""
    import pandas as pd

    return pd.DataFrame([{"video": v, "duration_s": i.duration_s, "n_frames": i.n_frames, "n_steps": i.n_steps}
                         for v, i in infos.items()])


class NotATensor:
    """An arbitrary pickled object: refused by torch.load(weights_only=True)."""


def test_pt_dict_without_key_and_pickles_are_refused(tmp_path, infos):
    import torch

    folder = tmp_path / "pt"
    folder.mkdir()
    torch.save({"feats": torch.zeros(5, 3)}, folder / "a.pt")
    card = {"name": "x", "layout": "folder", "template": "{video}.pt", "time_axis": {"kind": "clips"}}
    with pytest.raises(FeatureError, match=r"a\.pt: a: unreadable \.pt file \(holds a dict with keys \['feats'\]; "
                                           r"name the tensor to read"):
        open_feature_store(folder, card=card).get("a")

    torch.save({"feats": NotATensor()}, folder / "b.pt")
    with pytest.raises(FeatureError, match=r"b\.pt: b: unreadable \.pt file: not loadable with weights_only=True"):
        open_feature_store(folder, card={**card, "key": "feats"}).get("b")


def test_npz_with_several_arrays_needs_the_key(tmp_path):
    folder = tmp_path / "z"
    folder.mkdir()
    np.savez(folder / "a.npz", feats=np.zeros((4, 2)), other=np.zeros(3))
    card = {"name": "x", "layout": "folder", "template": "{video}.npz", "time_axis": {"kind": "clips"}}
    with pytest.raises(FeatureError, match=r"holds arrays \['feats', 'other'\]; name the one to read"):
        open_feature_store(folder, card=card).get("a")
    with pytest.raises(FeatureError, match=r"has no array 'x'; it holds \['feats', 'other'\]"):
        open_feature_store(folder, card={**card, "key": "x"}).get("a")
    assert open_feature_store(folder, card={**card, "key": "feats"}).get("a").shape == (4, 2)


def test_csv_with_text_is_refused(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "a.csv").write_text("f0,f1\n1,2\n3,oops\n")
    card = {"name": "x", "layout": "folder", "template": "{video}.csv", "time_axis": {"kind": "clips"}}
    with pytest.raises(FeatureError, match=r"a\.csv: a: unreadable \.csv file \(column 'f1' holds text"):
        open_feature_store(folder, card=card).get("a")


# --------------------------------------------------------------------------- the grid, by hand
def test_native_stride_16_rows_on_step_centres_are_returned_bit_for_bit():
    info = VideoInfo(10.0, 300, 18)
    rows = np.random.default_rng(0).standard_normal((18, 4)).astype(np.float32)
    out = TimeAxis.clips().to_grid(rows, info)
    assert np.array_equal(out, rows)


def test_interpolation_between_rows_by_hand():
    # 2 rows at 15 fps: centres (0 + 8) / 15 and (16 + 8) / 15 s; a 10 s video of 160 frames:
    # step j centre (16 j + 8) / 16 s = 0.5, 1.5, ...
    axis = TimeAxis.clips(fps=15)
    info = VideoInfo(10.0, 160, 10)
    rows = np.array([[0.0], [1.0]], np.float32)
    out = axis.to_grid(rows, info)[:, 0]
    # step 0 at 0.5 s is before the first row (0.5333 s): row 0; step 1 at 1.5 s: (1.5 - 8/15) / (16/15)
    assert out[0] == 0.0
    assert out[1] == pytest.approx((1.5 - 8 / 15) / (16 / 15), abs=1e-7)
    assert np.all(out[2:] == 1.0)  # after the last row (1.6 s): the last row


def test_c3d_release_preset_takes_every_second_row_by_hand(tmp_path, infos):
    card = preset("c3d-release")
    info = infos["---9CpRcKoU"]
    # 420 frames: clips ending inside the video floor((420 - 16) / 8) + 1 = 51, starting inside ceil(420 / 8) = 53
    assert card.time_axis.expected_rows(info) == (50, 54)
    rows = np.arange(52, dtype=np.float32)[:, None] * np.ones((1, 500), np.float32)
    path = tmp_path / "c3d.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("v_---9CpRcKoU").create_dataset("c3d_features", data=rows)
    store = open_feature_store(path, preset="c3d-release", manifest=_tl(infos))
    got = store.get("---9CpRcKoU")[:, 0]
    # step j centre frame 16 j + 8 = row 2 j's centre 8 (2 j) + 8: rows 0, 2, 4, ..., 50 (26 steps)
    assert got.tolist() == [2.0 * j for j in range(26)]


@pytest.mark.parametrize("name,fmt,expected_rows,steps,positions", [
    # 14.07 s at 15 fps = 211.05 frames: floor((211.05 - 16) / 16) + 1 = 13 .. ceil(211.05 / 16) = 14, +-1.
    # step j centre s = (16 j + 8) * 14.07 / 420; row i centre (16 i + 8) / 15: i = (15 s - 8) / 16
    ("tsp", "hdf5", (12, 15), [0, 1, 2], [0.0, (0.804 * 15 - 8) / 16, (1.34 * 15 - 8) / 16]),
    ("opentad-tsp", "npy", (12, 15), [1, 2], [0.25375, 0.75625]),
    # 25 fps: 351.75 frames: floor(335.75 / 16) + 1 = 21 .. ceil(351.75 / 16) = 22, +-1; i = (25 s - 8) / 16
    ("i3d-actionformer", "npy", (20, 23), [1, 2], [0.75625, 1.59375]),
    # 100 rows over 26 * 16 = 416 frames: row i centre (i + 0.5) * 416 / 100 frames, step centre 16 j + 8:
    # i = (16 j + 8) * 100 / 416 - 0.5
    ("tsn-csv100", "csv", (100, 100), [0, 25], [8 * 100 / 416 - 0.5, 408 * 100 / 416 - 0.5]),
])
def test_presets_by_hand(tmp_path, infos, name, fmt, expected_rows, steps, positions):
    card = preset(name)
    info = infos["---9CpRcKoU"]
    assert card.time_axis.expected_rows(info) == expected_rows
    n = expected_rows[1] - 1 if expected_rows[0] != expected_rows[1] else expected_rows[0]
    dim = PRESETS[name]["dim"]
    rows = np.repeat(np.arange(n, dtype=np.float32)[:, None], dim, axis=1)  # row i holds i
    v = "---9CpRcKoU"
    if card.layout == "hdf5":
        path = tmp_path / "f.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset(card.template.format(video=v), data=rows)
    else:
        path, _ = _write(tmp_path, "folder", fmt, {v: rows}, prefix="v_" if card.template.startswith("v_") else "")
    store = open_feature_store(path, preset=name, manifest=_tl(infos))
    got = store.get(v)
    assert got.shape == (26, dim)
    np.testing.assert_allclose(got[steps, 0], np.clip(positions, 0, n - 1), rtol=1e-6, atol=1e-6)
    desc = store.describe()
    assert desc["name"] == name and desc["card"]["preset"] == name and len(desc["card_sha256"]) == 64
    assert len(desc["data_sha256"]) == 64 and desc["card"]["time_axis"] == card.time_axis.to_dict()


def test_every_preset_loads_and_says_where_it_comes_from():
    for name, d in PRESETS.items():
        card = preset(name)
        assert card.name == name and card.dim == d["dim"] and card.source and card.citation
    with pytest.raises(ConfigError, match=r"unknown feature preset 'internvideo2'; expected one of \['c3d-release'"):
        preset("internvideo2")


# --------------------------------------------------------------------------- coverage
def _folder(tmp_path, rows_by_video, name="feats"):
    d = tmp_path / name
    d.mkdir()
    for v, a in rows_by_video.items():
        np.save(d / f"v_{v}.npy", a)
    return d


def test_eight_frame_stride_declared_as_sixteen_fails_naming_file_video_and_rows(tmp_path, infos):
    v = "---9CpRcKoU"
    d = _folder(tmp_path, {v: np.zeros((420 // 8, 500), np.float32)})
    (d / "features.card.yaml").write_text(
        "name: mine\nlayout: folder\ntemplate: v_{video}.npy\ntime_axis: {kind: clips, fps: native, "
        "clip_frames: 16, stride_frames: 16}\n")
    store = open_feature_store(d, manifest=_tl(infos))
    # 420 frames at stride 16: floor(404 / 16) + 1 = 26 .. ceil(420 / 16) = 27, +-1 row
    with pytest.raises(FeatureError, match=rf"v_{v}\.npy: {v}: 52 feature rows found, 25 to 28 expected for its "
                                           r"14\.07 s \(420 frames\) on the declared time axis \(clips of 16 frames "
                                           r"every 16 frames at the video's own fps\); the rows cover more"):
        store.get(v)
    store.skip_missing = True
    with pytest.raises(FeatureError, match="52 feature rows found"):  # never skipped silently
        store.get_many([v])


def test_too_few_rows_name_the_file_and_the_video(tmp_path, infos):
    v = "-0i3BpAQAgE"
    d = _folder(tmp_path, {v: np.zeros((0, 4), np.float32)})
    store = open_feature_store(d, card={"name": "m", "layout": "folder", "template": "v_{video}.npy",
                                        "time_axis": {"kind": "clips"}}, manifest=_tl(infos))
    # 1909 frames: floor(1893 / 16) + 1 = 119 .. ceil(1909 / 16) = 120, +-1
    with pytest.raises(FeatureError, match=rf"v_{v}\.npy: {v}: 0 feature rows found, 118 to 121 expected .*"
                                           r"cover less than the video"):
        store.get(v)
    np.save(d / f"v_{v}.npy", np.zeros((117, 4), np.float32))
    with pytest.raises(FeatureError, match=r"117 feature rows found, 118 to 121 expected"):
        open_feature_store(d, card=store.card, manifest=_tl(infos)).get(v)
    np.save(d / f"v_{v}.npy", np.zeros((118, 4), np.float32))
    assert open_feature_store(d, card=store.card, manifest=_tl(infos)).get(v).shape == (119, 4)


def test_resized_needs_exactly_its_rows(tmp_path, infos):
    v = "---9CpRcKoU"
    d = tmp_path / "csv"
    d.mkdir()
    np.savetxt(d / f"v_{v}.csv", np.zeros((99, 400)), delimiter=",", header=",".join(["x"] * 400), comments="")
    with pytest.raises(FeatureError, match=r"99 feature rows found, 100 expected"):
        open_feature_store(d, preset="tsn-csv100", manifest=_tl(infos)).get(v)


def test_skip_missing_counts_missing_videos(tmp_path, infos):
    v = "---9CpRcKoU"
    d = _folder(tmp_path, {v: np.zeros((26, 4), np.float32)})
    store = open_feature_store(d, card={"name": "m", "layout": "folder", "template": "v_{video}.npy",
                                        "time_axis": {"kind": "clips"}}, manifest=_tl(infos), skip_missing=True)
    got = store.get_many([v, "-0i3BpAQAgE", "missing-one"])
    assert list(got) == [v] and store.report.to_dict()["video missing from the feature store"]["count"] == 2


def test_a_fixed_fps_axis_without_the_manifest_says_what_to_pass(tmp_path):
    d = _folder(tmp_path, {"abc": np.zeros((5, 4), np.float32)})
    with pytest.raises(FeatureError, match=r"v_abc\.npy: abc: the time axis \(clips of 16 frames every 16 frames at "
                                           r"15 fps\) needs the video's duration"):
        open_feature_store(d, preset="opentad-tsp", dim=4).get("abc")


# --------------------------------------------------------------------------- cards
def test_card_files_yaml_and_json_and_their_errors(tmp_path):
    good = {"name": "m", "layout": "folder", "template": "{video}.npy", "dim": 8,
            "time_axis": {"kind": "clips", "fps": 30, "clip_frames": 16, "stride_frames": 4, "offset_frames": 2},
            "source": "s", "citation": "c"}
    (tmp_path / "c.json").write_text(json.dumps(good))
    card = load_card(tmp_path / "c.json")
    assert card == FeatureCard.from_dict(good) and card.time_axis.stride_frames == 4
    (tmp_path / "c.yaml").write_text("name: m\nlayout: folder\ntime_axis: {kind: resized, rows: 100}\n")
    assert load_card(tmp_path / "c.yaml").time_axis == TimeAxis.resized(100)
    cases = [
        ({**good, "stride": 8}, r"unknown feature card key\(s\) \['stride'\]"),
        ({**good, "layout": "zip"}, r"The card's 'layout' must be one of \['folder', 'hdf5'\]. Got 'zip' instead"),
        ({**good, "template": "feats.npy"}, r"The card's 'template' must be a string with '\{video\}'"),
        ({**good, "template": "{video}.mp4"}, r"The card's 'template' must end in one of \.npy, \.npz"),
        ({**good, "time_axis": {"kind": "clips", "stride_frames": 0}},
         r"The time axis 'stride_frames' must be a number > 0. Got 0 instead"),
        ({**good, "time_axis": {"kind": "clips", "fps": "auto"}}, r"The time axis 'fps' must be a number > 0"),
        ({**good, "time_axis": {"kind": "resized"}}, r"a 'resized' time axis needs 'rows'"),
        ({**good, "time_axis": {"kind": "frames"}}, r"The time axis 'kind' must be 'clips' or 'resized'"),
        ({k: v for k, v in good.items() if k != "time_axis"}, r"the feature card lacks 'time_axis'"),
        ({**good, "dim": -1}, r"The card's 'dim' must be a positive int"),
    ]
    for bad, msg in cases:
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=r"bad\.json: " + msg):
            load_card(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("name: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line"):
        load_card(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="give --feature-preset or --feature-card, not both"):
        open_feature_store(tmp_path, preset="tsp", card=good)


def test_card_layout_must_match_the_path(tmp_path):
    d = _folder(tmp_path, {"a": np.zeros((3, 2), np.float32)})
    with pytest.raises(FeatureError, match=r"feats: the feature card 'tsp' describes one HDF5 file; this is a folder"):
        open_feature_store(d, preset="tsp")
    with pytest.raises(FeatureError, match=r"nothing\.h5: feature file not found"):
        open_feature_store(tmp_path / "nothing.h5", preset="tsp")


def test_describe_records_card_and_hashes(tmp_path, infos):
    d = _folder(tmp_path, {"abc": np.ones((3, 2), np.float32)})
    card = {"name": "m", "layout": "folder", "template": "v_{video}.npy", "time_axis": {"kind": "clips"}}
    a = open_feature_store(d, card=card).describe()
    assert a["name"] == "m" and a["card"]["time_axis"]["stride_frames"] == 16
    np.save(d / "v_abd.npy", np.ones((4, 2), np.float32))
    b = open_feature_store(d, card=card).describe()
    assert a["card_sha256"] == b["card_sha256"] and a["data_sha256"] != b["data_sha256"]
    c = open_feature_store(d, card={**card, "name": "n"}).describe()
    assert c["card_sha256"] != b["card_sha256"]


def test_time_axis_rows_expected_property():
    """Rows from 0 to the expected range's ends are accepted exactly within it (several rates and lengths)."""
    for fps in ("native", 15, 25, 30):
        for stride in (4, 8, 16, 32):
            for n_frames, dur in ((420, 14.07), (1909, 64.831), (97, 3.3)):
                axis = TimeAxis.clips(fps=fps, stride_frames=stride)
                lo, hi = axis.expected_rows(VideoInfo(dur, n_frames, max(1, n_frames // 16)))
                n = n_frames if fps == "native" else dur * fps
                assert 1 <= lo <= hi
                assert lo <= math.ceil(n / stride) <= hi


@settings(max_examples=60, deadline=None)
@given(fps=st.one_of(st.just("native"), st.floats(5, 60)), stride=st.sampled_from([4, 8, 16, 32]),
       clip=st.sampled_from([8, 16, 32, 64]), offset=st.integers(0, 8), n_frames=st.integers(16, 5000),
       native_fps=st.floats(10, 60), extra=st.integers(-1, 1))
def test_grid_values_are_the_step_centre_times_property(fps, stride, clip, offset, n_frames, native_fps, extra):
    """Rows holding their own centre time come back as each step's centre time, clamped to the rows."""
    info = VideoInfo(n_frames / native_fps, n_frames, n_frames // 16)
    axis = TimeAxis.clips(fps=fps, clip_frames=clip, stride_frames=stride, offset_frames=offset)
    lo, hi = axis.expected_rows(info)
    n = max(1, (hi if extra > 0 else lo if extra < 0 else (lo + hi) // 2))
    rows = _timed_rows(axis, info, n, 2)
    got = axis.to_grid(rows, info)
    assert got.shape == (info.n_steps, 2)
    np.testing.assert_allclose(got[:, 0], _oracle(axis, info, n), rtol=1e-5, atol=1e-4)


def test_truncated_or_damaged_hdf5_is_a_feature_error_naming_the_file(tmp_path):
    """A cut-short HDF5 file, declared or not, and a damaged dataset: one FeatureError each, never h5py's OSError."""
    from click.testing import CliRunner

    from relocbench.cli import cli

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v_a", data=np.ones((4, 512), np.float32), compression="gzip", chunks=(4, 512))
        f.create_dataset("v_b", data=np.ones((4, 512), np.float32))
        chunk = f["v_a"].id.get_chunk_info(0)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureError, match=r"cut\.h5: not a readable HDF5 file \(.*truncated file"):
        open_feature_store(str(cut))   # undeclared: its layout is read on opening
    with pytest.raises(FeatureError, match=r"cut\.h5: not a readable HDF5 file \(.*truncated file"):
        open_feature_store(str(cut), preset="tsp").get("a")   # declared: opened on the first read
    res = CliRunner().invoke(cli, ["features", "inspect", str(cut)])
    assert res.exit_code == 2 and "cut.h5: not a readable HDF5 file" in res.output, res.output
    damaged = bytearray(data)
    damaged[chunk.byte_offset:chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(damaged))
    card = {"name": "mine", "layout": "hdf5", "template": "v_{video}", "time_axis": {"kind": "clips"}}
    store = open_feature_store(str(path), card=card)
    assert store.get("b").shape == (4, 512)
    with pytest.raises(FeatureError, match=r"f\.h5: a: unreadable HDF5 dataset '/v_a'"):
        store.get("a")


# --------------------------------------------------------------------------- card 'preset', shapes, fallback axis
def test_card_preset_key_must_name_a_shipped_preset_with_its_time_axis(tmp_path):
    tsp_axis = PRESETS["tsp"]["time_axis"]
    own = {"name": "m", "layout": "folder", "template": "{video}.npy", "time_axis": tsp_axis}
    assert load_card({**own, "preset": "tsp"}).preset == "tsp"
    assert load_card({**own, "preset": "tsp"}).to_dict()["preset"] == "tsp"
    cases = [
        ({**own, "preset": "tsp-v2"}, r"The card's 'preset' must name a shipped preset \(one of \['c3d-release', "
                                      r"'i3d-actionformer', 'opentad-tsp', 'tsn-csv100', 'tsp'\]\)\. Got 'tsp-v2' "
                                      r"instead"),
        ({**own, "preset": 3}, r"The card's 'preset' must name a shipped preset .*Got 3 instead"),
        ({**own, "preset": "c3d-release"}, r"The card's 'preset' is 'c3d-release', whose time axis is .*; the card "
                                           r"declares "),
    ]
    for bad, msg in cases:
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=r"bad\.json: " + msg) as exc:
            load_card(tmp_path / "bad.json")
        assert "\n" not in str(exc.value)


def _store_of(tmp_path, fmt, arrays, *, key=None):
    folder = tmp_path / fmt
    folder.mkdir(exist_ok=True)
    for v, a in arrays.items():
        p = folder / f"{v}.{fmt}"
        if fmt == "npy":
            np.save(p, a)
        elif fmt == "npz":
            np.savez_compressed(p, feats=a, other=np.zeros(3))
        elif fmt == "csv":
            header = ",".join(f"f{k}" for k in range(a.shape[1]))
            np.savetxt(p, a, delimiter=",", header=header, comments="", fmt="%.9g")
    card = {"name": "x", "layout": "folder", "template": f"{{video}}.{fmt}", "time_axis": {"kind": "clips"}}
    if key:
        card["key"] = key
    return open_feature_store(folder, card=card)


@pytest.mark.parametrize("fmt,key", [("npz", "feats"), ("csv", None), ("npy", None)])
def test_shape_of_reads_only_the_header_and_agrees_with_a_full_read(tmp_path, monkeypatch, fmt, key):
    from relocbench.features import folder as folder_mod

    arrays = {"a": np.arange(21, dtype=np.float32).reshape(7, 3), "b": np.ones((1, 3), np.float64)}
    store = _store_of(tmp_path, fmt, arrays, key=key)
    full = {v: store.rows(v) for v in arrays}

    def no_full_read(p, key):
        raise AssertionError("read in full")

    monkeypatch.setitem(folder_mod._READERS, fmt, no_full_read)
    for v in arrays:
        rows, dim, dtype = store.shape_of(v)
        assert (rows, dim) == full[v].shape and dtype == str(full[v].dtype)
    assert store.dim == 3 and store.shape_of("missing") is None


def test_shape_of_csv_counts_lines_not_blanks(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "a.csv").write_text("f0,f1,f2\n1,2,3\n\n4,5,6\n7,8,9\n\n")
    store = open_feature_store(folder, card={"name": "x", "layout": "folder", "template": "{video}.csv",
                                             "time_axis": {"kind": "clips"}})
    assert store.shape_of("a") == (3, 3, "float32") and store.rows("a").shape == (3, 3)
    (folder / "b.csv").write_text("")
    with pytest.raises(FeatureError, match=r"b\.csv: b: unreadable \.csv file \(empty file; expected a header row"):
        store.shape_of("b")


def test_shape_of_npz_and_npy_errors_name_the_file(tmp_path):
    store = _store_of(tmp_path, "npz", {"a": np.zeros((4, 2), np.float32)})   # two arrays, no key
    with pytest.raises(FeatureError, match=r"a\.npz: a: unreadable \.npz file \(holds arrays \['feats', 'other'\]; "
                                           r"name the one to read"):
        store.shape_of("a")
    (tmp_path / "npz" / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(FeatureError, match=r"c\.npz: c: unreadable \.npz file \(not a \.npz archive"):
        store.shape_of("c")
    npy = _store_of(tmp_path, "npy", {"a": np.zeros((40, 2), np.float32)})
    p = tmp_path / "npy" / "a.npy"
    p.write_bytes(p.read_bytes()[:-8])
    with pytest.raises(FeatureError, match=r"a\.npy: a: unreadable \.npy file \(truncated: the header declares "
                                           r"shape \(40, 2\) of float32"):
        npy.shape_of("a")


def test_a_0d_array_is_reported_as_malformed_not_an_index_error(tmp_path):
    from relocbench.features import inspect_features
    from relocbench.features.base import FeatureStore

    d = tmp_path / "f"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((3, 2), np.float32))
    np.save(d / "b.npy", np.float32(1.5))                          # 0-d
    (d / "features.card.yaml").write_text("name: m\nlayout: folder\ntime_axis: {kind: clips}\n")
    info = inspect_features(d)
    by_video = {e["video"]: e for e in info["videos"]}
    assert by_video["b"] == {"video": "b", "rows": 0, "expected": None, "ok": False,
                             "problem": "not a 2-D array [rows, dim]"}
    assert by_video["a"]["ok"] is None and "problem" not in by_video["a"]
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("a", data=np.zeros((3, 2), np.float32))
        f.create_dataset("b", data=np.float32(2.0))
    assert open_feature_store(tmp_path / "s.h5").shape_of("b") == (0, -1, "float32")

    class Scalar(FeatureStore):   # the base class's shape_of (a store without its own)
        def _load(self, video):
            return np.float64(3.0)

    assert Scalar().shape_of("x") == (0, -1, "float64")


def test_undeclared_stores_share_the_fallback_axis(tmp_path):
    from relocbench.features import FolderStore, HDF5Store
    from relocbench.features.base import FeatureStore

    axis, legacy, stride = FeatureStore._fallback_axis(None, 8)
    assert axis == TimeAxis.clips(stride_frames=8) and legacy == 8 and stride == 8
    declared = TimeAxis.clips(fps=15, stride_frames=4)
    assert FeatureStore._fallback_axis(declared, 16) == (declared, None, 4)
    with pytest.raises(ConfigError, match=r"The 'stride_frames' parameter must be a positive number of frames"):
        FeatureStore._fallback_axis(None, 0)
    for store in (FolderStore(tmp_path, stride_frames=8), HDF5Store(tmp_path / "x.h5", stride_frames=8)):
        assert (store.axis, store.legacy_stride, store.stride_frames) == (axis, 8, 8)
    for store in (FolderStore(tmp_path, axis=declared), HDF5Store(tmp_path / "x.h5", axis=declared)):
        assert (store.axis, store.legacy_stride, store.stride_frames) == (declared, None, 4)
