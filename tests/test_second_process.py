"""A second, forked process beside this one (``relocbench._fork``): results, errors and a dying
child; reloc-temporal scoring split in two equals scoring in one; the typed decoder of
prediction slices reads every number as ``json`` does and hands anything else to the checked
reader."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relocbench.metrics.temporal as T
from relocbench import PredictionError
from relocbench._fork import Forked, second_process
from relocbench.io import JsonMapping
from relocbench.metrics import evaluate_temporal
from relocbench.predictions import predictions_from_dict, read_predictions, typed_decoder

from test_metrics_temporal import doc, make_pairs, random_case

forks = pytest.mark.skipif(not (hasattr(os, "fork") and sys.platform.startswith("linux")),
                           reason="the second process is forked (Linux only); elsewhere one process computes")


@forks
def test_forked_returns_raises_and_survives_a_dead_child():
    parent = os.getpid()
    with Forked(lambda: (os.getpid(), np.arange(5) * 2)) as f:
        pid, arr = f.result()
    assert pid != parent and arr.tolist() == [0, 2, 4, 6, 8]
    with Forked(lambda: 1 / 0) as f, pytest.raises(ZeroDivisionError):
        f.result()

    class Local(Exception):  # pickle cannot carry a local class
        pass

    def odd():
        raise Local("boom")

    with Forked(odd, "the test child") as f, pytest.raises(RuntimeError, match="the test child failed: Local: boom"):
        f.result()
    with Forked(lambda: os._exit(3)) as f:
        assert f.result(fallback=lambda: "computed here") == "computed here"
    with Forked(lambda: os._exit(3), "the test child") as f, pytest.raises(RuntimeError, match="died"):
        f.result()


def test_second_process_follows_the_setting(monkeypatch):
    monkeypatch.setenv("RELOCBENCH_READ_PROCESSES", "1")
    assert not second_process()
    assert not second_process(1)
    monkeypatch.setenv("RELOCBENCH_READ_PROCESSES", "2")
    assert second_process() == (hasattr(os, "fork") and sys.platform.startswith("linux"))


@forks
@pytest.mark.parametrize("seed,missing,empty,ties,rule", [
    (11, 0.0, 0.0, False, "inclusive"), (12, 0.1, 0.1, True, "inclusive"), (13, 0.05, 0.0, True, "strict")])
def test_temporal_scoring_in_two_processes_equals_one(monkeypatch, seed, missing, empty, ties, rule):
    rows, results = random_case(seed, 400, 14, True, missing, empty, ties)
    # a few segments beyond the window: counted (and the first named) the same way
    first = next(iter(results))
    results[first] = results[first] + [(0, 10_000, 0.3)]
    pairs, d = make_pairs(rows), doc(results)
    monkeypatch.setattr(T, "_SPLIT_ROWS", 0)
    splits = []
    real = T._score_pairs_in_two

    def counted(*a, **kw):
        splits.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(T, "_score_pairs_in_two", counted)
    got = {}
    for n in ("1", "2"):
        monkeypatch.setenv("RELOCBENCH_READ_PROCESSES", n)
        got[n] = evaluate_temporal(pairs, d, iou_rule=rule, allow_missing=True, clip=True)
        with pytest.raises(PredictionError) as exc:
            evaluate_temporal(pairs, d, iou_rule=rule, allow_missing=True)
        got[n + "err"] = str(exc.value)
    assert got["1"] == got["2"] and got["1err"] == got["2err"] and got["1"]["n_clipped"] >= 1
    assert len(splits) == 4


# ----------------------------------------------------------------------------- typed decoder

FIELDS = {"segment": 2, "score": 0}
number_text = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10 ** 30), 10 ** 30).map(str),
    st.tuples(st.integers(-(10 ** 20), 10 ** 20), st.integers(0, 10 ** 25), st.integers(-330, 310)).map(
        lambda t: f"{t[0]}.{t[1]}e{t[2]}"),
    st.sampled_from(["-0", "-0.0", "0e0", "1E5", "2.2250738585072011e-308", "4.9e-324", "1.7976931348623157e308",
                     "9007199254740993", "18446744073709551617", "0.1000000000000000055511151231257827"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(number_text, number_text, number_text), min_size=1, max_size=8))
def test_typed_decoder_reads_numbers_as_json_does(triples):
    text = "{" + ",".join(f'"p{i}": [{{"segment": [{a}, {b}], "score": {c}}}]' for i, (a, b, c) in enumerate(triples)) + "}"
    expect = json.loads(text)
    if not all(math.isfinite(float(x)) for lst in expect.values() for e in lst for x in (*e["segment"], e["score"])):
        return  # a number no float holds: the checked reader names it (test_json_inputs)
    got = typed_decoder(FIELDS)(text.encode())
    assert got is not None
    slices, n_keys, counts = got
    assert n_keys == len(expect) * 3 and counts.tolist() == [1] * len(expect)
    for (k, lst), (k2, lst2) in zip(slices.items(), expect.items()):
        assert k == k2
        a, b = lst[0].segment
        assert (a, b, lst[0].score) == tuple(float(x) for x in (*lst2[0]["segment"], lst2[0]["score"]))
        assert all(math.copysign(1, float(x)) == math.copysign(1, y)
                   for x, y in zip((*lst2[0]["segment"], lst2[0]["score"]), (a, b, lst[0].score)))


@pytest.mark.parametrize("entry", [
    '{"segment": [0, 1], "score": true}', '{"segment": [0, 1], "score": null}', '{"segment": [0, 1, 2], "score": 1}',
    '{"segment": [0, 1], "score": NaN}', '{"segment": [0, 1], "score": "1"}', '{"segment": [0, 1]}',
    '{"segment": [0, 1], "score": 1' + "0" * 400 + "}", '{"segment": [0, 1], "score": 1e400}'])
def test_typed_decoder_leaves_anything_else_to_the_checked_reader(entry):
    assert typed_decoder(FIELDS)(('{"p": [' + entry + "]}").encode()) is None
    assert typed_decoder(FIELDS)('{"\\ud83d\\ude00": [{"segment": [0, 1], "score": 1}]}'.encode()) is None


def test_typed_slices_are_used_and_extra_or_repeated_keys_are_not(tmp_path):
    def flags_of(text):
        f = tmp_path / "p.json"
        f.write_text('{"version": "relocbench/1", "task": "temporal", "unit": "step", "results": {' + text + "}}")
        jm = JsonMapping(f, "results", "predictions file", PredictionError, item_name="pair id", chunk_bytes=1 << 20)
        return jm.map_chunks(lambda d, flag: type(flag).__name__, processes=1, typed=typed_decoder(FIELDS)), f

    flags, f = flags_of('"a": [{"segment": [0, 1], "score": 0.5}], "b": []')
    assert flags == ["Typed"]
    flags, f = flags_of('"a": [{"segment": [0, 1], "score": 0.5, "note": "x"}]')  # another key: the dict reader
    assert flags == ["bool"]
    assert read_predictions(f).score.tolist() == [0.5]
    f.write_text('{"version": "relocbench/1", "task": "temporal", "unit": "step", "results": {'
                 '"a": [{"segment": [0, 1], "score": 0.5, "score": 0.7}]}}')
    with pytest.raises(PredictionError, match="key 'score' appears more than once in one JSON object"):
        read_predictions(f)


def test_typed_and_dict_readers_give_the_same_columns(tmp_path):
    rows, results = random_case(21, 300, 9, False, 0.0, 0.1, True)
    d = doc(results)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(d))
    a, b = read_predictions(f), predictions_from_dict(d)
    assert list(a.pair_ids) == list(b.pair_ids)
    for name in ("offsets", "start", "end", "score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("processes", [1, 2])
def test_a_key_repeated_inside_an_entry_is_found_on_the_typed_path(tmp_path, monkeypatch, processes):
    import relocbench.io as rio

    monkeypatch.setattr(rio, "_SPLIT_BYTES", 0)
    body = {f"p{i}": [{"segment": [0, 1], "score": 0.5}] for i in range(40)}
    text = json.dumps({"version": "relocbench/1", "task": "temporal", "unit": "step", "results": body})
    for at in ("p5", "p30"):  # in the first half and in the second
        f = tmp_path / f"{at}.json"
        f.write_text(text.replace(f'"{at}": [{{"segment": [0, 1], "score": 0.5}}]',
                                  f'"{at}": [{{"segment": [0, 1], "score": 0.5, "score": 0.7}}]'))
        jm = JsonMapping(f, "results", "predictions file", PredictionError, item_name="pair id", chunk_bytes=64)
        assert jm.chunked
        with pytest.raises(PredictionError, match=r"key 'score' appears more than once in one JSON object"):
            jm.map_chunks(lambda d, flag: flag, processes=processes, typed=typed_decoder(FIELDS))


@pytest.mark.parametrize("extra", [{"resolution": "320x240"}, {}, {"resolution": "1x1", "fps": 30}])
def test_ground_truth_typed_slices_equal_the_dict_reader(tmp_path, monkeypatch, extra):
    import relocbench.metrics.activitynet as A
    from relocbench.metrics.activitynet import _gt_typed_decoder, ground_truth_arrays

    typed, real = [], A._typed_gt_chunk
    monkeypatch.setattr(A, "_typed_gt_chunk", lambda *a: (typed.append(1), real(*a))[1])

    rng = np.random.default_rng(5)
    db = {}
    for i in range(50):
        anns = [{"label": f"c{int(rng.integers(0, 6))}", "segment": sorted(rng.uniform(0, 90, 2).round(4).tolist())}
                for _ in range(int(rng.integers(0, 4)))]
        db[f"v{i:03d}"] = {"subset": ["validation", "training"][i % 3 == 0], "duration": 90.5, "url": "u",
                           "annotations": anns, **extra}
    d = {"version": "VERSION 1.3", "database": db}
    f = tmp_path / "gt.json"
    f.write_text(json.dumps(d))
    decode = _gt_typed_decoder()
    got = decode(json.dumps(db).encode())
    assert (got is not None) == ("fps" not in extra)  # a key of no known layout: the dict reader
    if got is not None:
        n_keys = len(db) + sum(len(v) for v in db.values()) + 2 * sum(len(v["annotations"]) for v in db.values())
        assert got[1] == n_keys
    a, b = ground_truth_arrays(f, blocked=["v004"]), ground_truth_arrays(d, blocked=["v004"])
    assert bool(typed) == ("fps" not in extra)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


def test_ground_truth_typed_decoder_refuses_other_values():
    from relocbench.metrics.activitynet import _gt_typed_decoder

    ok = {"subset": "validation", "duration": 1, "url": "u", "annotations": [{"segment": [0, 1], "label": "a"}]}
    decode = _gt_typed_decoder()
    assert decode(json.dumps({"v": ok}).encode()) is not None
    for bad in ({**ok, "duration": "1"}, {**ok, "annotations": [{"segment": [0, True], "label": "a"}]},
                {**ok, "annotations": [{"segment": [0, 1], "label": "a", "note": 1}]},
                {k: v for k, v in ok.items() if k != "annotations"}, {**ok, "subset": None}):
        assert decode(json.dumps({"v": bad}).encode()) is None


@pytest.mark.parametrize("text", [
    b'{"\xff": [{"segment": [0, 1], "score": 1}]}', b'{"a\\x": [{"segment": [0, 1], "score": 1}]}',
    b'{"a": [{"segment": [0, 1], "score": 1}],}', b'{"a": [{"segment": [0, 1], "score": 01}]}',
    b'{"a": [{"segment": [0, 1], "score": .5}]}', b'{"a": [{"segment": [0, 1], "score": 1.}]}',
    b'{"a": [{"segment": [0, 1], "score": +1}]}', b'{"a\tb": [{"segment": [0, 1], "score": 1}]}'])
def test_typed_decoder_refuses_what_json_refuses(text):
    assert typed_decoder(FIELDS)(text) is None
    with pytest.raises(ValueError):
        json.loads(text)
