"""Frame readers: 24 fps resampling, 8-frame clips, JPEG folders (UCF101-24, AVA layouts) and
video files, on tiny inputs the tests write. Each frame encodes its own index in its colour."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relocbench import ConfigError
from relocbench.errors import FeatureError
from relocbench.video.frames import (FrameFolder, FrameSource, VideoFile, cut_clips, list_frame_files,
                                     read_image, resample_indices, video_clips)


def _img(i: int, h: int = 24, w: int = 32) -> np.ndarray:
    """Frame ``i``: a flat colour from which ``i`` can be read back after JPEG coding."""
    return np.full((h, w, 3), 4 * i, np.uint8)


def _index(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 4))


def _write_folder(folder: Path, n: int, name=lambda i: f"{i + 1:05d}.jpg") -> Path:
    import cv2

    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / name(i)), _img(i))
    return folder


def test_resample_indices_oracles():
    assert resample_indices(5, 30.0, 24.0).tolist() == [0, 1, 2, 3]  # 0, 1.25, 2.5, 3.75 -> floor
    assert resample_indices(6, 24.0).tolist() == [0, 1, 2, 3, 4, 5]
    assert resample_indices(4, 12.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert resample_indices(10, 25.0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # 10 frames at 25 fps: 0.4 s
    assert resample_indices(0, 25.0).tolist() == []
    with pytest.raises(ConfigError, match="frame rates must be > 0"):
        resample_indices(3, 0.0)


def test_cut_clips_drops_and_counts_the_tail():
    clips, dropped = cut_clips(np.arange(20))
    assert clips.tolist() == [list(range(8)), list(range(8, 16))] and dropped == 4
    clips, dropped = cut_clips(np.arange(5), 8)
    assert clips.shape == (0, 8) and dropped == 5
    with pytest.raises(ConfigError, match="'clip_len' parameter must be an int >= 1"):
        cut_clips(np.arange(5), 0)


def test_frame_folder_natural_order_and_errors(tmp_path):
    d = _write_folder(tmp_path / "v", 12, name=lambda i: f"{i + 1}.jpg")  # 1.jpg .. 12.jpg
    assert [p.name for p in list_frame_files(d)][:3] == ["1.jpg", "2.jpg", "3.jpg"]
    ff = FrameFolder(d, 30.0, size=(12, 16))
    assert len(ff) == 12 and ff.read(10).shape == (12, 16, 3) and _index(ff.read(10)) == 10
    with pytest.raises(FeatureError, match="frame 12 is outside the video"):
        ff.read(12)
    with pytest.raises(FeatureError, match="frame folder not found"):
        list_frame_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureError, match="holds no image"):
        list_frame_files(tmp_path / "empty")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FeatureError, match="unreadable image"):
        read_image(tmp_path / "bad.jpg")


def test_video_clips_at_24_fps_from_30_fps_frames(tmp_path):
    d = _write_folder(tmp_path / "v", 30)  # one second at 30 fps -> 24 frames -> 3 clips
    clips, dropped = video_clips(FrameFolder(d, 30.0))
    assert clips.shape == (3, 8, 24, 32, 3) and dropped == 0
    got = [[_index(f) for f in c] for c in clips]
    assert got[0] == [0, 1, 2, 3, 5, 6, 7, 8]  # floor(k * 30 / 24)
    assert got[2] == [20, 21, 22, 23, 25, 26, 27, 28]


def test_ucf24_layout_clip_centred_on_a_keyframe(tmp_path):
    root = tmp_path / "ucf"
    _write_folder(root / "rgb-images" / "Basketball" / "v_Basketball_g01_c01", 40)
    src = FrameSource(root, layout="ucf24", size=16)
    vid = "Basketball/v_Basketball_g01_c01"
    assert vid in src and "Basketball/other" not in src
    clip = src.clip(vid, 20)  # frame 20 at 25 fps = 0.8 s; instants 0.8 + (k - 4) / 24
    want = [int(np.floor((0.8 + (k - 4) / 24) * 25 + 1e-6)) for k in range(8)]
    assert want == [15, 16, 17, 18, 20, 21, 22, 23]
    assert [_index(f) for f in clip] == want and clip.shape == (8, 16, 16, 3)
    assert _index(src.frame(vid, 20)) == 20
    assert [_index(f) for f in src.clip(vid, 0)][:4] == [0, 0, 0, 0]  # before the start: first frame
    assert src.clip(vid, 20, size=(8, 10)).shape == (8, 8, 10, 3)
    with pytest.raises(FeatureError, match="no frames for video 'X/y'"):
        src.clip("X/y", 3)


def test_ava_layout_seconds_after_900(tmp_path):
    root = tmp_path / "ava"
    _write_folder(root / "vid1", 60, name=lambda i: f"vid1_{i + 1:06d}.jpg")
    src = FrameSource(root, layout="ava")
    assert src.seconds(901.0) == 1.0
    assert _index(src.frame("vid1", 901.0)) == 30  # second 901 = frame 30 of the trimmed clip at 30 fps
    assert [_index(f) for f in src.clip("vid1", 901.0)] == [25, 26, 27, 28, 30, 31, 32, 33]
    assert src.duration_s("vid1") == pytest.approx(2.0)


def test_video_file_layout(tmp_path):
    import cv2

    path = tmp_path / "vids" / "clip1.avi"
    path.parent.mkdir()
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (32, 24))
    if not wr.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG AVI files")
    for i in range(24):
        wr.write(_img(i))
    wr.release()
    vf = VideoFile(path)
    assert len(vf) == 24 and vf.fps == pytest.approx(12.0)
    assert [_index(vf.read(i)) for i in (0, 5, 23)] == [0, 5, 23]
    clips, dropped = video_clips(vf)  # 2 s at 12 fps -> 48 instants at 24 fps -> 6 clips
    assert clips.shape[0] == 6 and dropped == 0
    assert [_index(f) for f in clips[0]] == [0, 0, 1, 1, 2, 2, 3, 3]
    src = FrameSource(tmp_path / "vids", layout="videos", time_unit="second", size=16)
    assert "clip1" in src and src.clip("clip1", 1.0).shape == (8, 16, 16, 3)
    assert [_index(f) for f in src.clip("clip1", 1.0)] == [10, 10, 11, 11, 12, 12, 13, 13]
    with pytest.raises(FeatureError, match="video file not found"):
        len(VideoFile(tmp_path / "missing.mp4"))


def test_frame_source_errors(tmp_path):
    with pytest.raises(ConfigError, match="'layout' parameter of FrameSource must be one of"):
        FrameSource(tmp_path, layout="kinetics")
    with pytest.raises(FeatureError, match="frames folder not found"):
        FrameSource(tmp_path / "nope", layout="ava")
    with pytest.raises(ConfigError, match="'size' parameter must be None, an int >= 1"):
        FrameSource(tmp_path, layout="ava", size=0)
