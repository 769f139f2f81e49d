"""A 10-minute reference (low resolution and frame rate) is searched in bounded memory."""
from __future__ import annotations

import tracemalloc

import pytest

from relocbench.localize import localize
from relocbench.localize.synthetic import recode, write_scene_video

MINUTES = 10
FPS = 10
SIZE = (64, 48)


def test_ten_minute_reference_bounded_memory(tmp_path):
    # 60 scenes of 10 s; the query: 12 s across a scene boundary, re-encoded at another rate and size
    timeline = [(k, 10.0) for k in range(6 * MINUTES)]
    ref = write_scene_video(tmp_path / "long.mp4", timeline, fps=FPS, size=SIZE, seed=1)
    query = recode(ref, tmp_path / "q.mp4", start_s=424.0, end_s=436.0, fps=15, size=(96, 72), brightness=1.1)
    n_frames = MINUTES * 60 * FPS
    decoded_bytes = n_frames * SIZE[0] * SIZE[1] * 3           # every frame held: 55 MiB
    resized_bytes = n_frames * 160 * 120 * 3                    # at the backbone's working size: 330 MiB
    tracemalloc.start()
    try:
        res = localize(query, [ref], device="cpu", cache=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    top = res.segments[0]
    inter = max(0.0, min(top.end, 436.0) - max(top.start, 424.0))
    assert inter / (max(top.end, 436.0) - min(top.start, 424.0)) >= 0.8
    assert res.references[0].duration == pytest.approx(600.0, abs=0.2)
    # features are 521 float32 per 16-frame step (375 steps: 0.8 MB); streaming keeps a few frames
    print(f"peak traced memory {peak / 2**20:.1f} MiB")
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert peak < decoded_bytes / 2 and peak < resized_bytes / 10
