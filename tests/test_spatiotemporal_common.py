"""What the spatio-temporal builders share: context windows, pairs and targets, stats files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench import ConfigError
from relocbench.datasets.common import Report
from relocbench.datasets.spatiotemporal import (
    ContextRule,
    context_windows,
    drop_single_tubelet_labels,
    make_pairs,
    split_tables,
    st_stats_writer,
    stable_rng,
)
from relocbench.manifest import validate_table


@pytest.mark.parametrize("start, end, lo, hi, rule, want", [
    (10, 12, 0, 100, ContextRule(3), (7, 15)),          # short: at least 3 on each side
    (10, 20, 0, 100, ContextRule(3), (0, 30)),          # own length 10 on each side
    (10, 20, 5, 25, ContextRule(3), (5, 25)),           # clipped to the clip's range
    (902, 905, 900, 1800, ContextRule(0, 10), (900, 908)),   # original: own length below 10 s
    (950, 962, 900, 1800, ContextRule(0, 10), (950, 962)),   # original: none from 10 s on
    (950, 960, 900, 1800, ContextRule(0, 10), (950, 960)),   # exactly 10 s: not shorter than 10
])
def test_context_windows_oracles(start, end, lo, hi, rule, want):
    ws, we = context_windows(np.array([start]), np.array([end]), np.array([lo]), np.array([hi]), rule)
    assert (ws[0], we[0]) == want


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.integers(1, 100), st.integers(0, 200), st.integers(0, 200),
       st.floats(0, 50), st.one_of(st.none(), st.floats(1, 50)))
def test_context_windows_properties(start, length, before, after, min_pad, max_len):
    end = start + length
    lo, hi = start - before, end + after
    rule = ContextRule(min_pad, max_len)
    ws, we = context_windows(np.array([start]), np.array([end]), np.array([lo]), np.array([hi]), rule)
    ws, we = float(ws[0]), float(we[0])
    assert lo <= ws <= start and end <= we <= hi  # the tubelet inside, the window inside the clip
    own = length if max_len is None or length < max_len else 0
    pad = max(min_pad, own)
    assert ws == max(lo, start - pad) and we == min(hi, end + pad)
    # symmetric: mirroring time mirrors the window
    ws2, we2 = context_windows(np.array([-end]), np.array([-start]), np.array([-hi]), np.array([-lo]), rule)
    assert (float(ws2[0]), float(we2[0])) == (-we, -ws)


def test_context_rule_errors():
    with pytest.raises(ConfigError, match="'min_pad' parameter of ContextRule must be >= 0"):
        ContextRule(-1).validate()
    with pytest.raises(ConfigError, match="'max_len' parameter of ContextRule must be > 0"):
        ContextRule(0, 0).validate()


def test_stable_rng_depends_on_keys_only():
    a = stable_rng(0, "val", "x").integers(1 << 30, size=4)
    assert (a == stable_rng(0, "val", "x").integers(1 << 30, size=4)).all()
    assert not (a == stable_rng(0, "val", "y").integers(1 << 30, size=4)).all()
    assert not (a == stable_rng(1, "val", "x").integers(1 << 30, size=4)).all()


def _tub(rows):
    return pd.DataFrame(rows, columns=["tubelet_id", "video", "label", "split", "start", "end", "n_keyframes",
                                       "person_id"])


def _boxes(tub):
    out = []
    for r in tub.itertuples():
        for t in range(int(r.start), int(r.end)):
            out.append((r.tubelet_id, float(t), 0.1, 0.1, 0.5, 0.5 + 0.01 * r.person_id))
    return pd.DataFrame(out, columns=["tubelet_id", "time", "x1", "y1", "x2", "y2"])


def test_make_pairs_targets_and_missing_reference():
    tub = _tub([
        ("v1:0:0", "v1", "L", "test", 0.0, 4.0, 4, 0),
        ("v1:1:2", "v1", "L", "test", 2.0, 6.0, 4, 1),
        ("v2:0:10", "v2", "L", "test", 10.0, 12.0, 2, 0),
        ("v3:0:0", "v3", "M", "test", 0.0, 2.0, 2, 0),
        ("v3:1:5", "v3", "M", "test", 5.0, 6.0, 1, 1),
    ])
    boxes = _boxes(tub)
    report = Report()
    ranges = {"v1": (0.0, 20.0), "v2": (0.0, 20.0), "v3": (0.0, 8.0)}

    def kf(video, ws, we):
        return np.arange(ws, we, 2.0)

    pairs, targets = make_pairs(tub, boxes, split="test", seed=0, rule=ContextRule(1.0), video_range=ranges,
                                keyframes=kf, other_video=True, report=report)
    by_q = pairs.set_index("query_tubelet_id")
    # v1 queries must draw v2:0:10: window [8, 14) (own length 2), keyframes 8, 10, 12
    for q in ("v1:0:0", "v1:1:2"):
        assert by_q.loc[q, "ref_tubelet_id"] == "v2:0:10"
        assert (by_q.loc[q, "ref_start"], by_q.loc[q, "ref_end"]) == (8.0, 14.0)
        assert list(by_q.loc[q, "ref_keyframes"]) == [8.0, 10.0, 12.0]
        assert targets[targets.pair_id == f"{q}/0"]["time"].tolist() == [10.0]
    # v2's query draws one of v1's tubelets; both are targets where they overlap the keyframes
    r = by_q.loc["v2:0:10"]
    assert r["target_tubelet_ids"] == ["v1:0:0", "v1:1:2"]
    # label M lives in one video only: no pair, counted
    assert "v3:0:0" not in by_q.index
    assert report.count("queries in split test without a reference in another video (no pair)") == 2
    # the same video is allowed when other_video is False. v3:1:5 as a reference: window [4, 7),
    # keyframes 4 and 6 hold no box: that pair is dropped and counted.
    rep2 = Report()
    pairs2, targets2 = make_pairs(tub[tub.label == "M"], boxes, split="test", seed=0, rule=ContextRule(1.0),
                                  video_range=ranges, keyframes=kf, other_video=False, report=rep2)
    assert pairs2["query_tubelet_id"].tolist() == ["v3:1:5"]
    q = pairs2.iloc[0]
    assert q["ref_tubelet_id"] == "v3:0:0" and (q["ref_start"], q["ref_end"]) == (0.0, 4.0)
    assert q["target_tubelet_ids"] == ["v3:0:0"] and list(q["ref_keyframes"]) == [0.0, 2.0]
    assert targets2["time"].tolist() == [0.0]
    assert rep2.to_dict()["pairs in split test without any target box at a scored keyframe (dropped)"] == {
        "count": 1, "examples": ["v3:0:0/0"]}
    tables = split_tables(tub.assign(split="test"), boxes, {"test": (pairs, targets)})
    for (table, split), df in tables.items():
        validate_table(df, "spatiotemporal", table)


def test_make_pairs_is_deterministic_and_label_local():
    rows = [(f"v{i}:0:0", f"v{i}", lab, "val", 0.0, 3.0, 3, 0) for i, lab in enumerate("AAAABBBBB")]
    tub = _tub(rows)
    boxes = _boxes(tub)
    args = dict(split="val", seed=5, rule=ContextRule(1.0), video_range={f"v{i}": (0.0, 9.0) for i in range(9)},
                keyframes=lambda v, a, b: np.arange(a, b), other_video=True)
    p1, t1 = make_pairs(tub, boxes, report=Report(), **args)
    p2, t2 = make_pairs(tub.iloc[::-1], boxes.iloc[::-1], report=Report(), **args)
    assert p1.equals(p2) and t1.equals(t2)
    p3, _ = make_pairs(tub[tub.label == "A"], boxes, report=Report(), **args)
    assert p3.equals(p1[p1.label == "A"].reset_index(drop=True))  # B's tubelets do not move A's draws


def test_drop_single_and_stats_files(tmp_path):
    tub = _tub([
        ("a", "v1", "L", "train", 0.0, 2.0, 2, 0), ("b", "v2", "L", "train", 0.0, 2.0, 2, 0),
        ("c", "v2", "M", "train", 3.0, 4.0, 1, 1), ("d", "v1", "M", "val", 0.0, 2.0, 2, 1),
        ("e", "v3", "M", "val", 0.0, 2.0, 2, 0), ("f", "v3", "N", "test", 0.0, 2.0, 2, 0),
        ("g", "v1", "N", "test", 5.0, 6.0, 1, 0),
    ])
    report = Report()
    kept = drop_single_tubelet_labels(tub, report)
    assert sorted(kept["tubelet_id"]) == ["a", "b", "d", "e", "f", "g"]
    assert report.to_dict()["labels with a single tubelet in split train (dropped)"] == {
        "count": 1, "examples": ["M (c)"]}
    boxes = _boxes(kept)
    ranges = {v: (0.0, 10.0) for v in ("v1", "v2", "v3")}
    pairs = {s: make_pairs(kept[kept.split == s], boxes, split=s, seed=0, rule=ContextRule(1.0),
                           video_range=ranges, keyframes=lambda v, a, b: np.arange(a, b), other_video=True,
                           report=report) for s in ("val", "test")}
    tables = split_tables(kept, boxes, pairs)
    names = st_stats_writer("Toy", tables, report, unit="seconds", command="toy")(tmp_path)
    assert names == ["STATS.md", "lengths.png", "pairs.png"]
    text = (tmp_path / "STATS.md").read_text()
    assert "| train | 2 | 2 | 1 | - | - |" in text
    assert "labels with a single tubelet in split train (dropped) | 1 | M (c)" in text
    png = (tmp_path / "pairs.png").read_bytes()
    st_stats_writer("Toy", tables, report, unit="seconds", command="toy")(tmp_path)
    assert (tmp_path / "pairs.png").read_bytes() == png and png[:4] == b"\x89PNG"


def _st_pairs(**extra):
    df = pd.DataFrame({
        "pair_id": ["p0", "p1"], "label": ["L", "L"], "query_tubelet_id": ["a", "b"], "query_video": ["v1", "v2"],
        "query_start": [0.0, 1.0], "query_end": [2.0, 3.0], "ref_video": ["v2", "v1"],
        "ref_start": [4.0, 0.0], "ref_end": [8.0, 2.0], "target_tubelet_ids": [["b"], ["a"]],
    })
    for k, v in extra.items():
        df[k] = v
    return df


def test_optional_st_columns_are_checked_when_present(tmp_path):
    from relocbench import ManifestError
    from relocbench.manifest import open_manifest, write_manifest

    validate_table(_st_pairs(), "spatiotemporal", "pairs")  # optional: may be absent
    good = _st_pairs(ref_tubelet_id=["b", "a"], ref_keyframes=[[4.0, 6.0, 8.0], [0.0, 1.0]])
    validate_table(good, "spatiotemporal", "pairs")
    for bad, why in [
        ([[4.0, 9.0], [0.0]], "pair_id 'p0' .*breaks the rule ref_keyframes non-empty, increasing and within"),
        ([[6.0, 5.0], [0.0]], "pair_id 'p0' .*breaks the rule"),          # not increasing
        ([[4.0], []], "pair_id 'p1' .*breaks the rule"),                  # empty
        ([[4.0], ["x"]], "column 'ref_keyframes' .* must hold list\\[float\\]"),
        ([[4.0], [float("nan")]], "column 'ref_keyframes' .* must hold list\\[float\\]"),
        ([4.0, 0.0], "column 'ref_keyframes' .* must hold list\\[float\\]"),
    ]:
        with pytest.raises(ManifestError, match=why):
            validate_table(_st_pairs(ref_keyframes=bad), "spatiotemporal", "pairs")
    with pytest.raises(ManifestError, match="column 'ref_tubelet_id' .* must hold str"):
        validate_table(_st_pairs(ref_tubelet_id=[1, 2]), "spatiotemporal", "pairs")
    # written with their declared Parquet types, read back equal
    meta = {"name": "t", "task": "spatiotemporal", "builder": {"name": "test", "version": "0"},
            "protocol": "x", "params": {}, "inputs": {}, "report": {}}
    out = write_manifest(tmp_path / "m", {("pairs", "test"): good}, meta)
    import pyarrow.parquet as pq

    schema = pq.read_schema(out / "pairs-test.parquet")
    import pyarrow as pa

    assert pa.types.is_list(schema.field("ref_keyframes").type)
    assert schema.field("ref_keyframes").type.value_type == pa.float64()
    assert str(schema.field("ref_tubelet_id").type) == "string"
    back = open_manifest(out).table("pairs", "test")
    assert [list(k) for k in back["ref_keyframes"]] == [[4.0, 6.0, 8.0], [0.0, 1.0]]


def test_list_and_string_column_kinds():
    import pandas as pd

    from relocbench.manifest import _kind_ok

    ok = pd.Series([["a", "b"], [], ("c",), np.array(["d"], dtype=object)], dtype=object)
    assert _kind_ok(ok, "list[str]")
    assert _kind_ok(pd.Series([np.array(["a", "b"])], dtype=object), "list[str]")   # np.str_ items
    assert not _kind_ok(pd.Series([["a"], ["b", 1]], dtype=object), "list[str]")
    assert not _kind_ok(pd.Series([["a"], "b"], dtype=object), "list[str]")
    assert not _kind_ok(pd.Series([["a"], None], dtype=object), "list[str]")
    assert _kind_ok(pd.Series(["a", np.str_("b")], dtype=object), "str")
    assert not _kind_ok(pd.Series(["a", 1], dtype=object), "str")
