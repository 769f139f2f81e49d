"""Every temporal baseline runs end to end through the engine (tiny configs), and the
registry exposes the paper's variants as configurations of one class."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.engine import run_baseline
from relocbench.registry import get_baseline, list_baselines

TINY = {
    "chance": {},
    "frame-dp": {},
    "cgbm": {"steps": 3, "batch_size": 4, "hidden": 8, "rank": 2, "eval_every": 2},
    "cgbm-base": {"steps": 2, "batch_size": 4, "hidden": 8, "rank": 2},
    "cgbm-gating": {"steps": 2, "batch_size": 4, "hidden": 8, "rank": 2},
    "cgbm-bilinear": {"steps": 2, "batch_size": 4, "hidden": 8, "rank": 2},
    "video-triplet": {"steps": 3, "batch_size": 4, "hidden": 8, "max_span": 16},
    "sst": {"steps": 3, "batch_size": 4, "hidden": 16, "layers": 1, "anchors": 16, "window": 32},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_baseline_runs_end_to_end(name, small_manifest, tmp_path):
    res = run_baseline(name, dataset=str(small_manifest), out=tmp_path / name, overrides=TINY[name])
    m = res.metrics
    assert m["n_pairs"] > 0 and m["n_missing"] == 0
    assert 0.0 <= m["average"] <= 1.0
    pred = json.loads((tmp_path / name / "predictions-test.json").read_text())
    for pid, preds in pred["results"].items():
        s, e = preds[0]["segment"]
        assert 0 <= s < e
        # the top_k (10) best, best first, distinct
        assert 1 <= len(preds) <= 10
        assert all(a["score"] >= b["score"] for a, b in zip(preds, preds[1:]))
        assert len({tuple(p["segment"]) for p in preds}) == len(preds)
    cls = get_baseline(name)
    assert (tmp_path / name / "checkpoint-best.pt").is_file() == cls.trainable


def test_variants_are_configurations_of_one_class():
    classes = {n: get_baseline(n) for n in ("cgbm", "cgbm-base", "cgbm-gating", "cgbm-bilinear")}
    assert len({c.__mro__[1] for c in classes.values()}) == 1
    cfg = {n: c.default_config() for n, c in classes.items()}
    assert (cfg["cgbm"].gating, cfg["cgbm"].bilinear) == (True, True)
    assert (cfg["cgbm-base"].gating, cfg["cgbm-base"].bilinear) == (False, False)
    assert (cfg["cgbm-gating"].gating, cfg["cgbm-gating"].bilinear) == (True, False)
    assert (cfg["cgbm-bilinear"].gating, cfg["cgbm-bilinear"].bilinear) == (False, True)
    # paper settings of the model
    assert (cfg["cgbm"].hidden, cfg["cgbm"].rank, cfg["cgbm"].loss_weight, cfg["cgbm"].lr,
            cfg["cgbm"].clip_norm) == (128, 8, 10.0, 1e-3, 5.0)
    # the variants differ only in the two flags
    a, b = vars(cfg["cgbm"]).copy(), vars(cfg["cgbm-base"]).copy()
    for d in (a, b):
        d.pop("gating"), d.pop("bilinear")
    assert a == b


def test_parameter_counts_at_paper_settings():
    counts = {c.name: c.parameter_count() for c in list_baselines("temporal")}
    assert counts["chance"] == counts["frame-dp"] == 0
    assert counts["cgbm"] == 999_429 and counts["cgbm-base"] == 965_381
    assert counts["video-triplet"] == 322_560 and counts["sst"] == 3_166_272
    res = CliRunner().invoke(cli, ["list-baselines", "--task", "temporal"])
    assert res.exit_code == 0 and "999,429" in res.output


def test_paper_config_file_loads(small_manifest):
    from pathlib import Path

    from relocbench.engine import load_config_file

    doc = load_config_file(Path(__file__).resolve().parent.parent / "baselines/temporal/configs/paper.yaml")
    cfg = get_baseline("cgbm").default_config(doc)
    assert (cfg.batch_size, cfg.steps, cfg.lr) == (128, 1000, 1e-3)


def test_trainable_baseline_with_zero_steps_writes_a_result(small_manifest, tmp_path):
    res = run_baseline("cgbm", dataset=str(small_manifest), out=tmp_path / "r",
                       overrides={"steps": 0, "batch_size": 4, "hidden": 8, "rank": 2})
    assert res.result["training"] == {"steps": 0, "best_val": None, "best_step": None}
    assert json.loads((tmp_path / "r" / "result.json").read_text())["training"]["best_val"] is None


def test_frames_and_features_together_is_an_error(small_manifest, tmp_path):
    res = CliRunner().invoke(cli, ["run-baseline", "chance", "--dataset", str(small_manifest), "--frames", str(tmp_path),
                                   "--features", "x.h5", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--frames or --features, not both" in res.output


def test_skip_missing_counts_pairs_without_features(small_manifest, tmp_path):
    """A feature folder lacking videos: an error naming the video, or with --skip-missing
    those pairs are scored as misses and counted."""
    import numpy as np

    from relocbench import FeatureError, load_manifest

    pairs = load_manifest(small_manifest, "test", "pairs")
    videos = sorted(set(pairs["query_video"]) | set(pairs["ref_video"]))
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for v in videos[1:]:  # the first video has no features
        np.save(feats / f"{v}.npy", rng.normal(size=(120, 16)).astype(np.float32))
    with pytest.raises(FeatureError, match=videos[0]):
        run_baseline("frame-dp", dataset=str(small_manifest), features=str(feats), out=tmp_path / "a")
    res = run_baseline("frame-dp", dataset=str(small_manifest), features=str(feats), out=tmp_path / "b",
                       skip_missing=True)
    touched = ((pairs["query_video"] == videos[0]) | (pairs["ref_video"] == videos[0])).sum()
    assert touched > 0 and res.metrics["n_missing"] == touched and res.metrics["n_pairs"] == len(pairs)
