"""The leaderboard: one result record per seed under ``results/<board>/<baseline>/seed-<k>.json``.

A *board* is one section of the leaderboard: by default the dataset's name; runs at another
budget of the same dataset go to their own board (``activitynet-paper``: the paper's batch
and steps) so that every table compares runs made alike. A single file
``results/<board>/<baseline>.json`` (the layout before seeds) still reads, as one seed.

A *recipe* other than the baseline's default (``config.recipe``, e.g. cgbm's ``original``)
is part of a row's identity: its records go to ``results/<board>/<baseline>@<recipe>/`` and
its row is ``<baseline> (<recipe> recipe)`` (:func:`record_recipe`, :func:`row_name`), in
the same tables as the default recipe's row, right after it, compared with the same full
model (in a group of tables that holds the full model only as one recipe row, e.g. the
spatio-temporal original recipe alone under its per-clip scoring rule, with that row:
:func:`board_tables`). A record without ``config.recipe``, or with the default one, is the
baseline's row.

``publish_result`` copies a run's ``result.json`` into the leaderboard folder (refusing to
overwrite without ``force``) and, when the run folder is at hand, adds the per-pair scores
of the headline metric (``per_pair``, compact: one digit per test pair) that the paired
comparisons need; ``publish_predictions`` does the same for a predictions file made outside
relocbench, scored here. Every record is validated when it is published and when it is read
(:func:`validate_record`; names that become paths: :func:`check_name`), and
:func:`update_leaderboard` checks and renders everything before writing anything (all or
nothing). ``write_leaderboard`` regenerates ``README.md`` from every record: per board and
per features (:func:`features_name`: results on different features are never ranked in one
table; nor are spatio-temporal results of different scoring rules, :func:`group_name`), the
tables in the layout of the papers, with the mean ± standard deviation over seeds, the
bootstrap 95% interval over pairs (per-pair scores averaged over seeds), and a paired
comparison of every row with the table's reference row (the full model); the
papers' own numbers follow in tables of their own, labelled with the papers' features
(``paper, C3D``), then a plot of the metric against the IoU
threshold and a qualitative figure. Hand-written analysis lives in ``notes/<board>.md`` and
is included verbatim.

Paired comparison. For rows A (the reference) and B with per-pair scores on the same test
pairs (same pair ids, checked by a hash), let ``a_i`` and ``b_i`` be pair i's score (temporal:
the fraction of the Average's thresholds its top-1 segment clears) averaged
over each row's seeds and ``d_i = b_i - a_i``. The difference is ``mean(d)``; its 95%
interval is the 2.5th-97.5th percentile of ``mean(d)`` over ``N_BOOTSTRAP`` resamples of
the pairs with replacement (``numpy.random.default_rng(BOOTSTRAP_SEED)``, the same resamples
for every row of a board), and the two-sided p-value is ``min(1, 2 * min(P(d* <= 0),
P(d* >= 0)))`` over the resampled means ``d*``. A difference is *significant* when its
interval excludes 0.

The spatio-temporal frame-mAP is not a mean over pairs: it pools the detections of all pairs
into one ranking per label. Its per-pair record holds every detection's pair and
true-positive flag (IoU 0.5) in that ranking, and each pair's number of targets (three per
target box for a run scored by the authors' per-clip rule, ``metrics.clip_scoring``
``"original"``, whose images are the clips of each keyframe); a resample
with pair weights recomputes the frame-mAP exactly (a pair drawn k times counts k times), the
row's statistic is its mean over seeds, and the comparison is the same paired bootstrap on
that statistic (``N_BOOTSTRAP_OF["pooled-ap"]`` resamples, each a full AP computation).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ConfigError, ManifestError, OutputExistsError
from .io import atomic_write_bytes, check_output, dumps_json, read_json
from .validate import fail, finite, found, integer, mapping, one_of, sequence, string

__all__ = ["check_board", "check_name", "validate_record", "features_name", "group_name", "scoring_name", "slug",
           "publish_result", "publish_run",
           "publish_predictions", "prepare_publication", "prepare_predictions", "update_leaderboard",
           "render_leaderboard", "write_leaderboard", "metric_value", "load_results", "pair_scores", "board_stats",
           "parse_seeds", "run_seeds", "record_path", "record_recipe", "row_name", "record_folder",
           "REFERENCE_ROWS", "N_BOOTSTRAP"]

#: the full model of each task: every row of a table is compared with it
REFERENCE_ROWS = {"temporal": "cgbm", "spatiotemporal": "stvr-warp"}
#: the column that holds each task's headline number
HEADLINE_COLUMN = {"temporal": "Average", "spatiotemporal": "0.5"}
N_BOOTSTRAP = 10_000
#: resamples per kind of per-pair record: the pooled AP is recomputed per resample, so fewer
N_BOOTSTRAP_OF = {"hits": 10_000, "pooled-ap": 1_000}
BOOTSTRAP_SEED = 0
_SEED_FILE = re.compile(r"^seed-(\d+)\.json$")
_log = logging.getLogger(__name__)


def metric_value(metrics: Dict[str, Any], path: Sequence[str]) -> float:
    cur: Any = metrics
    for key in path:
        cur = cur[key]
    return float(cur)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: the longest name (in UTF-8 bytes) that becomes a folder or file name: room is left for
#: ``seed-<k>.json`` and the site's suffixes under the usual 255-byte limit of a file name
MAX_NAME_BYTES = 120
#: the tasks a record may name (each has an adapter in :mod:`relocbench.tasks`)
KNOWN_TASKS = ("temporal", "spatiotemporal")
_MAX_SEED = 2 ** 63 - 1


def check_name(value: Any, field: str, *, file: Union[str, Path, None] = None, item: Optional[str] = None) -> str:
    """``value`` if it can be one path component (a baseline, board or dataset name that
    becomes a folder or file name); else a ManifestError naming ``file`` and ``field``.

    A name is a non-empty string without path separators (``/``, ``\\\\``), not ``.`` or
    ``..`` nor starting with a dot, without control characters or surrounding spaces, of at
    most :data:`MAX_NAME_BYTES` UTF-8 bytes.
    """
    item = item or f"field {field!r}"
    expected = "a plain folder name (one path component: no separators, no leading dot, no control characters)"
    s = string(value, file=file, item=item, what=f"a non-empty string ({expected})", error=ManifestError)
    why = None
    if "/" in s or "\\" in s:
        why = "it holds a path separator"
    elif s.startswith("."):
        why = "it starts with a dot" if s not in (".", "..") else "it names a folder itself"
    elif _CONTROL.search(s):
        why = "it holds a control character"
    elif s != s.strip():
        why = "it starts or ends with a space"
    elif len(s.encode("utf-8")) > MAX_NAME_BYTES:
        why = f"it is longer than {MAX_NAME_BYTES} bytes"
    if why is not None:
        raise ManifestError(f"expected {expected}, found {found(s)} ({why})", file=file, item=item)
    return s


def check_board(board: Any, *, file: Union[str, Path, None] = None) -> str:
    """``board`` if it is a plain folder name (see :func:`check_name`); else a ManifestError."""
    return check_name(board, "board", file=file)


#: joins a baseline and a non-default recipe in a folder name (``cgbm@original``); no baseline or
#: recipe name may hold it
RECIPE_SEP = "@"


def _declared_recipes(baseline: str) -> Optional[Tuple[Tuple[str, ...], Optional[str]]]:
    """(recipe names, default recipe) that registered ``baseline`` declares (``((), None)``
    when it declares none); None when ``baseline`` is not registered here."""
    from dataclasses import MISSING, fields

    from .registry import get_baseline

    try:
        cls = get_baseline(baseline)
    except ConfigError:
        return None
    names = tuple(sorted(getattr(cls, "recipes", None) or {}))
    conf = getattr(cls, "Config", None)
    default = None
    if names and conf is not None:
        default = next((f.default for f in fields(conf) if f.name == "recipe" and f.default is not MISSING), None)
    return names, default


def recipe_identity(baseline: str, recipe: Any, *, file: Union[str, Path, None] = None,
                    item: str = "field 'config.recipe'") -> Optional[str]:
    """``recipe`` as part of a row's identity: None for no recipe or the baseline's default
    recipe, else the recipe's name; a ManifestError naming ``file`` for a recipe that is not a
    plain name, or that registered ``baseline`` does not declare. Of a baseline that is not
    registered here, any recipe is kept (its default is unknown)."""
    if recipe is None:
        return None
    check_name(recipe, "config.recipe", file=file, item=item)
    if RECIPE_SEP in recipe:
        raise ManifestError(f"expected a recipe name without {RECIPE_SEP!r}, found {found(recipe)}",
                            file=file, item=item)
    declared = _declared_recipes(baseline)
    if declared is None:
        return recipe
    names, default = declared
    if recipe not in names:
        expected = (f"one of the recipes baseline {baseline!r} declares ({', '.join(names)})" if names
                    else f"no recipe (baseline {baseline!r} declares none)")
        raise ManifestError(f"expected {expected}, found {found(recipe)}", file=file, item=item)
    return None if recipe == default else recipe


def record_recipe(rec: Dict[str, Any], file: Union[str, Path, None] = None) -> Optional[str]:
    """The recipe of a record that makes it a row of its own (:func:`recipe_identity` of its
    ``config.recipe``): None for the baseline's default recipe or a record without one."""
    return recipe_identity(rec["baseline"], (rec.get("config") or {}).get("recipe"), file=file)


def row_name(rec: Dict[str, Any]) -> str:
    """The row of a record: ``cgbm``, or ``cgbm (original recipe)`` for a non-default recipe."""
    recipe = rec["_recipe"] if "_recipe" in rec else record_recipe(rec)
    return rec["baseline"] if recipe is None else f"{rec['baseline']} ({recipe} recipe)"


def record_folder(baseline: str, recipe: Optional[str] = None) -> str:
    """The folder of a row's records under its board: ``cgbm`` or ``cgbm@original`` (``recipe``
    already reduced by :func:`recipe_identity`)."""
    return baseline if recipe is None else f"{baseline}{RECIPE_SEP}{recipe}"


def _frac(value: Any, item: str, file) -> float:
    return finite(value, file=file, item=item, min=0.0, max=1.0, what="a fraction", error=ManifestError)


def _opt(rec: Dict[str, Any], key: str) -> Any:
    return rec.get(key) if isinstance(rec, dict) else None


def validate_record(rec: Any, file: Union[str, Path, None] = None) -> Dict[str, Any]:
    """``rec`` if it is a well-formed result record; else a ManifestError naming ``file`` and
    the field (``field 'metrics.average'``), what was expected and what was found.

    Every record goes through here when it is published and when it is read, so that the
    tables never show a number that is not a fraction, a record of an unknown task, or a
    name that would become a path outside the leaderboard. Checked: ``baseline`` (a name,
    :func:`check_name`), ``task`` (one of :data:`KNOWN_TASKS`), ``seed`` (an integer >= 0),
    ``board`` and ``dataset`` (names), the task's table columns and ``ci95`` in
    ``metrics`` (finite fractions), ``parameters`` and ``wall_time_s`` (numbers >= 0),
    ``hardware``, ``config`` and ``source`` (objects), ``code`` (an object with a ``commit``
    text and a boolean ``modified``), ``features`` (an object or a text),
    ``config.recipe`` (a recipe the baseline declares, when it is registered:
:func:`recipe_identity`), ``examples`` (objects with a ``pair_id``), ``per_pair``, ``proposals`` and
    ``metrics.clip_scoring`` (one of
    :data:`~relocbench.metrics.spatiotemporal.CLIP_SCORINGS`). Other keys are kept as they are.
    """
    E = ManifestError
    mapping(rec, file=file, item="record", what="a result record (a JSON object)",
            required=("baseline", "task", "metrics"), error=E)
    check_name(rec["baseline"], "baseline", file=file)
    if RECIPE_SEP in rec["baseline"]:
        raise ManifestError(f"expected a baseline name without {RECIPE_SEP!r} (it joins a baseline and a recipe in "
                            f"a folder name), found {found(rec['baseline'])}", file=file, item="field 'baseline'")
    one_of(rec["task"], KNOWN_TASKS, file=file, item="field 'task'", error=E)
    if rec.get("seed") is not None:
        integer(rec["seed"], file=file, item="field 'seed'", min=0, max=_MAX_SEED, error=E)
    for key in ("board", "dataset"):
        if rec.get(key) is not None:
            check_name(rec[key], key, file=file)
    for key in ("split", "manifest_sha256", "relocbench"):
        if rec.get(key) is not None:
            string(rec[key], file=file, item=f"field {key!r}", error=E)
    metrics = mapping(rec["metrics"], file=file, item="field 'metrics'", error=E)
    from .tasks import get_task

    task = get_task(rec["task"])
    for path, _ in task.columns:
        cur: Any = metrics
        for i, key in enumerate(path):
            where = "metrics." + ".".join(path[:i + 1])
            if not isinstance(cur, dict) or key not in cur:
                raise E(f"expected {'a fraction' if i == len(path) - 1 else 'an object'}, found nothing "
                        f"(the {task.name} tables need it)", file=file, item=f"field {where!r}")
            cur = cur[key]
        _frac(cur, f"field {where!r}", file)
    if metrics.get("clip_scoring") is not None:   # which rule scored the frame-mAP (never ranked together)
        from .metrics.spatiotemporal import CLIP_SCORINGS

        one_of(metrics["clip_scoring"], CLIP_SCORINGS, file=file, item="field 'metrics.clip_scoring'", error=E)
    for key in ("map_at_iou", "frame_map"):   # the threshold curve reads every key as a number
        if isinstance(metrics.get(key), dict):
            for k, v in metrics[key].items():
                try:
                    float(k)
                except ValueError:
                    raise fail("thresholds as keys (such as '0.5')", k, file=file, item=f"field 'metrics.{key}'",
                               error=E) from None
                if v is not None:
                    _frac(v, f"field 'metrics.{key}.{k}'", file)
    if metrics.get("ci95") is not None:
        ci = sequence(metrics["ci95"], file=file, item="field 'metrics.ci95'", length=2,
                      what="a list of two fractions [low, high]", error=E)
        lo, hi = (_frac(v, "field 'metrics.ci95'", file) for v in ci)
        if lo > hi:
            raise fail("a list of two fractions [low, high] with low <= high", ci, file=file,
                       item="field 'metrics.ci95'", error=E)
    if metrics.get("average_thresholds") is not None:
        for t in sequence(metrics["average_thresholds"], file=file, item="field 'metrics.average_thresholds'",
                          error=E):
            _frac(t, "field 'metrics.average_thresholds'", file)
    _check_breakdowns(metrics, file)
    if rec.get("parameters") is not None:
        integer(rec["parameters"], file=file, item="field 'parameters'", min=0, what="a parameter count",
                error=E)
    if rec.get("wall_time_s") is not None:
        finite(rec["wall_time_s"], file=file, item="field 'wall_time_s'", min=0.0, what="a number of seconds",
               error=E)
    for key in ("hardware", "config", "source", "training", "coverage"):
        if rec.get(key) is not None:
            mapping(rec[key], file=file, item=f"field {key!r}", error=E)
    if rec.get("code") is not None:  # the commit a run's code came from (relocbench.provenance)
        code = mapping(rec["code"], file=file, item="field 'code'", required=("commit",), error=E)
        string(code["commit"], file=file, item="field 'code.commit'", error=E)
        if not isinstance(code.get("modified", False), bool):
            raise fail("true or false", code.get("modified"), file=file, item="field 'code.modified'", error=E)
    steps = (rec.get("config") or {}).get("steps")
    if steps is not None:
        integer(steps, file=file, item="field 'config.steps'", min=0, error=E)
    record_recipe(rec, file)
    feats = rec.get("features")
    if feats is not None and not isinstance(feats, (dict, str)):
        raise fail("an object or a text describing the features", feats, file=file, item="field 'features'",
                   error=E)
    if isinstance(feats, dict) and feats.get("name") is not None:
        string(feats["name"], file=file, item="field 'features.name'", error=E)
    if rec.get("examples") is not None:
        for i, ex in enumerate(sequence(rec["examples"], file=file, item="field 'examples'", error=E)):
            item = f"field 'examples[{i}]'"
            mapping(ex, file=file, item=item, what="an example (an object with a 'pair_id')", required=("pair_id",),
                    error=E)
            string(ex["pair_id"], file=file, item=item + ".pair_id", error=E)
            for key in ("ground_truth", "prediction"):
                if ex.get(key) is not None:
                    span = sequence(ex[key], file=file, item=f"{item}.{key}", length=2,
                                    what="a span [start, end]", error=E)
                    for v in span:
                        finite(v, file=file, item=f"{item}.{key}", error=E)
            for key in ("query_steps", "window_steps"):
                if ex.get(key) is not None:
                    finite(ex[key], file=file, item=f"{item}.{key}", min=0.0, error=E)
    if rec.get("per_pair") is not None:
        _check_per_pair(rec, file)
    if rec.get("proposals") is not None:
        _check_proposals(rec["proposals"], file)
    return rec


def _check_breakdowns(metrics: Dict[str, Any], file) -> None:
    E = ManifestError
    bd = metrics.get("breakdowns")
    if bd is not None:
        for key, buckets in mapping(bd, file=file, item="field 'metrics.breakdowns'", error=E).items():
            for b, v in mapping(buckets, file=file, item=f"field 'metrics.breakdowns.{key}'", error=E).items():
                item = f"field 'metrics.breakdowns.{key}.{b}'"
                mapping(v, file=file, item=item, required=("average", "map_at_iou", "n_pairs"), error=E)
                _frac(v["average"], item + ".average", file)
                for t, x in mapping(v["map_at_iou"], file=file, item=item + ".map_at_iou", error=E).items():
                    _frac(x, f"{item}.map_at_iou.{t}", file)
                integer(v["n_pairs"], file=file, item=item + ".n_pairs", min=0, error=E)
    pl = metrics.get("per_label")
    if pl is not None:
        for lab, v in mapping(pl, file=file, item="field 'metrics.per_label'", error=E).items():
            for t, x in mapping(v, file=file, item=f"field 'metrics.per_label.{lab}'", error=E).items():
                if x is not None:
                    _frac(x, f"field 'metrics.per_label.{lab}.{t}'", file)


def _check_per_pair(rec: Dict[str, Any], file) -> None:
    import base64
    import binascii

    E = ManifestError
    pp = mapping(rec["per_pair"], file=file, item="field 'per_pair'", required=("n", "pair_ids_sha256"), error=E)
    who = f"per_pair of {rec['baseline']!r} seed {rec.get('seed')}"
    kind = one_of(pp.get("kind", "hits"), ("hits", "pooled-ap"), file=file, item=who + ": kind", error=E)
    n = integer(pp["n"], file=file, item=who + ": n", min=1, error=E)
    string(pp["pair_ids_sha256"], file=file, item=who + ": pair_ids_sha256", error=E)
    if kind == "hits":
        levels = integer(pp.get("levels"), file=file, item=who + ": levels", min=1, max=9, error=E)
        h = pp.get("hits")
        if not isinstance(h, str) or len(h) != n or not all("0" <= c <= str(levels) for c in h):
            got = f"{len(h)} characters" if isinstance(h, str) else found(h)
            raise E(f"expected {n} digits 0-{levels}, found {got}", file=file, item=who)
        return
    dtype = one_of(pp.get("dtype"), ("<u2", "<u4"), file=file, item=who + ": dtype", error=E)
    for key in ("pair_label", "npos"):
        vals = sequence(pp.get(key), file=file, item=f"{who}: {key}", length=n, what=f"a list of {n} integers",
                        error=E)
        for v in vals:
            integer(v, file=file, item=f"{who}: {key}", min=0, error=E)
    det = string(pp.get("detections"), file=file, item=who + ": detections", nonempty=False, error=E)
    try:
        raw = base64.b64decode(det, validate=True)
    except (binascii.Error, ValueError):
        raise fail("base64 text", det, file=file, item=who + ": detections", error=E) from None
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise E(f"expected a whole number of {dtype} codes, found {len(raw)} bytes", file=file,
                item=who + ": detections")
    code = np.frombuffer(raw, dtype=dtype).astype(np.int64)
    if code.size and int((code >> 1).max()) >= n:
        raise E(f"expected detections of pairs 0..{n - 1}, found pair {int((code >> 1).max())}", file=file,
                item=who + ": detections")


def _check_proposals(p: Any, file) -> None:
    E = ManifestError
    p = mapping(p, file=file, item="field 'proposals'", required=("auc", "ar_at_an", "average_recall",
                                                                   "average_nr_proposals", "n_proposals_kept"),
                error=E)
    _frac(p["auc"], "field 'proposals.auc'", file)
    for k, v in mapping(p["ar_at_an"], file=file, item="field 'proposals.ar_at_an'", error=E).items():
        if v is not None:
            _frac(v, f"field 'proposals.ar_at_an.{k}'", file)
    ar = sequence(p["average_recall"], file=file, item="field 'proposals.average_recall'", error=E)
    an = sequence(p["average_nr_proposals"], file=file, item="field 'proposals.average_nr_proposals'",
                  length=len(ar), what=f"a list of {len(ar)} numbers (one per average recall)", error=E)
    for v in ar:
        _frac(v, "field 'proposals.average_recall'", file)
    for v in an:
        finite(v, file=file, item="field 'proposals.average_nr_proposals'", min=0.0, error=E)
    integer(p["n_proposals_kept"], file=file, item="field 'proposals.n_proposals_kept'", min=0, error=E)
    if p.get("max_avg_nr_proposals") is not None:
        finite(p["max_avg_nr_proposals"], file=file, item="field 'proposals.max_avg_nr_proposals'", min=0.0,
               error=E)


# ----------------------------------------------------------------------------- features of a record

#: the features of the papers' own numbers (the reference rows): the ECCV 2018 paper used the
#: C3D features released for the ActivityNet Challenge 2016 (its Section 5.1)
PAPER_FEATURES = {"temporal": "C3D"}
UNRECORDED_FEATURES = "features not recorded"


def features_name(rec: Dict[str, Any]) -> str:
    """The display name of the features that produced a record's numbers.

    ``features["name"]`` when the record's feature source gives one (``tsp``, ...);
    ``synthetic (embedded)`` for relocbench's embedded synthetic features; for frame
    sources of the spatio-temporal task, ``rendered frames (synthetic-sprites)`` or ``video
    frames (<layout>)``; for an extracted feature file, its backbone; a text as it is.
    Records on different names are never ranked in one table.
    """
    f = rec.get("features")
    if isinstance(f, str) and f.strip():
        return f.strip()
    if not isinstance(f, dict):
        return UNRECORDED_FEATURES
    name = f.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    kind, source = f.get("kind"), f.get("source")
    if kind == "synthetic":
        return "synthetic (embedded)"
    if source == "synthetic-sprites":
        return "rendered frames (synthetic-sprites)"
    if source == "frames":
        layout = f.get("layout")
        return f"video frames ({layout})" if isinstance(layout, str) and layout else "video frames"
    backbone = f.get("backbone")
    if isinstance(backbone, str) and backbone:
        return backbone
    if isinstance(kind, str) and kind:
        return f"{kind} features"
    return UNRECORDED_FEATURES


def paper_label(task) -> str:
    """``paper, C3D``: how the papers' own numbers are labelled (with the paper's features)."""
    return f"paper, {PAPER_FEATURES.get(task.name, 'its own features')}"


#: how tables name the rule that scored a spatio-temporal frame-mAP (``metrics.clip_scoring``;
#: a record without one was scored per keyframe)
SCORING_NAMES = {"keyframe": "keyframe", "original": "authors' per-clip rule"}


def scoring_name(rec: Dict[str, Any]) -> Optional[str]:
    """``keyframe`` or ``authors' per-clip rule`` for a spatio-temporal record (the two rules
    count every target box once or three times: their numbers are never ranked together); None
    for other tasks."""
    if rec.get("task") != "spatiotemporal":
        return None
    rule = (rec.get("metrics") or {}).get("clip_scoring") or "keyframe"
    return SCORING_NAMES.get(rule, rule)


def group_name(rec: Dict[str, Any]) -> str:
    """The name of the tables a record goes into: its features (:func:`features_name`), and
    for a spatio-temporal record its scoring rule (``rendered frames (synthetic-sprites),
    scoring: keyframe``). Records of different group names are never ranked in one table."""
    rule = scoring_name(rec)
    return features_name(rec) if rule is None else f"{features_name(rec)}, scoring: {rule}"


def feature_groups(recs: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """``{group name: [records]}`` (:func:`group_name`), names sorted, records in their order."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in recs:
        out.setdefault(group_name(r), []).append(r)
    return {k: out[k] for k in sorted(out)}


def slug(name: str) -> str:
    """A file and anchor name for ``name``, distinct for distinct names.

    A name made only of ``a-z``, ``0-9`` and ``-`` is its own slug; any other name becomes
    those characters (others replaced by ``_``, at most 40) followed by ``_`` and the first 10
    hex digits of the sha256 of the exact name. Plain slugs hold no ``_``, so the two kinds
    never meet; two hashed slugs meet only if both the readable part and the hash prefix
    agree (builders still refuse any collision, :func:`claim`). No slug holds a ``.``, so
    joining slugs with ``.`` keeps them apart.
    """
    if re.fullmatch(r"[a-z0-9-]+", name):
        return name
    plain = re.sub(r"[^a-z0-9-]", "_", name.lower())[:40]
    return f"{plain}_{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def claim(owners: Dict[str, str], key: str, owner: str, what: str) -> str:
    """Record that ``key`` (a file or anchor name) belongs to ``owner``; a ManifestError if
    another owner has it (never overwrite one result with another)."""
    prev = owners.setdefault(key, owner)
    if prev != owner:
        raise ManifestError(f"{what} {key!r} would hold both {prev} and {owner}; rename one of them")
    return key


# ----------------------------------------------------------------------------- per-pair scores


def pair_ids_sha256(pair_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(map(str, pair_ids)).encode("utf-8")).hexdigest()


def _temporal_pair_scores(result: Dict[str, Any], f: Path, manifest) -> Dict[str, Any]:
    """Per pair, how many of the Average's thresholds its top-1 segment clears (0..5), from
    the predictions file ``f``."""
    from .metrics.temporal import hit
    from .predictions import load_json_strict

    split = result.get("split", "test")
    metrics = result["metrics"]
    doc = load_json_strict(f, "run predictions file")
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ManifestError("expected a predictions object with a 'results' mapping", file=f)
    pairs = manifest.table("pairs", split)
    unit = doc.get("unit", metrics.get("unit", "step"))
    sfx = "step" if unit == "step" else "s"
    gs, ge = pairs[f"gt_start_{sfx}"].to_numpy(np.float64), pairs[f"gt_end_{sfx}"].to_numpy(np.float64)
    thr = [float(t) for t in metrics["average_thresholds"]]
    rule = metrics.get("iou_rule", "inclusive")
    hits = np.zeros(len(pairs), dtype=np.int64)
    for i, pid in enumerate(pairs["pair_id"]):
        lst = results.get(pid) or []
        if not lst:
            continue
        best = max(range(len(lst)), key=lambda j: (float(lst[j]["score"]), -j))   # first listed on ties
        s, e = (float(x) for x in lst[best]["segment"])
        inter = max(0.0, min(e, ge[i]) - max(s, gs[i]))
        union = (e - s) + (ge[i] - gs[i]) - inter
        tiou = inter / union if union > 0 else 0.0
        hits[i] = int(sum(bool(hit(np.float64(tiou), t, rule)) for t in thr))
    avg = float(hits.mean() / len(thr))
    if abs(avg - float(metrics["average"])) > 1e-9:
        raise ManifestError(f"per-pair scores give Average {avg!r}, the run's metrics {metrics['average']!r}: "
                            "predictions and metrics do not belong together", file=f)
    return {"metric": "average", "split": split, "n": int(len(pairs)), "levels": len(thr),
            "pair_ids_sha256": pair_ids_sha256(pairs["pair_id"].tolist()), "hits": "".join(map(str, hits.tolist()))}


def pair_scores(result: Dict[str, Any], run_dir: Union[str, Path, None],
                manifest: Union[str, Path, None] = None, *,
                predictions: Union[str, Path, None] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """(``per_pair`` record of the headline metric, or None; the reason when None).

    Read from the run folder's predictions file (or ``predictions``) and the manifest (``manifest`` or the
    result's dataset name), which must be the one the run used (its sha256 is checked; None
    with the reason when it is not, or when the manifest cannot be opened).
    Temporal: the hits of the Average per pair; spatio-temporal: the ranked detections with
    their true-positive flags (see :func:`_st_pair_scores`).
    """
    task = result.get("task")
    if task not in ("temporal", "spatiotemporal"):
        return None, f"no per-pair scores for task {task!r}"
    man, why = _run_manifest(result, manifest)
    if man is None:
        return None, why
    f = _predictions_file(result, run_dir, predictions)
    if task == "spatiotemporal":
        return _st_pair_scores(result, f.parent, man, predictions_file=f), ""
    return _temporal_pair_scores(result, f, man), ""


def _predictions_file(result: Dict[str, Any], run_dir, predictions) -> Path:
    if predictions is not None:
        return Path(predictions)
    return Path(run_dir) / f"predictions-{result.get('split', 'test')}.json"


def _run_manifest(result: Dict[str, Any], manifest: Union[str, Path, None]):
    """(the manifest a run used, ""), or (None, why): ``manifest`` or the result's dataset,
    whose sha256 must be the one the run recorded."""
    from .io import sha256_file
    from .manifest import open_manifest

    name = manifest if manifest is not None else result["dataset"]
    try:
        if result.get("task") == "spatiotemporal" and str(name) == "synthetic-sprites":
            from .video.sprites import SpritesConfig, open_sprites

            man = open_sprites(SpritesConfig())
        else:
            man = open_manifest(name)
    except (ManifestError, ConfigError) as exc:
        return None, f"manifest {str(name)!r} not found ({exc})"
    sha = sha256_file(man.path / "manifest.json")
    if result.get("manifest_sha256") and sha != result["manifest_sha256"]:
        return None, (f"manifest {man.path} has sha256 {sha[:12]}..., the run used "
                      f"{str(result['manifest_sha256'])[:12]}...")
    return man, ""


#: proposals per pair at the end of the AR@AN curve of a temporal run without ``top_k`` in its config
PROPOSALS_PER_PAIR = 10


def proposal_scores(result: Dict[str, Any], run_dir: Union[str, Path, None],
                    manifest: Union[str, Path, None] = None, *,
                    predictions: Union[str, Path, None] = None) -> Tuple[Optional[Dict[str, Any]], str]:
    """(the official proposal metric of a temporal run's ranked predictions, or None; why).

    Each pair is a "video" whose ground truth is the pair's segment and whose proposals are
    the run's ranked predictions (:func:`relocbench.metrics.proposal.proposal_documents`),
    scored by ``activitynet-proposal`` with the curve ending at the run's ``top_k`` proposals
    per pair (:data:`PROPOSALS_PER_PAIR` where its config has none): AUC, AR@1/5/10 and the
    curve.
    """
    from .metrics.proposal import activitynet_proposal, proposal_documents
    from .predictions import read_predictions

    if result.get("task") != "temporal":
        return None, f"no proposal metric for task {result.get('task')!r}"
    man, why = _run_manifest(result, manifest)
    if man is None:
        return None, why
    split = result.get("split", "test")
    preds = read_predictions(_predictions_file(result, run_dir, predictions), task="temporal")
    gt, props, _ = proposal_documents(preds, man.table("pairs", split), subset=split)
    top_k = (result.get("config") or {}).get("top_k") or PROPOSALS_PER_PAIR
    m = activitynet_proposal(gt, props, subset=split, max_avg_nr_proposals=int(top_k))
    keep = ("auc", "ar_at_an", "average_recall", "average_nr_proposals", "max_avg_nr_proposals", "n_videos",
            "n_proposals", "n_proposals_kept")
    return {"protocol": "activitynet-proposal", "unit": preds.unit, **{k: m[k] for k in keep}}, ""


ST_THRESHOLD = "0.5"


def _st_pair_scores(result: Dict[str, Any], run_dir: Path, manifest, *,
                    predictions_file: Optional[Path] = None) -> Dict[str, Any]:
    """What a pooled frame-mAP needs to be recomputed on resampled pairs: every detection in
    its label's ranking (pair index and true-positive flag at IoU 0.5) and each pair's number
    of target boxes.

    The flags follow the evaluator's rule and preprocessing (:mod:`relocbench.metrics.spatiotemporal`:
    its images, :func:`~relocbench.metrics.spatiotemporal.image_keys`: one per keyframe, or one
    per clip of a keyframe with each target box counted once per clip when the run's
    ``metrics["clip_scoring"]`` is ``"original"``; ties by manifest position, the AVA greedy match of
    :mod:`relocbench.metrics.frame_ap`, which reports APs but not the flags); the AP they give
    must equal the run's ``frame_map["0.5"]`` to 1e-9, or nothing is published.
    """
    import base64

    import pandas as pd

    from .metrics.frame_ap import candidate_pairs
    from .metrics.geometry import _box_iou_arrays, group_starts
    from .metrics.spatiotemporal import _check_clips, image_keys
    from .predictions import match_pair_ids, read_predictions

    split = result.get("split", "test")
    f = predictions_file if predictions_file is not None else run_dir / f"predictions-{split}.json"
    preds = read_predictions(f, task="spatiotemporal")
    clip_idx = _check_clips(preds, result["metrics"].get("clip_scoring", "keyframe"))
    pairs, targets = manifest.table("pairs", split), manifest.table("targets", split)
    pair_ids = pairs["pair_id"].to_numpy(object)
    n_pairs, n = len(pairs), preds.n_predictions
    gidx = match_pair_ids(preds.pair_ids, pair_ids, source=str(f))
    row_pair = np.repeat(gidx, preds.counts)
    boxes = np.clip(preds.boxes, 0.0, 1.0)
    lab_codes, lab_names = pd.factorize(pairs["label"].to_numpy(object), sort=True)
    n_cls = len(lab_names)
    tgt_idx = pd.Index(pair_ids).get_indexer(targets["pair_id"].to_numpy(object))
    # the evaluator's images: (pair, keyframe), or (pair, clip, keyframe) with each target box
    # scored once per clip under the original clip scoring
    det_img, gt_img, gt_row = image_keys(row_pair, preds.time, tgt_idx, targets["time"].to_numpy(np.float64),
                                         n_pairs=n_pairs, det_clip=clip_idx, n_classes=n_cls)
    tgt_idx = tgt_idx[gt_row]
    new_off = np.concatenate([[0], np.cumsum(np.bincount(gidx, weights=preds.counts,
                                                         minlength=n_pairs).astype(np.int64))])
    tie = new_off[row_pair] + (np.arange(n) - np.repeat(preds.offsets[:-1], preds.counts))
    det_cls, score = lab_codes[row_pair], preds.score
    gt_boxes = targets[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[gt_row]
    best_iou, best_gt = np.full(n, -np.inf), np.full(n, -1, dtype=np.int64)
    d_idx, g_idx, cnt = candidate_pairs(det_img * n_cls + det_cls, gt_img * n_cls + lab_codes[tgt_idx])
    if d_idx.size:
        iou = _box_iou_arrays(boxes[d_idx], gt_boxes[g_idx])
        has = cnt > 0
        best_iou[has] = np.maximum.reduceat(iou, (np.cumsum(cnt) - cnt)[has])
        at_max = np.flatnonzero(iou == best_iou[d_idx])
        first = group_starts(d_idx[at_max])
        best_gt[d_idx[at_max[first]]] = g_idx[at_max[first]]
    elig = np.flatnonzero((best_gt >= 0) & (best_iou >= float(ST_THRESHOLD)))
    elig = elig[np.lexsort((tie[elig], -score[elig], best_gt[elig]))]
    tp = np.zeros(n, dtype=bool)
    tp[elig[group_starts(best_gt[elig])]] = True
    order = np.lexsort((tie, -score, det_cls))
    dtype = "<u2" if 2 * n_pairs < 2 ** 16 else "<u4"
    code = (row_pair[order].astype(np.int64) << 1) | tp[order]
    rec = {"kind": "pooled-ap", "metric": "frame_map", "threshold": ST_THRESHOLD, "split": split, "n": int(n_pairs),
           "pair_ids_sha256": pair_ids_sha256(pair_ids.tolist()), "pair_label": lab_codes.tolist(),
           "npos": np.bincount(tgt_idx, minlength=n_pairs).tolist(), "dtype": dtype,
           "detections": base64.b64encode(code.astype(dtype).tobytes()).decode("ascii")}
    got = float(_weighted_frame_map(_decode_ap(rec), np.ones((1, n_pairs)))[0])
    want = float(result["metrics"]["frame_map"][ST_THRESHOLD])
    if abs(got - want) > 1e-9:
        raise ManifestError(f"per-detection flags give frame-mAP {got!r}, the run's metrics {want!r}: predictions "
                            "and metrics do not belong together", file=f)
    return rec


def _decode_ap(pp: Dict[str, Any]) -> Dict[str, Any]:
    """Per label: the pair index and true-positive flag of its ranked detections; the pairs of the label."""
    import base64

    code = np.frombuffer(base64.b64decode(pp["detections"]), dtype=pp["dtype"]).astype(np.int64)
    pair, tp = code >> 1, (code & 1).astype(np.float64)
    pl = np.asarray(pp["pair_label"], dtype=np.int64)
    if pair.size and (pair.max() >= pp["n"] or pl.size != pp["n"]):
        raise ManifestError("per_pair detections name pairs beyond the record's pair count")
    lab = pl[pair]
    labels = {}
    for c in np.unique(pl):
        m = lab == c   # a stable selection keeps each label's ranking
        labels[int(c)] = (pair[m], tp[m], np.flatnonzero(pl == c))
    return {"labels": labels, "npos": np.asarray(pp["npos"], dtype=np.float64)}


def _weighted_frame_map(dec: Dict[str, Any], W: np.ndarray, chunk: int = 200) -> np.ndarray:
    """Frame-mAP (mean AP over labels with targets) with pair weights ``W`` (draws, n_pairs).

    A pair drawn k times counts its detections and targets k times; k copies of a detection
    sit together in the ranking, so a weighted cumulative sum gives the precision and recall
    of the all-point interpolated AP exactly (with all weights 1 it is the evaluator's AP).
    """
    out = np.empty(W.shape[0])
    npos = dec["npos"]
    for a in range(0, W.shape[0], chunk):
        w_all = W[a:a + chunk]
        total = np.zeros(w_all.shape[0])
        count = np.zeros(w_all.shape[0])
        for pair, tp, members in dec["labels"].values():
            npw = w_all[:, members] @ npos[members]
            valid = npw > 0
            if pair.size:
                w = w_all[:, pair]
                wt = w * tp
                tpw, allw = np.cumsum(wt, axis=1), np.cumsum(w, axis=1)
                prec = np.divide(tpw, allw, out=np.zeros_like(tpw), where=allw > 0)
                interp = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
                ap = (wt * interp).sum(axis=1) / np.where(valid, npw, 1.0)
            else:
                ap = np.zeros(w_all.shape[0])
            total += np.where(valid, ap, 0.0)
            count += valid
        out[a:a + chunk] = total / np.maximum(count, 1)
    return out


def _decode_pairs(rec: Dict[str, Any]) -> Optional[np.ndarray]:
    pp = rec.get("per_pair")
    if not pp:
        return None
    h = pp.get("hits", "")
    if len(h) != pp.get("n") or not h.isdigit():
        raise ManifestError(f"per_pair of {rec.get('baseline')!r} seed {rec.get('seed')}: expected {pp.get('n')} "
                            f"digits, found {len(h)} characters", file=rec.get("_file"))
    return np.frombuffer(h.encode("ascii"), dtype=np.uint8).astype(np.float64) - 48.0


# ----------------------------------------------------------------------------- publishing


def record_path(directory: Union[str, Path], board: str, baseline: str, seed: int,
                recipe: Optional[str] = None) -> Path:
    """``<directory>/results/<board>/<baseline>/seed-<seed>.json`` (``<baseline>@<recipe>`` for a
    recipe other than the baseline's default, :func:`recipe_identity`), every name checked to
    be one path component (:func:`check_name`), and the path checked to stay under ``results``."""
    check_board(board)
    check_name(baseline, "baseline")
    folder = check_name(record_folder(baseline, recipe_identity(baseline, recipe)), "baseline")
    seed = integer(seed, item="field 'seed'", min=0, max=_MAX_SEED, error=ManifestError)
    root = Path(directory) / "results"
    path = root / board / folder / f"seed-{seed}.json"
    if not os.path.realpath(path).startswith(os.path.realpath(root).rstrip(os.sep) + os.sep):
        raise ManifestError(f"resolves to {os.path.realpath(path)}, outside the leaderboard's results folder "
                            f"{os.path.realpath(root)} (a link?)", file=path)
    return path


@dataclass
class Publication:
    """A record ready to be written (every check done, nothing written yet)."""

    path: Path                      #: the record file
    record: Dict[str, Any]          #: the record, validated
    legacy: Optional[Path] = None   #: a single-file record of the same seed that the record replaces
    source: Optional[Path] = None   #: what it was published from (run result or predictions file)


def prepare_publication(result: Dict[str, Any], directory: Union[str, Path], *, force: bool = False,
                        board: Union[str, None] = None, run_dir: Union[str, Path, None] = None,
                        manifest: Union[str, Path, None] = None, predictions: Union[str, Path, None] = None,
                        source: Union[str, Path, None] = None) -> Publication:
    """Every check and computation of :func:`publish_result`, writing nothing.

    ``result`` is validated (:func:`validate_record`, errors naming ``source``), the board,
    baseline and seed are checked as path components, the target must be writable (and
    absent without ``force``); with ``run_dir`` (or ``predictions``, a predictions file) the
    per-pair scores and the proposal metric are computed.
    """
    src = Path(source) if source is not None else (Path(run_dir) / "result.json" if run_dir is not None else None)
    validate_record(result, src)
    board = check_board(board or result.get("board") or result.get("dataset"), file=src)
    if result.get("subset") or result["metrics"].get("subset"):
        raise ConfigError(f"{result['baseline']!r} was scored on a subset of the pairs (--score-subset): a subset "
                          "score is not a benchmark number and is never published to a board", file=src)
    seed = int(result.get("seed") or 0)
    recipe = record_recipe(result, src)
    path = record_path(directory, board, result["baseline"], seed, recipe)
    check_output(path, force)
    legacy = Path(directory) / "results" / board / f"{result['baseline']}.json"
    replaced = None
    if recipe is None and legacy.is_file():   # the single-file layout never held another recipe
        old = validate_record(read_json(legacy, "leaderboard result", ManifestError), legacy)
        if int(old.get("seed") or 0) == seed:
            if not force:
                raise OutputExistsError(f"holds seed {seed} of {result['baseline']!r} already; pass --force to "
                                        "replace it", file=legacy)
            replaced = legacy
    rec = {k: v for k, v in result.items() if not k.startswith("_")}
    rec["board"] = board
    if (run_dir is not None or predictions is not None) and "per_pair" not in rec:
        pp, why = pair_scores(rec, run_dir, manifest, predictions=predictions)
        if pp is not None:
            rec["per_pair"] = pp
        else:   # said, and recorded: the tables then say why there is no comparison
            _log.warning("%s seed %s published without per-pair scores: %s", rec["baseline"], seed, why)
            rec["per_pair_unavailable"] = why
    if (run_dir is not None or predictions is not None) and rec.get("task") == "temporal" and "proposals" not in rec:
        pm, why = proposal_scores(rec, run_dir, manifest, predictions=predictions)
        if pm is not None:
            rec["proposals"] = pm
        else:
            _log.warning("%s seed %s published without the proposal metric: %s", rec["baseline"], seed, why)
    validate_record(rec, src)
    return Publication(path, rec, replaced, src)


def _check_board_task(pub: Publication, directory: Union[str, Path]) -> None:
    """Refuse ``pub`` when the board's existing records are of another task (one task per board,
    as :func:`load_results` requires), before anything is written; the first other record decides."""
    directory = Path(directory)
    board_dir = directory / "results" / pub.record["board"]
    if not board_dir.is_dir():
        return
    for f in sorted(board_dir.glob("*.json")) + sorted(board_dir.glob("*/seed-*.json")):
        if f in (pub.path, pub.legacy):
            continue
        rec = read_json(f, "leaderboard result", ManifestError)
        task = rec.get("task") if isinstance(rec, dict) else None
        if task != pub.record["task"]:
            raise ManifestError(f"record of task {pub.record['task']!r} for board {pub.record['board']!r}, whose "
                                f"records are {task!r} ({f.relative_to(directory).as_posix()}); expected one task "
                                "per board (publish it with another --board)", file=pub.source or pub.path)
        return


def publish_result(result: Dict[str, Any], directory: Union[str, Path], *, force: bool = False,
                   board: Union[str, None] = None, run_dir: Union[str, Path, None] = None,
                   manifest: Union[str, Path, None] = None) -> Path:
    """Write ``result`` as ``<directory>/results/<board>/<baseline>/seed-<seed>.json``.

    ``board`` is the dataset's name unless given (recorded in the copy as ``board``). With
    ``run_dir`` the per-pair scores are added (see :func:`pair_scores`); a record of the
    same seed in the single-file layout is replaced only with ``force``. Nothing is written
    unless every check passes (:func:`prepare_publication`).
    """
    pub = prepare_publication(result, directory, force=force, board=board, run_dir=run_dir, manifest=manifest)
    _check_board_task(pub, directory)
    _Writes().commit([pub], force=force)
    return pub.path


def _run_result(run_dir: Union[str, Path]) -> Tuple[Dict[str, Any], Path]:
    f = Path(run_dir) / "result.json"
    if not f.is_file():
        raise ManifestError("no result.json here: expected the folder of a finished run-baseline run", file=run_dir)
    rec = read_json(f, "run result", ManifestError)
    mapping(rec, file=f, what="a run result (a JSON object)", required=("baseline", "task", "dataset", "metrics"),
            error=ManifestError)
    return rec, f


def publish_run(run_dir: Union[str, Path], directory: Union[str, Path], *, force: bool = False,
                board: Union[str, None] = None, manifest: Union[str, Path, None] = None) -> Path:
    """Publish the ``result.json`` of a finished run folder (see :func:`publish_result`)."""
    rec, _ = _run_result(run_dir)
    return publish_result(rec, directory, force=force, board=board, run_dir=run_dir, manifest=manifest)


#: the features of a predictions file published without ``features_name``
UNSTATED_FEATURES = "not stated (external predictions)"


def prepare_predictions(predictions: Union[str, Path], directory: Union[str, Path], *, name: str,
                        board: Optional[str] = None, manifest: Union[str, Path, None] = None, split: str = "test",
                        seed: int = 0, features_name: Optional[str] = None, force: bool = False) -> Publication:
    """A predictions file produced outside relocbench, scored by relocbench, as a record
    ready to be written (see :func:`publish_predictions`)."""
    from . import __version__
    from .errors import PredictionError
    from .io import sha256_file
    from .manifest import open_manifest
    from .metrics.api import evaluate
    from .predictions import load_json_strict

    f = Path(predictions)
    if not f.is_file():
        raise PredictionError("not found (expected a relocbench predictions file)", file=f)
    check_name(name, "name", item="--name")
    from .registry import baseline_rows

    if name in {r["name"] for r in baseline_rows()}:
        raise ConfigError(f"--name {name!r} is a relocbench baseline: publish its runs with run-baseline "
                          "--leaderboard, and an outside predictions file under its own name")
    seed = integer(seed, item="--seed", min=0, max=_MAX_SEED, error=ConfigError)
    if features_name is not None:
        string(features_name, item="--features-name", error=ConfigError)
    doc = load_json_strict(f, "predictions file")
    header = {k: doc.get(k) for k in ("manifest", "split")} if isinstance(doc, dict) else {}
    if manifest is None:
        manifest = header.get("manifest")
        if not isinstance(manifest, str) or not manifest:
            raise ConfigError("give --manifest: the predictions file names no manifest", file=f)
    if isinstance(header.get("split"), str) and header["split"] != split:
        raise PredictionError(f"holds predictions for the {header['split']!r} split, but --split is {split!r}",
                              file=f)
    man = open_manifest(manifest)
    # the evaluate command's own path: every number is computed here, none is read from the file
    metrics = evaluate(f, manifest=manifest, split=split)
    dataset = Path(str(manifest)).name
    feats = ({"kind": "declared", "name": features_name.strip()} if features_name
             else {"kind": "not stated", "name": UNSTATED_FEATURES})
    rec = {"baseline": name, "task": man.task, "dataset": dataset, "split": split, "seed": seed,
           "metrics": metrics, "manifest_sha256": sha256_file(man.path / "manifest.json"), "relocbench": __version__,
           "features": feats, "config": {}, "parameters": None, "wall_time_s": None, "hardware": None,
           "source": {"kind": "predictions file", "file": f.name, "sha256": sha256_file(f),
                      "scored_by": f"relocbench evaluate --manifest {manifest} --split {split}"}}
    return prepare_publication(rec, directory, force=force, board=board or dataset, manifest=manifest,
                               predictions=f, source=f)


def publish_predictions(predictions: Union[str, Path], directory: Union[str, Path], *, name: str,
                        board: Optional[str] = None, manifest: Union[str, Path, None] = None, split: str = "test",
                        seed: int = 0, features_name: Optional[str] = None, force: bool = False) -> Path:
    """Publish a predictions file produced outside relocbench as ``<board>/<name>/seed-<seed>.json``.

    The file is scored by relocbench itself (:func:`relocbench.metrics.evaluate`, the path of
    ``relocbench evaluate``) on ``manifest`` (default: the one the file names) and ``split``;
    any number the file holds (a ``metrics`` field, ...) is ignored. The record says where it
    came from (``source``: the file's name and sha256) and which features produced it
    (``features_name`` as stated by the publisher, else "not stated"), with per-pair scores
    for the paired comparisons. Names registered as relocbench baselines are refused.
    """
    pub = prepare_predictions(predictions, directory, name=name, board=board, manifest=manifest, split=split,
                              seed=seed, features_name=features_name, force=force)
    _check_board_task(pub, directory)
    _Writes().commit([pub], force=force)
    return pub.path


class _Writes:
    """The files one command writes, undone if a later step fails: new files removed, replaced
    ones restored, folders it created removed (when empty)."""

    def __init__(self) -> None:
        self.undo: List[Tuple[Path, Optional[bytes]]] = []
        self.dirs: List[Path] = []

    def write(self, path: Path, data: bytes, *, force: bool = True) -> None:
        old = path.read_bytes() if path.is_file() else None
        missing, q = [], path.parent
        while not q.exists() and q != q.parent:
            missing.append(q)
            q = q.parent
        try:
            atomic_write_bytes(path, data, force=force)
        finally:
            self.dirs += [d for d in reversed(missing) if d.is_dir()]
        self.undo.append((path, old))

    def remove(self, path: Path) -> None:
        old = path.read_bytes()
        path.unlink()
        self.undo.append((path, old))

    def rollback(self) -> None:
        for path, old in reversed(self.undo):
            try:
                if old is None:
                    path.unlink()
                else:
                    atomic_write_bytes(path, old, force=True)
            except OSError:
                _log.warning("could not undo the write of %s", path)
        for d in reversed(self.dirs):
            try:
                d.rmdir()
            except OSError:
                pass

    def commit(self, pubs: Sequence[Publication], *, force: bool) -> None:
        try:
            for pub in pubs:
                self.write(pub.path, dumps_json(pub.record).encode("utf-8"), force=force)
                if pub.legacy is not None and pub.legacy.is_file():
                    self.remove(pub.legacy)   # moved into the per-seed layout
        except BaseException:
            self.rollback()
            raise


def check_site_output(html: Union[str, Path], directory: Union[str, Path], *, force: bool = False,
                      inputs: Sequence[Union[str, Path]] = ()) -> Path:
    """Refuse a site folder that exists (without ``force``), cannot be written, or would
    replace the leaderboard folder, its results, figures or notes, or anything inside
    ``results`` (``--force`` or not)."""
    directory = Path(directory)
    results = directory / "results"
    real = os.path.realpath(html)
    if real == os.path.realpath(results) or real.startswith(os.path.realpath(results).rstrip(os.sep) + os.sep):
        raise ConfigError("is inside the leaderboard's results folder: the site would replace records there "
                          "(choose another folder; --force does not allow this)", file=html)
    protected = [directory, results, directory / "figures", directory / "notes", directory / "README.md"]
    return check_output(html, force, inputs=[*protected, *inputs], option="--html")


def update_leaderboard(directory: Union[str, Path], *, publish: Sequence[Publication] = (),
                       html: Union[str, Path, None] = None, force: bool = False) -> Dict[str, Path]:
    """Write the ``publish`` records, regenerate ``<directory>/README.md`` and its figures and,
    with ``html``, the static site: all or nothing.

    Everything is checked and rendered before the first byte is written (the records as they
    will be, the README, the figures and the site, in memory); if a write then fails, the
    records, README and figures written so far are put back as they were. ``directory``
    must exist unless something is published into it.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ManifestError("is a file, not a leaderboard folder", file=directory)
    if not directory.is_dir() and not publish:
        raise ManifestError("no such leaderboard folder (expected a folder holding results/<board>/...; "
                            "publish a run into it first, or give the right --dir)", file=directory)
    paths = [p.path for p in publish]
    dup = next((p for p in paths if paths.count(p) > 1), None)
    if dup is not None:
        raise ManifestError("two of the published results would both be this record (same board, name and "
                            "seed)", file=dup)
    if html is not None:
        check_site_output(html, directory, force=force, inputs=[p.source for p in publish if p.source is not None])
    results = load_results(directory, extra=publish)
    text, figures = render_leaderboard(directory, results)
    site = None
    if html is not None:
        from .leaderboard_site import render_site

        if not results:
            raise ManifestError("no results to show: expected results/<board>/<baseline>/seed-<k>.json files",
                                file=directory / "results")
        site = render_site(results)
    writes = _Writes()
    writes.commit(publish, force=force)
    try:
        for rel in sorted(figures):
            writes.write(directory / rel, figures[rel])
        writes.write(directory / "README.md", text.encode("utf-8"))
        if site is not None:
            from .leaderboard_site import write_site

            write_site(site, html, force=force)
    except BaseException:
        writes.rollback()
        raise
    out = {"readme": directory / "README.md"}
    if html is not None:
        out["site"] = Path(html)
    return out


def publish_and_regenerate(directory: Union[str, Path], *, run_dirs: Sequence[Union[str, Path]] = (),
                           predictions: Union[str, Path, None] = None, name: Optional[str] = None,
                           board: Optional[str] = None, manifest: Union[str, Path, None] = None,
                           split: str = "test", seed: int = 0, features_name: Optional[str] = None,
                           html: Union[str, Path, None] = None, force: bool = False) -> Dict[str, Any]:
    """What ``relocbench leaderboard`` does: publish the results of finished ``run_dirs`` and of
    an outside ``predictions`` file (as ``name``), then regenerate the README and, with
    ``html``, the site, all or nothing (:func:`update_leaderboard`). Returns the written
    paths: ``published`` (records), ``readme`` and ``site``."""
    if predictions is None and (name is not None or features_name is not None or manifest is not None):
        raise ConfigError("--name, --manifest and --features-name go with --publish-predictions FILE")
    if predictions is not None and name is None:
        raise ConfigError("--publish-predictions FILE needs --name NAME: the row the file's results get")
    if board is not None and not run_dirs and predictions is None:
        raise ConfigError(f"--board {board} names the section to publish into, but nothing is published: add "
                          "--publish RUN_DIR or --publish-predictions FILE, or drop --board")
    pubs = []
    for run_dir in run_dirs:
        rec, _ = _run_result(run_dir)
        pubs.append(prepare_publication(rec, directory, force=force, board=board, run_dir=run_dir))
    if predictions is not None:
        pubs.append(prepare_predictions(predictions, directory, name=name, board=board, manifest=manifest,
                                        split=split, seed=seed, features_name=features_name, force=force))
    out: Dict[str, Any] = dict(update_leaderboard(directory, publish=pubs, html=html, force=force))
    out["published"] = [p.path for p in pubs]
    return out


def parse_seeds(text: str) -> List[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct non-negative integers, in the order given)."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip() != ""]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds takes distinct non-negative integers such as 0,1,2; got {text!r}")
    return seeds


def run_seeds(name: str, seeds: Union[str, Sequence[int]], *, out: Union[str, Path, None] = None,
              leaderboard_dir: Union[str, Path, None] = None, board: Optional[str] = None, force: bool = False,
              overrides: Optional[Dict[str, Any]] = None, echo: Callable[[str], None] = lambda s: None,
              **engine_kwargs: Any) -> list:
    """One engine run per seed in ``<out>/seed-<k>`` (``out`` defaults to ``runs/<dataset>/<name>``),
    each published with its per-pair scores when ``leaderboard_dir`` is given. Returns the
    engine's RunResult of every seed."""
    from .engine import run_baseline

    seeds = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
    overrides = dict(overrides or {})
    if overrides.get("seed") is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if board is not None:
        check_board(board)
    dataset = engine_kwargs.get("dataset", "activitynet")
    root = Path(out) if out is not None else Path("runs") / Path(str(dataset)).name / name
    if leaderboard_dir is not None:   # every record can be written: checked before the first run
        for k in seeds:
            check_output(record_path(leaderboard_dir, board or Path(str(dataset)).name, name, k,
                                     overrides.get("recipe")), force)
    done = []
    for k in seeds:
        res = run_baseline(name, out=root / f"seed-{k}", overrides={**overrides, "seed": k}, force=force,
                           **engine_kwargs)
        done.append(res)
        if res.result:
            from .tasks import get_task
            echo(f"seed {k}: headline {100 * get_task(res.result['task']).headline(res.metrics):.1f}, "
                 f"run folder {res.run_dir}")
        if res.result and leaderboard_dir is not None:
            path = publish_result(res.result, leaderboard_dir, force=force, board=board, run_dir=res.run_dir,
                                  manifest=dataset)
            echo(f"seed {k}: published {path}")
    return done


# ----------------------------------------------------------------------------- reading


def load_results(directory: Union[str, Path],
                 extra: Sequence[Publication] = ()) -> Dict[str, List[Dict[str, Any]]]:
    """``{board: [result records]}`` from ``<directory>/results``, by baseline then seed.

    Each record is validated (:func:`validate_record`) and gets ``_file`` (its path relative
    to ``directory``). Two records of one baseline and seed, a record in the folder or file
    of another baseline, seed or board, and a ``.json`` file in a baseline's folder that is
    not ``seed-<k>.json`` are errors naming the file. ``extra`` records (about to be
    published) are read as if written, replacing the ones they replace.
    """
    directory = Path(directory)
    root = directory / "results"
    entries: Dict[str, List[Tuple[Path, Optional[Dict[str, Any]]]]] = {}
    if root.is_dir():
        for ds in sorted(p for p in root.iterdir() if p.is_dir()):
            check_board(ds.name, file=ds)
            files = sorted(ds.glob("*.json"))
            for sub in sorted(p for p in ds.iterdir() if p.is_dir()):
                for f in sorted(sub.glob("*.json")):
                    if not _SEED_FILE.match(f.name):
                        raise ManifestError("expected only seed-<k>.json records in a baseline's folder", file=f)
                    files.append(f)
            entries[ds.name] = [(f, None) for f in files]
    for pub in extra:
        lst = entries.setdefault(pub.record["board"], [])
        lst[:] = [(f, r) for f, r in lst if f not in (pub.path, pub.legacy)]
        lst.append((pub.path, pub.record))
    out: Dict[str, List[Dict[str, Any]]] = {}
    for board in sorted(entries):
        recs, seen = [], {}
        first_task: Optional[Tuple[str, str]] = None   # (task, file): one task per board (its tables' columns)
        for f, rec in entries[board]:
            if rec is None:
                rec = read_json(f, "leaderboard result", ManifestError)
            validate_record(rec, f)
            if first_task is None:
                first_task = (rec["task"], f.relative_to(directory).as_posix())
            elif rec["task"] != first_task[0]:
                raise ManifestError(f"record of task {rec['task']!r} on board {board!r}, whose records are "
                                    f"{first_task[0]!r} ({first_task[1]}); expected one task per board (publish it "
                                    "with another --board)", file=f)
            m = _SEED_FILE.match(f.name)
            recipe = record_recipe(rec, f)
            folder = record_folder(rec["baseline"], recipe)
            what = f"baseline {rec['baseline']!r}" + ("" if recipe is None else f", recipe {recipe!r},")
            if m and f.parent.name != folder:
                raise ManifestError(f"record of {what} in the folder of {f.parent.name!r} (expected the folder "
                                    f"{folder!r})", file=f)
            if not m and f.stem != folder:
                raise ManifestError(f"record of {what} in the file of {f.stem!r} (expected {folder + '.json'!r})",
                                    file=f)
            if m and int(m.group(1)) != int(rec.get("seed") or 0):
                raise ManifestError(f"record of seed {rec.get('seed')} in a file named for seed {m.group(1)}", file=f)
            if rec.get("board") is not None and rec["board"] != board:
                raise ManifestError(f"record of board {rec['board']!r} in the folder of board {board!r}", file=f)
            row = rec["baseline"] if recipe is None else f"{rec['baseline']} ({recipe} recipe)"
            key = (row, int(rec.get("seed") or 0))
            if key in seen:
                raise ManifestError(f"seed {key[1]} of {key[0]!r} is also in {seen[key]}", file=f)
            seen[key] = f.relative_to(directory).as_posix()
            recs.append({**rec, "_file": seen[key], "_recipe": recipe})
        if recs:
            # in the order of the single-file names (<baseline>.json), each baseline's default recipe
            # first, then its other recipes by name, then by seed
            recs.sort(key=lambda r: (r["baseline"] + ".json", r["_recipe"] is not None, r["_recipe"] or "",
                                     int(r.get("seed") or 0)))
            out[board] = recs
    return out


def group_runs(recs: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """``{row name: [records by seed]}`` in the order of ``recs`` (:func:`row_name`: a baseline, or
    a baseline and a non-default recipe)."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in recs:
        out.setdefault(row_name(r), []).append(r)
    return out


# ----------------------------------------------------------------------------- statistics


def _std(values: List[float]) -> Optional[float]:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _resampler(runs: List[Dict[str, Any]]):
    """(statistic of pair weights W (draws, n) -> (draws,), kind, pair-id hash, n) of a row, pooled
    over its seeds; None when a seed lacks per-pair scores or the seeds were scored on different pairs.

    ``hits`` (temporal Average): the per-pair scores averaged over seeds, weighted mean over
    pairs. ``pooled-ap`` (spatio-temporal frame-mAP): the mean over seeds of the frame-mAP
    recomputed with the weights.
    """
    pps = [r.get("per_pair") for r in runs]
    if not all(pps) or len({pp["pair_ids_sha256"] for pp in pps}) != 1 or len({pp.get("kind", "hits")
                                                                                 for pp in pps}) != 1:
        return None
    kind, n, h = pps[0].get("kind", "hits"), int(pps[0]["n"]), pps[0]["pair_ids_sha256"]
    if kind == "hits":
        s = np.mean([_decode_pairs(r) / float(r["per_pair"]["levels"]) for r in runs], axis=0)
        return (lambda W: W @ s / n), kind, h, n
    if kind == "pooled-ap":
        decs = [_decode_ap(pp) for pp in pps]
        return (lambda W: np.mean([_weighted_frame_map(d, W) for d in decs], axis=0)), kind, h, n
    raise ManifestError(f"per_pair of {runs[0]['baseline']!r}: unknown kind {kind!r}", file=runs[0].get("_file"))


def board_stats(task, runs_by_name: Dict[str, List[Dict[str, Any]]], reference: Optional[str]) -> Dict[str, Any]:
    """Per baseline: seeds, mean and std of every column over seeds, the pooled 95% interval
    of the headline, and the paired comparison with ``reference`` (see the module docstring)."""
    stats: Dict[str, Any] = {}
    res = {nm: _resampler(runs) for nm, runs in runs_by_name.items()}
    weights: Dict[Tuple[int, int], np.ndarray] = {}

    def draws(n: int, kind: str) -> np.ndarray:
        b = N_BOOTSTRAP_OF.get(kind, N_BOOTSTRAP)
        if (n, b) not in weights:
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            weights[(n, b)] = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        return weights[(n, b)]

    boots: Dict[str, np.ndarray] = {}
    points: Dict[str, float] = {}
    for nm, r in res.items():
        if r is not None:
            fn, kind, _, n = r
            boots[nm] = fn(draws(n, kind))
            points[nm] = float(fn(np.ones((1, n)))[0])
    ref = res.get(reference) if reference else None
    for nm, runs in runs_by_name.items():
        cols = {}
        for path, title in task.columns:
            vals = [metric_value(r["metrics"], path) for r in runs]
            cols[title] = {"mean": float(np.mean(vals)), "std": _std(vals), "values": vals}
        head = [float(task.headline(r["metrics"])) for r in runs]
        st = {"seeds": [int(r.get("seed") or 0) for r in runs], "columns": cols,
              "headline": {"mean": float(np.mean(head)), "std": _std(head), "values": head}, "ci95": None,
              "ci95_source": None, "comparison": None}
        if nm in boots:
            lo, hi = np.percentile(boots[nm], [2.5, 97.5])
            st["ci95"], st["ci95_source"] = [float(lo), float(hi)], "bootstrap over pairs, pooled over seeds"
        elif len(runs) == 1 and runs[0]["metrics"].get("ci95"):
            st["ci95"], st["ci95_source"] = [float(x) for x in runs[0]["metrics"]["ci95"]], "the run's bootstrap"
        if reference and nm != reference and reference in runs_by_name:
            if res[nm] is None or ref is None or res[nm][2] != ref[2] or res[nm][1] != ref[1]:
                why = ("per-pair scores not published for every seed" if res[nm] is None or ref is None
                       else "different test pairs")
                st["comparison"] = {"reference": reference, "available": False, "reason": why}
            else:
                boot = boots[nm] - boots[reference]
                lo, hi = np.percentile(boot, [2.5, 97.5])
                p = min(1.0, 2.0 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
                st["comparison"] = {"reference": reference, "available": True,
                                    "difference": points[nm] - points[reference], "ci95": [float(lo), float(hi)],
                                    "p_value": p, "n_pairs": res[nm][3], "n_bootstrap": int(boot.size),
                                    "significant": bool(lo > 0 or hi < 0)}
        stats[nm] = st
    return stats


def fmt_mean_std(s: Dict[str, Any]) -> str:
    m = f"{100 * s['mean']:.1f}"
    return m if s["std"] is None else f"{m} ± {100 * s['std']:.1f}"


def fmt_ci(ci) -> str:
    return "–" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"


def fmt_comparison(c: Optional[Dict[str, Any]]) -> str:
    if c is None:
        return "reference"
    if not c["available"]:
        return f"n/a ({c['reason']})"
    p = "p < 0.0001" if c["p_value"] < 1e-4 else f"p {c['p_value']:.4f}"
    txt = f"{100 * c['difference']:+.1f} [{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}], {p}"
    return txt if c["significant"] else txt + ", not significant"


# ----------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _curve_plot(task, recs, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for nm, runs in group_runs(recs).items():
        curves = [task.curve(r["metrics"]) for r in runs]
        if any(c is None for c in curves):
            continue
        xs, _, xl, yl = curves[0]
        ys = np.mean([c[1] for c in curves], axis=0)
        ax.plot(xs, 100 * ys, marker="o", ms=3, label=nm if len(runs) == 1 else f"{nm} ({len(runs)} seeds)")
        ax.set_xlabel(xl)
        ax.set_ylabel(f"{yl} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _examples_plot(recs) -> bytes:
    """Fig. 4 style: per example pair, the reference window with the ground truth and each
    baseline's top-1 span (its lowest seed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    firsts = [runs[0] for runs in group_runs(recs).values() if runs[0].get("examples")]
    examples = firsts[0]["examples"]
    names = [row_name(r) for r in firsts]
    by_name = {row_name(r): {e["pair_id"]: e for e in r["examples"]} for r in firsts}
    n = len(examples)
    fig, axes = plt.subplots(n, 1, figsize=(7, 0.45 * (len(names) + 1) * n + 0.6), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        w = ex["window_steps"]
        rows = [("ground truth", ex["ground_truth"])] + [(nm, by_name[nm].get(ex["pair_id"], {}).get("prediction"))
                                                         for nm in names]
        for i, (nm, span) in enumerate(rows):
            y = len(rows) - 1 - i
            ax.plot([0, w], [y, y], color="#dddddd", lw=6, solid_capstyle="butt")
            if span:
                ax.plot(span, [y, y], color="#228833" if i == 0 else "#4477aa", lw=6, solid_capstyle="butt")
                ax.text(w * 1.01, y, f"{span[0]}-{span[1]}", va="center", fontsize=6)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r[0] for r in rows][::-1], fontsize=6)
        ax.set_xlim(0, w * 1.12)
        ax.set_title(f"{ex['label']} (query {ex['query_steps']} steps, reference {w} steps)", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


# ----------------------------------------------------------------------------- README


def board_tables(task, recs: List[Dict[str, Any]]) -> List[Tuple[str, List[str], Optional[str]]]:
    """(title, row names in row order, reference row) of every table of a board.

    A baseline's rows of non-default recipes follow its own row (in the order of ``recs``),
    in the same table and with the same reference row. In a group of ``recs`` that holds the
    full model only through one recipe row (the spatio-temporal original recipe, alone under
    its scoring rule), that row is the reference, and a baseline present only through its
    recipe rows has no empty row of its own; with no run of the full model there is none."""
    by_name = group_runs(recs)
    variants: Dict[str, List[str]] = {}   # baseline -> its rows of non-default recipes
    for r in recs:
        nm = row_name(r)
        if nm != r["baseline"] and nm not in variants.setdefault(r["baseline"], []):
            variants[r["baseline"]].append(nm)
    out, listed = [], []
    ref = REFERENCE_ROWS.get(task.name)
    if ref not in by_name:
        ref = variants[ref][0] if len(variants.get(ref, [])) == 1 else None
    for title, names in task.tables:
        if any(n in by_name or variants.get(n) for n in names):
            own = [n for n in names if n in by_name or not variants.get(n)]   # no empty row beside recipe rows
            rows = [x for n in names for x in ([n] if n in own else []) + variants.get(n, [])]
            out.append((title, rows, ref if ref in rows else None))
            listed += rows
    others = [n for n in by_name if n not in listed]
    if others:
        out.append(("Other baselines", others, ref if ref in by_name else None))
    return out


def _md(text: Any) -> str:
    """Text for a markdown table cell (``|`` escaped)."""
    return str(text).replace("|", "\\|")


def fmt_count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def _table(task, title: str, names: List[str], runs_by_name, stats, reference, features: str) -> List[str]:
    cols = [t for _, t in task.columns]
    head = cols + [f"95% CI ({HEADLINE_COLUMN.get(task.name, 'headline')})", "seeds"]
    if reference:
        head.append(f"vs {reference} (paired, 95% CI)")
    lines = [f"### {title} — features: {features}", "", "| baseline | " + " | ".join(head) + " | parameters |",
             "|---|" + "---|" * (len(head) + 1)]
    for nm in names:
        st = stats.get(nm)
        if st is None:
            lines.append(f"| {_md(nm)} | " + " | ".join("–" for _ in head) + " | not run on these features |")
            continue
        vals = [fmt_mean_std(st["columns"][c]) for c in cols]
        vals += [fmt_ci(st["ci95"]), str(len(st["seeds"]))]
        if reference:
            vals.append(fmt_comparison(st["comparison"]) if nm != reference else "reference")
        lines.append(f"| {_md(nm)} | " + " | ".join(vals) + f" | {fmt_count(runs_by_name[nm][0].get('parameters'))} |")
    lines.append("")
    if reference and reference in stats:
        comps = {nm: stats[nm]["comparison"] for nm in names if nm in stats and nm != reference}
        ns = [nm for nm, c in comps.items() if c and c["available"] and not c["significant"]]
        sig = [nm for nm, c in comps.items() if c and c["available"] and c["significant"]]
        na = [nm for nm, c in comps.items() if c and not c["available"]]
        if sig or ns:
            c0 = next(c for c in comps.values() if c and c["available"])
            txt = (f"Paired bootstrap against `{reference}` over {c0['n_pairs']} test pairs (pooled over seeds, "
                   f"{c0['n_bootstrap']:,} resamples): ")
            txt += ("significant for " + ", ".join(f"`{n}`" for n in sig) if sig else "no difference is significant")
            if ns and sig:
                txt += "; not significant for " + ", ".join(f"`{n}`" for n in ns)
            lines += [txt + ".", ""]
        if na:
            lines += ["No paired comparison for " + ", ".join(f"`{n}`" for n in na)
                      + " (per-pair scores are published with new runs: `relocbench run-baseline NAME --seeds 0,1,2 "
                      "--leaderboard leaderboard`).", ""]
    return lines


def _paper_table(task, title: str) -> List[str]:
    """The paper's own numbers of a table, in a table of their own, labelled with its features."""
    label = paper_label(task)
    cols = [t for _, t in task.columns]
    lines = [f"### {title} — {label}", "",
             f"The numbers published in the paper, computed on the paper's features ({label.split(', ', 1)[1]}): "
             "for reference, never ranked with the rows of other features above.", "",
             "| baseline | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for nm, vals in task.paper_rows[title].items():
        lines.append(f"| *{label}: {_md(nm)}* | " + " | ".join(f"*{v:.1f}*" for v in vals) + " |")
    return lines + [""]


def features_summary(recs: List[Dict[str, Any]]) -> str:
    """The features settings every record of a group shares (JSON), and the keys that vary."""
    dicts = [r.get("features") for r in recs]
    if not all(isinstance(d, dict) for d in dicts):
        texts = sorted({json.dumps(d, sort_keys=True) for d in dicts})
        return "; ".join(f"`{t}`" for t in texts)
    common = {k: v for k, v in dicts[0].items() if all(k in d and d[k] == v for d in dicts[1:])}
    varying = sorted({k for d in dicts for k in d} - set(common))
    text = f"`{json.dumps(common, sort_keys=True)}`"
    return text + (f" (varying per run: {', '.join(varying)})" if varying else "")


def run_summary(r: Dict[str, Any]) -> str:
    """One run in the README's list of runs: seed, steps, time and hardware, or where an
    outside predictions file came from."""
    src = r.get("source") or {}
    if src.get("kind") == "predictions file":
        return (f"`{row_name(r)}` seed {r.get('seed')}, predictions file `{src.get('file')}` (sha256 "
                f"{str(src.get('sha256'))[:12]}...) scored by relocbench")
    wall = r.get("wall_time_s")
    hw = r.get("hardware") or {}
    batch = "" if row_name(r) == r["baseline"] else f" at batch {(r.get('config') or {}).get('batch_size', '?')}"
    procs = f" ({hw['processes']} processes)" if hw.get("processes") else ""
    return (f"`{row_name(r)}` seed {r.get('seed')}, {(r.get('config') or {}).get('steps', 0)} steps{batch}, "
            + ("–" if wall is None else f"{wall:.0f}") + f" s on {hw.get('device', '?')}{procs}")


def figure_name(board: str, features: Optional[str], kind: str) -> str:
    """``<board>-<kind>.png``, or ``<board>.<features>-<kind>.png`` on a board with several
    features (slugs, :func:`slug`)."""
    stem = slug(board) if features is None else f"{slug(board)}.{slug(features)}"
    return f"{stem}-{kind}.png"


def render_leaderboard(directory: Union[str, Path], results: Dict[str, List[Dict[str, Any]]]
                       ) -> Tuple[str, Dict[str, bytes]]:
    """(text of ``README.md``, ``{figures/<name>.png: bytes}``) of ``results``; writes nothing."""
    from .tasks import get_task

    directory = Path(directory)
    figures: Dict[str, bytes] = {}
    owners: Dict[str, str] = {}
    lines = ["# relocbench leaderboard", "",
             "Generated by `relocbench leaderboard` from `results/<board>/<baseline>/seed-<k>.json` (or the "
             "single-seed `results/<board>/<baseline>.json`); do not edit by hand (analysis goes into "
             "`notes/<board>.md`). Numbers are percentages: the mean over seeds (± the standard deviation "
             "when there are several), the bootstrap 95% interval over test pairs, and the paired difference "
             "from the table's full model; differences whose interval holds 0 are marked *not significant*. "
             "Every table names the features that produced its numbers; results on different features are "
             "never ranked in one table, and the papers' own numbers (on the papers' features) are in tables "
             "of their own. `relocbench leaderboard --html DIR` builds the same as a browsable site.", ""]
    if not results:
        lines.append("No results yet: run `relocbench run-baseline NAME --leaderboard leaderboard`.")
    for ds, recs in results.items():
        task = get_task(recs[0]["task"])
        groups = feature_groups(recs)
        lines += [f"## {ds} — features: {', '.join(groups)}", ""]
        if len(groups) > 1:
            what = "sets of features and scoring rules" if task.name == "spatiotemporal" else "sets of features"
            lines += [f"This board holds results on {len(groups)} {what}, each in tables of its own "
                      "(never ranked together).", ""]
        paper_titles: List[str] = []
        for fname, grecs in groups.items():
            by_name = group_runs(grecs)
            for title, names, ref in board_tables(task, grecs):
                stats = board_stats(task, {n: by_name[n] for n in names if n in by_name}, ref)
                lines += _table(task, title, names, by_name, stats, ref, fname)
                if task.paper_rows.get(title) and title not in paper_titles:
                    paper_titles.append(title)
            lines += [f"Runs on {fname}: " + "; ".join(run_summary(r) for r in grecs) + ".", "",
                      f"Settings of the {features_name(grecs[0])} features: {features_summary(grecs)}.", ""]
            fkey = None if len(groups) == 1 else fname
            name = claim(owners, figure_name(ds, fkey, "thresholds"), f"board {ds!r} ({fname})", "figure")
            figures[f"figures/{name}"] = _curve_plot(task, grecs, f"{ds} ({fname}): metric against the IoU threshold")
            lines += [f"![{ds} thresholds, {fname}](figures/{name})", ""]
            if any(r.get("examples") for r in grecs):
                name = claim(owners, figure_name(ds, fkey, "examples"), f"board {ds!r} ({fname})", "figure")
                figures[f"figures/{name}"] = _examples_plot(grecs)
                lines += [f"![{ds} examples, {fname}](figures/{name})", ""]
        for title in paper_titles:
            lines += _paper_table(task, title)
        notes = directory / "notes" / f"{ds}.md"
        if notes.is_file():
            lines += [notes.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines) + "\n", figures


def write_leaderboard(directory: Union[str, Path]) -> Path:
    """Regenerate ``<directory>/README.md`` and its figures from the result records (all or
    nothing, see :func:`update_leaderboard`); ``directory`` must exist."""
    return update_leaderboard(directory)["readme"]
