"""The UCF101-24 spatio-temporal builder: a hand-checked pickle that the tests write, and an
integration test on the real ``../shared/data/ucf24`` files."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import REPO, shared_file
from relocbench import ConfigError, InputError, load_manifest, open_manifest
from relocbench.cli import cli
from relocbench.datasets.ucf24 import UCF24Config, build_ucf24, class_split, read_annotations


def tube(label, sf, ef, box=(32, 24, 64, 48), dtype=np.uint16):
    boxes = np.tile(np.asarray(box, dtype=dtype), (ef - sf, 1))
    return {"label": label, "sf": sf, "ef": ef, "boxes": boxes}


def tiny_db():
    c2 = tube(2, 0, 30)
    c2["boxes"][5, 2] = 0  # zero width at frame 5: dropped
    return {
        "A/v_A_g01_c01": {"numf": np.uint8(50), "label": 0, "annotations": [
            tube(0, 0, 20, box=(200, 10, 100, 20), dtype=np.uint8),  # x + w overflows uint8
            {"label": 0, "sf": 5, "ef": 5, "boxes": np.zeros((0, 4), np.uint8)}]},  # empty tube
        "A/v_A_g02_c01": {"numf": np.uint8(30), "label": 0, "annotations": [tube(0, 3, 9)]},
        "B/v_B_g01_c01": {"numf": np.uint8(30), "label": 1, "annotations": [tube(1, 0, 10)]},  # single tube
        "C/v_C_g01_c01": {"numf": np.uint8(100), "label": 2, "annotations": [tube(2, 10, 20), tube(2, 50, 60)]},
        "C/v_C_g02_c01": {"numf": np.uint8(40), "label": 2, "annotations": [c2]},
        "D/v_D_g01_c01": {"numf": np.uint16(200), "label": 3,
                          "annotations": [tube(3, 100, 110, box=(300, 0, 40, 240))]},  # clipped at x = 320
        "D/v_D_g02_c01": {"numf": np.uint8(50), "label": 3, "annotations": [tube(3, 5, 15)]},
    }


@pytest.fixture
def ucf_files(tmp_path: Path) -> dict:
    ann = tmp_path / "pyannot_with_class_names.pkl"
    with open(ann, "wb") as fh:
        pickle.dump({"db": tiny_db(), "classes": ["A", "B", "C", "D"], "trainvideos": []}, fh, protocol=2)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["A", "B"], "val": ["C"], "test": ["D"]}))
    tl = tmp_path / "testlist01.txt"
    tl.write_text("C/v_C_g01_c01.avi\nD/v_D_g01_c01\nD/v_D_g02_c01\nZ/v_Z_g01_c01\n")
    return {"annotations": ann, "split": split, "test_list": tl}


# reference tubelet -> (window, scored keyframes, target tubelets, number of target boxes); the
# default context is max(own length, 75 frames) on each side within the video.
WINDOWS = {
    "C/v_C_g02_c01:0:0": (0, 40, [0, 8, 16, 24, 32], ["C/v_C_g02_c01:0:0"], 4),  # no box at 32 >= 30
    "C/v_C_g01_c01:0:10": (0, 95, list(range(0, 95, 8)), ["C/v_C_g01_c01:0:10", "C/v_C_g01_c01:1:50"], 2),
    "C/v_C_g01_c01:1:50": (0, 100, list(range(0, 100, 8)), ["C/v_C_g01_c01:0:10", "C/v_C_g01_c01:1:50"], 2),
    "D/v_D_g02_c01:0:5": (0, 50, list(range(0, 50, 8)), ["D/v_D_g02_c01:0:5"], 1),
    "D/v_D_g01_c01:0:100": (25, 185, list(range(25, 185, 8)), ["D/v_D_g01_c01:0:100"], 1),
}


def build(files, out, **kw):
    return build_ucf24(files["annotations"], out, class_split_file=kw.pop("class_split_file", files["split"]), **kw)


def test_tubelets_boxes_and_report(ucf_files, tmp_path):
    res = build(ucf_files, tmp_path / "m")
    tub = pd.concat([res.tables[("tubelets", s)] for s in ("train", "val", "test")])
    got = {r.tubelet_id: (r.split, r.label, r.start, r.end, r.n_keyframes, r.person_id) for r in tub.itertuples()}
    assert got == {
        "A/v_A_g01_c01:0:0": ("train", "A", 0, 20, 20, 0), "A/v_A_g02_c01:0:3": ("train", "A", 3, 9, 6, 0),
        "C/v_C_g01_c01:0:10": ("val", "C", 10, 20, 10, 0), "C/v_C_g01_c01:1:50": ("val", "C", 50, 60, 10, 1),
        "C/v_C_g02_c01:0:0": ("val", "C", 0, 30, 29, 0),
        "D/v_D_g01_c01:0:100": ("test", "D", 100, 110, 10, 0), "D/v_D_g02_c01:0:5": ("test", "D", 5, 15, 10, 0),
    }
    rep = res.report.to_dict()
    assert rep["empty tubes (no frames or no boxes; dropped)"] == {"count": 1, "examples": ["A/v_A_g01_c01:1:5"]}
    assert rep["boxes with zero area (dropped)"]["count"] == 1
    assert rep["boxes reaching outside the frame (clipped)"]["count"] == 10
    assert rep["labels with a single tubelet in split train (dropped)"]["count"] == 1
    b = res.tables[("boxes", "train")]
    first = b[b.tubelet_id == "A/v_A_g01_c01:0:0"].iloc[0]
    assert (first.time, first.x1, first.y1, first.x2, first.y2) == (0.0, 200 / 320, 10 / 240, 300 / 320, 30 / 240)
    d = res.tables[("boxes", "test")]
    assert d[d.tubelet_id == "D/v_D_g01_c01:0:100"][["x1", "x2", "y1", "y2"]].iloc[0].tolist() == [300 / 320, 1, 0, 1]
    assert 5.0 not in set(res.tables[("boxes", "val")].query("tubelet_id == 'C/v_C_g02_c01:0:0'")["time"])


def test_pairs_hand_checked(ucf_files, tmp_path):
    res = build(ucf_files, tmp_path / "m")
    for split, n in (("val", 3), ("test", 2)):
        pairs, targets = res.tables[("pairs", split)], res.tables[("targets", split)]
        assert len(pairs) == n
        for p in pairs.itertuples():
            assert p.ref_video != p.query_video
            ws, we, kf, tids, nbox = WINDOWS[p.ref_tubelet_id]
            assert (p.ref_start, p.ref_end, list(p.ref_keyframes), p.target_tubelet_ids) == (ws, we, kf, tids)
            t = targets[targets.pair_id == p.pair_id]
            assert len(t) == nbox and set(t["time"]) <= set(kf)
    t = res.tables[("targets", "test")]
    clipped = t[t.tubelet_id == "D/v_D_g01_c01:0:100"]
    assert clipped[["time", "x1", "y1", "x2", "y2"]].values.tolist() == [[105.0, 300 / 320, 0.0, 1.0, 1.0]]


def test_keyframe_stride_and_context(ucf_files, tmp_path):
    res = build(ucf_files, tmp_path / "m", config=UCF24Config(keyframe_stride=4, min_context_frames=0))
    p = res.tables[("pairs", "test")].set_index("ref_tubelet_id")
    # D2 [5, 15): own length 10 on each side -> [0, 25); D1 [100, 110) -> [90, 120)
    assert (p.loc["D/v_D_g02_c01:0:5", "ref_start"], p.loc["D/v_D_g02_c01:0:5", "ref_end"]) == (0, 25)
    assert list(p.loc["D/v_D_g01_c01:0:100", "ref_keyframes"]) == [90, 94, 98, 102, 106, 110, 114, 118]


def test_test_list_keeps_official_video_splits(ucf_files, tmp_path):
    res = build(ucf_files, tmp_path / "m", test_list=ucf_files["test_list"])
    rep = res.report.to_dict()
    assert rep["val tubes in official training videos (dropped: --test-list keeps video splits apart)"]["count"] == 1
    assert rep["test-list videos without annotations"]["examples"] == ["Z/v_Z_g01_c01"]
    # the two C tubes left share one video: no reference in another video
    assert rep["queries in split val without a reference in another video (no pair)"]["count"] == 2
    assert len(res.tables[("pairs", "val")]) == 0 and len(res.tables[("pairs", "test")]) == 2
    assert open_manifest(tmp_path / "m").meta["params"]["video_split"] == "official split 1 (test list)"


def test_seeded_class_split_is_a_partition():
    names = [f"c{i:02d}" for i in range(24)]
    a = class_split(names, UCF24Config(split_seed=0))
    b = class_split(list(reversed(names)), UCF24Config(split_seed=0))
    assert a == b  # depends on the names, not their order
    sizes = {s: sum(1 for v in a.values() if v == s) for s in ("train", "val", "test")}
    assert sizes == {"train": 14, "val": 5, "test": 5} and set(a) == set(names)
    assert a != class_split(names, UCF24Config(split_seed=1))
    with pytest.raises(ConfigError, match="must equal the 4 classes"):
        class_split(["a", "b", "c", "d"], UCF24Config())


def test_original_layout_without_class_names(tmp_path):
    p = tmp_path / "pyannot.pkl"
    with open(p, "wb") as fh:
        pickle.dump(tiny_db(), fh, protocol=2)
    ann = read_annotations(p)
    assert ann.classes == ["A", "B", "C", "D"] and ann.layout == "pyannot"
    db = tiny_db()
    db["B/v_B_g01_c01"]["annotations"][0]["label"] = 0
    with open(p, "wb") as fh:
        pickle.dump(db, fh, protocol=2)
    with pytest.raises(InputError, match="label 0 names both 'A' and 'B'"):
        read_annotations(p)


def test_bad_inputs(ucf_files, tmp_path):
    p = tmp_path / "bad.pkl"
    p.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match=r"bad.pkl: expected a UCF101-24 annotation pickle, found an unreadable pickle "
                                         r"\(UnpicklingError: invalid load key"):
        read_annotations(p)
    db = tiny_db()
    db["C/v_C_g01_c01"]["annotations"][0]["ef"] = 25
    with open(p, "wb") as fh:
        pickle.dump({"db": db, "classes": ["A", "B", "C", "D"]}, fh)
    with pytest.raises(InputError, match=r"video C/v_C_g01_c01 tube 0: has 10 boxes for frames 10..25"):
        read_annotations(p)
    db = tiny_db()
    db["C/v_C_g01_c01"]["annotations"][0]["label"] = 7
    with open(p, "wb") as fh:
        pickle.dump({"db": db, "classes": ["A", "B", "C", "D"]}, fh)
    with pytest.raises(InputError, match="label 7 is not an index into the 4 classes"):
        read_annotations(p)
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"train": ["A"], "val": ["C"], "test": ["D"]}))
    with pytest.raises(InputError, match=r"not a partition .*missing: \['B'\]"):
        build(ucf_files, tmp_path / "m", class_split_file=s)
    assert not (tmp_path / "m").exists()


def test_cli_equals_python_and_is_deterministic(ucf_files, tmp_path):
    out = tmp_path / "cli"
    args = ["build-dataset", "ucf24", "--annotations", str(ucf_files["annotations"]),
            "--class-split", str(ucf_files["split"]), "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and "empty tubes" in r.output
    py = build(ucf_files, tmp_path / "py")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in py.out.iterdir())
    for f in names:
        assert (out / f).read_bytes() == (py.out / f).read_bytes(), f
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "exists already" in r.output
    r = CliRunner().invoke(cli, ["build-dataset", "ucf24", "--help"])
    assert r.exit_code == 0 and "relocbench build-dataset ucf24" in r.output


# ---------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    ann = shared_file("ucf24", "pyannot_with_class_names.pkl")
    out = tmp_path_factory.mktemp("ucf24") / "m"
    return ann, build_ucf24(ann, out)


@pytest.mark.integration
def test_real_counts_and_invariants(real_build):
    ann_path, res = real_build
    ann = read_annotations(ann_path)
    assert len(ann.videos) == 3194
    assert sum(len(t) for _, t in ann.videos.values()) == 4458
    for numf, tubes in ann.videos.values():
        for _, sf, ef, b in tubes:  # every raw box inside the 320x240 frame
            assert (b[:, 0] >= 0).all() and (b[:, 0] + b[:, 2] <= 320).all() and (b[:, 1] + b[:, 3] <= 240).all()
    tubs = {s: res.tables[("tubelets", s)] for s in ("train", "val", "test")}
    assert sum(len(t) for t in tubs.values()) == 4458
    labels = {s: set(t["label"]) for s, t in tubs.items()}
    assert [len(labels[s]) for s in ("train", "val", "test")] == [14, 5, 5]
    assert not (labels["train"] & labels["val"] or labels["train"] & labels["test"] or labels["val"] & labels["test"])
    for split in ("val", "test"):
        pairs = res.tables[("pairs", split)].set_index("pair_id")
        assert len(pairs) == len(tubs[split])
        t = res.tables[("targets", split)].join(pairs[["ref_start", "ref_end"]], on="pair_id")
        assert ((t["time"] >= t["ref_start"]) & (t["time"] < t["ref_end"])).all()
        for c in ("x1", "y1", "x2", "y2"):
            assert t[c].between(0, 1).all()
        assert (pairs["ref_video"] != pairs["query_video"]).all()


@pytest.mark.integration
def test_committed_manifest_is_a_fresh_build(real_build):
    _, res = real_build
    committed = REPO / "manifests" / "ucf24"
    if not (committed / "manifest.json").exists():
        pytest.skip("manifests/ucf24 has not been built yet")
    for f in sorted(p.name for p in res.out.iterdir() if p.suffix in (".parquet", ".json")):
        assert (committed / f).read_bytes() == (res.out / f).read_bytes(), f
    pairs = load_manifest("ucf24", split="test", table="pairs")
    assert len(pairs) == len(res.tables[("pairs", "test")])
