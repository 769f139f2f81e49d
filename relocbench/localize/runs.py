"""Finished ``run-baseline`` folders used for prediction: on a manifest, or on any two videos.

* :func:`load_run` reads ``config.json`` and ``checkpoint-best.pt`` of a run folder and
  builds the model through the registry (the run's baseline, its full config). Both go
  through one checked path: :func:`read_run_config` (a JSON object naming a known baseline
  and holding its config) and :func:`load_checkpoint_state` (``weights_only`` loading; any
  damaged, foreign or mismatched checkpoint is one line naming the file, the model and the
  first missing or unexpected key). :func:`run_input_files` lists what no output may be.
* :func:`predict_run` writes the predictions file of a finished run on a split of its own
  manifest or of another one, with its own features or another file of the same kind
  (``relocbench predict``).
* :func:`run_feature_settings` tells which extraction settings the run's features came
  from (the attributes ``extract-features`` writes into its HDF5 files), so that
  ``localize --method RUN_DIR`` extracts the same ones; :func:`check_feature_settings`
  refuses a mismatch, naming both.
* :func:`predict_windows` runs the model on a query and a reference given as arrays: a
  reference longer than the model's window (:func:`window_plan`) is cut into overlapping
  windows, each predicted as one pair, and the segments mapped back to the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError, FeatureError
from ..io import atomic_write_json, check_output, read_json

__all__ = [
    "TrainedRun", "load_run", "read_run_config", "load_checkpoint_state", "run_input_files", "predict_run",
    "PredictResult", "check_features_file", "run_feature_settings", "check_feature_settings", "window_plan",
    "predict_windows", "FEATURE_KEYS", "DEFAULT_WINDOW_STEPS", "MAX_THREADS",
]

#: Extraction settings that must agree between a run's features and new ones.
FEATURE_KEYS = ("backbone", "weights", "step_frames", "dim", "pca")
#: The longest reference window of the temporal manifests (ECCV 2018 protocol crop): what a
#: trained temporal model saw in training, so the window a long reference is scanned in.
DEFAULT_WINDOW_STEPS = 300
CHECKPOINT = "checkpoint-best.pt"
#: Largest ``--threads`` accepted by ``predict``.
MAX_THREADS = 1024


@dataclass
class TrainedRun:
    """A finished run: its folder, ``config.json``, baseline class, config and loaded model."""

    run_dir: Path
    run_config: Dict[str, Any]
    cls: type
    config: Any
    model: Any
    device: Any

    @property
    def name(self) -> str:
        return str(self.run_config.get("baseline"))

    @property
    def task(self) -> str:
        return str(self.run_config.get("task", "temporal"))

    def describe(self) -> Dict[str, Any]:
        return {"run": str(self.run_dir), "baseline": self.name, "checkpoint": CHECKPOINT}


def run_input_files(run_dir: Union[str, Path]) -> List[Path]:
    """The run folder and the files in it that describe the run (config, checkpoints, log,
    metrics, result): what no output may be. ``predictions-*.json`` are outputs of the same
    kind as ``predict``'s, not inputs."""
    d = Path(run_dir)
    out = [d]
    if d.is_dir():
        out += sorted(f for f in d.iterdir() if f.is_file() and not
                      (f.name.startswith("predictions-") and f.name.endswith(".json")))
    return out


def read_run_config(run_dir: Union[str, Path]) -> Dict[str, Any]:
    """The checked ``config.json`` of a run folder: a JSON object naming a known baseline
    (``baseline``), its settings (``config``, an object) and optionally ``task``, ``dataset``
    and ``features``. Every error names the folder or the file."""
    from ..registry import get_baseline

    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError("run folder not found (expected a folder written by `relocbench run-baseline`)", file=d)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ConfigError("not a run folder: it has no config.json (expected a folder written by "
                          "`relocbench run-baseline`)", file=d)
    doc = read_json(cfg_path, "run config", ConfigError)
    if not isinstance(doc, dict):
        raise ConfigError(f"expected a run config (a JSON object with 'baseline' and 'config'), found a "
                          f"{_json_kind(doc)}", file=cfg_path)
    for key, kind, types in (("baseline", "a name", str), ("config", "an object", dict)):
        if key not in doc:
            raise ConfigError(f"the run config has no {key!r} ({kind})", file=cfg_path)
        if not isinstance(doc[key], types):
            raise ConfigError(f"the run config's {key!r} must be {kind}, found a {_json_kind(doc[key])}",
                              file=cfg_path)
    for key in ("task", "dataset"):
        if key in doc and not isinstance(doc[key], str):
            raise ConfigError(f"the run config's {key!r} must be a name, found a {_json_kind(doc[key])}",
                              file=cfg_path)
    if "features" in doc and not isinstance(doc["features"], (str, dict)):
        raise ConfigError(f"the run config's 'features' must be a path or an object, found a "
                          f"{_json_kind(doc['features'])}", file=cfg_path)
    try:
        get_baseline(doc["baseline"])
    except ConfigError as exc:
        raise ConfigError(f"the run's baseline: {exc.message}", file=cfg_path) from None
    return doc


def _json_kind(value: Any) -> str:
    return {dict: "JSON object", list: "JSON list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def load_checkpoint_state(path: Union[str, Path], model: Any, *, name: str, device: Any = "cpu") -> None:
    """Load the ``model`` weights of checkpoint ``path`` into ``model`` (of baseline ``name``).

    One checked path for every run checkpoint: ``torch.load(..., weights_only=True)`` (no
    code runs from the file; torch's own notices silenced) inside a guard that turns any
    failure (empty, truncated, garbage, text, a pickle of something else) into one line
    naming the file; the checkpoint must be an object holding ``model``, a state dict;
    a state dict of another model is refused naming the model and the first missing or
    unexpected key (or the first tensor of another shape).
    """
    import warnings

    import torch

    p = Path(path)
    where = f"{name} ({type(model).__name__})"
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read the checkpoint ({exc.strerror})", file=p) from None
    if size == 0:
        raise ConfigError("the checkpoint is empty (0 bytes); expected the state dict run-baseline wrote", file=p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many kinds on a bad file (pickle, zip, EOF, runtime, unpickler)
        import zipfile

        if not zipfile.is_zipfile(p):  # what torch.save writes; the unpickler's reason says little here
            with open(p, "rb") as fh:
                head = fh.read(12)
            reason = ("truncated or damaged: a zip archive without its end (central directory)"
                      if head.startswith(b"PK\x03\x04") else
                      f"not the zip archive torch.save writes: it starts with {head!r}")
        else:
            reason = f"{type(exc).__name__}: {_torch_reason(exc)}"
        raise ConfigError(f"not a readable torch checkpoint ({reason}); expected the {p.name} that "
                          "run-baseline writes (a state dict under 'model')", file=p) from None
    if not isinstance(state, dict) or "model" not in state:
        found = (f"an object with keys {sorted(map(str, state))[:5]}" if isinstance(state, dict)
                 else f"a {type(state).__name__}")
        raise ConfigError(f"expected a checkpoint holding 'model' (a state dict), found {found}", file=p)
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in weights.items()):
        raise ConfigError(f"the checkpoint's 'model' must be a state dict (names -> tensors), found "
                          f"{_state_kind(weights)}", file=p)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{what} key {keys[0]!r}" + (f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""))
        raise ConfigError(f"the checkpoint's state dict is not one of {where}: {', '.join(parts)}", file=p)
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise ConfigError(f"the checkpoint's state dict is not one of {where}: {k!r} has shape "
                              f"{tuple(weights[k].shape)}, the model's is {tuple(v.shape)} (another config?)",
                              file=p)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot load the checkpoint into {where}: {_torch_reason(exc)}", file=p) from None


def _torch_reason(exc: BaseException) -> str:
    """One line of a torch error: the unpickler's own reason when it gives one, else the first line."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:  # the weights-only unpickler's reason, without torch's notice around it
        rest = [ln.strip() for ln in text.split(marker, 1)[1].splitlines() if ln.strip()]
        if rest:
            return rest[0].split(". ")[0][:160]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]


def _state_kind(value: Any) -> str:
    if isinstance(value, dict):
        bad = next((k for k, v in value.items() if not (isinstance(k, str) and hasattr(v, "shape"))), None)
        return f"an object whose entry {bad!r} is not a tensor"
    return f"a {type(value).__name__}"


def load_run(run_dir: Union[str, Path], *, device: str = "cpu") -> TrainedRun:
    """Read a run folder and load its best checkpoint (errors name the folder and the file)."""
    import torch

    from ..engine import resolve_device
    from ..registry import get_baseline

    d = Path(run_dir)
    run_config = read_run_config(d)
    cfg_path = d / "config.json"
    cls = get_baseline(run_config["baseline"])
    cfg = cls.default_config(run_config["config"], source=str(cfg_path))
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    model = cls.create_model(cfg)
    if model is not None:
        ckpt = d / CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(f"run folder without a checkpoint: expected {CHECKPOINT} (is the run finished?)", file=d)
        load_checkpoint_state(ckpt, model, name=run_config["baseline"], device=dev)
        model = model.to(dev).eval()
    return TrainedRun(d, run_config, cls, cfg, model, dev)


# --------------------------------------------------------------------------- feature settings
def _features_spec(desc: Any, where: Optional[Path] = None) -> str:
    """The ``--features`` value that reopens a run's feature store from its description."""
    if isinstance(desc, str):
        return desc
    if isinstance(desc, dict):
        if desc.get("kind") == "synthetic":
            return "synthetic"
        if desc.get("source"):
            return str(desc["source"])
    raise ConfigError(f"cannot tell where the run's features came from (its 'features' is {desc!r}); "
                      "pass --features", file=where)


def _file_settings(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The extraction settings stored in an ``extract-features`` HDF5 file, or None for other
    stores. A file that claims to be HDF5 but cannot be opened (truncated, scribbled) is a
    FeatureError naming it."""
    p = Path(path)
    if not p.is_file():
        return None
    import h5py

    try:
        if not h5py.is_hdf5(str(p)):
            return None
        with h5py.File(p, "r") as f:
            attrs = dict(f.attrs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # h5py's errors on a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FeatureError(f"not a readable HDF5 features file (truncated or corrupted: {reason})", file=p) from None
    if "relocbench_features" not in attrs:
        return None
    out = {}
    for k in FEATURE_KEYS:
        v = attrs.get(k)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, np.generic):
            v = v.item()
        if v is not None and not isinstance(v, (str, int, float)):
            raise FeatureError(f"attribute {k!r} must be a string or a number, found {type(v).__name__}", file=p)
        out[k] = v
    return out


def check_features_file(path: Any) -> None:
    """Refuse a features path that claims to be HDF5 but cannot be opened (truncated,
    scribbled), in one line naming it; anything else is left to the feature store."""
    if path is not None and str(path) != "synthetic":
        _file_settings(path)


def _norm_setting(key: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
        return None if key == "pca" else value
    if key in ("step_frames", "dim"):
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    return str(value) if not isinstance(value, str) else value


def run_feature_settings(run: TrainedRun) -> Tuple[Dict[str, Any], str]:
    """``(settings, features file)`` of the run's features: the :data:`FEATURE_KEYS` of the
    features file's attributes (``extract-features`` output). Other stores are refused:
    videos cannot be turned into their features."""
    desc = run.run_config.get("features")
    where = run.run_dir / "config.json"
    spec = _features_spec(desc, where)
    if spec == "synthetic":
        raise ConfigError("the run was trained on synthetic features, which cannot be computed from a video; "
                          "train on features written by `relocbench extract-features`", file=where)
    if isinstance(desc, dict) and isinstance(desc.get("card"), dict):
        raise ConfigError(f"the run was trained on the {desc['card'].get('name')!r} features (a feature card), "
                          "which relocbench cannot compute from a video; train on features written by "
                          "`relocbench extract-features`", file=where)
    settings = _file_settings(spec)
    if settings is None:
        if not Path(spec).exists():
            raise FeatureError("the run's features file is gone, so its extraction settings cannot be read "
                               "(expected the HDF5 file `relocbench extract-features` wrote)", file=spec)
        raise ConfigError(f"the run's features ({spec}) were not written by `relocbench extract-features` "
                          "(no relocbench_features attribute), so they cannot be computed from a video", file=where)
    return settings, spec


def _fmt(settings: Dict[str, Any]) -> str:
    return " ".join(f"{k}={settings.get(k)}" for k in FEATURE_KEYS if k in settings)


def check_feature_settings(wanted: Dict[str, Any], have: Dict[str, Any], *, wanted_from: str,
                           have_from: str, pca_presence_only: bool = False) -> None:
    """Refuse features whose settings differ from the run's, naming both sides in one line.

    Only keys present on both sides are compared. ``pca`` values are the files' descriptions
    (``none`` or ``pca-N sha256:...``), compared exactly; with ``pca_presence_only`` (a PCA
    asked for by file, before extraction) only whether there is one.
    """
    diff = []
    for k in FEATURE_KEYS:
        if k not in wanted or k not in have:
            continue
        a, b = _norm_setting(k, wanted[k]), _norm_setting(k, have[k])
        if k == "pca" and pca_presence_only:
            a, b = a is not None, b is not None
        if a != b:
            diff.append(k)
    if diff:
        raise ConfigError(
            f"features mismatch in {', '.join(diff)}: the run was trained on {_fmt(wanted)} ({wanted_from}), "
            f"these are {_fmt(have)} ({have_from}); use the run's settings"
        )


# --------------------------------------------------------------------------- predict on a manifest
@dataclass
class PredictResult:
    path: Path
    n_pairs: int
    n_predicted: int
    split: str
    manifest: str
    features: str


def predict_run(run_dir: Union[str, Path], *, split: str = "test", manifest: Optional[str] = None,
                features: Optional[str] = None, out: Optional[Union[str, Path]] = None, force: bool = False,
                device: str = "auto", skip_missing: bool = False, threads: Optional[int] = None,
                feature_preset: Optional[str] = None, feature_card: Any = None) -> PredictResult:
    """Write the predictions of a finished run on ``split`` of ``manifest`` with ``features``.

    Defaults: the run's own manifest (a built-in name; a run made on a manifest folder needs
    ``manifest``), its own features, and ``RUN_DIR/predictions-<split>.json``. Other features
    must have the run's dimension (and, for ``extract-features`` files, the run's settings).
    Written atomically; an existing file is refused unless ``force``. A run trained on a
    feature card or preset reopens its features with that card, and refuses features declared
    by another one (``feature_preset`` / ``feature_card``, or a card beside ``features``).

    >>> predict_run("runs/cgbm", split="val")  # doctest: +SKIP
    """
    import torch

    from ..tasks import get_task

    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool)
                                    and 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"--threads must be between 1 and {MAX_THREADS}. Got {threads!r} instead.")
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)  # before the work: a bad run folder is refused first
    out_path = Path(out) if out is not None else run_dir / f"predictions-{split}.json"
    run_spec = _features_spec(run_config.get("features"), run_dir / "config.json") if features is None else None
    spec = features if features is not None else run_spec
    check_output(out_path, force, inputs=_predict_inputs(run_dir, spec, manifest, out_path), option="--out")
    if threads is not None:
        torch.set_num_threads(threads)
    run = load_run(run_dir, device=device)
    task = get_task(run.task)
    dataset = manifest if manifest is not None else str(run.run_config.get("dataset"))
    run_spec = _features_spec(run.run_config.get("features"), run_dir / "config.json")
    if manifest is None:
        from ..errors import ManifestError
        from ..manifest import resolve_manifest

        try:
            resolve_manifest(dataset)
        except ManifestError:  # re-raised with what to do about it
            raise ConfigError(f"the run was made on dataset {dataset!r}, which is not a built-in manifest here; "
                              "pass --manifest FOLDER", file=run_dir / "config.json") from None
    if features is not None and spec != run_spec:
        _check_store_compatible(run, run_spec, spec)
    else:
        _file_settings(spec)  # a damaged features file: one line naming it, before the store opens it
    declared = {k: v for k, v in (("feature_preset", feature_preset), ("feature_card", feature_card))
                if v is not None}
    run_card = _run_card(run)
    if not declared and run_card is not None:
        from ..features.cards import find_card

        if features is None or find_card(spec) is None:  # reopened with the run's own card
            declared = {"feature_card": run_card}
    ctx = task.open(dataset, spec, device=run.device, seed=run.config.seed, skip_missing=skip_missing, **declared)
    _check_store_card(run, run_card, ctx.features, spec)
    _check_store_width(run, ctx.features, spec)
    ctx.run_dir = run_dir
    baseline = run.cls(run.config, ctx)
    baseline.prepare(run.model)
    pairs = task.pairs(ctx, split)
    todo = task.predictable(ctx, pairs)
    torch.manual_seed(run.config.seed)
    with torch.no_grad():
        results = baseline.predict(run.model, todo)
    doc = task.predictions_doc(ctx, split, results)
    atomic_write_json(out_path, doc, force=force)
    return PredictResult(out_path, int(len(pairs)), int(len(results)), split, str(dataset), str(spec))


def _inside(path: Path, folder: Path) -> List[Path]:
    """``[path]`` when ``path`` exists and resolves to a file inside ``folder``, else ``[]``
    (a folder input is checked for the one name that matters instead of being listed)."""
    import os

    try:
        real, root = os.path.realpath(path), os.path.realpath(folder)
    except (OSError, ValueError):
        return []
    return [path] if os.path.exists(real) and real.startswith(root.rstrip(os.sep) + os.sep) else []


def _predict_inputs(run_dir: Path, spec: Optional[str], manifest: Optional[str], out: Path) -> List[Path]:
    """What ``predict --out`` may not be: the run folder's files, the features file (or a
    file of the features folder) and a file of the manifest folder."""
    inputs = run_input_files(run_dir)
    for item in (spec, manifest):
        if item is None or item == "synthetic":
            continue
        p = Path(item)
        if p.is_dir():
            inputs += [p] + _inside(out, p)
        elif p.exists():
            inputs.append(p)
    return inputs


def _run_width(run: TrainedRun) -> Optional[int]:
    want = getattr(run.config, "feature_dim", None)
    desc = run.run_config.get("features")
    if want is None and isinstance(desc, dict):
        want = desc.get("dim")
    try:
        return None if want is None else int(want)
    except (TypeError, ValueError):
        return None


def _run_card(run: TrainedRun) -> Optional[Dict[str, Any]]:
    desc = run.run_config.get("features")
    return desc["card"] if isinstance(desc, dict) and isinstance(desc.get("card"), dict) else None


def _check_store_card(run: TrainedRun, run_card: Optional[Dict[str, Any]], store: Any, spec: str) -> None:
    """Features declared another way than the run's are refused, naming both: by another card,
    by none when the run's were declared by a card, or by a card when the run's were not (a run
    trained on synthetic or extracted features)."""
    desc = run.run_config.get("features")
    mine = store.describe() if hasattr(store, "describe") else {}
    if run_card is None:
        if mine.get("card_sha256") is not None:
            if isinstance(desc, dict):
                trained = f"{desc.get('kind', 'unknown')} features"
            else:
                trained = f"{desc!r} features" if desc is not None else "unknown features"
            raise ConfigError(f"features declared by a feature card, the run's by none: the run was trained on "
                              f"{trained} declared by no feature card ({run.run_dir / 'config.json'}), {spec} is "
                              f"declared as {mine.get('name')!r}; give features declared as the run's were")
        return
    desc = desc or {}
    want, have = desc.get("card_sha256"), mine.get("card_sha256")
    if want is not None and want != have:  # another card, or features declared by none
        declared = repr(mine.get("name")) if have is not None else f"no feature card ({mine.get('kind', 'unknown')} features)"
        raise ConfigError(f"features declared by another feature card: the run was trained on "
                          f"{run_card.get('name')!r} ({run.run_dir / 'config.json'}), {spec} is declared as "
                          f"{declared}")


def _check_store_width(run: TrainedRun, store: Any, spec: str) -> None:
    """Features of another width than the run's model takes: one line naming both."""
    want = _run_width(run)
    have = getattr(store, "dim", None)
    if want is not None and have is not None and int(have) != want:
        raise FeatureError(f"the features' width does not match the run's: found {int(have)}-dimensional rows, "
                           f"the run's model takes {want} ({run.run_dir / 'config.json'})", file=spec)


def _check_store_compatible(run: TrainedRun, run_spec: str, spec: str) -> None:
    """Other features must match the run's: extraction settings when both are extract files,
    else the feature dimension the model was built for."""
    mine = _file_settings(spec)
    theirs = _file_settings(run_spec) if run_spec != "synthetic" else None
    if mine is not None and theirs is not None:
        check_feature_settings(theirs, mine, wanted_from=f"features {run_spec}", have_from=f"features {spec}")
        return
    want_dim = getattr(run.config, "feature_dim", None)
    desc = run.run_config.get("features")
    if want_dim is None and isinstance(desc, dict):
        want_dim = desc.get("dim")
    if want_dim is not None and mine is not None and mine.get("dim") is not None and int(mine["dim"]) != int(want_dim):
        raise ConfigError(f"features mismatch in dim: the run's model takes {want_dim}-dimensional features "
                          f"({run.run_dir / 'config.json'}), {spec} holds {mine['dim']}-dimensional ones")


# --------------------------------------------------------------------------- predict on two videos
def window_plan(n_steps: int, window: int, overlap: int) -> List[Tuple[int, int]]:
    """Windows ``[a, b)`` of at most ``window`` steps covering ``[0, n_steps)``, consecutive
    ones sharing ``overlap`` steps (any span of up to ``overlap + 1`` steps lies inside one),
    the last one ending at ``n_steps``."""
    if n_steps < 1 or window < 1 or not (0 <= overlap < window):
        raise ConfigError(f"window plan needs n_steps >= 1 and 0 <= overlap < window; got {n_steps}, {window}, {overlap}")
    if n_steps <= window:
        return [(0, n_steps)]
    stride = window - overlap
    starts = list(range(0, n_steps - window, stride)) + [n_steps - window]
    return [(a, a + window) for a in starts]


class _ArrayStore:
    """The minimal feature-store interface over in-memory arrays (``get``, ``dim``, ``in``)."""

    kind = "arrays"
    source = None

    def __init__(self, arrays: Dict[str, np.ndarray]) -> None:
        self._arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        dims = {a.shape[1] for a in self._arrays.values()}
        if len(dims) != 1:
            raise FeatureError(f"query and reference features differ in dimension: {sorted(dims)}")
        self.dim = dims.pop()

    def get(self, video: str) -> np.ndarray:
        return self._arrays[video]

    def __contains__(self, video: object) -> bool:
        return video in self._arrays

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim}


def _window_pairs(n_query: int, windows: List[Tuple[int, int]]):
    import pandas as pd

    rows = []
    for k, (a, b) in enumerate(windows):
        rows.append({
            "pair_id": f"w{k:06d}", "label": "", "query_segment_id": "query", "query_video": "query",
            "query_start_step": 0, "query_end_step": int(n_query), "ref_segment_id": "reference",
            "ref_video": "reference", "ref_start_step": int(a), "ref_end_step": int(b),
            "gt_start_step": 0, "gt_end_step": 1,  # unknown: the columns exist, nothing reads them to predict
            "query_start_s": 0.0, "query_end_s": 0.0, "ref_start_s": 0.0, "ref_end_s": 0.0,
            "gt_start_s": 0.0, "gt_end_s": 0.0,
        })
    return pd.DataFrame(rows)


def predict_windows(run: TrainedRun, query: np.ndarray, reference: np.ndarray, *,
                    window: Optional[int] = None, overlap: Optional[int] = None):
    """Candidate segments ``(start_step, end_step, score)`` arrays of a trained temporal run.

    The reference is scanned in :func:`window_plan` windows (default
    :data:`DEFAULT_WINDOW_STEPS` steps, overlapping by the run's ``max_span`` when it has one,
    so that every span the model can decode lies wholly inside some window); each window is
    one pair; the segments come back on the whole reference's steps.
    """
    import torch

    from ..baseline import RunContext
    from .matching import Candidates

    if run.task != "temporal":
        raise ConfigError(f"localize needs a temporal run; {run.run_dir} is a {run.task} run")
    w = int(window or getattr(run.config, "window", None) or DEFAULT_WINDOW_STEPS)
    ov = overlap if overlap is not None else min(int(getattr(run.config, "max_span", w // 4)), w - 1)
    windows = window_plan(int(reference.shape[0]), w, int(ov))
    store = _ArrayStore({"query": query, "reference": reference})
    want_dim = getattr(run.config, "feature_dim", None)
    if want_dim is not None and int(want_dim) != store.dim:
        raise ConfigError(f"features mismatch in dim: the run's model takes {want_dim}-dimensional features "
                          f"({run.run_dir / 'config.json'}), these are {store.dim}-dimensional")
    ctx = RunContext(dataset="localize", manifest=None, features=store, device=run.device)
    baseline = run.cls(run.config, ctx)
    pairs = _window_pairs(int(query.shape[0]), windows)
    torch.manual_seed(run.config.seed)
    with torch.no_grad():
        results = baseline.predict(run.model, pairs)
    starts, ends, scores = [], [], []
    for k, (a, b) in enumerate(windows):
        for p in results.get(f"w{k:06d}", []):
            s, e = p["segment"]
            starts.append(a + int(s))
            ends.append(a + int(e))
            scores.append(float(p["score"]))
    scores_arr = np.array(scores, np.float64)
    if scores_arr.size and not np.all(np.isfinite(scores_arr)):
        scores_arr = np.where(np.isfinite(scores_arr), scores_arr, -math.inf)
    return Candidates(np.array(starts, np.int64), np.array(ends, np.int64), scores_arr), windows
