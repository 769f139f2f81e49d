"""The spatio-temporal model and the five stvr-* baselines: shapes, losses, a tiny overfit,
the prediction format, batches that derive from (seed, step), and tiny end-to-end runs.

(The cells' zero-flow equivalences are tested in test_cells.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from relocbench_baselines.stvr.model import BoxCoder, STVRModel, Tiny3D, build_backbone, make_anchors
from relocbench_baselines.stvr.zoo import STVR, STVRConfig
from relocbench import ConfigError
from relocbench.cli import cli
from relocbench.engine import run_baseline
from relocbench.manifest import open_manifest, write_manifest
from relocbench.registry import get_baseline, list_baselines
from relocbench.tasks import get_task
from relocbench.video.sprites import SpritesConfig, SpriteVideos, build_sprites

VARIANTS = ["stvr-clip", "stvr-convlstm", "stvr-flow", "stvr-traj", "stvr-warp"]
TINY_RUN = {"steps": 2, "batch_size": 2, "eval_every": 0, "ref_clips": 2, "query_clips": 1, "width": 4,
            "hidden_channels": 8, "attention_dim": 8, "head_channels": 8, "head_dim": 16, "test_proposals": 8}
SPR = SpritesConfig(videos=(6, 3, 3), n_clips=6)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sprites(tmp_path_factory) -> Path:
    return build_sprites(tmp_path_factory.mktemp("stvr") / "synthetic-sprites", SPR)


def tiny_model(cell="warp", **kw):
    torch.manual_seed(0)
    args = dict(cell=cell, width=4, hidden_channels=8, attention_dim=8, head_channels=8, head_dim=16,
                train_proposals=8, test_proposals=8)
    args.update(kw)
    return STVRModel(**args)


def fake_batch(b=2, t=3, q=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, 256, (b, t, 8, 64, 64, 3), generator=g, dtype=torch.uint8)
    query = torch.randint(0, 256, (b, q, 8, 64, 64, 3), generator=g, dtype=torch.uint8)
    box = torch.tensor([[10.0, 12.0, 30.0, 34.0]])
    other = torch.tensor([[36.0, 30.0, 54.0, 50.0]])
    return {
        "ref_clips": ref, "ref_valid": torch.ones(b, t, dtype=torch.bool), "query_clips": query,
        "query_boxes": box.expand(b, q, 4).clone(), "query_valid": torch.ones(b, q, dtype=torch.bool),
        "gt_all": [torch.cat([box, other]) for _ in range(b * t)], "gt_match": [box for _ in range(b * t)],
        "flows": torch.zeros(b, t, 2, 8, 8),
    }


def test_backbone_shapes_and_time_flattened_into_channels():
    x = torch.zeros(3, 3, 8, 64, 64)
    net = Tiny3D(width=4, stride=8)
    assert net(x).shape == (3, 4 * 4 * 2, 8, 8) and net.out_channels == 32
    assert Tiny3D(width=4, stride=16)(x).shape == (3, 32, 4, 4)
    with pytest.raises(ConfigError, match="'backbone_stride' parameter of tiny3d must be 8 or 16"):
        Tiny3D(stride=4)
    with pytest.raises(ConfigError, match="'backbone' parameter must be one of"):
        build_backbone("i3d")
    with pytest.raises(ConfigError, match="tiny3d backbone has no pretrained weights"):
        build_backbone("tiny3d", pretrained=True)


def test_torchvision_backbone_is_cut_at_stride_16_and_never_downloads(tmp_path, monkeypatch):
    net = build_backbone("r3d_18")
    assert net.stride == 16 and net(torch.zeros(1, 3, 8, 64, 64)).shape == (1, net.out_channels, 4, 4)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="not available offline: expected .*r3d_18-.*never downloads"):
        build_backbone("r3d_18", pretrained=True)
    with pytest.raises(ConfigError, match="pretrained weights for s3d not found"):
        build_backbone("s3d", pretrained=True, pretrained_path=str(tmp_path / "none.pth"))


def test_box_coder_round_trip_and_anchor_layout():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 9.0, 7.0]])
    boxes = torch.tensor([[1.0, 2.0, 12.0, 18.0], [4.0, 4.0, 10.0, 10.0]])
    d = coder.encode(ref, boxes)
    assert d[0].tolist() == pytest.approx([10 * 1.5 / 10, 10 * 0.0 / 20, 5 * np.log(1.1), 5 * np.log(0.8)])
    torch.testing.assert_close(coder.decode(ref, d), boxes)
    a = make_anchors(2, 2, 8, [8.0], [1.0])
    assert a.tolist() == [[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]]


def test_losses_finite_for_every_cell_and_flow_required():
    batch = fake_batch()
    for cell in ("none", "convlstm", "flow", "traj", "warp"):
        losses = tiny_model(cell)(**batch)
        assert set(losses) == {"rpn_cls", "rpn_box", "cls", "box"}
        assert all(torch.isfinite(v) for v in losses.values()), cell
        assert losses["rpn_cls"] > 0 and losses["cls"] > 0
    with pytest.raises(ConfigError, match="flow cell needs dense optical flows"):
        tiny_model("flow")(**{**batch, "flows": None})


def test_tiny_overfit_decreases_the_loss():
    torch.manual_seed(0)
    model = tiny_model("warp")
    batch = fake_batch(b=1, t=2, q=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for step in range(60):
        torch.manual_seed(step)
        loss = sum(model(**batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert np.mean(history[-5:]) < 0.5 * history[0]


def test_attention_ignores_padded_query_clips():
    model = tiny_model("convlstm").eval()
    maps = torch.randn(2, model.channels, 8, 8)
    rois = [torch.tensor([[4.0, 4.0, 30.0, 30.0]]), torch.tensor([[10.0, 8.0, 40.0, 50.0]])]
    q = torch.randn(1, 3, model.channels, 4, 4)
    mask = torch.tensor([[True, True, False]])
    img = torch.zeros(2, dtype=torch.long)
    a = model.head(maps, rois, q, mask, img)
    b = model.head(maps, rois, torch.cat([q[:, :2], torch.randn(1, 1, model.channels, 4, 4)], 1), mask, img)
    c = model.head(maps, rois, q[:, :2], mask[:, :2], img)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_detect_returns_ranked_boxes_per_keyframe():
    model = tiny_model("warp", detections=3).eval()
    batch = fake_batch(b=1, t=4, q=2)
    dets = model.detect(batch["ref_clips"][0], batch["query_clips"][0], batch["query_boxes"][0])
    assert len(dets) == 4
    for boxes, scores in dets:
        assert boxes.shape[1] == 4 and len(boxes) == len(scores) <= 3
        assert torch.all(scores[:-1] >= scores[1:]) and torch.all((scores >= 0) & (scores <= 1))
        assert torch.all(boxes >= 0) and torch.all(boxes <= 64) and torch.all(boxes[:, 2:] > boxes[:, :2])


def test_registry_variants_are_configs_of_one_class():
    names = [c.name for c in list_baselines("spatiotemporal")]
    assert set(VARIANTS) <= set(names)
    cells = {n: get_baseline(n).default_config().cell for n in VARIANTS}
    assert cells == {"stvr-clip": "none", "stvr-convlstm": "convlstm", "stvr-flow": "flow", "stvr-traj": "traj",
                     "stvr-warp": "warp"}
    assert all(issubclass(get_baseline(n), STVR) for n in VARIANTS)
    with pytest.raises(ConfigError, match="'cell' parameter must be one of"):
        STVR.default_config({"cell": "gru"})


def _baseline(sprites, name="stvr-warp", **over):
    cls = get_baseline(name)
    ctx = get_task("spatiotemporal").open(str(sprites), "synthetic", device=torch.device("cpu"), seed=0,
                                          skip_missing=False)
    cfg = cls.default_config({**TINY_RUN, **over})
    b = cls(cfg, ctx)
    model = cls.create_model(cfg)
    b.prepare(model)
    return b, model


def test_batches_derive_from_seed_and_step_and_split_across_ranks(sprites):
    b, _ = _baseline(sprites, "stvr-flow", batch_size=4)
    one, two = b.batch(3), b.batch(3)
    other = b.batch(4)
    assert all(np.array_equal(x["ref"], y["ref"]) for x, y in zip(one, two))
    assert not all(np.array_equal(x["ref"], y["ref"]) for x, y in zip(one, other))
    shares = b.batch(3, 0, 2) + b.batch(3, 1, 2)
    assert all(np.array_equal(x["query"], y["query"]) and np.array_equal(x["flows"], y["flows"])
               for x, y in zip(one, shares))
    it = one[0]
    assert it["ref"].shape == (2, 8, 64, 64, 3) and it["query"].shape == (1, 8, 64, 64, 3)
    assert it["flows"].shape == (2, 2, 8, 8)
    # the query's own label is among the reference's actors at some valid keyframe
    assert any(len(g) for g in it["gt_match"]) and all(len(m) <= len(a) for m, a in zip(it["gt_match"], it["gt_all"]))
    with pytest.raises(ConfigError, match="batch_size 4 is not divisible by the 3 distributed processes"):
        b.batch(0, 0, 3)


@pytest.fixture(scope="module")
def tiny_runs(sprites, tmp_path_factory):
    """The five variants, 2 training steps each, in one runs folder."""
    root = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: run_baseline(name, dataset=str(sprites), out=root / name, device="cpu", overrides=TINY_RUN)
                for name in VARIANTS}
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("name", VARIANTS)
def test_tiny_end_to_end_run(name, sprites, tiny_runs):
    res = tiny_runs[name]
    r = res.result
    assert r["task"] == "spatiotemporal" and r["dataset"] == "synthetic-sprites" and r["config"]["cell"] == \
        get_baseline(name).default_config().cell
    assert set(r["metrics"]["frame_map"]) == {"0.3", "0.5", "0.7"}
    assert all(0.0 <= v <= 1.0 for v in r["metrics"]["frame_map"].values())
    assert r["training"]["steps"] == 2
    doc = json.loads((res.run_dir / "predictions-test.json").read_text())
    pairs = open_manifest(sprites).table("pairs", "test")
    assert doc["task"] == "spatiotemporal" and doc["manifest"] == "synthetic-sprites" and doc["split"] == "test"
    assert set(doc["results"]) == set(pairs["pair_id"])
    kf = dict(zip(pairs["pair_id"], pairs["ref_keyframes"]))
    for pid, preds in doc["results"].items():
        scores = [p["score"] for p in preds]
        assert scores == sorted(scores, reverse=True)
        for p in preds:
            assert p["time"] in set(kf[pid]) and 0 <= p["box"][0] <= p["box"][2] <= 1 and 0 <= p["score"] <= 1


def test_figures_from_run_folders(tiny_runs, tmp_path, monkeypatch):
    from relocbench_baselines.stvr import figures

    monkeypatch.setenv("RELOCBENCH_CACHE", str(tmp_path / "cache"))  # the sprites manifest is regenerated here
    runs_dir = next(iter(tiny_runs.values())).run_dir.parent
    paths = figures.main(["--runs", str(runs_dir), "--out", str(tmp_path)])
    assert [p.name for p in paths] == ["synthetic-sprites-relocalization.png", "synthetic-sprites-warp-grid.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert (tmp_path / "cache").is_dir()
    from relocbench import OutputExistsError

    with pytest.raises(OutputExistsError, match="exists already"):
        figures.main(["--runs", str(runs_dir), "--out", str(tmp_path)])
    model = tiny_runs["stvr-warp"]
    b, m, ctx, _ = figures.load_run(model.run_dir)
    row = next(ctx.manifest.table("pairs", "test").itertuples(index=False))
    flows = figures.state_flows(b, m, row)
    assert flows.shape == (len(row.ref_keyframes), 2, 8, 8) and np.all(flows[0] == 0)
    b, m, ctx, _ = figures.load_run(tiny_runs["stvr-clip"].run_dir)
    assert figures.state_flows(b, m, row) is None
    diag = figures.matching_diagnostic(tiny_runs["stvr-clip"].run_dir)
    ref = figures.detector_only_reference(ctx.manifest, "test")
    assert diag["gt_boxes_random_scores"] == pytest.approx(ref["0.5"])  # same boxes, same random scores
    assert 0 <= diag["gt_boxes_head_scores"] <= 1 and ref == figures.detector_only_reference(ctx.manifest, "test")


def test_same_seed_same_predictions_and_cli(sprites, tmp_path):
    a = run_baseline("stvr-warp", dataset=str(sprites), out=tmp_path / "a", device="cpu", overrides=TINY_RUN)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in TINY_RUN.items()))
    res = CliRunner().invoke(cli, ["run-baseline", "stvr-warp", "--dataset", str(sprites), "--out", str(tmp_path / "b"),
                                   "--config", str(cfg), "--device", "cpu", "--quiet", "--leaderboard",
                                   str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert "0.5" in res.output and (tmp_path / "lb" / "results" / "synthetic-sprites" / "stvr-warp" / "seed-0.json").is_file()
    assert (tmp_path / "a" / "predictions-test.json").read_bytes() == (tmp_path / "b" / "predictions-test.json").read_bytes()
    assert json.loads((tmp_path / "b" / "metrics-test.json").read_text()) == a.metrics
    res = CliRunner().invoke(cli, ["leaderboard", "--dir", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "Table 1 layout (CVPR 2019)" in readme and "| stvr-warp |" in readme and "| stvr-clip | –" in readme


def test_real_frames_path_jpeg_folders(sprites, tmp_path):
    """A spatio-temporal manifest that is not synthetic-sprites reads JPEG frames (ucf24 layout)."""
    import cv2

    man = open_manifest(sprites)
    tables = {(t, s): man.table(t, s) for t, s in man.tables()}
    meta = {k: v for k, v in man.meta.items() if k not in ("tables", "extras", "schema_version")}
    meta.update(name="ucf24", units={"time": "frame index (0-based)", "keyframe_stride": 8})
    out = write_manifest(tmp_path / "ucf24", tables, meta)
    src = SpriteVideos(SPR)
    videos = set()
    for s in ("train", "val", "test"):
        videos |= set(tables[("tubelets", s)]["video"])
    for v in sorted(videos):
        d = tmp_path / "frames" / "rgb-images" / v
        d.mkdir(parents=True)
        for i, f in enumerate(src.frames(v)):
            cv2.imwrite(str(d / f"{i + 1:05d}.jpg"), f[..., ::-1])
    with pytest.raises(ConfigError, match="needs its frames: pass --features PATH"):
        run_baseline("stvr-clip", dataset=str(out), out=tmp_path / "r0", device="cpu", overrides=TINY_RUN)
    res = run_baseline("stvr-clip", dataset=str(out), features=str(tmp_path / "frames"), out=tmp_path / "r",
                       device="cpu", overrides=TINY_RUN)
    assert res.result["features"]["layout"] == "ucf24" and res.metrics["n_pairs"] == len(tables[("pairs", "test")])
    # skip-missing: a pair whose video has no frames is left out and scored as a miss
    gone = tables[("pairs", "test")]["ref_video"].iloc[0]
    for p in sorted((tmp_path / "frames" / "rgb-images" / gone).iterdir()):
        p.unlink()
    (tmp_path / "frames" / "rgb-images" / gone).rmdir()
    res = run_baseline("stvr-clip", dataset=str(out), features=str(tmp_path / "frames"), out=tmp_path / "r2",
                       device="cpu", overrides=TINY_RUN, skip_missing=True)
    assert res.metrics["n_missing"] >= 1


def test_dataset_errors(sprites, tmp_path):
    with pytest.raises(ConfigError, match="renders its own frames; leave --features at 'synthetic'"):
        run_baseline("stvr-clip", dataset=str(sprites), features="/data/frames", out=tmp_path / "r", device="cpu",
                     overrides=TINY_RUN)
    with pytest.raises(ConfigError, match="the train split has no fixed pairs"):
        run_baseline("stvr-clip", dataset=str(sprites), split="train", out=tmp_path / "r2", device="cpu",
                     overrides={**TINY_RUN, "steps": 0})


def test_stvr_config_defaults_are_cpu_sized():
    cfg = STVRConfig()
    assert cfg.backbone == "tiny3d" and cfg.frame_size == 64 and cfg.batch_size == 4
    paper = Path(__file__).resolve().parent.parent / "baselines" / "stvr" / "configs" / "paper.yaml"
    from relocbench.engine import load_config_file

    doc = load_config_file(paper)
    assert doc["optimizer"] == "sgd" and doc["lr"] == 0.03 and doc["momentum"] == 0.9 and doc["batch_size"] == 8
    assert list(doc["lr_milestones"]) == [10000] and doc["ref_clips"] == 6 and doc["frame_size"] == 320
    STVR.default_config(doc)  # a valid config


def test_task_units_and_layouts():
    from relocbench.video.task import frames_layout, keyframe_stride

    assert keyframe_stride({"units": {"time": "seconds"}}) == 1.0  # AVA: 1 Hz keyframes
    assert keyframe_stride({"units": {"time": "frame index (0-based)"}, "params": {"keyframe_stride": 4}}) == 4.0
    assert keyframe_stride({"units": {"time": "frame index (0-based)"}}) == 8.0
    assert frames_layout({"name": "ucf24"}) == {"layout": "ucf24"}
    assert frames_layout({"name": "ava", "units": {"time": "seconds"}}) == {"layout": "ava"}
    assert frames_layout({"name": "mine", "units": {"time": "seconds"}}) == {"layout": "videos", "time_unit": "second"}
    task = get_task("spatiotemporal")
    m = {"frame_map": {"0.3": 0.5, "0.5": 0.25, "0.7": 0.125}}
    assert task.headline(m) == 0.25 and task.curve(m)[:2] == ([0.3, 0.5, 0.7], [0.5, 0.25, 0.125])


def test_distributed_shares_give_the_one_process_gradient(sprites):
    """What DDP computes with 2 ranks (each its share of the batch, losses over batch-wide
    counts, gradients averaged) equals the one-process gradient of the whole batch: the
    anchor and RoI sampling follows each item, not the rank."""
    b, model = _baseline(sprites, "stvr-convlstm", batch_size=4)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]

    full = b.batch(5)
    g_full = grads(b.loss(model, full)[0])
    shares = [b.batch(5, r, 2) for r in (0, 1)]
    with torch.no_grad():
        parts = [model(**b._collate(s), reduction="sum") for s in shares]
    totals = (float(sum(p["n_images"] for p in parts)), float(sum(p["n_rois"] for p in parts)))
    assert totals[0] > 0 and totals[1] > 0
    b.ctx.world_size = 2
    b.ctx.global_sum = lambda *values: totals  # what all_reduce returns to both ranks
    per_rank = [grads(b.loss(model, s)[0]) for s in shares]
    for (name, _), g, g0, g1 in zip(model.named_parameters(), g_full, *per_rank):
        torch.testing.assert_close((g0 + g1) / 2, g, rtol=1e-4, atol=1e-6, msg=name)
    # and the item seeds matter: another seed for one item changes the sampled anchors
    other = [dict(it) for it in full]
    other[0]["seed"] += 1
    b.ctx.world_size = 1
    del b.ctx.global_sum
    assert not all(torch.allclose(x, y) for x, y in zip(grads(b.loss(model, other)[0]), g_full))


def test_ddp_two_cpu_processes_match_one_process(sprites, tmp_path):
    """torchrun with 2 gloo processes trains stvr-convlstm to the weights of one process
    (batch-wide loss counts through all_reduce, per-item sampling streams)."""
    import os
    import subprocess
    import sys

    over = {**TINY_RUN, "steps": 2, "batch_size": 4}
    single = run_baseline("stvr-convlstm", dataset=str(sprites), out=tmp_path / "single", device="cpu",
                          overrides=over)
    repo = Path(__file__).resolve().parent.parent
    script = tmp_path / "ddp_entry.py"
    script.write_text("from relocbench.engine import run_baseline\n"
                      f"run_baseline('stvr-convlstm', dataset={str(sprites)!r}, out={str(tmp_path / 'ddp')!r}, "
                      f"device='cpu', overrides={over!r})\n")
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29547", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "single" / "checkpoint-last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "ddp" / "checkpoint-last.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    cfg = STVR.default_config(over)
    torch.manual_seed(cfg.seed)  # the engine's initialisation
    init = STVR.create_model(cfg).state_dict()
    moved = [k for k in a if a[k].is_floating_point() and (a[k] - init[k]).abs().max() > 1e-4]
    assert len(moved) > len(a) // 2, moved  # training moved the weights the two runs agree on
    assert json.loads((tmp_path / "ddp" / "result.json").read_text())["metrics"]["n_pairs"] == \
        single.metrics["n_pairs"]
