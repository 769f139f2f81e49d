"""The ``original`` recipe of the spatio-temporal zoo: the heads of the authors' model
(pooling, RPN and second-stage targets, sampling, losses, inference), the recipe's config and
a tiny end-to-end run from the command line, each against a hand-computed oracle."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import roi_align

from relocbench import ConfigError
from relocbench.cli import cli
from relocbench.engine import load_config_file, resolve_config
from relocbench.extract.backbones.base import WEIGHTS_NOTE_RANDOM
from relocbench.io import sha256_file
from relocbench.video.sprites import SpritesConfig, build_sprites
from relocbench_baselines.stvr import original_model as om
from relocbench_baselines.stvr.model import _sample
from relocbench_baselines.stvr.original import roi_labels
from relocbench_baselines.stvr.original_model import (
    BOX_CODER_WEIGHTS,
    HEAD_BATCH,
    HEAD_POSITIVE_FRACTION,
    LOCALIZATION_WEIGHT,
    RPN_BATCH,
    RPN_POSITIVE_FRACTION,
    OriginalSTVRModel,
    crop_and_pool,
    head_loss,
    head_targets,
    multiclass_nms,
    rpn_loss,
    rpn_targets,
    tf_crop_boxes,
)
from relocbench_baselines.stvr.zoo import STVR, STVR_RECIPES, original_milestones

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]
#: The tiniest original-recipe model: a 4-wide tiny3d at 64x64 (8x8 map, one warp control point).
TINY = {"backbone": "tiny3d", "width": 4, "backbone_stride": 8, "frame_size": 64, "ref_clips": 3, "query_clips": 3,
        "gate_channels": 8, "rpn_depth": 16, "attention_dim": 8, "block_depth": 32, "block_bottleneck": 8,
        "block_units": 1, "batch_size": 2, "eval_every": 0, "select_on_val": False}
MODEL_KW = {k: TINY[k] for k in ("backbone", "width", "backbone_stride", "frame_size", "gate_channels", "rpn_depth",
                                 "attention_dim", "block_depth", "block_bottleneck", "block_units")}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(cell="warp", **kw):
    torch.manual_seed(0)
    return OriginalSTVRModel(cell=cell, **{**MODEL_KW, **kw})


def fake_batch(b=2, t=2, q=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([[10.0, 12.0, 30.0, 34.0]])
    other = torch.tensor([[36.0, 30.0, 54.0, 50.0]])
    return {
        "ref_clips": torch.randint(0, 256, (b, t, 8, 64, 64, 3), generator=g, dtype=torch.uint8),
        "ref_valid": torch.ones(b, t, dtype=torch.bool),
        "query_clips": torch.randint(0, 256, (b, q, 8, 64, 64, 3), generator=g, dtype=torch.uint8),
        "query_boxes": box.expand(b, q, 4).clone(), "query_valid": torch.ones(b, q, dtype=torch.bool),
        "gt_all": [torch.cat([box, other]) for _ in range(b * t)], "gt_match": [box for _ in range(b * t)],
        "gt_matching": [torch.tensor([True, False]) for _ in range(b * t)],
    }


# --------------------------------------------------------------------------- pooling
def tf_crop_and_resize(image: np.ndarray, box, crop: int) -> np.ndarray:
    """TensorFlow's ``crop_and_resize`` of one ``(C, H, W)`` map at one normalised
    ``(y1, x1, y2, x2)`` box as its documentation states it: bilinear samples at
    ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (crop - 1)``, 0 outside the map."""
    _, h, w = image.shape
    y1, x1, y2, x2 = box
    out = np.zeros((image.shape[0], crop, crop))
    for i in range(crop):
        y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (crop - 1)
        for j in range(crop):
            x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (crop - 1)
            if not (0 <= y <= h - 1 and 0 <= x <= w - 1):
                continue
            y0, x0 = int(math.floor(y)), int(math.floor(x))
            ya, xa = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            top = image[:, y0, x0] * (1 - dx) + image[:, y0, xa] * dx
            bottom = image[:, ya, x0] * (1 - dx) + image[:, ya, xa] * dx
            out[:, i, j] = top * (1 - dy) + bottom * dy
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 64), min_size=4, max_size=4), st.integers(0, 2**31 - 1))
def test_crop_and_pool_samples_where_tf_crop_and_resize_does(coords, seed):
    x1, x2 = sorted(coords[:2])
    y1, y2 = sorted(coords[2:])
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(1, 3, 5, 6, generator=g, dtype=F64)
    box = torch.tensor([[x1, y1, x2, y2]], dtype=F64)
    # before pooling: one roi_align sample per bin is TF's bilinear sample
    rb = tf_crop_boxes(box, image_size=64, map_height=5, map_width=6, crop_size=14)
    got = roi_align(maps, torch.cat([torch.zeros(1, 1, dtype=F64), rb], 1), 14, spatial_scale=1.0,
                    sampling_ratio=1, aligned=True)[0].numpy()
    want = tf_crop_and_resize(maps[0].numpy(), (y1 / 64, x1 / 64, y2 / 64, x2 / 64), 14)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # then a 2x2 max pool of stride 2: 7x7
    pooled = crop_and_pool(maps, [box], image_size=64)
    assert pooled.shape == (1, 3, 7, 7)
    np.testing.assert_allclose(pooled[0].numpy(), want.reshape(3, 7, 2, 7, 2).max(axis=(2, 4)), rtol=0, atol=1e-9)


def test_crop_of_the_whole_image_reads_the_map_corners():
    # the box (0, 0, 64, 64) samples from pixel centre 0 to H - 1: the crop's corners are the map's
    maps = torch.arange(20.0, dtype=F64).reshape(1, 1, 4, 5)
    rb = tf_crop_boxes(torch.tensor([[0.0, 0.0, 64.0, 64.0]], dtype=F64), image_size=64, map_height=4, map_width=5)
    crop = roi_align(maps, torch.cat([torch.zeros(1, 1, dtype=F64), rb], 1), 14, 1.0, 1, True)[0, 0]
    assert [crop[0, 0].item(), crop[0, -1].item(), crop[-1, 0].item(), crop[-1, -1].item()] == \
        pytest.approx([0.0, 4.0, 15.0, 19.0], abs=1e-12)
    assert crop_and_pool(maps, [torch.zeros(0, 4, dtype=F64)], image_size=64).shape == (0, 1, 7, 7)


# --------------------------------------------------------------------------- targets
def test_rpn_targets_by_hand_with_a_forced_match():
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 8], [5, 0, 15, 10], [20, 20, 30, 30],
                            [40, 40, 50, 50]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10], [41, 41, 60, 60]], dtype=torch.float32)
    labels, matched = rpn_targets(anchors, gt)
    # IoU with box 0: 1, 80/100 = 0.8, 50/150 = 0.33 (ignored), 0; anchor 4 and box 1:
    # 81 / (100 + 361 - 81) = 0.21 < 0.3, a negative by the thresholds, but box 1's best anchor
    assert labels.tolist() == [1, 1, -1, 0, 1]
    assert matched[[0, 1, 4]].tolist() == [0, 0, 1]
    # two boxes forcing the same anchor: the first box takes it
    same = torch.tensor([[21, 21, 29, 29], [21, 21, 29, 29]], dtype=torch.float32)
    labels, matched = rpn_targets(anchors, same)
    assert labels.tolist() == [0, 0, 0, 1, 0] and matched[3].item() == 0
    labels, _ = rpn_targets(anchors, gt[:0])
    assert labels.tolist() == [0] * 5


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 12), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_head_targets_follow_roi_labels(n_rois, n_gt, seed):
    rng = np.random.default_rng(seed)

    def boxes(n):
        xy = rng.uniform(0, 40, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, 25, (n, 2))], 1)

    rois, gt = boxes(n_rois), boxes(n_gt)
    if n_gt and n_rois:
        rois[: min(n_rois, n_gt)] = gt[: min(n_rois, n_gt)] + rng.uniform(-2, 2, (min(n_rois, n_gt), 4))
    matching = rng.random(n_gt) < 0.5
    labels, _ = head_targets(torch.from_numpy(rois), torch.from_numpy(gt), torch.from_numpy(matching))
    assert labels.tolist() == roi_labels(rois, gt, matching).tolist()


def test_three_way_roi_labels_by_hand():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    rois = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 28], [0, 0, 10, 4], [50, 50, 60, 60]])
    labels, matched = head_targets(rois, gt, torch.tensor([False, True]))
    # other actor (IoU 1), the matching actor (IoU 0.8), IoU 0.4 and 0: background
    assert labels.tolist() == [1, 2, 0, 0] and matched[:2].tolist() == [0, 1]


def test_sampling_counts_of_both_stages():
    assert (RPN_BATCH, RPN_POSITIVE_FRACTION, HEAD_BATCH, HEAD_POSITIVE_FRACTION) == (256, 0.5, 16, 0.25)

    def counts(n_pos, n_neg, n_ignored, batch, fraction):
        labels = torch.tensor([1] * n_pos + [0] * n_neg + [-1] * n_ignored)
        pos, neg = _sample(labels, batch, fraction, torch.Generator().manual_seed(0))
        assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
        return len(pos), len(neg)

    assert counts(300, 1000, 50, RPN_BATCH, RPN_POSITIVE_FRACTION) == (128, 128)
    assert counts(10, 1000, 50, RPN_BATCH, RPN_POSITIVE_FRACTION) == (10, 246)  # negatives fill up
    assert counts(10, 30, 0, HEAD_BATCH, HEAD_POSITIVE_FRACTION) == (4, 12)
    assert counts(2, 20, 0, HEAD_BATCH, HEAD_POSITIVE_FRACTION) == (2, 14)
    assert counts(1, 2, 0, HEAD_BATCH, HEAD_POSITIVE_FRACTION) == (1, 2)  # 32 proposals may be fewer


# --------------------------------------------------------------------------- box coder
def test_box_coder_by_hand_and_round_trip():
    coder = om._CODER
    assert BOX_CODER_WEIGHTS == (10.0, 10.0, 5.0, 5.0)
    ref = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]], dtype=F64)
    boxes = torch.tensor([[1.0, 1, 11, 11], [0, 0, 20, 20]], dtype=F64)
    # centre moved by a tenth of the side: 10 * 0.1 = 1; doubled sides: 5 * ln 2, centre (10 - 5) / 10 * 10 = 5
    enc = coder.encode(ref, boxes)
    torch.testing.assert_close(enc, torch.tensor([[1.0, 1, 0, 0], [5, 5, 5 * math.log(2), 5 * math.log(2)]],
                                                 dtype=F64), rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g, dtype=F64) * 300
    a = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=F64) * 200], 1)
    xy = torch.rand(50, 2, generator=g, dtype=F64) * 300
    b = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=F64) * 200], 1)
    torch.testing.assert_close(coder.decode(a, coder.encode(a, b)), b, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- losses
def test_rpn_loss_by_hand():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    gt = torch.tensor([[1.0, 1, 11, 11]])  # IoU 81/119 = 0.68 with anchor 0: a forced match
    cls, box = rpn_loss(torch.zeros(2, 2), torch.zeros(2, 4), anchors, gt)
    # two sampled anchors, logits 0: ln 2 each, divided by 2
    assert cls.item() == pytest.approx(math.log(2))
    # target deltas (1, 1, 0, 0): smooth-L1 (delta 1) 0.5 + 0.5, divided by the 2 sampled anchors
    assert box.item() == pytest.approx(0.5)


def test_head_loss_uses_the_box_of_the_rois_class():
    rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    deltas = torch.zeros(2, 2, 4)
    deltas[0, 1] = torch.tensor([1.0, 0, 0, 0])  # class 2's box of RoI 0: used
    deltas[0, 0] = 5.0  # class 1's box of RoI 0: not used
    deltas[1] = 7.0  # a background RoI: no box loss
    cls, box = head_loss(torch.zeros(2, 3), deltas, rois, torch.tensor([2, 0]), rois.clone())
    assert cls.item() == pytest.approx(2 * math.log(3))
    assert box.item() == pytest.approx(0.5)


def test_loss_weights_and_normalisation(monkeypatch):
    """Stage losses replaced by constants: the model weights localisation by 2, averages the
    RPN over the valid images and divides the second stage's per-image means by every image of
    the batch, padding included (ava_meta_arch.py:1743-1751, 1835-1916)."""
    assert LOCALIZATION_WEIGHT == 2.0
    monkeypatch.setattr(om, "rpn_loss", lambda logits, *a, **k: (logits.sum() * 0 + 1.0, logits.sum() * 0 + 1.0))
    monkeypatch.setattr(om, "head_loss", lambda logits, d, rois, *a: (logits.sum() * 0 + len(rois),
                                                                      logits.sum() * 0 + len(rois)))
    model = tiny_model("convlstm")
    batch = fake_batch(b=2, t=2)
    batch["ref_valid"][1, 1] = False  # 3 valid images of 4
    out = model(**batch, seeds=[1, 2])
    assert {k: round(v.item(), 6) for k, v in out.items()} == {"rpn_cls": 1.0, "rpn_box": 2.0, "cls": 0.75,
                                                                "box": 1.5}
    sums = model(**batch, seeds=[1, 2], reduction="sum")
    assert (sums["n_images"], sums["n_head"]) == (3, 4)
    assert sums["rpn_cls"].item() == pytest.approx(3.0) and sums["box"].item() == pytest.approx(6.0)


# --------------------------------------------------------------------------- inference
def test_multiclass_nms_per_class_then_total():
    boxes = torch.zeros(20, 2, 4)
    for k in range(20):
        boxes[k, :] = torch.tensor([k * 10.0, 0, k * 10 + 8, 8])  # disjoint boxes
    scores = torch.stack([torch.linspace(0.9, 0.1, 20), torch.linspace(0.95, 0.15, 20)], 1)
    b, s, c = multiclass_nms(boxes, scores)
    assert len(s) == 30 and int((c == 1).sum()) == 15 and int((c == 2).sum()) == 15
    assert s.tolist() == sorted(s.tolist(), reverse=True)
    # IoU 0.64 > 0.6 suppressed; 0.5 kept; zero area dropped
    boxes = torch.tensor([[[0.0, 0, 10, 10]], [[0, 0, 10, 6.4]], [[0, 0, 10, 5]], [[3, 3, 3, 9]]]).expand(4, 2, 4)
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.1], [0.7, 0.1], [0.95, 0.1]])
    b, s, c = multiclass_nms(boxes[:, :1].contiguous(), scores[:, :1].contiguous())
    assert s.tolist() == pytest.approx([0.9, 0.7]) and c.tolist() == [1, 1]


def test_model_shapes_gradients_and_matching_actor_detections():
    model = tiny_model("warp")
    assert (model.channels, model.map_size, len(model.anchors)) == (32, 8, 8 * 8 * 12)
    # the backbone is random; the run's record says it trains from scratch, not "for tests only"
    assert model.weights_id == "none" and model.backbone.weights_note == WEIGHTS_NOTE_RANDOM
    assert model.weights_note == om.WEIGHTS_NOTE_SCRATCH["tiny3d"] and "trained in the run" in model.weights_note
    losses = model(**fake_batch(), seeds=[3, 4])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.eval()
    batch = fake_batch()
    dets = model.detect(batch["ref_clips"][0], batch["query_clips"][0], batch["query_boxes"][0])
    assert len(dets) == 2
    for boxes, scores in dets:
        assert boxes.shape[1] == 4 and len(boxes) <= 15  # one class of 15 at most
        assert scores.tolist() == sorted(scores.tolist(), reverse=True) and bool(((0 < scores) & (scores < 1)).all())
        assert bool((boxes >= 0).all() and (boxes <= 64).all())


def test_i3d_backbone_loads_weights_from_a_file(tmp_path):
    small = {**MODEL_KW, "backbone": "i3d", "frame_size": 64}
    torch.manual_seed(0)
    first = OriginalSTVRModel(cell="none", **small)
    assert first.channels == 1024 and first.weights_id == "none" and first.backbone.weights_note == WEIGHTS_NOTE_RANDOM
    assert first.weights_note == om.WEIGHTS_NOTE_SCRATCH["i3d"] and "rgb_imagenet" in first.weights_note
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in first.backbone.state_dict().items()}
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    second = OriginalSTVRModel(cell="none", weights=str(path), **small)
    assert second.weights_id == sha256_file(path) and "rgb_imagenet.pt" in second.weights_note
    key = "Mixed_4c.b0.conv3d.weight"
    assert torch.equal(second.backbone.state_dict()[key], state[key])
    with pytest.raises(ConfigError, match="The 'weights' parameter must be 'none' with the tiny3d backbone"):
        OriginalSTVRModel(cell="none", weights=str(path), **MODEL_KW)


# --------------------------------------------------------------------------- recipe config
def test_recipes_are_declared_and_resolved():
    assert set(STVR.recipes) == {"compact", "original"} and STVR.recipes is STVR_RECIPES
    _, cfg = resolve_config("stvr-warp", overrides={"recipe": "original"})
    assert (cfg.recipe, cfg.backbone, cfg.frame_size, cfg.optimizer, cfg.lr, cfg.momentum, cfg.clip_norm,
            cfg.batch_size, cfg.flip, cfg.steps) == ("original", "i3d", 320, "sgd", 0.03, 0.9, 10.0, 8, True, 30000)
    assert cfg.lr_milestones == (10000, 20000) and cfg.lr_gamma == 0.1
    _, cfg = resolve_config("stvr-warp", overrides={"recipe": "original", "steps": 3000})
    assert cfg.lr_milestones == (1000, 2000)
    assert original_milestones(2) == (1,) and original_milestones(90000) == (10000, 20000)
    _, compact = resolve_config("stvr-warp")
    assert compact.recipe == "compact" and compact.backbone == "tiny3d" and compact.lr_milestones == ()
    for name in ("stvr-flow", "stvr-traj"):  # every cell has the original recipe
        _, cfg = resolve_config(name, overrides={"recipe": "original"})
        assert (cfg.cell, cfg.recipe, cfg.backbone, cfg.clip_sampling, cfg.flip, cfg.optimizer) == \
            (name.split("-")[1], "original", "i3d", "second", True, "sgd")
    with pytest.raises(ConfigError, match="The 'backbone' parameter i3d belongs to the original recipe"):
        STVR.default_config({"backbone": "i3d"})
    with pytest.raises(ConfigError, match=r"The 'weights' parameter \('w.pt'\) is the i3d backbone's state dict"):
        STVR.default_config({"recipe": "original", "backbone": "tiny3d", "weights": "w.pt"})
    with pytest.raises(ConfigError, match=r"lr_schedule original sets lr_milestones to \[1000, 2000\]"):
        STVR.default_config({"recipe": "original", "lr_schedule": "original", "steps": 3000,
                             "lr_milestones": [5]})
    with pytest.raises(ConfigError, match="the original recipe's I3D weights are 'weights'"):
        STVR.default_config({"recipe": "original", "pretrained": True})
    # the flow cell takes flips and the three clips of a second (its flows follow both)
    flow = STVR.default_config({"cell": "flow", "flip": True, "clip_sampling": "second", "ref_clips": 3,
                                "query_clips": 3})
    assert (flow.flip, flow.clip_sampling) == (True, "second")
    with pytest.raises(ConfigError, match=r"The 'cell' parameter of the original recipe must be one of "
                                          r"\['none', 'convlstm', 'flow', 'traj', 'warp'\]. Got 'gru' instead."):
        OriginalSTVRModel(cell="gru", **MODEL_KW)


def test_show_config_of_the_original_flow_and_traj_recipes():
    for name in ("stvr-flow", "stvr-traj"):
        res = CliRunner().invoke(cli, ["run-baseline", name, "--recipe", "original", "--show-config"],
                                 env={"COLUMNS": "250"})
        assert res.exit_code == 0, res.output
        rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in res.output.splitlines()
                if line.startswith("│ ")}
        assert (rows["cell"], rows["recipe"], rows["backbone"], rows["clip_sampling"], rows["flip"]) == \
            (name.split("-")[1], "original", "i3d", "second", "true")


@pytest.fixture(scope="module")
def sprites(tmp_path_factory) -> Path:
    return build_sprites(tmp_path_factory.mktemp("stvr-recipe") / "synthetic-sprites",
                         SpritesConfig(videos=(6, 3, 3), n_clips=6))


def _baseline(sprites, name="stvr-warp", **over):
    from relocbench.registry import get_baseline
    from relocbench.tasks import get_task

    cls = get_baseline(name)
    ctx = get_task("spatiotemporal").open(str(sprites), "synthetic", device=torch.device("cpu"), seed=0,
                                          skip_missing=False)
    cfg = cls.default_config({**TINY, "recipe": "original", **over})
    b = cls(cfg, ctx)
    b.prepare(cls.create_model(cfg))
    return b


def test_flips_of_query_and_reference_are_drawn_independently(sprites):
    plain = _baseline(sprites, flip=False, batch_size=8)
    flipped = _baseline(sprites, flip=True, batch_size=8)
    seen = set()
    for step in range(3):
        for a, b in zip(plain.batch(step), flipped.batch(step)):
            fq = not np.array_equal(a["query"], b["query"])
            fr = not np.array_equal(a["ref"], b["ref"])
            if fq:
                assert np.array_equal(a["query"][:, :, :, ::-1], b["query"])
                np.testing.assert_allclose(b["query_boxes"][:, [0, 2]], 64 - a["query_boxes"][:, [2, 0]])
            if fr:
                assert np.array_equal(a["ref"][:, :, :, ::-1], b["ref"])
                for g, h in zip(a["gt_all"], b["gt_all"]):
                    np.testing.assert_allclose(h[:, [0, 2]], 64 - g[:, [2, 0]])
            else:
                assert all(np.array_equal(g, h) for g, h in zip(a["gt_all"], b["gt_all"]))
            seen.add((fq, fr))
    assert {(True, False), (False, True)} <= seen  # one flipped without the other


def _two_step_cli_run(name, sprites, tmp_path):
    """A 2-step ``run-baseline NAME --recipe original`` of the shipped tiny config from the command line, its
    result and predictions checked, and the predictions scored by ``evaluate --clip-scoring original``."""
    cfg = REPO / "baselines" / "stvr" / "configs" / "original-tiny.yaml"  # the shipped tiny config is TINY
    assert load_config_file(cfg) == TINY
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run-baseline", name, "--recipe", "original", "--dataset", str(sprites),
                                   "--steps", "2", "--config", str(cfg), "--device", "cpu", "--quiet",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["recipe"] == "original" and result["config"]["cell"] == name.split("-")[1]
    assert result["config"]["optimizer"] == "sgd" and result["config"]["lr_milestones"] == [1]
    assert result["training"]["steps"] == 2 and result["config"]["flip"] is True
    assert result["weights"] == {"id": "none", "note": om.WEIGHTS_NOTE_SCRATCH["tiny3d"]}  # trained from scratch, marked so
    assert result["config"]["clip_sampling"] == "second" and result["metrics"]["clip_scoring"] == "original"
    doc = json.loads((out / "predictions-test.json").read_text())
    assert doc["results"]
    clips_seen = set()
    for preds in doc["results"].values():
        per_clip = {}
        for p in preds:
            per_clip[p["time"], p["clip"]] = per_clip.get((p["time"], p["clip"]), 0) + 1
            assert 0 <= p["box"][0] <= p["box"][2] <= 1 and 0 < p["score"] < 1
        assert max(per_clip.values(), default=0) <= 15  # "matching actor" detections: 15 per class at most
        clips_seen |= {c for _, c in per_clip}
    assert clips_seen == {0, 1, 2}
    scores = tmp_path / "scores.json"
    res = CliRunner().invoke(cli, ["evaluate", str(out / "predictions-test.json"), "--manifest", str(sprites),
                                   "--split", "test", "--clip-scoring", "original", "--output-json", str(scores)])
    assert res.exit_code == 0, res.output
    scored = json.loads(scores.read_text())
    assert scored["clip_scoring"] == "original"
    assert scored["frame_map"] == result["metrics"]["frame_map"]
    assert scored["per_label"] == result["metrics"]["per_label"]


def test_tiny_end_to_end_cli_run_scored_by_evaluate(sprites, tmp_path):
    _two_step_cli_run("stvr-warp", sprites, tmp_path)


@pytest.mark.parametrize("name,cell_type", [("stvr-flow", "OriginalFlowLSTM"), ("stvr-traj", "OriginalTrajLSTM")])
def test_original_flow_and_traj_cells_two_steps_from_the_cli(name, cell_type, sprites, tmp_path):
    """The authors' cell with this project's flow / trajectory alignment, in the whole original recipe (flips
    and three clips a second included)."""
    _two_step_cli_run(name, sprites, tmp_path)
    _, cfg = resolve_config(name, overrides={**TINY, "recipe": "original"})
    model = STVR.create_model(cfg)
    assert type(model.cell).__name__ == cell_type and model.needs_flow == (name == "stvr-flow")


def test_weights_option_reaches_the_i3d_backbone(sprites, tmp_path):
    missing = tmp_path / "rgb_imagenet.pt"
    res = CliRunner().invoke(cli, ["run-baseline", "stvr-clip", "--recipe", "original", "--weights", str(missing),
                                   "--dataset", str(sprites), "--steps", "1", "--device", "cpu", "--quiet",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: {missing}: weights file not found; expected a state dict of Inception-I3D in the pytorch-i3d "
        "layout (e.g. its rgb_imagenet.pt)"]
    assert not (tmp_path / "o").exists()
    res = CliRunner().invoke(cli, ["run-baseline", "stvr-warp", "--recipe", "original", "--show-config"],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in res.output.splitlines()
            if line.startswith("│ ")}
    assert (rows["recipe"], rows["backbone"], rows["optimizer"], rows["lr_milestones"], rows["flip"]) == \
        ("original", "i3d", "sgd", "[10000, 20000]", "true")


@pytest.mark.parametrize("name,cell_type", [("stvr-clip", "ClipCell"), ("stvr-convlstm", "OriginalConvLSTM"),
                                            ("stvr-flow", "OriginalFlowLSTM"), ("stvr-traj", "OriginalTrajLSTM")])
def test_original_recipe_of_the_other_cells_from_python(name, cell_type, sprites, tmp_path):
    from relocbench.engine import run_baseline

    res = run_baseline(name, dataset=str(sprites), out=tmp_path / "r", device="cpu",
                       overrides={**TINY, "recipe": "original", "steps": 1})
    assert res.result["config"]["recipe"] == "original" and res.result["training"]["steps"] == 1
    assert all(0.0 <= v <= 1.0 for v in res.metrics["frame_map"].values())
    _, cfg = resolve_config(name, overrides={**TINY, "recipe": "original"})
    assert type(STVR.create_model(cfg).cell).__name__ == cell_type
    if name == "stvr-flow":
        # the figures' flow panel has nothing to draw for the original cells (they do not
        # report the flow they apply): it skips them instead of failing
        from relocbench_baselines.stvr import figures

        b, m, ctx, _ = figures.load_run(res.run_dir)
        row = next(ctx.manifest.table("pairs", "test").itertuples(index=False))
        assert figures.state_flows(b, m, row) is None


# --------------------------------------------------------------------------- clip sampling
def test_clip_sampling_follows_the_recipe_and_needs_whole_keyframes():
    _, orig = resolve_config("stvr-warp", overrides={"recipe": "original"})
    _, compact = resolve_config("stvr-warp")
    assert (orig.clip_sampling, orig.ref_clips, orig.query_clips) == ("second", 6, 30)
    assert compact.clip_sampling == "keyframe"
    _, kf = resolve_config("stvr-warp", overrides={"recipe": "original", "clip_sampling": "keyframe"})
    assert kf.clip_sampling == "keyframe"  # an explicit value wins over the recipe's
    with pytest.raises(ConfigError, match=r"The 'ref_clips' parameter must be a multiple of 3 with clip_sampling "
                                          r"second \(3 clips per keyframe\). Got 4 instead."):
        STVR.default_config({"clip_sampling": "second", "ref_clips": 4, "query_clips": 3})
    with pytest.raises(ConfigError, match=r"The 'query_clips' parameter must be a multiple of 3"):
        STVR.default_config({"clip_sampling": "second", "ref_clips": 3, "query_clips": 1})


def test_three_contiguous_clips_of_each_keyframe_with_its_boxes(sprites):
    """Sprites time is the frame index at 24 fps: keyframe t's clips are frames [t, t + 8),
    [t + 8, t + 16), [t + 16, t + 24) (edge frames repeated past the end), each with t's boxes."""
    b = _baseline(sprites, clip_sampling="second")  # the recipe's value (default_config applies no recipe)
    assert b.per_keyframe == 3 and b.ctx.extras["clip_scoring"] == "original"
    row = next(b.ctx.manifest.table("pairs", "test").itertuples(index=False))
    video = row.ref_video
    frames = b.source.frames(video)
    for t in (0.0, 8.0, float(len(frames) - 16)):
        assert b._clip_times(t).tolist() == [t + 4, t + 12, t + 20]
        clips = b._keyframe_clips(video, [t])
        assert clips.shape == (3, 8, 64, 64, 3)
        for j in range(3):
            idx = np.clip(np.arange(int(t) + 8 * j, int(t) + 8 * j + 8), 0, len(frames) - 1)
            assert np.array_equal(clips[j], frames[idx])
    item = b._item(np.random.default_rng(5))
    assert item["ref"].shape[0] == 3 and item["query"].shape[0] == 3 and item["ref_valid"].shape == (3,)
    for key in ("gt_all", "gt_match", "gt_matching"):
        assert len(item[key]) == 3 and all(np.array_equal(item[key][0], g) for g in item[key])
    assert np.array_equal(item["query_boxes"][0], item["query_boxes"][2])
    x = b.pair_inputs(row)
    kf = b._ref_times(row)
    assert x["ref"].shape[0] == 3 * len(kf) and x["times"].tolist() == np.repeat(kf, 3).tolist()
    assert x["clips"].tolist() == [0, 1, 2] * len(kf)
    compact = _baseline(sprites, clip_sampling="keyframe")
    assert compact.per_keyframe == 1 and compact.ctx.extras["clip_scoring"] == "keyframe"
    assert compact.pair_inputs(row)["clips"] is None and compact.pair_inputs(row)["ref"].shape[0] == len(kf)


def test_flow_cell_flows_join_the_centre_frames_of_consecutive_clips_flipped_or_not(sprites):
    """With clip_sampling second the flow cell gets one flow per reference clip, between the centre frames of
    consecutive clips (three a keyframe: frames t + 4, t + 12, t + 20 on sprites), zero for the first; a flipped
    reference's flows come from its flipped frames. A sprites clip's frame 4 is its centre frame, so the oracle
    is the flows of ``ref[:, 4]``, the clips the model is given."""
    from relocbench_baselines.stvr.cells import sequence_flows

    plain = _baseline(sprites, "stvr-flow", flip=False, batch_size=6, ref_clips=6, clip_sampling="second")
    flipped = _baseline(sprites, "stvr-flow", flip=True, batch_size=6, ref_clips=6, clip_sampling="second")
    assert plain.map_size == 8
    seen = set()
    for a, b in zip(plain.batch(0), flipped.batch(0)):
        for it in (a, b):
            assert it["flows"].shape == (6, 2, 8, 8) and not it["flows"][0].any()
            want = sequence_flows(list(it["ref"][:, 4]), size=(8, 8)).numpy()
            np.testing.assert_array_equal(it["flows"], want)
        fr = not np.array_equal(a["ref"], b["ref"])
        if fr:
            assert np.array_equal(a["ref"][:, :, :, ::-1], b["ref"])
            assert not np.allclose(a["flows"], b["flows"])
        else:
            np.testing.assert_array_equal(a["flows"], b["flows"])
        seen.add(fr)
    assert seen == {True, False}
    # the centre frames of the clips of keyframe t are frames t + 4, t + 12, t + 20 of the video
    row = next(plain.ctx.manifest.table("pairs", "test").itertuples(index=False))
    times = plain._ref_times(row)[:2]
    frames = plain.source.frames(row.ref_video)
    idx = [min(int(t) + 8 * j + 4, len(frames) - 1) for t in times for j in range(3)]
    got = plain._flows(row.ref_video, times, np.ones(2, bool))
    np.testing.assert_array_equal(got, sequence_flows(list(frames[idx]), size=(8, 8)).numpy())
    assert got.shape == (6, 2, 8, 8) and np.abs(got[1:]).max() > 0
    x = plain.pair_inputs(row)
    assert x["flows"].shape == (3 * len(plain._ref_times(row)), 2, 8, 8) == (len(x["ref"]), 2, 8, 8)
