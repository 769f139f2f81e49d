"""Bad JSON inputs of the scoring protocols: one message per class, naming file, item and
expectation; the chunked reader equals ``json.loads`` on every document it accepts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from relocbench import InputError, PredictionError
from relocbench.cli import cli
from relocbench.io import JsonMapping, read_json
from relocbench.metrics import activitynet_detection
from relocbench.metrics.activitynet import read_activitynet_ground_truth, read_blocked_videos
from relocbench.predictions import predictions_from_dict, read_predictions

from test_metrics_activitynet import gt_doc, pred_doc

ENTRY = '{"segment": [0, 10], "score": 0.5}'


def temporal_text(results: str) -> str:
    return '{"version": "relocbench/1", "task": "temporal", "unit": "step", "results": {' + results + "}}"


def write(tmp_path, text, name="p.json"):
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return f


# ----------------------------------------------------------------------------- predictions


def test_integer_above_1e308_names_the_place(tmp_path):
    text = temporal_text('"p1": [{"segment": [0, 1' + "0" * 400 + '], "score": 1}]')
    col = text.index("1000") + 1
    f = write(tmp_path, text)
    with pytest.raises(PredictionError, match=r"p.json: expected a number that fits a float \(below 1.8e308\), "
                                              rf"found the integer 100000000000\.\.\. \(401 digits\) at line 1, column {col}$"):
        read_predictions(f)


def test_5000_digit_integer_names_the_place(tmp_path):
    f = write(tmp_path, temporal_text('"p1": [{"segment": [0, 10], "score": ' + "7" * 5000 + "}]"))
    with pytest.raises(PredictionError, match=r"found the integer 777777777777\.\.\. \(5,000 digits\) at line 1"):
        read_predictions(f)


@pytest.mark.parametrize("literal,message", [
    ("NaN", r"pair 'p1': prediction 1: score must be a finite number, found nan"),
    ("Infinity", r"pair 'p1': prediction 1: score must be a finite number, found inf"),
    ("1e400", r"pair 'p1': prediction 1: score must be a finite number, found inf"),
    ("-Infinity", r"pair 'p1': prediction 1: score must be a finite number, found -inf"),
])
def test_non_finite_scores_name_pair_and_prediction(tmp_path, literal, message):
    f = write(tmp_path, temporal_text(f'"p1": [{ENTRY}, {{"segment": [0, 10], "score": {literal}}}]'))
    with pytest.raises(PredictionError, match=message):
        read_predictions(f)


def test_non_finite_segment_names_pair_and_prediction(tmp_path):
    f = write(tmp_path, temporal_text(f'"p0": [{ENTRY}], "p1": [{{"segment": [0, NaN], "score": 1}}]'))
    with pytest.raises(PredictionError, match=r"pair 'p1': prediction 0: segment end must be a finite number, found nan"):
        read_predictions(f)


def test_deep_nesting_is_one_line(tmp_path):
    f = write(tmp_path, temporal_text('"p1": ' + "[" * 100_000 + "]" * 100_000))
    with pytest.raises(PredictionError, match=r"p.json: expected JSON nested at most about 900 levels deep"):
        read_predictions(f)


def test_lone_surrogate_in_a_pair_id(tmp_path):
    text = temporal_text(f'"p\\ud800x": [{ENTRY}]')
    col = text.index("\\ud800") + 1
    f = write(tmp_path, text)
    with pytest.raises(PredictionError, match=r"p.json: expected text that UTF-8 can hold, found a string with a "
                                              rf"lone surrogate \('p\\ud800x'\) at line 1, column {col}$"):
        read_predictions(f)


def test_undecodable_bytes_in_predictions(tmp_path):
    text = temporal_text(f'"p1": [{ENTRY}],\n "p\xff": []')
    col = len(text.split("\n")[1].split("\xff")[0]) + 1
    f = write(tmp_path, text.encode("latin-1"))
    with pytest.raises(PredictionError, match=r"p.json: expected UTF-8 JSON text, found the undecodable byte 0xff "
                                              rf"at line 2, column {col}$"):
        read_predictions(f)


def test_duplicate_pair_id_in_another_chunk_is_caught(tmp_path):
    # ~2 MB of results: the reader cuts them into several chunks; p00003 reappears at the end
    body = ", ".join(f'"p{i:05d}": [{ENTRY}, {ENTRY}, {ENTRY}]' for i in range(20_000))
    f = write(tmp_path, temporal_text(body + f', "p00003": [{ENTRY}]'))
    with pytest.raises(PredictionError, match=r"pair id 'p00003' appears more than once in 'results' "
                                              r"\(1 duplicate key\(s\) in all\)"):
        read_predictions(f)


def test_whole_document_reader_names_repeated_pair_ids(tmp_path):
    from relocbench.predictions import load_json_strict

    f = write(tmp_path, temporal_text(f'"p1": [{ENTRY}], "p2": [], "p1": []'))
    with pytest.raises(PredictionError, match=r"p.json: pair id 'p1' appears more than once in 'results'"):
        load_json_strict(f)
    f = write(tmp_path, temporal_text(f'"p1": [{ENTRY}]').replace('"task"', '"unit": "s", "task"'))
    with pytest.raises(PredictionError, match=r"p.json: key 'unit' appears more than once in one JSON object"):
        load_json_strict(f)
    assert load_json_strict(write(tmp_path, temporal_text(f'"p1": [{ENTRY}]')))["results"]["p1"][0]["score"] == 0.5


def test_duplicate_key_inside_an_entry(tmp_path):
    f = write(tmp_path, temporal_text('"p1": [{"segment": [0, 10], "score": 0.5, "score": 0.9}]'))
    with pytest.raises(PredictionError, match=r"key 'score' appears more than once in one JSON object"):
        read_predictions(f)


def test_wrong_types_name_pair_and_prediction(tmp_path):
    f = write(tmp_path, temporal_text(f'"p1": [{ENTRY}, {{"segment": [0, true], "score": 1}}]'))
    with pytest.raises(PredictionError, match=r"pair 'p1': prediction 1: 'segment' must be a list of 2 numbers, "
                                              r"found a list of 2 items"):
        read_predictions(f)
    f = write(tmp_path, temporal_text(f'"p1": {ENTRY}'))
    with pytest.raises(PredictionError, match=r"pair 'p1': expected a list of predictions, found an object with 2 keys"):
        read_predictions(f)
    f = write(tmp_path, temporal_text('"p1": [{"segment": [0, 10], "score": "0.5"}]'))
    with pytest.raises(PredictionError, match=r"prediction 0: 'score' must be a number, found the string '0.5'"):
        read_predictions(f)


def test_spatiotemporal_time_null_names_pair_and_prediction():
    d = {"task": "spatiotemporal", "results": {"a": [{"time": 1, "box": [0, 0, 1, 1], "score": 1},
                                                     {"time": None, "box": [0, 0, 1, 1], "score": 1}]}}
    with pytest.raises(PredictionError, match=r"p.json: pair 'a': prediction 1: 'time' must be a number, found null"):
        predictions_from_dict(d, source="p.json")


def test_header_types_are_checked(tmp_path):
    f = write(tmp_path, '{"task": "temporal", "unit": "step", "manifest": ["x"], "results": {}}')
    with pytest.raises(PredictionError, match=r"p.json: 'manifest' must be a string, found a list of 1 item"):
        read_predictions(f)


def test_chunked_read_equals_the_whole_document(tmp_path):
    rng = np.random.default_rng(0)
    results = {f"p{i}": [{"segment": [int(a), int(a) + int(b)], "score": float(c)}
                         for a, b, c in zip(rng.integers(0, 50, 7), rng.integers(0, 9, 7), rng.random(7))]
               for i in range(30_000)}
    doc = {"results": results, "task": "temporal", "unit": "step", "version": "relocbench/1"}
    text = json.dumps(doc, indent=1, sort_keys=True)  # "results" before "task" and "unit"
    f = write(tmp_path, text)
    a, b = read_predictions(f), predictions_from_dict(json.loads(text))
    assert list(a.pair_ids) == list(b.pair_ids)
    for name in ("offsets", "start", "end", "score"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_garbage_collection_is_left_on_after_reading(tmp_path):
    import gc

    assert gc.isenabled()
    good = write(tmp_path, temporal_text(f'"p1": [{ENTRY}]'), "good.json")
    bad = write(tmp_path, temporal_text(f'"p1": [{ENTRY}], "p2": [{{"segment": [0, 1], "score": "x"}}]'), "bad.json")
    read_predictions(good)
    with pytest.raises(PredictionError) as info:
        read_predictions(bad)
    assert gc.isenabled() and info.value  # also while the traceback is held


def test_memory_mapped_files_read_the_same(tmp_path, monkeypatch):
    import relocbench.io as rio

    monkeypatch.setattr(rio, "_MAP_BYTES", 0)
    monkeypatch.setattr(rio, "_RELEASE_BYTES", 4096)
    body = ", ".join(f'"p{i}": [{{"segment": [{i % 7}, 9], "score": {i / 7}}}]' for i in range(20_000))
    text = temporal_text(body)
    a = read_predictions(write(tmp_path, text))
    b = predictions_from_dict(json.loads(text))
    assert list(a.pair_ids) == list(b.pair_ids) and np.array_equal(a.score, b.score)
    bad = text.replace('"p19999": [{"segment": [0, 9],', '"p19999": [{"segment": [0, 9],,')
    assert bad != text
    line_col = r"at line 1, column \d+: Expecting property name"
    with pytest.raises(PredictionError, match=r"p.json: unparsable JSON " + line_col):
        read_predictions(write(tmp_path, bad))


# ----------------------------------------------------------------------------- the reader itself

_text = st.text(alphabet=st.sampled_from(list('ab"\\:,{}[] \n\u00e9')), max_size=6)
_entry = st.fixed_dictionaries({"segment": st.lists(st.integers(-5, 5), min_size=2, max_size=2),
                                "label": _text, "score": st.floats(-1, 1)})
_mapping = st.dictionaries(_text, st.lists(_entry, max_size=3), max_size=12)


@settings(max_examples=150, deadline=None)
@given(_mapping, st.sampled_from(["first", "last", "middle"]), st.integers(1, 64),
       st.sampled_from([None, 0, 2]))
def test_chunks_equal_json_loads(tmp_path_factory, results, where, chunk, indent):
    # keys and labels full of quotes, colons, braces and brackets: cuts inside them must be noticed
    other = {"task": "temporal", "meta": {"a": {"b": [1]}}}
    items = list(other.items())
    pos = {"first": 0, "last": len(items), "middle": 1}[where]
    doc = dict(items[:pos] + [("results", results)] + items[pos:])
    f = tmp_path_factory.mktemp("j") / "d.json"
    f.write_text(json.dumps(doc, indent=indent))
    jm = JsonMapping(f, "results", "test file", chunk_bytes=chunk)
    got = {}
    for c in jm.chunks():
        assert not set(c) & set(got)
        got.update(c)
    if not jm.chunked:  # an unusual layout is read whole
        got = jm.header["results"]
    assert list(got.items()) == list(results.items())
    assert {k: v for k, v in jm.header.items() if k != "results"} == other


def test_plain_layouts_are_read_in_chunks(tmp_path):
    body = ", ".join(f'"p{i}": [{ENTRY}]' for i in range(50))
    for text in (temporal_text(body), '{"results": {' + body + '}, "task": "temporal", "unit": "step"}'):
        jm = JsonMapping(write(tmp_path, text), "results", "test file", chunk_bytes=64)
        chunks = list(jm.chunks())
        assert jm.chunked and len(chunks) > 5 and sum(map(len, chunks)) == 50


def test_read_json_keeps_json_language_and_adds_checks(tmp_path):
    f = write(tmp_path, '{"a": NaN, "b": [1, 2]}')
    out = read_json(f)
    assert np.isnan(out["a"]) and out["b"] == [1, 2]
    f = write(tmp_path, '{"a": 1, "a": 2}')
    assert read_json(f) == {"a": 2}
    with pytest.raises(InputError, match=r"p.json: key 'a' appears more than once in one JSON object"):
        read_json(f, unique_keys=True)
    f = write(tmp_path, '{"a": [1, 2,]}')
    with pytest.raises(InputError, match=r"p.json: malformed JSON at line 1, column 13: Expecting value"):
        read_json(f)


# ----------------------------------------------------------------------------- ActivityNet


def anet_gt_text(video_entry: str) -> str:
    return '{"version": "VERSION 1.3", "database": {"v": ' + video_entry + "}}"


@pytest.mark.parametrize("label,shown", [("5", "5"), ("null", "null"), ('["a"]', "a list of 1 item")])
def test_ground_truth_label_must_be_a_string(tmp_path, label, shown):
    f = write(tmp_path, anet_gt_text('{"subset": "validation", "annotations": [{"segment": [0, 10], "label": %s}]}'
                                     % label), "gt.json")
    with pytest.raises(InputError, match=rf"gt.json: video 'v': annotation 0: 'label' must be a string, found {shown}"):
        activitynet_detection(f, pred_doc([("v", 0, 10, "a", 1.0)]))


def test_ground_truth_container_types(tmp_path):
    cases = [
        ('{"subset": "validation", "annotations": 5}', r"video 'v': 'annotations': expected a list of annotations, "
                                                       r"found 5"),
        ('{"subset": ["validation"], "annotations": []}', r"video 'v': 'subset': expected a 'subset' string, found "
                                                          r"a list of 1 item"),
        ('[1, 2]', r"video 'v': expected an object with 'subset' and 'annotations', found a list of 2 items"),
        ('{"subset": "validation", "annotations": [{"segment": 3, "label": "a"}]}',
         r"video 'v': annotation 0: 'segment' must be a list of 2 numbers, found 3"),
    ]
    for entry, message in cases:
        f = write(tmp_path, anet_gt_text(entry), "gt.json")
        with pytest.raises(InputError, match=message):
            read_activitynet_ground_truth(f)
    f = write(tmp_path, '{"database": [1]}', "gt.json")
    with pytest.raises(InputError, match=r"gt.json: expected an ActivityNet ground-truth object with a 'database' "
                                         r"mapping, found a list of 1 item"):
        read_activitynet_ground_truth(f)


def test_ground_truth_numbers(tmp_path):
    entry = '{"subset": "validation", "annotations": [{"segment": [0, %s], "label": "a"}]}'
    f = write(tmp_path, anet_gt_text(entry % "NaN"), "gt.json")
    with pytest.raises(InputError, match=r"video 'v': annotation 0: segment \[0.0, nan\] must be finite"):
        read_activitynet_ground_truth(f)
    f = write(tmp_path, anet_gt_text(entry % ("9" * 500)), "gt.json")
    with pytest.raises(InputError, match=r"gt.json: expected a number that fits a float"):
        read_activitynet_ground_truth(f)


def test_ground_truth_text_problems(tmp_path):
    f = write(tmp_path, '{"database": {"v\\udc00": {"subset": "validation", "annotations": []}}}', "gt.json")
    with pytest.raises(InputError, match=r"gt.json: expected text that UTF-8 can hold, found a string with a lone "
                                         r"surrogate \('v\\udc00'\)"):
        read_activitynet_ground_truth(f)
    f = write(tmp_path, b'{"database": {"v\xc3": {"subset": "validation", "annotations": []}}}', "gt.json")
    with pytest.raises(InputError, match=r"gt.json: expected UTF-8 JSON text, found the undecodable byte 0xc3"):
        read_activitynet_ground_truth(f)
    f = write(tmp_path, '{"database": {"v": ' + "[" * 5000 + "]" * 5000 + "}}", "gt.json")
    with pytest.raises(InputError, match=r"gt.json: expected JSON nested at most about 900 levels deep"):
        read_activitynet_ground_truth(f)


def test_numeric_label_no_longer_lowers_the_map(tmp_path):
    gt = gt_doc([("v", 0, 10, "a")])
    gt["database"]["w"] = {"subset": "validation", "annotations": [{"segment": [0, 10], "label": 7}]}
    with pytest.raises(InputError, match=r"video 'w': annotation 0: 'label' must be a string, found 7"):
        activitynet_detection(gt, pred_doc([("v", 0, 10, "a", 1.0)]))


def test_prediction_files(tmp_path):
    gt = gt_doc([("v", 0, 10, "a")])
    f = write(tmp_path, '{"results": {"v": [{"label": "a", "segment": [0, 10], "score": NaN}]}}')
    with pytest.raises(PredictionError, match=r"p.json: video 'v': prediction 0: segment and score must be finite"):
        activitynet_detection(gt, f)
    f = write(tmp_path, '{"results": {"v": [{"label": "a\\ud801", "segment": [0, 10], "score": 1}]}}')
    with pytest.raises(PredictionError, match=r"p.json: expected text that UTF-8 can hold.*'a\\ud801'"):
        activitynet_detection(gt, f)
    f = write(tmp_path, '{"results": {"v": [{"label": 3, "segment": [0, 10], "score": 1}]}}')
    with pytest.raises(PredictionError, match=r"video 'v': prediction 0: 'label' must be a string, found 3"):
        activitynet_detection(gt, f)


def test_blocked_videos_files(tmp_path):
    f = write(tmp_path, b"v1\nv\xff2\n", "blocked.txt")
    with pytest.raises(InputError, match=r"blocked.txt: expected UTF-8 text, found the undecodable byte 0xff at line 2"):
        read_blocked_videos(f)
    f = write(tmp_path, '["v1", 5]', "blocked.json")
    with pytest.raises(InputError, match=r"blocked.json: entry 1: expected a JSON list of video id strings, found 5"):
        read_blocked_videos(f)
    f = write(tmp_path, '["v1", "\\ud800"]', "blocked.json")
    with pytest.raises(InputError, match=r"blocked.json: expected text that UTF-8 can hold"):
        read_blocked_videos(f)
    f = write(tmp_path, b'["v1", "v\xff"]', "blocked.json")
    with pytest.raises(InputError, match=r"blocked.json: expected UTF-8 text, found the undecodable byte 0xff"):
        read_blocked_videos(f)


# ----------------------------------------------------------------------------- command line


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("body,message", [
    ('"p1": [{"segment": [0, 1' + "0" * 400 + '], "score": 1}]', "expected a number that fits a float"),
    ('"p1": [{"segment": [0, 10], "score": NaN}]', "score must be a finite number, found nan"),
    ('"p\\ud800": []', "lone surrogate"),
    ('"p1": ' + "[" * 3000 + "]" * 3000, "nested at most about 900 levels deep"),
])
def test_cli_exit_2_with_one_line(tmp_path, body, message):
    f = write(tmp_path, temporal_text(body))
    r = invoke("evaluate", f, "--protocol", "reloc-temporal", "--manifest", "activitynet")
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_activitynet_label_exit_2(tmp_path):
    gt = gt_doc([("v", 0, 10, "a")])
    gt["database"]["v"]["annotations"][0]["label"] = None
    g = write(tmp_path, json.dumps(gt), "gt.json")
    p = write(tmp_path, json.dumps(pred_doc([("v", 0, 10, "a", 1.0)])))
    r = invoke("evaluate", p, "--protocol", "activitynet-detection", "--ground-truth", g)
    assert r.exit_code == 2 and "'label' must be a string, found null" in r.output


@pytest.mark.parametrize("where", ["proc", "under_file"])
@pytest.mark.parametrize("option", ["--output-json", "--plot"])
def test_unwritable_outputs_fail_before_scoring(tmp_path, where, option):
    # the predictions are broken: an error about them would mean the scoring started first
    p = write(tmp_path, '{"results": {"v": [{"label": "a", "segment": [0, 10], "score": NaN}]}}')
    g = write(tmp_path, json.dumps(gt_doc([("v", 0, 10, "a")])), "gt.json")
    if where == "proc":
        out = "/proc/relocbench-out/scores.json"
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "scores.json"
    r = invoke("evaluate", p, "--protocol", "activitynet-detection", "--ground-truth", g, option, out)
    assert r.exit_code == 2, r.output
    assert "scores.json: cannot be" in r.output and "finite" not in r.output


_key = st.text(alphabet=st.sampled_from(list('ab:"\\ \u00e9')), max_size=4)
_colon = st.sampled_from([":", ": ", " : ", "\n:\t"])
_comma = st.sampled_from([",", ", ", ",\n  "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_key, st.lists(st.lists(st.tuples(_key, _key), max_size=3), max_size=3)), max_size=10),
       _colon, _comma, st.integers(1, 48))
def test_a_key_listed_twice_is_always_noticed(tmp_path_factory, members, colon, comma, chunk):
    # keys and values full of quotes, colons and spaces (a string may start with ':' or hold
    # '\":'): the chunked reader finds every repeated key, and only those
    def obj(pairs):
        return "{" + comma.join(json.dumps(k) + colon + json.dumps(v) for k, v in pairs) + "}"

    body = "{" + comma.join(json.dumps(k) + colon + "[" + comma.join(map(obj, entries)) + "]"
                            for k, entries in members) + "}"
    text = "{" + json.dumps("task") + colon + '"temporal"' + comma + json.dumps("results") + colon + body + "}"
    f = tmp_path_factory.mktemp("d") / "d.json"
    f.write_text(text)
    top = [k for k, _ in members]
    repeated = len(set(top)) < len(top) or any(len({k for k, _ in e}) < len(e) for _, es in members for e in es)

    def read():
        jm = JsonMapping(f, "results", "test file", chunk_bytes=chunk)
        got = {}
        for c in jm.chunks():
            got.update(c)
        return got if jm.chunked else jm.header["results"]

    if repeated:
        with pytest.raises(InputError, match="appears more than once"):
            read()
    else:
        assert read() == json.loads(text)["results"]
