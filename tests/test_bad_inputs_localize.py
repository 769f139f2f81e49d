"""Bad inputs of ``localize`` and ``predict``, one test per class: cache entries that lie or are
damaged (recomputed, never used), outputs among the inputs (refused before any work), damaged
or foreign run folders (one line naming the file), unbounded sizes, ranges shorter than a
frame, features of another width, tables wider than 80 columns, special files as videos."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, FeatureError, InputError
from relocbench.localize import localize
from relocbench.localize.cache import FeatureCache
from relocbench.localize.outputs import table_names
from relocbench.localize.runs import load_run, predict_run
from relocbench.localize.synthetic import recode, write_scene_video

REF_A = list(zip(range(8), [3.0, 2.0, 3.0, 2.0, 3.0, 2.0, 3.0, 2.0]))  # 20 s at 25 fps: 500 frames
REF_B = list(zip(range(20, 26), [3.0, 2.0, 3.0, 2.0, 3.0, 3.0]))       # 16 s at 20 fps


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-localize")
    refs = d / "refs"
    a = write_scene_video(refs / "a.mp4", REF_A, fps=25, size=(64, 48), seed=0)
    b = write_scene_video(refs / "b.mp4", REF_B, fps=20, size=(64, 48), seed=0)
    q = recode(a, d / "q.mp4", start_s=5.0, end_s=10.0, fps=20, size=(64, 48))
    cache = d / "cache0"
    clean = localize(q, [a, b], device="cpu", cache=cache)  # a good cache: q, a and b
    assert len(list(cache.rglob("*.npz"))) == 3
    return {"dir": d, "refs": refs, "a": a, "b": b, "q": q, "cache0": cache, "doc": clean.to_doc()}


def run(vids, **kw):
    kw.setdefault("device", "cpu")
    return localize(vids["q"], [vids["a"], vids["b"]], **kw)


# ----------------------------------------------------------------------------- 1. the feature cache
def _entries(root: Path):
    """Video id -> its entry file."""
    out = {}
    for p in root.rglob("*.npz"):
        with np.load(p) as z:
            out[json.loads(str(z["meta"]))["video"]] = p
    return out


def _rewrite(p: Path, rows=None, drop=(), **meta_changes):
    """Rewrite an entry with changed rows or meta, its checksum made to agree (so that what it
    claims, not the checksum, is what gets checked)."""
    with np.load(p) as z:
        feats, meta = z["features"], json.loads(str(z["meta"]))
    if rows is not None:
        feats = rows(feats)
    for k, v in meta_changes.items():
        if isinstance(v, dict):
            meta[k] = {**meta[k], **v}
        else:
            meta[k] = v
    meta["features_sha256"] = hashlib.sha256(np.ascontiguousarray(feats).tobytes()).hexdigest()
    arrays = {"features": feats, "meta": np.array(json.dumps(meta))}
    for k in drop:
        arrays.pop(k)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    p.write_bytes(buf.getvalue())


def _nan_rows(f):
    f = f.copy()
    f[2:5] = np.nan
    return f


def _flip_a_feature_byte(p: Path):
    with np.load(p) as z:
        row = z["features"][7].tobytes()
    data = bytearray(p.read_bytes())
    i = data.find(row)
    assert i > 0
    data[i + 5] ^= 0x10
    p.write_bytes(bytes(data))


TAMPER = {
    # name: (how the entry of reference a is damaged, what the warning must say)
    "another video's entry": (lambda p, e: p.write_bytes(e["b"].read_bytes()),
                              r"it holds the features of another video \(sha256 [0-9a-f]{12}\.\.\.; .*a\.mp4 has"),
    "NaN rows": (lambda p, e: _rewrite(p, rows=_nan_rows), r"3 of 32 rows hold NaN or infinite values"),
    "truncated": (lambda p, e: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                  r"not a readable \.npz \(BadZipFile"),
    "bit-flipped": (lambda p, e: _flip_a_feature_byte(p), r"not a readable \.npz \(BadZipFile: Bad CRC-32"),
    "missing key": (lambda p, e: _rewrite(p, drop=("meta",)), r"missing key 'meta' \(holds \['features'\]\)"),
    "missing meta field": (lambda p, e: _rewrite(p, sha256=None), r"'meta' field 'sha256' has the wrong type"),
    "wrong width": (lambda p, e: _rewrite(p, rows=lambda f: f[:, :100], attrs={"dim": 100}),
                    r"rows of width 100 \(recorded dim 100\), the handcrafted features asked for have width 521"),
    "empty": (lambda p, e: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
    "not an npz": (lambda p, e: p.write_text("features, not really\n"), r"not a readable \.npz"),
    "float64 rows": (lambda p, e: _rewrite(p, rows=lambda f: f.astype(np.float64)),
                     r"features of shape \(32, 521\) and dtype float64, expected a 2-D float32 array"),
    "rows missing": (lambda p, e: _rewrite(p, rows=lambda f: f[:-3]),
                     r"29 rows, expected ceil\(500 frames / 16\) = 32"),
    "other settings": (lambda p, e: _rewrite(p, settings={"step_frames": 8}),
                       r"written for other settings: step_frames 8, expected 16"),
    "frame count": (lambda p, e: _rewrite(p, rows=lambda f: f[:16], n_frames=250),
                    r"250 frames decoded to the end, the video declares 500"),
    "frame rate": (lambda p, e: _rewrite(p, fps=50.0), r"recorded frame rate 50.0, the video's is 25.0"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_bad_cache_entry_is_recomputed_with_one_warning_never_used(vids, tmp_path, capsys, case):
    damage, reason = TAMPER[case]
    root = tmp_path / "cache"
    shutil.copytree(vids["cache0"], root)
    entries = _entries(root)
    target = entries["a"]
    damage(target, entries)
    capsys.readouterr()
    cache = FeatureCache(root)
    res = run(vids, cache=cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    import re

    assert err[0].startswith(f"warning: {target}: bad feature cache entry for {vids['a']}: "), err[0]
    assert re.search(reason, err[0]), err[0]
    assert err[0].endswith("; recomputing and replacing it")
    # never used: the answer is the uncached one, the bad entry counted, and replaced by a good one
    assert res.to_doc() == vids["doc"]
    assert cache.counts() == {"hits": 2, "misses": 1, "bad": 1} and res.cache["bad"] == 1
    again = FeatureCache(root)
    assert run(vids, cache=again).to_doc() == vids["doc"]
    assert again.counts() == {"hits": 3, "misses": 0, "bad": 0} and capsys.readouterr().err == ""
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]  # replaced atomically


def test_nan_rows_no_longer_say_every_reference_was_skipped(vids, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(vids["cache0"], root)
    for p in _entries(root).values():
        _rewrite(p, rows=lambda f: np.full_like(f, np.nan))
    msgs = []
    res = run(vids, cache=FeatureCache(root, warn=msgs.append))
    assert len(msgs) == 3 and all("rows hold NaN" in m for m in msgs)
    assert res.segments and res.to_doc() == vids["doc"]


def test_an_entry_moved_under_the_key_of_a_range_is_refused(vids, tmp_path):
    # the whole video's entry, put where its 5-10 s range belongs: its settings give it away
    root = tmp_path / "cache"
    msgs = []
    first = localize(vids["a"], [vids["b"]], query_range="5:10", device="cpu", cache=FeatureCache(root))
    localize(vids["q"], [vids["a"]], device="cpu", cache=FeatureCache(root))
    by_start = {}
    for p in root.rglob("*.npz"):
        with np.load(p) as z:
            meta = json.loads(str(z["meta"]))
        if meta["video"] == "a":
            by_start[meta["start_frame"]] = p
    assert sorted(by_start) == [0, 125]
    by_start[125].write_bytes(by_start[0].read_bytes())
    again = localize(vids["a"], [vids["b"]], query_range="5:10", device="cpu",
                     cache=FeatureCache(root, warn=msgs.append))
    assert len(msgs) == 1 and "written for other settings: end_s None, expected 10.0" in msgs[0]
    assert again.to_doc() == first.to_doc()


# ----------------------------------------------------------------------------- 2. outputs among inputs
@pytest.fixture()
def fake_run(tmp_path):
    """A run folder whose config names a features file; its checkpoint is garbage (outputs are
    refused before anything is loaded)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    feats = tmp_path / "features.h5"
    feats.write_bytes(b"features")
    (run_dir / "config.json").write_text(json.dumps({
        "baseline": "cgbm", "config": {"hidden": 8, "rank": 2, "feature_dim": 32}, "task": "temporal",
        "dataset": "activitynet", "features": {"kind": "relocbench-hdf5", "source": str(feats), "dim": 32}}))
    (run_dir / "checkpoint-best.pt").write_bytes(b"garbage")
    (run_dir / "log.jsonl").write_text("{}\n")
    return run_dir, feats


def _snapshot(*paths):
    return {p: (p.read_bytes() if p.is_file() else sorted(x.name for x in p.iterdir())) for p in paths}


@pytest.mark.parametrize("option", ["--output-json", "--srt", "--plot"])  # --clip-out: a folder, below
@pytest.mark.parametrize("which", ["query", "reference", "link to a reference"])
def test_localize_output_that_is_an_input_is_refused_even_with_force(vids, tmp_path, option, which):
    target = {"query": vids["q"], "reference": vids["a"]}.get(which)
    if target is None:
        target = tmp_path / "link.mp4"
        target.symlink_to(vids["a"])
    before = _snapshot(vids["q"], vids["a"], vids["b"])
    first = "--output-json" if option != "--output-json" else "--plot"  # checked first, must not be written
    args = ["localize", str(vids["q"]), str(vids["a"]), "--quiet", "--no-cache", "--device", "cpu", "--force",
            first, str(tmp_path / "first.out"), option, str(target)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and f"{option} is the input" in r.output
    assert "--force does not allow this" in r.output
    assert _snapshot(vids["q"], vids["a"], vids["b"]) == before
    assert not (tmp_path / "first.out").exists()  # nothing written before the refusal


def test_localize_outputs_run_folder_and_features_file_are_inputs(vids, fake_run, tmp_path):
    run_dir, feats = fake_run
    before = _snapshot(run_dir / "config.json", run_dir / "checkpoint-best.pt", run_dir / "log.jsonl", feats)
    base = ["localize", str(vids["q"]), str(vids["a"]), "--method", str(run_dir), "--quiet", "--no-cache", "--force"]
    for option, target in (("--output-json", run_dir / "config.json"), ("--srt", run_dir / "checkpoint-best.pt"),
                           ("--plot", feats), ("--output-json", run_dir / "log.jsonl"), ("--clip-out", run_dir)):
        r = CliRunner().invoke(cli, base + [option, str(target)])
        assert r.exit_code == 2, r.output
        assert option in r.output and ("is the input" in r.output or "holds the input" in r.output), r.output
    assert _snapshot(run_dir / "config.json", run_dir / "checkpoint-best.pt", run_dir / "log.jsonl", feats) == before


def test_localize_checks_every_output_before_writing_any(vids, tmp_path):
    out_json = tmp_path / "found.json"
    (tmp_path / "old.png").write_bytes(b"old")
    base = ["localize", str(vids["q"]), str(vids["a"]), "--quiet", "--no-cache", "--output-json", str(out_json)]
    for extra, says in ((["--srt", str(vids["a"])], "--srt is the input"),
                        (["--plot", str(tmp_path / "old.png")], "old.png: exists already"),
                        (["--plot", str(out_json)], "--plot names the same path as --output-json"),
                        (["--clip-out", str(vids["refs"]), "--force"], "--clip-out is a folder that holds the input")):
        r = CliRunner().invoke(cli, base + extra)
        assert r.exit_code == 2 and says in r.output, r.output
        assert not out_json.exists()
    assert (tmp_path / "old.png").read_bytes() == b"old"
    # with several references, every SRT file it may write is checked first
    (tmp_path / "found.b.srt").write_text("old")
    r = CliRunner().invoke(cli, ["localize", str(vids["q"]), str(vids["a"]), str(vids["b"]), "--quiet",
                                 "--no-cache", "--output-json", str(out_json), "--srt", str(tmp_path / "found.srt")])
    assert r.exit_code == 2 and "found.b.srt: exists already" in r.output and not out_json.exists()


def test_writers_refuse_an_input_from_python_too(vids, tmp_path):
    from relocbench.localize import write_json, write_plot

    res = run(vids, cache=vids["cache0"])
    assert str(vids["q"]) in res.inputs and str(vids["b"]) in res.inputs
    for writer in (write_json, write_plot):
        with pytest.raises(ConfigError, match="is the input"):
            writer(res, vids["b"], force=True)
    assert res.to_doc() == vids["doc"]


def test_predict_out_that_is_an_input_is_refused(fake_run, tmp_path):
    run_dir, feats = fake_run
    before = _snapshot(run_dir / "config.json", run_dir / "checkpoint-best.pt", feats)
    for target in (run_dir / "config.json", run_dir / "checkpoint-best.pt", feats):
        r = CliRunner().invoke(cli, ["predict", str(run_dir), "--out", str(target), "--force"])
        assert r.exit_code == 2 and "--out is the input" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert _snapshot(run_dir / "config.json", run_dir / "checkpoint-best.pt", feats) == before
    # a file of the manifest folder or of the features given, from Python
    man = tmp_path / "manifest"
    man.mkdir()
    (man / "pairs.json").write_text("{}")
    with pytest.raises(ConfigError, match="--out is the input"):
        predict_run(run_dir, manifest=str(man), out=man / "pairs.json", force=True)
    other = tmp_path / "other.h5"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="--out is the input"):
        predict_run(run_dir, features=str(other), out=other, force=True)
    assert (man / "pairs.json").read_text() == "{}" and other.read_bytes() == b"x"


# ----------------------------------------------------------------------------- 3. run folders
CGBM = {"hidden": 8, "rank": 2, "feature_dim": 32}


def _state(config=CGBM):
    import torch

    from relocbench.registry import get_baseline

    cls = get_baseline("cgbm")
    torch.manual_seed(0)
    return cls.create_model(cls.default_config(config)).state_dict()


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _make_run(root: Path, name: str, *, checkpoint=None, config=None) -> Path:
    d = root / name
    d.mkdir()
    doc = config if config is not None else {"baseline": "cgbm", "config": CGBM, "task": "temporal",
                                             "dataset": "activitynet", "features": "synthetic"}
    (d / "config.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    data = checkpoint if checkpoint is not None else _torch_bytes({"model": _state(), "step": 1})
    (d / "checkpoint-best.pt").write_bytes(data)
    return d


def _checkpoint_cases():
    good = _torch_bytes({"model": _state(), "step": 1})
    import torch

    return {
        "garbage bytes": (bytes(range(256)) * 4, r"not a readable torch checkpoint \(not the zip archive torch.save"),
        "text": (b"these are not weights\n", r"not the zip archive torch.save writes: it starts with b'these are "),
        "a JSON list": (b"[1, 2, 3]", r"not the zip archive torch.save writes: it starts with b'\[1, 2, 3\]'"),
        "a pickled string": (pickle.dumps("weights"), r"not the zip archive torch.save writes"),
        "empty": (b"", r"the checkpoint is empty \(0 bytes\)"),
        "truncated": (good[: len(good) // 2], r"truncated or damaged: a zip archive without its end"),
        "None": (_torch_bytes(None), r"expected a checkpoint holding 'model' \(a state dict\), found a NoneType"),
        "a string": (_torch_bytes("weights"), r"expected a checkpoint holding 'model' \(a state dict\), found a str"),
        "a list": (_torch_bytes([1, 2]), r"found a list"),
        "None as the state dict": (_torch_bytes({"model": None}),
                                   r"the checkpoint's 'model' must be a state dict \(names -> tensors\), found a "
                                   r"NoneType"),
        "a string as the state dict": (_torch_bytes({"model": "w"}), r"'model' must be a state dict.*found a str"),
        "a pickled object": (_torch_bytes({"model": _state(), "path": Path("/")}),
                             r"UnpicklingError: Unsupported global: GLOBAL pathlib.PosixPath"),
        "another model": (_torch_bytes({"model": torch.nn.Linear(3, 2).state_dict()}),
                          r"the checkpoint's state dict is not one of cgbm \(CrossGatedBilinearMatching\): missing "
                          r"key 'aggregation\.weight_ih_l0' \(and 25 more\), unexpected key 'weight' \(and 1 more\)"),
        "another config": (_torch_bytes({"model": _state({**CGBM, "hidden": 16})}),
                           r"not one of cgbm \(CrossGatedBilinearMatching\): 'aggregation\.weight_ih_l0' has shape "
                           r"\(64, 32\), the model's is \(32, 32\)"),
    }


CONFIG_CASES = {
    "a JSON list": ("[1, 2]",
                    r"expected a run config \(a JSON object with 'baseline' and 'config'\), found a JSON list"),
    "a string": ('"cgbm"', r"found a string"),
    "not JSON": ("{baseline: cgbm", r"config.json"),
    "unknown baseline": (json.dumps({"baseline": "nope", "config": {}}),
                         r"the run's baseline: unknown baseline 'nope'; expected one of \["),
    "baseline a number": (json.dumps({"baseline": 3, "config": {}}), r"'baseline' must be a name, found a number"),
    "config a list": (json.dumps({"baseline": "cgbm", "config": []}), r"'config' must be an object, found a JSON list"),
    "no config": (json.dumps({"baseline": "cgbm"}), r"the run config has no 'config' \(an object\)"),
    "bad value": (json.dumps({"baseline": "cgbm", "config": {"hidden": "x"}, "features": "synthetic"}),
                  r"The 'hidden' parameter must be an int >= 1. Got 'x' instead"),
}


def test_damaged_or_foreign_checkpoints_one_line_naming_the_file(tmp_path):
    for name, (data, says) in _checkpoint_cases().items():
        d = _make_run(tmp_path, name.replace(" ", "-"), checkpoint=data)
        with pytest.raises(ConfigError, match=says) as err:
            load_run(d)
        text = str(err.value)
        assert text.startswith(f"{d / 'checkpoint-best.pt'}: ") and "\n" not in text and len(text) < 330, (name, text)
        assert "weights_only" not in text and "Error(s) in loading" not in text
    assert load_run(_make_run(tmp_path, "good")).model is not None  # the oracle: a good one loads


def test_damaged_run_configs_name_the_file(tmp_path):
    for name, (text, says) in CONFIG_CASES.items():
        d = _make_run(tmp_path, name.replace(" ", "-"), config=text)
        with pytest.raises(ConfigError, match=says) as err:
            load_run(d)
        assert str(err.value).startswith(f"{d / 'config.json'}: "), str(err.value)


def test_cli_predict_and_localize_with_bad_run_folders(vids, tmp_path):
    cases = _checkpoint_cases()
    for name in ("a pickled string", "another model", "None as the state dict"):
        d = _make_run(tmp_path, name.replace(" ", "-"), checkpoint=cases[name][0])
        r = CliRunner().invoke(cli, ["predict", str(d), "--out", str(tmp_path / "p.json"), "--device", "cpu"])
        assert r.exit_code == 2 and r.output.startswith(f"Error: {d / 'checkpoint-best.pt'}: "), r.output
        assert len(r.output.strip().splitlines()) == 1 and "weights_only" not in r.output, r.output
        assert not (tmp_path / "p.json").exists()
    d = tmp_path / "another-model"
    r = CliRunner().invoke(cli, ["localize", str(vids["q"]), str(vids["a"]), "--method", str(d), "--quiet",
                                 "--no-cache", "--device", "cpu"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "missing key 'aggregation.weight_ih_l0'" in r.output and "Traceback" not in r.output
    d = _make_run(tmp_path, "unknown", config=CONFIG_CASES["unknown baseline"][0])
    r = CliRunner().invoke(cli, ["localize", str(vids["q"]), str(vids["a"]), "--method", str(d), "--quiet"])
    assert r.exit_code == 2 and f"{d / 'config.json'}: the run's baseline: unknown baseline 'nope'" in r.output


# ----------------------------------------------------------------------------- 4. bounded sizes
@pytest.mark.parametrize("kw, says", [
    ({"grid_s": 1e-9}, r"--grid \(grid_s\) must be a number of seconds from 0.01 to 60.0. Got 1e-09 instead."),
    ({"grid_s": 61.0}, r"--grid \(grid_s\) .* Got 61.0 instead"),
    ({"grid_s": float("nan")}, r"--grid \(grid_s\) .* Got nan instead"),
    ({"top_k": 1001}, r"--top-k \(top_k\) must be an integer from 1 to 1000. Got 1001 instead."),
    ({"batch_size": 10 ** 6}, r"--batch-size \(batch_size\) must be an integer from 1 to 1024"),
    ({"step_frames": 10 ** 9}, r"--step-frames \(step_frames\) must be an integer from 1 to 4096"),
])
def test_sizes_are_bounded_before_anything_is_allocated(vids, tmp_path, kw, says):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=says):
        run(vids, cache=tmp_path / "c", **kw)
    assert time.perf_counter() - t0 < 2.0 and not (tmp_path / "c").exists()  # nothing extracted or cached


def test_cli_grid_one_line_and_the_bounds_themselves_pass(vids, tmp_path):
    r = CliRunner().invoke(cli, ["localize", str(vids["q"]), str(vids["a"]), "--grid", "1e-9", "--quiet"])
    assert r.exit_code == 2 and r.output.strip() == ("Error: --grid (grid_s) must be a number of seconds from 0.01 "
                                                     "to 60.0. Got 1e-09 instead.")
    r = CliRunner().invoke(cli, ["predict", str(tmp_path), "--threads", "100000"])
    assert r.exit_code == 2 and "--threads must be between 1 and 1024. Got 100000 instead." in r.output
    # the edges are allowed: the grid is one cell per video, the query still searched
    res = run(vids, cache=vids["cache0"], grid_s=60.0, top_k=1, min_score=float("-inf"))  # one cell scores 0
    assert res.query["end"] == 5.0 and [r.curve.shape for r in res.references] == [(1,), (1,)]


def test_matching_memory_is_bounded_naming_grid(vids, monkeypatch):
    import relocbench.localize.core as core

    monkeypatch.setattr(core, "MAX_MATCH_BYTES", 1 << 20)
    with pytest.raises(ConfigError, match=r"--grid 0.05 s gives a query of 100 cells .*window matching would need "
                                          r"about .* GiB, more than the .* GiB allowed; pass a larger --grid"):
        run(vids, cache=vids["cache0"], grid_s=0.05)


# ----------------------------------------------------------------------------- 5. ranges, widths, HDF5
def test_query_range_shorter_than_one_frame_says_so(vids):
    # 25 fps: frames start at 10.00 and 10.04 s; none starts in [10.01, 10.02)
    with pytest.raises(ConfigError, match=r"a\.mp4: the query range 00:00:10\.010 to 00:00:10\.020 is shorter than "
                                          r"one frame: it lasts 10\.0 ms, a frame 40\.0 ms \(25 fps\), and no frame "
                                          r"starts inside it; widen the range") as err:
        localize(vids["a"], [vids["b"]], query_range="10.01:10.02", device="cpu", cache=False)
    assert "end of the video" not in str(err.value)
    # one frame starts in [10.00, 10.02): a one-frame query is searched
    res = localize(vids["a"], [vids["b"]], query_range="10.00:10.02", device="cpu", cache=False)
    assert res.query["start"] == 10.0 and res.query["end"] == 10.04


def test_predict_features_of_another_width_name_both(tmp_path):
    run_dir = _make_run(tmp_path, "run")
    feats = tmp_path / "npy"
    feats.mkdir()
    np.save(feats / "v_x.npy", np.zeros((5, 16), np.float32))
    says = (rf"{feats}: the features' width does not match the run's: found 16-dimensional rows, the run's model "
            rf"takes 32 \({run_dir / 'config.json'}\)")
    with pytest.raises(FeatureError, match=says):
        predict_run(run_dir, split="val", features=str(feats), out=tmp_path / "p.json", device="cpu")


@pytest.mark.parametrize("dim", [32, 16])
def test_predict_run_without_a_card_refuses_features_declared_by_one(tmp_path, dim):
    # a run trained on synthetic features (no card), given a folder declared by a card beside it:
    # refused naming both, whatever the width (the width is checked after)
    run_dir = _make_run(tmp_path, "run")
    feats = tmp_path / "npy"
    feats.mkdir()
    np.save(feats / "v_x.npy", np.zeros((5, dim), np.float32))
    (feats / "features.card.yaml").write_text(
        f"name: mine\nlayout: folder\ntemplate: '{{video}}.npy'\ndim: {dim}\n"
        "time_axis: {kind: clips, fps: native, clip_frames: 16, stride_frames: 16}\n")
    r = CliRunner().invoke(cli, ["predict", str(run_dir), "--split", "val", "--features", str(feats), "--out",
                                 str(tmp_path / "p.json"), "--device", "cpu"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert ("features declared by a feature card, the run's by none: the run was trained on 'synthetic' features "
            f"declared by no feature card ({run_dir / 'config.json'}), {feats} is declared as 'mine'") in r.output
    assert "segments table is empty" not in r.output and not (tmp_path / "p.json").exists()


def test_predict_features_damaged_hdf5_one_line(tmp_path):
    import h5py

    run_dir = _make_run(tmp_path, "run")
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("v_x", data=np.zeros((400, 32), np.float32))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    scribbled = tmp_path / "scribbled.h5"
    scribbled.write_bytes(good.read_bytes()[:8] + b"\xff" * 2000)
    for bad in (truncated, scribbled):
        r = CliRunner().invoke(cli, ["predict", str(run_dir), "--features", str(bad), "--out",
                                     str(tmp_path / "p.json")])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert f"{bad}: not a readable HDF5 features file (truncated or corrupted" in r.output
        with pytest.raises(FeatureError, match="not a readable HDF5 features file"):
            predict_run(run_dir, split="val", features=str(bad), out=tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()


# ----------------------------------------------------------------------------- 6. tables in 80 columns
def test_table_names_tell_paths_apart_and_fit():
    # one depth for all: the shortest tail that tells every path apart
    names = table_names(["/data/x/a.mp4", "/data/y/a.mp4", "/data/y/b.mp4"])
    assert names == {"/data/x/a.mp4": "x/a.mp4", "/data/y/a.mp4": "y/a.mp4", "/data/y/b.mp4": "y/b.mp4"}
    assert table_names(["/data/x/a.mp4", "/data/y/b.mp4"]) == {"/data/x/a.mp4": "a.mp4", "/data/y/b.mp4": "b.mp4"}
    long = "/videos/" + "recording_of_the_lecture_hall_camera_" * 2 + "take_03.mp4"
    short = table_names([long], width=30)[long]
    assert len(short) == 30 and "..." in short and short.startswith("recording_of") and short.endswith("take_03.mp4")
    assert table_names(["clip.mp4"], width=30) == {"clip.mp4": "clip.mp4"}


def test_localize_table_fits_80_columns(vids, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    deep = tmp_path / ("a_folder_with_a_rather_long_name_" * 2) / "and_another_level_of_folders"
    deep.mkdir(parents=True)
    long_ref = deep / "reference_video_recorded_in_the_lecture_hall_2026_camera_2_take_03.mp4"
    shutil.copy(vids["a"], long_ref)
    long_q = deep / "the_query_clip_cut_out_of_the_lecture_hall_recording_camera_2.mp4"
    shutil.copy(vids["q"], long_q)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["localize", str(long_q), str(long_ref), str(vids["b"]), "--quiet", "--device", "cpu",
                                 "--no-cache", "--top-k", "4", "--output-json", str(out)])
    assert r.exit_code == 0, r.output
    assert "(part" not in r.output
    table = [ln for ln in r.output.splitlines() if not ln.startswith("Wrote")]
    assert max(len(ln) for ln in table) <= 80, r.output
    assert "reference_vid" in r.output and "..." in r.output and "_take_03.mp4" in r.output  # both ends kept
    assert json.loads(out.read_text())["segments"][0]["reference"] == str(long_ref)  # full paths in the JSON


# ----------------------------------------------------------------------------- special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_query_or_reference_exits_2_quickly(vids, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    # a real process: opening a FIFO would block it forever
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "relocbench", "localize", str(fifo), str(vids["a"]), "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and time.monotonic() - t0 < 30, r.stderr
    assert r.stderr.strip() == f"Error: {fifo}: expected a regular file (video file), found a FIFO (named pipe)"
    for refs, what in (([fifo], "reference video"), ([tmp_path], "video file in the reference folder")):
        with pytest.raises(InputError, match=rf"pipe\.mp4: expected a regular file \({what}\), found a FIFO"):
            localize(vids["q"], refs, cache=False)
    with pytest.raises(InputError, match=r"/dev/null: expected a regular file \(reference video\), found a character"):
        localize(vids["q"], ["/dev/null"], cache=False)
