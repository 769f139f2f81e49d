"""Bad inputs of the dataset builders and of manifest.json: every class gives one line naming
the file, the item and what was expected (relocbench.validate), in Python and, through the
CLI, with exit status 2 and nothing written."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench import validate as V
from relocbench.cli import cli
from relocbench.datasets.activitynet import ActivityNetConfig, build_activitynet
from relocbench.errors import ConfigError, InputError, ManifestError
from relocbench.manifest import load_manifest, open_manifest

# ------------------------------------------------------------------------- the validation layer


@pytest.mark.parametrize("value, match", [
    (float("nan"), "found NaN"), (float("inf"), "found Infinity"), (-float("inf"), "found -Infinity"),
    (10 ** 400, "found an integer of 401 digits"), (True, "found true"), (None, "found null"),
    ("3", "found the string '3'"), ([1], "found a list of 1 item"), ({"a": 1}, r"found an object with 1 key \('a'\)"),
    (np.bool_(False), "found false"),
])
def test_finite_refuses(value, match):
    with pytest.raises(InputError, match=rf"^f.json: x: expected a finite number, {match}$"):
        V.finite(value, file="f.json", item="x")


def test_finite_and_integer_accept_and_bound():
    assert V.finite(np.float32(1.5)) == 1.5 and V.finite(3) == 3.0
    assert V.integer(np.uint8(7), min=0) == 7 and V.integer(12.0, integral_floats=True) == 12
    with pytest.raises(InputError, match=r"expected a finite number > 0, found 0.0$"):
        V.finite(0.0, min=0.0, min_open=True)
    with pytest.raises(InputError, match=r"expected an integer >= 1 and <= 5, found 6$"):
        V.integer(6, min=1, max=5)
    with pytest.raises(InputError, match=r"expected an integer, found 1.5$"):
        V.integer(1.5, integral_floats=True)
    with pytest.raises(InputError, match=r"expected an integer, found the string 'x'$"):
        V.integer("x")
    with pytest.raises(ConfigError, match=r"^the 'seed' parameter of C: expected an integer >= 0, found -1$"):
        V.seed(-1, owner="C")


def test_string_refuses_lone_surrogates_and_empty():
    with pytest.raises(InputError, match=r"expected a non-empty string, found a string with a lone surrogate"):
        V.string("ab\ud800")
    with pytest.raises(InputError, match=r"expected a non-empty string, found the string ''"):
        V.string("")


def test_containers_and_choices():
    assert V.sequence((1, 2), length=2) == [1, 2]
    with pytest.raises(InputError, match=r"^f: x: expected a list, found the string 'ab'$"):
        V.sequence("ab", file="f", item="x")
    with pytest.raises(InputError, match=r"expected an object with the keys 'a', 'b', found an object with 1 key "
                                         r"\('c'\) without them$"):
        V.mapping({"c": 1}, required=("a", "b"))
    assert V.one_of("val", ("val", "test")) == "val"
    with pytest.raises(ManifestError, match=r"expected one of 1, 2, found true$"):
        V.one_of(True, (1, 2), error=ManifestError)


def test_read_text_names_the_undecodable_byte(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"ok\nok\nbad \xff here\n")
    with pytest.raises(InputError, match=r"t.txt: expected UTF-8 text, found the undecodable byte 0xff at line 3 "
                                         r"\(byte offset 10\)$"):
        V.read_text(p)
    p.write_bytes("\ufeffcaf\u00e9".encode("utf-8"))
    assert V.read_text(p) == "caf\u00e9"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_read_pickle_refuses_code_and_corruption(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"a": np.arange(3, dtype=np.uint8), "b": [1, "x"]}, protocol=2))
    doc = V.read_pickle(p)
    assert doc["b"] == [1, "x"] and doc["a"].tolist() == [0, 1, 2]
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(InputError, match=r"x.pkl: expected a pickle, found an unreadable pickle \(UnpicklingError: it "
                                         r"refers to (posix|os|nt)\.system, which is not allowed here\)$"):
        V.read_pickle(p)
    good = pickle.dumps({"db": {"v": {"numf": 3}}}, protocol=2)
    for broken in (good[: len(good) // 2], b"", b"\x80\x02}q\x00(X\xff\xff\xff\xff", b"garbage"):
        p.write_bytes(broken)
        with pytest.raises(InputError, match=r"x.pkl: expected a pickle, found an unreadable pickle \("):
            V.read_pickle(p)


# ------------------------------------------------------------------------- ActivityNet inputs


def _anno(tmp_path, text: str) -> Path:
    p = tmp_path / "anno.json"
    p.write_text(text)
    return p


_ANET_CASES = [
    ('{"v_a": {"duration_second": NaN, "annotations": []}}',
     r"video 'v_a' 'duration_second': expected a finite number of seconds, found NaN$"),
    ('{"v_a": {"duration_second": Infinity, "annotations": []}}',
     r"video 'v_a' 'duration_second': expected a finite number of seconds, found Infinity$"),
    ('{"v_a": {"duration_second": 1' + "0" * 400 + ', "annotations": []}}',
     r"(video 'v_a' 'duration_second': expected a finite number of seconds, found an integer of 401 digits$"
     r"|expected a number that fits a float .*401 digits)"),
    ('{"v_a": {"duration_second": "12", "annotations": []}}', r"found the string '12'$"),
    ('{"v_a": {"duration_second": 12, "annotations": [{"segment": [1, NaN], "label": "A"}]}}',
     r"video 'v_a' annotation 0 'segment': expected a finite number of seconds, found NaN$"),
    ('{"v_a": {"duration_second": 12, "annotations": [{"segment": [-Infinity, 2], "label": "A"}]}}',
     r"'segment': expected a finite number of seconds, found -Infinity$"),
    ('{"v_a": {"duration_second": 12, "annotations": [{"segment": "1-2", "label": "A"}]}}',
     r"'segment': expected a list \[start, end\] of two numbers, found the string '1-2'$"),
    ('{"v_a": {"duration_second": 12, "annotations": [{"segment": [1, 2], "label": null}]}}',
     r"video 'v_a' annotation 0 'label': expected a class name \(a non-empty string\), found null$"),
    ('{"v_a": {"duration_second": 12, "annotations": [{"segment": [1, 2], "label": ["A"]}]}}',
     r"'label': expected a class name \(a non-empty string\), found a list of 1 item$"),
    ('{"v_a": {"duration_second": 12, "annotations": 5}}',
     r"video 'v_a' 'annotations': expected a list of annotations, found 5$"),
    ('{"v_a": {"duration_second": 12, "annotations": [5]}}',
     r"video 'v_a' annotation 0: expected an object \{'segment': \[start, end\], 'label': name\}, found 5$"),
    ('{"v_a": {"duration_second": 12, "subset": ["training"], "annotations": []}}',
     r"video 'v_a' 'subset': expected a subset name \(a string\) or null, found a list of 1 item$"),
    ('{"v_a": [12]}', r"video 'v_a': expected an object with 'duration_second' and 'annotations', found a list"),
    ('[1, 2]', r"anno.json: expected a JSON object of videos .*, found a list of 2 items$"),
    ('{"database": [], "taxonomy": []}', r"'database': expected an object of videos, found a list of 0 items$"),
    ('{"database": {}, "taxonomy": 5}', r"'taxonomy': expected a list of taxonomy nodes, found 5$"),
    ('{"database": {}, "taxonomy": [{"nodeId": [1], "nodeName": "A"}]}',
     r"taxonomy node 0 'nodeId': expected an integer, a string or null, found a list of 1 item$"),
]


@pytest.mark.parametrize("text, match", _ANET_CASES)
def test_activitynet_annotations(tmp_path, text, match):
    p = _anno(tmp_path, text)
    with pytest.raises(InputError, match=rf"^{tmp_path}/anno.json: .*{match}" if not match.startswith("anno")
                       else rf"^{tmp_path}/{match}"):
        build_activitynet(p, tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("entry, match", [
    ('{"n_frames": "x", "n_feat": 3}', r"video 'a' 'n_frames': expected an integer >= 1 and <= \d+, found the string 'x'$"),
    ('{"n_frames": NaN, "n_feat": 3}', r"'n_frames': expected an integer >= 1 and <= \d+, found NaN$"),
    ('{"n_frames": 1e400, "n_feat": 3}', r"'n_frames': expected an integer >= 1 and <= \d+, found Infinity$"),
    ('{"n_frames": 1' + "0" * 30 + ', "n_feat": 3}',
     r"'n_frames': expected an integer >= 1 and <= \d+, found (1e\+30|an integer of 31 digits)$"),
    ('{"n_frames": 160.5, "n_feat": 3}', r"'n_frames': expected an integer >= 1 and <= \d+, found 160.5$"),
    ('{"n_frames": 0, "n_feat": 3}', r"'n_frames': expected an integer >= 1 and <= \d+, found 0$"),
    ('{"n_frames": 160, "n_feat": -1}', r"'n_feat': expected an integer >= 0 and <= \d+, found -1$"),
    ('{"n_frames": 160}', r"video 'a': expected an object \{'n_frames': int, 'n_feat': int\} with the key 'n_feat'"),
    ('[160, 10]', r"video 'a': expected an object \{'n_frames': int, 'n_feat': int\}, found a list of 2 items$"),
])
def test_activitynet_lengths(tmp_path, entry, match):
    p = _anno(tmp_path, '{"v_a": {"duration_second": 10, "annotations": [{"segment": [1, 2], "label": "A"}]}}')
    lens = tmp_path / "len.json"
    lens.write_text('{"a": %s}' % entry)
    with pytest.raises(InputError, match=rf"^{lens}: .*{match}"):
        build_activitynet(p, tmp_path / "m", lengths=lens)


@pytest.mark.parametrize("doc, match", [
    ('{"train": "A", "val": [], "test": []}', r"'train': expected a list of class names, found the string 'A'$"),
    ('{"train": [1], "val": [], "test": []}', r"'train' entry 0: expected a class name \(a non-empty string\), found 1$"),
    ('{"train": [], "val": []}', r"expected a JSON object with exactly the keys \['train', 'val', 'test'\], found an "
                                 r"object with the keys \['train', 'val'\]$"),
    ('[["A"], [], []]', r"expected a JSON object with exactly the keys .*, found a list of 3 items$"),
])
def test_activitynet_class_split_json(tmp_path, doc, match):
    p = _anno(tmp_path, '{"v_a": {"duration_second": 10, "annotations": [{"segment": [1, 2], "label": "A"}]}}')
    split = tmp_path / "split.json"
    split.write_text(doc)
    with pytest.raises(InputError, match=rf"^{split}: {match}"):
        build_activitynet(p, tmp_path / "m", class_split=split)


def test_activitynet_non_utf8_class_split(tmp_path):
    p = _anno(tmp_path, '{"v_a": {"duration_second": 10, "annotations": [{"segment": [1, 2], "label": "A"}]}}')
    split = tmp_path / "split.json"
    split.write_bytes(b'{"train": ["\xff"], "val": [], "test": []}')
    with pytest.raises(InputError, match=rf"^{split}: .*UTF-8"):
        build_activitynet(p, tmp_path / "m", class_split=split)


def test_null_label_is_blamed_on_the_annotations_not_the_class_split(tmp_path):
    from conftest import shared_file

    perm = shared_file("activitynet", "class_perm.npy")
    p = _anno(tmp_path, '{"v_a": {"duration_second": 10, "annotations": [{"segment": [1, 2], "label": null}]}}')
    with pytest.raises(InputError, match=rf"^{p}: video 'v_a' annotation 0 'label': .*found null$"):
        build_activitynet(p, tmp_path / "m", class_split=perm)


def test_strict_names_the_lengths_file(tiny_activitynet, tmp_path):
    lens = json.loads(tiny_activitynet["lengths"].read_text())
    del lens["vid1"]
    p = tmp_path / "partial.json"
    p.write_text(json.dumps(lens))
    with pytest.raises(InputError, match=rf"^{p}: has no entry for video 'vid1' of the annotation file \(--strict"):
        build_activitynet(tiny_activitynet["annotations"], tmp_path / "m", lengths=p,
                          class_split=tiny_activitynet["class_split"], config=ActivityNetConfig(strict=True))


def test_huge_duration_without_lengths_is_blamed_on_the_annotations(tmp_path):
    p = _anno(tmp_path, '{"v_a": {"duration_second": 1e300, "annotations": [{"segment": [1, 2], "label": "A"}]}}')
    with pytest.raises(InputError, match=rf"^{p}: video 'a': expected a duration of at most \d+ frames at 30 fps"):
        build_activitynet(p, tmp_path / "m")


@pytest.mark.parametrize("field, value, match", [
    ("seed", -1, r"the 'seed' parameter of ActivityNetConfig: expected an integer >= 0, found -1$"),
    ("split_seed", -5, r"the 'split_seed' parameter of ActivityNetConfig: expected an integer >= 0, found -5$"),
    ("fps", float("inf"), r"the 'fps' parameter of ActivityNetConfig: expected a finite number > 0, found Infinity$"),
    ("pairs_per_query", 1.5, r"the 'pairs_per_query' parameter .*: expected an integer >= 1, found 1.5$"),
])
def test_activitynet_config(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ActivityNetConfig(**{field: value}).validate()


# ------------------------------------------------------------------------- UCF101-24 inputs


def _ucf_doc():
    boxes = np.tile(np.asarray((32, 24, 64, 48), np.uint16), (10, 1))
    return {"classes": ["A", "B"], "db": {
        "A/v_A_g01_c01": {"numf": np.uint8(30), "annotations": [{"label": 0, "sf": 0, "ef": 10, "boxes": boxes}]},
    }}


def _mut(path, value):
    def apply(doc):
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return doc
    return apply


_V = ("db", "A/v_A_g01_c01")
_T = (*_V, "annotations", 0)


@pytest.mark.parametrize("mutate, match", [
    (_mut(("db",), [1]), r"'db': expected a dictionary of videos .*, found a list of 1 item$"),
    (_mut(("classes",), 5), r"'classes': expected a list of class names, found 5$"),
    (_mut(("classes",), ["A", 3]), r"'classes' entry 1: expected a class name \(a non-empty string\), found 3$"),
    (_mut((*_V, "annotations"), 5), r"video A/v_A_g01_c01 'annotations': expected a list of tubes, found 5$"),
    (_mut((*_V, "numf"), "x"), r"video A/v_A_g01_c01 'numf': expected a frame count \(an integer\) >= 0 and <= \d+, "
                               r"found the string 'x'$"),
    (_mut((*_V, "numf"), float("nan")), r"'numf': expected a frame count .*, found NaN$"),
    (_mut(_V, [30]), r"video A/v_A_g01_c01: expected a dictionary with 'numf' and 'annotations', found a list"),
    (_mut((*_T, "label"), [0]), r"video A/v_A_g01_c01 tube 0 'label': expected a class index \(an integer\) >= 0 "
                                r"and <= \d+, found a list of 1 item$"),
    (_mut((*_T, "sf"), 1.5), r"tube 0 'sf': expected a frame index \(an integer\) .*, found 1.5$"),
    (_mut((*_T, "ef"), 10 ** 30), r"tube 0 'ef': expected a frame index \(an integer\) .*, found an integer of 31 digits$"),
    (_mut((*_T, "boxes"), "x"), r"tube 0 'boxes': expected an \(n, 4\) array of x, y, w, h boxes, found the string 'x'$"),
    (_mut((*_T, "boxes"), np.full((10, 4), np.nan)), r"tube 0 'boxes': expected finite box coordinates, found NaN$"),
    (_mut((*_T,), 7), r"video A/v_A_g01_c01 tube 0: expected a dictionary with 'label', 'sf', 'ef' and 'boxes', found 7$"),
])
def test_ucf24_pickle_types(tmp_path, mutate, match):
    from relocbench.datasets.ucf24 import read_annotations

    p = tmp_path / "ann.pkl"
    p.write_bytes(pickle.dumps(mutate(_ucf_doc()), protocol=2))
    with pytest.raises(InputError, match=rf"^{p}: (video A/v_A_g01_c01 )?{match}"):
        read_annotations(p)


def test_ucf24_corrupted_pickle_and_texts(tmp_path):
    from relocbench.datasets.ucf24 import UCF24Config, class_split, read_annotations, read_test_list

    good = pickle.dumps(_ucf_doc(), protocol=2)
    p = tmp_path / "ann.pkl"
    p.write_bytes(good[:-40])
    with pytest.raises(InputError, match=rf"^{p}: expected a UCF101-24 annotation pickle, found an unreadable pickle"):
        read_annotations(p)
    t = tmp_path / "testlist01.txt"
    t.write_bytes(b"A/v_A_g01_c01.avi\nB/v_\xe9.avi\n")
    with pytest.raises(InputError, match=rf"^{t}: expected UTF-8 text, found the undecodable byte 0xe9 at line 2"):
        read_test_list(t)
    s = tmp_path / "split.json"
    s.write_text('{"train": "A", "val": [], "test": []}')
    with pytest.raises(InputError, match=rf"^{s}: 'train': expected a list of class names, found the string 'A'$"):
        class_split(["A", "B"], UCF24Config(), s)
    with pytest.raises(ConfigError, match=r"the 'split_seed' parameter of UCF24Config: expected an integer >= 0"):
        UCF24Config(split_seed=-1).validate()


# ------------------------------------------------------------------------- AVA inputs


def test_ava_label_map_csv_and_split(tmp_path):
    from relocbench.datasets.ava import AVAConfig, read_ava_csv, read_class_split, read_exclusions, read_label_map

    lm = tmp_path / "map.pbtxt"
    lm.write_bytes(b'item {\n  name: "caf\xe9"\n  id: 1\n}\n')
    with pytest.raises(InputError, match=rf"^{lm}: expected UTF-8 text, found the undecodable byte 0xe9 at line 2"):
        read_label_map(lm)
    lm.write_text('item {\n  name: "x"\n  id: ' + "9" * 5000 + "\n}\n")
    with pytest.raises(InputError, match=rf"^{lm}: action id at line 1: expected an integer in 1..128, found an "
                                         r"integer of 5000 digits$"):
        read_label_map(lm)
    for token in ("1e400", "NaN", "-3", "2.5"):
        lm.write_text('item {\n  name: "x"\n  id: ' + token + "\n}\n")
        with pytest.raises(InputError, match=rf"^{lm}: action id at line 1: expected an integer in 1..128, found "
                                             rf"'{token}'$"):
            read_label_map(lm)
    csv = tmp_path / "a.csv"
    csv.write_bytes(b"v,0902,0.1,0.1,0.2,0.2,12,1\n\xff,0903,0.1,0.1,0.2,0.2,12,1\n")
    with pytest.raises(InputError, match=rf"^{csv}: expected UTF-8 text, found the undecodable byte 0xff at line 2"):
        read_ava_csv(csv)
    csv.write_text("v,0902,0.1,0.1,0.2,0.2,12,1\nv,0903,inf,0.1,0.2,0.2,12,1\n")
    with pytest.raises(InputError, match=rf"^{csv}: line 2: column 'x1': expected a finite number, found Infinity$"):
        read_ava_csv(csv)
    csv.write_text("v,0902,0.1,0.1,0.2,0.2,12,1\nv,1" + "0" * 30 + ",0.1,0.1,0.2,0.2,12,1\n")
    with pytest.raises(InputError, match=rf"^{csv}: line 2: column 'time': expected an integer in 0..\d+, found 1e"):
        read_ava_csv(csv)
    ex = tmp_path / "ex.csv"
    ex.write_text("v,0902\nv,inf\n")
    with pytest.raises(InputError, match=rf"^{ex}: line 2: expected a timestamp in whole seconds .*, found Infinity$"):
        read_exclusions(ex)
    s = tmp_path / "split.json"
    s.write_text('[[["11"]], [[12]]]')
    with pytest.raises(InputError, match=rf"^{s}: test label #0: expected action ids, integers >= 1 and <= 128, found "
                                         r"the string '11'$"):
        read_class_split(s)
    s.write_text('[[[1' + "0" * 40 + ']], [[12]]]')
    with pytest.raises(InputError, match=rf"^{s}: test label #0: expected action ids, .*found (an integer of 41 digits|1e\+40)$"):
        read_class_split(s)
    s.write_text('[[[NaN]], [[12]]]')
    with pytest.raises(InputError, match=rf"^{s}: test label #0: expected action ids, .*found NaN$"):
        read_class_split(s)
    s.write_text('[5, [[12]]]')
    with pytest.raises(InputError, match=rf"^{s}: expected a JSON list \[test, val\]"):
        read_class_split(s)
    with pytest.raises(ConfigError, match=r"the 'seed' parameter of AVAConfig: expected an integer >= 0, found -2$"):
        AVAConfig(seed=-2).validate()


# ------------------------------------------------------------------------- manifest.json


def _broken_manifest(small_manifest, tmp_path, edit) -> Path:
    d = tmp_path / "broken"
    shutil.copytree(small_manifest, d)
    meta = json.loads((d / "manifest.json").read_text())
    edit(meta)
    (d / "manifest.json").write_text(json.dumps(meta))
    return d


def _set(key, value):
    def edit(meta):
        meta["tables"]["pairs-test.parquet"][key] = value
    return edit


def _drop(key):
    def edit(meta):
        del meta["tables"]["pairs-test.parquet"][key]
    return edit


_T_ITEM = r"tables\['pairs-test.parquet'\]"
_MANIFEST_CASES = [
    (_set("sha256", None), rf"{_T_ITEM} sha256: expected a sha256 \(64 lowercase hexadecimal digits\), found null$"),
    (_set("sha256", 12), rf"{_T_ITEM} sha256: expected a sha256 .*, found 12$"),
    (_drop("sha256"), rf"{_T_ITEM}: lacks the key 'sha256'$"),
    (_set("rows", "948"), rf"{_T_ITEM} rows: expected a row count \(an integer\) >= 0, found the string '948'$"),
    (_set("rows", -1), rf"{_T_ITEM} rows: expected a row count \(an integer\) >= 0, found -1$"),
    (_drop("rows"), rf"{_T_ITEM}: lacks the key 'rows'$"),
    (_set("split", ["test"]), rf"{_T_ITEM} split: expected a split name \(a string\) or null, found a list of 1 item$"),
    (lambda m: m.update(tables=[]), r"tables: expected an object \{file name: \{table, split, rows, sha256\}\}, "
                                    r"found a list of 0 items$"),
    (lambda m: m.update(tables=None), r"tables: expected an object .*, found null$"),
    (lambda m: m.update(schema_version="1"), r"schema_version: expected 1 .*, found the string '1'$"),
    (lambda m: m.update(task=5), r"task: expected one of temporal, spatiotemporal, found 5$"),
    (lambda m: m["tables"].update({"../x.parquet": m["tables"]["pairs-test.parquet"]}),
     r"tables\['../x.parquet'\]: expected a plain file name inside the manifest folder, found a path$"),
]


@pytest.mark.parametrize("edit, match", _MANIFEST_CASES)
def test_broken_manifest_json(small_manifest, tmp_path, edit, match):
    d = _broken_manifest(small_manifest, tmp_path, edit)
    with pytest.raises(ManifestError, match=rf"^{d}/manifest.json: {match}"):
        load_manifest(d, split="test", table="pairs")


@pytest.mark.parametrize("edit, match", [_MANIFEST_CASES[0], _MANIFEST_CASES[3], _MANIFEST_CASES[7]])
def test_broken_manifest_json_through_evaluate(small_manifest, tmp_path, edit, match):
    d = _broken_manifest(small_manifest, tmp_path, edit)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"version": "relocbench/1", "task": "temporal", "manifest": "small", "split": "test",
                                "unit": "step", "results": {}}))
    res = CliRunner().invoke(cli, ["evaluate", str(pred), "--manifest", str(d), "--split", "test"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    last = res.output.strip().splitlines()[-1]
    import re

    assert re.match(rf"^Error: {d}/manifest.json: {match}", last), last


def test_rows_mismatch_message_shows_two_numbers(small_manifest, tmp_path):
    d = _broken_manifest(small_manifest, tmp_path, _set("rows", 948))
    n = len(open_manifest(small_manifest).table("pairs", "test"))
    with pytest.raises(ManifestError, match=rf"pairs-test.parquet: holds {n} rows, manifest.json says 948$"):
        load_manifest(d, split="test", table="pairs")


# ------------------------------------------------------------------------- the CLI path


def _anet_args(t, out, *extra):
    return ["build-dataset", "activitynet", "--annotations", str(t["annotations"]), "--lengths", str(t["lengths"]),
            "--class-split", str(t["class_split"]), "--out", str(out), *extra]


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.output
    return errors[0]


@pytest.mark.parametrize("text, match", [_ANET_CASES[1], _ANET_CASES[7], _ANET_CASES[9], _ANET_CASES[11]])
def test_cli_activitynet_bad_annotations_exit_2(tmp_path, text, match):
    p = _anno(tmp_path, text)
    line = _one_error_line(CliRunner().invoke(cli, ["build-dataset", "activitynet", "--annotations", str(p),
                                                    "--out", str(tmp_path / "m")]))
    import re

    assert re.match(rf"^Error: {p}: .*{match}", line), line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command, option", [
    ("activitynet", "--seed"), ("activitynet", "--split-seed"), ("ucf24", "--seed"), ("ucf24", "--split-seed"),
    ("ava", "--seed"), ("ava", "--split-seed"),
])
def test_cli_negative_seeds_exit_2(tmp_path, command, option):
    res = CliRunner().invoke(cli, ["build-dataset", command, option, "-1", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"Invalid value for '{option}': -1 is not in the range x>=0" in res.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_cli_fifo_input_exit_2(tiny_activitynet, tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    t = {**tiny_activitynet, "lengths": fifo}
    line = _one_error_line(CliRunner().invoke(cli, _anet_args(t, tmp_path / "m")))
    assert line == f"Error: {fifo}: expected a regular file (lengths file), found a FIFO (named pipe)"


def test_cli_unwritable_out_and_export_checked_first(tiny_activitynet, tmp_path, monkeypatch):
    import relocbench.datasets.activitynet as anet

    def never(*a, **k):
        raise AssertionError("the build started before the outputs were checked")

    monkeypatch.setattr(anet, "read_annotations", never)
    (tmp_path / "afile").write_text("x")
    line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "afile" / "m")))
    assert line == f"Error: {tmp_path}/afile/m: cannot be created: {tmp_path}/afile is a file, not a folder"
    line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m", "--export",
                                                              "video-reloc-json", str(tmp_path / "afile" / "j"))))
    assert line.startswith(f"Error: {tmp_path}/afile/j: cannot be created")
    if Path("/proc/self").is_dir():
        line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m", "--export",
                                                                  "video-reloc-json", "/proc/relocbench-json")))
        assert line == "Error: /proc/relocbench-json: cannot be written: creating an entry in /proc fails " \
                       "(No such file or directory)"
        line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, "/proc/relocbench-m")))
        assert line.startswith("Error: /proc/relocbench-m: cannot be written")
    line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m", "--export",
                                                              "video-reloc-json", str(tmp_path / "m" / "json"))))
    assert line.endswith("expected two separate folders, found one inside the other")
    assert not (tmp_path / "m").exists()


def test_failed_export_leaves_no_manifest(tiny_activitynet, tmp_path, monkeypatch):
    import relocbench.datasets.activitynet as anet

    def broken(folder, tables, node_ids):
        (folder / "train.json").write_text("[]")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(anet, "_write_video_reloc_json", broken)
    with pytest.raises(OSError, match="No space left"):
        build_activitynet(tiny_activitynet["annotations"], tmp_path / "m", lengths=tiny_activitynet["lengths"],
                          class_split=tiny_activitynet["class_split"], export=tmp_path / "j")
    assert not (tmp_path / "m").exists() and not (tmp_path / "j").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_manifest_that_cannot_be_committed_takes_its_export_away(tiny_activitynet, tmp_path, monkeypatch):
    import relocbench.datasets.activitynet as anet

    real = anet._write_video_reloc_json

    def then_someone_writes_out(folder, tables, node_ids):
        real(folder, tables, node_ids)
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "theirs").write_text("x")

    monkeypatch.setattr(anet, "_write_video_reloc_json", then_someone_writes_out)
    res = CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m", "--export", "video-reloc-json",
                                             str(tmp_path / "j")))
    line = _one_error_line(res)
    assert line == (f"Error: {tmp_path}/m: appeared while this command was running (another process wrote it?); it "
                    "was left as it is and nothing was written; pass --force to overwrite it")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["theirs"]
    assert not (tmp_path / "j").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_builds_of_one_out_the_later_fails(tiny_activitynet, tmp_path, monkeypatch):
    """A second build of the same --out that finishes while the first runs: the first one
    fails at its final step and the finished manifest is left as it is."""
    import relocbench.datasets.activitynet as anet

    real = anet.histogram_png
    calls = []

    def with_a_concurrent_build(*a, **k):
        real(*a, **k)
        if not calls:
            calls.append(1)
            res = CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m", "--seed", "3"))
            assert res.exit_code == 0, res.output

    monkeypatch.setattr(anet, "histogram_png", with_a_concurrent_build)
    line = _one_error_line(CliRunner().invoke(cli, _anet_args(tiny_activitynet, tmp_path / "m")))
    assert "m: appeared while this command was running" in line
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_ava_progress_line_ends_before_the_error(tmp_path):
    """The progress report ends its line before the error, on success or failure."""
    lm = tmp_path / "map.pbtxt"
    lm.write_text('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 2\n}\n')
    val = tmp_path / "val.csv"
    val.write_text("w,0902,0.1,0.1,0.2,0.2,1,1\nw,0903,0.1,0.1,0.2,0.2,1,1\n")
    train = tmp_path / "train.csv"
    train.write_text("v,0902,0.1,0.1,0.2,0.2,1,1\nv,0902,0.1,0.1,0.3,0.2,2,1\n")  # two boxes for one person
    split = tmp_path / "split.json"
    split.write_text("[[[1]], [[2]]]")
    res = CliRunner().invoke(cli, ["build-dataset", "ava", "--train-csv", str(train), "--val-csv", str(val),
                                   "--label-map", str(lm), "--class-split", str(split), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2, res.output
    lines = res.output.splitlines()
    assert lines[-1].startswith(f"Error: {train}: video v: person 1 at timestamp 902 has two different boxes")
    assert all(ln.startswith("ava: ") for ln in lines[:-1]) and "stopped after" in lines[-2], res.output


@pytest.mark.parametrize("args", [
    ["ucf24", "--annotations", "missing.pkl"],
    ["ava", "--train-csv", "t.csv", "--val-csv", "v.csv", "--label-map", "m.pbtxt", "--split-seed", "0"],
])
def test_cli_spatiotemporal_out_under_a_file_checked_first(tmp_path, args):
    """The output is checked before any input is read (the inputs here do not even exist)."""
    (tmp_path / "afile").write_text("x")
    line = _one_error_line(CliRunner().invoke(cli, ["build-dataset", *args, "--out", str(tmp_path / "afile" / "m")]))
    assert line == f"Error: {tmp_path}/afile/m: cannot be created: {tmp_path}/afile is a file, not a folder"


def _ucf_cli(tmp_path, data: bytes):
    p = tmp_path / "ann.pkl"
    p.write_bytes(data)
    return ["ucf24", "--annotations", str(p)], p


def _ava_cli(tmp_path, label_map: bytes, val_csv: str = "w,0902,0.1,0.1,0.2,0.2,1,1\n"):
    lm, val, train = tmp_path / "map.pbtxt", tmp_path / "val.csv", tmp_path / "train.csv"
    lm.write_bytes(label_map)
    val.write_text(val_csv)
    train.write_text("v,0902,0.1,0.1,0.2,0.2,1,1\n")
    return ["ava", "--train-csv", str(train), "--val-csv", str(val), "--label-map", str(lm), "--split-seed", "0"]


_GOOD_MAP = b'item {\n  name: "a"\n  id: 1\n}\n'


def _cli_case(name, tmp_path):
    """(build-dataset arguments, the file the error must name, the rest of the message as a regex)."""
    anno = _anno(tmp_path, '{"v_a": {"duration_second": 10, "annotations": [{"segment": [1, 2], "label": "A"}]}}')
    if name == "ucf corrupted pickle":
        args, p = _ucf_cli(tmp_path, pickle.dumps(_ucf_doc(), protocol=2)[:-30])
        return args, p, r"expected a UCF101-24 annotation pickle, found an unreadable pickle \("
    if name == "ucf numf string":
        args, p = _ucf_cli(tmp_path, pickle.dumps(_mut((*_V, "numf"), "x")(_ucf_doc()), protocol=2))
        return args, p, r"video A/v_A_g01_c01 'numf': expected a frame count .*found the string 'x'$"
    if name == "ava label map not UTF-8":
        return _ava_cli(tmp_path, b'item {\n  name: "\xff"\n  id: 1\n}\n'), tmp_path / "map.pbtxt", \
            r"expected UTF-8 text, found the undecodable byte 0xff at line 2"
    if name == "ava csv infinity":
        return _ava_cli(tmp_path, _GOOD_MAP, "w,0902,0.1,0.1,0.2,Infinity,1,1\n"), tmp_path / "val.csv", \
            r"line 1: column 'y2': expected a finite number, found Infinity$"
    if name == "lengths NaN":
        lens = tmp_path / "len.json"
        lens.write_text('{"a": {"n_frames": NaN, "n_feat": 1}}')
        return ["activitynet", "--annotations", str(anno), "--lengths", str(lens)], lens, \
            r"video 'a' 'n_frames': expected an integer .*found NaN$"
    if name == "class split not UTF-8":
        split = tmp_path / "split.json"
        split.write_bytes(b'{"train": ["\xe9"], "val": [], "test": []}')
        return ["activitynet", "--annotations", str(anno), "--class-split", str(split)], split, r".*UTF-8"
    if name == "class split wrong container":
        split = tmp_path / "split.json"
        split.write_text('{"train": {"A": 1}, "val": [], "test": []}')
        return ["activitynet", "--annotations", str(anno), "--class-split", str(split)], split, \
            r"'train': expected a list of class names, found an object with 1 key \('A'\)$"
    raise KeyError(name)


@pytest.mark.parametrize("name", ["ucf corrupted pickle", "ucf numf string", "ava label map not UTF-8",
                                  "ava csv infinity", "lengths NaN", "class split not UTF-8",
                                  "class split wrong container"])
def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, name):
    import re

    args, file, match = _cli_case(name, tmp_path)
    line = _one_error_line(CliRunner().invoke(cli, ["build-dataset", *args, "--out", str(tmp_path / "m")]))
    assert re.match(rf"^Error: {re.escape(str(file))}: {match}", line), line
    assert not (tmp_path / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
