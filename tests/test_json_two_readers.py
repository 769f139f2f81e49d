"""A large JSON mapping read by two processes (``JsonMapping.map_chunks``) gives what one
process reading in order gives: the same values in the same order, the same first error,
the same repeated-key error, also when the middle cut falls inside a string or the second
process dies."""
from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relocbench.io as rio
from relocbench import InputError, PredictionError
from relocbench.errors import RelocbenchError
from relocbench.io import JsonMapping
from relocbench.metrics.activitynet import ground_truth_arrays, read_activitynet_arrays
from relocbench.predictions import read_predictions

pytestmark = pytest.mark.skipif(not (hasattr(os, "fork") and sys.platform.startswith("linux")),
                                reason="the second reader is forked (Linux only); elsewhere one process reads")


@pytest.fixture(autouse=True)
def split_small_files(monkeypatch):
    """Every mapping, however small, is split in two."""
    monkeypatch.setattr(rio, "_SPLIT_BYTES", 0)


def write(tmp_path, doc_or_text, name="d.json"):
    f = tmp_path / name
    f.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text))
    return f


def with_pid(d, bools):
    return os.getpid(), list(d.items()), bools


def read(f, processes, chunk=64, fn=with_pid, **kw):
    jm = JsonMapping(f, "results", "test file", PredictionError, item_name="pair id", chunk_bytes=chunk, **kw)
    assert jm.chunked
    return jm.map_chunks(fn, processes=processes)


def flat(parts):
    return [kv for _, items, _ in parts for kv in items]


def entries(n, start=0):
    return {f"p{i}": [{"segment": [i, i + 1], "score": i / 7}] for i in range(start, start + n)}


@pytest.fixture
def processes(monkeypatch):
    """``processes(n)``: the readers use n processes; ``processes.splits``: reads split so far."""
    real = JsonMapping._map_in_two

    def counted(self, *a):
        use.splits += 1
        return real(self, *a)

    def use(n):
        monkeypatch.setenv("RELOCBENCH_READ_PROCESSES", str(n))

    use.splits = 0
    monkeypatch.setattr(JsonMapping, "_map_in_two", counted)
    return use


def messages_in_one_and_two(processes, reader, f, error):
    """The messages ``reader(f)`` raises reading in one process, then in two."""
    msgs = []
    for n in (1, 2):
        processes(n)
        with pytest.raises(error) as exc:
            reader(f)
        msgs.append(str(exc.value))
    return msgs


def test_two_processes_read_what_one_reads(tmp_path):
    f = write(tmp_path, {"task": "temporal", "results": entries(40)})
    one, two = read(f, 1), read(f, 2)
    assert flat(one) == flat(two) == list(entries(40).items())
    pids = [p for p, _, _ in two]
    assert pids[0] == os.getpid() and pids[-1] != os.getpid()  # the second half was read by a child
    assert pids == sorted(pids, key=lambda p: p != os.getpid())  # parent's slices first, in file order
    assert {p for p, _, _ in one} == {os.getpid()}


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), chunk=st.integers(1, 200), indent=st.sampled_from([None, 0, 2]),
       flags=st.lists(st.booleans(), min_size=30, max_size=30))
def test_two_processes_equal_json_loads(tmp_path_factory, n, chunk, indent, flags):
    results = {f"k{i}": [{"a": [i, -i], "b": flags[i], "s": "x}], \"" * (i % 3)}] for i in range(n)}
    f = write(tmp_path_factory.mktemp("d"), json.dumps({"results": results, "v": 1}, indent=indent))
    got = read(f, 2, chunk=chunk)
    assert flat(got) == list(results.items())
    assert all(b == any(v[0]["b"] for _, v in items) or b for _, items, b in got)  # a True flag is never lost


def test_a_key_repeated_across_the_halves_is_the_same_error(tmp_path):
    body = entries(30)
    text = json.dumps({"results": body})[:-2] + ", " + json.dumps(entries(2, start=3))[1:-1] + "}}"
    f = write(tmp_path, text)
    msgs = []
    for processes in (1, 2):
        with pytest.raises(PredictionError) as exc:
            read(f, processes)
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1] == f"{f}: pair id 'p3' appears more than once in 'results' (2 duplicate key(s) in all)"


def test_the_first_error_in_file_order_wins(tmp_path, processes):
    for k, bad_at in enumerate(((3,), (36,), (3, 36))):
        results = entries(40)
        for i in bad_at:
            results[f"p{i}"][0]["score"] = "high"
        f = write(tmp_path, {"version": "relocbench/1", "task": "temporal", "unit": "step", "results": results})
        msgs = messages_in_one_and_two(processes, read_predictions, f, PredictionError)
        assert msgs[0] == msgs[1]
        assert processes.splits == k + 1
        assert f"pair 'p{bad_at[0]}': prediction 0: 'score' must be a number, found the string 'high'" in msgs[0]


def test_a_cut_at_the_wrong_depth_is_noticed_and_read_in_order(tmp_path):
    # lists of objects followed by another key look like member boundaries ("}], ") inside entries
    extra = {f"e{j}": [{"a": j}] for j in range(12)}
    results = {f"p{i}": [{**(extra if i < 9 else {}), "segment": [0, 1], "score": 0.5}] for i in range(12)}
    f = write(tmp_path, {"results": results})
    jm = JsonMapping(f, "results", "test file", chunk_bytes=64)
    cut = jm._split_point(2)
    assert jm.data[cut + 1:cut + 4] == b' "e'  # the guessed cut is inside an entry
    got = read(f, 2, chunk=64)
    assert flat(got) == list(results.items())
    assert {p for p, _, _ in got} == {os.getpid()}  # the child's half was dropped, read here in order


def test_a_child_that_dies_leaves_its_half_to_the_parent(tmp_path):
    parent = os.getpid()

    def dies_in_child(d, bools):
        if os.getpid() != parent:
            os._exit(3)
        return with_pid(d, bools)

    f = write(tmp_path, {"results": entries(40)})
    got = read(f, 2, fn=dies_in_child)
    assert flat(got) == list(entries(40).items()) and {p for p, _, _ in got} == {parent}


def test_an_unpicklable_error_of_the_child_is_named(tmp_path):
    parent = os.getpid()

    class Odd(Exception):  # a local class: pickle cannot send it
        pass

    def fails_in_child(d, bools):
        if os.getpid() != parent:
            raise Odd("boom")
        return with_pid(d, bools)

    f = write(tmp_path, {"results": entries(40)})
    with pytest.raises(RuntimeError, match=r"d.json in a second process failed: Odd: boom"):
        read(f, 2, fn=fails_in_child)


def test_errors_cross_processes_whole():
    e = pickle.loads(pickle.dumps(InputError("bad", file="f.json", item="video 'v'")))
    assert type(e) is InputError and (e.message, e.file, e.item) == ("bad", "f.json", "video 'v'")
    assert str(e) == "f.json: video 'v': bad" and isinstance(e, RelocbenchError)


def test_prediction_columns_equal_in_one_and_two_processes(tmp_path, processes):
    rng = np.random.default_rng(0)
    results = {f"p{i}": [{"time": float(rng.integers(0, 9)), "box": np.sort(rng.random((2, 2)).round(3), axis=0).ravel().tolist(),
                          "score": float(rng.random())} for _ in range(int(rng.integers(0, 4)))] for i in range(60)}
    f = write(tmp_path, {"version": "relocbench/1", "task": "spatiotemporal", "results": results})
    got = []
    for n in (1, 2):
        processes(n)
        got.append(read_predictions(f))
    assert processes.splits == 1
    a, b = got
    assert list(a.pair_ids) == list(b.pair_ids) == list(results)
    for name in ("offsets", "time", "boxes", "score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_activitynet_columns_equal_in_one_and_two_processes(tmp_path, processes):
    rng = np.random.default_rng(1)
    # labels first seen in the second half, and shared by both, keep one numbering
    labels = [f"class {i}" for i in range(12)]
    preds = {f"v{i:03d}": [{"label": labels[int(rng.integers(0, 4 if i < 30 else 12))],
                            "segment": [float(s), float(s + 2)], "score": float(rng.random())}
                           for s in rng.integers(0, 50, 3)] for i in range(60)}
    db = {f"v{i:03d}": {"subset": "validation" if i % 5 else "training", "duration": 60.0,
                        "annotations": [{"segment": [1.0 * i, 2.0 * i + 1], "label": labels[(i * 7) % 12]}]}
          for i in range(60)}
    pf = write(tmp_path, {"version": "VERSION 1.3", "results": preds}, "p.json")
    gf = write(tmp_path, {"version": "VERSION 1.3", "database": db}, "g.json")
    got = []
    for n in (1, 2):
        processes(n)
        got.append((read_activitynet_arrays(pf, blocked=["v007", "v041"]), ground_truth_arrays(gf, blocked=["v044"]),
                    read_activitynet_arrays(pf, labels=False)))
    assert processes.splits == 3
    for one, two in zip(*got):
        for x, y in zip(one, two):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y
    # label names in order of first appearance in the file, blocked videos left out
    assert got[1][0][5] == list(dict.fromkeys(e["label"] for v, es in preds.items() if v not in ("v007", "v041")
                                              for e in es))


def test_ground_truth_error_in_the_second_half_is_the_same(tmp_path, processes):
    db = {f"v{i:03d}": {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "a"}]} for i in range(40)}
    db["v033"]["annotations"][0]["segment"] = [0, "1"]
    gf = write(tmp_path, {"database": db}, "g.json")
    msgs = messages_in_one_and_two(processes, ground_truth_arrays, gf, InputError)
    assert msgs[0] == msgs[1] and "video 'v033': annotation 0" in msgs[0] and processes.splits == 1
