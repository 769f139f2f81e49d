"""The trained path end to end: rendered videos -> manifest -> extract-features -> cgbm (2 steps)
-> ``relocbench predict`` and ``localize --method RUN_DIR``; mismatched run folders refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, OutputExistsError
from relocbench.localize import localize, load_run, predict_run
from relocbench.localize.runs import predict_windows
from relocbench.localize.synthetic import write_scene_video

FPS = 8  # 16-frame steps of 2 s: a 56 s video has 28 steps
DURATION = 56.0
# class -> scene drawn for every instance of it (a query and its reference then match)
CLASS_SCENE = {"A": 1, "B": 2, "C": 3, "D": 4}


def _timeline(v: int, rng):
    """Instances of every class in a random order, separated by filler scenes of this video."""
    labels = list(CLASS_SCENE)
    rng.shuffle(labels)
    tl, anns, t, k = [], [], 0.0, 0
    for lab in labels:
        gap = float(rng.choice([2.0, 4.0]))
        tl.append((100 + 10 * v + k, gap))
        k += 1
        t += gap
        dur = float(rng.choice([6.0, 8.0]))
        tl.append((CLASS_SCENE[lab], dur))
        anns.append({"segment": [t, t + dur], "label": lab})
        t += dur
    tl.append((100 + 10 * v + k, DURATION - t))
    return tl, anns


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from relocbench.datasets.activitynet import build_activitynet
    from relocbench.engine import run_baseline
    from relocbench.extract import ExtractConfig, extract_videos

    d = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    db, lengths, paths = {}, {}, {}
    for v in range(6):
        tl, anns = _timeline(v, rng)
        vid = f"vid{v:02d}"
        paths[vid] = write_scene_video(d / "videos" / f"{vid}.mp4", tl, fps=FPS, size=(64, 48), seed=0)
        db[f"v_{vid}"] = {"duration_second": DURATION, "annotations": anns}
        lengths[vid] = {"n_frames": int(DURATION * FPS), "n_feat": int(DURATION * FPS) // 16}
    (d / "anno.json").write_text(json.dumps(db))
    (d / "len.json").write_text(json.dumps(lengths))
    (d / "split.json").write_text(json.dumps({"train": ["A", "B"], "val": ["C"], "test": ["D"]}))
    manifest = d / "manifest"
    build_activitynet(d / "anno.json", manifest, lengths=d / "len.json", class_split=d / "split.json")
    cfg = ExtractConfig(backbone="handcrafted", step_frames=16, device="cpu")
    features = d / "features.h5"
    # with a PCA to 32 dimensions fitted on the training videos: localize must reuse it
    extract_videos(paths, cfg, out=features, pca_components=32, pca_fit=["vid00", "vid01", "vid02", "vid03"])
    (d / "tiny.yaml").write_text("hidden: 8\nrank: 2\nfeature_dim: 32\neval_every: 2\neval_batch_size: 16\n")
    run_dir = d / "run"
    run_baseline("cgbm", dataset=str(manifest), features=str(features), out=run_dir, config_file=d / "tiny.yaml",
                 overrides={"steps": 2, "batch_size": 4}, device="cpu", threads=1)
    return {"dir": d, "manifest": manifest, "features": features, "run": run_dir, "videos": paths}


def test_predict_reproduces_the_runs_own_predictions(trained, tmp_path):
    out = tmp_path / "pred-test.json"
    res = predict_run(trained["run"], split="test", manifest=str(trained["manifest"]), out=out, threads=1)
    assert res.n_pairs == res.n_predicted > 0
    assert out.read_bytes() == (trained["run"] / "predictions-test.json").read_bytes()
    val = predict_run(trained["run"], split="val", manifest=str(trained["manifest"]), out=tmp_path / "v.json")
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["split"] == "val" and doc["unit"] == "step" and len(doc["results"]) == val.n_pairs
    with pytest.raises(OutputExistsError, match="pass --force"):
        predict_run(trained["run"], split="val", manifest=str(trained["manifest"]), out=tmp_path / "v.json")
    with pytest.raises(ConfigError, match="not a built-in manifest here; pass --manifest"):
        predict_run(trained["run"], split="val", out=tmp_path / "w.json")
    assert not (tmp_path / "w.json").exists()


def test_cli_predict_default_output_in_run_folder(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    r = CliRunner().invoke(cli, ["predict", str(run), "--split", "test", "--manifest", str(trained["manifest"])])
    assert r.exit_code == 2 and "predictions-test.json: exists already" in r.output
    r = CliRunner().invoke(cli, ["predict", str(run), "--split", "val", "--manifest", str(trained["manifest"]),
                                 "--features", str(trained["features"])])
    assert r.exit_code == 0, r.output
    assert (run / "predictions-val.json").is_file() and "relocbench evaluate" in r.output
    r = CliRunner().invoke(cli, ["evaluate", str(run / "predictions-val.json"), "--manifest",
                                 str(trained["manifest"]), "--split", "val"])
    assert r.exit_code == 0, r.output


def test_predict_refuses_features_of_other_settings(trained, tmp_path):
    from relocbench.extract import ExtractConfig, extract_videos

    other = tmp_path / "step8.h5"
    cfg = ExtractConfig(step_frames=8, device="cpu", pca=str(trained["features"]))  # the run's PCA, other step
    extract_videos({"vid00": trained["videos"]["vid00"]}, cfg, out=other)
    with pytest.raises(ConfigError, match=r"features mismatch in step_frames: the run was trained on .*step_frames=16"
                                          r".*features\.h5.*step_frames=8 .*step8\.h5"):
        predict_run(trained["run"], split="test", manifest=str(trained["manifest"]), features=str(other),
                    out=tmp_path / "p.json")


def test_localize_with_the_trained_run(trained, tmp_path):
    videos = trained["videos"]
    query, ref = videos["vid00"], videos["vid01"]
    res = localize(query, [ref, videos["vid02"]], query_range="10:18", method=str(trained["run"]), device="cpu",
                   cache=tmp_path / "cache", top_k=3)
    assert res.method == {"run": str(trained["run"]), "baseline": "cgbm", "checkpoint": "checkpoint-best.pt"}
    assert res.features["backbone"] == "handcrafted" and res.features["step_frames"] == 16
    assert res.features["dim"] == 32 and "grid_s" not in res.features
    import h5py

    with h5py.File(trained["features"], "r") as f:
        assert res.features["pca"] == f.attrs["pca"] and res.features["pca"].startswith("pca-32 sha256:")
    assert 1 <= len(res.segments) <= 3 and [s.rank for s in res.segments] == list(range(1, len(res.segments) + 1))
    for s in res.segments:
        assert 0 <= s.start < s.end <= DURATION + 1e-6 and np.isfinite(s.score)
    png = tmp_path / "t.png"
    from relocbench.localize import write_plot

    write_plot(res, png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(cli, ["localize", str(query), str(ref), "--query-range", "10:18", "--method",
                                 str(trained["run"]), "--device", "cpu", "--no-cache", "--quiet",
                                 "--output-json", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["method"]["baseline"] == "cgbm" and doc["segments"]


def test_long_reference_is_scanned_in_overlapping_windows(trained):
    run = load_run(trained["run"])
    rng = np.random.default_rng(0)
    q = rng.standard_normal((4, 32)).astype(np.float32)
    ref = rng.standard_normal((50, 32)).astype(np.float32)
    cand, windows = predict_windows(run, q, ref, window=12, overlap=4)
    assert windows[0] == (0, 12) and windows[-1] == (38, 50) and len(windows) == 6
    # each window is one pair whose ranked spans (top_k of them at most) come back on the whole
    # reference's steps, window after window
    alone_lists = [predict_windows(run, q, ref[a:b], window=12, overlap=4) for a, b in windows]
    assert all(plan == [(0, 12)] for _, plan in alone_lists)
    sizes = [int(c.start.size) for c, _ in alone_lists]
    assert 1 <= min(sizes) and max(sizes) <= run.config.top_k and cand.start.size == sum(sizes)
    k = 0
    for (a, b), (alone, _) in zip(windows, alone_lists):
        got = slice(k, k + alone.start.size)
        k += alone.start.size
        assert np.all((a <= cand.start[got]) & (cand.start[got] < cand.end[got]) & (cand.end[got] <= b))
        # each window is predicted as if it were cut out alone
        assert np.array_equal(alone.start + a, cand.start[got]) and np.array_equal(alone.end + a, cand.end[got])
        np.testing.assert_allclose(alone.score, cand.score[got], rtol=1e-6)  # float32 batch of 6 vs 1


def test_mismatched_or_incomplete_run_folders_are_refused(trained, tmp_path):
    q = trained["videos"]["vid00"]
    with pytest.raises(ConfigError, match=r"features mismatch in step_frames: the run was trained on .*step_frames=16"
                                          r".*features file .*features\.h5.*step_frames=8 \(asked for\)"):
        localize(q, [trained["videos"]["vid01"]], method=str(trained["run"]), step_frames=8, device="cpu", cache=False)
    with pytest.raises(ConfigError, match="mismatch in backbone"):
        localize(q, [trained["videos"]["vid01"]], method=str(trained["run"]), backbone="r3d_18", device="cpu",
                 cache=False)
    # a run trained on synthetic features: its features cannot be computed from a video
    syn = tmp_path / "synthetic-run"
    shutil.copytree(trained["run"], syn)
    cfg = json.loads((syn / "config.json").read_text())
    cfg["features"] = {"kind": "synthetic", "dim": 521, "seed": 0}
    (syn / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="synthetic features, which cannot be computed from a video"):
        localize(q, [trained["videos"]["vid01"]], method=str(syn), device="cpu", cache=False)
    # no checkpoint
    bare = tmp_path / "bare-run"
    bare.mkdir()
    shutil.copy(trained["run"] / "config.json", bare / "config.json")
    with pytest.raises(ConfigError, match="bare-run: run folder without a checkpoint: expected checkpoint-best.pt"):
        localize(q, [trained["videos"]["vid01"]], method=str(bare), device="cpu", cache=False)
    # not a run folder at all
    with pytest.raises(ConfigError, match="not a run folder: it has no config.json"):
        localize(q, [trained["videos"]["vid01"]], method=str(tmp_path), device="cpu", cache=False)
    # the features file moved away
    moved = tmp_path / "moved-run"
    shutil.copytree(trained["run"], moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["features"]["source"] = str(tmp_path / "gone.h5")
    (moved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="gone.h5: the run's features file is gone"):
        localize(q, [trained["videos"]["vid01"]], method=str(moved), device="cpu", cache=False)
    r = CliRunner().invoke(cli, ["localize", str(q), str(q), "--method", str(bare), "--quiet", "--no-cache"])
    assert r.exit_code == 2 and "without a checkpoint" in r.output and len(r.output.strip().splitlines()) == 1


def test_predict_defaults_to_the_runs_builtin_manifest_and_features(tmp_path):
    from relocbench.engine import run_baseline

    run_baseline("chance", dataset="activitynet", features="synthetic", out=tmp_path / "chance", device="cpu")
    res = predict_run(tmp_path / "chance", split="test", out=tmp_path / "p.json")
    assert (res.manifest, res.features) == ("activitynet", "synthetic")
    assert (tmp_path / "p.json").read_bytes() == (tmp_path / "chance" / "predictions-test.json").read_bytes()
