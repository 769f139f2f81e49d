"""Startup: ``relocbench --version`` and ``--help`` import no heavy module (speed is measured
in benchmarks/bench_evaluate.py); commands load only when they run or show their help."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

HEAVY = ("numpy", "pandas", "pyarrow", "torch", "matplotlib", "relocbench.manifest", "relocbench.metrics")

PROBE = """
import json, sys
from relocbench.cli import main
try:
    main({args!r})
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas', 'pyarrow', 'torch',
      'matplotlib') or m.startswith('relocbench.'))), file=sys.stderr)
"""


def imported_after(args):
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True,
                       timeout=120)
    return r.stdout, set(json.loads(r.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["evaluate", "--help"]])
def test_version_and_help_import_nothing_heavy(args):
    out, mods = imported_after(args)
    assert out.strip()
    assert not [m for m in mods if m.startswith(HEAVY)], sorted(mods)


def test_listing_commands_imports_no_command_module():
    out, mods = imported_after(["--help"])
    assert "evaluate" in out and "build-dataset" in out
    assert "relocbench.cli.evaluate" not in mods and "relocbench.cli.baselines" not in mods


def test_package_attributes_load_on_first_use():
    code = ("import sys, relocbench; assert 'relocbench.manifest' not in sys.modules; "
            "f = relocbench.load_manifest; assert 'relocbench.manifest' in sys.modules; "
            "assert f is relocbench.manifest.load_manifest; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr
    import relocbench

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        relocbench.nope  # noqa: B018
    assert "load_manifest" in dir(relocbench)


def test_command_table_rows_load_lazily_and_missing_modules_are_left_out(monkeypatch):
    from relocbench import cli as cli_pkg

    monkeypatch.setitem(cli_pkg.COMMANDS, "not-yet", ("no_such_module", "cmd", "A command still to come."))
    r = CliRunner().invoke(cli_pkg.cli, ["--help"])
    assert r.exit_code == 0 and "not-yet" not in r.output
    r = CliRunner().invoke(cli_pkg.cli, ["not-yet"])
    assert r.exit_code == 2 and "No such command 'not-yet'" in r.output
    for name in ("evaluate", "build-dataset"):
        assert name in cli_pkg.COMMANDS
        r = CliRunner().invoke(cli_pkg.cli, [name, "--help"])
        assert r.exit_code == 0 and "Example" in r.output


def test_every_row_names_a_command_with_that_name():
    import importlib

    from relocbench import cli as cli_pkg

    for name, (module, attr, short) in cli_pkg.COMMANDS.items():
        if importlib.util.find_spec(f"relocbench.cli.{module}") is None:
            continue
        cmd = getattr(importlib.import_module(f"relocbench.cli.{module}"), attr)
        assert cmd.name == name and short
