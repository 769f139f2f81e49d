"""Speed (and matcher quality) of ``relocbench localize`` on this machine.

Three tables:

1. **Matchers** on the test suite's kind of videos (references of distinct synthetic scenes,
   queries cut out and re-encoded at another frame rate, size and brightness), several seeds:
   mean top-1 tIoU, share of queries found at tIoU >= 0.5 / 0.8, share whose own reference
   ranks first among three, and matching time. This is the measurement behind ``auto``.
2. **A 10 s query in a 10-minute 320x240 reference** (25 fps), default settings: the first
   time (empty cache: decoding + features + matching, each timed) and a second 10 s query
   against the cached reference. The plain reference is one decoding pass over the
   reference with OpenCV (what reading the file costs at least).
3. **Matching time against reference length** (10 s to 1 hour of features at the default
   0.5 s grid, random 521-d features, 10 s query): ``window`` and ``framedp`` against one
   matrix product of the same shapes (the least work any matcher does).

4. **Score floor** (``--mode floor``): the best score of queries cut from unrelated scenes
   against that of found queries (each kind of degradation), per matcher.
5. **Refinement** (``--mode refine``): boundary error in reference frames and top-1 tIoU of the
   coarse answer and of the frame-level refinement with each per-frame descriptor, on queries
   degraded in each way of :data:`relocbench.localize.degrade.KINDS`, and what it costs.
6. **Methods by degradation** (``--mode degrade``): mean top-1 tIoU of each method with and
   without refinement per kind of degradation: the measurement behind ``auto``.
7. **Collection search** (``--mode collection``): 1,000 generated one-minute references (30
   with ``--quick``) indexed once, 20 queries cut from them: seconds per query as a fresh
   ``relocbench localize QUERY --index INDEX`` command and in one process, each with the load
   average when it ran, recall of the right reference in the top 1 and top 5, the index's size
   on disk. ``--mode collection-scale``: the same at 1,000 references without rendering them
   (the 30 of ``--quick`` plus 970 entries of shuffled, noisy rows).

8. **The README's figure** (``--mode example``, not part of ``all``): ``docs/localize-example.png``
   written by ``relocbench localize ... --plot`` on rendered videos (:func:`example_figure`).
   ``--mode refine --worst N`` also lists the queries of the N largest boundary errors.

    python benchmarks/bench_localize.py [--workdir DIR] [--seeds 4] [--skip-long] [--mode MODE] [--per-kind 3]
        [--worst N] [--figure PATH]

Set ``OMP_NUM_THREADS=1`` on a shared CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from relocbench.localize import localize
from relocbench.localize.cache import FeatureCache
from relocbench.localize.floor import DEFAULT_MIN_SCORE
from relocbench.localize.matching import match, normalise
from relocbench.localize.synthetic import recode, write_scene_video


def tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def table(title, columns, rows):
    print(f"\n{title}")
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")


# --------------------------------------------------------------------------- 1. matchers
def matchers(work: Path, seeds: int) -> None:
    rng = np.random.default_rng(0)
    conditions = ("same speed", "played 0.7x-1.4x as fast")
    results = {(c, m): {"tiou": [], "first": [], "ms": []} for c in conditions for m in ("window", "framedp")}
    cache = FeatureCache(work / "cache-matchers")
    for seed in range(seeds):
        refs = []
        for k in range(3):
            durs = rng.choice([5.0, 6.0, 7.0, 8.0, 9.0], size=9)
            tl = [(100 * k + i, float(d)) for i, d in enumerate(durs)]
            fps = float(rng.choice([20, 25, 30]))
            refs.append((write_scene_video(work / f"m{seed}-{k}.mp4", tl, fps=fps, size=(96, 72), seed=seed),
                         float(durs.sum())))
        target, total = refs[0]
        for j in range(8):
            cond = conditions[j % 2]
            speed = 1.0 if j % 2 == 0 else float(rng.choice([0.7, 0.8, 1.25, 1.4]))
            length = float(rng.uniform(4.0, 14.0))
            a = float(rng.uniform(0.0, total - length - 0.5))
            q = recode(target, work / f"q{seed}-{j}.mp4", start_s=a, end_s=a + length,
                       fps=float(rng.choice([12, 15, 24, 30])), size=[(64, 48), (128, 96), (160, 120)][j % 3],
                       brightness=float(rng.uniform(0.75, 1.3)), speed=speed)
            for m in ("window", "framedp"):
                res = localize(q, [r for r, _ in refs], method=m, device="cpu", cache=cache)
                r = results[(cond, m)]
                r["first"].append(res.segments[0].reference == str(target))
                own = [s for s in res.segments if s.reference == str(target)]
                r["tiou"].append(tiou((own[0].start, own[0].end), (a, a + length)) if own else 0.0)
                r["ms"].append(1000 * res.timings["match_s"])
    rows = []
    for (c, m), r in results.items():
        t = np.array(r["tiou"])
        rows.append([c, m, len(t), f"{t.mean():.3f}", f"{(t >= 0.5).mean():.2f}", f"{(t >= 0.8).mean():.2f}",
                     f"{np.mean(r['first']):.2f}", f"{np.mean(r['ms']):.1f}"])
    table(f"Matchers: re-encoded queries (other fps, size, brightness) in 3 references of distinct scenes "
          f"({seeds} seeds)",
          ["query", "matcher", "queries", "mean top-1 tIoU (own ref)", "tIoU>=0.5", "tIoU>=0.8", "own ref ranked 1st",
           "match ms (3 refs)"], rows)


# --------------------------------------------------------------------------- 2. ten minutes
def ten_minutes(work: Path) -> None:
    from relocbench.extract.decode import VideoReader

    ref = work / "ten-minutes-320x240.mp4"
    if not ref.exists():
        t0 = time.perf_counter()
        write_scene_video(ref, [(k, 10.0) for k in range(60)], fps=25, size=(320, 240), seed=7)
        print(f"(rendered the 10-minute reference in {time.perf_counter() - t0:.1f} s)")
    q1 = recode(ref, work / "q10s-a.mp4", start_s=312.0, end_s=322.0, fps=30, size=(240, 180), brightness=1.15)
    q2 = recode(ref, work / "q10s-b.mp4", start_s=95.0, end_s=105.0, fps=15, size=(320, 240), brightness=0.85)
    t0 = time.perf_counter()
    with VideoReader(ref) as r:
        n = sum(1 for _ in r.frames())
    decode_s = time.perf_counter() - t0
    cache_dir = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    t0 = time.perf_counter()
    first = localize(q1, [ref], device="cpu", cache=cache_dir)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = localize(q2, [ref], device="cpu", cache=cache_dir)
    second_s = time.perf_counter() - t0
    f, s = first.timings, second.timings
    rows = [
        ["decode only (OpenCV, plain reference)", f"{decode_s:.2f}", "1.00", f"{n} frames, {n / decode_s:.0f} frames/s"],
        ["first query: features of reference + query (decode + backbone)", f"{f['extract_s']:.2f}",
         f"{f['extract_s'] / decode_s:.2f}", "handcrafted, 16-frame steps"],
        ["  of which the backbone (features minus the decode-only pass)", f"{f['extract_s'] - decode_s:.2f}",
         f"{(f['extract_s'] - decode_s) / decode_s:.2f}", "colour, gradient and flow histograms"],
        ["first query: hashing for the cache", f"{f['hash_s']:.2f}", f"{f['hash_s'] / decode_s:.2f}", ""],
        ["first query: matching", f"{f['match_s']:.3f}", f"{f['match_s'] / decode_s:.3f}", "window, 0.5 s grid"],
        ["first query: frame refinement", f"{f.get('refine_s', 0.0):.3f}", f"{f.get('refine_s', 0.0) / decode_s:.3f}",
         f"{100 * f.get('refine_s', 0.0) / first_s:.1f} % of the first query; top-1 to the frame"],
        ["first query: total", f"{first_s:.2f}", f"{first_s / decode_s:.2f}",
         f"top-1 tIoU {tiou((first.segments[0].start, first.segments[0].end), (312.0, 322.0)):.2f}; "
         f"target < 60 s: {'met' if first_s < 60 else 'MISSED'}"],
        ["second query (cached reference): total", f"{second_s:.2f}", f"{second_s / decode_s:.2f}",
         f"query features {s['extract_s']:.2f} s, hash {s['hash_s']:.2f} s, cache read {s['cache_read_s']:.3f} s; "
         f"top-1 tIoU {tiou((second.segments[0].start, second.segments[0].end), (95.0, 105.0)):.2f}; "
         f"target < 2 s: {'met' if second_s < 2 else 'MISSED'}"],
    ]
    table("A 10 s query in a 10-minute 320x240 reference (25 fps), seconds", ["step", "s", "x decode", "notes"], rows)


# --------------------------------------------------------------------------- 3. growth
def growth() -> None:
    rng = np.random.default_rng(0)
    d, grid = 521, 0.5
    q = rng.standard_normal((int(10 / grid), d)).astype(np.float32)
    rows = []
    for label, seconds in (("10 s", 10), ("1 min", 60), ("10 min", 600), ("1 h", 3600)):
        r = rng.standard_normal((int(seconds / grid), d)).astype(np.float32)
        times = {}
        for name in ("plain", "window", "framedp"):
            reps = 3 if seconds <= 600 else 1
            best = math.inf
            for _ in range(reps):
                t0 = time.perf_counter()
                if name == "plain":
                    normalise(r) @ normalise(q).T
                else:
                    match(q, r, method=name)
                best = min(best, time.perf_counter() - t0)
            times[name] = best
        rows.append([label, r.shape[0], f"{1000 * times['plain']:.2f}", f"{1000 * times['window']:.1f}",
                     f"{times['window'] / times['plain']:.0f}", f"{1000 * times['framedp']:.1f}",
                     f"{times['framedp'] / times['plain']:.0f}"])
    table("Matching time against reference length (10 s query, 521-d features, 0.5 s grid), ms",
          ["reference", "cells", "plain r@q.T", "window", "x plain", "framedp", "x plain"], rows)


# --------------------------------------------------------------------------- 4-6. floor, refine, degrade
def _references(work: Path, n: int, seed: int, fps: float = 25.0):
    """``n`` references of nine distinct scenes each (5 to 9 s), 96x72 at ``fps``."""
    rng = np.random.default_rng(seed)
    refs = []
    for k in range(n):
        durs = rng.choice([5.0, 6.0, 7.0, 8.0, 9.0], size=9)
        p = work / f"ref-s{seed}-{k}.mp4"
        if not p.exists():
            write_scene_video(p, [(100 * k + i, float(d)) for i, d in enumerate(durs)], fps=fps, size=(96, 72),
                              seed=seed)
        refs.append(p)
    return refs


def _degraded_queries(work: Path, refs, per_kind: int, seed: int, kinds=None):
    """``(kind, path, reference, start_frame, end_frame)``: ``per_kind`` copies per kind of
    degradation of random 2.4 to 10 s parts of the references, each also at another size and
    frame rate (:data:`relocbench.localize.degrade.KINDS`)."""
    from relocbench.extract.decode import VideoReader
    from relocbench.localize.degrade import KINDS, degrade

    rng = np.random.default_rng(seed)
    out = []
    for kind, d in KINDS.items():
        if kinds and kind not in kinds:
            continue
        for j in range(per_kind):
            r_i = int(rng.integers(len(refs)))
            ref = refs[r_i]
            with VideoReader(ref) as r:
                fps, n = r.fps, r.declared_frames
            length = int(rng.integers(int(2.4 * fps), int(10 * fps)))
            a = int(rng.integers(0, n - length - 1))
            ext = ".avi" if d.codec == "MJPG" else ".mp4"
            p = work / f"deg-s{seed}-{kind.replace('/', '-').replace(' ', '')}-{j}-r{r_i}-{a}-{length}{ext}"
            dd = d.with_(fps=d.fps or float(rng.choice([15, 24, 30])),
                         size=d.size or [(64, 48), (128, 96), (160, 120)][j % 3])
            if not p.exists():
                degrade(ref, p, a, a + length, dd)
            out.append((kind, p, ref, a, a + length))
    return out


def _frame_errors(seg, ref, a, b):
    """``(start error, end error, tIoU)`` in reference frames (a wrong reference: None, None, 0)."""
    if seg is None or seg.reference != str(ref):
        return None, None, 0.0
    return abs(seg.start_frame - a), abs(seg.end_frame - b), tiou((seg.start_frame, seg.end_frame), (a, b))


def floor(work: Path, seeds: int) -> None:
    """Best score of unrelated queries (other scenes and seeds, re-encoded) vs found ones."""
    from relocbench.localize.degrade import Degradation, degrade

    cache = FeatureCache(work / "cache-floor")
    rows = []
    for m in ("window", "framedp"):
        unrelated, related = [], []
        for seed in range(seeds):
            refs = _references(work, 3, seed)
            rng = np.random.default_rng(1000 + seed)
            for j in range(6):
                src = work / f"unrelated-s{seed}-{j}.mp4"
                if not src.exists():
                    write_scene_video(src, [(5000 + 10 * j + i, 4.0) for i in range(3)], fps=30, size=(96, 72),
                                      seed=77 + seed)
                q = work / f"unrelated-s{seed}-{j}-q.mp4"
                n = int(rng.integers(60, 300))
                if not q.exists():
                    degrade(src, q, 10, 10 + n, Degradation(fps=float(rng.choice([15, 24, 30])), size=(128, 96),
                                                            brightness=float(rng.uniform(0.8, 1.2))))
                res = localize(q, refs, method=m, device="cpu", cache=cache, top_k=1, refine=False,
                               min_score=float("-inf"))
                unrelated.append(res.segments[0].score)
            for kind, q, ref, a, b in _degraded_queries(work, refs, 1, seed):
                res = localize(q, refs, method=m, device="cpu", cache=cache, top_k=1, refine=False,
                               min_score=float("-inf"))
                if res.segments[0].reference == str(ref):
                    related.append((kind, res.segments[0].score))
        u = np.array(unrelated)
        r = np.array([s for _, s in related])
        worst = min(related, key=lambda x: x[1])
        rows.append([m, len(u), f"{u.max():.3f}", f"{np.percentile(u, 90):.3f}", len(r), f"{r.min():.3f} ({worst[0]})",
                     f"{np.percentile(r, 10):.3f}", f"{DEFAULT_MIN_SCORE[m]:.2f}",
                     f"{(r >= DEFAULT_MIN_SCORE[m]).mean():.2f}"])
    table(f"Score floor: best score of unrelated queries vs found queries (own reference ranked first), "
          f"{seeds} seed(s)", ["matcher", "unrelated", "max", "p90", "found", "min", "p10", "default floor",
                              "found above floor"], rows)


def refine_table(work: Path, seeds: int, per_kind: int, worst: int = 0) -> None:
    """Boundary error in reference frames and tIoU, coarse vs refined with each descriptor; with
    ``worst`` > 0, the queries of the ``worst`` largest errors of the default descriptor listed
    (kind, seed, file, reference, truth, coarse and refined boundaries, alignment)."""
    from relocbench.localize.refine import DEFAULT_DESCRIPTOR, DESCRIPTORS, refine_segments

    cache = FeatureCache(work / "cache-refine")
    acc = {name: {"es": [], "ee": [], "tiou": [], "ms": []} for name in ["coarse (window)"] + list(DESCRIPTORS)}
    detail = []  # (error, kind, seed, query, reference, truth, coarse, refined, alignment)
    for seed in range(seeds):
        refs = _references(work, 3, seed)
        for kind, q, ref, a, b in _degraded_queries(work, refs, per_kind, seed):
            coarse = localize(q, refs, device="cpu", cache=cache, top_k=1, refine=False, min_score=float("-inf"))
            qi = coarse.query
            from relocbench.extract.decode import VideoReader

            with VideoReader(q) as r:
                qfps, qn = r.fps, r.declared_frames
            fps_of = {i.path: i.fps for i in coarse.references}
            for name in acc:
                if name.startswith("coarse"):
                    seg, ms = coarse.segments[0], 0.0
                else:
                    t0 = time.perf_counter()
                    segs, _ = refine_segments(coarse.segments, q, int(round(qi["start"] * qfps)), qn, qfps, fps_of,
                                              0.5, descriptor=name)
                    seg, ms = segs[0], 1000 * (time.perf_counter() - t0)
                es, ee, t = _frame_errors(seg, ref, a, b)
                if name == DEFAULT_DESCRIPTOR:
                    c = coarse.segments[0]
                    detail.append((math.inf if es is None else max(es, ee), kind, seed, Path(q).name,
                                   Path(seg.reference).name, (a, b), (c.start_frame, c.end_frame),
                                   (seg.start_frame, seg.end_frame), seg.alignment))
                acc[name]["tiou"].append(t)
                acc[name]["ms"].append(ms)
                if es is not None:
                    acc[name]["es"].append(es)
                    acc[name]["ee"].append(ee)
    rows = []
    for name, r in acc.items():
        e = np.array(r["es"] + r["ee"], dtype=np.float64)
        rows.append([name, len(r["tiou"]), f"{np.median(e):.1f}", f"{np.percentile(e, 90):.1f}", f"{e.max():.0f}",
                     f"{np.mean(r['tiou']):.3f}", f"{np.mean(r['ms']):.0f}"])
    table(f"Refinement: {len(acc['grey']['tiou'])} degraded queries ({per_kind} per kind, {seeds} seed(s)); boundary "
          "error in reference frames over both boundaries of top-1 answers in the right reference",
          ["boundaries", "queries", "median err", "p90 err", "max err", "mean top-1 tIoU", "refine ms / query"], rows)
    if worst > 0:
        detail.sort(key=lambda d: (-d[0], d[2], d[3]))
        table(f"The {min(worst, len(detail))} worst queries ({DEFAULT_DESCRIPTOR} descriptor; reference frames "
              "[start, end); error: the larger of the two boundaries', inf for a wrong reference)",
              ["error", "kind", "seed", "query", "top-1 reference", "truth", "coarse", "refined", "alignment"],
              [[f"{d[0]:g}", d[1], d[2], d[3], d[4], f"{d[5][0]}-{d[5][1]}", f"{d[6][0]}-{d[6][1]}",
                f"{d[7][0]}-{d[7][1]}", "-" if d[8] is None else f"{d[8]:.3f}"] for d in detail[:worst]])


def degrade_table(work: Path, seeds: int, per_kind: int) -> None:
    """Mean top-1 tIoU (0 when the wrong reference ranks first) per kind of degradation and method."""
    cache = FeatureCache(work / "cache-degrade")
    methods = [("window", False), ("framedp", False), ("window", True), ("framedp", True), ("auto", True)]
    acc: dict = {}
    for seed in range(seeds):
        refs = _references(work, 3, seed)
        for kind, q, ref, a, b in _degraded_queries(work, refs, per_kind, seed):
            for m, ref_on in methods:
                res = localize(q, refs, method=m, device="cpu", cache=cache, top_k=1, refine=ref_on,
                               min_score=float("-inf"))
                acc.setdefault(kind, {}).setdefault((m, ref_on), []).append(
                    _frame_errors(res.segments[0], ref, a, b)[2])
    rows = []
    for kind, per in acc.items():
        means = {k: float(np.mean(v)) for k, v in per.items()}
        best = max(means[k] for k in methods if k[0] != "auto")
        rows.append([kind, len(per[methods[0]])] + [f"{means[k]:.3f}" for k in methods]
                    + ["yes" if means[("auto", True)] >= best - 1e-9 else "NO"])
    table(f"Methods by kind of degradation: mean top-1 tIoU over 3 references ({per_kind} per kind, {seeds} seed(s))",
          ["degradation", "queries", "window", "framedp", "window + refine", "framedp + refine", "auto (default)",
           "auto >= best"], rows)


# --------------------------------------------------------------------------- 7. collection search
def _load() -> float:
    return os.getloadavg()[0]


def _fresh_command(q: Path, index: Path, out_json: Path):
    """One ``relocbench localize QUERY --index INDEX`` in a new process (what a user pays per
    query: start-up, imports, reading the index, both stages, the JSON): seconds, the load average
    (1 min) when it started, the JSON it wrote."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    load = _load()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "relocbench", "localize", str(q), "--index", str(index), "--device",
                        "cpu", "--quiet", "--force", "--output-json", str(out_json)], env=env, capture_output=True,
                       text=True, timeout=300)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"relocbench localize {q} --index {index} failed: {r.stderr.strip()[-2000:]}")
    return seconds, load, r.stderr.strip(), json.loads(out_json.read_text())


def _search_queries(work: Path, index: Path, queries, title: str, size_note: str, extra_cols=(), extra_vals=()):
    """Every query twice: a fresh command (the figure a user sees) and :func:`search_index` in
    this process (the index kept in memory after the first); each figure with its load average."""
    from relocbench.localize.index import coarse_paths, search_index

    fresh, fresh_load, inproc, inproc_load, top1, top5, seg_ok, warned = [], [], [], [], [], [], [], 0
    out_json = work / "collection-answer.json"
    for q, ref, a, length in queries:
        s, load, err, doc = _fresh_command(q, index, out_json)
        warned += bool(err)
        fresh.append(s)
        fresh_load.append(load)
        load = _load()
        t0 = time.perf_counter()
        res = search_index(q, index, device="cpu")
        inproc.append(time.perf_counter() - t0)
        inproc_load.append(load)
        seg = doc["segments"][0] if doc["segments"] else None
        same = [(x.reference, x.start_frame, x.end_frame) for x in res.segments] == \
            [(x["reference"], x["start_frame"], x["end_frame"]) for x in doc["segments"]]
        first = [r["reference"] for r in doc["features"]["first_stage"]]
        top1.append(seg is not None and seg["reference"] == str(ref))
        top5.append(str(ref) in first[:5])
        seg_ok.append(top1[-1] and tiou((seg["start_frame"], seg["end_frame"]), (a, a + length)) >= 0.9)
        print(f"  {q.name}: fresh command {s:.2f} s (load {fresh_load[-1]:.2f}), in this process {inproc[-1]:.2f} s "
              f"(load {load:.2f}), right reference first: {top1[-1]}, same answer both ways: {same}")
        last = res.timings
    npy, rec = coarse_paths(index)
    size = index.stat().st_size + npy.stat().st_size + rec.stat().st_size

    def fig(xs, loads):
        return f"{np.median(xs):.2f} (load {np.median(loads):.1f}), max {max(xs):.2f}"

    table(title, ["references", "queries", "fresh command s/query (median)", "in one process s/query (median)",
                  "top-1 recall", "top-5 recall (1st stage)", "top-1 tIoU>=0.9", f"index MiB ({size_note})",
                  *extra_cols],
          [[len(load_refs(index)), len(queries), fig(fresh, fresh_load), fig(inproc, inproc_load),
            f"{np.mean(top1):.2f}", f"{np.mean(top5):.2f}", f"{np.mean(seg_ok):.2f}",
            f"{size / 2**20:.1f} = {index.stat().st_size / 2**20:.1f} + {npy.stat().st_size / 2**20:.1f}",
            *extra_vals]])
    print(f"fresh commands that printed a warning: {warned}; last in-process query's timings: "
          + ", ".join(f"{k} {v:.3f}" for k, v in last.items()))


def load_refs(index: Path):
    from relocbench.localize.index import load_index

    return load_index(index).videos


def _queries(work: Path, refs, n_refs: int, n_queries: int):
    """``n_queries`` degraded queries cut from ``refs`` (the same ones for the same ``n_refs``):
    ``(query, its reference, first frame, frames)``."""
    from relocbench.localize.degrade import Degradation, degrade

    rng = np.random.default_rng(0)
    out = []
    for j in range(n_queries):
        k = int(rng.integers(n_refs))
        length = int(rng.integers(100, 300))
        a = int(rng.integers(0, 1500 - length - 1))
        q = work / f"collection-{n_refs}-q{j}-{k}-{a}-{length}.mp4"
        fps, bright = float(rng.choice([15, 24, 30])), float(rng.uniform(0.8, 1.2))
        if not q.exists():
            degrade(refs[k], q, a, a + length, Degradation(fps=fps, size=(128, 96), brightness=bright))
        out.append((q, refs[k], a, length))
    return out


def collection(work: Path, n_refs: int, n_queries: int = 20) -> None:
    """``n_refs`` generated one-minute references indexed once, ``n_queries`` degraded queries cut
    from them: seconds per query after indexing, recall of the right reference, index size."""
    from relocbench.localize.index import build_index

    folder = work / f"collection-{n_refs}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    refs = []
    for k in range(n_refs):
        p = folder / f"ref{k:04d}.mp4"
        if not p.exists():
            write_scene_video(p, [(1000 + 6 * k + i, 10.0) for i in range(6)], fps=25, size=(96, 72), seed=42)
        refs.append(p)
    render_s = time.perf_counter() - t0
    index = work / f"collection-{n_refs}.h5"
    t0 = time.perf_counter()
    build_index([folder], index, device="cpu", resume=index.exists())
    index_s = time.perf_counter() - t0
    queries = _queries(work, refs, n_refs, n_queries)
    if queries:
        _search_queries(work, index, queries, f"Collection search: {n_refs} one-minute 96x72 references (generated), "
                        f"{n_queries} queries cut from them (4 to 12 s, other frame rate, size and brightness), "
                        "seconds", "features + first-stage matrix", ["indexing s", "rendering s"],
                        [f"{index_s:.0f}", f"{render_s:.0f}"])


def collection_scale(work: Path, n_refs: int = 1000, n_queries: int = 20) -> None:
    """The collection search at ``n_refs`` references without rendering them: the 30 indexed
    videos of ``--quick`` plus ``n_refs - 30`` entries whose rows are those videos' rows shuffled
    in time and mixed with noise (other content to the matcher, as many rows as one-minute
    videos), with the first stage's matrix written as ``relocbench index`` writes it. The 20
    queries of ``--quick`` (cut from the 30 rendered videos) must still find their video among
    all the entries."""
    from relocbench.extract.writer import FeaturesFile, write_features_file
    from relocbench.localize.index import build_coarse

    small = work / "collection-30.h5"
    if not small.exists():
        collection(work, 30, 0)
    refs = [work / "collection-30" / f"ref{k:04d}.mp4" for k in range(30)]
    queries = _queries(work, refs, 30, n_queries)
    big = work / f"collection-scale-{n_refs}.h5"
    matrix_s = float("nan")
    if not big.exists():
        with FeaturesFile(small) as ff:
            attrs, entries = dict(ff.attrs), list(ff.entries())
        rng = np.random.default_rng(0)
        out = list(entries)
        for k in range(n_refs - len(entries)):
            e = entries[k % len(entries)]
            rows = e.features[rng.permutation(e.features.shape[0])]
            rows = (rows * rng.uniform(0.7, 1.3, rows.shape[1]) + 0.05 * rng.standard_normal(rows.shape)
                    ).astype(np.float32)
            out.append(dataclasses.replace(e, video=f"extra{k:04d}", features=rows, sha256=f"{k:064x}"))
        write_features_file(big, out, {k: v for k, v in attrs.items() if k != "report"})
        t0 = time.perf_counter()
        build_coarse(big)
        matrix_s = time.perf_counter() - t0
    _search_queries(work, big, queries, f"Collection search at {n_refs} references (30 rendered + {n_refs - 30} "
                    f"feature-only), {len(queries)} queries cut from the rendered ones, seconds",
                    "features + first-stage matrix", ["first-stage matrix written in s"], [f"{matrix_s:.1f}"])


# --------------------------------------------------------------------------- 8. the README's figure
def example_figure(work: Path, figure: Path) -> None:
    """The README's ``localize --plot`` figure, from the command a user types: two references
    rendered by :mod:`relocbench.localize.synthetic` (``reference.mp4``: twelve 6 s scenes at
    25 fps; ``other.mp4``: ten other scenes at 30 fps; both 160x120) and ``query.mp4``, seconds 44
    to 58 of ``reference.mp4`` saved again at 15 fps, 240x180 and 20 % brighter; then ``relocbench
    localize query.mp4 reference.mp4 other.mp4 --top-k 3 --plot FIGURE`` in a fresh process (no
    cache). Same files and library versions, same figure (the PNG carries no date)."""
    import subprocess
    import sys

    from relocbench.localize.degrade import Degradation, degrade

    ref, other, query = work / "reference.mp4", work / "other.mp4", work / "query.mp4"
    if not ref.exists():
        write_scene_video(ref, [(200 + i, 6.0) for i in range(12)], fps=25, size=(160, 120), seed=11)
    if not other.exists():
        write_scene_video(other, [(300 + i, 6.0) for i in range(10)], fps=30, size=(160, 120), seed=11)
    if not query.exists():
        degrade(ref, query, 44 * 25, 58 * 25, Degradation(fps=15.0, size=(240, 180), brightness=1.2))
    cmd = [sys.executable, "-m", "relocbench", "localize", str(query), str(ref), str(other), "--top-k", "3",
           "--device", "cpu", "--no-cache", "--plot", str(figure), "--force"]
    print("relocbench localize query.mp4 reference.mp4 other.mp4 --top-k 3 --plot " + str(figure))
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")),
                       capture_output=True, text=True, timeout=300, cwd=work)
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"relocbench localize failed (exit {r.returncode})")
    print(f"wrote {figure} ({figure.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None, help="Folder for the generated videos (default: a temp dir).")
    ap.add_argument("--seeds", type=int, default=4, help="Seeds of the matcher comparison.")
    ap.add_argument("--skip-long", action="store_true", help="Skip the 10-minute reference.")
    ap.add_argument("--mode", default="all", choices=["all", "matchers", "growth", "ten-minutes", "floor", "refine",
                                                      "degrade", "collection", "collection-scale", "example"],
                    help="One table only (default: all of them).")
    ap.add_argument("--quick", action="store_true", help="Collection search over 30 references instead of 1,000.")
    ap.add_argument("--per-kind", type=int, default=3,
                    help="Degraded queries per kind and seed (floor/refine/degrade).")
    ap.add_argument("--figure", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "localize-example.png",
                    help="With --mode example: where the figure goes (default: docs/localize-example.png).")
    ap.add_argument("--worst", type=int, default=0,
                    help="With --mode refine: list the N queries of the largest boundary errors.")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-localize-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"measured on {time.strftime('%Y-%m-%d', time.gmtime())}; load average {os.getloadavg()[0]:.2f} "
          f"(1 min) on {os.cpu_count()} CPUs; videos in {work}")
    mode = args.mode
    if mode in ("all", "matchers"):
        matchers(work, args.seeds)
    if mode in ("all", "growth"):
        growth()
    if mode in ("all", "floor"):
        floor(work, args.seeds)
    if mode in ("all", "refine"):
        refine_table(work, args.seeds, args.per_kind, args.worst)
    if mode in ("all", "degrade"):
        degrade_table(work, args.seeds, args.per_kind)
    if mode in ("all", "ten-minutes") and not args.skip_long:
        ten_minutes(work)
    if mode in ("all", "collection"):
        collection(work, 30 if args.quick else 1000)
    if mode == "collection-scale":
        collection_scale(work)
    if mode == "example":
        example_figure(work, args.figure)
    print(f"load average at the end {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
