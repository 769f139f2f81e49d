"""Plain, readable loop implementations of every protocol: what the fast evaluators must equal.

Each follows the behaviour of reference-algorithms.md literally (one prediction at a time),
with relocbench's documented tie rules, and shares no code with ``relocbench.metrics``.
They are slow on purpose; the tests compare them with the fast versions on seeded random
inputs, and ``benchmarks/bench_evaluate.py`` times them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple


def seg_iou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def box_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_ap_from_flags(tp_flags: Sequence[bool], npos: int) -> float:
    """Precision/recall along the ranked flags, then the all-point interpolation loop."""
    if npos == 0:
        return 0.0
    prec, rec = [], []
    tp = fp = 0
    for f in tp_flags:
        if f:
            tp += 1
        else:
            fp += 1
        prec.append(tp / (tp + fp))
        rec.append(tp / npos)
    mprec = [0.0] + prec + [0.0]
    mrec = [0.0] + rec + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mprec[i]
    return ap


# --------------------------------------------------------------------------- ActivityNet


def activitynet_reference(gt_rows, pred_rows, thresholds) -> Dict:
    """``gt_rows``: (video, label, start, end) of one subset in file order; ``pred_rows``:
    (video, label, start, end, score) in file order. Ties: later prediction first; on equal
    tIoU the later ground truth first."""
    classes: List[str] = []
    for _, lab, _, _ in gt_rows:
        if lab not in classes:
            classes.append(lab)
    ap = {c: [] for c in classes}
    for c in classes:
        gts = [(v, s, e) for v, lab, s, e in gt_rows if lab == c]
        preds = [(i, v, s, e, sc) for i, (v, lab, s, e, sc) in enumerate(pred_rows) if lab == c]
        preds.sort(key=lambda p: (-p[4], -p[0]))
        for thr in thresholds:
            taken = [False] * len(gts)
            flags = []
            for _, v, s, e, _ in preds:
                cands = [(seg_iou((s, e), (gs, ge)), j) for j, (gv, gs, ge) in enumerate(gts) if gv == v]
                cands.sort(key=lambda x: (-x[0], -x[1]))
                ok = False
                for iou, j in cands:
                    if iou < thr:
                        break
                    if taken[j]:
                        continue
                    taken[j] = True
                    ok = True
                    break
                flags.append(ok)
            ap[c].append(voc_ap_from_flags(flags, len(gts)))
    mAP = [sum(ap[c][k] for c in classes) / len(classes) for k in range(len(thresholds))]
    return {"mAP": mAP, "average_mAP": sum(mAP) / len(mAP), "per_class": ap}


# --------------------------------------------------------------------------- frame AP (AVA rule)


def frame_ap_reference(dets, gts, thresholds) -> Dict:
    """``dets``: (image, class, score, box, tie); ``gts``: (image, class, box) in row order.
    Per image and class, detections by (-score, tie) take their first best-IoU box, no
    fall-through. Returns {class: [AP per threshold]} for classes with ground truth."""
    npos = defaultdict(int)
    gt_by = defaultdict(list)
    for img, c, box in gts:
        npos[c] += 1
        gt_by[(img, c)].append(box)
    out = {}
    for c in sorted(npos):
        out[c] = []
        for thr in thresholds:
            scored = []  # (score, tie, is_tp)
            by_img = defaultdict(list)
            for d in dets:
                if d[1] == c:
                    by_img[d[0]].append(d)
            for img, ds in by_img.items():
                ds = sorted(ds, key=lambda d: (-d[2], d[4]))
                boxes = gt_by.get((img, c), [])
                taken = [False] * len(boxes)
                for d in ds:
                    best, best_j = -1.0, -1
                    for j, b in enumerate(boxes):
                        iou = box_iou(d[3], b)
                        if iou > best:
                            best, best_j = iou, j
                    ok = best_j >= 0 and best >= thr and not taken[best_j]
                    if ok:
                        taken[best_j] = True
                    scored.append((d[2], d[4], ok))
            scored.sort(key=lambda x: (-x[0], x[1]))
            out[c].append(voc_ap_from_flags([x[2] for x in scored], npos[c]))
    return out


def ava_reference(gt_rows, det_rows, class_ids, exclusions=(), iou=0.5, capacity=50) -> Dict:
    """AVA frame-mAP. ``gt_rows``: (video, ts, x1, y1, x2, y2, action); ``det_rows`` the same
    plus score. Later detection first on equal scores."""
    keep_cls = set(class_ids)
    excl = set(exclusions)
    gt = [r for r in gt_rows if r[6] in keep_cls and (r[0], r[1]) not in excl]
    per_key = defaultdict(list)
    for i, r in enumerate(det_rows):
        if r[6] in keep_cls:
            per_key[(r[0], r[1])].append((i, r))
    gt_keys = {(r[0], r[1]) for r in gt}
    dets = []
    for key, lst in per_key.items():
        lst.sort(key=lambda x: (-x[1][7], -x[0]))
        for i, r in lst[:capacity] if capacity > 0 else lst:
            if key in excl or key not in gt_keys:
                continue
            if not (r[2] < r[4] and r[3] < r[5]):
                continue
            dets.append((key, r[6], r[7], r[2:6], -i))
    res = frame_ap_reference(dets, [((r[0], r[1]), r[6], r[2:6]) for r in gt], [iou])
    aps = {c: res[c][0] for c in res}
    return {"mAP": sum(aps.values()) / len(aps), "per_class": aps}


# --------------------------------------------------------------------------- reloc-temporal


def temporal_reference(pairs, results, *, rule="inclusive", thresholds=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                       average_thresholds=(0.5, 0.6, 0.7, 0.8, 0.9), ks=(1, 5), recall_iou=0.5,
                       ap_thresholds=(0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)) -> Dict:
    """``pairs``: list of (pair_id, label, gt_start, gt_end) in manifest order; ``results``:
    {pair_id: [(start, end, score), ...]} (absent pairs are misses)."""
    def hit(v, t):
        return v > t if rule == "strict" else v >= t

    top1 = []
    recall = {k: 0 for k in ks}
    pooled = []  # (score, pair index, position, tiou, pair index)
    for pi, (pid, _, gs, ge) in enumerate(pairs):
        lst = results.get(pid, [])
        ranked = sorted(range(len(lst)), key=lambda i: -lst[i][2])  # stable: first listed first
        ious = [seg_iou(lst[i][:2], (gs, ge)) for i in ranked]
        top1.append(ious[0] if ious else None)
        for k in ks:
            if any(hit(v, recall_iou) for v in ious[:k]):
                recall[k] += 1
        for pos, i in enumerate(range(len(lst))):
            pooled.append((lst[i][2], pi, pos, seg_iou(lst[i][:2], (gs, ge))))
    n = len(pairs)
    maps = {}
    for t in thresholds:
        maps[t] = sum(1 for v in top1 if v is not None and hit(v, t)) / n
    average = sum(maps[t] for t in average_thresholds) / len(average_thresholds)
    pooled.sort(key=lambda x: (-x[0], x[1], x[2]))
    aps = []
    for t in ap_thresholds:
        found = set()
        flags = []
        for _, pi, _, v in pooled:
            ok = hit(v, t) and pi not in found
            if ok:
                found.add(pi)
            flags.append(ok)
        aps.append(voc_ap_from_flags(flags, n))
    per_class = defaultdict(list)
    for (pid, lab, _, _), v in zip(pairs, top1):
        per_class[lab].append(v)
    pc = {}
    for lab, vs in per_class.items():
        m = [sum(1 for v in vs if v is not None and hit(v, t)) / len(vs) for t in average_thresholds]
        pc[lab] = sum(m) / len(m)
    return {"average": average, "map_at_iou": maps, "recall_at_k": {k: recall[k] / n for k in ks},
            "ap_at_iou": aps, "ap": sum(aps) / len(aps), "per_class_average": pc,
            "top1": top1}


def bootstrap_reference(per_pair: Sequence[float], n_boot: int, seed: int) -> Tuple[float, float]:
    """Naive bootstrap: resample pairs with replacement, percentile interval of the mean."""
    import random

    rng = random.Random(seed)
    n = len(per_pair)
    means = sorted(sum(per_pair[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))

    def pct(q):
        pos = q / 100 * (n_boot - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n_boot - 1)
        return means[lo] + (means[hi] - means[lo]) * (pos - lo)

    return pct(2.5), pct(97.5)


# --------------------------------------------------------------------------- reloc-spatiotemporal


def spatiotemporal_reference(pairs, targets, results, thresholds=(0.3, 0.5, 0.7)) -> Dict:
    """``pairs``: (pair_id, label) in manifest order; ``targets``: (pair_id, time, box);
    ``results``: {pair_id: [(time, box, score), ...]}. Frame-mAP per label (AVA rule)."""
    label_of = {pid: lab for pid, lab in pairs}
    index_of = {pid: i for i, (pid, _) in enumerate(pairs)}
    gts = [((pid, round(t * 1e6)), label_of[pid], box) for pid, t, box in targets]
    dets = []
    for pid, lst in results.items():
        for pos, (t, box, sc) in enumerate(lst):
            dets.append(((pid, round(t * 1e6)), label_of[pid], sc, box, (index_of[pid], pos)))
    per = frame_ap_reference(dets, gts, thresholds)
    frame_map = {t: sum(per[c][k] for c in per) / len(per) for k, t in enumerate(thresholds)}
    return {"frame_map": frame_map, "per_label": per}


# --------------------------------------------------------------------------- ActivityNet proposals


def proposal_tiou(p, g) -> float:
    """tIoU as the official proposal code computes it: two zero-length segments give NaN."""
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = (g[1] - g[0]) + (p[1] - p[0]) - inter
    return inter / union if union != 0 else float("nan")


def activitynet_proposal_reference(gt_rows, prop_rows, thresholds, max_avg_nr_proposals=100.0) -> Dict:
    """``gt_rows``: (video, start, end) of one subset in file order; ``prop_rows``:
    (video, start, end, score) in file order (every proposal read, on any video). The rules
    of the official ``eval_proposal.py`` one video and one curve point at a time; ties:
    the later proposal first."""
    videos: List[str] = []
    gts_of: Dict[str, list] = defaultdict(list)
    for v, s, e in gt_rows:
        if v not in gts_of:
            videos.append(v)
        gts_of[v].append((s, e))
    props_of: Dict[str, list] = defaultdict(list)
    for i, (v, s, e, sc) in enumerate(prop_rows):
        props_of[v].append((sc, i, s, e))
    n_vid, n_prop = len(videos), len(prop_rows)
    if not max_avg_nr_proposals:
        max_avg_nr_proposals = n_prop / n_vid
    ratio = max_avg_nr_proposals * float(n_vid) / n_prop
    tiou_of: Dict[str, List[List[float]]] = {}   # per video: [gt][proposal] in rank order
    total = 0
    for v in videos:
        props = sorted(props_of.get(v, []), key=lambda p: (-p[0], -p[1]))
        if not props:
            tiou_of[v] = [[0.0] for _ in gts_of[v]]
            continue
        nr = min(int(len(props) * ratio), len(props))
        total += nr
        props = props[:nr]
        tiou_of[v] = [[proposal_tiou((s, e), g) for _, _, s, e in props] for g in gts_of[v]]
    pcn = [j / 100.0 * (max_avg_nr_proposals * float(n_vid) / total) for j in range(1, 101)]
    n_gt = sum(len(gts_of[v]) for v in videos)
    recall = []
    for t in thresholds:
        row = []
        for p in pcn:
            matched = 0
            for v in videos:
                m = len(tiou_of[v][0])
                k = min(int(m * p), m)
                for gt_tious in tiou_of[v]:
                    if any(x >= t for x in gt_tious[:k]):
                        matched += 1
            row.append(matched / n_gt)
        recall.append(row)
    avg = [sum(recall[r][j] for r in range(len(thresholds))) / len(thresholds) for j in range(100)]
    an = [p * (float(total) / n_vid) for p in pcn]
    area = 0.0
    for j in range(1, 100):
        area += (an[j] - an[j - 1]) * (avg[j] + avg[j - 1]) / 2.0
    ar_at = {}
    for k in (1, 5, 10, 100):
        val = None
        for j in range(100):
            if abs(an[j] - k) <= 1e-9 * k:
                val = avg[j]
                break
        if val is None and an[0] <= k <= an[-1]:
            j = next(j for j in range(1, 100) if an[j] >= k)
            w = (k - an[j - 1]) / (an[j] - an[j - 1])
            val = avg[j - 1] + w * (avg[j] - avg[j - 1])
        ar_at[str(k)] = val
    return {"recall": recall, "average_recall": avg, "average_nr_proposals": an, "auc": area / an[-1],
            "ar_at_an": ar_at, "n_proposals_kept": total}


def activitynet_proposal_video_loop(gt_rows, prop_rows, thresholds, max_avg_nr_proposals=100.0) -> Dict:
    """The same rules with numpy inside a loop over videos, thresholds and curve points (the
    structure of the official code): the plain loop that ``benchmarks/bench_evaluate.py``
    times at full size, where the pure-Python loop above would take hours."""
    import numpy as np

    videos: List[str] = []
    gts_of: Dict[str, list] = defaultdict(list)
    for v, s, e in gt_rows:
        if v not in gts_of:
            videos.append(v)
        gts_of[v].append((s, e))
    props_of: Dict[str, list] = defaultdict(list)
    for v, s, e, sc in prop_rows:
        props_of[v].append((s, e, sc))
    n_vid, n_prop = len(videos), len(prop_rows)
    if not max_avg_nr_proposals:
        max_avg_nr_proposals = n_prop / n_vid
    ratio = max_avg_nr_proposals * float(n_vid) / n_prop
    scores, total = [], 0
    for v in videos:
        g = np.array(gts_of[v], dtype=np.float64)
        if v not in props_of:
            scores.append(np.zeros((len(g), 1)))
            continue
        p = np.array(props_of[v], dtype=np.float64)
        p = p[np.argsort(p[:, 2], kind="stable")[::-1], :2]
        nr = min(int(p.shape[0] * ratio), p.shape[0])
        total += nr
        p = p[:nr]
        tiou = np.empty((len(g), nr))
        for i in range(nr):
            inter = np.clip(np.minimum(p[i, 1], g[:, 1]) - np.maximum(p[i, 0], g[:, 0]), 0, None)
            with np.errstate(divide="ignore", invalid="ignore"):
                tiou[:, i] = inter / ((g[:, 1] - g[:, 0]) + (p[i, 1] - p[i, 0]) - inter)
        scores.append(tiou)
    pcn = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(n_vid) / total)
    recall = np.empty((len(thresholds), 100))
    n_gt = sum(s.shape[0] for s in scores)
    for r, t in enumerate(thresholds):
        matches = np.zeros(100)
        for s in scores:
            hit = s >= t
            cut = np.minimum((s.shape[1] * pcn).astype(int), s.shape[1])
            for j, k in enumerate(cut):
                matches[j] += np.count_nonzero(hit[:, :k].sum(axis=1))
        recall[r] = matches / n_gt
    avg = recall.mean(axis=0)
    an = pcn * (float(total) / n_vid)
    area = float(np.sum(np.diff(an) * (avg[1:] + avg[:-1]) / 2.0))
    return {"recall": recall, "average_recall": avg, "average_nr_proposals": an, "auc": area / an[-1],
            "n_proposals_kept": total}
