"""Which code a run ran: the git commit of the relocbench source, and whether it was modified.

A result record's ``relocbench`` field is the package version, which stays the same from one
commit to the next; two runs of the same command with the same seed can differ when the code
between them changed (a model's arithmetic, a dropout draw), and the record should say so.
:func:`code_revision` reads the commit of the source tree the running package was imported
from, when that tree is a git checkout of its own (an editable install, a clone run in
place); an installed wheel has no commit to read and gets ``None`` (its version is all there
is). ``modified`` is true when the code the package runs (``relocbench/``, ``baselines/`` and
the packaging files) differs from that commit, untracked files there included: a number
from such a run cannot be reproduced from the commit alone.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Optional, Union

__all__ = ["code_revision", "CODE_PATHS"]

#: The paths of a checkout whose changes change what a run computes.
CODE_PATHS = ("relocbench", "baselines", "setup.cfg", "setup.py", "pyproject.toml")


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.SubprocessError):  # no git here, or it hung
        return None
    return done.stdout if done.returncode == 0 else None


def code_revision(root: Union[str, Path, None] = None) -> Optional[Dict[str, Union[str, bool]]]:
    """``{"commit": <40 hex digits>, "modified": bool}`` of the checkout at ``root`` (default:
    the folder that holds the imported ``relocbench`` package), or ``None`` when ``root`` is not
    the top of a git work tree (an installed package: a site-packages folder inside some other
    repository's tree does not count) or git cannot be run.

    Read again at every call (three git calls, a few milliseconds), not cached: a process that
    runs several runs while its source is edited must record each run's own state."""
    root = Path(__file__).resolve().parent.parent if root is None else Path(root).resolve()
    if not (root / "relocbench").is_dir():
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != root:
        return None
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS)
    if commit is None or status is None:
        return None
    return {"commit": commit.strip(), "modified": bool(status.strip())}
