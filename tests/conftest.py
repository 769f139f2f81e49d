"""Shared fixtures: paths to the real annotation files and small generated inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """Path of a real annotation file; skips the test with the reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real annotation file {p} is absent (the ../shared/data folder is not beside the repo)")
    return p


@pytest.fixture
def tiny_activitynet(tmp_path: Path) -> dict:
    """A hand-checked ActivityNet-layout annotation file with 1 step per second.

    Every video has 16 frames per second (n_frames = 16 * duration), so a time t in seconds
    falls into step floor(t) and an annotation [s, e] becomes [floor(s), floor(e) + 1).
    """
    def video(duration, anns):
        return {"duration_second": duration, "duration_frame": int(duration * 16),
                "feature_frame": int(duration * 16),
                "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in anns]}

    db = {
        # two A instances and one B: windows bounded by the neighbouring A
        "v_vid1": video(100.0, [(10.5, 20.2, "A"), (30.0, 40.0, "A"), (50.0, 60.0, "B")]),
        # overlapping different labels: the whole video is dropped
        "v_vid2": video(50.0, [(0.0, 10.0, "A"), (5.0, 15.0, "B")]),
        # a chain of same-label overlaps merges into one [0, 25] -> steps [0, 26)
        "v_vid3": video(60.0, [(5.0, 20.0, "C"), (0.0, 10.0, "C"), (18.0, 25.0, "C")]),
        # a long video: the window [0, 1000) is cropped to 300 steps around [500, 511)
        "v_vid4": video(1000.0, [(500.0, 510.0, "C")]),
        # a 40-step segment is too long; a short C is kept
        "v_vid5": video(100.0, [(0.0, 40.0, "A"), (60.0, 61.5, "C")]),
        # no annotations (test subset)
        "v_vid6": video(30.0, []),
        # end after the duration: clipped and counted
        "v_vid7": video(20.0, [(12.0, 20.5, "D")]),
        "v_vid8": video(20.0, [(2.0, 6.0, "D")]),
    }
    lengths = {k[2:]: {"n_frames": int(v["duration_second"] * 16), "n_feat": int(v["duration_second"])}
               for k, v in db.items()}
    ann = tmp_path / "anno.json"
    ann.write_text(json.dumps(db))
    lens = tmp_path / "lengths.json"
    lens.write_text(json.dumps(lengths))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["A"], "val": ["B"], "test": ["C", "D"]}))
    return {"annotations": ann, "lengths": lens, "class_split": split, "dir": tmp_path}


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory) -> Path:
    """12 videos, classes A and B (train), C (val), D (test), 1 step per second."""
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    db, lengths = {}, {}
    for v in range(12):
        dur = 120.0
        anns, t = [], 2.0
        for lab in ("A", "B", "C", "D"):
            if rng.random() < 0.8:
                length = float(rng.integers(3, 20))
                anns.append({"segment": [t, t + length], "label": lab})
                t += length + float(rng.integers(3, 10))
        db[f"v_vid{v:02d}"] = {"duration_second": dur, "annotations": anns}
        lengths[f"vid{v:02d}"] = {"n_frames": int(dur * 16), "n_feat": int(dur)}
    (d / "anno.json").write_text(json.dumps(db))
    (d / "len.json").write_text(json.dumps(lengths))
    (d / "split.json").write_text(json.dumps({"train": ["A", "B"], "val": ["C"], "test": ["D"]}))
    out = d / "manifest"
    from relocbench.datasets.activitynet import build_activitynet

    build_activitynet(d / "anno.json", out, lengths=d / "len.json", class_split=d / "split.json")
    return out
