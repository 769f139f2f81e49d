"""Speed and memory of ``relocbench extract-features`` on CPU.

Generates a 320x240, 25 fps moving-shapes video (mp4v, OpenCV's VideoWriter) and prints:

* decoding alone (the floor: OpenCV's FFmpeg backend, every frame converted to BGR);
* each part of the ``handcrafted`` backbone on frames already in memory (resize + colour,
  gradient orientations, DIS flow, Farneback flow);
* the whole extractor (``extract_video``, DIS flow), one thread and with decoding in a
  second thread (``--workers 1``), with its ratio to decoding and to real time;
* the peak RSS of a whole extraction in a fresh process (``--long-minutes`` of video; 60 for
  the one-hour target), beside the RSS of a process that only imports relocbench;
* ``r2plus1d_18`` clips/s on CPU (random weights: the speed does not depend on them).

Targets on a 2-core CPU: ``handcrafted`` at least 4x real time (over 100 frames/s at 25 fps)
with peak memory under 1 GB for a one-hour video.

    python benchmarks/bench_extract.py                      # 2-minute video; 10-minute RSS run
    python benchmarks/bench_extract.py --long-minutes 60    # the one-hour video (a few minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relocbench.extract import ExtractConfig, make_backbone
from relocbench.extract.backbones.handcrafted import Handcrafted
from relocbench.extract.decode import VideoReader
from relocbench.extract.synth import write_moving_shapes

SIZE, FPS = (320, 240), 25.0

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from relocbench.extract import ExtractConfig, extract_video
mode = sys.argv[2]
if mode == "extract":
    vf = extract_video(sys.argv[1], ExtractConfig())
    n = vf.n_frames
elif mode == "import":
    n = 0
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's, kept across exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"frames": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": int(hwm) / 1024}))
"""


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def decode_all(path):
    n = 0
    with VideoReader(path) as r:
        for _ in r.frames():
            n += 1
    return n


def child(path, mode):
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], capture_output=True, text=True, check=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the speed video")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the peak-memory video")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row (the best is kept)")
    ap.add_argument("--clips", type=int, default=8, help="r2plus1d_18 clips to time (0 to skip)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the generated videos (default: a temp dir)")
    args = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"speed-{int(args.seconds)}s.mp4"
    if not video.exists():
        write_moving_shapes(video, seconds=args.seconds, fps=FPS, size=SIZE, seed=1)
    rows = []

    t_dec, n = _best(lambda: decode_all(video), args.repeat)
    dec_fps = n / t_dec
    rows.append(("decode only (OpenCV/FFmpeg, BGR frames)", dec_fps, 1.0))

    # the parts of the handcrafted backbone, on frames in memory
    with VideoReader(video) as r:
        frames = [f for _, f in zip(range(500), r.frames())]
    hc = Handcrafted()
    small = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in frames]
    gray = [cv2.cvtColor(s, cv2.COLOR_BGR2GRAY) for s in small]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    parts = {
        "handcrafted: resize + colour histogram": lambda: [hc.colour(cv2.resize(f, (160, 120),
                                                                               interpolation=cv2.INTER_AREA))
                                                           for f in frames],
        "handcrafted: gradient orientations (HOG)": lambda: [hc.hog(g) for g in gray],
        "handcrafted: DIS flow + histograms (HOF)": lambda: [hc.hof(dis.calc(a, b, None), FPS)
                                                             for a, b in zip(gray, gray[1:])],
        "handcrafted: Farneback flow + histograms": lambda: [hc.hof(cv2.calcOpticalFlowFarneback(
            a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0), FPS) for a, b in zip(gray[:200], gray[1:201])],
    }
    for name, fn in parts.items():
        t, res = _best(fn, args.repeat)
        rows.append((name, len(res) / t, (len(res) / t) / dec_fps))

    cfg = ExtractConfig()
    bb = make_backbone(cfg)
    from relocbench.extract.api import _raw_features

    for workers, label in ((0, "whole extractor (handcrafted, DIS), 1 thread"),
                           (1, "whole extractor, decoding in a 2nd thread")):
        t, e = _best(lambda: _raw_features(video, "v", bb, cfg, prefetch_frames=32 if workers else 0,
                                           sha256="-"), args.repeat)
        rows.append((label, e.n_frames / t, (e.n_frames / t) / dec_fps))

    print(f"\nhandcrafted extraction, {SIZE[0]}x{SIZE[1]} at {FPS:g} fps, {n} frames "
          f"({args.seconds:g} s of video), {os.cpu_count()} CPU(s), best of {args.repeat}; measured on "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(f"| {'what':<46} | {'frames/s':>9} | {'x real time':>11} | {'vs decoding':>11} |")
    print(f"| {'-' * 46} | {'-' * 9}: | {'-' * 10}: | {'-' * 10}: |")
    for name, fps, ratio in rows:
        print(f"| {name:<46} | {fps:9.0f} | {fps / FPS:11.1f} | {ratio:11.2f} |")

    # peak memory of a whole extraction in a fresh process, on a long video
    long_video = work / f"long-{int(args.long_minutes)}min.mp4"
    if not long_video.exists():
        t = time.perf_counter()
        write_moving_shapes(long_video, seconds=args.long_minutes * 60, fps=FPS, size=SIZE, seed=2)
        print(f"\n(generated {long_video.name}: {time.perf_counter() - t:.0f} s)")
    base = child(long_video, "import")
    run = child(long_video, "extract")
    print(f"\npeak memory, fresh process: extracting {args.long_minutes:g} min of {SIZE[0]}x{SIZE[1]} video "
          f"({run['frames']} frames) in {run['seconds']:.0f} s ({run['frames'] / run['seconds']:.0f} frames/s, "
          f"{run['frames'] / run['seconds'] / FPS:.1f}x real time): peak RSS {run['peak_rss_mb']:.0f} MB; "
          f"importing relocbench.extract alone: {base['peak_rss_mb']:.0f} MB")

    if args.clips:
        vcfg = ExtractConfig(backbone="r2plus1d_18", weights="none", device="cpu", batch_size=4)
        model = make_backbone(vcfg)
        x = torch.randn(4, 3, 16, 112, 112)
        with torch.no_grad():
            model.model(x[:1])
            t, _ = _best(lambda: [model.model(x) for _ in range(max(1, args.clips // 4))], 1)
        clips_s = 4 * max(1, args.clips // 4) / t
        print(f"\nr2plus1d_18 on CPU ({torch.get_num_threads()} threads, random weights, 16x112x112 clips, batch 4): "
              f"{clips_s:.2f} clips/s = {clips_s * 16:.0f} frames/s of video at one clip per 16-frame step "
              f"({clips_s * 16 / FPS:.2f}x real time at {FPS:g} fps)")


if __name__ == "__main__":
    main()
