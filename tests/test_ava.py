"""The AVA spatio-temporal builder on AVA-layout CSVs that the tests write (the real CSVs are
not available here), with hand-checked tubelets, windows and targets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relocbench import ConfigError, InputError, OutputExistsError, load_manifest, open_manifest
from relocbench.cli import cli
from relocbench.datasets.ava import (
    AVAConfig,
    build_ava,
    link_tubelets,
    person_keyframes,
    read_ava_csv,
    read_class_split,
    read_label_map,
)
from relocbench.datasets.common import Report

LABEL_MAP = """\
item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "sit"
  id: 11
}
item {
  name: "stand"
  id: 12
}
label {
  name: "walk"
  label_id: 14
  label_type: PERSON_MOVEMENT
}
item {
  name: "talk to (e.g., self, a person, a group)"
  id: 79
}
item {
  name: "watch (a person)"
  id: 80
}
"""


def box(video: str, person: int, t: int) -> Tuple[float, float, float, float]:
    x1 = round(0.05 + 0.1 * person, 3)
    y1 = round(0.01 * (t - 900) + (0.2 if video.endswith("B") else 0.1), 3)
    return x1, y1, round(x1 + 0.3, 3), round(y1 + 0.4, 3)


def rows_of(video: str, person: int, times, actions) -> List[list]:
    out = []
    for t in times:
        for a in actions:
            out.append([video, f"{t:04d}", *box(video, person, t), a, person])
    return out


def val_rows() -> List[list]:
    r = []
    # valA person 1: 12+79 for 902..905, only 12 at 906, 12+79 again at 907..908 (label change mid-run)
    r += rows_of("valA", 1, range(902, 906), [12, 79])
    r += rows_of("valA", 1, [906], [12])
    r += rows_of("valA", 1, [907, 908], [79, 12])
    # valA person 2: 11+80 with a gap at 904
    r += rows_of("valA", 2, [902, 903, 905, 906], [80, 11])
    # valA person 3: action 2 is not in the label map, so 904 is 11+80 too
    r += rows_of("valA", 3, [904], [11, 80, 2])
    r += rows_of("valA", 3, [905], [11, 80])
    # valA person 4: a label in neither split, at 910 (the clip runs to 910)
    r += rows_of("valA", 4, [910], [14])
    # valB person 1: 11+80 for 902..904
    r += rows_of("valB", 1, [902, 903, 904], [11, 80])
    # valB person 5: 12+79 at 902 with a duplicated row
    r += rows_of("valB", 5, [902], [12, 79, 79])
    # valB person 6: zero-area box at 903 (dropped), 12+79 at 904
    r += [["valB", "0903", 0.5, 0.5, 0.5, 0.9, a, 6] for a in (12, 79)]
    r += rows_of("valB", 6, [904], [12, 79])
    return r


def train_rows() -> List[list]:
    r = []
    r += rows_of("trA", 1, [902, 904], [14])
    r += rows_of("trA", 1, [903], [12, 79])  # a val label: frame trA@903 is removed for everyone
    r += rows_of("trA", 2, [902, 903, 904, 905], [14])
    r += rows_of("trB", 1, [910, 911, 912], [1])  # label "1" has one tubelet: dropped
    r += rows_of("trB", 2, [910, 911], [14])
    r += rows_of("trB", 3, [913], [14])  # at an excluded timestamp: dropped
    x1, y1, _, y2 = box("trB", 2, 912)
    r += [["trB", "0912", x1, y1, 1.02, y2, 14, 2]]  # clipped to x2 = 1
    return r


def write_csv(path: Path, rows: List[list]) -> Path:
    path.write_text("".join(",".join(str(x) for x in row) + "\n" for row in rows))
    return path


@pytest.fixture
def ava_files(tmp_path: Path) -> Dict[str, Path]:
    rng = np.random.default_rng(0)
    tr, va = train_rows(), val_rows()
    rng.shuffle(tr)  # row order must not matter
    rng.shuffle(va)
    files = {
        "train": write_csv(tmp_path / "ava_train_v2.2.csv", tr),
        "val": write_csv(tmp_path / "ava_val_v2.2.csv", va),
        "label_map": tmp_path / "labels.pbtxt",
        "split": tmp_path / "split.json",
        "train_ex": write_csv(tmp_path / "train_ex.csv", [["trB", "0913"]]),
        "val_ex": write_csv(tmp_path / "val_ex.csv", [["valA", "0909"]]),
    }
    files["label_map"].write_text(LABEL_MAP)
    files["split"].write_text(json.dumps([[[80, 11]], [[12, 79]]]))  # [test, val]
    return files


def build(files, out: Path, **kw):
    return build_ava(files["train"], files["val"], out, label_map=files["label_map"],
                     class_split=kw.pop("class_split", files["split"]), train_exclusions=files["train_ex"],
                     val_exclusions=files["val_ex"], **kw)


def spans(tub: pd.DataFrame) -> Dict[str, tuple]:
    return {r.tubelet_id: (r.label, r.start, r.end, r.n_keyframes) for r in tub.itertuples()}


# Expected tubelets (label, start, end, n_keyframes), checked by hand against the rows above.
EXPECTED = {
    "test": {
        "valA:2:902": ("11+80", 902, 904, 2), "valA:2:905": ("11+80", 905, 907, 2),
        "valA:3:904": ("11+80", 904, 906, 2), "valB:1:902": ("11+80", 902, 905, 3),
    },
    "val": {
        "valA:1:902": ("12+79", 902, 906, 4), "valA:1:907": ("12+79", 907, 909, 2),
        "valB:5:902": ("12+79", 902, 903, 1), "valB:6:904": ("12+79", 904, 905, 1),
    },
    "train": {
        "trA:1:902": ("14", 902, 903, 1), "trA:1:904": ("14", 904, 905, 1),
        "trA:2:902": ("14", 902, 903, 1), "trA:2:904": ("14", 904, 906, 2),
        "trB:2:910": ("14", 910, 913, 3),
    },
}

# Per reference tubelet: window [ws, we), scored keyframes, target tubelets and box count.
# Default rule: pad = max(length, 3 s) within [first, last + 1) of the clip: valA [902, 911),
# valB [902, 905); 909 is excluded in valA.
WINDOWS = {
    "valA:2:902": (902, 907, [902, 903, 904, 905, 906], ["valA:2:902", "valA:2:905", "valA:3:904"], 6),
    "valA:2:905": (902, 910, [902, 903, 904, 905, 906, 907, 908], ["valA:2:902", "valA:2:905", "valA:3:904"], 6),
    "valA:3:904": (902, 909, [902, 903, 904, 905, 906, 907, 908], ["valA:2:902", "valA:2:905", "valA:3:904"], 6),
    "valB:1:902": (902, 905, [902, 903, 904], ["valB:1:902"], 3),
    "valA:1:902": (902, 910, [902, 903, 904, 905, 906, 907, 908], ["valA:1:902", "valA:1:907"], 6),
    "valA:1:907": (904, 911, [904, 905, 906, 907, 908, 910], ["valA:1:902", "valA:1:907"], 4),
    "valB:5:902": (902, 905, [902, 903, 904], ["valB:5:902", "valB:6:904"], 2),
    "valB:6:904": (902, 905, [902, 903, 904], ["valB:5:902", "valB:6:904"], 2),
}


def test_tubelets_and_report_hand_checked(ava_files, tmp_path):
    res = build(ava_files, tmp_path / "m")
    for split, want in EXPECTED.items():
        got = spans(res.tables[("tubelets", split)])
        assert got == {k: (lab, float(s), float(e), n) for k, (lab, s, e, n) in want.items()}, split
    rep = res.report.to_dict()
    assert rep["validation rows with an action id outside the label map (dropped)"]["count"] == 1
    assert rep["validation duplicate rows (same video, timestamp, person and action; merged)"]["count"] == 1
    assert rep["validation person-keyframes with a zero-area box (dropped)"]["count"] == 1
    assert rep["validation-video tubelets whose label is neither a val nor a test label (not used)"]["count"] == 2
    assert rep["training rows at excluded timestamps (dropped)"]["count"] == 1
    assert rep["training person-keyframes removed (their frame overlaps a val/test label)"]["count"] == 2
    assert rep["training boxes with coordinates outside [0, 1] (clipped)"]["count"] == 1
    assert rep["labels with a single tubelet in split train (dropped)"]["count"] == 1
    boxes = res.tables[("boxes", "train")]
    clipped = boxes[(boxes.tubelet_id == "trB:2:910") & (boxes.time == 912)]
    assert clipped["x2"].tolist() == [1.0]
    b = res.tables[("boxes", "test")]
    assert b[b.tubelet_id == "valA:3:904"][["time", "x1", "y1", "x2", "y2"]].values.tolist() == [
        [904.0, *box("valA", 3, 904)], [905.0, *box("valA", 3, 905)]]


def test_pairs_windows_and_targets(ava_files, tmp_path):
    res = build(ava_files, tmp_path / "m")
    for split in ("val", "test"):
        pairs = res.tables[("pairs", split)]
        targets = res.tables[("targets", split)]
        assert sorted(pairs["query_tubelet_id"]) == sorted(EXPECTED[split])
        for p in pairs.itertuples():
            assert p.pair_id == f"{p.query_tubelet_id}/0"
            assert p.ref_tubelet_id != p.query_tubelet_id
            assert EXPECTED[split][p.ref_tubelet_id][0] == p.label
            ws, we, kf, tids, nbox = WINDOWS[p.ref_tubelet_id]
            assert (p.ref_start, p.ref_end) == (ws, we)
            assert list(p.ref_keyframes) == kf
            assert p.target_tubelet_ids == tids
            t = targets[targets.pair_id == p.pair_id]
            assert len(t) == nbox
            assert set(t["time"]) <= set(kf)
            q = EXPECTED[split][p.query_tubelet_id]
            assert (p.query_start, p.query_end) == (q[1], q[2])


def test_original_context(ava_files, tmp_path):
    res = build(ava_files, tmp_path / "m", config=AVAConfig(context="original"))
    p = res.tables[("pairs", "test")]
    for r in p.itertuples():
        ref = EXPECTED["test"][r.ref_tubelet_id]
        length = ref[2] - ref[1]  # all shorter than 10 s: own length on each side within 900..1800
        assert (r.ref_start, r.ref_end) == (max(900, ref[1] - length), ref[2] + length)
        assert list(r.ref_keyframes) == [t for t in range(int(r.ref_start), int(r.ref_end)) if t != 909 or
                                         r.ref_video != "valA"]


def test_manifest_round_trip_and_determinism(ava_files, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(ava_files, a)
    build(ava_files, b)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert {"STATS.md", "lengths.png", "pairs.png", "manifest.json", "pairs-test.parquet"} <= set(files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    m = open_manifest(a)
    assert m.task == "spatiotemporal" and m.name == "ava"
    assert m.meta["classes"] == {"test": ["11+80"], "val": ["12+79"]}
    assert m.meta["inputs"]["class_split"]["file"] == "split.json"
    pairs = load_manifest(a, split="val", table="pairs")
    assert len(pairs) == 4 and isinstance(pairs["target_tubelet_ids"].iloc[0], list)
    assert len(load_manifest(a, split="train", table="tubelets")) == 5
    stats = (a / "STATS.md").read_text()
    n_targets = sum(WINDOWS[r][4] for r in load_manifest(a, split="test", table="pairs")["ref_tubelet_id"])
    assert f"| test | 4 | 2 | 1 | 4 | {n_targets} |" in stats and "sit + watch (a person)" in stats
    with pytest.raises(OutputExistsError, match="exists already"):
        build(ava_files, a)
    build(ava_files, a, force=True, config=AVAConfig(seed=1))


def test_seed_changes_only_references(ava_files, tmp_path):
    r0 = build(ava_files, tmp_path / "a", config=AVAConfig(seed=0))
    draws = set()
    for seed in range(8):
        r = build(ava_files, tmp_path / f"s{seed}", config=AVAConfig(seed=seed))
        assert r.tables[("tubelets", "val")].equals(r0.tables[("tubelets", "val")])
        draws.add(tuple(r.tables[("pairs", "val")]["ref_tubelet_id"]))
    assert len(draws) > 1


def test_seeded_split(ava_files, tmp_path):
    cfg = AVAConfig(split_seed=3, min_tubelets=2, n_heldout=2)
    res = build(ava_files, tmp_path / "m", class_split=None, config=cfg)
    labs = {s: set(res.tables[("tubelets", s)]["label"]) for s in ("val", "test")}
    # 11+80 and 12+79 are the only labels with more than 2 validation tubelets
    assert labs["val"] | labs["test"] == {"11+80", "12+79"} and not labs["val"] & labs["test"]
    m = open_manifest(tmp_path / "m")
    assert m.meta["params"]["class_split_source"] == "split_seed"
    with pytest.raises(InputError, match="only 0 combined labels have more than 100"):
        build(ava_files, tmp_path / "n", class_split=None, config=AVAConfig(split_seed=3))


def test_conflicting_boxes_name_the_rows(ava_files, tmp_path):
    rows = val_rows() + [["valB", "0902", 0.0, 0.0, 0.5, 0.5, 80, 1]]
    write_csv(ava_files["val"], rows)
    n = len(rows)
    with pytest.raises(InputError, match=rf"video valB: person 1 at timestamp 902 has two different boxes: "
                                         rf"line \d+ has \(0.15, 0.22, 0.45, 0.62\) and line {n} has \(0, 0, 0.5, 0.5\)"):
        build(ava_files, tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("v,0902,0.1,0.1,0.2,0.2,12\n", "expected 8 columns"),
    ("v,0902,0.1,0.1,0.2,0.2,12,1\nv,09x2,0.1,0.1,0.2,0.2,12,1\n", "line 2: column 'time' must be a number"),
    ("v,0902,0.1,0.1,0.2,0.2,12,1\nv,902.5,0.1,0.1,0.2,0.2,12,1\n", "line 2: time must be an integer"),
    ("v,0902,0.1,0.1,0.2,0.2,12,1\nv,0903,0.1,,0.2,0.2,12,1\n", "line 2: column 'y1': expected a finite number, found an empty field or NaN"),
    ("v,0902,0.1,0.1,0.2,0.2,12,1\nv,0903,0.1,0.1,0.2,0.2,12,1,7\n", "malformed CSV"),
])
def test_bad_csv(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_ava_csv(p)


def test_bad_label_map_and_split(tmp_path):
    p = tmp_path / "l.pbtxt"
    p.write_text('item {\n  name: "x"\n}\n')
    with pytest.raises(InputError, match="line 1 lacks a name or an id"):
        read_label_map(p)
    p.write_text("nothing here")
    with pytest.raises(InputError, match="no item"):
        read_label_map(p)
    with pytest.raises(InputError, match="not found"):
        read_label_map(tmp_path / "absent.pbtxt")
    s = tmp_path / "s.json"
    s.write_text(json.dumps([[[1, 2]], [[2, 1]]]))
    with pytest.raises(InputError, match="appears twice"):
        read_class_split(s)
    s.write_text(json.dumps([[[1, 99]], [[2]]]))
    with pytest.raises(InputError, match=r"uses action ids \[99\] that the label map lacks"):
        read_class_split(s, {1: "a", 2: "b"})
    s.write_text(json.dumps({"test": []}))
    with pytest.raises(InputError, match="expected a JSON list"):
        read_class_split(s)


def test_config_errors(ava_files, tmp_path):
    with pytest.raises(ConfigError, match="'context' parameter of AVAConfig must be"):
        build(ava_files, tmp_path / "m", config=AVAConfig(context="wide"))
    with pytest.raises(ConfigError, match="either --class-split or --split-seed"):
        build(ava_files, tmp_path / "m", config=AVAConfig(split_seed=1))
    with pytest.raises(ConfigError, match="pass --class-split"):
        build(ava_files, tmp_path / "m", class_split=None)
    with pytest.raises(InputError, match="appear in both the training and the validation CSV"):
        build_ava(ava_files["val"], ava_files["val"], tmp_path / "m", label_map=ava_files["label_map"],
                  class_split=ava_files["split"])


def plain_tubelets(rows: List[list]) -> Dict[str, tuple]:
    """A readable reference of steps 1-2: dictionaries and loops, no vectorisation."""
    keyframes: Dict[tuple, dict] = {}
    for video, t, x1, y1, x2, y2, action, person in rows:
        k = (str(video), int(person), int(t))
        kf = keyframes.setdefault(k, {"box": (float(x1), float(y1), float(x2), float(y2)), "actions": set()})
        kf["actions"].add(int(action))
    out: Dict[str, tuple] = {}
    current = None
    for (video, person, t) in sorted(keyframes):
        label = "+".join(str(a) for a in sorted(keyframes[(video, person, t)]["actions"]))
        if current and current[0] == video and current[1] == person and current[3] == t - 1 and current[4] == label:
            current[3] = t
            current[5] += 1
        else:
            if current:
                out[f"{current[0]}:{current[1]}:{current[2]}"] = (current[4], current[2], current[3] + 1, current[5])
            current = [video, person, t, t, label, 1]
    if current:
        out[f"{current[0]}:{current[1]}:{current[2]}"] = (current[4], current[2], current[3] + 1, current[5])
    return out


def random_rows(seed: int, n_videos: int = 4, n_persons: int = 5, n_times: int = 30) -> List[list]:
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        for p in range(n_persons):
            for t in range(900, 900 + n_times):
                if rng.random() < 0.2:
                    continue
                acts = rng.choice([1, 11, 12, 79, 80, 100], size=rng.integers(1, 4), replace=False)
                b = np.round(np.sort(rng.random(2)), 3), np.round(np.sort(rng.random(2)), 3)
                x1, x2 = b[0][0], b[0][1] + 0.01
                y1, y2 = b[1][0], b[1][1] + 0.01
                for a in acts:
                    rows.append([f"vid{v}", t, x1, y1, min(x2, 1.0), min(y2, 1.0), int(a), p])
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linking_equals_plain_reference(tmp_path, seed):
    rows = random_rows(seed)
    p = write_csv(tmp_path / "r.csv", rows)
    rec = person_keyframes(read_ava_csv(p), label_ids=None, exclusions=pd.DataFrame({"video": [], "time": []}),
                           report=Report(), role="x")
    tub, boxes = link_tubelets(rec, "train")
    assert spans(tub) == {k: (lab, float(s), float(e), n) for k, (lab, s, e, n) in plain_tubelets(rows).items()}
    assert len(boxes) == int(tub["n_keyframes"].sum())


def test_cli(ava_files, tmp_path):
    out = tmp_path / "m"
    args = ["build-dataset", "ava", "--train-csv", str(ava_files["train"]), "--val-csv", str(ava_files["val"]),
            "--label-map", str(ava_files["label_map"]), "--class-split", str(ava_files["split"]),
            "--train-exclusions", str(ava_files["train_ex"]), "--val-exclusions", str(ava_files["val_ex"]),
            "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "test" in r.output and "Wrote" in r.output and "zero-area box" in r.output
    py = build(ava_files, tmp_path / "py")
    for f in sorted(p.name for p in out.iterdir()):
        assert (out / f).read_bytes() == (py.out / f).read_bytes(), f
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "exists already" in r.output
    r = CliRunner().invoke(cli, args[:-2] + ["--out", str(tmp_path / "x"), "--context", "original", "--seed", "4"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["build-dataset", "ava", "--help"])
    assert r.exit_code == 0 and "relocbench build-dataset ava" in r.output
