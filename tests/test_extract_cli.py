"""The CLI: extract-features (files, folders, lists, manifests), merge-features, and run-baseline reading the output."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import pandas as pd
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.extract.synth import write_pieces
from relocbench.features import open_feature_store
from relocbench.manifest import write_manifest

FPS, SIZE = 25, (64, 48)


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _write(path: Path, pieces):
    return write_pieces(path, pieces, fps=FPS, size=SIZE, fourcc="MJPG")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Videos of a tiny temporal manifest: the query segment of 'x' reappears inside 'y'.

    x: scene 1, 200 frames (13 steps); the segment is its steps 5..10 (frames 80..159).
    y: scene 9 (80 frames), then x's frames 80..159, then scene 10 (80 frames): 15 steps, the
    same content at steps 5..10. w: unrelated scene 4, 160 frames. 'gone' has no file.
    """
    d = tmp_path_factory.mktemp("world")
    root = d / "videos"
    (root / "sub").mkdir(parents=True)
    _write(root / "v_x.avi", [(1, 0, 200)])
    _write(root / "sub" / "y.avi", [(9, 0, 80), (1, 80, 80), (10, 0, 80)])
    _write(root / "w.avi", [(4, 0, 160)])
    (root / "notes.txt").write_text("not a video")
    videos = {"x": (200, 13), "y": (240, 15), "w": (160, 10), "gone": (192, 12)}
    timelines = pd.DataFrame(
        [(v, "Jump" if v in ("x", "y") else "Run", 5.0 * 16 / FPS, 10.0 * 16 / FPS, 5, 10, True, n / FPS, n, k)
         for v, (n, k) in videos.items()],
        columns=["video", "label", "start_s", "end_s", "start_step", "end_step", "kept", "duration_s", "n_frames",
                 "n_steps"])

    def seg(sid, video, split, label="Jump"):
        n, k = videos[video]
        sec = 16 / FPS
        return dict(segment_id=sid, video=video, label=label, split=split, start_step=5, end_step=10,
                    window_start_step=0, window_end_step=k, start_s=5 * sec, end_s=10 * sec, window_start_s=0.0,
                    window_end_s=k * sec, duration_s=n / FPS, n_steps=k)

    segments = {"train": pd.DataFrame([seg("w-0", "w", "train", "Run"), seg("gone-0", "gone", "train", "Run")]),
                "val": pd.DataFrame([seg("x-0", "x", "val")]), "test": pd.DataFrame([seg("y-0", "y", "test")])}
    sec = 16 / FPS
    pair = dict(pair_id="p0", label="Jump", query_segment_id="x-0", query_video="x", query_start_step=5,
                query_end_step=10, ref_segment_id="y-0", ref_video="y", ref_start_step=0, ref_end_step=15,
                gt_start_step=5, gt_end_step=10, query_start_s=5 * sec, query_end_s=10 * sec, ref_start_s=0.0,
                ref_end_s=15 * sec, gt_start_s=5 * sec, gt_end_s=10 * sec)
    tables = {("timelines", None): timelines, ("pairs", "val"): pd.DataFrame([pair]),
              ("pairs", "test"): pd.DataFrame([pair]), **{("segments", s): t for s, t in segments.items()}}
    meta = {"name": "tiny-real", "task": "temporal", "builder": {"name": "test", "version": "0"},
            "protocol": "feng2018", "params": {}, "inputs": {}, "report": {}}
    manifest = write_manifest(d / "manifest", tables, meta)
    return {"root": root, "manifest": manifest, "d": d}


def test_manifest_extraction_then_run_baseline_frame_dp(world, tmp_path):
    out = tmp_path / "features.h5"
    r = _run(["extract-features", "--manifest", str(world["manifest"]), "--videos-root", str(world["root"]),
              "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "3 video(s) extracted" in r.output
    assert "video file missing: 1 (e.g. gone)" in r.output
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["w", "x", "y"] and f["y"].shape == (15, 521) and f["x"].shape == (13, 521)
        assert json.loads(f.attrs["report"])["video file missing"]["count"] == 1
    run = tmp_path / "run"
    r = _run(["run-baseline", "frame-dp", "--dataset", str(world["manifest"]), "--features", str(out),
              "--split", "test", "--threads", "1", "--out", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    preds = json.loads((run / "predictions-test.json").read_text())
    assert preds["results"]["p0"][0]["segment"] == [5, 10]     # the moment of x found inside y
    metrics = json.loads((run / "metrics-test.json").read_text())
    assert metrics["n_pairs"] == 1 and metrics["average"] == 1.0 and metrics["n_missing"] == 0


def test_manifest_frame_count_mismatch_is_reported(world, tmp_path):
    m = world["d"] / "manifest"
    from relocbench.manifest import open_manifest

    man = open_manifest(str(m))
    tl = man.table("timelines")
    tl.loc[tl.video == "w", "n_frames"] = 170     # 160 decoded: 6% off
    tables = {(t, s): man.table(t, s) for t, s in man.tables()}
    tables[("timelines", None)] = tl
    other = write_manifest(tmp_path / "m2", tables, {k: man.meta[k] for k in
                                                      ("name", "task", "builder", "protocol", "params", "inputs",
                                                       "report")})
    r = _run(["extract-features", "--manifest", str(other), "--videos-root", str(world["root"]), "--split", "train",
              "--out", str(tmp_path / "f.h5"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "differs from the manifest's n_frames by over 1%" in r.output and "w (160 vs 170)" in r.output


def test_folders_glob_and_list(world, tmp_path):
    r = _run(["extract-features", str(world["root"]), "--glob", "*.avi", "--out", str(tmp_path / "a.h5"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert sorted(h5py.File(tmp_path / "a.h5", "r")) == ["v_x", "w", "y"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# videos\n{world['root'] / 'w.avi'}\n\n")
    r = _run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "b.h5"), "--step-frames", "8",
              "--quiet"])
    assert r.exit_code == 0, r.output
    store = open_feature_store(tmp_path / "b.h5")
    assert store.stride_frames == 8 and store.get("w").shape == (10, 521)


def test_errors_are_one_line_and_exit_2(world, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    r = _run(["extract-features", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and r.output.strip().startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    assert "nope.mp4: video not found" in r.output
    bad = tmp_path / "zbad.mp4"     # after w in id order: --strict stops there, w is kept
    bad.write_text("x")
    good = world["root"] / "w.avi"
    r = _run(["extract-features", str(good), str(bad), "--out", str(tmp_path / "o.h5"), "--quiet"])
    assert r.exit_code == 0 and "1 failed" in r.output and "zbad.mp4: unreadable video" in r.output
    r = _run(["extract-features", str(good), str(bad), "--out", str(tmp_path / "s.h5"), "--strict", "--quiet"])
    assert r.exit_code == 2 and "--strict" in r.output
    assert sorted(h5py.File(tmp_path / "s.h5", "r")) == ["w"]   # nothing finished is lost
    r = _run(["extract-features", str(good), "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "exists already" in r.output
    r = _run(["extract-features", str(good), "--out", str(tmp_path / "o2.h5"), "--backbone", "r2plus1d_18"])
    assert r.exit_code == 2 and "no cached weights for r2plus1d_18" in r.output
    r = _run(["extract-features", str(good), "--out", str(tmp_path / "o3.h5"), "--shard", "3/3"])
    assert r.exit_code == 2 and "0 <= K < N" in r.output
    r = _run(["extract-features", str(good), "--out", str(tmp_path / "o4.h5"), "--option", "flow"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    # an output that cannot be written is refused before any video is decoded
    for out in ("/proc/relocbench-o.h5", str(good / "o.h5")):
        r = _run(["extract-features", str(good), "--out", out, "--quiet"])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert r.output.startswith(f"Error: {out}: cannot be ")
        assert not Path(out).parent.joinpath(".o.h5.parts").exists()


def test_shards_and_merge_features_cli(world, tmp_path):
    vids = [str(world["root"] / "v_x.avi"), str(world["root"] / "sub" / "y.avi"), str(world["root"] / "w.avi")]
    shards = []
    for k in range(2):
        s = tmp_path / f"s{k}.h5"
        r = _run(["extract-features", *vids, "--out", str(s), "--shard", f"{k}/2", "--quiet"])
        assert r.exit_code == 0 and f"[shard {k}/2]" in r.output, r.output
        shards.append(str(s))
    r = _run(["merge-features", "--out", str(tmp_path / "m.h5"), *shards])
    assert r.exit_code == 0 and "Merged 3 video(s) from 2 shard(s)" in r.output, r.output
    r = _run(["extract-features", *vids, "--out", str(tmp_path / "one.h5"), "--quiet"])
    assert (tmp_path / "m.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()


def test_pca_cli_fit_and_reuse(world, tmp_path):
    vids = [str(world["root"] / "v_x.avi"), str(world["root"] / "w.avi")]
    r = _run(["extract-features", *vids, "--out", str(tmp_path / "p.h5"), "--pca", "4", "--pca-fit", "v_x",
              "--pca-fit", "w", "--quiet"])
    assert r.exit_code == 0, r.output
    r = _run(["extract-features", str(world["root"] / "sub" / "y.avi"), "--out", str(tmp_path / "q.h5"),
              "--pca-from", str(tmp_path / "p.h5"), "--quiet"])
    assert r.exit_code == 0, r.output
    a, b = open_feature_store(tmp_path / "p.h5"), open_feature_store(tmp_path / "q.h5")
    assert a.dim == b.dim == 4 and a.attrs["pca"] == b.attrs["pca"]


def test_help_has_examples():
    for cmd in ("extract-features", "merge-features"):
        r = _run([cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.output


def test_slurm_option_through_the_local_executor(world, tmp_path):
    vids = [str(world["root"] / "v_x.avi"), str(world["root"] / "w.avi")]
    r = _run(["extract-features", *vids, "--out", str(tmp_path / "s.h5"), "--slurm", "gpu", "--slurm-array", "2",
              "--slurm-cluster", "local", "--slurm-cpus", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "2 array task(s) finished" in r.output and "merged 2 video(s)" in r.output
    r = _run(["extract-features", *vids, "--out", str(tmp_path / "one.h5"), "--quiet"])
    assert (tmp_path / "s.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()
    r = _run(["extract-features", *vids, "--out", str(tmp_path / "p.h5"), "--slurm", "gpu", "--pca", "2",
              "--pca-fit", "w", "--slurm-cluster", "local"])
    assert r.exit_code == 2 and "cannot fit a PCA" in r.output


def test_ctrl_c_says_the_finished_videos_stay_for_resume(world, tmp_path, monkeypatch):
    from relocbench.extract.writer import Journal

    real_add, calls = Journal.add, []

    def add_then_interrupt(self, entry):
        calls.append(entry.video)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_add(self, entry)

    monkeypatch.setattr(Journal, "add", add_then_interrupt)
    out = tmp_path / "features.h5"
    args = ["extract-features", "--manifest", str(world["manifest"]), "--videos-root", str(world["root"]),
            "--out", str(out), "--quiet", "--workers", "1"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 130 and not out.exists()
    assert r.output.strip().splitlines()[-1] == (
        f"Interrupted: no partial output was left behind; 1 finished video(s) kept in {Journal(out).dir}: "
        "rerun with --resume to continue.")
    monkeypatch.setattr(Journal, "add", real_add)
    r = _run(args + ["--resume"])
    assert r.exit_code == 0 and "2 video(s) extracted, 1 kept from an earlier run, 0 failed" in r.output, r.output
