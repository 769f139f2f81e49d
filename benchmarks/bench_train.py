"""Training and inference speed of the temporal baselines at paper settings on this machine.

    .venv/bin/python benchmarks/bench_train.py [--steps 5] [--baseline cgbm] [--threads 2]

Rows: training steps per second of ``cgbm`` at paper settings (batch 128, Adam, clip 5) on
the committed ActivityNet manifest with synthetic features, with windows bucketed by length
as the original code did, and the same steps with the batches drawn unbucketed (the plain
reference, measured in the same run) for the ratio; then inference pairs per second on the
test split. The last column extrapolates to the paper's 1,000-step budget (target: under 30
minutes here).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="cgbm")
    ap.add_argument("--steps", type=int, default=5, help="Timed training steps per row.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=256, help="Test pairs timed for inference.")
    ap.add_argument("--batch-size", type=int, default=128, help="Global batch (paper: 128).")
    ap.add_argument("--no-plain", action="store_true", help="Skip the unbucketed reference row.")
    args = ap.parse_args(argv)

    import torch

    from relocbench.baseline import RunContext
    from relocbench.engine import _make_optimizer
    from relocbench.features import open_feature_store
    from relocbench.manifest import open_manifest
    from relocbench.registry import get_baseline

    torch.set_num_threads(args.threads)
    man = open_manifest("activitynet")
    store = open_feature_store("synthetic", manifest=man, seed=0)
    cls = get_baseline(args.baseline)
    cfg = cls.default_config({"batch_size": args.batch_size})
    ctx = RunContext(dataset="activitynet", manifest=man, features=store, device=torch.device("cpu"))
    rows = []

    def time_training(bucketed: bool) -> float:
        torch.manual_seed(0)
        model = cls.create_model(cfg)
        base = cls(cfg, ctx)
        base.prepare(model)
        if not bucketed:
            base._batches.bucket = base._batches.batch_size  # one batch per chunk: no length sorting
            base._batches._epoch = None
        opt, _ = _make_optimizer(cfg, model.parameters())
        model.train()
        b = base.batch(0)
        loss, _ = base.loss(model, b)  # warm-up
        loss.backward()
        opt.zero_grad()
        t0 = time.perf_counter()
        pad = []
        for step in range(1, args.steps + 1):
            b = base.batch(step)
            if hasattr(b, "ref_len"):
                pad.append(float(b.ref_len.mean() / b.ref_len.max()))
            loss, _ = base.loss(model, b)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
        dt = (time.perf_counter() - t0) / args.steps
        fill = f"{100 * np.mean(pad):.0f}% of padded steps valid" if pad else ""
        rows.append([f"train {args.baseline} ({'bucketed' if bucketed else 'unbucketed, plain'})",
                     f"batch {cfg.batch_size}", f"{1 / dt:.3f} steps/s", f"{dt * 1000 / 60:.1f} min", fill])
        return dt

    t_b = time_training(True)
    if not args.no_plain:
        t_u = time_training(False)
        rows[0][4] += f"; {t_u / t_b:.2f}x faster than unbucketed"

    model = cls.create_model(cfg)
    base = cls(cfg, ctx)
    base.prepare(model)
    model.eval()
    pairs = man.table("pairs", "test").iloc[: args.pairs]
    t0 = time.perf_counter()
    with torch.no_grad():
        base.predict(model, pairs)
    dt = time.perf_counter() - t0
    rows.append([f"predict {args.baseline}", f"{len(pairs)} test pairs", f"{len(pairs) / dt:.1f} pairs/s",
                 "", f"{dt:.1f} s"])

    cols = ["row", "input", "speed", "1,000 steps", "note"]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    print(f"Temporal baselines: speed on this machine ({args.threads} threads, {args.steps} timed steps)")
    for line in [cols, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))


if __name__ == "__main__":
    main()
