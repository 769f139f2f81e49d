"""Speed of ``relocbench evaluate`` from its files, and of ``relocbench.metrics`` from arrays.

First table (end to end): for each protocol and size (pairs; videos x 10 predictions for
ActivityNet, videos x 1 prediction for ``activitynet-detection-gt``, where reading the
ground truth dominates; detection rows for ``ava``, on size / 20 keyframes), the whole
``relocbench evaluate`` command as a user runs it, in a fresh process, against the parse
floor of the same input files (orjson.loads of each JSON file, in a fresh process, garbage
collection off, the default-settings time beside it; for AVA's CSVs pyarrow.csv.read_csv,
with pandas.read_csv beside it), their ratio
(target: within 2x at 1M), the command's peak memory (its own high-water mark or, where a
forked second reader runs beside it, its process tree's proportional set size, whichever is
larger; target: < 2 GB at 1M) and seconds per
million pairs (constant when time grows linearly). Above it: the startup of ``--version``
and ``--help`` beside ``python -c pass`` (target < 0.5 s).

Second table (kernels): protocol, input size, seconds, peak traced memory, and the speed-up
over the loop implementation on the same input (a smaller one where the loop would take
minutes; the row says which). Targets: reloc-temporal 1,000,000 pairs x 10 predictions
< 3 s; activitynet-detection 100,000 predictions / 5,000 videos / 200 classes < 2 s;
ava 1,000,000 detection rows / 50,000 keyframes < 30 s (CSV reading included);
activitynet-proposal 5,000 videos x 100 proposals at least 20x faster than a per-video loop.

    python benchmarks/bench_evaluate.py                       # everything, full sizes
    python benchmarks/bench_evaluate.py --sizes 10000,100000 --no-kernels
    python benchmarks/bench_evaluate.py --no-end-to-end --scale 0.1
    python benchmarks/bench_evaluate.py --breakdown --repeat 5 [--against /tmp/head]   # import/read/score/print

``--breakdown``: the ActivityNet detection call of 1,500 videos x 4 predictions (200
classes) as a whole (fresh process, stdout a pipe; target < 0.4 s) and its phases in one
fresh process: import (the command, the API and the protocol's module), read (both files),
score, print (the tables as the command prints them), and whether pandas was imported.
``--against DIR`` times another source tree the same way, alternated (``git archive HEAD
relocbench | tar -x -C DIR`` gives the last commit's).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Optional

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


# ----------------------------------------------------------------------------- ActivityNet proposals

def proposal_row(n_videos=5_000, n_props=100, seed=0):
    """Row of the activitynet-proposal evaluator: ``n_videos`` videos x ``n_props`` proposals,
    against the per-video numpy loop (the official code's structure) on the same input and
    the pure-Python loop on 200 videos; both must agree with the fast result to 1e-9."""
    from relocbench.metrics.proposal import activitynet_proposal

    def make(nv):
        rng = np.random.default_rng(seed)
        db, gt_rows, results, prop_rows = {}, [], {}, []
        for v in range(nv):
            vid = f"v_{v:05d}"
            s = rng.uniform(0, 100, int(rng.integers(1, 4)))
            e = (s + rng.uniform(2, 40, s.size)).tolist()
            s = s.tolist()
            db[vid] = {"subset": "validation", "annotations": [{"segment": [a, b], "label": "x"} for a, b in zip(s, e)]}
            gt_rows += [(vid, a, b) for a, b in zip(s, e)]
            ps = rng.uniform(0, 120, n_props)
            pe = ps + rng.uniform(1, 50, n_props)
            sc = rng.random(n_props)
            results[vid] = [{"segment": [a, b], "score": c} for a, b, c in zip(ps.tolist(), pe.tolist(), sc.tolist())]
            prop_rows += [(vid, a, b, c) for a, b, c in zip(ps.tolist(), pe.tolist(), sc.tolist())]
        return {"database": db}, {"results": results}, gt_rows, prop_rows

    thr = [float(x) for x in np.linspace(0.5, 0.95, 10)]
    gt, pr, gt_rows, prop_rows = make(n_videos)
    res, dt, cpu, peak = timed(activitynet_proposal, gt, pr, memory=True)
    t = time.perf_counter()
    loop = ref.activitynet_proposal_video_loop(gt_rows, prop_rows, thr, 100)
    dt_loop = time.perf_counter() - t
    assert abs(loop["auc"] - res["auc"]) < 1e-9, (loop["auc"], res["auc"])
    sg, sp, sg_rows, sp_rows = make(200)
    small, dt_fast, _, _ = timed(activitynet_proposal, sg, sp)
    t = time.perf_counter()
    py = ref.activitynet_proposal_reference(sg_rows, sp_rows, thr, 100)
    dt_py = time.perf_counter() - t
    assert abs(py["auc"] - small["auc"]) < 1e-9, (py["auc"], small["auc"])
    return ("activitynet-proposal", f"{n_videos:,} videos x {n_props} proposals", dt, cpu, ">= 20x", peak,
            f"{dt_loop / dt:,.0f}x vs per-video loop (same input: {dt_loop:.1f} s); "
            f"{dt_py / dt_fast:,.0f}x vs Python loop (200 videos: {dt_py:.2f} s); equal to 1e-9")


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


def kernel_table(sc: float) -> None:
    """The scorers from arrays (no file reading) against the loop implementations."""
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

    rows.append(proposal_row(max(1, int(5_000 * sc))))

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

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (wall time grows with other jobs; CPU time less so)")
    w = [22, 46, 8, 8, 7, 9]
    print(f"{'protocol':<{w[0]}} {'input':<{w[1]}} {'wall s':>{w[2]}} {'CPU s':>{w[3]}} {'target':>{w[4]}} "
          f"{'peak MiB':>{w[5]}}  speed-up vs loop")
    for name, size, secs, cpu, target, pk, ratio in rows:
        print(f"{name:<{w[0]}} {size:<{w[1]}} {secs:>{w[2]}.2f} {cpu:>{w[3]}.2f} {target:>{w[4]}} "
              f"{pk / 2**20:>{w[5]}.0f}  {ratio}")


# ----------------------------------------------------------------------------- end to end, from the files
#
# Each case writes its input files, then runs, each in a fresh interpreter:
#   * the parse floor: orjson.loads of every JSON file the call reads (read + parse, garbage
#     collection off, as fast as a parser gets; the default-settings time is shown beside it);
#   * the whole command, ``relocbench evaluate ...``, as a user runs it (startup included),
#     with its peak RSS (from wait4).

FLOOR = """
import gc, sys, time, orjson
gc.disable() if sys.argv[1] == "off" else None
total = 0.0
for f in sys.argv[2:]:
    t = time.perf_counter()
    with open(f, "rb") as fh:
        doc = orjson.loads(fh.read())
    total += time.perf_counter() - t
    del doc
print(total)
"""

# The parse floor of CSV files (AVA): pyarrow.csv (multi-threaded where cores allow) or
# pandas.read_csv (the C reader relocbench uses), header-less, every column typed by the reader.
FLOOR_CSV = """
import sys, time
total = 0.0
if sys.argv[1] == "pyarrow":
    import pyarrow.csv as pc
    opts = pc.ReadOptions(autogenerate_column_names=True)
    read = lambda f: pc.read_csv(f, read_options=opts)
else:
    import pandas as pd
    read = lambda f: pd.read_csv(f, header=None)
for f in sys.argv[2:]:
    t = time.perf_counter()
    doc = read(f)
    total += time.perf_counter() - t
    del doc
print(total)
"""


# Runs a command as `python -m relocbench ...` would, then reports the process's own peak RSS
# (VmHWM: the high-water mark of this program's memory, not counting the benchmark's memory
# that a forked child shares until it starts the interpreter).
HWM = """
import atexit, runpy, sys
def report():
    with open("/proc/self/status") as fh:
        hwm = [ln.split()[1] for ln in fh if ln.startswith("VmHWM:")]
    with open(path, "w") as out:
        out.write(hwm[0] if hwm else "nan")
path = sys.argv[1]
atexit.register(report)
sys.argv = ["relocbench"] + sys.argv[2:]
runpy.run_module("relocbench", run_name="__main__", alter_sys=True)
"""


def _tree_pss(pid: int) -> float:
    """Proportional set size (bytes) of process ``pid`` and its children: shared pages
    counted once between them (a forked reader shares the parent's pages)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                total += next(int(ln.split()[1]) for ln in fh if ln.startswith("Pss:")) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, StopIteration, ValueError):
            continue
    return total


def timed_child(cmd):
    """Wall seconds, peak memory (bytes; NaN where /proc is absent) and stdout of one child.

    For a relocbench command, peak memory is the larger of the command's own high-water mark (VmHWM, exact, one
    process) and the proportional set size of its process tree sampled every 0.1 s (which
    counts a forked second reader, whose pages the high-water mark does not see)."""
    with tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        sample = cmd[:3] == [sys.executable, "-m", "relocbench"] and os.path.exists("/proc/self/smaps_rollup")
        if cmd[:3] == [sys.executable, "-m", "relocbench"]:
            cmd = [sys.executable, "-c", HWM, hwm.name, *cmd[3:]]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        tree = 0.0
        while proc.poll() is None:
            if sample:  # relocbench commands only: walking a process's pages slows it (never a floor)
                tree = max(tree, _tree_pss(proc.pid))
            try:
                proc.wait(0.1)
            except subprocess.TimeoutExpired:
                pass
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {err.read().decode()[-2000:]}")
        text = open(hwm.name).read().strip()
        rss = max(float(text) * 1024, tree) if text else float("nan")
        stdout = out.read().decode()
    return wall, rss, stdout


def write_results(path: Path, header: dict, n: int, make_block, block: int = 20_000) -> None:
    """A JSON file ``{**header, "results": {...}}`` written block by block (orjson per block)."""
    import orjson

    with open(path, "wb") as fh:
        head = orjson.dumps(header)
        fh.write(head[:-1] + (b',' if header else b'') + b'"results":{')
        for b0 in range(0, n, block):
            part = orjson.dumps(make_block(b0, min(n, b0 + block)))
            fh.write((b"," if b0 else b"") + part[1:-1])
        fh.write(b"}}")


def case_temporal(n, folder: Path):
    from relocbench.manifest import write_manifest

    pairs, preds = temporal_input(n, 10, seed=2)
    ids = preds.pair_ids
    pairs = pairs.assign(query_segment_id=ids, query_video="qv", ref_segment_id=ids, ref_video="rv",
                         query_start_s=0.0, query_end_s=pairs["query_end_step"] * 0.64)
    m = write_manifest(folder / "man", {("pairs", "test"): pairs}, {
        "name": "bench", "task": "temporal", "builder": {"name": "bench", "version": "0"}, "protocol": "bench",
        "params": {}, "inputs": {}, "report": {}})
    s, e, sc = np.floor(preds.start).astype(int), np.ceil(preds.end).astype(int), preds.score
    ids = preds.pair_ids

    def block(a, b):
        return {ids[i]: [{"segment": [int(s[j]), int(e[j])], "score": float(sc[j])} for j in range(10 * i, 10 * i + 10)]
                for i in range(a, b)}

    f = folder / "preds.json"
    write_results(f, {"version": "relocbench/1", "task": "temporal", "manifest": "bench", "split": "test",
                      "unit": "step"}, n, block)
    return [f], ["evaluate", f, "--manifest", m]


def case_spatiotemporal(n, folder: Path):
    from relocbench.manifest import write_manifest

    rng = np.random.default_rng(3)
    ids = np.array([f"p{i:07d}" for i in range(n)], dtype=object)
    rs = rng.integers(0, 1000, n).astype(float)
    pairs = pd.DataFrame({"pair_id": ids, "label": np.array([f"{i}" for i in range(20)], dtype=object)[rng.integers(0, 20, n)],
                          "query_tubelet_id": ids, "query_video": "qv", "query_start": 0.0, "query_end": 3.0,
                          "ref_video": "rv", "ref_start": rs, "ref_end": rs + 10,
                          "target_tubelet_ids": [["t"]] * n})
    kt = rs + rng.integers(0, 10, n)
    x1, y1 = rng.uniform(0, 0.5, (2, n))
    targets = pd.DataFrame({"pair_id": ids, "time": kt, "x1": x1, "y1": y1, "x2": x1 + 0.3, "y2": y1 + 0.3})
    m = write_manifest(folder / "man", {("pairs", "test"): pairs, ("targets", "test"): targets}, {
        "name": "bench", "task": "spatiotemporal", "builder": {"name": "bench", "version": "0"},
        "protocol": "bench", "params": {}, "inputs": {}, "report": {}})
    k = 10
    near = rng.random((n, k)) < 0.5
    pt = np.where(near, kt[:, None], rs[:, None] + rng.integers(0, 10, (n, k)))
    jit = rng.normal(0, 0.03, (n, k, 2))
    bx = np.clip(np.stack([x1[:, None] + jit[..., 0], y1[:, None] + jit[..., 1]], -1), 0, 0.69)
    sc = rng.random((n, k))

    def block(a, b):
        return {ids[i]: [{"time": float(pt[i, j]), "box": [float(bx[i, j, 0]), float(bx[i, j, 1]),
                                                          float(bx[i, j, 0]) + 0.3, float(bx[i, j, 1]) + 0.3],
                          "score": float(sc[i, j])} for j in range(k)] for i in range(a, b)}

    f = folder / "preds.json"
    write_results(f, {"version": "relocbench/1", "task": "spatiotemporal", "manifest": "bench", "split": "test"}, n, block)
    return [f], ["evaluate", f, "--manifest", m]


def _anet_files(n, folder: Path, labels: bool, k: int = 10):
    import orjson

    rng = np.random.default_rng(4)
    classes = [f"class {i:03d}" for i in range(200)]
    vids = [f"v_{i:07d}" for i in range(n)]
    n_gt = rng.integers(1, 4, n)
    gs = rng.uniform(0, 100, (n, 3))
    ge = gs + rng.uniform(2, 40, (n, 3))
    vc = rng.integers(0, 200, n)
    gt = folder / "gt.json"
    with open(gt, "wb") as fh:
        fh.write(b'{"version":"VERSION 1.3","taxonomy":[],"database":{')
        for b0 in range(0, n, 20_000):
            part = {vids[i]: {"subset": "validation", "duration": 150.0,
                              "url": f"https://www.youtube.com/watch?v={vids[i][2:]}",
                              "annotations": [{"segment": [float(gs[i, a]), float(ge[i, a])], "label": classes[vc[i]]}
                                              for a in range(n_gt[i])]} for i in range(b0, min(n, b0 + 20_000))}
            fh.write((b"," if b0 else b"") + orjson.dumps(part)[1:-1])
        fh.write(b"}}")
    near = rng.random((n, k)) < 0.5
    ps = np.where(near, gs[:, :1] + rng.normal(0, 3, (n, k)), rng.uniform(0, 100, (n, k)))
    pe = ps + np.where(near, (ge[:, :1] - gs[:, :1]), rng.uniform(2, 40, (n, k)))
    pc = np.where(near, vc[:, None], rng.integers(0, 200, (n, k)))
    sc = rng.random((n, k))

    def block(a, b):
        if labels:
            return {vids[i]: [{"label": classes[pc[i, j]], "segment": [float(ps[i, j]), float(pe[i, j])],
                               "score": float(sc[i, j])} for j in range(k)] for i in range(a, b)}
        return {vids[i]: [{"segment": [float(ps[i, j]), float(pe[i, j])], "score": float(sc[i, j])} for j in range(k)]
                for i in range(a, b)}

    f = folder / "preds.json"
    write_results(f, {"version": "VERSION 1.3", "external_data": {}}, n, block)
    return gt, f


def case_detection(n, folder: Path):
    gt, f = _anet_files(n, folder, True)
    return [gt, f], ["evaluate", f, "--protocol", "activitynet-detection", "--ground-truth", gt]


def case_detection_gt(n, folder: Path):
    """ActivityNet ground truth of ``n`` videos with one prediction per video: reading the
    ground-truth file dominates."""
    gt, f = _anet_files(n, folder, True, k=1)
    return [gt, f], ["evaluate", f, "--protocol", "activitynet-detection", "--ground-truth", gt]


def case_ava(n, folder: Path):
    """AVA CSVs: ``n`` detection rows on ``n / 20`` keyframes (3 persons, 1-2 actions each)."""
    f = ava_input(n, max(1, n // 20), folder, seed=5)
    return [f / "gt.csv", f / "det.csv"], ["evaluate", f / "det.csv", "--protocol", "ava", "--ground-truth",
                                           f / "gt.csv", "--label-map", f / "lm.pbtxt"]


def case_proposal(n, folder: Path):
    gt, f = _anet_files(n, folder, False)
    return [gt, f], ["evaluate", f, "--protocol", "activitynet-proposal", "--ground-truth", gt]


CASES = {"reloc-temporal": case_temporal, "reloc-spatiotemporal": case_spatiotemporal,
         "activitynet-detection": case_detection, "activitynet-proposal": case_proposal,
         "activitynet-detection-gt": case_detection_gt, "ava": case_ava}


def relocbench_cmd(*args):
    return [sys.executable, "-m", "relocbench", *map(str, args)]


def startup_rows(reps: int = 5):
    rows = []
    base = None
    for name, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                      ("relocbench --version", relocbench_cmd("--version")),
                      ("relocbench --help", relocbench_cmd("--help")),
                      ("relocbench evaluate --help", relocbench_cmd("evaluate", "--help"))):
        walls = sorted(timed_child(cmd)[0] for _ in range(reps))
        med = walls[len(walls) // 2]
        base = med if base is None else base
        rows.append((name, med, med / base))
    return rows


def end_to_end_table(sizes, protocols, repeat: int = 1) -> None:
    from relocbench.cli import main as _  # noqa: F401  (fail early if the package is broken)

    print(f"startup (median of 5, measured on {time.strftime('%Y-%m-%d')}; target < 0.5 s):")
    print(f"{'command':<28} {'wall s':>7} {'x python':>9}")
    for name, wall, ratio in startup_rows():
        print(f"{name:<28} {wall:>7.3f} {ratio:>9.1f}")
    print()
    head = (f"{'protocol':<24} {'pairs':>9} {'MB':>6} {'floor s':>8} {'2nd s':>8} {'whole s':>8} "
            f"{'ratio':>6} {'peak MiB':>9} {'s per 1M':>9} {'load':>5}")
    print("end to end: the whole `relocbench evaluate` call against the parse floor of its input files")
    print("(floor: orjson.loads with gc off for JSON, pyarrow.csv for CSV; 2nd: orjson with gc on for JSON,"
          " pandas.read_csv for CSV; ratio = whole / floor; with --repeat, the best of each; load: the 1-minute"
          " load average after the row)")
    print(head)
    for proto in protocols:
        if proto == "activitynet-proposal" and importlib.util.find_spec("relocbench.metrics.proposal") is None:
            continue
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
                files, args = CASES[proto](n, Path(tmp))
                mb = sum(os.path.getsize(f) for f in files) / 1e6
                csv = str(files[0]).endswith(".csv")
                floor = floor_on = wall = float("inf")
                rss = 0.0
                for _ in range(repeat):   # alternated, best of each: other jobs slow both alike
                    f1 = timed_child([sys.executable, "-c", FLOOR_CSV if csv else FLOOR,
                                      "pyarrow" if csv else "off", *map(str, files)])[2]
                    f2 = timed_child([sys.executable, "-c", FLOOR_CSV if csv else FLOOR,
                                      "pandas" if csv else "on", *map(str, files)])[2]
                    w, r, _ = timed_child(relocbench_cmd(*args))
                    floor, floor_on, wall, rss = min(floor, float(f1)), min(floor_on, float(f2)), min(wall, w), max(rss, r)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"{proto:<24} {n:>9,} {mb:>6.0f} {floor:>8.2f} {floor_on:>8.2f} {wall:>8.2f} "
                  f"{wall / floor:>6.2f} {rss / 2**20:>9.0f} {wall / n * 1e6:>9.1f} {load:>5.1f}", flush=True)


# ----------------------------------------------------------------------------- where the time goes

#: Runs ``relocbench evaluate`` (argv after the tree) from the source tree ``argv[1]`` (or the
#: installed package where it is "-"): the whole call as a user makes it, stdout a pipe.
WHOLE = r"""
import runpy, sys
tree = sys.argv[1]
if tree != "-":
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, tree)
sys.argv = ["relocbench"] + sys.argv[2:]
runpy.run_module("relocbench", run_name="__main__", alter_sys=True)
"""

#: The phases of the same call in one fresh process: import, read, score, print.
PHASES = r"""
import contextlib, io, json, sys, time
t0 = time.perf_counter()
tree, gt, pred = sys.argv[1:4]
if tree != "-":
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, tree)
from relocbench.cli import cli  # noqa: F401
from relocbench.metrics import api
from relocbench.metrics.activitynet import activitynet_detection, ground_truth_arrays, read_activitynet_arrays
t1 = time.perf_counter()
ground_truth_arrays(gt)
read_activitynet_arrays(pred)
t2 = time.perf_counter()
result = activitynet_detection(gt, pred)  # reads again, then scores
t3 = time.perf_counter()
try:
    from relocbench.cli.evaluate import print_result
except ImportError:  # an older tree: every table in full
    from relocbench.cli._common import print_table

    def print_result(result):
        for table in api.summary_tables(result):
            print_table(*table)
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    print_result(result)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "read+score": t3 - t2, "print": t4 - t3,
                  "lines": buf.getvalue().count("\n"), "pandas": "pandas" in sys.modules}))
"""


def breakdown_table(n_videos: int, k: int, repeat: int, against: Optional[str]) -> None:
    """The ActivityNet detection call on ``n_videos`` x ``k`` predictions (200 classes): whole
    call (fresh process, stdout a pipe) and its phases, best of ``repeat`` alternated runs,
    for this tree and optionally another source tree (``against``: e.g. an export of the
    last commit) in the same run."""
    import json

    trees = [("this tree", "-")] + ([(f"{against}", against)] if against else [])
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        gt, f = _anet_files(n_videos, Path(tmp), True, k=k)
        n_pred = n_videos * k
        best = {name: {} for name, _ in trees}
        for _ in range(repeat):
            for name, tree in trees:
                w = timed_child([sys.executable, "-c", WHOLE, tree, "evaluate", str(f), "--protocol",
                                 "activitynet-detection", "--ground-truth", str(gt)])[0]
                ph = json.loads(timed_child([sys.executable, "-c", PHASES, tree, str(gt), str(f)])[2])
                ph["whole"] = w
                for key, v in ph.items():
                    if isinstance(v, float):
                        best[name][key] = min(best[name].get(key, float("inf")), v)
                    else:
                        best[name][key] = v
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"activitynet-detection, {n_videos:,} videos x {k} = {n_pred:,} predictions, 200 classes "
          f"(best of {repeat}, measured on {time.strftime('%Y-%m-%d')}; target: whole < 0.4 s; "
          f"1-minute load average after: {load:.1f})")
    print("(phases in one process: import; read = both files; read+score = activitynet_detection from the files; "
          "print = the tables as the command prints them, stdout not a terminal)")
    print(f"{'tree':<24} {'whole s':>8} {'import':>7} {'read':>7} {'read+score':>10} {'print':>7} {'lines':>6} "
          f"{'pandas':>7}")
    for name, _ in trees:
        b = best[name]
        print(f"{name[-24:]:<24} {b['whole']:>8.3f} {b['import']:>7.3f} {b['read']:>7.3f} {b['read+score']:>10.3f} "
              f"{b['print']:>7.3f} {b['lines']:>6} {str(b['pandas']):>7}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size of the kernel table by this")
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="end-to-end sizes (pairs, or videos for ActivityNet), comma-separated")
    ap.add_argument("--protocols", default=",".join(CASES), help="end-to-end protocols, comma-separated")
    ap.add_argument("--repeat", type=int, default=1,
                    help="end to end: run floor and whole call this many times, alternated, and keep the best of each")
    ap.add_argument("--no-kernels", action="store_true", help="skip the table of the scorers from arrays")
    ap.add_argument("--no-end-to-end", action="store_true", help="skip the table of whole calls from files")
    ap.add_argument("--breakdown", action="store_true",
                    help="only: where the time of one ActivityNet detection call goes (import, read, score, print)")
    ap.add_argument("--breakdown-size", default="1500x4", help="videos x predictions per video for --breakdown")
    ap.add_argument("--against", help="--breakdown: also time this source tree (a folder holding relocbench/)")
    args = ap.parse_args()
    if args.breakdown:
        nv, k = (int(x) for x in args.breakdown_size.split("x"))
        breakdown_table(nv, k, max(1, args.repeat), args.against)
        return
    if not args.no_end_to_end:
        end_to_end_table([int(x) for x in args.sizes.split(",") if x], [p for p in args.protocols.split(",") if p],
                         max(1, args.repeat))
        print()
    if not args.no_kernels:
        kernel_table(args.scale)


if __name__ == "__main__":
    main()

