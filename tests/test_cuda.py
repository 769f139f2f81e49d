"""CUDA paths: the engine's device choice, the models and the operators on ``cuda`` against ``cpu``.

Every test but the last two is marked ``cuda`` and skipped, with the reason, where torch sees
no CUDA device; ``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``) on a GPU machine.
Comparisons run in float64 (no TF32, no reduced-precision matmul), so CPU and CUDA agree to
rounding; the float32 checks use tolerances a training run tolerates.
"""
from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
F64 = torch.float64

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees none here; "
           "benchmarks/gpu_check.sh runs these tests on a GPU machine",
)


@pytest.fixture
def exact_cuda():
    """Full-precision float32 matmuls and convolutions on CUDA (no TF32) for the test's duration."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _grads(model):
    return {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(cpu_model, gpu_model, **tol):
    a, b = _grads(cpu_model), _grads(gpu_model)
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(b[name], a[name], msg=lambda m, n=name: f"gradient of {n}: {m}", **tol)


# --------------------------------------------------------------------------- engine
@pytest.mark.cuda
@needs_cuda
def test_engine_auto_device_picks_cuda():
    from relocbench.engine import resolve_device

    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------- cgbm
def _cgbm_batch(seed=0, b=3, tq=5, tr=11, d=6, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, tq, d, generator=g, dtype=dtype)
    r = torch.randn(b, tr, d, generator=g, dtype=dtype)
    return q, torch.tensor([tq, 3, 4][:b]), r, torch.tensor([tr, 6, 9][:b])


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("variant", ["cgbm", "cgbm-base"])
def test_cgbm_forward_backward_on_cuda_matches_cpu(variant, exact_cuda):
    from relocbench.temporal.labels import batch_labels
    from relocbench_baselines.temporal.cgbm import CrossGatedBilinearMatching, cgbm_config, cgbm_loss

    torch.manual_seed(0)
    # dropout off (keep 1.0) so that both devices compute the same function
    cpu = CrossGatedBilinearMatching(cgbm_config(variant, feature_dim=6, hidden=5, rank=2, keep_aggregation=1.0,
                                                 keep_matching=1.0)).to(F64)
    gpu = copy.deepcopy(cpu).to(exact_cuda)
    q, ql, r, rl = _cgbm_batch()
    labels, weights, mask = (torch.from_numpy(a) for a in batch_labels(rl.numpy(), [2, 0, 5], [5, 3, 9], max_len=11))
    labels, weights, mask = labels.to(F64), weights.to(F64), mask.to(F64)
    out = {}
    for name, model, dev in (("cpu", cpu, torch.device("cpu")), ("cuda", gpu, exact_cuda)):
        logits = model(q.to(dev), ql.to(dev), r.to(dev), rl.to(dev))
        loss = cgbm_loss(logits, labels.to(dev), weights.to(dev), mask.to(dev))
        loss.backward()
        out[name] = (logits.detach().cpu(), loss.detach().cpu())
        assert logits.device.type == dev.type
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], rtol=1e-9, atol=1e-10)
    _assert_same_grads(cpu, gpu, rtol=1e-8, atol=1e-10)


@pytest.mark.cuda
@needs_cuda
def test_cgbm_float32_predictions_on_cuda_match_cpu(exact_cuda):
    from relocbench_baselines.temporal.cgbm import CrossGatedBilinearMatching, cgbm_config

    torch.manual_seed(0)
    cpu = CrossGatedBilinearMatching(cgbm_config("cgbm", feature_dim=16, hidden=12, rank=4)).eval()
    gpu = copy.deepcopy(cpu).to(exact_cuda)
    q, ql, r, rl = _cgbm_batch(d=16, tr=40, dtype=torch.float32)
    with torch.no_grad():
        a = cpu(q, ql, r, rl)
        b = gpu(q.cuda(), ql.cuda(), r.cuda(), rl.cuda()).cpu()
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- stvr-warp
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["warp", "convlstm", "traj", "flow"])
def test_stvr_cell_on_cuda_matches_cpu(name, exact_cuda):
    from relocbench_baselines.stvr.cells import create_cell, run_sequence

    torch.manual_seed(0)
    cpu = create_cell(name, in_channels=12, hidden_channels=6).to(F64)
    if name == "warp":  # non-zero displacements, as after training, so that the warp moves points
        with torch.no_grad():
            cpu.aligner.displacement.weight.normal_(0, 0.05)
    gpu = copy.deepcopy(cpu).to(exact_cuda)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 12, 8, 8, generator=g, dtype=F64)
    flows = 0.5 * torch.randn(2, 3, 2, 8, 8, generator=g, dtype=F64)
    w = torch.randn(2, 3, 12, 8, 8, generator=g, dtype=F64)
    outs = {}
    for key, dev, cell in (("cpu", torch.device("cpu"), cpu), ("cuda", exact_cuda, gpu)):
        xi = x.to(dev).requires_grad_()
        out = run_sequence(cell, xi, flows.to(dev))
        (out * w.to(dev)).sum().backward()
        assert out.device.type == dev.type
        outs[key] = (out.detach().cpu(), xi.grad.cpu())
    torch.testing.assert_close(outs["cuda"][0], outs["cpu"][0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(outs["cuda"][1], outs["cpu"][1], rtol=1e-8, atol=1e-10)
    _assert_same_grads(cpu, gpu, rtol=1e-8, atol=1e-10)


@pytest.mark.cuda
@needs_cuda
def test_sparse_image_warp_on_cuda_matches_cpu():
    from relocbench.ops import sparse_image_warp

    g = torch.Generator().manual_seed(3)
    img = torch.randn(2, 3, 20, 20, generator=g, dtype=F64)
    src = torch.rand(2, 9, 2, generator=g, dtype=F64) * 19
    dst = src + torch.randn(2, 9, 2, generator=g, dtype=F64)
    for order in (1, 2, 3, 4):
        a, fa = sparse_image_warp(img, src, dst, interpolation_order=order, num_boundary_points=2)
        b, fb = sparse_image_warp(img.cuda(), src.cuda(), dst.cuda(), interpolation_order=order,
                                  num_boundary_points=2)
        torch.testing.assert_close(fb.cpu(), fa, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-9)


def _stvr_model():
    from relocbench_baselines.stvr.model import STVRModel

    torch.manual_seed(0)
    return STVRModel(cell="warp", width=4, hidden_channels=8, attention_dim=8, head_channels=8, head_dim=16,
                     train_proposals=8, test_proposals=8)


def _stvr_batch(dev, b=2, t=3, q=2):
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 256, (b, t, 8, 64, 64, 3), generator=g, dtype=torch.uint8)
    query = torch.randint(0, 256, (b, q, 8, 64, 64, 3), generator=g, dtype=torch.uint8)
    box = torch.tensor([[10.0, 12.0, 30.0, 34.0]])
    other = torch.tensor([[36.0, 30.0, 54.0, 50.0]])
    batch = {"ref_clips": ref, "ref_valid": torch.ones(b, t, dtype=torch.bool), "query_clips": query,
             "query_boxes": box.expand(b, q, 4).clone(), "query_valid": torch.ones(b, q, dtype=torch.bool)}
    batch = {k: v.to(dev) for k, v in batch.items()}
    batch["gt_all"] = [torch.cat([box, other]).to(dev) for _ in range(b * t)]
    batch["gt_match"] = [box.to(dev) for _ in range(b * t)]
    return batch


@pytest.mark.cuda
@needs_cuda
def test_stvr_warp_model_losses_and_gradients_on_cuda_match_cpu(exact_cuda):
    cpu = _stvr_model()
    gpu = copy.deepcopy(cpu).to(exact_cuda)
    seeds = [11, 12]  # per-item sampling streams: the same anchors and RoIs on both devices
    la = cpu(**_stvr_batch("cpu"), seeds=seeds)
    lb = gpu(**_stvr_batch(exact_cuda), seeds=seeds)
    assert set(la) == set(lb) == {"rpn_cls", "rpn_box", "cls", "box"}
    for k in la:
        assert lb[k].device.type == "cuda"
        torch.testing.assert_close(lb[k].detach().cpu(), la[k].detach(), rtol=1e-4, atol=1e-5,
                                   msg=lambda m, k=k: f"loss {k}: {m}")
    sum(la.values()).backward()
    sum(lb.values()).backward()
    _assert_same_grads(cpu, gpu, rtol=1e-3, atol=1e-5)


@pytest.mark.cuda
@needs_cuda
def test_stvr_warp_model_detections_on_cuda_match_cpu(exact_cuda):
    cpu = _stvr_model().eval()
    gpu = copy.deepcopy(cpu).to(exact_cuda)
    bc, bg = _stvr_batch("cpu", b=1, t=4), _stvr_batch(exact_cuda, b=1, t=4)
    da = cpu.detect(bc["ref_clips"][0], bc["query_clips"][0], bc["query_boxes"][0])
    db = gpu.detect(bg["ref_clips"][0], bg["query_clips"][0], bg["query_boxes"][0])
    assert len(da) == len(db) == 4
    for (boxes_a, scores_a), (boxes_b, scores_b) in zip(da, db):
        assert boxes_b.device.type == "cuda"
        torch.testing.assert_close(scores_b.cpu(), scores_a, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(boxes_b.cpu(), boxes_a, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- torchvision ops
@pytest.mark.cuda
@needs_cuda
def test_roi_align_and_nms_on_cuda_match_cpu():
    from torchvision.ops import nms, roi_align

    g = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 5, 16, 16, generator=g, dtype=F64)
    xy = torch.rand(12, 2, generator=g, dtype=F64) * 10
    wh = 1 + torch.rand(12, 2, generator=g, dtype=F64) * 5
    rois = torch.cat([torch.arange(12, dtype=F64)[:, None] % 2, xy, xy + wh], 1)
    a = roi_align(feats, rois, output_size=(4, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    b = roi_align(feats.cuda(), rois.cuda(), output_size=(4, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(b.cpu(), a, rtol=1e-9, atol=1e-10)
    boxes, scores = rois[:, 1:], torch.rand(12, generator=g, dtype=F64)  # distinct scores: one order
    keep_cpu = nms(boxes, scores, 0.3)
    keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.3)
    assert keep_gpu.cpu().tolist() == keep_cpu.tolist()
    assert 0 < len(keep_cpu) < 12


# --------------------------------------------------------------------------- the GPU check script
def test_gpu_check_script_is_valid_bash():
    script = REPO / "benchmarks" / "gpu_check.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_check_without_cuda_exits_early_with_a_clear_message(tmp_path):
    """With no visible CUDA device the script stops before making a venv or running anything."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RELOCBENCH_GPU_VENV": str(tmp_path / "venv")}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "gpu_check: no CUDA device" in proc.stderr
    assert "nothing was checked" in proc.stderr
    assert not (tmp_path / "venv").exists()
    assert list(tmp_path.iterdir()) == []
