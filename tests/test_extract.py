"""relocbench.extract: decoding, the handcrafted backbone, the HDF5 output, resume, PCA, errors."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from relocbench.errors import ConfigError, FeatureError, InputError, OutputExistsError
from relocbench.extract import ExtractConfig, extract_video, extract_videos, make_backbone
from relocbench.extract.decode import VideoReader, frame_range
from relocbench.extract.synth import reencode, write_moving_shapes
from relocbench.extract.writer import FeaturesFile, Journal
from relocbench.features import ExtractedHDF5Store, open_feature_store

SIZE = (64, 48)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Small videos: several codecs, sizes and frame rates, a truncated one and a zero-frame one."""
    d = tmp_path_factory.mktemp("clips")
    v = {
        "a": write_moving_shapes(d / "a.mp4", seconds=2.0, fps=25, size=SIZE, seed=1),          # 50 frames
        "b": write_moving_shapes(d / "b.avi", n_frames=37, fps=30, size=(80, 60), seed=2),     # MJPG
        "c": write_moving_shapes(d / "c.mkv", n_frames=16, fps=24, size=SIZE, seed=3),        # XVID
        "d": write_moving_shapes(d / "d.avi", n_frames=1, fps=25, size=SIZE, seed=4),
    }
    full = write_moving_shapes(d / "full.avi", seconds=3.0, fps=25, size=SIZE, seed=5)
    data = full.read_bytes()
    (d / "broken").mkdir()
    trunc = d / "broken" / "trunc.avi"
    trunc.write_bytes(data[: len(data) // 2])
    zero = write_moving_shapes(d / "broken" / "zero.avi", n_frames=0, fps=25, size=SIZE)
    text = d / "broken" / "text.mp4"
    text.write_text("not a video")
    return {**v, "trunc": trunc, "zero": zero, "text": text, "dir": d}


def _cfg(**kw):
    return ExtractConfig(backbone="handcrafted", **kw)


# --------------------------------------------------------------------------- decoding
def test_decoder_counts_every_frame_and_starts_exactly(clips):
    with VideoReader(clips["a"]) as r:
        frames = list(r.frames())
        assert r.fps == 25.0 and len(frames) == 50 and r.n_decoded == 50
        assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    with VideoReader(clips["a"]) as r:
        part = list(r.frames(start_frame=20, end_frame=30))
    assert len(part) == 10
    np.testing.assert_array_equal(part[0], frames[20])   # frame-accurate: the 21st decoded frame
    np.testing.assert_array_equal(part[-1], frames[29])


def test_frame_range_oracle():
    assert frame_range(25.0, None, None) == (0, None)
    assert frame_range(25.0, 1.0, 2.0) == (25, 50)        # frames with 1.0 <= i/25 < 2.0
    assert frame_range(25.0, 0.99, 1.01) == (25, 26)
    assert frame_range(30.0, 0.5, None) == (15, None)


@pytest.mark.parametrize("name,match", [
    ("trunc", r"trunc\.avi: truncated video: the container declares 75 frames, only \d+ could be decoded"),
    ("zero", r"zero\.avi: (zero-frame video|unreadable video)"),
    ("text", r"text\.mp4: unreadable video: FFmpeg"),
])
def test_bad_videos_raise_input_error_naming_the_file(clips, name, match):
    with pytest.raises(InputError, match=match):
        extract_video(clips[name], _cfg())


def test_a_damaged_stream_is_one_line_without_ffmpeg_noise(clips):
    import subprocess
    import sys

    code = ("import sys; from relocbench.extract import ExtractConfig, extract_video\n"
            "try:\n    extract_video(sys.argv[1], ExtractConfig(backbone='handcrafted'))\n"
            "except Exception as e:\n    print(e)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    proc = subprocess.run([sys.executable, "-c", code, str(clips["trunc"])], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "truncated video: the container declares 75 frames" in proc.stdout
    assert "@ 0x" not in proc.stderr, proc.stderr  # FFmpeg's "[codec @ 0x...]" lines


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="nope.mp4: video file not found"):
        extract_video(tmp_path / "nope.mp4", _cfg())
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: unreadable video: the file is empty"):
        extract_video(tmp_path / "empty.mp4", _cfg())


# --------------------------------------------------------------------------- one video
@pytest.mark.parametrize("name,n_frames", [("a", 50), ("b", 37), ("c", 16), ("d", 1)])
@pytest.mark.parametrize("step", [16, 5])
def test_row_count_is_ceil_frames_over_step(clips, name, n_frames, step):
    vf = extract_video(clips[name], _cfg(step_frames=step))
    assert vf.n_frames == n_frames
    assert vf.features.shape == (math.ceil(n_frames / step), 521)
    assert vf.features.dtype == np.float32 and np.isfinite(vf.features).all()
    np.testing.assert_allclose(np.linalg.norm(vf.features, axis=1), 1.0, rtol=1e-5)
    assert vf.sha256 == hashlib.sha256(Path(clips[name]).read_bytes()).hexdigest()
    assert vf.attrs["backbone"] == "handcrafted" and vf.attrs["step_frames"] == step
    assert vf.attrs["dim"] == 521 and vf.attrs["pca"] == "none" and vf.attrs["weights"] == "none"
    assert vf.source == str(clips[name])


def test_deterministic_and_cut_by_time(clips):
    a = extract_video(clips["a"], _cfg())
    b = extract_video(clips["a"], _cfg())
    np.testing.assert_array_equal(a.features, b.features)
    cut = extract_video(clips["a"], _cfg(), start_s=0.64, end_s=1.6)    # frames 16 .. 39
    assert cut.start_frame == 16 and cut.n_frames == 24 and cut.features.shape == (2, 521)
    # its first step covers frames 16..31, as step 1 of the whole video; the flow of frame 16
    # is missing in the cut (no frame 15), so only colour and appearance are identical
    np.testing.assert_allclose(cut.features[0, :432] / np.linalg.norm(cut.features[0, :432]),
                               a.features[1, :432] / np.linalg.norm(a.features[1, :432]), atol=1e-6)
    with pytest.raises(ConfigError, match="end_s must be after start_s"):
        extract_video(clips["a"], _cfg(), start_s=1.0, end_s=0.5)
    with pytest.raises(InputError, match="lies past the end"):
        extract_video(clips["a"], _cfg(), start_s=10.0)


def test_farneback_flow_option(clips):
    dis = extract_video(clips["a"], _cfg())
    fb = extract_video(clips["a"], _cfg(options={"flow": "farneback"}))
    assert fb.attrs["flow"] == "farneback" and fb.features.shape == dis.features.shape
    np.testing.assert_array_equal(fb.features[:, :432], dis.features[:, :432])  # colour + appearance
    assert not np.array_equal(fb.features, dis.features)
    with pytest.raises(ConfigError, match="'flow' option .* 'dis' or 'farneback'"):
        make_backbone(_cfg(options={"flow": "lk"}))


def test_config_validation():
    with pytest.raises(ConfigError, match=r"'step_frames' parameter must be an int in \[1, 2147483647\]. Got 0"):
        ExtractConfig(step_frames=0)
    with pytest.raises(ConfigError, match="'device' parameter"):
        ExtractConfig(device="tpu")
    with pytest.raises(ConfigError, match="unknown backbone 'c3d'; expected one of"):
        make_backbone(ExtractConfig(backbone="c3d"))
    with pytest.raises(ConfigError, match="handcrafted backbone takes no weights"):
        make_backbone(ExtractConfig(weights="w.pth"))


def _aligned_similarity(copy, orig) -> np.ndarray:
    """Cosine similarity of each step of ``copy`` with the step of ``orig`` at the same time."""
    t = (np.arange(copy.n_steps) * 16 + 7.5) / copy.fps
    j = np.minimum((t * orig.fps / 16).astype(int), orig.n_steps - 1)
    return (copy.features * orig.features[j]).sum(1)


def test_handcrafted_matches_a_reencoded_copy_far_above_unrelated_footage(tmp_path):
    orig_path = write_moving_shapes(tmp_path / "orig.mp4", seconds=6.4, fps=25, size=(160, 120), seed=11)
    copies = [
        reencode(orig_path, tmp_path / "small.avi", size=(96, 72), fps=15, brightness=35, fourcc="MJPG", quality=25),
        reencode(orig_path, tmp_path / "large.mkv", size=(320, 240), fps=30, brightness=-30, contrast=0.85,
                 fourcc="XVID"),
    ]
    unrelated = [write_moving_shapes(tmp_path / f"other{s}.mp4", seconds=6.4, fps=25, size=(160, 120), seed=s)
                 for s in (12, 13, 14, 15)]
    orig = extract_video(orig_path, _cfg())
    others = np.concatenate([extract_video(p, _cfg()).features for p in unrelated])
    unrelated_sim = orig.features @ others.T
    for p in copies:
        copy = extract_video(p, _cfg())
        same = _aligned_similarity(copy, orig)
        # every step of the copy is closer to its own moment than to anything unrelated
        assert same.min() > unrelated_sim.max() + 0.05, (p.name, same.min(), unrelated_sim.max())
        assert same.mean() > 0.9 and unrelated_sim.mean() < 0.8
        # and retrieval over the original plus unrelated footage finds the right moment (+-1 step)
        bank = np.concatenate([orig.features, others])
        best = np.argmax(copy.features @ bank.T, axis=1)
        t = (np.arange(copy.n_steps) * 16 + 7.5) / copy.fps
        want = np.minimum((t * orig.fps / 16).astype(int), orig.n_steps - 1)
        assert np.all(np.abs(best - want) <= 1), (p.name, best, want)


# --------------------------------------------------------------------------- many videos, the file
def test_extract_videos_writes_the_format_and_lists_failures(clips, tmp_path):
    out = tmp_path / "f.h5"
    paths = [clips["a"], clips["b"], clips["c"], clips["trunc"], clips["zero"]]
    s = extract_videos(paths, _cfg(), out=out)
    assert (s.videos, s.extracted, s.resumed, len(s.failed)) == (5, 3, 0, 2)
    assert {Path(src).name for src, _ in s.failed} == {"trunc.avi", "zero.avi"}
    assert s.report["failed to decode (unreadable, truncated or zero-frame)"]["count"] == 2
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["a", "b", "c"]
        assert f.attrs["relocbench_features"] == 1 and f.attrs["backbone"] == "handcrafted"
        assert f.attrs["weights"] == "none" and f.attrs["step_frames"] == 16 and f.attrs["dim"] == 521
        assert f.attrs["pca"] == "none" and f.attrs["layout"] == "relocbench"
        report = json.loads(f.attrs["report"])
        assert len(report["failed"]) == 2 and "truncated" in json.dumps(report)
        ds = f["b"]
        assert ds.dtype == np.float32 and ds.shape == (3, 521)
        assert ds.attrs["fps"] == 30.0 and ds.attrs["n_frames"] == 37 and ds.attrs["source"] == str(clips["b"])
        assert ds.attrs["sha256"] == hashlib.sha256(clips["b"].read_bytes()).hexdigest()
    store = open_feature_store(out)
    assert isinstance(store, ExtractedHDF5Store) and store.dim == 521 and store.stride_frames == 16
    np.testing.assert_array_equal(store.get("a"), extract_video(clips["a"], _cfg()).features)
    assert not Journal(out).exists()


def test_declared_step_is_resampled_to_16_frame_steps(clips, tmp_path):
    out = tmp_path / "s8.h5"
    extract_videos([clips["a"]], _cfg(step_frames=8), out=out)
    store = open_feature_store(out)
    assert store.stride_frames == 8
    rows = extract_video(clips["a"], _cfg(step_frames=8)).features
    assert rows.shape[0] == 7
    np.testing.assert_array_equal(store.get("a"), rows[::2])   # ceil(7 * 8 / 16) = 4 steps


def test_same_inputs_give_byte_identical_files_with_any_workers(clips, tmp_path):
    paths = [clips["a"], clips["b"], clips["c"]]
    extract_videos(paths, _cfg(), out=tmp_path / "w0.h5")
    extract_videos(paths, _cfg(), out=tmp_path / "w2.h5", workers=2)
    assert (tmp_path / "w0.h5").read_bytes() == (tmp_path / "w2.h5").read_bytes()


def test_strict_stops_and_keeps_what_finished(clips, tmp_path):
    out = tmp_path / "strict.h5"
    with pytest.raises(InputError, match=r"--strict; the 1 finished video\(s\) are in .*trunc\.avi: truncated"):
        extract_videos({"a": clips["a"], "b_trunc": clips["trunc"], "c": clips["c"]}, _cfg(), out=out, strict=True)
    assert sorted(open_feature_store(out)._file()) == ["a"]


def test_outputs_are_not_overwritten_and_resume_skips_finished(clips, tmp_path):
    out = tmp_path / "r.h5"
    extract_videos([clips["a"], clips["b"]], _cfg(), out=out)
    with pytest.raises(OutputExistsError, match="exists already; pass --resume"):
        extract_videos([clips["a"]], _cfg(), out=out)
    s = extract_videos([clips["a"], clips["b"], clips["c"]], _cfg(), out=out, resume=True)
    assert (s.resumed, s.extracted) == (2, 1)
    assert sorted(h5py.File(out, "r")) == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"other settings \(step_frames 16 -> 8\); pass --force"):
        extract_videos([clips["a"]], _cfg(step_frames=8), out=out, resume=True)
    s = extract_videos([clips["a"]], _cfg(step_frames=8), out=out, resume=True, force=True)
    assert s.extracted == 1 and h5py.File(out, "r").attrs["step_frames"] == 8


def test_resume_reextracts_a_changed_source(clips, tmp_path):
    src = tmp_path / "v.avi"
    src.write_bytes(clips["b"].read_bytes())
    out = tmp_path / "c.h5"
    extract_videos([src], _cfg(), out=out)
    src.write_bytes(clips["d"].read_bytes())   # another video under the same name
    s = extract_videos([src], _cfg(), out=out, resume=True)
    assert (s.resumed, s.extracted) == (0, 1)
    assert open_feature_store(out).get("v").shape == (1, 521)


def test_journal_of_an_interrupted_run(clips, tmp_path):
    """A journal left by a killed run: refused without --resume, continued with it."""
    out = tmp_path / "j.h5"
    bb = make_backbone(_cfg())
    from relocbench.extract.api import _raw_features, settings_for

    j = Journal(out)
    j.start(settings_for(bb, _cfg()))
    j.add(_raw_features(clips["a"], "a", bb, _cfg()))
    with pytest.raises(OutputExistsError, match=r"interrupted extraction left 1 finished video"):
        extract_videos([clips["a"], clips["c"]], _cfg(), out=out)
    s = extract_videos([clips["a"], clips["c"]], _cfg(), out=out, resume=True)
    assert (s.resumed, s.extracted) == (1, 1) and not j.exists()


def test_c3d_layout_reads_back_as_the_same_steps(clips, tmp_path):
    extract_videos([clips["a"]], _cfg(), out=tmp_path / "plain.h5")
    extract_videos([clips["a"]], _cfg(), out=tmp_path / "c3d.h5", layout="c3d")
    with h5py.File(tmp_path / "c3d.h5", "r") as f:
        assert f["v_a/c3d_features"].shape == (8, 521)    # rows 8 frames apart: each step twice
    np.testing.assert_array_equal(open_feature_store(tmp_path / "c3d.h5").get("a"),
                                  open_feature_store(tmp_path / "plain.h5").get("a"))
    with pytest.raises(ConfigError, match="--layout c3d needs --step-frames a multiple of 8"):
        extract_videos([clips["a"]], _cfg(step_frames=12), out=tmp_path / "x.h5", layout="c3d")


def test_duplicate_stems_are_refused(clips, tmp_path):
    other = tmp_path / "sub" / "a.mp4"
    other.parent.mkdir()
    other.write_bytes(clips["a"].read_bytes())
    with pytest.raises(InputError, match="two videos share the id 'a'"):
        extract_videos([clips["a"], other], _cfg(), out=tmp_path / "d.h5")


# --------------------------------------------------------------------------- PCA
def test_pca_fit_stored_applied_and_reused(clips, tmp_path):
    paths = [clips["a"], clips["b"], clips["c"]]
    out = tmp_path / "p.h5"
    extract_videos(paths, _cfg(), out=out, pca_components=3, pca_fit=["a", "b"])
    raw = {k: extract_video(clips[k], _cfg()).features for k in "abc"}
    x = np.concatenate([raw["a"], raw["b"]]).astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    store = open_feature_store(out)
    assert store.dim == 3 and store.attrs["pca"].startswith("pca-3 sha256:")
    got = store.get("c").astype(np.float64)
    want = (raw["c"] - mean) @ vt[:3].T
    np.testing.assert_allclose(np.abs(got), np.abs(want), atol=1e-4)   # up to the sign of each axis
    # reuse: --pca-from gives the same rows for any video
    again = tmp_path / "p2.h5"
    extract_videos([clips["c"]], _cfg(pca=str(out)), out=again)
    np.testing.assert_array_equal(open_feature_store(again).get("c"), store.get("c"))
    vf = extract_video(clips["c"], _cfg(pca=str(out)))
    np.testing.assert_array_equal(vf.features, store.get("c"))
    assert vf.attrs["pca"] == store.attrs["pca"] and vf.attrs["dim"] == 3
    plain = tmp_path / "plain.h5"
    extract_videos([clips["c"]], _cfg(), out=plain)
    with pytest.raises(ConfigError, match="plain.h5: holds no fitted PCA"):
        extract_video(clips["c"], _cfg(pca=str(plain)))
    with pytest.raises(ConfigError, match="--pca N needs --pca-fit"):
        extract_videos(paths, _cfg(), out=tmp_path / "q.h5", pca_components=3)


def test_features_file_reader_errors(tmp_path):
    (tmp_path / "x.h5").write_text("no")
    with pytest.raises(FeatureError, match="not an HDF5 file"):
        FeaturesFile(tmp_path / "x.h5").__enter__()
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("a", data=np.zeros((2, 3), np.float32))
    with pytest.raises(FeatureError, match="lacks the 'relocbench_features' attribute"):
        FeaturesFile(tmp_path / "other.h5").__enter__()


class _FakeCapture:
    """Stands in for cv2.VideoCapture: given frame timestamps (ms) and metadata."""

    def __init__(self, stamps, fps=25.0, declared=None, rotation=0):
        self.stamps, self.fps, self.rotation = list(stamps), fps, rotation
        self.declared = len(self.stamps) if declared is None else declared
        self.i = 0

    def __call__(self, *a, **k):
        return self

    def isOpened(self):
        return True

    def release(self):
        pass

    def get(self, prop):
        import cv2

        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_COUNT: self.declared,
                cv2.CAP_PROP_FRAME_WIDTH: 8, cv2.CAP_PROP_FRAME_HEIGHT: 6,
                cv2.CAP_PROP_ORIENTATION_META: self.rotation,
                cv2.CAP_PROP_POS_MSEC: self.stamps[self.i - 1] if self.i else 0.0}.get(prop, 0.0)

    def grab(self):
        ok = self.i < len(self.stamps)
        self.i += ok
        return ok

    def read(self):
        ok = self.grab()
        return ok, (np.full((6, 8, 3), self.i, np.uint8) if ok else None)


@pytest.mark.parametrize("stamps,rotation,declared,expect", [
    ([40.0 * i for i in range(50)], 0, None, []),
    # a phone recording: frame intervals from 20 to 60 ms at a nominal 25 fps
    ([sum(20.0 if k % 3 else 60.0 for k in range(i)) for i in range(50)], 0, None, ["variable frame rate"]),
    ([40.0 * i for i in range(50)], 90, None, ["rotation metadata: rotated by 90 degrees"]),
    ([40.0 * i for i in range(50)], 0, 52, ["frame count differs from the container's: decoded 50 frames, "
                                            "the container declares 52"]),
])
def test_decoder_reports_vfr_rotation_and_frame_count(monkeypatch, tmp_path, stamps, rotation, declared, expect):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture(stamps, rotation=rotation, declared=declared))
    f = tmp_path / "phone.mp4"
    f.write_bytes(b"stand-in")
    with VideoReader(f) as r:
        assert sum(1 for _ in r.frames()) == 50
        assert [w for w in r.warnings if not any(e in w for e in expect)] == []
        assert all(any(e in w for w in r.warnings) for e in expect)
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture([40.0 * i for i in range(50)], declared=52))
    s = extract_videos({"phone": f}, _cfg(), out=tmp_path / "o.h5") if declared else None
    if s is not None:
        assert s.report["frame count differs from the container's"] == {"count": 1, "examples": ["phone"]}
        with h5py.File(tmp_path / "o.h5", "r") as h:
            assert "declares 52" in h["phone"].attrs["warnings"]
