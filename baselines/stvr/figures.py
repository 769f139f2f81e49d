"""Figures of the spatio-temporal baselines, in the style of the CVPR 2019 paper.

* :func:`relocalization_figure` (Fig. 8): reference keyframes of a few test pairs with the
  ground truth (white, dashed) and each variant's most confident box at that keyframe.
* :func:`warp_grid_figure` (Fig. 7): how each recurrent cell moves the previous state onto
  the current clip, drawn as a deformed grid over the keyframe (a grid point ``p`` of the
  current map is drawn at ``p - flow(p)``, where its content comes from): the warp LSTM's
  control points and their displacements, the optical-flow baseline's flow, and the first of
  the TrajLSTM's links.

Both read finished run folders (``runs/<dataset>/stvr-*``: ``config.json``,
``predictions-test.json``, ``checkpoint-best.pt``)::

    python -m relocbench_baselines.stvr.figures --runs runs/synthetic-sprites --out leaderboard/figures

writes ``synthetic-sprites-relocalization.png`` and ``synthetic-sprites-warp-grid.png``
(deterministic PNGs; refuses to overwrite without ``--force``).
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from relocbench.errors import ConfigError
from relocbench.io import atomic_write_bytes, check_output, read_json

__all__ = ["VARIANT_COLOURS", "load_run", "relocalization_figure", "warp_grid_figure", "main"]

VARIANTS = ["stvr-clip", "stvr-convlstm", "stvr-flow", "stvr-traj", "stvr-warp"]
VARIANT_COLOURS = {"stvr-clip": "#ee6677", "stvr-convlstm": "#ccbb44", "stvr-flow": "#66ccee",
                   "stvr-traj": "#aa3377", "stvr-warp": "#228833"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def load_run(run_dir, dataset: Optional[str] = None):
    """``(baseline, model, task context, config dict)`` of a finished run folder (best weights).

    The data are reopened from ``dataset`` (a manifest name or folder) when given, else from
    the run's record: a synthetic-sprites run reopens (or regenerates, in the cache folder) the
    manifest of the generator config it recorded; other runs use the recorded dataset name."""
    import torch

    from relocbench.registry import get_baseline
    from relocbench.tasks import get_task

    run_dir = Path(run_dir)
    cfg = read_json(run_dir / "config.json", "run config", ConfigError)
    cls = get_baseline(cfg["baseline"])
    config = cls.default_config(cfg["config"])
    task = get_task(cls.task)
    feats = cfg.get("features") or {}
    if dataset is None and feats.get("source") == "synthetic-sprites":
        from relocbench.video.sprites import SpritesConfig, open_sprites

        man = open_sprites(SpritesConfig.from_dict(feats["config"]))
        ctx = task.open(str(man.path), "synthetic", device=torch.device("cpu"), seed=config.seed, skip_missing=False)
    else:
        ctx = task.open(dataset or cfg["dataset"], feats.get("root", ""), device=torch.device("cpu"),
                        seed=config.seed, skip_missing=False)
    model = cls.create_model(config)
    ckpt = run_dir / "checkpoint-best.pt"
    if not ckpt.is_file():
        raise ConfigError("the run folder has no checkpoint-best.pt (is the run finished?)", file=run_dir)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
    model.eval()
    baseline = cls(config, ctx)
    baseline.prepare(model)
    return baseline, model, ctx, cfg


def _draw_box(ax, box, size, colour, dashed=False, lw=1.4):
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = (float(v) * size for v in box)
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, lw=lw,
                           ls="--" if dashed else "-"))


def relocalization_figure(runs: Dict[str, Path], *, pair_ids: Optional[Sequence[str]] = None, n_pairs: int = 2,
                          max_keyframes: int = 6, dataset: Optional[str] = None) -> bytes:
    """Fig. 8 style PNG: per pair, the query's middle keyframe (its box in blue) then reference
    keyframes with the ground truth and every variant's top box at that keyframe."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = [n for n in VARIANTS if n in runs] + sorted(n for n in runs if n not in VARIANTS)
    if not names:
        raise ConfigError("no run folders given for the figure")
    first = names[0]
    baseline, _, ctx, cfg = load_run(runs[first], dataset)
    preds = {n: read_json(Path(runs[n]) / f"predictions-{cfg['split']}.json", "predictions file",
                          ConfigError)["results"] for n in names}
    pairs = ctx.manifest.table("pairs", cfg["split"])
    targets = ctx.manifest.table("targets", cfg["split"])
    if pair_ids is None:  # pairs whose windows show a distractor: targets at fewer actors than present
        ids = pairs["pair_id"].tolist()
        pick = np.unique(np.linspace(0, len(ids) - 1, n_pairs).round().astype(int))
        pair_ids = [ids[i] for i in pick]
    size = baseline.size
    rows = []
    for pid in pair_ids:
        row = next(pairs[pairs["pair_id"] == pid].itertuples(index=False))
        times = baseline._ref_times(row)
        if len(times) > max_keyframes:
            times = times[np.unique(np.linspace(0, len(times) - 1, max_keyframes).round().astype(int))]
        rows.append((row, times))
    ncol = 1 + max(len(t) for _, t in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.6 * ncol, 1.85 * len(rows)), squeeze=False)
    for r, (row, times) in enumerate(rows):
        for ax in axes[r]:
            ax.axis("off")
        qt, qb = baseline.data.keyframes(row.query_tubelet_id)
        mid = len(qt) // 2
        ax = axes[r, 0]
        ax.imshow(baseline.source.frame(row.query_video, qt[mid], size=size))
        _draw_box(ax, qb[mid], size, "#4477aa", lw=1.8)
        ax.set_title(f"query: {row.label}", fontsize=7)
        tg = targets[targets["pair_id"] == row.pair_id]
        for c, t in enumerate(times, start=1):
            ax = axes[r, c]
            ax.imshow(baseline.source.frame(row.ref_video, t, size=size))
            for b in tg[np.isclose(tg["time"], t)][["x1", "y1", "x2", "y2"]].to_numpy():
                _draw_box(ax, b, size, "white", dashed=True, lw=1.2)
            for n in names:
                at = [p for p in preds[n].get(row.pair_id, []) if abs(p["time"] - t) < 1e-6]
                if at:
                    best = max(at, key=lambda p: p["score"])
                    _draw_box(ax, best["box"], size, VARIANT_COLOURS.get(n, "#bbbbbb"))
            ax.set_title(f"t = {t:g}", fontsize=7)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="white", ls="--", label="ground truth", markeredgecolor="k")]
    handles[0].set_color("#999999")
    handles += [Line2D([], [], color=VARIANT_COLOURS.get(n, "#bbbbbb"), label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Most confident box per keyframe (Fig. 8 style; blue: the query box)", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    data = _png(fig)
    plt.close(fig)
    return data


def state_flows(baseline, model, row) -> Optional[np.ndarray]:
    """The dense ``(T, 2, h, w)`` ``(dy, dx)`` flows the cell applied to the previous state at
    each reference step of pair ``row`` (step 0: zeros); ``None`` for cells without a flow
    (and for the original recipe's cells, which do not report the flow they apply)."""
    import torch

    x = baseline.pair_inputs(row)
    cell = model.cell
    if not hasattr(cell, "align"):
        return None
    with torch.no_grad():
        maps = model.encode(torch.from_numpy(x["ref"]))
        flows_in = None if x["flows"] is None else torch.from_numpy(x["flows"])
        state, out = None, [torch.zeros(2, *maps.shape[-2:])]
        for t in range(maps.shape[0]):
            xt = maps[t:t + 1]
            f_in = None if flows_in is None else flows_in[t:t + 1]
            if state is not None:
                # the original recipe's cells return the aligned state without its flow
                flow = getattr(cell.align(xt, state, flow=f_in), "flow", None)
                if flow is None:
                    return None
                fl = flow[0]
                out.append(fl[0] if fl.dim() == 4 else fl)  # TrajLSTM: the first link
            _, state = cell(xt, state, flow=f_in)
    return torch.stack(out).numpy()


def warp_grid_figure(runs: Dict[str, Path], *, pair_id: Optional[str] = None, max_steps: int = 5,
                     lines: int = 9, dataset: Optional[str] = None) -> bytes:
    """Fig. 7 style PNG: per recurrent cell with a flow (warp, flow, traj), the grid of the
    current map drawn where its content comes from in the previous state, over the keyframe."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import torch

    names = [n for n in ("stvr-warp", "stvr-flow", "stvr-traj") if n in runs]
    if not names:
        raise ConfigError("the warp-grid figure needs a stvr-warp, stvr-flow or stvr-traj run folder")
    loaded = {n: load_run(runs[n], dataset) for n in names}
    b0, _, ctx, cfg = loaded[names[0]]
    pairs = ctx.manifest.table("pairs", cfg["split"])
    if pair_id is None:
        pair_id = pairs["pair_id"].iloc[len(pairs) // 2]
    row = next(pairs[pairs["pair_id"] == pair_id].itertuples(index=False))
    times = b0._ref_times(row)[: max_steps + 1]
    fig, axes = plt.subplots(len(names), len(times) - 1, figsize=(1.9 * (len(times) - 1), 2.0 * len(names)),
                             squeeze=False)
    for r, n in enumerate(names):
        baseline, model, _, _ = loaded[n]
        flows = state_flows(baseline, model, row)
        size, stride = baseline.size, model.stride
        h, w = flows.shape[-2:]
        for c in range(1, len(times)):
            ax = axes[r, c - 1]
            ax.imshow(baseline.source.frame(row.ref_video, times[c], size=size))
            fl = torch.from_numpy(flows[c][None])
            for k in np.linspace(0, h - 1, lines):
                pts = np.stack([np.full(50, k), np.linspace(0, w - 1, 50)], 1)
                for seg in (pts, pts[:, ::-1]):
                    from relocbench.ops import bilinear_sample

                    d = bilinear_sample(fl.double(), torch.from_numpy(seg.copy())[None].double())[0].numpy()
                    src = seg - d  # content at p comes from p - flow(p)
                    ax.plot((src[:, 1] + 0.5) * stride - 0.5, (src[:, 0] + 0.5) * stride - 0.5, color="yellow",
                            lw=0.6)
            if n == "stvr-warp":
                from .cells import control_points

                cp = control_points(h, w, model.cell.aligner.grid_size, dtype=torch.float64).numpy()
                d = bilinear_sample(fl.double(), torch.from_numpy(cp)[None])[0].numpy()
                ax.quiver((cp[:, 1] + 0.5) * stride - 0.5, (cp[:, 0] + 0.5) * stride - 0.5, d[:, 1] * stride,
                          -d[:, 0] * stride, color="red", angles="xy", scale_units="xy", scale=1, width=0.02)
            mean_px = float(np.linalg.norm(flows[c], axis=0).mean())
            if mean_px > max(h, w) / 2:  # the state is sampled from outside the map (zero padding)
                ax.text(size / 2, size / 2, f"samples outside the map\n(mean |flow| {mean_px:.0f} map px)",
                        ha="center", va="center", fontsize=6, color="yellow",
                        bbox={"facecolor": "black", "alpha": 0.6, "lw": 0})
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            ax.axis("off")
            ax.set_title(f"{n.replace('stvr-', '')}: {times[c - 1]:g}->{times[c]:g}", fontsize=7)
    fig.suptitle(f"State warps between consecutive clips (Fig. 7 style), pair {pair_id}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    data = _png(fig)
    plt.close(fig)
    return data


def matching_diagnostic(run_dir, *, split: str = "test", dataset: Optional[str] = None) -> Dict[str, float]:
    """Separates matching from localisation: frame-mAP@0.5 when the RoIs are every actor's
    ground-truth box at each reference keyframe (no proposals, no regression) and the score is
    the trained head's "corresponds to the query" probability, next to the same boxes with
    random scores (a perfect detector that does not match at all)."""
    import torch

    baseline, model, ctx, cfg = load_run(run_dir, dataset)
    from relocbench.tasks import get_task

    task = get_task("spatiotemporal")
    pairs = task.pairs(ctx, split)
    size = float(baseline.size)
    head_res = {}
    for row in pairs.itertuples(index=False):
        x = baseline.pair_inputs(row)
        boxes = [np.array([b for _, b in baseline.data.boxes_at(row.ref_video, t)], np.float32).reshape(-1, 4)
                 for t in x["times"]]
        preds = []
        with torch.no_grad():
            maps = model.encode(torch.from_numpy(x["ref"]))
            flows = None if x["flows"] is None else torch.from_numpy(x["flows"])[None]
            maps = model.propagate(maps[None], flows)[0]
            qfeat = model._query(torch.from_numpy(x["query"])[None], torch.from_numpy(x["query_boxes"])[None])
            if sum(len(b) for b in boxes):
                rois = [torch.from_numpy(b * size) for b in boxes]
                logits, _ = model.head(maps, rois, qfeat, torch.ones(1, qfeat.shape[1], dtype=torch.bool),
                                       torch.zeros(len(rois), dtype=torch.long))
                scores = torch.sigmoid(logits).numpy()
                k = 0
                for t, bs in zip(x["times"], boxes):
                    for b in bs:
                        preds.append({"time": float(t), "box": [float(v) for v in b], "score": float(scores[k])})
                        k += 1
        head_res[str(row.pair_id)] = sorted(preds, key=lambda p: -p["score"])
    head = task.score(ctx, pairs, head_res, split=split)["frame_map"]["0.5"]
    rand = detector_only_reference(ctx.manifest, split)["0.5"]
    return {"gt_boxes_head_scores": head, "gt_boxes_random_scores": rand}


def detector_only_reference(manifest, split: str = "test", *, seed: int = 0) -> Dict[str, float]:
    """Frame-mAP of a perfect actor detector that does not match: every actor's true box at
    every scored keyframe, with a random score. A model must beat this to show that it
    matches the query rather than just finding actors."""
    from relocbench.metrics import evaluate_spatiotemporal

    pairs = manifest.table("pairs", split)
    targets = manifest.table("targets", split)
    tub = manifest.table("tubelets", split).set_index("tubelet_id")
    boxes = manifest.table("boxes", split).join(tub[["video"]], on="tubelet_id")
    rng = np.random.default_rng(seed)
    res = {}
    for r in pairs.itertuples(index=False):
        b = boxes[(boxes["video"] == r.ref_video) & boxes["time"].isin(list(r.ref_keyframes))]
        res[str(r.pair_id)] = [{"time": float(x.time), "box": [x.x1, x.y1, x.x2, x.y2], "score": float(rng.uniform())}
                               for x in b.itertuples()]
    return evaluate_spatiotemporal(pairs, targets, {"task": "spatiotemporal", "results": res})["frame_map"]


def main(argv: Optional[List[str]] = None) -> List[Path]:
    p = argparse.ArgumentParser(prog="python -m relocbench_baselines.stvr.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, type=Path, help="folder holding the stvr-* run folders")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNGs (e.g. leaderboard/figures)")
    p.add_argument("--pairs", nargs="*", default=None, help="pair ids of the Fig. 8 panel (default: spread)")
    p.add_argument("--dataset", default=None, help="manifest name or folder of non-synthetic runs")
    p.add_argument("--force", action="store_true", help="overwrite existing PNGs")
    a = p.parse_args(argv)
    runs = {d.name: d for d in sorted(a.runs.iterdir()) if (d / "result.json").is_file()}
    if not runs:
        raise ConfigError("no finished run folder (with result.json) here", file=a.runs)
    ds = json.loads(next(iter(runs.values())).joinpath("result.json").read_text())["dataset"]
    out = []
    for name, fn in ((f"{ds}-relocalization.png", lambda: relocalization_figure(runs, pair_ids=a.pairs, dataset=a.dataset)),
                     (f"{ds}-warp-grid.png", lambda: warp_grid_figure(runs, dataset=a.dataset))):
        path = check_output(a.out / name, a.force)
        atomic_write_bytes(path, fn())
        out.append(path)
        print(f"Wrote {path}")
    return out


if __name__ == "__main__":
    main()
