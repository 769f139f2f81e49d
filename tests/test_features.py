"""Feature stores: the official C3D HDF5 layout, per-video HDF5, .npy folders and synthetic."""
from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from relocbench.errors import ConfigError, FeatureError
from relocbench.features import (
    DEFAULT_CACHE_MB,
    C3DHDF5Store,
    HDF5Store,
    NpyFolderStore,
    SyntheticFeatures,
    open_feature_store,
    resample_rows,
    stable_rng,
)
from relocbench.manifest import write_manifest

REPO = Path(__file__).resolve().parent.parent


def _rows(t, d=6, seed=0):
    return np.random.default_rng(seed).standard_normal((t, d)).astype(np.float32)


def _timelines():
    rows = [
        # video, label, start_step, end_step, n_steps
        ("vidA", "Archery", 2, 10, 30),
        ("vidA", "Archery", 15, 25, 30),
        ("vidB", "Archery", 5, 17, 24),
        ("vidB", "Bowling", 18, 22, 24),
        ("vidC", "Bowling", 0, 12, 20),
        ("vidC", "Bowling", 12, 12, 20),   # zero steps: renders nothing
        ("vidD", "Curling", 3, 9, 12),
    ]
    df = pd.DataFrame(rows, columns=["video", "label", "start_step", "end_step", "n_steps"])
    df["start_s"] = df["start_step"] * 0.5
    df["end_s"] = df["end_step"] * 0.5
    df["kept"] = True
    df["duration_s"] = df["n_steps"] * 0.5
    df["n_frames"] = df["n_steps"] * 16
    return df


@pytest.fixture
def manifest_dir(tmp_path):
    meta = {"name": "tiny", "task": "temporal", "builder": {"name": "test", "version": "0"},
            "protocol": "feng2018", "params": {}, "inputs": {}, "report": {}}
    return write_manifest(tmp_path / "m", {("timelines", None): _timelines()}, meta)


# --------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("stride,expected", [
    (16, [0, 1, 2, 3, 4, 5, 6]),
    (8, [0, 2, 4, 6]),
    (4, [0, 4]),
    (32, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]),
    (24, [0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 6]),  # step j takes row floor(16 j / 24)
])
def test_resample_rows_oracle(stride, expected):
    rows = np.arange(7)[:, None]
    assert resample_rows(rows, stride)[:, 0].tolist() == expected


def test_resample_rows_rejects_bad_stride():
    with pytest.raises(ConfigError, match="stride_frames"):
        resample_rows(np.zeros((3, 2)), 0)


# --------------------------------------------------------------------------- HDF5 C3D layout
def _write_c3d(path, videos):
    with h5py.File(path, "w") as f:
        for vid, arr in videos.items():
            f.create_group(vid).create_dataset("c3d_features", data=arr)


def test_c3d_layout_keeps_every_second_row(tmp_path):
    a, b = _rows(7, 500, 1), _rows(8, 500, 2)
    _write_c3d(tmp_path / "c3d.hdf5", {"v_abc": a, "v_xyz": b})
    store = open_feature_store(tmp_path / "c3d.hdf5")
    assert isinstance(store, C3DHDF5Store)
    assert store.dim == 500
    got = store.get("abc")
    assert got.dtype == np.float32 and got.shape == (4, 500)
    np.testing.assert_array_equal(got, a[::2])
    np.testing.assert_array_equal(store.get("v_xyz"), b[::2])
    assert "abc" in store and "nope" not in store
    assert store.describe()["stride_frames"] == 8
    store.close()


def test_c3d_missing_video_error_and_skip(tmp_path):
    _write_c3d(tmp_path / "c3d.h5", {"v_abc": _rows(4)})
    store = C3DHDF5Store(tmp_path / "c3d.h5")
    with pytest.raises(FeatureError, match=r"c3d\.h5: nope: video not found"):
        store.get("nope")
    skipping = C3DHDF5Store(tmp_path / "c3d.h5", skip_missing=True)
    got = skipping.get_many(["abc", "nope", "nope2", "abc"])
    assert list(got) == ["abc"]
    assert skipping.report.to_dict() == {
        "video missing from the feature store": {"count": 2, "examples": ["nope", "nope2"]}
    }


def test_store_is_picklable_after_reading(tmp_path):
    _write_c3d(tmp_path / "c3d.h5", {"v_abc": _rows(4)})
    store = C3DHDF5Store(tmp_path / "c3d.h5")
    first = store.get("abc").copy()
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.get("abc"), first)


def test_returned_features_are_read_only(tmp_path):
    _write_c3d(tmp_path / "c3d.h5", {"v_abc": _rows(4)})
    arr = C3DHDF5Store(tmp_path / "c3d.h5").get("abc")
    with pytest.raises(ValueError):
        arr[0, 0] = 1.0


# --------------------------------------------------------------------------- per-video HDF5
def test_per_video_hdf5(tmp_path):
    a = _rows(5)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("abc", data=a.astype(np.float64))
        f.create_dataset("v_def", data=a[:3])
    store = open_feature_store(tmp_path / "f.h5")
    assert isinstance(store, HDF5Store)
    np.testing.assert_array_equal(store.get("abc"), a)
    np.testing.assert_array_equal(store.get("def"), a[:3])
    halved = open_feature_store(tmp_path / "f.h5", stride_frames=8)
    np.testing.assert_array_equal(halved.get("abc"), a[::2])


def test_wrong_dimension_nan_and_shape_errors(tmp_path):
    bad = _rows(5)
    bad[3, 2] = np.nan
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("good", data=_rows(5))
        f.create_dataset("nan", data=bad)
        f.create_dataset("inf", data=np.full((2, 6), np.inf, np.float32))
        f.create_dataset("flat", data=np.zeros(6, np.float32))
        f.create_dataset("wide", data=_rows(3, 7))
    store = HDF5Store(tmp_path / "f.h5", dim=6)
    with pytest.raises(FeatureError, match=r"nan: holds 1 NaN or infinite value\(s\) in 1 row\(s\), first at row 3"):
        store.get("nan")
    with pytest.raises(FeatureError, match="inf: holds 12 NaN or infinite"):
        store.get("inf")
    with pytest.raises(FeatureError, match=r"flat: expected a 2-D dataset"):
        store.get("flat")
    with pytest.raises(FeatureError, match=r"wide: expected 6-dimensional features, found 7"):
        store.get("wide")
    # malformed features are errors even with skip_missing
    with pytest.raises(FeatureError, match="NaN"):
        HDF5Store(tmp_path / "f.h5", dim=6, skip_missing=True).try_get("nan")


def test_hdf5_without_known_layout(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("v_abc").create_dataset("other", data=_rows(3))
    with pytest.raises(FeatureError, match="neither groups v_<id>/c3d_features"):
        open_feature_store(tmp_path / "g.h5")


# --------------------------------------------------------------------------- npy folder
def test_npy_folder_with_stride(tmp_path):
    a = _rows(3, 2048)
    np.save(tmp_path / "abc.npy", a)
    np.save(tmp_path / "v_def.npy", a[:2])
    store = open_feature_store(tmp_path, stride_frames=32)
    assert isinstance(store, NpyFolderStore)
    assert store.dim == 2048
    np.testing.assert_array_equal(store.get("abc"), a[[0, 0, 1, 1, 2, 2]])
    np.testing.assert_array_equal(store.get("def"), a[[0, 0, 1, 1]])
    with pytest.raises(FeatureError, match="ghi: video not found"):
        store.get("ghi")


def test_npy_folder_wrong_dim(tmp_path):
    np.save(tmp_path / "abc.npy", _rows(3, 4))
    with pytest.raises(FeatureError, match="abc: expected 8-dimensional features, found 4"):
        NpyFolderStore(tmp_path, dim=8).get("abc")


def test_factory_errors(tmp_path):
    with pytest.raises(FeatureError, match="feature store not found"):
        open_feature_store(tmp_path / "nothing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FeatureError, match="not an HDF5 file"):
        open_feature_store(tmp_path / "text.h5")
    with pytest.raises(ConfigError, match="need a manifest"):
        open_feature_store("synthetic")
    with pytest.raises(ConfigError, match="apply only to synthetic"):
        open_feature_store(tmp_path, noise=2.0)


# --------------------------------------------------------------------------- synthetic
def test_stable_rng_is_not_python_hash():
    a = stable_rng("x", 1, "v").standard_normal(3)
    b = stable_rng("x", 1, "v").standard_normal(3)
    c = stable_rng("x", 2, "v").standard_normal(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_synthetic_shapes_determinism_and_seed(manifest_dir):
    store = open_feature_store("synthetic", manifest=manifest_dir)
    assert isinstance(store, SyntheticFeatures)
    assert store.videos() == ["vidA", "vidB", "vidC", "vidD"]
    x = store.get("vidA")
    assert x.shape == (30, 500) and x.dtype == np.float32 and np.isfinite(x).all()
    again = SyntheticFeatures(_timelines()).get("vidA")
    np.testing.assert_array_equal(x, again)
    other = SyntheticFeatures(_timelines(), seed=1).get("vidA")
    assert not np.allclose(x, other)
    # a video's features depend on its own rows only, not on the rest of the table
    alone = SyntheticFeatures(_timelines().query("video == 'vidA'")).get("vidA")
    np.testing.assert_array_equal(x, alone)


def test_cache_is_bounded_by_bytes_and_evicts_least_recent(monkeypatch):
    calls = []

    class Counting(SyntheticFeatures):
        def _load(self, video):
            calls.append(video)
            return super()._load(video)

    # vidA 30 x 500 float32 = 60,000 bytes; vidB 48,000; vidC 40,000; vidD 24,000
    mb = 110_000 / 2**20
    store = Counting(_timelines(), cache_mb=mb)
    a = store.get("vidA")
    assert store.get("vidA") is a and calls == ["vidA"]            # a hit returns the cached array
    store.get("vidB")                                              # 108,000 bytes: both fit
    assert list(store._cache) == ["vidA", "vidB"]
    store.get("vidA")                                              # vidA becomes the most recent
    store.get("vidC")                                              # 148,000 > budget: vidB goes
    assert list(store._cache) == ["vidA", "vidC"] and store._cache_bytes == 100_000
    store.get("vidB")
    assert calls == ["vidA", "vidB", "vidC", "vidB"]
    # larger than the whole budget: returned, not cached; 0 turns the cache off
    assert Counting(_timelines(), cache_mb=50_000 / 2**20).get("vidA") is not None
    off = Counting(_timelines(), cache_mb=0)
    off.get("vidD")
    assert not off._cache and off._cache_bytes == 0
    np.testing.assert_array_equal(off.get("vidD"), store.get("vidD"))  # same values either way
    # a pickled store (DDP, DataLoader workers) starts with an empty cache
    plain = SyntheticFeatures(_timelines(), cache_mb=mb)
    plain.get("vidA")
    clone = pickle.loads(pickle.dumps(plain))
    assert not clone._cache and clone._cache_bytes == 0 and clone.cache_mb == mb
    # the default and its environment override
    assert SyntheticFeatures(_timelines()).cache_mb == DEFAULT_CACHE_MB
    monkeypatch.setenv("RELOCBENCH_FEATURE_CACHE_MB", "12.5")
    assert SyntheticFeatures(_timelines()).cache_mb == 12.5
    monkeypatch.setenv("RELOCBENCH_FEATURE_CACHE_MB", "lots")
    with pytest.raises(ConfigError, match="RELOCBENCH_FEATURE_CACHE_MB.*MiB >= 0.*'lots'"):
        SyntheticFeatures(_timelines())
    with pytest.raises(ConfigError, match="'cache_mb'.*-1"):
        SyntheticFeatures(_timelines(), cache_mb=-1)


def test_synthetic_is_the_same_on_every_machine():
    """A fingerprint of the generator: it must not change between machines or releases."""
    x = SyntheticFeatures(_timelines()).get("vidD")
    fresh = SyntheticFeatures(_timelines())
    np.testing.assert_array_equal(x, fresh.get("vidD"))
    rng = stable_rng("relocbench-synthetic", 0, "video", "vidD")
    background = rng.standard_normal(500, dtype=np.float32)
    # with every perturbation off, background steps are exactly the background vector and
    # action steps are background_leak * background + the interpolated class phases
    plain = SyntheticFeatures(_timelines(), noise=0.0, appearance_shift=0.0, background_activity=0.0).get("vidD")
    np.testing.assert_array_equal(plain[:3], np.broadcast_to(background, (3, 500)))
    np.testing.assert_array_equal(plain[9:], np.broadcast_to(background, (3, 500)))
    assert not np.allclose(plain[3:9], background)


def test_synthetic_classes_are_recognisable_but_not_trivial():
    store = SyntheticFeatures(_timelines())

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    a = unit(store.get("vidA")[2:10].mean(0))    # Archery
    b = unit(store.get("vidB")[5:17].mean(0))    # Archery
    c = unit(store.get("vidC")[0:12].mean(0))    # Bowling
    same, diff = float(a @ b), float(a @ c)
    assert same > diff + 0.05
    # the class signal is not an exact copy: appearance and noise keep instances apart
    assert same < 0.99


def test_background_activity_touches_only_unannotated_steps():
    quiet = SyntheticFeatures(_timelines(), noise=0.0, appearance_shift=0.0, background_activity=0.0)
    busy = SyntheticFeatures(_timelines(), noise=0.0, appearance_shift=0.0, background_activity=1.0)
    a, b = quiet.get("vidA"), busy.get("vidA")
    annotated = np.zeros(30, dtype=bool)
    annotated[2:10] = annotated[15:25] = True
    np.testing.assert_array_equal(a[annotated], b[annotated])
    assert not np.allclose(a[~annotated], b[~annotated], atol=1e-3)
    # quiet background is the constant scene vector
    np.testing.assert_array_equal(a[~annotated], np.broadcast_to(a[0], ((~annotated).sum(), 500)))


def test_synthetic_class_phases():
    store = SyntheticFeatures(_timelines(), class_similarity=0.0)
    for label in ("Archery", "Bowling", "Curling", "Zumba"):
        ph = store.class_phases(label)
        assert 3 <= ph.shape[0] <= 6 and ph.shape[1] == 500
    ident = SyntheticFeatures(_timelines(), class_similarity=1.0)
    k = min(ident.class_phases("Archery").shape[0], ident.class_phases("Bowling").shape[0])
    np.testing.assert_allclose(ident.class_phases("Archery")[:k], ident.class_phases("Bowling")[:k])


def test_synthetic_missing_and_bad_tables():
    store = SyntheticFeatures(_timelines(), skip_missing=True)
    with pytest.raises(FeatureError, match="nope: video not found in the synthetic feature store"):
        store.get("nope")
    assert store.try_get("nope") is None
    assert store.report.count("video missing from the feature store") == 1
    df = _timelines()
    df.loc[1, "n_steps"] = 31
    with pytest.raises(FeatureError, match=r"vidA: the timelines table gives two lengths for this video \(30 and 31"):
        SyntheticFeatures(df)
    with pytest.raises(FeatureError, match=r"lacks columns \['n_steps'\]"):
        SyntheticFeatures(_timelines().drop(columns="n_steps"))
    with pytest.raises(ConfigError, match="'class_similarity' parameter of SyntheticFeatures must be a number in"):
        SyntheticFeatures(_timelines(), class_similarity=1.5)
    with pytest.raises(ConfigError, match="'noise' parameter"):
        SyntheticFeatures(_timelines(), noise=-1.0)


def test_synthetic_on_the_committed_manifest():
    if not (REPO / "manifests" / "activitynet" / "manifest.json").is_file():
        pytest.skip("manifests/activitynet is not committed yet")
    store = open_feature_store("synthetic", manifest=REPO / "manifests" / "activitynet")
    video = store.videos()[0]
    x = store.get(video)
    assert x.shape == (store.n_steps(video), 500)


# --------------------------------------------------------------------------- extract-features files
def _write_extracted(path, videos, **attrs):
    with h5py.File(path, "w") as f:
        f.attrs.update({"relocbench_features": 1, "backbone": "handcrafted", "weights": "none", "pca": "none",
                        "layout": "relocbench", **attrs})
        for vid, arr in videos.items():
            f.create_dataset(vid, data=arr)


def test_extracted_file_is_read_at_its_declared_step(tmp_path):
    from relocbench.features import ExtractedHDF5Store

    a = _rows(7)
    _write_extracted(tmp_path / "e.h5", {"abc": a}, step_frames=8, dim=6)
    store = open_feature_store(tmp_path / "e.h5")
    assert isinstance(store, ExtractedHDF5Store) and store.stride_frames == 8
    np.testing.assert_array_equal(store.get("abc"), a[::2])      # ceil(7 * 8 / 16) = 4 steps
    assert store.describe()["backbone"] == "handcrafted" and store.describe()["step_frames"] == 8
    # a stride that agrees with the declared step is accepted; one that disagrees is refused, naming both
    np.testing.assert_array_equal(open_feature_store(tmp_path / "e.h5", stride_frames=8).get("abc"), a[::2])
    with pytest.raises(ConfigError, match=r"e\.h5: declares step_frames 8 \(relocbench_features attributes\); "
                                          r"stride_frames 16 disagrees"):
        open_feature_store(tmp_path / "e.h5", stride_frames=16)
    # the same rows without the attribute: a plain per-video file at 16 frames
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("abc", data=a)
    assert type(open_feature_store(tmp_path / "plain.h5")) is HDF5Store


def test_extracted_file_errors(tmp_path):
    _write_extracted(tmp_path / "bad.h5", {"abc": _rows(3)}, step_frames=0)
    with pytest.raises(FeatureError, match=r"bad\.h5: declares step_frames 0; expected a positive number"):
        open_feature_store(tmp_path / "bad.h5")
    _write_extracted(tmp_path / "empty.h5", {}, step_frames=16, report='{"failed": [{"source": "x.mp4"}]}')
    with pytest.raises(FeatureError, match=r"empty\.h5: holds no video features \(every video failed\?"):
        open_feature_store(tmp_path / "empty.h5")


def test_opening_a_npy_folder_store_does_not_import_pandas(tmp_path):
    """pandas (hundreds of ms to import) is loaded by the synthetic features only, not by file stores."""
    import subprocess
    import sys

    np.save(tmp_path / "abc.npy", _rows(4))
    code = ("import sys; from relocbench.features import open_feature_store; "
            f"s = open_feature_store({str(tmp_path)!r}); assert s.get('abc').shape == (4, 6); "
            "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
