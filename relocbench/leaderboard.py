"""The leaderboard: one result record per seed under ``results/<board>/<baseline>/seed-<k>.json``.

A *board* is one section of the leaderboard: by default the dataset's name; runs at another
budget of the same dataset go to their own board (``activitynet-paper``: the paper's batch
and steps) so that every table compares runs made alike. A single file
``results/<board>/<baseline>.json`` (the layout before seeds) still reads, as one seed.

``publish_result`` copies a run's ``result.json`` into the leaderboard folder (refusing to
overwrite without ``force``) and, when the run folder is at hand, adds the per-pair scores
of the headline metric (``per_pair``, compact: one digit per test pair) that the paired
comparisons need. ``write_leaderboard`` regenerates ``README.md`` from every record: per
board, the tables in the layout of the papers, with the mean ± standard deviation over
seeds, the bootstrap 95% interval over pairs (per-pair scores averaged over seeds), and a
paired comparison of every row with the table's reference row (the full model); the
papers' own numbers follow as reference rows, then a plot of the metric against the IoU
threshold and a qualitative figure. Hand-written analysis lives in ``notes/<board>.md`` and
is included verbatim.

Paired comparison. For rows A (the reference) and B with per-pair scores on the same test
pairs (same pair ids, checked by a hash), let ``a_i`` and ``b_i`` be pair i's score (temporal:
the fraction of the Average's thresholds its top-1 segment clears) averaged
over each row's seeds and ``d_i = b_i - a_i``. The difference is ``mean(d)``; its 95%
interval is the 2.5th-97.5th percentile of ``mean(d)`` over ``N_BOOTSTRAP`` resamples of
the pairs with replacement (``numpy.random.default_rng(BOOTSTRAP_SEED)``, the same resamples
for every row of a board), and the two-sided p-value is ``min(1, 2 * min(P(d* <= 0),
P(d* >= 0)))`` over the resampled means ``d*``. A difference is *significant* when its
interval excludes 0.

The spatio-temporal frame-mAP is not a mean over pairs: it pools the detections of all pairs
into one ranking per label. Its per-pair record holds every detection's pair and
true-positive flag (IoU 0.5) in that ranking, and each pair's number of targets; a resample
with pair weights recomputes the frame-mAP exactly (a pair drawn k times counts k times), the
row's statistic is its mean over seeds, and the comparison is the same paired bootstrap on
that statistic (``N_BOOTSTRAP_OF["pooled-ap"]`` resamples, each a full AP computation).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ConfigError, ManifestError, OutputExistsError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, check_output, read_json

__all__ = ["check_board", "publish_result", "publish_run", "write_leaderboard", "metric_value", "load_results",
           "pair_scores", "board_stats", "parse_seeds", "run_seeds", "record_path", "REFERENCE_ROWS", "N_BOOTSTRAP"]

#: the full model of each task: every row of a table is compared with it
REFERENCE_ROWS = {"temporal": "cgbm", "spatiotemporal": "stvr-warp"}
#: the column that holds each task's headline number
HEADLINE_COLUMN = {"temporal": "Average", "spatiotemporal": "0.5"}
N_BOOTSTRAP = 10_000
#: resamples per kind of per-pair record: the pooled AP is recomputed per resample, so fewer
N_BOOTSTRAP_OF = {"hits": 10_000, "pooled-ap": 1_000}
BOOTSTRAP_SEED = 0
_SEED_FILE = re.compile(r"^seed-(\d+)\.json$")
_log = logging.getLogger(__name__)


def metric_value(metrics: Dict[str, Any], path: Sequence[str]) -> float:
    cur: Any = metrics
    for key in path:
        cur = cur[key]
    return float(cur)


def check_board(board: str) -> str:
    """``board`` if it is a plain folder name (no separators, not hidden); else a ManifestError."""
    if not board or "/" in board or "\\" in board or board.startswith("."):
        raise ManifestError(f"a leaderboard board is a plain folder name; got {board!r}")
    return board


# ----------------------------------------------------------------------------- per-pair scores


def pair_ids_sha256(pair_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(map(str, pair_ids)).encode("utf-8")).hexdigest()


def _temporal_pair_scores(result: Dict[str, Any], run_dir: Path, manifest) -> Dict[str, Any]:
    """Per pair, how many of the Average's thresholds its top-1 segment clears (0..5)."""
    from .metrics.temporal import hit
    from .predictions import load_json_strict

    split = result.get("split", "test")
    metrics = result["metrics"]
    f = run_dir / f"predictions-{split}.json"
    doc = load_json_strict(f, "run predictions file")
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ManifestError("expected a predictions object with a 'results' mapping", file=f)
    pairs = manifest.table("pairs", split)
    unit = doc.get("unit", metrics.get("unit", "step"))
    sfx = "step" if unit == "step" else "s"
    gs, ge = pairs[f"gt_start_{sfx}"].to_numpy(np.float64), pairs[f"gt_end_{sfx}"].to_numpy(np.float64)
    thr = [float(t) for t in metrics["average_thresholds"]]
    rule = metrics.get("iou_rule", "inclusive")
    hits = np.zeros(len(pairs), dtype=np.int64)
    for i, pid in enumerate(pairs["pair_id"]):
        lst = results.get(pid) or []
        if not lst:
            continue
        best = max(range(len(lst)), key=lambda j: (float(lst[j]["score"]), -j))   # first listed on ties
        s, e = (float(x) for x in lst[best]["segment"])
        inter = max(0.0, min(e, ge[i]) - max(s, gs[i]))
        union = (e - s) + (ge[i] - gs[i]) - inter
        tiou = inter / union if union > 0 else 0.0
        hits[i] = int(sum(bool(hit(np.float64(tiou), t, rule)) for t in thr))
    avg = float(hits.mean() / len(thr))
    if abs(avg - float(metrics["average"])) > 1e-9:
        raise ManifestError(f"per-pair scores give Average {avg!r}, the run's metrics {metrics['average']!r}: "
                            "predictions and metrics do not belong together", file=f)
    return {"metric": "average", "split": split, "n": int(len(pairs)), "levels": len(thr),
            "pair_ids_sha256": pair_ids_sha256(pairs["pair_id"].tolist()), "hits": "".join(map(str, hits.tolist()))}


def pair_scores(result: Dict[str, Any], run_dir: Union[str, Path],
                manifest: Union[str, Path, None] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """(``per_pair`` record of the headline metric, or None; the reason when None).

    Read from the run folder's predictions file and the manifest (``manifest`` or the
    result's dataset name), which must be the one the run used (its sha256 is checked; None
    with the reason when it is not, or when the manifest cannot be opened).
    Temporal: the hits of the Average per pair; spatio-temporal: the ranked detections with
    their true-positive flags (see :func:`_st_pair_scores`).
    """
    task = result.get("task")
    if task not in ("temporal", "spatiotemporal"):
        return None, f"no per-pair scores for task {task!r}"
    man, why = _run_manifest(result, manifest)
    if man is None:
        return None, why
    if task == "spatiotemporal":
        return _st_pair_scores(result, Path(run_dir), man), ""
    return _temporal_pair_scores(result, Path(run_dir), man), ""


def _run_manifest(result: Dict[str, Any], manifest: Union[str, Path, None]):
    """(the manifest a run used, ""), or (None, why): ``manifest`` or the result's dataset,
    whose sha256 must be the one the run recorded."""
    from .io import sha256_file
    from .manifest import open_manifest

    name = manifest if manifest is not None else result["dataset"]
    try:
        if result.get("task") == "spatiotemporal" and str(name) == "synthetic-sprites":
            from .video.sprites import SpritesConfig, open_sprites

            man = open_sprites(SpritesConfig())
        else:
            man = open_manifest(name)
    except (ManifestError, ConfigError) as exc:
        return None, f"manifest {str(name)!r} not found ({exc})"
    sha = sha256_file(man.path / "manifest.json")
    if result.get("manifest_sha256") and sha != result["manifest_sha256"]:
        return None, (f"manifest {man.path} has sha256 {sha[:12]}..., the run used "
                      f"{str(result['manifest_sha256'])[:12]}...")
    return man, ""


#: proposals per pair at the end of the AR@AN curve of a temporal run without ``top_k`` in its config
PROPOSALS_PER_PAIR = 10


def proposal_scores(result: Dict[str, Any], run_dir: Union[str, Path],
                    manifest: Union[str, Path, None] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """(the official proposal metric of a temporal run's ranked predictions, or None; why).

    Each pair is a "video" whose ground truth is the pair's segment and whose proposals are
    the run's ranked predictions (:func:`relocbench.metrics.proposal.proposal_documents`),
    scored by ``activitynet-proposal`` with the curve ending at the run's ``top_k`` proposals
    per pair (:data:`PROPOSALS_PER_PAIR` where its config has none): AUC, AR@1/5/10 and the
    curve.
    """
    from .metrics.proposal import activitynet_proposal, proposal_documents
    from .predictions import read_predictions

    if result.get("task") != "temporal":
        return None, f"no proposal metric for task {result.get('task')!r}"
    man, why = _run_manifest(result, manifest)
    if man is None:
        return None, why
    split = result.get("split", "test")
    preds = read_predictions(Path(run_dir) / f"predictions-{split}.json", task="temporal")
    gt, props, _ = proposal_documents(preds, man.table("pairs", split), subset=split)
    top_k = (result.get("config") or {}).get("top_k") or PROPOSALS_PER_PAIR
    m = activitynet_proposal(gt, props, subset=split, max_avg_nr_proposals=int(top_k))
    keep = ("auc", "ar_at_an", "average_recall", "average_nr_proposals", "max_avg_nr_proposals", "n_videos",
            "n_proposals", "n_proposals_kept")
    return {"protocol": "activitynet-proposal", "unit": preds.unit, **{k: m[k] for k in keep}}, ""


ST_THRESHOLD = "0.5"


def _st_pair_scores(result: Dict[str, Any], run_dir: Path, manifest) -> Dict[str, Any]:
    """What a pooled frame-mAP needs to be recomputed on resampled pairs: every detection in
    its label's ranking (pair index and true-positive flag at IoU 0.5) and each pair's number
    of target boxes.

    The flags follow the evaluator's rule and preprocessing (:mod:`relocbench.metrics.spatiotemporal`:
    keyframe images, ties by manifest position, the AVA greedy match of
    :mod:`relocbench.metrics.frame_ap`, which reports APs but not the flags); the AP they give
    must equal the run's ``frame_map["0.5"]`` to 1e-9, or nothing is published.
    """
    import base64

    import pandas as pd

    from .metrics.frame_ap import candidate_pairs
    from .metrics.geometry import _box_iou_arrays, group_starts
    from .metrics.spatiotemporal import _time_key
    from .predictions import match_pair_ids, read_predictions

    split = result.get("split", "test")
    f = run_dir / f"predictions-{split}.json"
    preds = read_predictions(f, task="spatiotemporal")
    pairs, targets = manifest.table("pairs", split), manifest.table("targets", split)
    pair_ids = pairs["pair_id"].to_numpy(object)
    n_pairs, n = len(pairs), preds.n_predictions
    gidx = match_pair_ids(preds.pair_ids, pair_ids, source=str(f))
    row_pair = np.repeat(gidx, preds.counts)
    boxes = np.clip(preds.boxes, 0.0, 1.0)
    tgt_idx = pd.Index(pair_ids).get_indexer(targets["pair_id"].to_numpy(object))
    img_pairs = np.concatenate([row_pair, tgt_idx])
    img_times = np.concatenate([_time_key(preds.time), _time_key(targets["time"].to_numpy(np.float64))])
    _, img = np.unique(np.stack([img_pairs, img_times], axis=1), axis=0, return_inverse=True)
    img = img.reshape(-1)
    lab_codes, lab_names = pd.factorize(pairs["label"].to_numpy(object), sort=True)
    n_cls = len(lab_names)
    new_off = np.concatenate([[0], np.cumsum(np.bincount(gidx, weights=preds.counts,
                                                         minlength=n_pairs).astype(np.int64))])
    tie = new_off[row_pair] + (np.arange(n) - np.repeat(preds.offsets[:-1], preds.counts))
    det_cls, score = lab_codes[row_pair], preds.score
    gt_boxes = targets[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    best_iou, best_gt = np.full(n, -np.inf), np.full(n, -1, dtype=np.int64)
    d_idx, g_idx, cnt = candidate_pairs(img[:n] * n_cls + det_cls, img[n:] * n_cls + lab_codes[tgt_idx])
    if d_idx.size:
        iou = _box_iou_arrays(boxes[d_idx], gt_boxes[g_idx])
        has = cnt > 0
        best_iou[has] = np.maximum.reduceat(iou, (np.cumsum(cnt) - cnt)[has])
        at_max = np.flatnonzero(iou == best_iou[d_idx])
        first = group_starts(d_idx[at_max])
        best_gt[d_idx[at_max[first]]] = g_idx[at_max[first]]
    elig = np.flatnonzero((best_gt >= 0) & (best_iou >= float(ST_THRESHOLD)))
    elig = elig[np.lexsort((tie[elig], -score[elig], best_gt[elig]))]
    tp = np.zeros(n, dtype=bool)
    tp[elig[group_starts(best_gt[elig])]] = True
    order = np.lexsort((tie, -score, det_cls))
    dtype = "<u2" if 2 * n_pairs < 2 ** 16 else "<u4"
    code = (row_pair[order].astype(np.int64) << 1) | tp[order]
    rec = {"kind": "pooled-ap", "metric": "frame_map", "threshold": ST_THRESHOLD, "split": split, "n": int(n_pairs),
           "pair_ids_sha256": pair_ids_sha256(pair_ids.tolist()), "pair_label": lab_codes.tolist(),
           "npos": np.bincount(tgt_idx, minlength=n_pairs).tolist(), "dtype": dtype,
           "detections": base64.b64encode(code.astype(dtype).tobytes()).decode("ascii")}
    got = float(_weighted_frame_map(_decode_ap(rec), np.ones((1, n_pairs)))[0])
    want = float(result["metrics"]["frame_map"][ST_THRESHOLD])
    if abs(got - want) > 1e-9:
        raise ManifestError(f"per-detection flags give frame-mAP {got!r}, the run's metrics {want!r}: predictions "
                            "and metrics do not belong together", file=f)
    return rec


def _decode_ap(pp: Dict[str, Any]) -> Dict[str, Any]:
    """Per label: the pair index and true-positive flag of its ranked detections; the pairs of the label."""
    import base64

    code = np.frombuffer(base64.b64decode(pp["detections"]), dtype=pp["dtype"]).astype(np.int64)
    pair, tp = code >> 1, (code & 1).astype(np.float64)
    pl = np.asarray(pp["pair_label"], dtype=np.int64)
    if pair.size and (pair.max() >= pp["n"] or pl.size != pp["n"]):
        raise ManifestError("per_pair detections name pairs beyond the record's pair count")
    lab = pl[pair]
    labels = {}
    for c in np.unique(pl):
        m = lab == c   # a stable selection keeps each label's ranking
        labels[int(c)] = (pair[m], tp[m], np.flatnonzero(pl == c))
    return {"labels": labels, "npos": np.asarray(pp["npos"], dtype=np.float64)}


def _weighted_frame_map(dec: Dict[str, Any], W: np.ndarray, chunk: int = 200) -> np.ndarray:
    """Frame-mAP (mean AP over labels with targets) with pair weights ``W`` (draws, n_pairs).

    A pair drawn k times counts its detections and targets k times; k copies of a detection
    sit together in the ranking, so a weighted cumulative sum gives the precision and recall
    of the all-point interpolated AP exactly (with all weights 1 it is the evaluator's AP).
    """
    out = np.empty(W.shape[0])
    npos = dec["npos"]
    for a in range(0, W.shape[0], chunk):
        w_all = W[a:a + chunk]
        total = np.zeros(w_all.shape[0])
        count = np.zeros(w_all.shape[0])
        for pair, tp, members in dec["labels"].values():
            npw = w_all[:, members] @ npos[members]
            valid = npw > 0
            if pair.size:
                w = w_all[:, pair]
                wt = w * tp
                tpw, allw = np.cumsum(wt, axis=1), np.cumsum(w, axis=1)
                prec = np.divide(tpw, allw, out=np.zeros_like(tpw), where=allw > 0)
                interp = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
                ap = (wt * interp).sum(axis=1) / np.where(valid, npw, 1.0)
            else:
                ap = np.zeros(w_all.shape[0])
            total += np.where(valid, ap, 0.0)
            count += valid
        out[a:a + chunk] = total / np.maximum(count, 1)
    return out


def _decode_pairs(rec: Dict[str, Any]) -> Optional[np.ndarray]:
    pp = rec.get("per_pair")
    if not pp:
        return None
    h = pp.get("hits", "")
    if len(h) != pp.get("n") or not h.isdigit():
        raise ManifestError(f"per_pair of {rec.get('baseline')!r} seed {rec.get('seed')}: expected {pp.get('n')} "
                            f"digits, found {len(h)} characters", file=rec.get("_file"))
    return np.frombuffer(h.encode("ascii"), dtype=np.uint8).astype(np.float64) - 48.0


# ----------------------------------------------------------------------------- publishing


def record_path(directory: Union[str, Path], board: str, baseline: str, seed: int) -> Path:
    return Path(directory) / "results" / board / baseline / f"seed-{int(seed)}.json"


def publish_result(result: Dict[str, Any], directory: Union[str, Path], *, force: bool = False,
                   board: Union[str, None] = None, run_dir: Union[str, Path, None] = None,
                   manifest: Union[str, Path, None] = None) -> Path:
    """Write ``result`` as ``<directory>/results/<board>/<baseline>/seed-<seed>.json``.

    ``board`` is the dataset's name unless given (recorded in the copy as ``board``). With
    ``run_dir`` the per-pair scores are added (see :func:`pair_scores`); a record of the
    same seed in the single-file layout is replaced only with ``force``.
    """
    board = check_board(board or result.get("board") or result["dataset"])
    if result.get("subset") or (isinstance(result.get("metrics"), dict) and result["metrics"].get("subset")):
        raise ConfigError(f"{result['baseline']!r} was scored on a subset of the pairs (--score-subset): a subset "
                          "score is not a benchmark number and is never published to a board")
    seed = int(result.get("seed") or 0)
    path = record_path(directory, board, result["baseline"], seed)
    check_output(path, force)
    legacy = Path(directory) / "results" / board / f"{result['baseline']}.json"
    if legacy.is_file():
        old = read_json(legacy, "leaderboard result", ManifestError)
        if int(old.get("seed") or 0) == seed and not force:
            raise OutputExistsError(f"holds seed {seed} of {result['baseline']!r} already; pass --force to replace "
                                    "it", file=legacy)
    rec = {**result, "board": board}
    if run_dir is not None and "per_pair" not in rec:
        pp, why = pair_scores(rec, run_dir, manifest)
        if pp is not None:
            rec["per_pair"] = pp
        else:   # said, and recorded: the tables then say why there is no comparison
            _log.warning("%s seed %s published without per-pair scores: %s", rec["baseline"], seed, why)
            rec["per_pair_unavailable"] = why
    if run_dir is not None and rec.get("task") == "temporal" and "proposals" not in rec:
        pm, why = proposal_scores(rec, run_dir, manifest)
        if pm is not None:
            rec["proposals"] = pm
        else:
            _log.warning("%s seed %s published without the proposal metric: %s", rec["baseline"], seed, why)
    atomic_write_json(path, rec, force=True)
    if legacy.is_file() and int(read_json(legacy, "leaderboard result", ManifestError).get("seed") or 0) == seed:
        legacy.unlink()   # moved into the per-seed layout
    return path


def publish_run(run_dir: Union[str, Path], directory: Union[str, Path], *, force: bool = False,
                board: Union[str, None] = None, manifest: Union[str, Path, None] = None) -> Path:
    """Publish the ``result.json`` of a finished run folder (see :func:`publish_result`)."""
    f = Path(run_dir) / "result.json"
    if not f.is_file():
        raise ManifestError("no result.json here: expected the folder of a finished run-baseline run", file=run_dir)
    rec = read_json(f, "run result", ManifestError)
    for key in ("baseline", "task", "dataset", "metrics"):
        if key not in rec:
            raise ManifestError(f"run result lacks {key!r}", file=f)
    return publish_result(rec, directory, force=force, board=board, run_dir=run_dir, manifest=manifest)


def parse_seeds(text: str) -> List[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct non-negative integers, in the order given)."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip() != ""]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds takes distinct non-negative integers such as 0,1,2; got {text!r}")
    return seeds


def run_seeds(name: str, seeds: Union[str, Sequence[int]], *, out: Union[str, Path, None] = None,
              leaderboard_dir: Union[str, Path, None] = None, board: Optional[str] = None, force: bool = False,
              overrides: Optional[Dict[str, Any]] = None, echo: Callable[[str], None] = lambda s: None,
              **engine_kwargs: Any) -> list:
    """One engine run per seed in ``<out>/seed-<k>`` (``out`` defaults to ``runs/<dataset>/<name>``),
    each published with its per-pair scores when ``leaderboard_dir`` is given. Returns the
    engine's RunResult of every seed."""
    from .engine import run_baseline

    seeds = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
    overrides = dict(overrides or {})
    if overrides.get("seed") is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if board is not None:
        check_board(board)
    dataset = engine_kwargs.get("dataset", "activitynet")
    root = Path(out) if out is not None else Path("runs") / Path(str(dataset)).name / name
    if leaderboard_dir is not None:   # every record can be written: checked before the first run
        for k in seeds:
            check_output(record_path(leaderboard_dir, board or Path(str(dataset)).name, name, k), force)
    done = []
    for k in seeds:
        res = run_baseline(name, out=root / f"seed-{k}", overrides={**overrides, "seed": k}, force=force,
                           **engine_kwargs)
        done.append(res)
        if res.result:
            from .tasks import get_task
            echo(f"seed {k}: headline {100 * get_task(res.result['task']).headline(res.metrics):.1f}, "
                 f"run folder {res.run_dir}")
        if res.result and leaderboard_dir is not None:
            path = publish_result(res.result, leaderboard_dir, force=force, board=board, run_dir=res.run_dir,
                                  manifest=dataset)
            echo(f"seed {k}: published {path}")
    return done


# ----------------------------------------------------------------------------- reading


def load_results(directory: Union[str, Path]) -> Dict[str, List[Dict[str, Any]]]:
    """``{board: [result records]}`` from ``<directory>/results``, by baseline then seed.

    Each record gets ``_file`` (its path relative to ``directory``). Two records of one
    baseline and seed are an error.
    """
    directory = Path(directory)
    root = directory / "results"
    out: Dict[str, List[Dict[str, Any]]] = {}
    if not root.is_dir():
        return out
    for ds in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(ds.glob("*.json"))
        for sub in sorted(p for p in ds.iterdir() if p.is_dir()):
            files += sorted(f for f in sub.glob("*.json") if _SEED_FILE.match(f.name))
        recs, seen = [], {}
        for f in files:
            rec = read_json(f, "leaderboard result", ManifestError)
            for key in ("baseline", "task", "metrics"):
                if key not in rec:
                    raise ManifestError(f"leaderboard result lacks {key!r}", file=f)
            m = _SEED_FILE.match(f.name)
            if m and f.parent.name != rec["baseline"]:
                raise ManifestError(f"record of baseline {rec['baseline']!r} in the folder of {f.parent.name!r}", file=f)
            if m and int(m.group(1)) != int(rec.get("seed") or 0):
                raise ManifestError(f"record of seed {rec.get('seed')} in a file named for seed {m.group(1)}", file=f)
            key = (rec["baseline"], int(rec.get("seed") or 0))
            if key in seen:
                raise ManifestError(f"seed {key[1]} of {key[0]!r} is also in {seen[key]}", file=f)
            seen[key] = f.relative_to(directory).as_posix()
            recs.append({**rec, "_file": seen[key]})
        if recs:
            # in the order of the single-file names (<baseline>.json), then by seed
            recs.sort(key=lambda r: (r["baseline"] + ".json", int(r.get("seed") or 0)))
            out[ds.name] = recs
    return out


def group_runs(recs: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """``{baseline: [records by seed]}`` in the order of ``recs``."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in recs:
        out.setdefault(r["baseline"], []).append(r)
    return out


# ----------------------------------------------------------------------------- statistics


def _std(values: List[float]) -> Optional[float]:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _resampler(runs: List[Dict[str, Any]]):
    """(statistic of pair weights W (draws, n) -> (draws,), kind, pair-id hash, n) of a row, pooled
    over its seeds; None when a seed lacks per-pair scores or the seeds were scored on different pairs.

    ``hits`` (temporal Average): the per-pair scores averaged over seeds, weighted mean over
    pairs. ``pooled-ap`` (spatio-temporal frame-mAP): the mean over seeds of the frame-mAP
    recomputed with the weights.
    """
    pps = [r.get("per_pair") for r in runs]
    if not all(pps) or len({pp["pair_ids_sha256"] for pp in pps}) != 1 or len({pp.get("kind", "hits")
                                                                                 for pp in pps}) != 1:
        return None
    kind, n, h = pps[0].get("kind", "hits"), int(pps[0]["n"]), pps[0]["pair_ids_sha256"]
    if kind == "hits":
        s = np.mean([_decode_pairs(r) / float(r["per_pair"]["levels"]) for r in runs], axis=0)
        return (lambda W: W @ s / n), kind, h, n
    if kind == "pooled-ap":
        decs = [_decode_ap(pp) for pp in pps]
        return (lambda W: np.mean([_weighted_frame_map(d, W) for d in decs], axis=0)), kind, h, n
    raise ManifestError(f"per_pair of {runs[0]['baseline']!r}: unknown kind {kind!r}", file=runs[0].get("_file"))


def board_stats(task, runs_by_name: Dict[str, List[Dict[str, Any]]], reference: Optional[str]) -> Dict[str, Any]:
    """Per baseline: seeds, mean and std of every column over seeds, the pooled 95% interval
    of the headline, and the paired comparison with ``reference`` (see the module docstring)."""
    stats: Dict[str, Any] = {}
    res = {nm: _resampler(runs) for nm, runs in runs_by_name.items()}
    weights: Dict[Tuple[int, int], np.ndarray] = {}

    def draws(n: int, kind: str) -> np.ndarray:
        b = N_BOOTSTRAP_OF.get(kind, N_BOOTSTRAP)
        if (n, b) not in weights:
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            weights[(n, b)] = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        return weights[(n, b)]

    boots: Dict[str, np.ndarray] = {}
    points: Dict[str, float] = {}
    for nm, r in res.items():
        if r is not None:
            fn, kind, _, n = r
            boots[nm] = fn(draws(n, kind))
            points[nm] = float(fn(np.ones((1, n)))[0])
    ref = res.get(reference) if reference else None
    for nm, runs in runs_by_name.items():
        cols = {}
        for path, title in task.columns:
            vals = [metric_value(r["metrics"], path) for r in runs]
            cols[title] = {"mean": float(np.mean(vals)), "std": _std(vals), "values": vals}
        head = [float(task.headline(r["metrics"])) for r in runs]
        st = {"seeds": [int(r.get("seed") or 0) for r in runs], "columns": cols,
              "headline": {"mean": float(np.mean(head)), "std": _std(head), "values": head}, "ci95": None,
              "ci95_source": None, "comparison": None}
        if nm in boots:
            lo, hi = np.percentile(boots[nm], [2.5, 97.5])
            st["ci95"], st["ci95_source"] = [float(lo), float(hi)], "bootstrap over pairs, pooled over seeds"
        elif len(runs) == 1 and runs[0]["metrics"].get("ci95"):
            st["ci95"], st["ci95_source"] = [float(x) for x in runs[0]["metrics"]["ci95"]], "the run's bootstrap"
        if reference and nm != reference and reference in runs_by_name:
            if res[nm] is None or ref is None or res[nm][2] != ref[2] or res[nm][1] != ref[1]:
                why = ("per-pair scores not published for every seed" if res[nm] is None or ref is None
                       else "different test pairs")
                st["comparison"] = {"reference": reference, "available": False, "reason": why}
            else:
                boot = boots[nm] - boots[reference]
                lo, hi = np.percentile(boot, [2.5, 97.5])
                p = min(1.0, 2.0 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
                st["comparison"] = {"reference": reference, "available": True,
                                    "difference": points[nm] - points[reference], "ci95": [float(lo), float(hi)],
                                    "p_value": p, "n_pairs": res[nm][3], "n_bootstrap": int(boot.size),
                                    "significant": bool(lo > 0 or hi < 0)}
        stats[nm] = st
    return stats


def fmt_mean_std(s: Dict[str, Any]) -> str:
    m = f"{100 * s['mean']:.1f}"
    return m if s["std"] is None else f"{m} ± {100 * s['std']:.1f}"


def fmt_ci(ci) -> str:
    return "–" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def fmt_comparison(c: Optional[Dict[str, Any]]) -> str:
    if c is None:
        return "reference"
    if not c["available"]:
        return f"n/a ({c['reason']})"
    p = "p < 0.0001" if c["p_value"] < 1e-4 else f"p {c['p_value']:.4f}"
    txt = f"{100 * c['difference']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}], {p}"
    return txt if c["significant"] else txt + ", not significant"


# ----------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _curve_plot(task, recs, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for nm, runs in group_runs(recs).items():
        curves = [task.curve(r["metrics"]) for r in runs]
        if any(c is None for c in curves):
            continue
        xs, _, xl, yl = curves[0]
        ys = np.mean([c[1] for c in curves], axis=0)
        ax.plot(xs, 100 * ys, marker="o", ms=3, label=nm if len(runs) == 1 else f"{nm} ({len(runs)} seeds)")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"{yl} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _examples_plot(recs) -> bytes:
    """Fig. 4 style: per example pair, the reference window with the ground truth and each
    baseline's top-1 span (its lowest seed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    firsts = [runs[0] for runs in group_runs(recs).values() if runs[0].get("examples")]
    examples = firsts[0]["examples"]
    names = [r["baseline"] for r in firsts]
    by_name = {r["baseline"]: {e["pair_id"]: e for e in r["examples"]} for r in firsts}
    n = len(examples)
    fig, axes = plt.subplots(n, 1, figsize=(7, 0.45 * (len(names) + 1) * n + 0.6), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        w = ex["window_steps"]
        rows = [("ground truth", ex["ground_truth"])] + [(nm, by_name[nm].get(ex["pair_id"], {}).get("prediction"))
                                                         for nm in names]
        for i, (nm, span) in enumerate(rows):
            y = len(rows) - 1 - i
            ax.plot([0, w], [y, y], color="#dddddd", lw=6, solid_capstyle="butt")
            if span:
                ax.plot(span, [y, y], color="#228833" if i == 0 else "#4477aa", lw=6, solid_capstyle="butt")
                ax.text(w * 1.01, y, f"{span[0]}-{span[1]}", va="center", fontsize=6)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r[0] for r in rows][::-1], fontsize=6)
        ax.set_xlim(0, w * 1.12)
        ax.set_title(f"{ex['label']} (query {ex['query_steps']} steps, reference {w} steps)", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


# ----------------------------------------------------------------------------- README


def board_tables(task, recs: List[Dict[str, Any]]) -> List[Tuple[str, List[str], Optional[str]]]:
    """(title, baseline names in row order, reference row) of every table of a board."""
    by_name = group_runs(recs)
    out, listed = [], []
    ref = REFERENCE_ROWS.get(task.name)
    for title, names in task.tables:
        if any(n in by_name for n in names):
            out.append((title, list(names), ref if ref in names else None))
            listed += names
    others = [n for n in by_name if n not in listed]
    if others:
        out.append(("Other baselines", others, ref if ref in by_name else None))
    return out


def _table(task, title: str, names: List[str], runs_by_name, stats, reference) -> List[str]:
    cols = [t for _, t in task.columns]
    head = cols + [f"95% CI ({HEADLINE_COLUMN.get(task.name, 'headline')})", "seeds"]
    if reference:
        head.append(f"vs {reference} (paired, 95% CI)")
    lines = [f"### {title}", "", "| baseline | " + " | ".join(head) + " | parameters |",
             "|---|" + "---|" * (len(head) + 1)]
    for nm in names:
        st = stats.get(nm)
        if st is None:
            lines.append(f"| {nm} | " + " | ".join("–" for _ in head) + " | not run on this board |")
            continue
        vals = [fmt_mean_std(st["columns"][c]) for c in cols]
        vals += [fmt_ci(st["ci95"]), str(len(st["seeds"]))]
        if reference:
            vals.append(fmt_comparison(st["comparison"]) if nm != reference else "reference")
        lines.append(f"| {nm} | " + " | ".join(vals) + f" | {runs_by_name[nm][0].get('parameters', 0):,} |")
    paper = task.paper_rows.get(title)
    if paper:
        pad = " | ".join("" for _ in range(len(head) - len(cols) + 1))
        for nm, vals in paper.items():
            lines.append(f"| *paper: {nm}* | " + " | ".join(f"*{v:.1f}*" for v in vals) + f" | {pad} |")
    lines.append("")
    if reference and reference in stats:
        comps = {nm: stats[nm]["comparison"] for nm in names if nm in stats and nm != reference}
        ns = [nm for nm, c in comps.items() if c and c["available"] and not c["significant"]]
        sig = [nm for nm, c in comps.items() if c and c["available"] and c["significant"]]
        na = [nm for nm, c in comps.items() if c and not c["available"]]
        if sig or ns:
            c0 = next(c for c in comps.values() if c and c["available"])
            txt = (f"Paired bootstrap against `{reference}` over {c0['n_pairs']} test pairs (pooled over seeds, "
                   f"{c0['n_bootstrap']:,} resamples): ")
            txt += ("significant for " + ", ".join(f"`{n}`" for n in sig) if sig else "no difference is significant")
            if ns and sig:
                txt += "; not significant for " + ", ".join(f"`{n}`" for n in ns)
            lines += [txt + ".", ""]
        if na:
            lines += ["No paired comparison for " + ", ".join(f"`{n}`" for n in na)
                      + " (per-pair scores are published with new runs: `relocbench run-baseline NAME --seeds 0,1,2 "
                      "--leaderboard leaderboard`).", ""]
    return lines


def write_leaderboard(directory: Union[str, Path]) -> Path:
    """Regenerate ``<directory>/README.md`` and its figures from the result records."""
    from .tasks import get_task

    directory = Path(directory)
    results = load_results(directory)
    lines = ["# relocbench leaderboard", "",
             "Generated by `relocbench leaderboard` from `results/<board>/<baseline>/seed-<k>.json` (or the "
             "single-seed `results/<board>/<baseline>.json`); do not edit by hand (analysis goes into "
             "`notes/<board>.md`). Numbers are percentages: the mean over seeds (± the standard deviation "
             "when there are several), the bootstrap 95% interval over test pairs, and the paired difference "
             "from the table's full model; differences whose interval holds 0 are marked *not significant*. "
             "`relocbench leaderboard --html DIR` builds the same as a browsable site.", ""]
    if not results:
        lines.append("No results yet: run `relocbench run-baseline NAME --leaderboard leaderboard`.")
    for ds, recs in results.items():
        task = get_task(recs[0]["task"])
        by_name = group_runs(recs)
        lines += [f"## {ds}", ""]
        for title, names, ref in board_tables(task, recs):
            stats = board_stats(task, {n: by_name[n] for n in names if n in by_name}, ref)
            lines += _table(task, title, names, by_name, stats, ref)
        feats = {json.dumps(r.get("features"), sort_keys=True) for r in recs}
        lines += ["Runs: " + "; ".join(
            f"`{r['baseline']}` seed {r.get('seed')}, {r.get('config', {}).get('steps', 0)} steps, "
            f"{r.get('wall_time_s', 0):.0f} s on {r.get('hardware', {}).get('device', '?')}" for r in recs) + ".", ""]
        if len(feats) == 1:
            lines += [f"Features: `{next(iter(feats))}`.", ""]
        fig_dir = directory / "figures"
        curve = _curve_plot(task, recs, f"{ds}: metric against the IoU threshold")
        atomic_write_bytes(fig_dir / f"{ds}-thresholds.png", curve)
        lines += [f"![{ds} thresholds](figures/{ds}-thresholds.png)", ""]
        if any(r.get("examples") for r in recs):
            atomic_write_bytes(fig_dir / f"{ds}-examples.png", _examples_plot(recs))
            lines += [f"![{ds} examples](figures/{ds}-examples.png)", ""]
        notes = directory / "notes" / f"{ds}.md"
        if notes.is_file():
            lines += [notes.read_text(encoding="utf-8").rstrip(), ""]
    out = directory / "README.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
