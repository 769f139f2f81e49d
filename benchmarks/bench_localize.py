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

    python benchmarks/bench_localize.py [--workdir DIR] [--seeds 4] [--skip-long]

Set ``OMP_NUM_THREADS=1`` on a shared CPU.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from relocbench.localize import localize
from relocbench.localize.cache import FeatureCache
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None, help="Folder for the generated videos (default: a temp dir).")
    ap.add_argument("--seeds", type=int, default=4, help="Seeds of the matcher comparison.")
    ap.add_argument("--skip-long", action="store_true", help="Skip the 10-minute reference.")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-localize-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"measured on {time.strftime('%Y-%m-%d', time.gmtime())}; videos in {work}")
    matchers(work, args.seeds)
    growth()
    if not args.skip_long:
        ten_minutes(work)


if __name__ == "__main__":
    main()
