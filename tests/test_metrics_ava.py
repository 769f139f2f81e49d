"""ava: the oracles of reference-algorithms.md Sec. 7 and agreement with the loop implementation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relocbench import InputError, PredictionError
from relocbench.metrics import ava_frame_map, read_label_map

from conftest import shared_file
from reference_evaluators import ava_reference

LABELS = [(1, "bend"), (3, "crouch"), (4, "dance"), (5, "fall")]


def write_csv(path, rows):
    path.write_text("".join(",".join(str(x) for x in r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    lm = tmp_path / "labels.pbtxt"
    lm.write_text("".join(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in LABELS))

    def make(gt, det, exclusions=None):
        out = {"ground_truth": write_csv(tmp_path / "gt.csv", gt), "detections": write_csv(tmp_path / "det.csv", det),
               "label_map": lm}
        if exclusions is not None:
            out["exclusions"] = write_csv(tmp_path / "excl.csv", exclusions)
        return out
    return make


def run(f):
    return ava_frame_map(f["ground_truth"], f["detections"], f["label_map"], exclusions=f.get("exclusions"))


BOX = (0.1, 0.1, 0.5, 0.5)


def test_perfect_detections_give_one(files):
    gt = [("vid", 902, *BOX, 1, 0), ("vid", 902, 0.5, 0.5, 0.9, 0.9, 3, 1), ("vid", 903, *BOX, 4, 0)]
    det = [(v, t, x1, y1, x2, y2, a, 0.9) for v, t, x1, y1, x2, y2, a, _ in gt]
    res = run(files(gt, det))
    assert res["mAP"] == 1.0
    assert res["per_class"] == {"bend": 1.0, "crouch": 1.0, "dance": 1.0, "fall": None}
    assert res["n_classes_evaluated"] == 3


def test_no_fall_through(files):
    # Sec. 7 oracle: two ground truths A, B of one class; d1 (.9) and d2 (.8) both overlap A
    # most (IoU .9 and .95), B less (about .65 and .74). d2 picks the taken A and is a false
    # positive although B is free (no fall-through): AP = 0.5.
    from relocbench.metrics import box_iou
    A, B = (0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 0.7)
    d1, d2 = (0.0, 0.0, 0.9, 1.0), (0.0, 0.0, 1.0, 0.95)
    assert box_iou(d1, A) == pytest.approx(0.9) and box_iou(d1, B) == pytest.approx(0.63 / 0.97)
    assert box_iou(d2, A) == pytest.approx(0.95) and box_iou(d2, B) == pytest.approx(0.7 / 0.95)
    gt = [("v", 1, *A, 1), ("v", 1, *B, 1)]
    det = [("v", 1, *d1, 1, 0.9), ("v", 1, *d2, 1, 0.8)]
    assert run(files(gt, det))["mAP"] == pytest.approx(0.5)
    assert ava_reference(gt, det, [1])["mAP"] == pytest.approx(0.5)


def test_iou_exactly_half_matches(files):
    gt = [("v", 1, 0.0, 0.0, 1.0, 1.0, 1)]
    det = [("v", 1, 0.0, 0.0, 0.5, 1.0, 1, 0.9)]
    assert run(files(gt, det))["mAP"] == 1.0


def test_the_51st_detection_has_no_effect(files):
    gt = [("v", 1, *BOX, 1)]
    misses = [("v", 1, 0.6, 0.6, 0.9, 0.9, 1, 0.9 - i / 1000) for i in range(50)]
    hit = ("v", 1, *BOX, 1, 0.1)  # 51st best score on its key: dropped by the cap
    res = run(files(gt, misses + [hit]))
    assert res["mAP"] == 0.0
    assert res["dropped"]["detections beyond 50 per image key"] == 1
    assert run(files(gt, misses[:49] + [hit]))["mAP"] == pytest.approx(1 / 50)


def test_class_outside_the_label_map_changes_nothing(files):
    gt = [("v", 1, *BOX, 1)]
    det = [("v", 1, *BOX, 1, 0.5)]
    base = run(files(gt, det))
    res = run(files(gt + [("v", 1, 0.6, 0.6, 0.9, 0.9, 99)], det + [("v", 1, 0.0, 0.0, 0.2, 0.2, 99, 0.99)]))
    assert res["mAP"] == base["mAP"] == 1.0
    assert res["dropped"]["detection rows with a class outside the label map"] == 1
    assert res["dropped"]["ground-truth rows with a class outside the label map"] == 1


def test_unknown_keys_exclusions_and_invalid_boxes(files):
    gt = [("v", 1, *BOX, 1), ("v", 2, *BOX, 1)]
    det = [("v", 1, *BOX, 1, 0.5), ("other", 1, *BOX, 1, 0.9), ("v", 2, 0.5, 0.1, 0.5, 0.4, 1, 0.95),
           ("v", 3, *BOX, 1, 0.99)]
    res = run(files(gt, det, exclusions=[("v", 2)]))
    assert res["mAP"] == 1.0
    d = res["dropped"]
    assert d["detections on keys absent from the ground truth"] == 2
    assert d["detections on excluded keys"] == 1
    assert d["ground-truth rows on excluded keys"] == 1
    res = run(files(gt, det))
    assert res["dropped"]["detections with x1 >= x2 or y1 >= y2"] == 1
    assert res["mAP"] == pytest.approx(0.5 * 1.0)


def test_csv_errors(files, tmp_path):
    f = files([("v", 1, *BOX, 1)], [("v", 1, *BOX, 1)])
    with pytest.raises(PredictionError, match="expected 8 columns"):
        run(f)
    f = files([("v", 1, *BOX, 1)], [("v", 1, 0.1, 0.1, "x", 0.5, 1, 0.3)])
    with pytest.raises(PredictionError, match="line 1: x2 must be a finite number, found 'x'"):
        run(f)
    f = files([("v", 1.5, *BOX, 1)], [("v", 1, *BOX, 1, 0.3)])
    with pytest.raises(InputError, match="timestamp must be an integer"):
        run(f)
    f = files([("v", 1, *BOX, 99)], [("v", 1, *BOX, 1, 0.3)])
    with pytest.raises(InputError, match="no box of a label-map class"):
        run(f)
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("item { name: 'x' }")
    with pytest.raises(InputError, match="needs a quoted name and an integer id"):
        read_label_map(bad)


@pytest.mark.parametrize("content, message", [
    (b'item {\n  name: "st\xe9nd"\n  id: 1\n}\n', r"labels\.pbtxt: expected UTF-8 text, found the undecodable byte "
                                                 r"0xe9 at line 2"),
    (bytes(range(256)) * 4, r"labels\.pbtxt: expected UTF-8 text, found the undecodable byte 0x80 at line 2"),
    (b'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 99999999999999999999999\n}\n',
     r"labels\.pbtxt: line 7: id must be a 64-bit integer, found one of 23 digits"),
    (b'item {\n  name: "a"\n  id: -9223372036854775809\n}\n', r"labels\.pbtxt: line 3: id must be a 64-bit integer"),
    (b'item {\n  name: "a"\n  id: 2\n}\nitem {\n  name: "b"\n  id: 2\n}\n',
     r"labels\.pbtxt: line 7: class id 2 appears more than once \(first at line 3\)"),
])
def test_label_map_errors_name_the_file_and_line(files, tmp_path, content, message):
    f = files([("v", 1, *BOX, 1)], [("v", 1, *BOX, 1, 0.3)])
    f["label_map"].write_bytes(content)
    with pytest.raises(InputError, match=message):
        run(f)


def test_label_map_ids_at_the_64_bit_limits_are_read(tmp_path):
    p = tmp_path / "lm.pbtxt"
    p.write_text('item { name: "lo" id: -9223372036854775808 }\nitem { name: "hi" id: 9223372036854775807 }\n')
    assert read_label_map(p) == [(-2 ** 63, "lo"), (2 ** 63 - 1, "hi")]


@pytest.mark.parametrize("which, error, row", [
    ("ground_truth", InputError, ("v", 99999999999999999999999, *BOX, 1)),
    ("detections", PredictionError, ("v", 99999999999999999999999, *BOX, 1, 0.3)),
    ("detections", PredictionError, ("v", 1, *BOX, 18446744073709551616, 0.3)),
])
def test_timestamps_and_ids_beyond_64_bits_are_one_line_errors(files, which, error, row):
    gt, det = [("v", 1, *BOX, 1)], [("v", 1, *BOX, 1, 0.3)]
    (gt if which == "ground_truth" else det).append(row)
    f = files(gt, det)
    name = "timestamp" if row[1] != 1 else "action_id"
    with pytest.raises(error, match=rf"{'gt' if which == 'ground_truth' else 'det'}\.csv: line 2: {name} must be a "
                                    r"64-bit integer, found '\d+'"):
        run(f)


def test_exclusion_timestamp_beyond_64_bits(files, tmp_path):
    f = files([("v", 1, *BOX, 1)], [("v", 1, *BOX, 1, 0.3)], exclusions=[("v", 1), ("v", 10 ** 30)])
    with pytest.raises(InputError, match=r"line 2: timestamp must be a 64-bit integer"):
        run(f)


def test_far_apart_timestamps_within_64_bits_score_as_near_ones(files):
    near = run(files([("v", 1, *BOX, 1), ("w", 2, *BOX, 3)], [("v", 1, *BOX, 1, 0.3), ("w", 2, *BOX, 3, 0.2)]))
    far = run(files([("v", -2 ** 62, *BOX, 1), ("w", 2 ** 62, *BOX, 3)],
                    [("v", -2 ** 62, *BOX, 1, 0.3), ("w", 2 ** 62, *BOX, 3, 0.2)]))
    assert far["mAP"] == near["mAP"] == 1.0 and far["n_detections"] == 2


def test_reads_the_real_label_map():
    p = shared_file("ava", "ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    lm = read_label_map(p)
    assert len(lm) == 60
    assert lm[0] == (1, "bend/bow (at the waist)")


def random_ava(seed, n_keys, n_gt, n_det, grid=False):
    rng = np.random.default_rng(seed)
    ids = [1, 3, 4, 5, 7]  # 7 is outside the label map

    def rbox():
        if grid:
            x1, y1 = rng.integers(0, 4, 2) / 8
            return (float(x1), float(y1), float(x1 + rng.integers(1, 4) / 8), float(y1 + rng.integers(1, 4) / 8))
        x1, y1 = rng.uniform(0, 0.6, 2)
        return (float(x1), float(y1), float(x1 + rng.uniform(0.05, 0.4)), float(y1 + rng.uniform(0.05, 0.4)))

    keys = [(f"vid{rng.integers(3)}", int(900 + rng.integers(20))) for _ in range(n_keys)]
    gt = [(*keys[rng.integers(n_keys)], *rbox(), int(rng.choice(ids[:4] if i % 7 else ids))) for i in range(n_gt)]
    scores = rng.permutation(n_det) / max(n_det, 1)
    det = []
    for i in range(n_det):
        r = rng.random()
        if r < 0.4 and gt:
            g = gt[rng.integers(len(gt))]
            jit = 0 if grid else rng.normal(0, 0.03, 4)
            box = tuple(float(x) for x in np.clip(np.array(g[2:6]) + jit, 0, 1))
            det.append((g[0], g[1], *box, g[6] if rng.random() < 0.8 else int(rng.choice(ids))))
        elif r < 0.5:
            det.append((f"vid{rng.integers(5)}", int(900 + rng.integers(25)), *rbox(), int(rng.choice(ids))))
        elif r < 0.55:
            k = keys[rng.integers(n_keys)]
            det.append((*k, 0.5, 0.2, 0.5, 0.6, int(rng.choice(ids))))  # invalid: x1 == x2
        else:
            det.append((*keys[rng.integers(n_keys)], *rbox(), int(rng.choice(ids))))
    det = [d + (float(scores[i]),) for i, d in enumerate(det)]
    excl = [keys[i] for i in range(0, n_keys, 7)]
    return gt, det, excl


@pytest.mark.parametrize("seed,n_keys,n_gt,n_det,grid", [
    (0, 2, 3, 0, False),
    (1, 3, 6, 10, False),
    (2, 10, 30, 200, False),
    (3, 10, 30, 200, True),
    (4, 3, 8, 400, False),     # > 50 detections on most keys
    (5, 40, 150, 1500, False),
    (6, 40, 150, 1500, True),
])
def test_agrees_with_the_loop_implementation(files, seed, n_keys, n_gt, n_det, grid):
    gt, det, excl = random_ava(seed, n_keys, n_gt, n_det, grid)
    res = run(files(gt, det, excl))
    ref = ava_reference(gt, det, [i for i, _ in LABELS], exclusions=excl)
    names = dict(LABELS)
    assert res["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    for cid, ap in ref["per_class"].items():
        assert res["per_class"][names[cid]] == pytest.approx(ap, abs=1e-9)
    assert sum(v is not None for v in res["per_class"].values()) == len(ref["per_class"])


def test_dataframe_input_and_permutation_invariance():
    gt, det, _ = random_ava(9, 20, 80, 600)
    cols = ["video", "timestamp", "x1", "y1", "x2", "y2", "action_id"]
    g = pd.DataFrame(gt, columns=cols)
    d = pd.DataFrame(det, columns=cols + ["score"])
    base = ava_frame_map(g, d, LABELS)
    rng = np.random.default_rng(1)
    again = ava_frame_map(g.iloc[rng.permutation(len(g))].reset_index(drop=True),
                          d.iloc[rng.permutation(len(d))].reset_index(drop=True), LABELS)
    assert again["mAP"] == pytest.approx(base["mAP"], abs=1e-12)
    assert again["per_class"] == pytest.approx(base["per_class"], abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_candidate_pairs_sorted_and_shuffled_keys(seed):
    """Every (detection, ground truth) of equal key, in detection then ground-truth order, whether
    the detection keys come sorted (searched directly) or not (searched in sorted order)."""
    from relocbench.metrics.frame_ap import candidate_pairs

    rng = np.random.default_rng(seed)
    gt_key = rng.integers(0, 8, int(rng.integers(0, 30)))
    for det_key in (np.sort(rng.integers(0, 10, 40)), rng.integers(0, 10, 40), np.zeros(0, np.int64)):
        d, g, cnt = candidate_pairs(det_key, gt_key)
        oracle = [(i, j) for i in range(len(det_key)) for j in range(len(gt_key)) if det_key[i] == gt_key[j]]
        assert list(zip(d.tolist(), g.tolist())) == oracle
        assert cnt.tolist() == [int((gt_key == k).sum()) for k in det_key]


def _frame_case(rng, n, m, n_img, n_cls=3):
    """``n`` detections near ``m`` ground-truth boxes on ``n_img`` images: (det_img, det_cls,
    det_boxes, gt_img, gt_cls, gt_boxes)."""
    x, y = rng.uniform(0, 0.6, (2, m))
    gt_boxes = np.stack([x, y, x + 0.3, y + 0.3], 1)
    src = rng.integers(0, m, n)
    det_boxes = np.clip(gt_boxes[src] + rng.normal(0, 0.05, (n, 4)), 0, 1)
    gt_img, gt_cls = rng.integers(0, n_img, m), rng.integers(0, n_cls, m)
    return gt_img[src], rng.integers(0, n_cls, n), det_boxes, gt_img, gt_cls, gt_boxes


def test_frame_ap_row_order_is_the_default_tie_order():
    """Without ``det_tie`` equal scores are ranked in row order: the same as passing the row numbers."""
    from relocbench.metrics.frame_ap import frame_ap

    rng = np.random.default_rng(3)
    n = 200
    det_img, det_cls, det_boxes, gt_img, gt_cls, gt_boxes = _frame_case(rng, n, 60, 10)
    score = rng.integers(0, 4, n) / 4.0  # many ties
    a = frame_ap(det_img, det_cls, score, det_boxes, gt_img, gt_cls, gt_boxes, 3, [0.3, 0.5])
    b = frame_ap(det_img, det_cls, score, det_boxes, gt_img, gt_cls, gt_boxes, 3, [0.3, 0.5], det_tie=np.arange(n))
    np.testing.assert_array_equal(a["ap"], b["ap"])
    np.testing.assert_array_equal(a["n_tp"], b["n_tp"])


@pytest.mark.parametrize("seed", range(4))
def test_frame_ap_tie_order_equals_rows_in_that_order(seed):
    """``det_tie`` ranks equal scores: the same as listing the detections in (score, tie) order."""
    from relocbench.metrics.frame_ap import frame_ap

    rng = np.random.default_rng(seed)
    n = 300
    det_img, det_cls, det_boxes, gt_img, gt_cls, gt_boxes = _frame_case(rng, n, 80, 12)
    score = rng.integers(0, 3, n) / 2.0 if seed % 2 else rng.random(n)   # many ties, or none
    tie = rng.permutation(n)
    a = frame_ap(det_img, det_cls, score, det_boxes, gt_img, gt_cls, gt_boxes, 3, [0.3, 0.5, 0.7], det_tie=tie)
    o = np.lexsort((tie, -score))
    b = frame_ap(det_img[o], det_cls[o], score[o], det_boxes[o], gt_img, gt_cls, gt_boxes, 3, [0.3, 0.5, 0.7])
    np.testing.assert_array_equal(a["ap"], b["ap"])
    np.testing.assert_array_equal(a["n_tp"], b["n_tp"])
