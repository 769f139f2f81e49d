"""CLI: build-dataset activitynet, the error contract (one line, exit 2) and --help examples."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from relocbench import __version__
from relocbench.cli import cli


def _args(tiny, out, *extra):
    return ["build-dataset", "activitynet", "--annotations", str(tiny["annotations"]),
            "--lengths", str(tiny["lengths"]), "--class-split", str(tiny["class_split"]),
            "--out", str(out), *extra]


def test_build_prints_summary_and_report(tiny_activitynet, tmp_path):
    res = CliRunner().invoke(cli, _args(tiny_activitynet, tmp_path / "m"))
    assert res.exit_code == 0, res.output
    assert "test" in res.output and "segments longer than 32 steps (dropped): 1" in res.output
    assert (tmp_path / "m" / "manifest.json").is_file()


def test_existing_output_is_refused_with_one_line(tiny_activitynet, tmp_path):
    CliRunner().invoke(cli, _args(tiny_activitynet, tmp_path / "m"))
    res = CliRunner().invoke(cli, _args(tiny_activitynet, tmp_path / "m"))
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0
    assert re.match(r"Error: .*/m: exists already; pass --force", res.output)
    assert CliRunner().invoke(cli, _args(tiny_activitynet, tmp_path / "m", "--force")).exit_code == 0


def test_bad_input_one_line_no_traceback_and_debug_shows_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    args = ["build-dataset", "activitynet", "--annotations", str(bad), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert res.output.startswith(f"Error: {bad}: malformed JSON at line 1")
    res = CliRunner().invoke(cli, ["--debug", *args])
    assert res.exit_code == 2 and "Traceback" in res.output and "InputError" in res.output


def test_export_option(tiny_activitynet, tmp_path):
    res = CliRunner().invoke(cli, _args(tiny_activitynet, tmp_path / "m", "--export", "video-reloc-json",
                                        str(tmp_path / "j")))
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "j" / "test.json").read_text())) == 5


def test_version_and_module_entry_point():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def _all_commands(group, prefix=()):
    import click

    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):  # the group may load its commands lazily
        cmd = group.get_command(ctx, name)
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, path)


@pytest.mark.parametrize("path,cmd", list(_all_commands(cli)), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_command_help_shows_an_example(path, cmd):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "relocbench" in res.output


def test_build_help_example_runs(tmp_path):
    """The example in build-dataset activitynet --help works as written (real data)."""
    from conftest import REPO, shared_file

    shared_file("activitynet")
    res = CliRunner().invoke(cli, ["build-dataset", "activitynet", "--help"])
    text = res.output.split("Example")[1]
    cmd = " ".join(line.strip().rstrip("\\") for line in text.splitlines()[1:6] if line.strip())
    argv = shlex.split(cmd)
    assert argv[:3] == ["relocbench", "build-dataset", "activitynet"]
    # Only the input paths under ../shared and the output paths (the values of --out and
    # --export) are rewritten: the checkout itself may live anywhere, /tmp included.
    outputs = {i + 1 for i, a in enumerate(argv) if a == "--out"} | {i + 2 for i, a in enumerate(argv) if a == "--export"}
    assert outputs and all(argv[i].startswith("/tmp/") for i in outputs), argv
    argv = [str(tmp_path / Path(a).name) if i in outputs
            else str(REPO.parent / "shared" / a[len("../shared/"):]) if a.startswith("../shared/") else a
            for i, a in enumerate(argv)]
    out = CliRunner().invoke(cli, argv[1:])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "activitynet" / "manifest.json").is_file()


def test_python_dash_m_entry_point(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    proc = subprocess.run([sys.executable, "-m", "relocbench", "build-dataset", "activitynet", "--annotations",
                           str(bad), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"Error: {bad}: malformed JSON at line 1, column 6: Expecting ',' delimiter"
    assert not (tmp_path / "o").exists()
