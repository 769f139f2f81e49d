"""The ActivityNet builder (protocol feng2018): hand-checked tiny inputs, errors, determinism."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from relocbench import InputError, ManifestError, OutputExistsError, load_manifest, open_manifest
from relocbench.datasets.activitynet import (
    ActivityNetConfig,
    _merge_literal,
    build_activitynet,
    read_class_split,
)


def _build(tiny, out, **kw):
    return build_activitynet(tiny["annotations"], out, lengths=tiny["lengths"],
                             class_split=tiny["class_split"], **kw)


def _segs(res, split):
    seg = res.tables[("segments", split)]
    return {(r.video, r.start_step, r.end_step): (r.window_start_step, r.window_end_step)
            for r in seg.itertuples()}


def test_segments_and_windows_match_hand_computation(tiny_activitynet, tmp_path):
    res = _build(tiny_activitynet, tmp_path / "m")
    assert _segs(res, "train") == {("vid1", 10, 21): (0, 31), ("vid1", 30, 41): (20, 100)}
    assert _segs(res, "val") == {("vid1", 50, 61): (0, 100)}
    test = _segs(res, "test")
    cropped = test.pop(("vid4", 500, 511))
    assert test == {("vid3", 0, 26): (0, 60), ("vid5", 60, 62): (0, 100),
                    ("vid7", 12, 20): (0, 20), ("vid8", 2, 7): (0, 20)}
    ws, we = cropped
    assert we - ws == 300 and 211 <= ws <= 500


def test_report_counts_every_drop(tiny_activitynet, tmp_path):
    rep = _build(tiny_activitynet, tmp_path / "m").report.to_dict()
    assert rep["videos with overlapping annotations of different classes (dropped)"]["count"] == 1
    assert rep["videos with overlapping annotations of different classes (dropped)"]["examples"] == ["vid2"]
    assert rep["segments longer than 32 steps (dropped)"]["count"] == 1
    assert rep["videos without annotations (skipped)"]["examples"] == ["vid6"]
    assert rep["annotations ending after the video's end (clipped to its duration)"]["count"] == 1
    assert rep["windows cropped to 300 steps (kept)"]["count"] == 1
    assert rep["classes with fewer than two segments in split val (no pair possible)"]["examples"] == ["B"]
    meta = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert meta["report"] == rep


def test_pairs_are_same_class_other_segment_window_long_enough(tiny_activitynet, tmp_path):
    res = _build(tiny_activitynet, tmp_path / "m")
    pairs = res.tables[("pairs", "test")]
    assert len(pairs) == 5
    assert (pairs["query_segment_id"] != pairs["ref_segment_id"]).all()
    seg = res.tables[("segments", "test")].set_index("segment_id")
    assert (seg.loc[pairs["ref_segment_id"], "label"].to_numpy() == pairs["label"].to_numpy()).all()
    qlen = pairs["query_end_step"] - pairs["query_start_step"]
    assert ((pairs["ref_end_step"] - pairs["ref_start_step"]) >= qlen).all()
    # the ground truth is the reference segment, relative to its window
    ref = seg.loc[pairs["ref_segment_id"]]
    assert (pairs["gt_start_step"].to_numpy() == ref["start_step"].to_numpy() - ref["window_start_step"].to_numpy()).all()
    d = pairs.set_index("query_segment_id")
    assert d.loc["vid7_12_20", "ref_segment_id"] == "vid8_2_7"
    assert d.loc["vid8_2_7", "ref_segment_id"] == "vid7_12_20"
    assert len(res.tables[("pairs", "val")]) == 0


def test_seconds_columns_follow_the_steps(tiny_activitynet, tmp_path):
    res = _build(tiny_activitynet, tmp_path / "m")
    seg = res.tables[("segments", "test")].set_index("segment_id")
    # 16 frames a second here: a step is one second; ends are clipped to the duration
    assert seg.loc["vid7_12_20", ["start_s", "end_s", "window_end_s"]].tolist() == [12.0, 20.0, 20.0]
    pairs = res.tables[("pairs", "test")].set_index("query_segment_id")
    row = pairs.loc["vid8_2_7"]
    assert (row["gt_start_s"], row["gt_end_s"]) == (12.0, 20.0)


def test_timelines_hold_every_annotation_of_kept_videos(tiny_activitynet, tmp_path):
    res = _build(tiny_activitynet, tmp_path / "m")
    tl = res.tables[("timelines", None)]
    assert sorted(tl["video"].unique()) == ["vid1", "vid3", "vid4", "vid5", "vid7", "vid8"]
    assert len(tl) == 11
    vid5 = tl[tl["video"] == "vid5"].set_index("label")
    assert not vid5.loc["A", "kept"] and vid5.loc["C", "kept"]
    assert tl[tl["video"] == "vid7"]["end_s"].tolist() == [20.0]


def test_merge_is_literal_and_drops_conflicts():
    rows = [[0.0, 10.0, "A", False], [5.0, 20.0, "A", False], [18.0, 25.0, "A", False], [30.0, 31.0, "A", False]]
    assert [r[:2] for r in _merge_literal(rows)] == [[0.0, 25.0], [30.0, 31.0]]
    assert _merge_literal([[0.0, 10.0, "A", False], [10.0, 12.0, "B", False]]) is None


def test_byte_identical_rebuilds(tiny_activitynet, tmp_path):
    _build(tiny_activitynet, tmp_path / "a", config=ActivityNetConfig(seed=3))
    _build(tiny_activitynet, tmp_path / "b", config=ActivityNetConfig(seed=3))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_seed_changes_the_crop(tiny_activitynet, tmp_path):
    windows = set()
    for seed in range(6):
        res = _build(tiny_activitynet, tmp_path / f"s{seed}", config=ActivityNetConfig(seed=seed))
        windows.add(_segs(res, "test")[("vid4", 500, 511)])
    assert len(windows) > 1


def test_self_pairs_and_k_references(tiny_activitynet, tmp_path):
    res = _build(tiny_activitynet, tmp_path / "m", config=ActivityNetConfig(pairs_per_query=2))
    pairs = res.tables[("pairs", "test")]
    # C queries have two other C segments, D queries only one (reported)
    assert len(pairs) == 3 * 2 + 2 * 1
    assert res.report.count("queries with fewer than 2 possible references in split test") == 2
    res = _build(tiny_activitynet, tmp_path / "s", config=ActivityNetConfig(allow_self_pairs=True, pairs_per_query=3))
    assert (res.tables[("pairs", "test")]["query_segment_id"] == res.tables[("pairs", "test")]["ref_segment_id"]).any()


def test_export_video_reloc_json(tiny_activitynet, tmp_path):
    _build(tiny_activitynet, tmp_path / "m", export=tmp_path / "json")
    train = json.loads((tmp_path / "json" / "train.json").read_text())
    assert train == [{"id": "vid1", "label": "A", "location": [0, 31], "groundtruth": [10, 21]},
                     {"id": "vid1", "label": "A", "location": [20, 100], "groundtruth": [10, 21]}]


def test_load_manifest_validates_and_checks_hashes(tiny_activitynet, tmp_path):
    _build(tiny_activitynet, tmp_path / "m")
    pairs = load_manifest(tmp_path / "m", split="test", table="pairs")
    assert len(pairs) == 5
    assert open_manifest(tmp_path / "m").splits == ["test", "train", "val"]
    with pytest.raises(ManifestError, match="has no table 'pairs' for split 'train'"):
        load_manifest(tmp_path / "m", split="train", table="pairs")
    f = tmp_path / "m" / "pairs-test.parquet"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ManifestError, match="does not match manifest.json"):
        load_manifest(tmp_path / "m", split="test", table="pairs")
    with pytest.raises(ManifestError, match="no manifest named 'nope'"):
        load_manifest("nope")


def test_refuses_existing_output_without_force(tiny_activitynet, tmp_path):
    _build(tiny_activitynet, tmp_path / "m")
    with pytest.raises(OutputExistsError, match="exists already"):
        _build(tiny_activitynet, tmp_path / "m")
    _build(tiny_activitynet, tmp_path / "m", force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_interrupted_build_leaves_nothing(tiny_activitynet, tmp_path, monkeypatch):
    import relocbench.manifest as manifest

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(manifest.pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        _build(tiny_activitynet, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anno.json", "lengths.json", "split.json"]


# ------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="ActivityNet annotation file not found"):
        build_activitynet(tmp_path / "nope.json", tmp_path / "m")


def test_malformed_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"v_a": {"duration_second": 3,}')
    with pytest.raises(InputError, match=r"bad.json: malformed JSON at line 1"):
        build_activitynet(p, tmp_path / "m")


def test_bad_annotation_entry(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"v_a": {"duration_second": 3, "annotations": [{"segment": [1], "label": "A"}]}}))
    with pytest.raises(InputError, match=r"bad.json: video 'v_a' annotation 0 'segment': expected a list \[start, end\] "
                                         r"of two numbers, found a list of 1 item$"):
        build_activitynet(p, tmp_path / "m")


def test_video_without_length_entry(tiny_activitynet, tmp_path):
    lens = json.loads(tiny_activitynet["lengths"].read_text())
    del lens["vid8"]
    p = tmp_path / "short_lengths.json"
    p.write_text(json.dumps(lens))
    res = build_activitynet(tiny_activitynet["annotations"], tmp_path / "m", lengths=p,
                            class_split=tiny_activitynet["class_split"])
    assert res.report.to_dict()["videos without a lengths entry (skipped)"] == {"count": 1, "examples": ["vid8"]}
    with pytest.raises(InputError, match=r"short_lengths.json: has no entry for video 'vid8' of the annotation file "
                                         r"\(--strict"):
        build_activitynet(tiny_activitynet["annotations"], tmp_path / "m2", lengths=p,
                          class_split=tiny_activitynet["class_split"], config=ActivityNetConfig(strict=True))


def test_end_before_start_and_start_after_end_are_counted(tiny_activitynet, tmp_path):
    db = json.loads(tiny_activitynet["annotations"].read_text())
    db["v_vid8"]["annotations"].append({"segment": [9.0, 8.0], "label": "D"})
    db["v_vid8"]["annotations"].append({"segment": [25.0, 28.0], "label": "D"})
    p = tmp_path / "a2.json"
    p.write_text(json.dumps(db))
    res = build_activitynet(p, tmp_path / "m", lengths=tiny_activitynet["lengths"],
                            class_split=tiny_activitynet["class_split"])
    rep = res.report.to_dict()
    assert rep["annotations ending before they start or starting below 0 (dropped)"]["count"] == 1
    assert rep["annotations starting at or after the video's end (dropped)"]["count"] == 1


def test_class_split_must_partition(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"train": ["A"], "val": ["B"], "test": ["A"]}))
    with pytest.raises(InputError, match="is not a partition: class 'A'"):
        read_class_split(p, ["A", "B"], None)
    p.write_text(json.dumps({"train": ["A"], "val": ["B"], "test": []}))
    with pytest.raises(InputError, match=r"missing \['C'\]"):
        read_class_split(p, ["A", "B", "C"], None)
    n = tmp_path / "perm.npy"
    np.save(n, np.array([0, 1, 1]))
    with pytest.raises(InputError, match="is not a permutation of 0..2"):
        read_class_split(n, ["A", "B", "C"], None)


def test_split_seed_draws_a_partition():
    classes = [f"c{i:03d}" for i in range(200)]
    m1 = read_class_split(None, classes, 7)
    assert m1 == read_class_split(None, classes, 7)
    assert m1 != read_class_split(None, classes, 8)
    assert sorted(list(m1.values()).count(s) for s in ("train", "val", "test")) == [20, 20, 160]


def test_without_lengths_uses_fps(tiny_activitynet, tmp_path):
    res = build_activitynet(tiny_activitynet["annotations"], tmp_path / "m",
                            class_split=tiny_activitynet["class_split"], config=ActivityNetConfig(fps=16.0))
    assert _segs(res, "train") == {("vid1", 10, 21): (0, 31), ("vid1", 30, 41): (20, 100)}
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]["fps"] == 16.0


def test_official_layout_with_taxonomy(tiny_activitynet, tmp_path):
    """The official activity_net.v1-3.min.json layout: database keyed by bare YouTube ids,
    'duration', a taxonomy whose leaf nodes are the classes; exports carry node ids."""
    per_video = json.loads(tiny_activitynet["annotations"].read_text())
    db = {k[2:]: {"subset": "training", "duration": v["duration_second"], "url": "",
                  "annotations": v["annotations"]} for k, v in per_video.items()}
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}]
    for i, name in enumerate("ABCD"):
        taxonomy.append({"nodeId": 100 + i, "nodeName": name, "parentId": 0, "parentName": "Root"})
    official = tmp_path / "activity_net.v1-3.min.json"
    official.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": taxonomy, "database": db}))
    a = build_activitynet(official, tmp_path / "a", lengths=tiny_activitynet["lengths"],
                          class_split=tiny_activitynet["class_split"], export=tmp_path / "json")
    b = _build(tiny_activitynet, tmp_path / "b")
    for key in a.tables:
        pd.testing.assert_frame_equal(a.tables[key], b.tables[key])
    train = json.loads((tmp_path / "json" / "train.json").read_text())
    assert {t["label"] for t in train} == {100}
