"""Forward+backward time per step of each reference-propagation cell.

Two sizes: the paper's feature map (batch 8, 1024 input channels, 128-channel bottleneck,
20x20) and a small synthetic one (batch 4, 64 channels, 16-channel bottleneck, 8x8). Each
row is one recurrent step from a non-zero state (the steady state of a sequence), timed as
the median of ``--repeats-*`` runs (round-robin over the rows) after two warm-ups; the
``x convlstm`` column is the ratio to the plain ConvLSTM measured in the same run. Two
extra rows per size time the warp operator itself (``sparse_image_warp`` of ``[h; c]`` at
the cell's shapes, forward+backward) as a share of the warp cell's step, and the batched
operator against a plain per-item loop (one solve per batch item).

Usage:  python benchmarks/bench_cells.py [--repeats-paper 5] [--repeats-small 20]
        [--threads 2] [--sizes paper,small]
Runs in about a minute on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import inspect
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

from relocbench_baselines.stvr.cells import LSTMState, WarpLSTM, control_points, create_cell, list_cells
from relocbench.cli._common import print_table
from relocbench.ops import sparse_image_warp

SIZES: Dict[str, Tuple[int, int, int, int]] = {  # batch, in_channels, hidden, map size
    "paper": (8, 1024, 128, 20),
    "small": (4, 64, 16, 8),
}
CELL_ORDER = ["none", "convlstm", "flow", "traj", "warp"]
WARP_BOUNDARY_POINTS = inspect.signature(WarpLSTM).parameters["num_boundary_points"].default


def _median_ms(fns: Dict[str, Callable[[], None]], repeats: int) -> Dict[str, float]:
    """Median wall time of each function, measured round-robin so that load from other
    processes on a shared machine spreads evenly over the rows."""
    for fn in fns.values():  # warm-up (allocations, one-time kernel selection)
        fn()
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(t) for name, t in times.items()}


def _cell_step(name: str, batch: int, channels: int, hidden: int, size: int
               ) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cell = create_cell(name, in_channels=channels, hidden_channels=hidden)
    if name == "warp":  # non-trivial displacements, as after training
        with torch.no_grad():
            cell.aligner.displacement.weight.normal_(0, 0.01, generator=gen)
    x = torch.randn(batch, channels, size, size, generator=gen).requires_grad_()
    state = LSTMState(torch.randn(batch, hidden, size, size, generator=gen),
                      torch.randn(batch, hidden, size, size, generator=gen))
    flow = torch.randn(batch, 2, size, size, generator=gen)

    def step() -> None:
        cell.zero_grad(set_to_none=True)
        x.grad = None
        if name == "none":
            out, _ = cell(x, None)
            out.square().sum().backward()
            return
        out, new = cell(x, state, flow=flow if cell.needs_flow else None)
        (out.square().sum() + new.c.square().sum()).backward()

    return step


def _warp_op(batch: int, hidden: int, size: int, *, per_item: bool) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(batch, 2 * hidden, size, size, generator=gen).requires_grad_()
    src = control_points(size, size).unsqueeze(0).expand(batch, -1, -1)
    disp = (0.5 * torch.randn(batch, src.shape[1], 2, generator=gen)).requires_grad_()

    def run() -> None:
        image.grad = None
        disp.grad = None
        if per_item:
            outs = [sparse_image_warp(image[i:i + 1], src[i:i + 1],
                                      src[i:i + 1] + disp[i:i + 1],
                                      num_boundary_points=WARP_BOUNDARY_POINTS)[0]
                    for i in range(batch)]
            out = torch.cat(outs)
        else:
            out = sparse_image_warp(image, src, src + disp,
                                    num_boundary_points=WARP_BOUNDARY_POINTS)[0]
        out.square().sum().backward()

    return run


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-paper", type=int, default=5)
    parser.add_argument("--repeats-small", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="paper,small")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if set(CELL_ORDER) != set(list_cells()):
        raise SystemExit(f"bench_cells covers {CELL_ORDER} but the registry holds {list_cells()}")
    unknown = [s for s in args.sizes.split(",") if s not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes must be a comma-separated subset of {list(SIZES)}; "
                         f"got {unknown}")
    for size_name in args.sizes.split(","):
        batch, channels, hidden, size = SIZES[size_name]
        repeats = args.repeats_paper if size_name == "paper" else args.repeats_small
        fns = {name: _cell_step(name, batch, channels, hidden, size) for name in CELL_ORDER}
        fns["warp-op"] = _warp_op(batch, hidden, size, per_item=False)
        fns["warp-op-loop"] = _warp_op(batch, hidden, size, per_item=True)
        times = _median_ms(fns, repeats)
        base = times["convlstm"]
        rows = [[name, f"{times[name]:.2f}", f"{times[name] / base:.2f}", ""]
                for name in CELL_ORDER]
        warp_ms, loop_ms = times["warp-op"], times["warp-op-loop"]
        rows.append(["warp operator (batched)", f"{warp_ms:.2f}", f"{warp_ms / base:.2f}",
                     f"{100.0 * warp_ms / times['warp']:.1f}% of warp cell"])
        rows.append(["warp operator (per-item loop)", f"{loop_ms:.2f}",
                     f"{loop_ms / base:.2f}", f"batched is {loop_ms / warp_ms:.2f}x faster"])
        title = (f"{size_name}: batch {batch}, {channels} -> {hidden} channels, {size}x{size} "
                 f"map, forward+backward per step, median of {repeats}, "
                 f"{args.threads} thread(s)")
        print_table(title, ["cell", "ms / step", "x convlstm", "note"], rows)


if __name__ == "__main__":
    main()
