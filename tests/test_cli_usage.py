"""Click's own usage errors (unknown command, bad option value, missing argument) print one
line naming the command, like every relocbench error, and exit with status 2."""
import re

import pytest
from click.testing import CliRunner

from relocbench.cli import cli


@pytest.mark.parametrize("args, expected", [
    (["nope"], r"^Error: relocbench: No such command 'nope'\. \(see 'relocbench --help'\)$"),
    (["evaluate"], r"^Error: relocbench evaluate: Missing argument 'PREDICTIONS'\..*--help'\)$"),
    (["build-dataset", "activitynet", "--annotations", "a.json", "--out", "o", "--split-seed", "-3"],
     r"^Error: relocbench build-dataset activitynet: Invalid value for '--split-seed': -3 is not in the range x>=0\."),
    (["run-baseline", "chance", "--no-such-option"], r"^Error: relocbench run-baseline: No such option '--no-such-option'"),
])
def test_usage_errors_are_one_line(args, expected):
    res = CliRunner().invoke(cli, args, prog_name="relocbench")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("Error: ")
    assert re.search(expected, lines[0]), lines[0]


def test_debug_shows_click_usage_error_unchanged():
    res = CliRunner().invoke(cli, ["--debug", "nope"], prog_name="relocbench")
    assert res.exit_code == 2
    assert "Usage:" in res.output  # --debug leaves Click's own report (with usage) in place


def test_debug_after_a_bad_input_shows_the_traceback_and_exits_2(tmp_path):
    bad = tmp_path / "preds.json"
    bad.write_text("{not json")
    plain = CliRunner().invoke(cli, ["evaluate", str(bad), "--protocol", "activitynet-detection",
                                     "--ground-truth", str(bad)], prog_name="relocbench")
    debug = CliRunner().invoke(cli, ["--debug", "evaluate", str(bad), "--protocol", "activitynet-detection",
                                     "--ground-truth", str(bad)], prog_name="relocbench")
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    assert debug.exit_code == 2, debug.output
    assert "Traceback (most recent call last)" in debug.output and "relocbench/" in debug.output
    # the same one-line error closes both
    assert debug.output.strip().splitlines()[-1] == plain.output.strip().splitlines()[-1]
    assert plain.output.strip().splitlines()[-1].startswith("Error: ")
