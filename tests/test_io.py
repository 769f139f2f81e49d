"""relocbench.io: atomic outputs (concurrent writers, interrupts, SIGTERM), output checks made
before the work, and require_file's wording for every kind of path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relocbench.errors import ConfigError, InputError, OutputExistsError
from relocbench.io import (
    Terminated,
    atomic_dir,
    atomic_write_text,
    check_output,
    check_writable,
    install_sigterm_handler,
    require_file,
)

REPO = Path(__file__).resolve().parent.parent


def _hidden(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------- atomic_dir


def test_atomic_dir_commits_and_refuses_existing(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("1")
    assert (tmp_path / "out" / "a.txt").read_text() == "1"
    with pytest.raises(OutputExistsError, match=r"out: exists already; pass --force"):
        with atomic_dir(tmp_path / "out"):
            raise AssertionError("the body must not run")
    with atomic_dir(tmp_path / "out", force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.txt"]
    assert _hidden(tmp_path) == []


def test_final_rename_refuses_an_output_that_appeared_meanwhile(tmp_path):
    """Two writers of one --out without --force: the one finishing second fails and leaves
    the first one's output as it is (it used to replace it silently)."""
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError, match=r"out: appeared while this command was running .*pass --force"):
        with atomic_dir(out) as tmp:
            (tmp / "mine.txt").write_text("second")
            out.mkdir()  # the other writer finishes first
            (out / "theirs.txt").write_text("first")
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert _hidden(tmp_path) == []


def test_an_empty_folder_that_appeared_is_refused_too(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="appeared while this command was running"):
        with atomic_dir(out) as tmp:
            (tmp / "x").write_text("x")
            out.mkdir()
    assert list(out.iterdir()) == []


def test_force_replaces_an_output_that_appeared_meanwhile(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, force=True) as tmp:
        (tmp / "mine.txt").write_text("x")
        out.mkdir()
        (out / "theirs.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, Terminated, RuntimeError])
def test_interrupted_atomic_dir_leaves_nothing(tmp_path, exc):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(exc):
        with atomic_dir(tmp_path / "out", force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise exc()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.txt"]
    assert _hidden(tmp_path) == []


def test_atomic_write_without_force_refuses_a_file_that_appeared(tmp_path, monkeypatch):
    import relocbench.io as rio

    target = tmp_path / "r.json"
    real = rio._commit

    def racing(tmp, p, force):
        p.write_text("theirs")
        return real(tmp, p, force)

    monkeypatch.setattr(rio, "_commit", racing)
    with pytest.raises(OutputExistsError, match="r.json: appeared while this command was running"):
        atomic_write_text(target, "mine", force=False)
    assert target.read_text() == "theirs"
    assert _hidden(tmp_path) == []


def test_rename_without_renameat2_uses_the_portable_refusal(tmp_path, monkeypatch):
    """Where renameat2 is missing (macOS, old libc), hard links and folder renames refuse."""
    import ctypes

    import relocbench.io as rio

    class NoRenameat2:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", NoRenameat2)
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "x").write_text("x")
    with pytest.raises(OutputExistsError, match="appeared"):
        rio._rename_noreplace(src, tmp_path / "dst")
    rio._rename_noreplace(src, tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not src.exists()
    f = tmp_path / "f.tmp"
    f.write_text("1")
    (tmp_path / "g").write_text("2")
    with pytest.raises(OutputExistsError, match="appeared"):
        rio._rename_noreplace(f, tmp_path / "g")
    rio._rename_noreplace(f, tmp_path / "h")
    assert (tmp_path / "h").read_text() == "1" and not f.exists()


# ------------------------------------------------------------------------- outputs checked first


def test_check_output_refuses_unwritable_places(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"file/out: cannot be created: .*file is a file, not a folder"):
        check_output(tmp_path / "file" / "out", force=False)
    with pytest.raises(ConfigError, match=r"file/a/b/out: cannot be created: .*file is a file"):
        check_output(tmp_path / "file" / "a" / "b" / "out", force=True)
    assert check_output(tmp_path / "new" / "deeper" / "out", force=False) == tmp_path / "new" / "deeper" / "out"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert _hidden(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a Linux /proc")
def test_check_writable_under_proc():
    with pytest.raises(ConfigError, match=r"^/proc/relocbench-out: cannot be written: creating an entry in /proc fails"):
        check_writable("/proc/relocbench-out")


# ------------------------------------------------------------------------- require_file


def test_require_file_names_what_the_path_is(tmp_path):
    with pytest.raises(InputError, match=r"nope.json: lengths file not found$"):
        require_file(tmp_path / "nope.json", "lengths file")
    with pytest.raises(InputError, match=r"expected a regular file \(lengths file\), found a folder$"):
        require_file(tmp_path, "lengths file")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(InputError, match=r"link: lengths file not found: a symbolic link to the missing .*gone$"):
        require_file(tmp_path / "link", "lengths file")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"f/x: lengths file not found: a part of the path is a file"):
        require_file(tmp_path / "f" / "x", "lengths file")
    assert require_file(tmp_path / "f") == tmp_path / "f"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_require_file_fifo_is_neither_a_folder_nor_missing(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InputError, match=r"pipe: expected a regular file \(annotations\), found a FIFO \(named pipe\)$"):
        require_file(tmp_path / "pipe", "annotations")


def test_require_file_device():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    with pytest.raises(InputError, match=r"/dev/null: expected a regular file \(x\), found a character device$"):
        require_file("/dev/null", "x")


# ------------------------------------------------------------------------- SIGTERM


def test_terminated_is_an_interrupt_with_exit_status_143():
    t = Terminated(signal.SIGTERM)
    assert isinstance(t, KeyboardInterrupt) and t.exit_code == 143 and t.signum == signal.SIGTERM


def test_install_sigterm_handler_only_in_the_main_thread():
    import threading

    result = []
    th = threading.Thread(target=lambda: result.append(install_sigterm_handler()))
    th.start()
    th.join()
    assert result == [False]


# A build that pauses, deterministically, while its temporary manifest folder exists: the
# statistics figure is written, then the process says so and waits to be signalled.
_PAUSED_BUILD = r"""
import sys, time
import relocbench.datasets.activitynet as anet

real = anet.histogram_png

def paused(*args, **kwargs):
    real(*args, **kwargs)
    print("paused", flush=True)
    time.sleep(600)

anet.histogram_png = paused
mode, argv = sys.argv[1], sys.argv[2:]
if mode == "library":
    from pathlib import Path
    from relocbench.io import Terminated, install_sigterm_handler
    install_sigterm_handler()
    try:
        anet.build_activitynet(Path(argv[0]), Path(argv[1]), lengths=Path(argv[2]), class_split=Path(argv[3]))
    except Terminated as exc:
        print(f"terminated {exc.exit_code}", flush=True)
        sys.exit(exc.exit_code)
else:
    from relocbench.cli import main
    main(argv)
"""


def _run_until_paused(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_BUILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "paused", (line, proc.stderr.read() if proc.poll() is not None else "")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


def _terminate(proc):
    """SIGTERM, then the process's output; a process that outlives it is killed (no stray job)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_mid_build_leaves_no_temporary_folder_library(tiny_activitynet, tmp_path):
    t = tiny_activitynet
    out = tmp_path / "built"
    proc = _run_until_paused(["library", str(t["annotations"]), str(out), str(t["lengths"]), str(t["class_split"])],
                             tmp_path)
    mid_build = _hidden(tmp_path)
    stdout, stderr = _terminate(proc)
    assert [p for p in mid_build if p.startswith(".built.")]  # it was stopped while its temporary folder existed
    assert proc.returncode == 143, stderr
    assert stdout.strip() == "terminated 143"
    assert not out.exists() and _hidden(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_mid_build_cli_exits_143_with_one_line(tiny_activitynet, tmp_path):
    t = tiny_activitynet
    out = tmp_path / "manifest"
    proc = _run_until_paused(["cli", "build-dataset", "activitynet", "--annotations", str(t["annotations"]),
                              "--lengths", str(t["lengths"]), "--class-split", str(t["class_split"]),
                              "--out", str(out)], tmp_path)
    mid_build = _hidden(tmp_path)
    stdout, stderr = _terminate(proc)
    assert [p for p in mid_build if p.startswith(".manifest.")]
    assert proc.returncode == 143, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("videos:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert not out.exists() and _hidden(tmp_path) == []


class TestOutputAmongInputs:
    """An output that is (or resolves to) one of the inputs is refused, --force or not."""

    def test_same_path_is_refused_even_with_force(self, tmp_path):
        from relocbench.errors import ConfigError
        from relocbench.io import check_output
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"video")
        with pytest.raises(ConfigError, match="is the input .*clip.mp4.*destroy the input"):
            check_output(clip, True, inputs=[clip], option="--out")
        assert clip.read_bytes() == b"video"

    def test_symlink_dotdot_and_hard_link_are_refused(self, tmp_path):
        from relocbench.errors import ConfigError
        from relocbench.io import refuse_output_among_inputs
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"video")
        (tmp_path / "sub").mkdir()
        link = tmp_path / "link.mp4"
        link.symlink_to(clip)
        hard = tmp_path / "hard.mp4"
        os.link(clip, hard)
        for out in (link, tmp_path / "sub" / ".." / "clip.mp4", hard):
            with pytest.raises(ConfigError, match="destroy the input"):
                refuse_output_among_inputs(out, [clip])

    def test_folder_holding_an_input_is_refused_and_others_pass(self, tmp_path):
        from relocbench.errors import ConfigError
        from relocbench.io import refuse_output_among_inputs
        (tmp_path / "videos").mkdir()
        clip = tmp_path / "videos" / "a.mp4"
        clip.write_bytes(b"x")
        with pytest.raises(ConfigError, match="folder that holds the input"):
            refuse_output_among_inputs(tmp_path / "videos", [clip])
        refuse_output_among_inputs(tmp_path / "out.h5", [clip, None])  # a different path passes


class TestSpecialOutputs:
    """A FIFO, socket or device given as an output is never replaced, --force or not."""

    def test_fifo_output_is_refused_with_force(self, tmp_path):
        from relocbench.io import atomic_write_text, check_output
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        with pytest.raises(ConfigError, match="is a FIFO .*, not a file: an output is never written over it"):
            check_output(fifo, True)
        with pytest.raises(ConfigError, match="FIFO"):
            atomic_write_text(fifo, "x", force=True)
        assert fifo.is_fifo()
        assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary file left

    def test_character_device_output_is_refused_with_force(self, tmp_path):
        from relocbench.io import atomic_dir, check_output
        dev = tmp_path / "null"
        try:
            os.mknod(dev, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
        with pytest.raises(ConfigError, match="is a character device, not a file"):
            check_output(dev, True)
        with pytest.raises(ConfigError, match="character device"):
            with atomic_dir(dev, force=True):
                pass
        assert dev.is_char_device()
