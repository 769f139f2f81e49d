"""The manifest format shared by every dataset.

A manifest is a folder holding one Parquet file per table and split
(``<table>-<split>.parquet``; tables without splits are ``<table>.parquet``) and a
``manifest.json`` describing them::

    {
      "schema_version": 1,
      "name": "activitynet",            # short name of the dataset
      "task": "temporal",               # or "spatiotemporal": selects the table schemas
      "builder": {"name": ..., "version": ...},
      "protocol": "feng2018",
      "params": {...},                  # every parameter of the build
      "inputs": {role: {"file": basename, "sha256": ...}},
      "tables": {file name: {"table": ..., "split": ... or null, "rows": n, "sha256": ...}},
      "report": {...},                  # what was dropped, and why, with counts
      "extras": [file names of statistics and figures]
    }

``load_manifest`` resolves a folder path or a built-in name (searched in
``$RELOCBENCH_MANIFESTS/<name>``, then ``manifests/<name>/`` of a source checkout, then the
manifests installed with the package as ``relocbench/_manifests``), checks the file's sha256 against
``manifest.json`` and validates the table against its schema before returning it.
"""
from __future__ import annotations

import os
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError, ManifestError
from .io import atomic_dir, dumps_json, read_json, sha256_file

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
TASKS = ("temporal", "spatiotemporal")

__all__ = [
    "SCHEMA_VERSION",
    "TableSchema",
    "SCHEMAS",
    "Manifest",
    "open_manifest",
    "load_manifest",
    "write_manifest",
    "write_manifest_into",
    "check_manifest_meta",
    "validate_table",
    "manifests_root",
    "resolve_manifest",
]

# A check returns a boolean mask of the bad rows; the message says what was expected.
Check = Tuple[str, Callable[[pd.DataFrame], np.ndarray]]


@dataclass(frozen=True)
class TableSchema:
    """Columns (name -> kind) of one table, its id column and its row checks.

    Kinds: ``str``, ``int``, ``float`` (integers accepted), ``bool``, ``list[str]``,
    ``list[float]``. ``optional`` columns are checked (and written with their kind) when a
    table has them; a check on an optional column runs only then. Other extra columns are
    kept with their inferred type.
    """

    columns: Mapping[str, str]
    id_column: Optional[str] = None
    checks: Sequence[Check] = field(default_factory=tuple)
    optional: Mapping[str, str] = field(default_factory=dict)
    optional_checks: Mapping[str, Sequence[Check]] = field(default_factory=dict)

    def kinds(self, df: pd.DataFrame) -> Dict[str, str]:
        """The declared columns of ``df``: required ones, then the optional ones it has."""
        return {**self.columns, **{c: k for c, k in self.optional.items() if c in df.columns}}


def _between01(df: pd.DataFrame) -> np.ndarray:
    x1, y1, x2, y2 = (df[c].to_numpy(float) for c in ("x1", "y1", "x2", "y2"))
    ok = (x1 >= 0) & (y1 >= 0) & (x2 <= 1) & (y2 <= 1) & (x1 < x2) & (y1 < y2)
    return ~ok


def _lt(a: str, b: str) -> Check:
    return (f"{a} < {b}", lambda df: ~(df[a].to_numpy() < df[b].to_numpy()))


def _le(a: str, b: str) -> Check:
    return (f"{a} <= {b}", lambda df: ~(df[a].to_numpy() <= df[b].to_numpy()))


def _nonneg(a: str) -> Check:
    return (f"{a} >= 0", lambda df: ~(df[a].to_numpy() >= 0))


_BOX_CHECK: Check = ("0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (normalised xyxy)", _between01)

_TEMPORAL_SEGMENTS = TableSchema(
    columns={
        "segment_id": "str", "video": "str", "label": "str", "split": "str",
        "start_step": "int", "end_step": "int",
        "window_start_step": "int", "window_end_step": "int",
        "start_s": "float", "end_s": "float", "window_start_s": "float", "window_end_s": "float",
        "duration_s": "float", "n_steps": "int",
    },
    id_column="segment_id",
    checks=(
        _nonneg("window_start_step"), _le("window_start_step", "start_step"),
        _lt("start_step", "end_step"), _le("end_step", "window_end_step"),
        _le("window_end_step", "n_steps"), _le("start_s", "end_s"),
    ),
)

_TEMPORAL_PAIRS = TableSchema(
    columns={
        "pair_id": "str", "label": "str",
        "query_segment_id": "str", "query_video": "str",
        "query_start_step": "int", "query_end_step": "int",
        "ref_segment_id": "str", "ref_video": "str",
        "ref_start_step": "int", "ref_end_step": "int",
        "gt_start_step": "int", "gt_end_step": "int",
        "query_start_s": "float", "query_end_s": "float",
        "ref_start_s": "float", "ref_end_s": "float",
        "gt_start_s": "float", "gt_end_s": "float",
    },
    id_column="pair_id",
    checks=(
        _nonneg("query_start_step"), _lt("query_start_step", "query_end_step"),
        _nonneg("ref_start_step"), _lt("ref_start_step", "ref_end_step"),
        _nonneg("gt_start_step"), _lt("gt_start_step", "gt_end_step"),
        ("gt_end_step <= ref_end_step - ref_start_step",
         lambda df: ~(df["gt_end_step"].to_numpy() <= (df["ref_end_step"] - df["ref_start_step"]).to_numpy())),
        _le("gt_start_s", "gt_end_s"),
    ),
)

_TEMPORAL_TIMELINES = TableSchema(
    columns={
        "video": "str", "label": "str", "start_s": "float", "end_s": "float",
        "start_step": "int", "end_step": "int", "kept": "bool",
        "duration_s": "float", "n_frames": "int", "n_steps": "int",
    },
    checks=(_le("start_s", "end_s"), _le("start_step", "end_step"), _nonneg("n_steps")),
)

_ST_TUBELETS = TableSchema(
    columns={
        "tubelet_id": "str", "video": "str", "label": "str", "split": "str",
        "start": "float", "end": "float", "n_keyframes": "int", "person_id": "int",
    },
    id_column="tubelet_id",
    checks=(_lt("start", "end"), ("n_keyframes >= 1", lambda df: ~(df["n_keyframes"].to_numpy() >= 1))),
)

_ST_BOXES = TableSchema(
    columns={"tubelet_id": "str", "time": "float", "x1": "float", "y1": "float", "x2": "float", "y2": "float"},
    checks=(_BOX_CHECK,),
)


def _keyframes_in_window(df: pd.DataFrame) -> np.ndarray:
    bad = []
    for kf, a, b in zip(df["ref_keyframes"], df["ref_start"].to_numpy(float), df["ref_end"].to_numpy(float)):
        k = np.asarray(kf, dtype=float)
        bad.append(len(k) == 0 or bool(np.any(np.diff(k) <= 0)) or k[0] < a or k[-1] > b)
    return np.array(bad, dtype=bool)


_ST_PAIRS = TableSchema(
    columns={
        "pair_id": "str", "label": "str", "query_tubelet_id": "str", "query_video": "str",
        "query_start": "float", "query_end": "float", "ref_video": "str",
        "ref_start": "float", "ref_end": "float", "target_tubelet_ids": "list[str]",
    },
    id_column="pair_id",
    checks=(_lt("query_start", "query_end"), _lt("ref_start", "ref_end")),
    # ref_tubelet_id: the tubelet whose window is the reference; ref_keyframes: the times at
    # which the reference is scored (a prediction at another time is an error when listed)
    optional={"ref_tubelet_id": "str", "ref_keyframes": "list[float]"},
    optional_checks={"ref_keyframes": (
        ("ref_keyframes non-empty, increasing and within [ref_start, ref_end]", _keyframes_in_window),)},
)

_ST_TARGETS = TableSchema(
    columns={"pair_id": "str", "time": "float", "x1": "float", "y1": "float", "x2": "float", "y2": "float"},
    checks=(_BOX_CHECK,),
    optional={"tubelet_id": "str"},  # the target tubelet the box belongs to
)

#: (task, table) -> schema. Other modules may add tables with ``register_table``.
SCHEMAS: Dict[Tuple[str, str], TableSchema] = {
    ("temporal", "segments"): _TEMPORAL_SEGMENTS,
    ("temporal", "pairs"): _TEMPORAL_PAIRS,
    ("temporal", "timelines"): _TEMPORAL_TIMELINES,
    ("spatiotemporal", "tubelets"): _ST_TUBELETS,
    ("spatiotemporal", "boxes"): _ST_BOXES,
    ("spatiotemporal", "pairs"): _ST_PAIRS,
    ("spatiotemporal", "targets"): _ST_TARGETS,
}


def register_table(task: str, table: str, schema: TableSchema) -> None:
    SCHEMAS[(task, table)] = schema


def _kind_ok(series: pd.Series, kind: str) -> bool:
    dt = series.dtype
    if len(series) == 0:  # an empty column carries no values to check (pandas types it object)
        return True
    if kind == "str":
        if pd.api.types.is_string_dtype(dt):
            if dt != object:
                return True
            vals = series.to_numpy()
            return set(map(type, vals)) <= {str} or all(isinstance(v, str) for v in vals)
        return False
    if kind == "int":
        return pd.api.types.is_integer_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
    if kind == "float":
        return (pd.api.types.is_float_dtype(dt) or pd.api.types.is_integer_dtype(dt)) and not pd.api.types.is_bool_dtype(dt)
    if kind == "bool":
        return pd.api.types.is_bool_dtype(dt)
    if kind == "list[str]":
        if dt != object:
            return False
        vals = series.to_numpy()
        # exact types first (one pass in C each); subclasses (np.str_, ...) take the checked loop
        if set(map(type, vals)) <= {list, tuple, np.ndarray} and set(map(type, chain.from_iterable(vals))) <= {str}:
            return True
        return all(isinstance(v, (list, tuple, np.ndarray)) and all(isinstance(s, str) for s in v) for v in vals)
    if kind == "list[float]":
        def ok(v):
            if not isinstance(v, (list, tuple, np.ndarray)):
                return False
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                return False
            return a.ndim == 1 and not any(isinstance(x, (bool, np.bool_, str)) for x in v) and bool(np.isfinite(a).all())
        return dt == object and all(ok(v) for v in series.to_numpy())
    raise ConfigError(f"unknown column kind {kind!r}")


def validate_table(df: pd.DataFrame, task: str, table: str, *, where: str = "") -> pd.DataFrame:
    """Check columns, kinds, missing values, unique ids and row rules; raise ManifestError."""
    key = (task, table)
    if key not in SCHEMAS:
        raise ManifestError(
            f"unknown table {table!r} for task {task!r}; expected one of "
            f"{sorted(t for k, t in SCHEMAS if k == task)}",
            file=where or None,
        )
    schema = SCHEMAS[key]
    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise ManifestError(f"table {table!r} lacks columns {missing}", file=where or None)
    for col, kind in schema.kinds(df).items():
        s = df[col]
        if not kind.startswith("list[") and s.isna().any():
            row = int(np.flatnonzero(s.isna().to_numpy())[0])
            raise ManifestError(f"column {col!r} has a missing value at row {row}", file=where or None)
        if not _kind_ok(s, kind):
            raise ManifestError(
                f"column {col!r} of table {table!r} must hold {kind} values, found dtype {s.dtype}",
                file=where or None,
            )
        if kind == "float":
            vals = s.to_numpy(dtype=float)
            if not np.isfinite(vals).all():
                row = int(np.flatnonzero(~np.isfinite(vals))[0])
                raise ManifestError(f"column {col!r} has a non-finite value at row {row}", file=where or None)
    idc = schema.id_column
    if idc is not None:
        dup = df[idc].duplicated()
        if dup.any():
            raise ManifestError(
                f"{idc} {df[idc][dup].iloc[0]!r} appears more than once in table {table!r}",
                file=where or None,
            )
    checks = list(schema.checks) + [c for col, cs in schema.optional_checks.items() if col in df.columns for c in cs]
    for rule, fn in checks:
        if len(df) == 0:
            break
        bad = np.asarray(fn(df), dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            ident = f"{idc} {df[idc].iloc[i]!r}" if idc else f"row {i}"
            raise ManifestError(
                f"{ident} of table {table!r} breaks the rule {rule} "
                f"({bad.sum()} row(s) do)", file=where or None,
            )
    return df


#: Manifests that are generated on first use instead of committed: name -> (module, function
#: returning the opened :class:`Manifest`). The module is imported only when the name is asked
#: for, so that this schema layer never imports the video layer at import time.
GENERATED_MANIFESTS: Dict[str, Tuple[str, str]] = {
    "synthetic-sprites": ("relocbench.video.sprites", "open_sprites"),
}

#: Where a regular (wheel) install keeps the committed manifests: package data of ``relocbench``.
PACKAGED_MANIFESTS = "_manifests"


def _checkout_manifests() -> Optional[Path]:
    """The ``manifests/`` folder of the repository checkout this module runs from (an editable
    or development install), or None in a regular install."""
    repo = Path(__file__).resolve().parent.parent
    if (repo / "setup.cfg").is_file() and (repo / "manifests").is_dir():
        return repo / "manifests"
    return None


def _packaged_manifests() -> Optional[Path]:
    """The manifests shipped inside an installed wheel, or None when there are none."""
    from importlib.resources import files

    root = files("relocbench").joinpath(PACKAGED_MANIFESTS)
    # A real folder only: tables are read through paths (a zipped install has none).
    if isinstance(root, Path) and root.is_dir():
        return root
    return None


def manifest_roots() -> List[Path]:
    """Folders searched for built-in manifest names, in order: ``$RELOCBENCH_MANIFESTS``, the
    checkout's ``manifests/`` (editable or development install), then the manifests shipped in
    the installed package."""
    roots: List[Path] = []
    env = os.environ.get("RELOCBENCH_MANIFESTS")
    if env:
        roots.append(Path(env))
    for found in (_checkout_manifests(), _packaged_manifests()):
        if found is not None and found not in roots:
            roots.append(found)
    return roots


def manifests_root() -> Path:
    """The first folder searched for built-in manifests (see :func:`manifest_roots`)."""
    roots = manifest_roots()
    if not roots:
        raise ManifestError(
            "no manifests folder: expected $RELOCBENCH_MANIFESTS, a checkout's manifests/ or the "
            f"relocbench/{PACKAGED_MANIFESTS} folder of an installed wheel, found none"
        )
    return roots[0]


def resolve_manifest(name_or_path: Union[str, os.PathLike]) -> Path:
    """The folder of a manifest given by path or by name.

    A generated manifest's name (:data:`GENERATED_MANIFESTS`, e.g. ``synthetic-sprites``) is
    that manifest, built on first use into the cache: the one ``run-baseline --dataset`` uses
    (pass ``./synthetic-sprites`` for a folder of that name). Another bare name is a folder of
    that name here holding ``manifest.json``, else ``<root>/<name>`` for the first root of
    :func:`manifest_roots` that has it. Anything else must be a folder holding ``manifest.json``.
    """
    p = Path(name_or_path)
    is_name = isinstance(name_or_path, str) and os.sep not in name_or_path and "/" not in name_or_path
    if is_name and name_or_path in GENERATED_MANIFESTS:
        import importlib

        module, func = GENERATED_MANIFESTS[name_or_path]
        return getattr(importlib.import_module(module), func)().path
    if (p / MANIFEST_FILE).is_file():
        return p
    if is_name:
        roots = manifest_roots()
        for root in roots:
            cand = root / name_or_path
            if (cand / MANIFEST_FILE).is_file():
                return cand
        where = ", ".join(str(r) for r in roots) or "no manifests folder"
        known = sorted({c.name for r in roots if r.is_dir() for c in r.iterdir() if (c / MANIFEST_FILE).is_file()}
                       | set(GENERATED_MANIFESTS))
        raise ManifestError(
            f"no manifest named {name_or_path!r}: expected a folder holding {MANIFEST_FILE} "
            f"(here or under {where}); built-in names: {', '.join(known)}"
        )
    raise ManifestError(f"not a manifest folder: expected {MANIFEST_FILE} inside", file=p)


def _table_file(table: str, split: Optional[str]) -> str:
    return f"{table}.parquet" if split is None else f"{table}-{split}.parquet"


class Manifest:
    """A manifest folder opened for reading. No I/O beyond ``manifest.json`` until asked."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = path
        self.meta = meta
        self._verified: Dict[str, Tuple[int, int]] = {}

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def splits(self) -> List[str]:
        return sorted({v["split"] for v in self.meta["tables"].values() if v["split"] is not None})

    def tables(self) -> List[Tuple[str, Optional[str]]]:
        return sorted((v["table"], v["split"]) for v in self.meta["tables"].values())

    def file_for(self, table: str, split: Optional[str]) -> Path:
        fname = _table_file(table, split)
        if fname not in self.meta["tables"]:
            have = ", ".join(
                t if s is None else f"{t} (split {s})" for t, s in self.tables()
            )
            raise ManifestError(
                f"has no table {table!r}" + (f" for split {split!r}" if split else " without a split")
                + f"; it has: {have}",
                file=self.path / MANIFEST_FILE,
            )
        return self.path / fname

    def verify(self, fname: str) -> None:
        p = self.path / fname
        if not p.is_file():
            raise ManifestError("listed in manifest.json but missing", file=p)
        st = p.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        if self._verified.get(fname) == stamp:
            return
        want = self.meta["tables"][fname]["sha256"]
        got = sha256_file(p)
        if got != want:
            raise ManifestError(
                f"sha256 {got[:12]}... does not match manifest.json ({want[:12]}...): "
                "the file was changed after the build; rebuild the manifest",
                file=p,
            )
        self._verified[fname] = stamp

    def table(self, table: str, split: Optional[str] = None, *, verify: bool = True) -> pd.DataFrame:
        p = self.file_for(table, split)
        if verify:
            self.verify(p.name)
        try:
            df = pq.read_table(p).to_pandas()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ManifestError(f"unreadable Parquet file ({exc.__class__.__name__}: {exc})", file=p) from None
        want_rows = self.meta["tables"][p.name]["rows"]
        if len(df) != want_rows:
            raise ManifestError(f"holds {len(df)} rows, manifest.json says {want_rows}", file=p)
        if self.task == "spatiotemporal" and "target_tubelet_ids" in df.columns:
            df["target_tubelet_ids"] = [list(v) for v in df["target_tubelet_ids"]]
        return validate_table(df, self.task, table, where=str(p))


def check_manifest_meta(meta, file: Union[str, os.PathLike]) -> dict:
    """Check the structure of a parsed ``manifest.json`` (every key that reading relies
    on, by type and value); raise ManifestError naming the file and the key."""
    from . import validate as V

    V.mapping(meta, file=file, what="a JSON object", error=ManifestError)
    for key in ("schema_version", "name", "task", "tables"):
        if key not in meta:
            raise ManifestError(f"lacks the key {key!r}", file=file)
    if type(meta["schema_version"]) is not int or meta["schema_version"] != SCHEMA_VERSION:
        raise ManifestError(
            f"schema_version: expected {SCHEMA_VERSION} (the only version supported), "
            f"found {V.found(meta['schema_version'])}", file=file,
        )
    V.string(meta["name"], file=file, item="name", what="a dataset name (a non-empty string)", error=ManifestError)
    if meta["task"] not in TASKS:
        raise ManifestError(f"task: expected one of {', '.join(TASKS)}, found {V.found(meta['task'])}", file=file)
    tables = V.mapping(meta["tables"], file=file, item="tables", error=ManifestError,
                       what="an object {file name: {table, split, rows, sha256}}")
    for fname, entry in tables.items():
        item = f"tables[{fname!r}]"
        V.mapping(entry, file=file, item=item, what="an object {table, split, rows, sha256}", error=ManifestError)
        for key in ("table", "split", "rows", "sha256"):
            if key not in entry:
                raise ManifestError(f"lacks the key {key!r}", file=file, item=item)
        V.string(entry["table"], file=file, item=f"{item} table", what="a table name (a non-empty string)",
                 error=ManifestError)
        if entry["split"] is not None:
            V.string(entry["split"], file=file, item=f"{item} split", what="a split name (a string) or null",
                     error=ManifestError)
        V.integer(entry["rows"], file=file, item=f"{item} rows", min=0, what="a row count (an integer)",
                  error=ManifestError)
        sha = entry["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise V.fail("a sha256 (64 lowercase hexadecimal digits)", sha, file=file, item=f"{item} sha256",
                         error=ManifestError)
        want = _table_file(entry["table"], entry["split"])
        if fname != os.path.basename(fname) or "\\" in fname or fname.startswith("."):
            raise ManifestError("expected a plain file name inside the manifest folder, found a path", file=file,
                                item=item)
        if fname != want:
            raise ManifestError(f"expected the file name {want!r} for table {entry['table']!r} and split "
                                f"{entry['split']!r}, found {fname!r}", file=file, item=item)
    return meta


def open_manifest(name_or_path: Union[str, os.PathLike]) -> Manifest:
    path = resolve_manifest(name_or_path)
    meta = read_json(path / MANIFEST_FILE, "manifest.json", ManifestError)
    return Manifest(path, check_manifest_meta(meta, path / MANIFEST_FILE))


def load_manifest(
    name_or_path: Union[str, os.PathLike],
    split: Optional[str] = None,
    table: str = "pairs",
    *,
    verify: bool = True,
) -> pd.DataFrame:
    """Return one validated table of a manifest as a pandas DataFrame.

    >>> pairs = load_manifest("activitynet", split="test", table="pairs")  # doctest: +SKIP
    """
    return open_manifest(name_or_path).table(table, split, verify=verify)


def _to_arrow(df: pd.DataFrame, schema: TableSchema) -> pa.Table:
    cols = {}
    kinds = schema.kinds(df)
    for col, kind in kinds.items():
        s = df[col]
        if kind == "str":
            cols[col] = pa.array(s.astype(str).tolist(), type=pa.string())
        elif kind == "int":
            cols[col] = pa.array(s.to_numpy(dtype=np.int64), type=pa.int64())
        elif kind == "float":
            cols[col] = pa.array(s.to_numpy(dtype=np.float64), type=pa.float64())
        elif kind == "bool":
            cols[col] = pa.array(s.to_numpy(dtype=bool), type=pa.bool_())
        elif kind == "list[str]":
            cols[col] = pa.array([list(v) for v in s], type=pa.list_(pa.string()))
        elif kind == "list[float]":
            cols[col] = pa.array([[float(x) for x in v] for v in s], type=pa.list_(pa.float64()))
    extra = [c for c in df.columns if c not in kinds]
    for col in extra:  # extra columns are kept, with their inferred type
        cols[col] = pa.array(df[col].tolist())
    return pa.table(cols)


def write_manifest(
    out: Union[str, os.PathLike],
    tables: Mapping[Tuple[str, Optional[str]], pd.DataFrame],
    meta: Mapping,
    *,
    force: bool = False,
    extras: Optional[Callable[[Path], Sequence[str]]] = None,
) -> Path:
    """Validate and write every table, then ``manifest.json``, atomically into ``out``.

    ``tables`` maps ``(table, split or None)`` to a DataFrame. ``meta`` holds ``name``,
    ``task``, ``builder``, ``protocol``, ``params``, ``inputs`` and ``report``.
    ``extras(tmpdir)`` may write statistics files into the folder and returns their names.
    The output is byte-identical for identical inputs.
    """
    if meta.get("task") not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {meta.get('task')!r}")
    out = Path(out)
    with atomic_dir(out, force=force) as tmp:
        write_manifest_into(tmp, tables, meta, extras=extras, out=out)
    return out


def write_manifest_into(
    folder: Union[str, os.PathLike],
    tables: Mapping[Tuple[str, Optional[str]], pd.DataFrame],
    meta: Mapping,
    *,
    extras: Optional[Callable[[Path], Sequence[str]]] = None,
    out: Optional[Union[str, os.PathLike]] = None,
) -> Path:
    """What ``write_manifest`` writes, into an existing (temporary) ``folder``; for callers
    that commit the manifest together with other outputs in one step (``atomic_dir``).
    ``out`` is the final path, used in error messages."""
    task = meta.get("task")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    tmp = Path(folder)
    final = Path(out) if out is not None else tmp
    listing = {}
    for (table, split), df in sorted(tables.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        fname = _table_file(table, split)
        validate_table(df, task, table, where=f"{final / fname} (being written)")
        arrow = _to_arrow(df, SCHEMAS[(task, table)])
        pq.write_table(arrow, tmp / fname, compression="zstd", write_statistics=True)
        listing[fname] = {
            "table": table,
            "split": split,
            "rows": int(len(df)),
            "sha256": sha256_file(tmp / fname),
        }
    extra_names = sorted(extras(tmp)) if extras is not None else []
    doc = {
        "schema_version": SCHEMA_VERSION,
        **{k: v for k, v in meta.items()},
        "tables": listing,
        "extras": extra_names,
    }
    (tmp / MANIFEST_FILE).write_text(dumps_json(doc), encoding="utf-8")
    return tmp
