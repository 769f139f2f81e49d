"""extract-features and merge-features on bad inputs: one class per test, each a one-line error
(exit 2) naming the file, nothing lost, nothing left behind.

Classes: an output that is one of the inputs; damaged or foreign HDF5 files and journal entries;
bad --list files, --pca-fit, --pca-from, --slurm and --step-frames values; special files (FIFO,
socket, device, folder); leftovers of refused arguments; OpenCV's own log lines; two extractions
racing into one output.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from relocbench.cli import cli
from relocbench.errors import ConfigError, FeatureError, InputError, OutputExistsError
from relocbench.extract import ExtractConfig, extract_videos, make_backbone
from relocbench.extract.api import settings_for
from relocbench.extract.decode import VideoReader, require_video
from relocbench.extract.pca import FeaturePCA, load_pca
from relocbench.extract.synth import write_moving_shapes
from relocbench.extract.writer import FeaturesFile, Journal, OutputLock, lock_path, write_features_file

REPO = Path(__file__).resolve().parent.parent


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _one_line_error(r, *fragments):
    """Exit 2 and a single 'Error: ...' line holding every fragment."""
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in r.output
    return lines[0]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OPENCV_LOG_LEVEL",
              "OPENCV_FFMPEG_LOGLEVEL", "RELOCBENCH_DEBUG"):
        env.pop(k, None)
    return env


def _cmd(*args):
    return [sys.executable, "-m", "relocbench", "extract-features", *map(str, args)]


def _listing(folder: Path):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Tiny clips (three codecs, sizes and rates), broken ones, and features files made from them."""
    d = tmp_path_factory.mktemp("bad-inputs")
    a = write_moving_shapes(d / "a.mp4", n_frames=20, fps=25, size=(32, 24), seed=1)        # mp4v
    b = write_moving_shapes(d / "b.avi", n_frames=12, fps=30, size=(40, 30), seed=2)        # MJPG
    c = write_moving_shapes(d / "c.mkv", n_frames=9, fps=24, size=(32, 24), seed=3)         # XVID
    text = d / "broken" / "text.mp4"
    text.parent.mkdir()
    text.write_text("not a video\n")
    data = write_moving_shapes(d / "broken" / "full.avi", n_frames=60, fps=25, size=(32, 24), seed=4).read_bytes()
    trunc = d / "broken" / "trunc.avi"
    trunc.write_bytes(data[: len(data) // 2])
    feats = d / "h5"
    feats.mkdir()
    plain = feats / "plain.h5"
    extract_videos([a, b], ExtractConfig(), out=plain)
    pca = feats / "pca.h5"
    extract_videos([a, b], ExtractConfig(), out=pca, pca_components=3, pca_fit=[a, b])
    shard0, shard1 = feats / "s0.h5", feats / "s1.h5"
    extract_videos([a, b, c], ExtractConfig(), out=shard0, shard=(0, 2))
    extract_videos([a, b, c], ExtractConfig(), out=shard1, shard=(1, 2))
    return {"d": d, "a": a, "b": b, "c": c, "text": text, "trunc": trunc, "plain": plain, "pca": pca,
            "s0": shard0, "s1": shard1}


# --------------------------------------------------------------------------- 1. output among inputs
@pytest.mark.parametrize("how", ["same", "symlink", "dotdot", "hardlink"])
def test_extract_refuses_an_output_that_is_a_video_even_with_force(w, tmp_path, how):
    video = tmp_path / "clip.mp4"
    shutil.copy(w["a"], video)
    before = video.read_bytes()
    (tmp_path / "sub").mkdir()
    out = {"same": video, "symlink": tmp_path / "link.h5", "dotdot": tmp_path / "sub" / ".." / "clip.mp4",
           "hardlink": tmp_path / "hard.mp4"}[how]
    if how == "symlink":
        out.symlink_to(video)
    if how == "hardlink":
        os.link(video, out)
    _one_line_error(_run(["extract-features", str(video), "--force", "--out", str(out), "--quiet"]),
                    "--out is the input", "--force does not allow this")
    assert video.read_bytes() == before
    assert not list(tmp_path.glob(".*"))   # no journal, lock or temporary file


def test_extract_refuses_the_list_the_pca_from_and_the_pca_fit_files_as_output(w, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(w["a"], video)
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{video}\n")
    _one_line_error(_run(["extract-features", "--list", str(lst), "--force", "--out", str(lst), "--quiet"]),
                    f"{lst}: --out is the input {lst}")
    assert lst.read_text() == f"{video}\n"
    pca = tmp_path / "pca.h5"
    shutil.copy(w["pca"], pca)
    before = pca.read_bytes()
    _one_line_error(_run(["extract-features", str(video), "--pca-from", str(pca), "--force", "--out", str(pca),
                          "--quiet"]), "--out is the input")
    assert pca.read_bytes() == before
    fit = tmp_path / "fit.avi"
    shutil.copy(w["b"], fit)
    _one_line_error(_run(["extract-features", str(video), "--pca", "2", "--pca-fit", str(fit), "--force",
                          "--out", str(fit), "--quiet"]), "--out is the input")
    assert fit.read_bytes() == w["b"].read_bytes()


def test_library_refuses_an_output_among_inputs_with_force_and_resume(w, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(w["a"], video)
    for kw in ({"force": True}, {"resume": True}, {"force": True, "resume": True}):
        with pytest.raises(ConfigError, match="--out is the input"):
            extract_videos([video], ExtractConfig(), out=video, **kw)
    assert video.read_bytes() == w["a"].read_bytes()


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_merge_refuses_an_output_that_is_a_shard(w, tmp_path, how):
    s0, s1 = tmp_path / "s0.h5", tmp_path / "s1.h5"
    shutil.copy(w["s0"], s0)
    shutil.copy(w["s1"], s1)
    out = {"same": s0, "hardlink": tmp_path / "m.h5", "symlink": tmp_path / "ln.h5"}[how]
    if how == "hardlink":
        os.link(s1, out)
    if how == "symlink":
        out.symlink_to(s1)
    _one_line_error(_run(["merge-features", "--force", "--out", str(out), str(s0), str(s1)]), "--out is the input")
    assert s0.read_bytes() == w["s0"].read_bytes() and s1.read_bytes() == w["s1"].read_bytes()
    r = _run(["merge-features", "--out", str(tmp_path / "merged.h5"), str(s0), str(s1)])
    assert r.exit_code == 0 and "Merged 3 video(s) from 2 shard(s)" in r.output, r.output


def test_an_output_that_is_a_device_a_fifo_or_a_folder_is_refused_even_with_force(w, tmp_path):
    """Replacing a device node or a FIFO with the features file would destroy it. (Only nodes made
    in tmp_path are used: a regression must not be able to replace the system's /dev/null.)"""
    import stat

    specials = {}
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    specials[fifo] = "a FIFO (named pipe)"
    try:
        os.mknod(tmp_path / "null.h5", 0o666 | stat.S_IFCHR, os.makedev(1, 3))   # a copy of /dev/null's node
        specials[tmp_path / "null.h5"] = "a character device"
    except (PermissionError, OSError):
        pass  # not allowed to make device nodes here: the FIFO stands for them
    for out, kind in specials.items():
        _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(out), "--force", "--quiet"]),
                        f"{out}: --out is {kind}, not a file: an output is never written over it")
        _one_line_error(_run(["merge-features", "--out", str(out), "--force", str(w["s0"])]), f"--out is {kind}")
        assert not out.is_file() and not stat.S_ISREG(os.lstat(out).st_mode)
    # (click refuses a folder as --out; the library functions do too)
    from relocbench.extract import merge_features

    folder = tmp_path / "out.h5"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"out\.h5: --out is a folder"):
        extract_videos([w["a"]], ExtractConfig(), out=folder, force=True)
    with pytest.raises(ConfigError, match=r"out\.h5: --out is a folder"):
        merge_features(folder, [w["s0"]], force=True)
    assert (folder / "keep.txt").read_text() == "x"
    assert _listing(tmp_path) == sorted(["out.h5", *(p.name for p in specials)])


# --------------------------------------------------------------------------- 2. damaged HDF5 and journals
def _damaged(w, folder: Path):
    """{name: path} of damaged or foreign copies of a real features file with a PCA."""
    data = w["pca"].read_bytes()
    folder.mkdir(exist_ok=True)
    out = {}

    def put(name, payload):
        out[name] = folder / f"{name}.h5"
        out[name].write_bytes(payload)

    put("truncated", data[: len(data) // 2])
    put("truncated-header", data[:100])
    scribbled = bytearray(data)
    scribbled[800:864] = bytes(range(64))      # an object header: h5py cannot read the root group
    put("scribbled", bytes(scribbled))
    put("text", b"features of a.mp4, b.avi\n")
    put("empty", b"")
    foreign = folder / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("a", data=np.zeros((2, 3), np.float32))
    out["foreign"] = foreign
    for name, edit in (("settings-not-json", lambda f: f.attrs.__setitem__("settings", "{backbone: handcrafted")),
                       ("settings-a-list", lambda f: f.attrs.__setitem__("settings", "[1, 2]")),
                       ("no-sha256", lambda f: f["a"].attrs.__delitem__("sha256")),
                       ("fps-a-word", lambda f: f["a"].attrs.__setitem__("fps", "fast")),
                       ("nan-rows", lambda f: f["a"].__setitem__((0, 0), np.nan)),
                       ("pca-without-mean", lambda f: f["_relocbench_pca"].__delitem__("mean")),
                       ("layout-unknown", lambda f: f.attrs.__setitem__("layout", "c4d"))):
        p = folder / f"{name}.h5"
        shutil.copy(w["pca"], p)
        with h5py.File(p, "r+") as f:
            edit(f)
        out[name] = p
    return out


DAMAGED = ["truncated", "truncated-header", "scribbled", "text", "empty", "foreign", "settings-not-json",
           "settings-a-list", "no-sha256", "fps-a-word", "nan-rows", "pca-without-mean", "layout-unknown"]


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_features_files_give_one_line_errors_in_every_role(w, tmp_path, name):
    bad = _damaged(w, tmp_path / "bad")[name]
    # as a merge-features input
    r = _run(["merge-features", "--out", str(tmp_path / "m.h5"), str(w["pca"]), str(bad)])
    _one_line_error(r, f"{bad}")
    assert not (tmp_path / "m.h5").exists()
    # as the output a --resume continues (the earlier file is left as it was)
    out = tmp_path / "resume.h5"
    shutil.copy(bad, out)
    r = _run(["extract-features", str(w["a"]), str(w["b"]), "--out", str(out), "--resume", "--pca", "3",
              "--pca-fit", str(w["a"]), "--pca-fit", str(w["b"]), "--quiet"])
    _one_line_error(r, f"{out}")
    assert out.read_bytes() == bad.read_bytes()
    # as --pca-from (only the PCA is read: damage elsewhere in the file may go unnoticed there)
    if name not in ("settings-not-json", "settings-a-list", "no-sha256", "fps-a-word", "nan-rows",
                    "layout-unknown"):
        r = _run(["extract-features", str(w["a"]), "--pca-from", str(bad), "--out", str(tmp_path / "p.h5"),
                  "--quiet"])
        _one_line_error(r, f"{bad}")
    assert not list(tmp_path.glob(".*"))


def test_damaged_files_raise_feature_error_naming_file_item_and_what_was_expected(w, tmp_path):
    bad = _damaged(w, tmp_path)

    def read(p):
        with FeaturesFile(p) as ff:
            return [ff.load(v) for v in ff.index()], ff.pca

    cases = {
        "truncated": r"truncated\.h5: unreadable HDF5 file, truncated or damaged \(.*truncated file.*\); expected a "
                     "features file written by relocbench extract-features",
        "text": r"text\.h5: not an HDF5 file; expected a features file",
        "empty": r"empty\.h5: not an HDF5 file",
        "foreign": r"foreign\.h5: lacks the 'relocbench_features' attribute",
        "settings-not-json": r"settings-not-json\.h5: attribute 'settings' is not JSON",
        "settings-a-list": r"attribute 'settings' holds JSON list; expected a JSON object",
        "no-sha256": r"no-sha256\.h5: a: lacks the 'sha256' attribute",
        "fps-a-word": r"fps-a-word\.h5: a: attribute 'fps' is 'fast' \(str\); expected a finite number > 0",
        "nan-rows": r"nan-rows\.h5: a: 1 row\(s\) hold NaN or infinity",
        "pca-without-mean": r"pca-without-mean\.h5: _relocbench_pca: the fitted PCA lacks the dataset 'mean'",
        "layout-unknown": r"attribute 'layout' is 'c4d'; expected one of \['relocbench', 'c3d'\]",
    }
    for name, match in cases.items():
        with pytest.raises(FeatureError, match=match):
            read(bad[name])
    with pytest.raises(FeatureError, match=r"pca-without-mean\.h5: _relocbench_pca: .*lacks the dataset 'mean'"):
        load_pca(bad["pca-without-mean"])
    with pytest.raises(FeatureError, match=r"HDF5 file not found|features file not found|not found"):
        read(tmp_path / "missing.h5")


def test_scribbled_bytes_anywhere_never_give_a_traceback(w, tmp_path):
    """A seeded sweep of 16-byte scribbles over a real file: each read either works or raises a
    one-line FeatureError/ConfigError (h5py's own exceptions never escape)."""
    data = w["pca"].read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"read": 0, "refused": 0}
    for off in sorted(rng.choice(len(data) - 16, size=16, replace=False)):
        b = bytearray(data)
        b[off:off + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        p = tmp_path / f"s{off}.h5"
        p.write_bytes(bytes(b))
        try:
            with FeaturesFile(p) as ff:
                for v in ff.index():
                    ff.load(v)
                ff.pca
            load_pca(p)
            outcomes["read"] += 1
        except (FeatureError, ConfigError) as exc:
            assert str(p) in str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 1 and sum(outcomes.values()) == 16


def _journal_for(out: Path) -> Journal:
    cfg = ExtractConfig()
    j = Journal(out)
    j.start(settings_for(make_backbone(cfg), cfg))
    return j


@pytest.mark.parametrize("payload,match", [
    (b"not a zip archive", r"unreadable journal entry \("),
    (b"PK\x03\x04" + b"\x00" * 40, r"unreadable journal entry \("),
    ("missing-key", r"malformed journal entry: its header's 'sha256' is None, not a string"),
    ("nan-rows", r"malformed journal entry: its rows are float32 of shape \(2, 3\), not finite float rows"),
    ("misnamed", r"malformed journal entry: it holds the video 'a', whose entry is 86f7e437"),
])
def test_a_bad_journal_entry_is_one_line_naming_it(w, tmp_path, payload, match):
    import io

    out = tmp_path / "features.h5"
    j = _journal_for(out)
    entry = j.dir / ("0" * 40 + ".npz") if isinstance(payload, bytes) else j._file("a")
    if isinstance(payload, bytes):
        entry.write_bytes(payload)
    else:
        from relocbench.io import sha256_file

        # the header names a.mp4 as it is, so the entry is kept and its rows are read
        meta = {"video": "a", "fps": 25.0, "n_frames": 20, "source": str(w["a"]), "sha256": sha256_file(w["a"])}
        rows = np.ones((2, 3), np.float32)
        if payload == "missing-key":
            del meta["sha256"]
        elif payload == "nan-rows":
            rows[1, 2] = np.inf
        else:
            entry = j.dir / ("0" * 40 + ".npz")
        buf = io.BytesIO()
        np.savez(buf, features=rows, meta=np.frombuffer(__import__("json").dumps(meta).encode(), np.uint8))
        entry.write_bytes(buf.getvalue())
    with pytest.raises(FeatureError, match=match):
        extract_videos([w["a"]], ExtractConfig(), out=out, resume=True)
    line = _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(out), "--resume", "--quiet"]),
                           str(entry), "remove it to extract that video again")
    assert "Traceback" not in line and not out.exists()


def test_bad_journal_settings_are_one_line(w, tmp_path):
    out = tmp_path / "features.h5"
    j = _journal_for(out)
    (j.dir / "settings.json").write_bytes(b"{\"backbone\": \xff}")
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(out), "--resume", "--quiet"]),
                    "settings.json: unreadable journal settings", "pass --force to start over")
    r = _run(["extract-features", str(w["a"]), "--out", str(out), "--force", "--quiet"])
    assert r.exit_code == 0 and "1 video(s) extracted" in r.output, r.output


# --------------------------------------------------------------------------- 3. lists, PCA, Slurm, step
def test_list_files_not_utf8_empty_or_only_comments_are_named(w, tmp_path):
    lst = tmp_path / "videos.txt"
    lst.write_bytes(f"{w['a']}\n# caf\xe9\n".encode("latin-1"))
    _one_line_error(_run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "o.h5")]),
                    f"{lst}: line 2: not UTF-8 text (byte 0xe9 at offset {len(str(w['a'])) + 6})")
    for text, n in (("", 0), ("# only a comment\n\n   \n# another\n", 4)):
        lst.write_text(text)
        _one_line_error(_run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "o.h5")]),
                        f"{lst}: video list names no video ({n} line(s), all blank or # comments)")
    lst.write_text(f"\ufeff# a BOM and a relative path\n{os.path.relpath(w['a'], tmp_path)}\n")
    r = _run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "o.h5"), "--quiet"])
    assert r.exit_code == 0 and "1 video(s) extracted" in r.output, r.output
    lst.write_text(f"{'x' * 5000}.mp4\n")
    _one_line_error(_run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "o.h5")]),
                    "(File name too long) (from", "line 1")
    lst.write_text("bad\x00name.mp4\n")
    _one_line_error(_run(["extract-features", "--list", str(lst), "--out", str(tmp_path / "o.h5")]),
                    f"{lst}: line 1: holds a NUL character")
    _one_line_error(_run(["extract-features", "--list", str(tmp_path / "nope.txt"), "--out",
                          str(tmp_path / "o2.h5")]), "nope.txt: video list not found")
    assert not (tmp_path / "o2.h5").exists()


def test_pca_fit_videos_that_all_fail_are_named(w, tmp_path):
    out = tmp_path / "o.h5"
    line = _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(out), "--pca", "2", "--pca-fit",
                                 str(w["text"]), "--pca-fit", str(w["trunc"]), "--quiet"]),
                           "no rows to fit the PCA on: all 2 --pca-fit video(s) failed:", f"{w['text']} (unreadable "
                           "video", f"{w['trunc']} (truncated video", "1 finished video(s) kept in")
    assert "--resume" in line and not out.exists()
    # a --pca-fit path that does not exist is refused before any work
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "o2.h5"), "--pca", "2",
                          "--pca-fit", str(tmp_path / "gone.mp4")]), "gone.mp4: video file not found (a --pca-fit "
                                                                      "video)")
    assert not (tmp_path / ".o2.h5.parts").exists()


def test_pca_from_of_another_width_names_the_file_and_both_widths(w, tmp_path):
    other = tmp_path / "pca10.h5"
    pca = FeaturePCA(mean=np.zeros(10), components=np.eye(3, 10), explained_variance_ratio=np.full(3, 0.1),
                     n_fit_rows=5, n_fit_videos=1)
    write_features_file(other, [], {"step_frames": 16, "backbone": "other", "dim": 3}, pca=pca)
    _one_line_error(_run(["extract-features", str(w["a"]), "--pca-from", str(other), "--out",
                          str(tmp_path / "o.h5"), "--quiet"]),
                    f"{other}: its PCA takes rows of 10 values, the backbone 'handcrafted' gives 521")
    assert _listing(tmp_path) == ["pca10.h5"]
    from relocbench.extract import extract_video

    with pytest.raises(ConfigError, match=r"pca10\.h5: its PCA takes rows of 10 values"):
        extract_video(w["a"], ExtractConfig(pca=str(other)))


def test_slurm_without_slurm_is_one_line(w, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "o.h5"), "--slurm", "gpu",
                          "--quiet"]), "--slurm gpu: sbatch and srun not found on PATH",
                    "--slurm-cluster local")
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "o.h5"), "--slurm", "gpu",
                          "--slurm-cluster", "slurm", "--quiet"]), "sbatch and srun not found")
    assert _listing(tmp_path) == []
    # sizes are bounded before anything is submitted (1e20 tasks would never finish being listed)
    for opt, value, match in (("--slurm-array", "100000000000000000000", "more array tasks than there are videos"),
                              ("--slurm-time", "0", "'slurm_time' parameter must be an int in [1, 1000000]"),
                              ("--slurm-cpus", "-2", "'slurm_cpus' parameter must be an int in [1, 1000000]")):
        _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "o.h5"), "--slurm", "gpu",
                              "--slurm-cluster", "local", opt, value, "--quiet"]), match)
    assert _listing(tmp_path) == []


def test_step_frames_beyond_any_frame_count(w, tmp_path):
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "o.h5"), "--step-frames",
                          str(10 ** 20), "--quiet"]), "'step_frames' parameter must be an int in [1, 2147483647]")
    assert _listing(tmp_path) == []
    out = tmp_path / "big.h5"
    r = _run(["extract-features", str(w["a"]), "--out", str(out), "--step-frames", str(2 ** 31 - 1), "--quiet"])
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert f["a"].shape == (1, 521)                      # ceil(20 / (2^31 - 1)) = 1 row
        assert f.attrs["step_frames"] == 2 ** 31 - 1 and f.attrs["step_frames"].dtype.kind == "i"


# --------------------------------------------------------------------------- 4. special files
def test_a_fifo_is_refused_at_once_not_read(tmp_path):
    """Opening a FIFO blocks until a writer comes: the path is refused by what it is, before
    anything opens it (as an argument, in a --list, in a folder)."""
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    lst = tmp_path / "list.txt"
    lst.write_text("clip.mp4\n")
    for args, where in (([fifo], "(from argument)"), (["--list", lst], f"(from {lst} line 1)")):
        t0 = time.monotonic()
        r = subprocess.run(_cmd(*args, "--out", tmp_path / "o.h5", "--quiet"), capture_output=True, text=True,
                           env=_env(), timeout=60, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"Error: {fifo}: expected a regular file (video file), found a FIFO (named " \
                                   f"pipe) {where}"
        assert "not found" not in r.stderr and time.monotonic() - t0 < 30
    # as the --pca-from file and as a merge-features shard
    for cmd in (_cmd(tmp_path / "lst.mp4", "--pca-from", fifo, "--out", tmp_path / "o.h5"),
                [sys.executable, "-m", "relocbench", "merge-features", "--out", str(tmp_path / "m.h5"), str(fifo)]):
        if "extract-features" in cmd:
            shutil.copy(lst, tmp_path / "lst.mp4")   # any regular file: the PCA file is read first
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
        assert r.returncode == 2 and r.stderr.strip() == (f"Error: {fifo}: expected a regular file (HDF5 file), "
                                                          "found a FIFO (named pipe)"), r.stderr
    # in a folder: listed, refused by what it is and counted as failed (never skipped, never opened)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "f.mp4")
    r = subprocess.run(_cmd(folder, "--out", tmp_path / "o.h5", "--quiet"), capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "1 failed" in r.stdout and "f.mp4: expected a regular file (video file), found a FIFO" in r.stdout


def test_an_empty_video_among_others_is_counted_as_failed_not_fatal(w, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    r = _run(["extract-features", str(w["a"]), str(empty), "--out", str(tmp_path / "o.h5"), "--quiet"])
    assert r.exit_code == 0 and "1 video(s) extracted, 0 kept from an earlier run, 1 failed" in r.output, r.output
    assert f"failed: {empty}: unreadable video: the file is empty (0 bytes)" in r.output


def test_devices_sockets_and_folders_are_named_not_not_found(w, tmp_path):
    sock_path = tmp_path / "s.mp4"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(sock_path))
        for path, kind in (("/dev/null", "a character device"), (str(sock_path), "a socket")):
            line = _one_line_error(_run(["extract-features", path, "--out", str(tmp_path / "o.h5")]),
                                   f"{path}: expected a regular file (video file), found {kind}")
            assert "not found" not in line
            with pytest.raises(InputError, match=f"found {kind}"):
                VideoReader(path).open()
            with pytest.raises(InputError, match=f"found {kind}"):
                require_video(path)
    finally:
        s.close()
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(InputError, match=r"d\.mp4: expected a regular file \(video file\), found a folder"):
        require_video(tmp_path / "d.mp4")
    with pytest.raises(InputError, match=r"nope\.mp4: video file not found"):
        require_video(tmp_path / "nope.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(InputError, match=r"link\.mp4: video file not found: a symbolic link to the missing"):
        require_video(tmp_path / "link.mp4")


def test_frame_source_videos_refuse_special_files(tmp_path):
    from relocbench.video.frames import FrameSource, VideoFile

    os.mkfifo(tmp_path / "v.mp4")
    with pytest.raises(FeatureError, match=r"v\.mp4: expected a regular file \(video file\), found a FIFO"):
        len(VideoFile(tmp_path / "v.mp4"))
    src = FrameSource(tmp_path, layout="videos", fps=25.0)
    with pytest.raises(FeatureError, match="found a FIFO"):
        src.duration_s("v")
    with pytest.raises(FeatureError, match="found a character device"):
        len(VideoFile("/dev/null"))


# --------------------------------------------------------------------------- 5. leftovers
@pytest.mark.parametrize("extra,match", [
    (["--layout", "c3d", "--step-frames", "12"], "--layout c3d needs --step-frames a multiple of 8"),
    (["--pca", "0", "--pca-fit", "A"], "The 'pca' parameter (--pca N) must be an int >= 1. Got 0"),
    (["--pca", "-3", "--pca-fit", "A"], "must be an int >= 1. Got -3"),
    (["--pca", "600", "--pca-fit", "A"], "--pca 600: the backbone 'handcrafted' gives rows of 521 values"),
    (["--pca", "2"], "--pca N needs --pca-fit VIDEOS"),
    (["--pca", "2", "--pca-fit", "A", "--pca-from", "PCA"], "give either a PCA to fit"),
    (["--pca", "2", "--pca-fit", "A", "--shard", "0/2"], "a sharded run cannot fit a PCA"),
    (["--workers", "-1"], "The 'workers' parameter must be an int >= 0"),
])
def test_a_refused_argument_leaves_nothing_behind(w, tmp_path, extra, match):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    extra = [str(w["a"]) if x == "A" else str(w["pca"]) if x == "PCA" else x for x in extra]
    before = _listing(tmp_path), _listing(out_dir)
    _one_line_error(_run(["extract-features", str(w["a"]), str(w["b"]), "--out", str(out_dir / "f.h5"), *extra,
                          "--quiet"]), match)
    assert (_listing(tmp_path), _listing(out_dir)) == before
    _one_line_error(_run(["extract-features", str(w["a"]), "--out", str(tmp_path / "new" / "deep" / "f.h5"),
                          *extra, "--quiet"]), match)
    assert not (tmp_path / "new").exists()


def test_c3d_layout_refused_by_write_features_file_leaves_no_tmp(tmp_path):
    from relocbench.extract.writer import Entry

    e = Entry(video="a", features=np.zeros((2, 3), np.float32), fps=25.0, n_frames=20, source="a", sha256="0")
    with pytest.raises(ConfigError, match="multiple of 8"):
        write_features_file(tmp_path / "f.h5", [e], {"step_frames": 12}, layout="c3d")
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- 6. OpenCV's own lines
@pytest.mark.parametrize("name", ["text", "trunc"])
def test_stderr_of_a_broken_video_is_exactly_our_one_line(w, tmp_path, name):
    r = subprocess.run(_cmd(w[name], "--out", tmp_path / "o.h5", "--strict", "--quiet"), capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: stopped at the first failed video"), r.stderr
    assert "WARN" not in r.stderr and "cap.cpp" not in r.stderr and "@ 0x" not in r.stderr


def test_the_users_opencv_log_level_is_kept(w, tmp_path):
    """OPENCV_LOG_LEVEL set by the user is left alone: OpenCV's warning then shows."""
    env = dict(_env(), OPENCV_LOG_LEVEL="WARNING")
    r = subprocess.run(_cmd(w["text"], "--out", tmp_path / "o.h5", "--strict", "--quiet"), capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2 and "cap.cpp" in r.stderr, r.stderr


def test_quiet_opencv_restores_the_level_it_found():
    import cv2.utils.logging as log

    from relocbench.extract.decode import quiet_opencv

    if "OPENCV_LOG_LEVEL" in os.environ:
        pytest.skip("OPENCV_LOG_LEVEL is set: quiet_opencv leaves the level alone")
    old = log.getLogLevel()
    try:
        log.setLogLevel(log.LOG_LEVEL_INFO)
        with quiet_opencv():
            assert log.getLogLevel() == log.LOG_LEVEL_ERROR
            with quiet_opencv():
                assert log.getLogLevel() == log.LOG_LEVEL_ERROR
            assert log.getLogLevel() == log.LOG_LEVEL_ERROR
        assert log.getLogLevel() == log.LOG_LEVEL_INFO
    finally:
        log.setLogLevel(old)


# --------------------------------------------------------------------------- 7. racing extractions
_HELD = """
import os, sys, time
from relocbench.extract import writer
real = writer.Journal.add
def add(self, entry):
    real(self, entry)
    open(sys.argv[1], "w").close()            # the first video is in the journal
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.02)
writer.Journal.add = add
from relocbench.cli import main
main(sys.argv[3:])
"""


def test_a_second_extraction_into_the_same_output_is_told_another_is_writing(w, tmp_path):
    out = tmp_path / "features.h5"
    started, go = tmp_path / "started", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", _HELD, str(started), str(go), "extract-features", str(w["a"]),
                              str(w["b"]), str(w["c"]), "--out", str(out), "--quiet"], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), first.communicate(timeout=30)
        second = subprocess.run(_cmd(w["a"], w["b"], w["c"], "--out", out, "--quiet"), capture_output=True,
                                text=True, env=_env(), timeout=60)
        assert second.returncode == 2
        assert second.stderr.strip() == (f"Error: another extraction is writing {out} (pid {first.pid}); wait for "
                                         "it to finish or choose another --out")
        for flags in (["--resume"], ["--force"]):   # neither takes the running one's journal
            again = subprocess.run(_cmd(w["a"], "--out", out, "--quiet", *flags), capture_output=True, text=True,
                                   env=_env(), timeout=60)
            assert again.returncode == 2 and "another extraction is writing" in again.stderr, again.stderr
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert "3 video(s) extracted, 0 kept from an earlier run, 0 failed" in stdout
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["a", "b", "c"]
    assert _listing(tmp_path) == ["features.h5", "go", "started"]   # no journal, no lock file


def test_an_output_in_new_folders_is_locked_and_leaves_only_itself(w, tmp_path):
    out = tmp_path / "new" / "deep" / "features.h5"
    s = extract_videos([w["a"]], ExtractConfig(), out=out)
    assert s.extracted == 1 and _listing(out.parent) == ["features.h5"]


def test_a_stale_lock_of_a_dead_process_does_not_block(w, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    out = tmp_path / "features.h5"
    lock_path(out).write_text(dead.stdout)
    s = extract_videos([w["a"]], ExtractConfig(), out=out)
    assert s.extracted == 1 and not lock_path(out).exists()


def test_the_lock_in_one_process(tmp_path):
    out = tmp_path / "features.h5"
    with OutputLock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputExistsError, match=rf"another extraction is writing {out} \(pid {os.getpid()}\)"):
            OutputLock(out).acquire()
        with pytest.raises(OutputExistsError, match="another extraction is writing"):
            extract_videos([tmp_path / "never-read.mp4"], ExtractConfig(), out=out)
    assert not lock_path(out).exists()
    with OutputLock(out):
        pass
    assert _listing(tmp_path) == []
