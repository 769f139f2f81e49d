"""Integration: the builder on the real ActivityNet files reproduces the original release."""
from __future__ import annotations

import json

import pytest

from relocbench import load_manifest, open_manifest
from relocbench.datasets.activitynet import build_activitynet

from conftest import REPO, shared_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    d = shared_file("activitynet")
    out = tmp_path_factory.mktemp("anet") / "manifest"
    res = build_activitynet(d / "anet_anno_action.json", out, lengths=d / "c3d_length.json",
                            class_split=d / "class_perm.npy")
    return d, out, res


@pytest.mark.parametrize("split,expected", [("train", 7296), ("val", 775), ("test", 948)])
def test_exact_reproduction_of_the_release(real_build, split, expected):
    d, _, res = real_build
    anno = json.loads((d / "anet_anno_action.json").read_text())
    release = json.loads((d / "video_reloc_release" / f"{split}.json").read_text())
    present = [r for r in release if "v_" + r["id"] in anno]
    want = {(r["id"], r["location"][0] + r["groundtruth"][0], r["location"][0] + r["groundtruth"][1]):
            tuple(r["location"]) for r in present}
    seg = res.tables[("segments", split)]
    got = {(r.video, r.start_step, r.end_step): (r.window_start_step, r.window_end_step) for r in seg.itertuples()}
    assert len(want) == expected
    assert set(got) == set(want)  # same video, absolute steps and split; nothing else
    n_cropped = 0
    for key, (ws, we) in got.items():
        rws, rwe = want[key]
        if rwe - rws == 300 and (we - ws == 300):
            n_cropped += 1  # the original crop was random: only the length can agree
            continue
        assert (ws, we) == (rws, rwe), key
    assert n_cropped < 0.03 * expected


def test_committed_manifest_is_a_fresh_build(real_build):
    """manifests/activitynet must be exactly what the builder makes from ../shared/data."""
    _, out, _ = real_build
    committed = REPO / "manifests" / "activitynet"
    # figures depend on matplotlib's version; every table, manifest.json and STATS.md must match
    for name in sorted(p.name for p in out.iterdir() if p.suffix != ".png"):
        assert (committed / name).read_bytes() == (out / name).read_bytes(), f"{name} is stale: rebuild the manifest"


def test_committed_manifest_loads():
    pairs = load_manifest("activitynet", split="test", table="pairs")
    assert len(pairs) == 948
    assert (pairs["query_segment_id"] != pairs["ref_segment_id"]).all()
    tl = load_manifest("activitynet", table="timelines", split=None)
    assert set(tl["video"]) >= set(pairs["ref_video"]) | set(pairs["query_video"])
    m = open_manifest("activitynet")
    assert m.meta["protocol"] == "feng2018" and m.task == "temporal"
