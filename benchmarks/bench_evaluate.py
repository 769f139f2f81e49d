"""Speed of ``relocbench.metrics`` against the readable loop implementations of tests/.

Prints one table: protocol, input size, seconds, peak traced memory, and the speed-up over
the loop implementation on the same input (a smaller one where the loop would take minutes;
the row says which). Targets (issue 3): reloc-temporal 1,000,000 pairs x 10 predictions
< 3 s; activitynet-detection 100,000 predictions / 5,000 videos / 200 classes < 2 s;
ava 1,000,000 detection rows / 50,000 keyframes < 30 s (CSV reading included).

    python benchmarks/bench_evaluate.py            # full sizes
    python benchmarks/bench_evaluate.py --scale 0.1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from relocbench.metrics import activitynet_detection, ava_frame_map, evaluate_temporal  # noqa: E402
from relocbench.metrics.temporal import MAP_THRESHOLDS  # noqa: E402
from relocbench.predictions import TemporalPredictions  # noqa: E402
import reference_evaluators as ref  # noqa: E402


def timed(fn, *a, memory=False, **kw):
    """(result, wall seconds, CPU seconds of this process, peak traced bytes or None).

    Peak memory is traced in a second, separate run (tracing slows allocation-heavy code).
    """
    c, t = time.process_time(), time.perf_counter()
    out = fn(*a, **kw)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    peak = None
    if memory:
        tracemalloc.start()
        fn(*a, **kw)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, dt, cpu, peak


# ----------------------------------------------------------------------------- reloc-temporal

def temporal_input(n_pairs, k, seed=0):
    rng = np.random.default_rng(seed)
    wl = rng.integers(20, 300, n_pairs)
    gs = (rng.random(n_pairs) * (wl - 1)).astype(np.int64)
    ge = gs + 1 + (rng.random(n_pairs) * np.minimum(32, wl - gs)).astype(np.int64)
    ge = np.minimum(ge, wl)
    ids = np.array([f"p{i:07d}" for i in range(n_pairs)], dtype=object)
    pairs = pd.DataFrame({
        "pair_id": ids, "label": np.array([f"class{i}" for i in range(20)], dtype=object)[rng.integers(0, 20, n_pairs)],
        "query_start_step": np.zeros(n_pairs, np.int64), "query_end_step": rng.integers(1, 33, n_pairs),
        "ref_start_step": np.zeros(n_pairs, np.int64), "ref_end_step": wl,
        "gt_start_step": gs, "gt_end_step": ge,
        "ref_start_s": np.zeros(n_pairs), "ref_end_s": wl * 0.64, "gt_start_s": gs * 0.64, "gt_end_s": ge * 0.64,
    })
    n = n_pairs * k
    w = np.repeat(wl, k).astype(np.float64)
    s = rng.random(n) * w
    e = s + rng.random(n) * (w - s)
    near = rng.random(n) < 0.3
    s[near] = np.repeat(gs, k)[near]
    e[near] = np.clip(np.repeat(ge, k)[near] + rng.integers(-2, 3, near.sum()), s[near], w[near])
    preds = TemporalPredictions.from_arrays(ids, np.full(n_pairs, k), s, e, rng.random(n), unit="step")
    return pairs, preds


def temporal_loop_input(pairs, preds):
    rows = list(zip(pairs["pair_id"], pairs["label"], pairs["gt_start_step"], pairs["gt_end_step"]))
    results = {}
    for j, pid in enumerate(preds.pair_ids):
        a, b = preds.offsets[j], preds.offsets[j + 1]
        results[pid] = list(zip(preds.start[a:b].tolist(), preds.end[a:b].tolist(), preds.score[a:b].tolist()))
    return rows, results


# ----------------------------------------------------------------------------- ActivityNet

def anet_input(n_pred, n_videos, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    classes = [f"class {i:03d}" for i in range(n_classes)]
    db, gt_rows = {}, []
    for v in range(n_videos):
        c = classes[rng.integers(n_classes)]
        anns = []
        for _ in range(int(rng.integers(1, 4))):
            s = float(rng.uniform(0, 100))
            e = s + float(rng.uniform(2, 40))
            anns.append({"segment": [s, e], "label": c})
            gt_rows.append((f"v_{v:05d}", c, s, e))
        db[f"v_{v:05d}"] = {"subset": "validation", "duration": 150.0, "annotations": anns}
    used = sorted({r[1] for r in gt_rows})
    results, pred_rows = {}, []
    scores = rng.permutation(n_pred) / n_pred
    for i in range(n_pred):
        if rng.random() < 0.5:
            vid, c, s, e = gt_rows[rng.integers(len(gt_rows))]
            s, e = s + float(rng.normal(0, 3)), e + float(rng.normal(0, 3))
            e = max(e, s + 0.1)
        else:
            vid, c = f"v_{rng.integers(n_videos):05d}", used[rng.integers(len(used))]
            s = float(rng.uniform(0, 100))
            e = s + float(rng.uniform(2, 40))
        results.setdefault(vid, []).append({"label": c, "segment": [s, e], "score": float(scores[i])})
        pred_rows.append((vid, c, s, e, float(scores[i])))
    # the loop implementation takes rows in file order: rebuild them in the dict's order
    pred_rows = [(v, r["label"], r["segment"][0], r["segment"][1], r["score"]) for v, lst in results.items() for r in lst]
    return {"database": db}, {"results": results}, gt_rows, pred_rows


# ----------------------------------------------------------------------------- AVA

def ava_input(n_rows, n_keys, folder: Path, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20])
    videos = np.array([f"vid{i:04d}" for i in range(max(1, n_keys // 900))], dtype=object)
    kv = videos[np.arange(n_keys) % len(videos)]
    kt = 902 + np.arange(n_keys) // len(videos)
    # ground truth: 3 persons per key, 1-2 actions each
    gk = np.repeat(np.arange(n_keys), 3)
    x1, y1 = rng.uniform(0, 0.6, (2, gk.size))
    boxes = np.stack([x1, y1, x1 + rng.uniform(0.1, 0.4, gk.size), y1 + rng.uniform(0.1, 0.4, gk.size)], 1)
    two = rng.random(gk.size) < 0.5
    gkey = np.concatenate([gk, gk[two]])
    gbox = np.concatenate([boxes, boxes[two]])
    gact = rng.choice(ids, gkey.size)
    gt = pd.DataFrame({"video": kv[gkey], "timestamp": kt[gkey], "x1": gbox[:, 0], "y1": gbox[:, 1],
                       "x2": gbox[:, 2], "y2": gbox[:, 3], "action_id": gact})
    dk = rng.integers(0, n_keys, n_rows)
    src = rng.integers(0, gk.size, n_rows)
    jitter = rng.normal(0, 0.05, (n_rows, 4))
    dbox = np.clip(boxes[src] + jitter, 0, 1)
    det = pd.DataFrame({"video": kv[dk], "timestamp": kt[dk], "x1": dbox[:, 0], "y1": dbox[:, 1], "x2": dbox[:, 2],
                        "y2": dbox[:, 3], "action_id": rng.choice(ids, n_rows), "score": rng.permutation(n_rows) / n_rows})
    folder.mkdir(parents=True, exist_ok=True)
    gt.to_csv(folder / "gt.csv", header=False, index=False, float_format="%.6f")
    det.to_csv(folder / "det.csv", header=False, index=False, float_format="%.9f")
    (folder / "lm.pbtxt").write_text("".join(f'item {{\n  name: "a{i}"\n  id: {i}\n}}\n' for i in ids))
    return folder


def read_rows(path, n):
    df = pd.read_csv(path, header=None)
    return [tuple([r[0], int(r[1])] + [float(x) for x in r[2:6]] + [int(r[6])] + ([float(r[7])] if n == 8 else []))
            for r in df.itertuples(index=False)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    args = ap.parse_args()
    sc = args.scale
    rows = []

    # reloc-temporal
    n_pairs = int(1_000_000 * sc)
    pairs, preds = temporal_input(n_pairs, 10)
    res, dt, cpu, peak = timed(evaluate_temporal, pairs, preds, memory=True)
    small_p, small_pr = temporal_input(20_000, 10, seed=1)
    _, dt_fast, _, _ = timed(evaluate_temporal, small_p, small_pr)
    r_rows, r_res = temporal_loop_input(small_p, small_pr)
    t = time.perf_counter()
    ref.temporal_reference(r_rows, r_res)
    dt_ref = time.perf_counter() - t
    rows.append(("reloc-temporal", f"{n_pairs:,} pairs x 10", dt, cpu, "< 3 s", peak,
                 f"{dt_ref / dt_fast:,.0f}x (20,000 pairs x 10: loop {dt_ref:.2f} s, fast {dt_fast:.3f} s)"))

    # activitynet-detection
    n_pred, n_vid = int(100_000 * sc), int(5_000 * sc)
    gt, pr, gt_rows, pred_rows = anet_input(n_pred, n_vid, 200)
    res, dt, cpu, peak = timed(activitynet_detection, gt, pr, memory=True)
    t = time.perf_counter()
    loop = ref.activitynet_reference(gt_rows, pred_rows, [float(x) for x in np.linspace(0.5, 0.95, 10)])
    dt_ref = time.perf_counter() - t
    assert abs(loop["average_mAP"] - res["average_mAP"]) < 1e-9, (loop["average_mAP"], res["average_mAP"])
    rows.append(("activitynet-detection", f"{n_pred:,} preds, {n_vid:,} videos, 200 classes", dt, cpu, "< 2 s", peak,
                 f"{dt_ref / dt:,.0f}x (same input: loop {dt_ref:.1f} s; equal to 1e-9)"))

    # ava
    n_rows, n_keys = int(1_000_000 * sc), int(50_000 * sc)
    with tempfile.TemporaryDirectory() as tmp:
        f = ava_input(n_rows, n_keys, Path(tmp) / "big")
        res, dt, cpu, peak = timed(ava_frame_map, f / "gt.csv", f / "det.csv", f / "lm.pbtxt", memory=True)
        g = ava_input(100_000, 5_000, Path(tmp) / "small", seed=1)
        small, dt_fast, _, _ = timed(ava_frame_map, g / "gt.csv", g / "det.csv", g / "lm.pbtxt")
        gt_r, det_r = read_rows(g / "gt.csv", 7), read_rows(g / "det.csv", 8)
        ids = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20]
        t = time.perf_counter()
        loop = ref.ava_reference(gt_r, det_r, ids)
        dt_ref = time.perf_counter() - t
        assert abs(loop["mAP"] - small["mAP"]) < 1e-9, (loop["mAP"], small["mAP"])
    rows.append(("ava", f"{n_rows:,} rows, {n_keys:,} keyframes (CSV read incl.)", dt, cpu, "< 30 s", peak,
                 f"{dt_ref / dt_fast:,.0f}x (100,000 rows: loop {dt_ref:.2f} s, fast {dt_fast:.3f} s)"))

    import os
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (wall time grows with other jobs; CPU time less so)")
    w = [22, 46, 8, 8, 7, 9]
    print(f"{'protocol':<{w[0]}} {'input':<{w[1]}} {'wall s':>{w[2]}} {'CPU s':>{w[3]}} {'target':>{w[4]}} "
          f"{'peak MiB':>{w[5]}}  speed-up vs loop")
    for name, size, secs, cpu, target, pk, ratio in rows:
        print(f"{name:<{w[0]}} {size:<{w[1]}} {secs:>{w[2]}.2f} {cpu:>{w[3]}.2f} {target:>{w[4]}} "
              f"{pk / 2**20:>{w[5]}.0f}  {ratio}")


if __name__ == "__main__":
    main()
