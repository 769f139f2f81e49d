"""Declared feature sources from the command line: ``features inspect``, ``run-baseline``,
``predict`` and ``localize`` with ``--feature-preset`` / ``--feature-card`` or a card beside the features.

The end-to-end runs use the small manifest of ``conftest.py`` (12 videos of 120 s at 16 fps,
120 steps each).
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError
from relocbench.manifest import open_manifest

DIM = 32


def _videos(manifest):
    m = open_manifest(str(manifest))
    return sorted({str(v) for s in m.splits for v in m.table("segments", s)["video"]})


def _rows(n, seed):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _write_layout(tmp_path, layout, videos, n_rows=120):
    """Features of ``videos`` in one layout with its card beside them; returns the path."""
    rows = {v: _rows(n_rows, k) for k, v in enumerate(videos)}
    axis = {"kind": "clips", "fps": "native", "clip_frames": 16, "stride_frames": 16}
    if layout == "hdf5":
        path = tmp_path / "f.h5"
        with h5py.File(path, "w") as f:
            for v, a in rows.items():
                f.create_group(f"v_{v}").create_dataset("c3d_features", data=a)
        card = {"name": "mine-hdf5", "layout": "hdf5", "template": "v_{video}/c3d_features", "time_axis": axis}
        (tmp_path / "f.h5.card.json").write_text(json.dumps(card))
        return path
    folder = tmp_path / layout
    folder.mkdir()
    for v, a in rows.items():
        p = folder / f"{v}.{layout}"
        if layout == "npy":
            np.save(p, a)
        elif layout == "npz":
            np.savez(p, feats=a)
        elif layout == "pt":
            import torch

            torch.save({"feats": torch.from_numpy(a)}, p)
        elif layout == "csv":
            np.savetxt(p, a, delimiter=",", header=",".join(f"c{k}" for k in range(DIM)), comments="", fmt="%.9g")
    key = {"npz": "key: feats\n", "pt": "key: feats\n"}.get(layout, "")
    (folder / "features.card.yaml").write_text(
        f"name: mine-{layout}\nlayout: folder\ntemplate: '{{video}}.{layout}'\n{key}dim: {DIM}\n"
        "time_axis: {kind: clips, fps: native, clip_frames: 16, stride_frames: 16}\n")
    return folder


def _run(args):
    return CliRunner().invoke(cli, args)


# --------------------------------------------------------------------------- run-baseline
@pytest.mark.parametrize("layout", ["npy", "npz", "pt", "csv", "hdf5"])
def test_frame_dp_on_every_layout_with_a_card(small_manifest, tmp_path, layout):
    feats = _write_layout(tmp_path, layout, _videos(small_manifest))
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--features", str(feats), "--quiet",
                "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    f = result["features"]
    assert f["name"] == f"mine-{layout}" and f["card"]["layout"] == ("hdf5" if layout == "hdf5" else "folder")
    assert len(f["card_sha256"]) == 64 and len(f["data_sha256"]) == 64
    assert json.loads((tmp_path / "run" / "config.json").read_text())["features"] == f


def _cgbm_two_steps(manifest, tmp_path, feats):
    """A 2-step cgbm run of a tiny config on ``feats``; returns its run folder."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"hidden: 8\nrank: 2\nfeature_dim: {DIM}\neval_every: 2\neval_batch_size: 16\n")
    run = tmp_path / "run"
    res = _run(["run-baseline", "cgbm", "--dataset", str(manifest), "--features", str(feats), "--steps", "2",
                "--batch-size", "4", "--config", str(cfg), "--threads", "1", "--device", "cpu", "--quiet",
                "--out", str(run)])
    assert res.exit_code == 0, res.output
    return run


@pytest.mark.parametrize("layout", ["npz", "pt", "csv", "hdf5"])
def test_cgbm_two_steps_on_every_other_layout_with_a_card(small_manifest, tmp_path, layout):
    """The trainable path on each layout (npy: the test below): the rows reach the model on the
    manifest's grid, the run records the card, and the run's own predictions are scored."""
    feats = _write_layout(tmp_path, layout, _videos(small_manifest))
    run = _cgbm_two_steps(small_manifest, tmp_path, feats)
    result = json.loads((run / "result.json").read_text())
    assert result["features"]["name"] == f"mine-{layout}"
    assert result["features"]["card"]["time_axis"]["stride_frames"] == 16
    average = result["metrics"]["average"]
    assert 0.0 <= average <= 1.0
    preds = json.loads((run / "predictions-test.json").read_text())["results"]
    assert len(preds) == len(open_manifest(str(small_manifest)).table("pairs", "test"))


def test_cgbm_two_steps_on_a_card_folder_and_predict_keeps_the_card(small_manifest, tmp_path):
    feats = _write_layout(tmp_path, "npy", _videos(small_manifest))
    run = _cgbm_two_steps(small_manifest, tmp_path, feats)
    assert json.loads((run / "result.json").read_text())["features"]["name"] == "mine-npy"
    # the run's own features, reopened with its recorded card
    res = _run(["predict", str(run), "--split", "val", "--manifest", str(small_manifest), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    # features declared by another card are refused, naming both
    other = tmp_path / "other"
    other.mkdir()
    for v in _videos(small_manifest):
        np.save(other / f"v_{v}.npy", _rows(120, 0))
    res = _run(["predict", str(run), "--split", "val", "--manifest", str(small_manifest), "--features", str(other),
                "--feature-preset", "opentad-tsp", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 2
    assert "the run was trained on 'mine-npy'" in res.output, res.output
    assert "declared as 'opentad-tsp'" in res.output and not (tmp_path / "p.json").exists()
    # localize cannot compute card features from a video
    from relocbench.localize.runs import load_run, run_feature_settings

    with pytest.raises(ConfigError, match=r"trained on the 'mine-npy' features \(a feature card\), which relocbench "
                                          r"cannot compute from a video"):
        run_feature_settings(load_run(run))


def test_a_bare_npy_folder_is_refused_with_what_to_pass(small_manifest, tmp_path):
    feats = tmp_path / "bare"
    feats.mkdir()
    for v in _videos(small_manifest):
        np.save(feats / f"{v}.npy", _rows(240, 0))   # 8-frame stride
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--features", str(feats), "--quiet",
                "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "bare: the time axis of these features is not declared" in res.output
    assert "pass --feature-preset NAME (one of c3d-release, " in res.output and "--feature-card FILE" in res.output
    assert not (tmp_path / "run").exists()
    # declared as 16-frame steps, the 8-frame stride folder fails naming the file, the video and the rows
    card = tmp_path / "c.yaml"
    card.write_text("name: wrong\nlayout: folder\ntime_axis: {kind: clips, stride_frames: 16}\n")
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--features", str(feats), "--quiet",
                "--feature-card", str(card), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    v = _videos(small_manifest)
    assert any(f"bare/{x}.npy: {x}: 240 feature rows found, 119 to 121 expected for its 120 s (1920 frames)"
               in res.output for x in v), res.output
    # declared right, it runs
    card.write_text("name: right\nlayout: folder\ntime_axis: {kind: clips, clip_frames: 16, stride_frames: 8}\n")
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--features", str(feats), "--quiet",
                "--feature-card", str(card), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output


def test_preset_and_card_options_are_checked(small_manifest, tmp_path):
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--feature-preset", "tsp",
                "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "give it with --features PATH" in res.output
    feats = _write_layout(tmp_path, "npy", _videos(small_manifest))
    res = _run(["run-baseline", "frame-dp", "--dataset", str(small_manifest), "--features", str(feats),
                "--feature-preset", "nope", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown feature preset 'nope'" in res.output


# --------------------------------------------------------------------------- features inspect
def test_inspect_text_and_json(small_manifest, tmp_path):
    videos = _videos(small_manifest)
    feats = _write_layout(tmp_path, "npy", videos[:-2])
    np.save(feats / f"{videos[0]}.npy", _rows(240, 0))  # mismatched: twice the rows
    res = _run(["features", "inspect", str(feats), "--manifest", str(small_manifest), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["layout"] == "folder" and info["format"] == "npy" and info["dim"] == DIM
    assert info["dtype"] == "float32" and info["time_axis"]["stride_frames"] == 16
    assert info["declared_by"].startswith("card ") and info["card"]["name"] == "mine-npy"
    by_video = {e["video"]: e for e in info["videos"]}
    assert by_video[videos[0]] == {"video": videos[0], "rows": 240, "expected": [119, 121], "ok": False}
    assert by_video[videos[1]]["ok"] is True and len(by_video) == len(videos) - 2
    man = info["manifest"]
    m = open_manifest(str(small_manifest))
    for split in m.splits:
        vids = set(m.table("segments", split)["video"])
        assert man["present"][split] + man["missing"][split] + man["mismatched"][split] == len(vids)
        assert man["missing"][split] == len(vids & set(videos[-2:]))
        assert man["mismatched"][split] == int(videos[0] in vids)
    assert man["mismatched_examples"][0]["video"] == videos[0]
    res = _run(["features", "inspect", str(feats), "--manifest", str(small_manifest)])
    assert res.exit_code == 0, res.output
    assert "clips of 16 frames every 16 frames at the video's own fps" in res.output
    assert f"Mismatched: {feats / (videos[0] + '.npy')}: {videos[0]}: 240 rows, expected 119 to 121" in res.output


def test_inspect_presets_and_errors(tmp_path):
    path = tmp_path / "tsp.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v_---9CpRcKoU", data=np.zeros((14, 512), np.float32))
    res = _run(["features", "inspect", str(path), "--feature-preset", "tsp", "--manifest", "activitynet", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["layout"] == "hdf5" and info["dim"] == 512 and info["declared_by"] == "preset tsp"
    assert info["videos"] == [{"video": "---9CpRcKoU", "rows": 14, "expected": [12, 15], "ok": True}]
    assert info["manifest"]["present"]["train"] == 1 and info["manifest"]["missing"]["test"] == 478
    res = _run(["features", "inspect", str(path)])
    assert res.exit_code == 2 and "tsp.h5: the time axis of these features is not declared" in res.output
    res = _run(["features", "inspect", str(path), "--feature-preset", "tsp", "--feature-card", str(path)])
    assert res.exit_code == 2 and "give --feature-preset or --feature-card, not both" in res.output


def test_inspect_reports_arrays_that_are_not_2d_or_of_another_dimension(small_manifest, tmp_path):
    """Such files fail when read: inspect never counts them as present or ok."""
    videos = _videos(small_manifest)
    feats = _write_layout(tmp_path, "npy", videos)
    np.save(feats / f"{videos[0]}.npy", np.zeros(120, np.float32))          # 1-D
    np.save(feats / f"{videos[1]}.npy", np.zeros((120, DIM + 1), np.float32))  # another dimension
    res = _run(["features", "inspect", str(feats), "--manifest", str(small_manifest), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    by_video = {e["video"]: e for e in info["videos"]}
    assert by_video[videos[0]]["ok"] is False and by_video[videos[0]]["problem"] == "not a 2-D array [rows, dim]"
    assert by_video[videos[1]]["ok"] is False
    assert by_video[videos[1]]["problem"] == f"{DIM + 1}-dimensional rows, expected {DIM} (the source's dimension)"
    assert "problem" not in by_video[videos[2]] and by_video[videos[2]]["ok"] is True
    man, m = info["manifest"], open_manifest(str(small_manifest))
    for split in m.splits:
        vids = set(m.table("segments", split)["video"])
        assert man["mismatched"][split] == len(vids & set(videos[:2])) and man["missing"][split] == 0
    res = _run(["features", "inspect", str(feats), "--manifest", str(small_manifest)])
    assert res.exit_code == 0, res.output
    assert f"Malformed: {videos[0]}: not a 2-D array [rows, dim]" in res.output
    assert f"Mismatched: {feats / (videos[1] + '.npy')}: {videos[1]}: {DIM + 1}-dimensional rows" in res.output
