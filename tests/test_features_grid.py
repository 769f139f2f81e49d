"""The mapping of feature rows onto the 16-frame steps: every fast path equals the general rule.

``_reference`` is the general rule written out plainly (no plan, no cache, no fast path):
the fractional row index of each step centre, then ``a + w (b - a)`` in float32 between the
two surrounding rows, or the rows themselves when every index is whole. The store's results
(identity, slice, gather and interpolation paths, cached plans) must equal it bit for bit,
signed zeros included, on random time axes, videos and rows; so must the ``.npy`` and HDF5
layouts, which read float32 rows into a buffer they reuse, on files the tests write.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench.errors import FeatureError
from relocbench.features import FeatureStore, TimeAxis, VideoInfo
from relocbench.features.timeaxis import grid_plan


def _reference(rows: np.ndarray, axis: TimeAxis, info: VideoInfo) -> np.ndarray:
    t = rows.shape[0]
    if axis.native:  # in frames, as the module docstring says
        rows_c = axis.offset_frames + np.arange(t, dtype=np.float64) * axis.stride_frames + axis.clip_frames / 2
        steps_c = 16 * np.arange(info.n_steps, dtype=np.float64) + 8
    else:
        rows_c = axis.row_centres_s(t, info)
        steps_c = (16 * np.arange(info.n_steps, dtype=np.float64) + 8) * (info.duration_s / info.n_frames)
    pos = np.interp(steps_c, rows_c, np.arange(t, dtype=np.float64))
    lo = np.minimum(np.floor(pos).astype(np.int64), t - 1)
    w = (pos - lo).astype(np.float32)
    if not w.any():
        return rows[lo].copy()
    a = rows[lo]
    b = rows[np.minimum(lo + 1, t - 1)]
    return a + w[:, None] * (b - a)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


class _MemoryStore(FeatureStore):
    """Rows held in a dict: the base class's checks, mapping and cache on known arrays."""

    kind = "memory"

    def __init__(self, arrays, **kw):
        super().__init__(**kw)
        self.arrays = arrays
        self.loads = 0

    def _load(self, video):
        self.loads += 1
        return self.arrays.get(video)

    def _has(self, video):
        return video in self.arrays

    def _infer_dim(self):
        return next(iter(self.arrays.values())).shape[1]


_axes = st.one_of(
    st.builds(lambda fps, clip, stride, offset: TimeAxis.clips(fps=fps, clip_frames=clip, stride_frames=stride,
                                                               offset_frames=offset),
              st.one_of(st.just("native"), st.sampled_from([15, 25, 29.97, 30]), st.floats(5, 60)),
              st.sampled_from([8, 16, 32, 12.5]), st.sampled_from([4, 8, 16, 24.0]),
              st.sampled_from([0, 4, 8, 3.5])),
    st.builds(lambda rows, span: TimeAxis.resized(rows, span=span), st.integers(1, 120),
              st.sampled_from(["duration", "grid"])),
)


@settings(max_examples=150, deadline=None)
@given(axis=_axes, n_frames=st.integers(16, 4000), native_fps=st.sampled_from([25.0, 30.0, 29.97, 15.0]),
       fps_jitter=st.floats(0.5, 2.0), row_delta=st.integers(-2, 2), dim=st.sampled_from([1, 3, 64]),
       seed=st.integers(0, 2**16))
def test_store_and_to_grid_equal_the_general_rule_bit_for_bit(axis, n_frames, native_fps, fps_jitter, row_delta,
                                                              dim, seed):
    duration = n_frames / (native_fps if fps_jitter > 1.5 else native_fps * fps_jitter)
    info = VideoInfo(duration, n_frames, max(1, n_frames // 16))
    lo, hi = axis.expected_rows(info)
    t = max(1, (lo + hi) // 2 + row_delta)
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((t, dim)).astype(np.float32)
    rows[rng.random((t, dim)) < 0.1] = -0.0  # signed zeros must survive as the general rule leaves them
    want = _reference(rows, axis, info)
    assert np.array_equal(_bits(axis.to_grid(rows.copy(), info)), _bits(want))
    store = _MemoryStore({"v": rows.copy()}, axis=axis, videos={"v": info}, cache_mb=0)
    if lo <= t <= hi:
        got = store.get("v")
        assert got.dtype == np.float32 and got.flags.c_contiguous and not got.flags.writeable
        assert got.shape == (info.n_steps, dim)
        assert np.array_equal(_bits(got), _bits(want))
    else:
        with pytest.raises(FeatureError, match=r"feature rows found"):
            store.get("v")


@settings(max_examples=40, deadline=None)
@given(n_steps=st.integers(1, 300), extra=st.integers(0, 1), stride=st.sampled_from([16, 8, 4]),
       src_dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_native_whole_row_paths_by_hand(n_steps, extra, stride, src_dtype):
    """Native rate, 16-frame clips from frame 0: step j (centre 16 j + 8) is row 16 j / stride."""
    k = 16 // stride
    n_frames = 16 * n_steps
    info = VideoInfo(n_frames / 30.0, n_frames, n_steps)
    axis = TimeAxis.clips(stride_frames=stride)
    rows = (np.arange((n_steps * k + extra) * 2, dtype=np.float64).reshape(-1, 2) / 3).astype(src_dtype)
    want = rows[0:n_steps * k:k].astype(np.float32)
    store = _MemoryStore({"v": rows}, axis=axis, videos={"v": info}, cache_mb=0)
    got = store.get("v")
    assert np.array_equal(_bits(got), _bits(want))
    assert got.flags.c_contiguous and not got.flags.writeable
    if stride == 16 and src_dtype == np.float32:  # the identity (or a leading slice): no copy
        assert np.shares_memory(got, rows)
    if stride == 16 and extra == 0:
        assert grid_plan(axis, rows.shape[0], info).kind == "identity"


def test_c3d_stride_8_returns_even_rows_by_hand():
    info = VideoInfo(3.2, 96, 6)  # 96 frames: 6 steps, centres 8, 24, ..., 88; rows centred at 8 i + 8
    axis = TimeAxis.clips(stride_frames=8)
    rows = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    got = _MemoryStore({"v": rows}, axis=axis, videos={"v": info}, cache_mb=0).get("v")
    assert got.tolist() == rows[[0, 2, 4, 6, 8, 10]].tolist()
    assert grid_plan(axis, 11, info).kind == "gather"


def test_interpolated_steps_by_hand():
    # rows at 15 fps centred (16 i + 8) / 15 s; a 30 fps video: step j centred (16 j + 8) / 30 s,
    # i.e. at row index (j - 0.5) / 2: step 0 clamps to row 0, steps 1 and 2 are 1/4 and 3/4 of the way
    info = VideoInfo(2.0, 60, 3)
    axis = TimeAxis.clips(fps=15)
    rows = np.array([[1.0, -2.0], [3.0, 6.0]], np.float32)
    got = _MemoryStore({"v": rows}, axis=axis, videos={"v": info}, cache_mb=0).get("v")
    assert got.tolist() == [[1.0, -2.0], [1.5, 0.0], [2.5, 4.0]]
    assert grid_plan(axis, 2, info).kind == "interp"


def test_plans_are_computed_once_per_row_count_and_video():
    info = VideoInfo(64.831, 1909, 119)
    axis = TimeAxis.clips(fps=25)
    assert grid_plan(axis, 99, info) is grid_plan(TimeAxis.clips(fps=25), 99, VideoInfo(64.831, 1909, 119))
    assert grid_plan(axis, 100, info) is not grid_plan(axis, 99, info)


def test_finite_check_is_exact_when_the_sum_overflows():
    info = VideoInfo(2.0, 60, 3)
    axis = TimeAxis.clips(fps=15)
    big = np.full((2, 2), 3e38, np.float32)  # finite; its sum is +inf in float32
    got = _MemoryStore({"v": big}, axis=axis, videos={"v": info}, cache_mb=0).get("v")
    assert np.isfinite(got).all() and got[0, 0] == np.float32(3e38)
    for bad, what in ((np.inf, "inf"), (-np.inf, "-inf"), (np.nan, "nan")):
        rows = big.copy()
        rows[1, 0] = bad
        with pytest.raises(FeatureError, match=r"v: holds 1 NaN or infinite value\(s\) in 1 row\(s\), first at row 1"):
            _MemoryStore({"v": rows}, axis=axis, videos={"v": info}, cache_mb=0).get("v")


def test_cache_counts_the_memory_a_returned_slice_keeps():
    # 17 rows at the native rate: 16 steps take rows 0..15, a view that keeps all 17 rows alive
    info = VideoInfo(256 / 30, 256, 16)
    rows = np.ones((17, 1024), np.float32)
    store = _MemoryStore({"v": rows}, axis=TimeAxis.clips(), videos={"v": info}, cache_mb=1)
    got = store.get("v")
    assert got.shape == (16, 1024)
    assert store._cache_bytes >= rows.nbytes
    assert store.get("v") is got and store.loads == 1


def test_open_feature_store_is_a_lazy_top_level_name():
    import subprocess
    import sys

    import relocbench
    import relocbench.features

    assert relocbench.open_feature_store is relocbench.features.open_feature_store
    assert "open_feature_store" in relocbench.__all__
    code = ("import sys, relocbench; assert 'open_feature_store' in dir(relocbench); "
            "print(sorted(m for m in sys.modules if m.startswith(('numpy', 'pandas', 'relocbench.features'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr  # importing the package loads neither numpy nor the features


# --------------------------------------------------------------------------- the layouts' own reads
def _file_stores(folder, rows_by_video, axis, infos, *, h5_dtype=None):
    """An ``.npy`` folder store and an HDF5 store holding ``rows_by_video``, on ``axis``."""
    import h5py

    from relocbench.features import FolderStore, HDF5Store

    (folder / "npy").mkdir()
    with h5py.File(folder / "f.h5", "w") as f:
        for v, rows in rows_by_video.items():
            np.save(folder / "npy" / f"{v}.npy", rows)
            f.create_dataset(v, data=rows if h5_dtype is None else rows.astype(h5_dtype))
    return (FolderStore(folder / "npy", axis=axis, videos=infos, cache_mb=0),
            HDF5Store(folder / "f.h5", axis=axis, videos=infos, cache_mb=0))


@settings(max_examples=60, deadline=None)
@given(axis=_axes, n_frames=st.integers(16, 2000), native_fps=st.sampled_from([25.0, 29.97, 15.0]),
       row_delta=st.integers(-1, 1), dim=st.sampled_from([1, 3, 64]), seed=st.integers(0, 2**16))
def test_npy_and_hdf5_reads_equal_the_general_rule_bit_for_bit(axis, n_frames, native_fps, row_delta, dim, seed):
    """The ``.npy`` and HDF5 layouts read float32 rows into the store's reused buffer: every
    path (identity, slice, gather, interpolation) still equals the general rule, and a result
    is never overwritten by the next read."""
    import tempfile
    from pathlib import Path

    infos = {"v": VideoInfo(n_frames / native_fps, n_frames, max(1, n_frames // 16)),
             "w": VideoInfo(n_frames / native_fps * 1.5, int(n_frames * 1.5), max(1, int(n_frames * 1.5) // 16))}
    rng = np.random.default_rng(seed)
    rows = {}
    for v, info in infos.items():
        lo, hi = axis.expected_rows(info)
        rows[v] = rng.standard_normal((min(hi, max(lo, (lo + hi) // 2 + row_delta)), dim)).astype(np.float32)
        rows[v][rng.random(rows[v].shape) < 0.1] = -0.0
    want = {v: _reference(rows[v], axis, infos[v]) for v in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for store in _file_stores(Path(tmp), rows, axis, infos):
            got = {v: store.get(v) for v in ("v", "w")}
            got["v2"] = store.get("v")
            for v, arr in got.items():
                assert arr.dtype == np.float32 and arr.flags.c_contiguous and not arr.flags.writeable
                assert np.array_equal(_bits(arr), _bits(want[v[0]])), (store.kind, v)
            assert not np.may_share_memory(got["v"], got["w"]) and not np.may_share_memory(got["v"], got["v2"])
            store.close()


def test_reads_that_are_not_plain_float32_go_through_numpy_and_h5py_with_the_same_values(tmp_path, monkeypatch):
    """float64 / big-endian / Fortran-ordered / version 2.0 ``.npy`` files and a float64 HDF5
    dataset: read by the general readers (counted here), converted, then mapped as always."""
    from relocbench.features import folder as folder_mod

    info = VideoInfo(2.0, 60, 3)
    axis = TimeAxis.clips(fps=15)   # steps 0, 1, 2 at row indices 0 (clamped), 1/4, 3/4 (by hand above)
    rows = np.array([[1.0, -2.0], [3.0, 6.0]])
    want = [[1.0, -2.0], [1.5, 0.0], [2.5, 4.0]]
    files = {"plain": rows.astype("<f4"), "f64": rows, "big": rows.astype(">f4"),
             "fortran": np.asfortranarray(rows.astype(np.float32))}
    infos = dict.fromkeys([*files, "v2"], info)
    npy, h5 = _file_stores(tmp_path, files, axis, infos, h5_dtype=np.float64)
    with open(tmp_path / "npy" / "v2.npy", "wb") as fh:
        np.lib.format.write_array(fh, rows.astype(np.float32), version=(2, 0))
    calls = []
    general = folder_mod._READERS["npy"]
    monkeypatch.setitem(folder_mod._READERS, "npy", lambda p, key: calls.append(p.stem) or general(p, key))
    for v in [*files, "v2"]:
        assert npy.get(v).tolist() == want, v
    assert calls == ["f64", "big", "fortran"]   # plain float32, version 1.0 or 2.0: read by the store itself
    for v in files:
        assert h5.get(v).tolist() == want, v
    h5.close()


def test_a_cut_short_npy_file_is_named_when_read(tmp_path):
    info = VideoInfo(2.0, 60, 3)
    npy, _ = _file_stores(tmp_path, {"a": np.ones((2, 64), np.float32)}, TimeAxis.clips(fps=15), {"a": info})
    p = tmp_path / "npy" / "a.npy"
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(FeatureError, match=r"a\.npy: a: unreadable \.npy file \(truncated: the header declares "
                                           r"shape \(2, 64\) of float32 \(640 bytes with the header\), the file "
                                           r"holds 636\)"):
        npy.get("a")
    bad = np.ones((2, 64), np.float32)
    bad[1, 5] = np.nan
    np.save(p, bad)
    with pytest.raises(FeatureError, match=r"a\.npy: a: holds 1 NaN or infinite value\(s\) in 1 row\(s\), first at "
                                           r"row 1"):
        npy.get("a")


def test_memory_stays_bounded_by_one_video_with_the_cache_off(tmp_path):
    """With ``cache_mb=0``, reading 24 videos holds one reused row buffer and the result at a
    time: the peak traced memory is a few videos' worth, not 24."""
    import tracemalloc

    info = VideoInfo(40.0, 1200, 75)   # 30 fps; rows at 25 fps every 16 frames: 62 or 63 rows
    axis = TimeAxis.clips(fps=25)
    rng = np.random.default_rng(0)
    rows = {f"v{k}": rng.standard_normal((62, 512)).astype(np.float32) for k in range(24)}
    npy, h5 = _file_stores(tmp_path, rows, axis, dict.fromkeys(rows, info))
    one = 75 * 512 * 4   # one video's steps (a raw video is smaller: 62 rows)
    for store in (npy, h5):
        store.get("v0")   # plans and h5py's file state made outside the measurement
        tracemalloc.start()
        for v in rows:
            store.get(v)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 3 * one, (store.kind, peak)
        assert store._row_buffer.nbytes == 62 * 512 * 4
        store.close()
        assert store._row_buffer is None


@pytest.mark.parametrize("shape,version", [((1, 1), (1, 0)), ((7, 3), (1, 0)), ((123457, 2048), (1, 0)),
                                           ((7, 3), (2, 0)), ((123457, 2048), (2, 0)), ((1, 1), (3, 0)),
                                           ((7, 3), (3, 0))])
def test_the_plain_npy_header_is_read_as_numpy_reads_it(shape, version):
    """The byte-matched header gives numpy's shape and data offset; any other header gives None."""
    import io

    from relocbench.features.folder import _plain_npy_header

    fmt = np.lib.format
    buf = io.BytesIO()
    if version == (3, 0):   # no public header writer for 3.0: a small array's file
        fmt.write_array(buf, np.zeros(shape, np.float32), version=version)
    else:
        write = fmt.write_array_header_1_0 if version == (1, 0) else fmt.write_array_header_2_0
        write(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    head = buf.getvalue()[:256]
    buf.seek(0)
    assert fmt.read_magic(buf) == version
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    assert read(buf) == (shape, False, np.dtype(np.float32))
    assert _plain_npy_header(head) == (*shape, buf.tell())
    for other, shp in ((np.float64, (2, 3)), (">f4", (2, 3)), (np.float16, (2, 3)),
                       (np.float32, (2, 3, 1)), (np.float32, (0, 3))):   # not float32, not 2-D, no values
        b2 = io.BytesIO()
        fmt.write_array(b2, np.zeros(shp, other), version=version)
        assert _plain_npy_header(b2.getvalue()) is None, (other, shp)
    b3 = io.BytesIO()
    fmt.write_array(b3, np.asfortranarray(np.zeros((2, 3), np.float32)), version=version)
    assert _plain_npy_header(b3.getvalue()) is None   # Fortran order
    assert _plain_npy_header(head[:20]) is None       # cut short
