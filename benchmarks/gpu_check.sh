#!/usr/bin/env bash
# The CUDA check (about 6 minutes on one GPU, 10 at most): on a machine with a CUDA device,
#   1. the tests marked `cuda` (pytest -m cuda: tests/test_cuda.py and any other marked test),
#   2. a short cgbm run (--steps, default 100) on cpu and on cuda, whose test metrics are compared,
#   3. a short stvr-warp run on synthetic-sprites on cpu and on cuda, compared the same way,
#      and a short stvr-warp run of the original recipe (Inception-I3D at 320x320 with random
#      weights, the authors' cell and heads, SGD) on cuda only: finite losses, scored predictions,
#   4. training steps of the cgbm model, the stvr-warp model and the warp LSTM cell at the
#      paper's feature-map size, timed on cpu and cuda,
# then a table: steps/s on each device, the ratio cuda / cpu and the peak GPU memory.
#
#   bash benchmarks/gpu_check.sh [--steps N] [--out DIR]
#
# Python: $RELOCBENCH_GPU_PYTHON if set; else the repository's .venv when its torch sees CUDA;
# else a venv at $RELOCBENCH_GPU_VENV (default: $TMPDIR/relocbench-gpu-venv) made with
# --system-site-packages, so that the machine's own CUDA build of torch is used and nothing
# large is downloaded, with relocbench installed into it (editable, test extras).
# Exit status: 0 all checks passed, 1 a check failed, 3 no CUDA device (nothing was checked).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
STEPS=100
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (expected --steps N or --out DIR)" >&2; exit 2 ;;
  esac
done

no_cuda() {
  echo "gpu_check: no CUDA device: $1; nothing was checked (run this script on a machine with an NVIDIA GPU)" >&2
  exit 3
}
# Before anything is installed or run: is a CUDA device visible at all?
if [ "${CUDA_VISIBLE_DEVICES+set}" = set ] && { [ -z "$CUDA_VISIBLE_DEVICES" ] || [ "$CUDA_VISIBLE_DEVICES" = "-1" ]; }; then
  no_cuda "CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES}' hides every GPU"
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  no_cuda "nvidia-smi is not on the PATH (no NVIDIA driver here)"
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
  no_cuda "nvidia-smi lists no GPU"
fi

has_cuda_torch() {  # has_cuda_torch PYTHON
  [ -x "$1" ] && "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1
}
if [ -n "${RELOCBENCH_GPU_PYTHON:-}" ]; then
  PY="$RELOCBENCH_GPU_PYTHON"
elif has_cuda_torch "$REPO/.venv/bin/python"; then
  PY="$REPO/.venv/bin/python"
else
  VENV="${RELOCBENCH_GPU_VENV:-${TMPDIR:-/tmp}/relocbench-gpu-venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "gpu_check: making $VENV (system site packages: the machine's torch)"
    python3 -m venv --system-site-packages "$VENV"
  fi
  PY="$VENV/bin/python"
  if ! "$PY" -c "import relocbench_baselines" >/dev/null 2>&1; then
    # offline machines: the dependencies must already be there; a missing one is an error
    "$PY" -m pip install --quiet --no-build-isolation -e "$REPO[test]" 2>&1 | grep -v "^WARNING: Location" || true
    "$PY" -c "import relocbench_baselines, pytest, hypothesis" \
      || { echo "gpu_check: relocbench or its test tools could not be installed into $VENV" >&2; exit 1; }
  fi
fi
if ! has_cuda_torch "$PY"; then
  no_cuda "$("$PY" -c 'import torch; print(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) in '"$PY"' sees none")' 2>&1)"
fi
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/relocbench-gpu-check.XXXXXX")}"
mkdir -p "$OUT"
export RELOCBENCH_CACHE="$OUT/cache" PYTHONUNBUFFERED=1 COLUMNS="${COLUMNS:-200}"
cd "$REPO"
"$PY" -c "import torch, relocbench; print(f'gpu_check: relocbench {relocbench.__version__}, torch {torch.__version__}, '
f'{torch.cuda.get_device_name(0)}; outputs in $OUT')"

failed=0
echo "gpu_check: [1/3] tests marked cuda"
t0=$SECONDS
if ! timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/ 2>&1 | tee "$OUT/pytest-cuda.log"; then
  echo "gpu_check: FAILED: the cuda tests (log: $OUT/pytest-cuda.log)" >&2
  failed=1
fi
if grep -qE "(^| )[0-9]+ skipped" "$OUT/pytest-cuda.log" && ! grep -qE "(^| )[0-9]+ passed" "$OUT/pytest-cuda.log"; then
  echo "gpu_check: FAILED: every cuda test was skipped" >&2
  failed=1
fi
echo "gpu_check: cuda tests took $((SECONDS - t0)) s"

echo "gpu_check: [2/3] short runs on cpu and cuda, and timed training steps"
if ! timeout 420 "$PY" - "$OUT" "$STEPS" <<'EOF'
import json
import math
import sys
import time
from pathlib import Path

import torch

from relocbench.cli._common import print_table
from relocbench.engine import resolve_config, run_baseline

out, steps = Path(sys.argv[1]), int(sys.argv[2])
torch.backends.cuda.matmul.allow_tf32 = False  # compare like with like
torch.backends.cudnn.allow_tf32 = False
rows, failures = [], []


def peak_mib():
    return torch.cuda.max_memory_allocated() / 2**20


def first_loss(run_dir):
    with open(run_dir / "log.jsonl", encoding="utf-8") as fh:
        return next(json.loads(line)["loss"] for line in fh if '"loss"' in line)


def short_run(name, dataset, n_steps, headline, tol, loss_rtol=None):
    """The same run on cpu and cuda; the test metric must agree within ``tol`` (a fraction) and,
    for a model without dropout (same batches, same sampling streams), the first training loss
    within ``loss_rtol``."""
    got, loss = {}, {}
    for dev in ("cpu", "cuda"):
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        res = run_baseline(name, dataset=dataset, out=out / f"{name}-{dev}", device=dev, force=True,
                           overrides={"steps": n_steps, "eval_every": n_steps})
        wall = time.perf_counter() - t
        got[dev] = (headline(res.metrics), n_steps / wall, peak_mib() if dev == "cuda" else None)
        loss[dev] = first_loss(res.run_dir)
    diff = abs(got["cuda"][0] - got["cpu"][0])
    ok = diff <= tol
    if not ok:
        failures.append(f"{name} on {dataset}: cuda {got['cuda'][0]:.4f} vs cpu {got['cpu'][0]:.4f}")
    loss_note = f"first loss {loss['cpu']:.5f} / {loss['cuda']:.5f}"
    if loss_rtol is not None:
        loss_ok = abs(loss["cuda"] - loss["cpu"]) <= loss_rtol * abs(loss["cpu"])
        ok = ok and loss_ok
        if not loss_ok:
            failures.append(f"{name} on {dataset}: {loss_note} (relative tolerance {loss_rtol:g})")
    rows.append([f"{name} run, {n_steps} steps, {dataset}", f"{got['cpu'][1]:.2f}",
                 f"{got['cuda'][1]:.2f}", f"{got['cuda'][1] / got['cpu'][1]:.1f}", f"{got['cuda'][2]:.0f}",
                 f"test {100 * got['cpu'][0]:.1f} / {100 * got['cuda'][0]:.1f}, {loss_note}: "
                 f"{'ok' if ok else 'FAILED'}"])


def original_run(n_steps, batch_size=2, query_clips=3):
    """stvr-warp's original recipe on cuda only (I3D at 320x320 is too slow for the cpu side): it
    trains with finite losses and its test predictions are scored. A short batch and query
    (the recipe's are 8 and 30 clips) and no validation pass keep it short (the test split's
    1,964 reference clips at 320x320 are most of its time)."""
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    res = run_baseline("stvr-warp", dataset="synthetic-sprites", out=out / "stvr-warp-original-cuda", device="cuda",
                       force=True, overrides={"recipe": "original", "steps": n_steps, "eval_every": n_steps,
                                              "select_on_val": False, "batch_size": batch_size,
                                              "query_clips": query_clips})
    wall = time.perf_counter() - t
    loss = first_loss(res.run_dir)
    score = res.metrics["frame_map"]["0.5"]
    cfg = res.result["config"]
    ok = (math.isfinite(loss) and 0.0 <= score <= 1.0 and cfg["recipe"] == "original" and cfg["backbone"] == "i3d"
          and cfg["optimizer"] == "sgd")
    if not ok:
        failures.append(f"stvr-warp original recipe: first loss {loss}, test {score}, config {cfg['recipe']}, "
                        f"{cfg['backbone']}, {cfg['optimizer']}")
    rows.append([f"stvr-warp original recipe run, {n_steps} steps, batch {batch_size}, synthetic-sprites at 320",
                 "-", f"{n_steps / wall:.2f}", "-", f"{peak_mib():.0f}",
                 f"test {100 * score:.1f}, first loss {loss:.4f} (random I3D weights): {'ok' if ok else 'FAILED'}"])


def timed(step, n):
    step()
    step()  # warm-up: allocations, kernel selection
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def train_step_row(label, make, n_cpu, n_gpu):
    """Steps/s of forward + backward + Adam of a fresh model on cpu and cuda."""
    speed = {}
    for dev, n in (("cpu", n_cpu), ("cuda", n_gpu)):
        model, loss_fn = make(torch.device(dev))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model).backward()
            opt.step()

        torch.cuda.reset_peak_memory_stats()
        speed[dev] = timed(step, n)
        if dev == "cuda":
            peak = peak_mib()
        del model, opt
    rows.append([label, f"{speed['cpu']:.2f}", f"{speed['cuda']:.2f}", f"{speed['cuda'] / speed['cpu']:.1f}",
                 f"{peak:.0f}", "-"])


def cgbm(dev):
    cls, cfg = resolve_config("cgbm")
    model = cls.create_model(cfg).to(dev).train()
    d = model.config.feature_dim
    g = torch.Generator().manual_seed(0)
    b = cfg.batch_size
    q, r = torch.randn(b, 32, d, generator=g).to(dev), torch.randn(b, 300, d, generator=g).to(dev)
    ql = torch.full((b,), 32, device=dev)
    rl = torch.full((b,), 300, device=dev)
    return model, lambda m: m(q, ql, r, rl).logsumexp(-1).mean()


def stvr_warp(dev):
    cls, cfg = resolve_config("stvr-warp")
    model = cls.create_model(cfg).to(dev).train()
    g = torch.Generator().manual_seed(0)
    b, t, s = cfg.batch_size, cfg.ref_clips, cfg.frame_size
    box = torch.tensor([[0.2 * s, 0.2 * s, 0.5 * s, 0.55 * s]], device=dev)
    other = torch.tensor([[0.55 * s, 0.5 * s, 0.85 * s, 0.8 * s]], device=dev)
    batch = {
        "ref_clips": torch.randint(0, 256, (b, t, 8, s, s, 3), generator=g, dtype=torch.uint8).to(dev),
        "ref_valid": torch.ones(b, t, dtype=torch.bool, device=dev),
        "query_clips": torch.randint(0, 256, (b, cfg.query_clips, 8, s, s, 3), generator=g, dtype=torch.uint8).to(dev),
        "query_boxes": box.expand(b, cfg.query_clips, 4).clone(),
        "query_valid": torch.ones(b, cfg.query_clips, dtype=torch.bool, device=dev),
        "gt_all": [torch.cat([box, other]) for _ in range(b * t)], "gt_match": [box for _ in range(b * t)],
    }
    seeds = list(range(b))
    return model, lambda m: sum(m(**batch, seeds=seeds).values())


def warp_cell(dev):
    from relocbench_baselines.stvr.cells import LSTMState, create_cell

    cell = create_cell("warp", in_channels=1024, hidden_channels=128).to(dev)  # the paper's 20x20 map
    with torch.no_grad():
        cell.aligner.displacement.weight.normal_(0, 0.01)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1024, 20, 20, generator=g).to(dev)
    state = LSTMState(torch.randn(8, 128, 20, 20, generator=g).to(dev), torch.randn(8, 128, 20, 20, generator=g).to(dev))
    return cell, lambda c: c(x, state)[0].square().mean()


short_run("cgbm", "activitynet", steps, lambda m: m["average"], tol=0.03)
short_run("stvr-warp", "synthetic-sprites", max(10, steps // 5), lambda m: m["frame_map"]["0.5"], tol=0.05,
          loss_rtol=1e-3)
original_run(max(10, steps // 5))
train_step_row("cgbm train step, batch 32 x 300", cgbm, 3, 30)
train_step_row("stvr-warp train step, default", stvr_warp, 3, 20)
train_step_row("warp cell step, 8 x 1024 x 20x20", warp_cell, 3, 50)

print_table(f"GPU check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
            f"cpu threads {torch.get_num_threads()}",
            ["check", "cpu steps/s", "cuda steps/s", "cuda / cpu", "peak GPU MiB", "cpu / cuda"], rows)
print("Runs: steps/s of the whole run (training, validation, test prediction and scoring); 'test' is the test "
      "metric in percent (cgbm Average, stvr-warp frame-mAP@0.5), tolerance 3 and 5 points; the stvr-warp first "
      "loss must agree to 1e-3 (cgbm's dropout draws differ between devices); the original-recipe run is on cuda "
      "only and must train with finite losses and be scored. Train steps: forward, backward and Adam on fixed "
      "inputs, after two warm-up steps.")
(out / "gpu_check.json").write_text(json.dumps({"rows": rows, "failures": failures}, indent=1))
if failures:
    sys.exit("gpu_check: FAILED: " + "; ".join(failures))
EOF
then
  echo "gpu_check: FAILED: the short runs or the timed steps (see above)" >&2
  failed=1
fi
echo "gpu_check: [3/3] done in $SECONDS s; table and runs in $OUT"
if [ "$failed" -ne 0 ]; then
  echo "gpu_check: FAILED" >&2
  exit 1
fi
echo "gpu_check: all checks passed"
