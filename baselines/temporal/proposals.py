"""A temporal run's ranked predictions as ActivityNet proposal files (for ``activitynet-proposal``).

The SST baseline is an action-proposal model: it writes its ``top_k`` best proposals per
pair after NMS. The official proposal metric (AR@AN and its AUC,
:mod:`relocbench.metrics.proposal`) scores such lists against the ground truth; this module
writes both as that metric reads them, **one "video" per pair** (its id is the pair id):

* ``ground-truth.json``: ``database[pair_id] = {"subset": split, "annotations":
  [{"segment": [gt_start, gt_end], "label": label}]}``, the pair's ground-truth segment;
* ``proposals.json``: ``results[pair_id]`` = the pair's predictions as listed (segment and
  score), in the predictions' unit (steps or seconds, relative to the reference window,
  like the ground truth written beside them).

A pair without predictions stays in the ground truth (the metric scores it as a miss) and is
counted in the report. Then::

    python -m relocbench_baselines.temporal.proposals runs/activitynet/sst --out runs/activitynet/sst/proposals
    relocbench evaluate runs/activitynet/sst/proposals/proposals.json --protocol activitynet-proposal \\
        --ground-truth runs/activitynet/sst/proposals/ground-truth.json --subset test --max-avg-nr-proposals 10

(``--max-avg-nr-proposals`` at most the run's ``top_k``: the curve ends at the number of
proposals per pair.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from relocbench.errors import InputError, RelocbenchError
from relocbench.io import atomic_dir, atomic_write_json, check_output
from relocbench.manifest import load_manifest, open_manifest
from relocbench.metrics.proposal import proposal_documents
from relocbench.predictions import check_provenance, read_predictions

__all__ = ["proposal_documents", "write_proposal_files", "main"]

GROUND_TRUTH_FILE = "ground-truth.json"
PROPOSALS_FILE = "proposals.json"


def write_proposal_files(run_or_predictions: Union[str, Path], out: Union[str, Path], *,
                         manifest: Optional[str] = None, split: Optional[str] = None,
                         force: bool = False) -> Tuple[Path, Dict[str, int]]:
    """Write ``ground-truth.json`` and ``proposals.json`` into folder ``out`` (atomically).

    ``run_or_predictions`` is a run folder (its ``predictions-<split>.json``, ``test`` unless
    ``split`` says otherwise) or a predictions file; ``manifest`` and ``split`` default to the
    ones the predictions file names. Returns the folder and the report.
    """
    src = Path(run_or_predictions)
    if src.is_dir():
        src = src / f"predictions-{split or 'test'}.json"
    if not src.is_file():
        raise InputError("expected a temporal run folder holding predictions-<split>.json, or a predictions "
                         "file; found none", file=src)
    check_output(out, force)  # before the work, not after it
    preds = read_predictions(src, task="temporal")
    manifest = manifest or preds.manifest
    split = split or preds.split
    if not manifest or not split:
        raise InputError("the predictions file names no 'manifest' or 'split'; pass --manifest and --split",
                         file=src)
    check_provenance(preds, open_manifest(manifest).name, split)
    pairs = load_manifest(manifest, split, "pairs")
    gt, proposals, report = proposal_documents(preds, pairs, subset=split)
    with atomic_dir(out, force=force) as tmp:
        atomic_write_json(tmp / GROUND_TRUTH_FILE, gt)
        atomic_write_json(tmp / PROPOSALS_FILE, proposals)
    return Path(out), report


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relocbench_baselines.temporal.proposals",
                                description=__doc__.split("\n\n")[0],
                                epilog="Example: python -m relocbench_baselines.temporal.proposals "
                                       "runs/activitynet/sst --out runs/activitynet/sst/proposals")
    p.add_argument("run", help="temporal run folder (e.g. of sst) or its predictions-<split>.json")
    p.add_argument("--out", required=True, type=Path, help="folder for ground-truth.json and proposals.json")
    p.add_argument("--manifest", default=None, help="manifest name or folder (default: the predictions file's)")
    p.add_argument("--split", default=None, help="split (default: the predictions file's; test for a run folder)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    a = p.parse_args(argv)
    try:
        out, report = write_proposal_files(a.run, a.out, manifest=a.manifest, split=a.split, force=a.force)
    except RelocbenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {out / GROUND_TRUTH_FILE} and {out / PROPOSALS_FILE}: "
          + ", ".join(f"{v} {k}" for k, v in report.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
