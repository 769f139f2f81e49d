"""Speed and memory of reading declared feature sources, against a plain loop over the same files.

For the committed ActivityNet manifest's real video lengths, the benchmark writes features
of two sizes -- 2048-d on the ``i3d-actionformer`` axis (25 fps, 16-frame clips every 16
frames) and 512-d on the ``tsp`` axis (15 fps) -- in three layouts: a folder of per-video
``.npy``, one HDF5 file (one dataset per video) and a folder of ``.pt`` tensors; and two
sources whose rows fall on the steps' centres: 500-d ``c3d-release`` (native rate, every 8
frames: step ``j`` is row ``2 j``, one gather) in HDF5 and 2048-d at the native rate every 16
frames (step ``j`` is row ``j``: the rows as read) in ``.npy``. Then, for each, two workloads:

* **test pairs**: the query and the reference features of every test pair (948 pairs, two
  reads each);
* **train pass**: every training video once (``--train-every K``: every K-th one).

Four loops read the same files, each returning float32 C-contiguous arrays (the files hold
float32, so no loop converts anything):

* ``plain``: ``np.load`` / ``h5py`` / ``torch.load(weights_only=True)`` in a loop;
* ``plain+map``: the plain read, then the rows placed on the 16-frame steps by the general
  rule written the obvious NumPy way (``a + w (b - a)`` between the rows around each step
  centre, the indices and weights computed beforehand, untimed): the work a user's own loop
  must do to use these features on the benchmark's grid;
* ``store``: :func:`relocbench.features.open_feature_store` with the card and the manifest
  (coverage check, finite check, the mapping), its cache off (``cache_mb=0``), so that it
  reads exactly what the plain loop reads. It reads a float32 ``.npy`` file itself (the
  header matched as ``np.save`` writes it, not parsed by ``np.load``'s ``literal_eval``) and
  an HDF5 dataset through h5py's low-level ``h5d.open`` / ``DatasetID.read``, both into one
  buffer reused for every video; a ``.pt`` file through ``torch.load`` as the plain loop;
* ``cached store``: the same store with its default LRU cache (``$RELOCBENCH_FEATURE_CACHE_MB``,
  else 2048 MiB), made anew (empty) for each repeat: the test pairs read each of their videos
  several times, and a cached video is read and mapped once; the memory it holds is bounded
  by the cache setting (its peak column).

They alternate (plain, plain+map, store, cached store, ...) and the best of ``--repeats`` is
shown with the ratios store / plain, store / plain+map and cached / plain; each one's peak
traced memory is measured in one more pass (tracemalloc: numpy buffers included; not timed,
as tracing slows the store's many small Python allocations far more than the plain loop's). No file here is memory-mapped (the
store maps only ``.npy`` files of 256 MiB or more), so the traced peak holds every buffer: the
store's reused row buffer (the largest video's raw rows) and block scratch, and the result of
the video being read. The load average is printed beside every figure: on a shared machine
the times move with it.

    python benchmarks/bench_features.py [--quick] [--repeats 2] [--workdir DIR]

``--quick``: every 16th training video. Set ``OMP_NUM_THREADS=1`` on a shared CPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def loadavg() -> str:
    return f"{os.getloadavg()[0]:.1f}"


#: (features, dim, preset or time axis, layouts): the sources written and read.
SOURCES = (
    ("2048-d i3d-actionformer", 2048, "i3d-actionformer", ("npy", "hdf5", "pt")),
    ("512-d tsp", 512, "tsp", ("npy", "hdf5", "pt")),
    ("500-d c3d-release", 500, "c3d-release", ("hdf5",)),
    ("2048-d native/16", 2048, {"kind": "clips", "fps": "native", "clip_frames": 16, "stride_frames": 16}, ("npy",)),
)


def base_card(name: str, dim: int, axis) -> dict:
    from relocbench.features import PRESETS

    if isinstance(axis, str):
        return dict(PRESETS[axis])
    return {"name": name.replace(" ", "-").replace("/", "-"), "layout": "folder", "template": "{video}.npy",
            "dim": dim, "time_axis": dict(axis)}


def write_sources(work: Path, videos, infos, name: str, dim: int, axis_spec, layouts):
    """One npy folder, one HDF5 file and one pt folder (those in ``layouts``) with the axis's row count per video."""
    import h5py
    import torch

    from relocbench.features import load_card

    axis = load_card(base_card(name, dim, axis_spec)).time_axis
    rng = np.random.default_rng(0)
    tag = f"{dim}-{len(list(work.iterdir()))}"
    out = {}
    if "npy" in layouts:
        out["npy"] = work / f"npy-{tag}"
        out["npy"].mkdir()
    if "pt" in layouts:
        out["pt"] = work / f"pt-{tag}"
        out["pt"].mkdir()
    f = None
    if "hdf5" in layouts:
        out["hdf5"] = work / f"feats-{tag}.h5"
        f = h5py.File(out["hdf5"], "w")
    try:
        for v in videos:
            lo, hi = axis.expected_rows(infos[v])
            a = rng.standard_normal(((lo + hi) // 2, dim), dtype=np.float32)
            if "npy" in out:
                np.save(out["npy"] / f"{v}.npy", a)
            if "pt" in out:
                torch.save(torch.from_numpy(a), out["pt"] / f"{v}.pt")
            if f is not None:
                f.create_dataset(v, data=a)
    finally:
        if f is not None:
            f.close()
    return out


def card_for(layout: str, name: str, dim: int, axis_spec):
    d = base_card(name, dim, axis_spec)
    d["layout"] = "hdf5" if layout == "hdf5" else "folder"
    d["template"] = {"npy": "{video}.npy", "pt": "{video}.pt", "hdf5": "{video}"}[layout]
    return d


def naive_mapping(store, videos):
    """``{video: (lo, hi, w)}``: the general rule's indices and weights, for ``plain+map`` (not timed)."""
    out = {}
    for v in set(videos):
        info = store.info(v)
        rows = store.shape_of(v)[0]
        pos = store.axis.positions(rows, info)
        lo = np.minimum(np.floor(pos).astype(np.int64), rows - 1)
        out[v] = (lo, np.minimum(lo + 1, rows - 1), (pos - lo).astype(np.float32)[:, None])
    return out


def mapped(x: np.ndarray, plan) -> np.ndarray:
    lo, hi, w = plan
    a = x[lo]
    if not w.any():
        return a
    return a + w * (x[hi] - a)


def plain_reader(layout: str, path: Path):
    """(read, close): ``read(video)`` -> float32 C-contiguous array, as the store returns (no-op here)."""
    f32 = np.float32
    if layout == "npy":
        return lambda v: np.ascontiguousarray(np.load(path / f"{v}.npy", allow_pickle=False), f32), lambda: None
    if layout == "pt":
        import torch

        return lambda v: np.ascontiguousarray(torch.load(path / f"{v}.pt", weights_only=True).numpy(), f32), \
            lambda: None
    import h5py

    f = h5py.File(path, "r")
    return lambda v: np.ascontiguousarray(f[v][()], f32), f.close


def timed(fn):
    """(seconds, load average at the start) of one call, memory not traced (tracing slows the
    many small Python allocations of the store far more than the plain loop's)."""
    la = loadavg()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, la


def peak_mib(fn) -> float:
    """Peak traced memory (MiB) of one call (tracemalloc: numpy buffers included)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every 16th training video")
    ap.add_argument("--train-every", type=int, default=None, help="read every K-th training video (default 1)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=None, help="the first N test pairs only (a smoke run)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    every = args.train_every or (16 if args.quick else 1)

    from relocbench.features import default_cache_mb, open_feature_store, video_infos
    from relocbench.manifest import open_manifest

    man = open_manifest("activitynet")
    infos = video_infos(man)
    cache_mb = default_cache_mb()
    pairs = man.table("pairs", "test")
    pair_videos = [(str(q), str(r)) for q, r in zip(pairs["query_video"], pairs["ref_video"])][:args.pairs]
    train = sorted(set(map(str, man.table("segments", "train")["video"])))[::every]
    videos = sorted({v for p in pair_videos for v in p} | set(train))
    work = Path(tempfile.mkdtemp(prefix="bench-features-", dir=args.workdir))
    print(f"{len(pair_videos)} test pairs, {len(train)} training videos (every {every}), "
          f"{len(videos)} videos written per source; cached store: {cache_mb:g} MiB cache; "
          f"load average {loadavg()} on {os.cpu_count()} CPUs")
    rows_out = []
    try:
        for name, dim, axis_spec, layouts in SOURCES:
            t0 = time.perf_counter()
            sources = write_sources(work, videos, infos, name, dim, axis_spec, layouts)
            print(f"wrote {name} sources in {time.perf_counter() - t0:.0f} s (load {loadavg()})")
            for layout, path in sources.items():
                for workload, items in (("test pairs", [v for p in pair_videos for v in p]), ("train pass", train)):
                    best = {"plain": (9e9, ""), "map": (9e9, ""), "store": (9e9, ""), "cached": (9e9, "")}
                    read, close = plain_reader(layout, path)
                    card = card_for(layout, name, dim, axis_spec)
                    store = open_feature_store(path, card=card, manifest=man, cache_mb=0)
                    plans = naive_mapping(store, items)

                    def plain():
                        for v in items:
                            read(v)

                    def plain_map():
                        for v in items:
                            mapped(read(v), plans[v])

                    def through_store(s=store):
                        for v in items:
                            s.get(v)

                    def fresh_cached():  # a store with the default cache, empty (made untimed)
                        return open_feature_store(path, card=card, manifest=man, cache_mb=cache_mb)

                    for _ in range(args.repeats):  # alternated
                        best["plain"] = min(best["plain"], timed(plain))
                        best["map"] = min(best["map"], timed(plain_map))
                        best["store"] = min(best["store"], timed(through_store))
                        cached = fresh_cached()
                        best["cached"] = min(best["cached"], timed(lambda: through_store(cached)))
                        cached.close()
                    pm, sm = peak_mib(plain), peak_mib(through_store)
                    cached = fresh_cached()
                    cm = peak_mib(lambda: through_store(cached))
                    cached.close()
                    close()
                    store.close()
                    (ps, pl), (ms, ml), (ss, sl), (cs, cl) = (best[k] for k in ("plain", "map", "store", "cached"))
                    rows_out.append([name, layout, workload, len(items), f"{ps:.2f} (load {pl})",
                                     f"{ms:.2f} (load {ml})", f"{ss:.2f} (load {sl})", f"{ss / ps:.2f}",
                                     f"{ss / ms:.2f}", f"{pm:.0f}", f"{sm:.0f}", f"{cs:.2f} (load {cl})",
                                     f"{cs / ps:.2f}", f"{cm:.0f}"])
                    print(" | ".join(map(str, rows_out[-1])), flush=True)
            for p in sources.values():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = ["features", "layout", "workload", "reads", "plain s", "plain+map s", "store s", "store/plain",
            "store/(plain+map)", "plain peak MiB", "store peak MiB", "cached store s", "cached/plain",
            "cached peak MiB"]
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows_out:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
