"""The synthetic-sprites generator: determinism, class split, boxes that follow the actors,
motion oracles, the manifest and its cache."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from relocbench import ConfigError
from relocbench.manifest import open_manifest
from relocbench.video import sprites as S
from relocbench.video.sprites import SpritesConfig, SpriteVideos, build_sprites, open_sprites, sprites_tables

TINY = SpritesConfig(videos=(6, 4, 4), n_clips=6)


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    return build_sprites(tmp_path_factory.mktemp("spr") / "m", TINY)


def test_reflect_and_triangle_oracles():
    assert S._tri(np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5])).tolist() == [0.0, 0.5, 1.0, 0.5, 0.0, 1.0]
    # free motion 12 -> 70 between walls 12 and 52: 52 at 52, then back to 52 - 18 = 34 at 70
    assert S._reflect(np.array([12.0, 30.0, 52.0, 70.0, 92.0]), 12.0, 52.0).tolist() == [12.0, 30.0, 52.0, 34.0, 12.0]


def test_motions_do_what_their_names_say():
    p = {"x0": 20.0, "y0": 30.0, "cx": 32.0, "cy": 32.0, "v": 1.0, "dir": 0.0, "sign": 1.0, "phase": 0.0,
         "speed": 1.0, "noise_seed": 3, "scale": 1.0}
    t = np.arange(0.0, 96.0)
    x, y, s, rot, asp = S.MOTIONS["circle"](t, p)
    np.testing.assert_allclose(np.hypot(x - 32, y - 32), 11.0)  # constant radius
    x, y, s, rot, asp = S.MOTIONS["static"](t, p)
    assert np.ptp(x) == 0 and np.ptp(y) == 0 and np.all(s == 1) and np.all(rot == 0)
    x, y, s, rot, asp = S.MOTIONS["spin"](t, p)
    np.testing.assert_allclose(rot[:3], [0.0, 2 * math.pi / 24, 4 * math.pi / 24])  # a turn per second
    x, y, s, rot, asp = S.MOTIONS["grow"](t[:40], p)
    assert np.all(np.diff(s) > 0) and s[0] == pytest.approx(0.55)  # grows through one period
    x, y, s, rot, asp = S.MOTIONS["bounce"](t, p)
    assert x.min() >= 12 and x.max() <= 52 and np.all(y == 30.0)  # dir 0: horizontal, bounced
    x, y, s, rot, asp = S.MOTIONS["stopgo"](t, p)
    moving = np.abs(np.diff(x)) > 0
    assert moving[:11].all() and not moving[12:23].any()  # moves half a period, then rests


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="'size' parameter of SpritesConfig must be a multiple of 16"):
        SpritesConfig(size=50).validate()
    with pytest.raises(ConfigError, match="class-disjoint"):
        SpritesConfig(split=(("train", ("bounce",)), ("val", ("bounce",)), ("test", ("spin",)))).validate()
    with pytest.raises(ConfigError, match="made of motions from"):
        SpritesConfig(split=(("train", ("moonwalk",)), ("val", ("bob",)), ("test", ("spin",)))).validate()
    with pytest.raises(ConfigError, match="'actors' parameter"):
        SpritesConfig(actors=(3, 2)).validate()


def test_rendering_is_deterministic_and_cheap_to_redo():
    a = SpriteVideos(TINY).frames("train0001")
    b = SpriteVideos(TINY).frames("train0001")
    assert a.shape == (48, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, SpriteVideos(dataclasses.replace(TINY, seed=1)).frames("train0001"))
    clip = SpriteVideos(TINY).clip("train0001", 4)
    assert np.array_equal(clip, a[0:8])
    edge = SpriteVideos(TINY).clip("train0001", 1)  # frames -3..4, the first repeated
    assert np.array_equal(edge[:4], np.repeat(a[:1], 4, 0)) and np.array_equal(edge[4:], a[1:5])
    assert SpriteVideos(TINY).clip("train0001", 4, size=32).shape == (8, 32, 32, 3)
    with pytest.raises(ConfigError, match="no video 'train0099'"):
        SpriteVideos(TINY).frames("train0099")


def test_boxes_enclose_exactly_the_pixels_each_actor_changes():
    """Render each actor alone (no occluders) and compare with the empty background."""
    cfg = TINY
    tables, _ = sprites_tables(cfg)
    boxes = tables[("boxes", "train")]
    for video in ("train0000", "train0003"):
        src = SpriteVideos(cfg)
        scene = src.scene(video)
        empty = SpriteVideos(cfg)
        empty._scenes[video] = dataclasses.replace(scene, actors=[], occluders=[])
        for i, actor in enumerate(scene.actors):
            alone = SpriteVideos(cfg)
            alone._scenes[video] = dataclasses.replace(scene, actors=[actor], occluders=[])
            b = boxes[boxes["tubelet_id"] == f"{video}:{i}"]
            assert len(b) > 0
            for r in b.itertuples():
                t = int(r.time)
                diff = np.abs(alone.render_frame(video, t).astype(int) - empty.render_frame(video, t).astype(int)).sum(-1)
                ys, xs = np.nonzero(diff > 6)
                assert len(ys) > 0
                x1, y1, x2, y2 = np.array([r.x1, r.y1, r.x2, r.y2]) * 64
                # every changed pixel lies in the box (1 px of bilinear blur), and the box is tight
                assert xs.min() >= np.floor(x1) - 1 and xs.max() <= np.ceil(x2) and ys.min() >= np.floor(y1) - 1
                assert ys.max() <= np.ceil(y2)
                if x1 > 1 and x2 < 63 and y1 > 1 and y2 < 63:
                    assert xs.max() - xs.min() + 1 >= 0.6 * (x2 - x1)


def test_tables_split_pairs_and_keyframes(tiny_manifest):
    man = open_manifest(tiny_manifest)
    assert man.name == "synthetic-sprites" and man.task == "spatiotemporal"
    labels = {s: set(man.table("tubelets", s)["label"]) for s in ("train", "val", "test")}
    for s in labels:
        assert labels[s] <= set(TINY.classes(s))
    assert not labels["train"] & (labels["val"] | labels["test"])
    tub = {s: man.table("tubelets", s) for s in ("train", "val", "test")}
    for s, t in tub.items():  # several motions per video: distractors of other classes
        multi = t.groupby("video")["label"].nunique()
        n = t.groupby("video").size()
        assert (multi[n > 1] >= 2).all()
    for split in ("val", "test"):
        pairs = man.table("pairs", split)
        targets = man.table("targets", split)
        assert len(pairs) > 0
        assert (pairs["query_video"] != pairs["ref_video"]).all()
        lab = tub[split].set_index("tubelet_id")["label"]
        assert (lab[pairs["ref_tubelet_id"]].to_numpy() == pairs["label"].to_numpy()).all()
        for r in pairs.itertuples():
            kf = np.asarray(r.ref_keyframes)
            assert np.all((kf - 4) % 8 == 0) and kf.min() - 4 >= r.ref_start and kf.max() + 4 <= r.ref_end
            tt = targets[targets["pair_id"] == r.pair_id]
            assert set(tt["time"]) <= set(kf)
            assert set(lab[tt["tubelet_id"]]) == {r.label}
    b = man.table("boxes", "train")
    assert ((b["time"] - 4) % 8 == 0).all()


def test_build_is_byte_identical_and_refuses_to_overwrite(tiny_manifest, tmp_path):
    again = build_sprites(tmp_path / "m", TINY)
    for f in sorted(p.name for p in tiny_manifest.iterdir()):
        assert (again / f).read_bytes() == (tiny_manifest / f).read_bytes(), f
    from relocbench import OutputExistsError

    with pytest.raises(OutputExistsError, match="exists already"):
        build_sprites(tmp_path / "m", TINY)


def test_open_sprites_caches_under_the_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RELOCBENCH_CACHE", str(tmp_path))
    man = open_sprites(TINY)
    assert man.path == tmp_path / f"synthetic-sprites-{TINY.digest()}"
    stamp = (man.path / "manifest.json").stat().st_mtime_ns
    assert open_sprites(TINY).path == man.path
    assert (man.path / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert man.meta["params"]["split"]["test"] == list(TINY.classes("test"))
    assert SpritesConfig(seed=1).digest() != SpritesConfig().digest()
