"""Which code a run ran: ``relocbench.provenance.code_revision`` and the ``code`` field of records."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import relocbench.engine as engine
import tiny_baseline  # noqa: F401  (registers "tiny-test")
from relocbench.errors import ManifestError
from relocbench.leaderboard import validate_record
from relocbench.provenance import code_revision

from test_leaderboard import temporal_record

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed here: nothing to read")


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def checkout(tmp_path):
    """A checkout laid out as relocbench's: the package, the baselines, a README; one commit."""
    root = tmp_path / "src"
    (root / "relocbench").mkdir(parents=True)
    (root / "baselines").mkdir()
    (root / "relocbench" / "__init__.py").write_text("x = 1\n")
    (root / "baselines" / "model.py").write_text("y = 2\n")
    (root / "README.md").write_text("readme\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "first")
    return root


def test_a_clean_checkout_gives_its_commit_unmodified(checkout):
    assert code_revision(checkout) == {"commit": git(checkout, "rev-parse", "HEAD"), "modified": False}


def test_a_changed_or_new_code_file_marks_the_run_modified_and_a_readme_does_not(checkout):
    (checkout / "README.md").write_text("readme, edited\n")
    assert code_revision(checkout)["modified"] is False
    (checkout / "baselines" / "new_model.py").write_text("z = 3\n")  # untracked code runs too
    assert code_revision(checkout)["modified"] is True
    (checkout / "baselines" / "new_model.py").unlink()
    (checkout / "relocbench" / "__init__.py").write_text("x = 2\n")
    assert code_revision(checkout)["modified"] is True


def test_no_commit_outside_a_checkout_of_its_own(checkout, tmp_path):
    # a folder that is not a git work tree
    plain = tmp_path / "plain"
    (plain / "relocbench").mkdir(parents=True)
    assert code_revision(plain) is None
    # an installed package inside some other repository's tree (a venv in a clone) is not that
    # repository's code: only the top of a work tree counts
    site = checkout / "venv" / "site-packages"
    (site / "relocbench").mkdir(parents=True)
    assert code_revision(site) is None
    # a tree without the package
    assert code_revision(checkout / "baselines") is None


def test_the_run_records_the_code_it_ran(small_manifest, tmp_path, monkeypatch):
    code = {"commit": "0123456789abcdef0123456789abcdef01234567", "modified": True}
    monkeypatch.setattr(engine, "code_revision", lambda: code)
    res = engine.run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "run")
    assert res.result["code"] == code
    assert json.loads((tmp_path / "run" / "result.json").read_text())["code"] == code
    assert json.loads((tmp_path / "run" / "config.json").read_text())["code"] == code
    # an installed package: no commit to record, no field
    monkeypatch.setattr(engine, "code_revision", lambda: None)
    res = engine.run_baseline("tiny-test", dataset=str(small_manifest), out=tmp_path / "run2")
    assert "code" not in res.result
    assert "code" not in json.loads((tmp_path / "run2" / "result.json").read_text())


def test_a_record_with_a_malformed_code_field_is_refused(tmp_path):
    rec = {**temporal_record("cgbm", 0, np.arange(20) % 6), "code": {"commit": "ab" * 20, "modified": False}}
    validate_record(rec, file=tmp_path / "r.json")
    for bad, item in (({"modified": False}, "field 'code'"), ({"commit": 7}, "field 'code.commit'"),
                      ({"commit": "ab" * 20, "modified": "yes"}, "field 'code.modified'"), ("abc", "field 'code'")):
        with pytest.raises(ManifestError, match=item):
            validate_record({**rec, "code": bad}, file=tmp_path / "r.json")


def test_the_site_shows_each_runs_code(tmp_path):
    from relocbench.leaderboard_site import build_site

    from test_leaderboard import write

    lb = tmp_path / "lb"
    hits = np.arange(40) % 6
    with_code = {**temporal_record("cgbm", 0, hits), "relocbench": "0.1.0",
                 "code": {"commit": "0123456789abcdef0123456789abcdef01234567", "modified": True}}
    older = {**temporal_record("cgbm", 1, hits), "relocbench": "0.1.0"}   # recorded before commits were
    write(lb, with_code)
    write(lb, older)
    build_site(lb, tmp_path / "site")
    pages = "".join(p.read_text() for p in (tmp_path / "site").rglob("*.html"))
    assert "<th>code</th>" in pages
    assert "relocbench 0.1.0 @ 0123456789ab (modified)" in pages
    assert ">relocbench 0.1.0<" in pages
