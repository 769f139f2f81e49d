"""Time and peak memory of the dataset builders.

    .venv/bin/python benchmarks/bench_build.py [--quick] [--only ava,ucf24]

Every row runs in a fresh process (so that its peak resident memory is its own) and returns
``{"row", "input", "seconds", "peak_mib", "note"}``. Add a dataset by appending a function to
``ROWS``. Targets: the AVA builder on a generated CSV the size of the real AVA v2.2
training CSV (about 840,000 rows) in under a minute and a few GiB; the readable plain-Python
linking of ``tests/test_ava.py`` is measured on the same CSV for the ratio.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _combos(rng: np.random.Generator, n: int) -> List[List[int]]:
    """``n`` distinct combined labels: a pose (11 sit, 12 stand, 14 walk, 80 watch...) plus extras."""
    poses, extras = [1, 8, 10, 11, 12, 14], [17, 59, 74, 79, 80, 49, 15, 9, 4]
    out, seen = [], set()
    while len(out) < n:
        k = int(rng.integers(0, 4))
        lab = tuple(sorted({int(rng.choice(poses)), *map(int, rng.choice(extras, size=k, replace=False))}))
        if lab not in seen:
            seen.add(lab)
            out.append(list(lab))
    return out


def generate_ava_csv(path: Path, *, n_videos: int, persons: int, seed: int, combos: List[List[int]],
                     prefix: str) -> int:
    """An AVA-layout CSV: ``n_videos`` clips of keyframes 902..1798, ``persons`` people each, a
    combined label per person that changes with probability 0.15 a second. Returns its row count."""
    rng = np.random.default_rng(seed)
    times = np.arange(902, 1799)
    sizes = np.array([len(c) for c in combos])
    flat = np.concatenate([np.asarray(c) for c in combos])
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts = []
    for v in range(n_videos):
        vid = f"{prefix}{v:04d}"
        for p in range(persons):
            change = rng.random(len(times)) < 0.15
            change[0] = True
            labs = rng.integers(0, len(combos), size=int(change.sum()))[np.cumsum(change) - 1]
            present = rng.random(len(times)) < 0.68  # about 840,000 rows for 235 videos
            t, lab = times[present], labs[present]
            x1 = np.round(rng.uniform(0, 0.6, len(t)), 3)
            y1 = np.round(rng.uniform(0, 0.5, len(t)), 3)
            rep = sizes[lab]
            idx = np.repeat(np.arange(len(t)), rep)
            within = np.arange(len(idx)) - np.repeat(np.cumsum(rep) - rep, rep)
            parts.append(pd.DataFrame({
                "video": vid, "time": t[idx], "x1": x1[idx], "y1": y1[idx], "x2": np.round(x1[idx] + 0.3, 3),
                "y2": np.round(y1[idx] + 0.4, 3), "action": flat[offs[lab[idx]] + within], "person": p,
            }))
    df = pd.concat(parts, ignore_index=True)
    df.to_csv(path, header=False, index=False, float_format="%.3f")
    return len(df)


def _ava_inputs(tmp: Path, quick: bool) -> Dict[str, object]:
    rng = np.random.default_rng(0)
    combos = _combos(rng, 150)
    n_train = 24 if quick else 235
    train_rows = generate_ava_csv(tmp / "train.csv", n_videos=n_train, persons=2, seed=1, combos=combos, prefix="tr")
    val_rows = generate_ava_csv(tmp / "val.csv", n_videos=64 if not quick else 8, persons=2, seed=2, combos=combos,
                                prefix="va")
    (tmp / "labels.pbtxt").write_text("".join(f'item {{\n  name: "action {i}"\n  id: {i}\n}}\n' for i in range(1, 81)))
    (tmp / "split.json").write_text(json.dumps([combos[:27], combos[27:54]]))
    return {"train_rows": train_rows, "val_rows": val_rows}


def row_ava(quick: bool) -> dict:
    from relocbench.datasets.ava import build_ava

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        info = _ava_inputs(tmp, quick)
        t0 = time.perf_counter()
        res = build_ava(tmp / "train.csv", tmp / "val.csv", tmp / "out", label_map=tmp / "labels.pbtxt",
                        class_split=tmp / "split.json")
        dt = time.perf_counter() - t0
        n_tub = sum(len(res.tables[("tubelets", s)]) for s in ("train", "val", "test"))
        n_pairs = sum(len(res.tables[("pairs", s)]) for s in ("val", "test"))
    return {"row": "ava: build_ava (read, link, split, pair, write)",
            "input": f"{info['train_rows']:,} + {info['val_rows']:,} CSV rows",
            "seconds": dt, "peak_mib": _peak_mib(), "note": f"{n_tub:,} tubelets, {n_pairs:,} pairs"}


def _linking_inputs(quick: bool):
    d = tempfile.mkdtemp()
    tmp = Path(d)
    rng = np.random.default_rng(0)
    n = generate_ava_csv(tmp / "train.csv", n_videos=24 if quick else 235, persons=2, seed=1,
                         combos=_combos(rng, 150), prefix="tr")
    return tmp / "train.csv", n


def row_ava_linking(quick: bool) -> dict:
    from relocbench.datasets.ava import link_tubelets, person_keyframes, read_ava_csv, read_exclusions
    from relocbench.datasets.common import Report

    path, n = _linking_inputs(quick)
    t0 = time.perf_counter()
    rec = person_keyframes(read_ava_csv(path), label_ids=None, exclusions=read_exclusions(None), report=Report(),
                           role="training")
    tub, _ = link_tubelets(rec, "train")
    dt = time.perf_counter() - t0
    return {"row": "ava: read + link tubelets (library)", "input": f"{n:,} CSV rows", "seconds": dt,
            "peak_mib": _peak_mib(), "note": f"{len(tub):,} tubelets"}


def row_ava_linking_plain(quick: bool) -> dict:
    spec = importlib.util.spec_from_file_location("_test_ava", REPO / "tests" / "test_ava.py")
    sys.path.insert(0, str(REPO / "tests"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path, n = _linking_inputs(quick)
    t0 = time.perf_counter()
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh)]
    tub = mod.plain_tubelets(rows)
    dt = time.perf_counter() - t0
    return {"row": "ava: read + link tubelets (plain Python reference)", "input": f"{n:,} CSV rows",
            "seconds": dt, "peak_mib": _peak_mib(), "note": f"{len(tub):,} tubelets"}


def row_ucf24(quick: bool) -> dict:
    from relocbench.datasets.ucf24 import build_ucf24

    ann = SHARED / "ucf24" / "pyannot_with_class_names.pkl"
    if not ann.exists():
        return {"row": "ucf24: build_ucf24", "input": "-", "seconds": float("nan"), "peak_mib": float("nan"),
                "note": f"skipped: {ann} is absent"}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = build_ucf24(ann, Path(d) / "out")
        dt = time.perf_counter() - t0
        n_pairs = sum(len(res.tables[("pairs", s)]) for s in ("val", "test"))
    return {"row": "ucf24: build_ucf24 (defaults)", "input": "4,458 tubes", "seconds": dt, "peak_mib": _peak_mib(),
            "note": f"{n_pairs:,} pairs"}


def row_activitynet(quick: bool) -> dict:
    """The full ActivityNet manifest from ../shared/data (target: under 10 s here)."""
    from relocbench.datasets.activitynet import build_activitynet

    d = SHARED / "activitynet"
    if not (d / "anet_anno_action.json").exists():
        return {"row": "activitynet: build_activitynet", "input": "-", "seconds": float("nan"),
                "peak_mib": float("nan"), "note": f"skipped: {d} is absent"}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = build_activitynet(d / "anet_anno_action.json", Path(tmp) / "out", lengths=d / "c3d_length.json",
                                class_split=d / "class_perm.npy")
        dt = time.perf_counter() - t0
    n_seg = sum(len(res.tables[("segments", s)]) for s in ("train", "val", "test"))
    return {"row": "activitynet: build_activitynet (feng2018, full)", "input": "19,228 videos", "seconds": dt,
            "peak_mib": _peak_mib(), "note": f"{n_seg:,} segments; target < 10 s"}


#: The benchmark rows, in order; each runs in its own process.
ROWS: List[Callable[[bool], dict]] = [row_activitynet, row_ava, row_ava_linking, row_ava_linking_plain, row_ucf24]


def _run(fn_name: str, quick: bool, q) -> None:
    q.put(globals()[fn_name](quick))


def run_row(fn: Callable[[bool], dict], quick: bool) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(fn.__name__, quick, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="A tenth of the AVA size (a smoke run).")
    ap.add_argument("--only", default="", help="Comma-separated substrings of row function names.")
    args = ap.parse_args(argv)
    rows = [r for r in ROWS if not args.only or any(s in r.__name__ for s in args.only.split(","))]
    results = [run_row(r, args.quick) for r in rows]
    by = {r["row"]: r for r in results}
    lib = by.get("ava: read + link tubelets (library)")
    plain = by.get("ava: read + link tubelets (plain Python reference)")
    table = []
    for r in results:
        ratio = ""
        if lib and plain and r is lib:
            ratio = f"{plain['seconds'] / lib['seconds']:.1f}x faster than plain"
        table.append([r["row"], r["input"], f"{r['seconds']:.2f}", f"{r['peak_mib']:.0f}",
                      "; ".join(x for x in (r["note"], ratio) if x)])
    cols = ["row", "input", "seconds", "peak RSS (MiB)", "note"]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *table)]
    print("Dataset builders: time and peak memory (fresh process per row)")
    for line in [cols, ["-" * w for w in widths], *table]:
        print("  ".join(str(x).ljust(w) if i in (0, 4) else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths))))

if __name__ == "__main__":
    main()
