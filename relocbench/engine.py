"""One engine for every baseline: run folder, training loop, resume, DDP, scoring, results.

Run folder layout (``--out``, default ``runs/<dataset>/<baseline>``)::

    config.json            baseline, dataset, features, split, full config, versions, code commit
    checkpoint-last.pt     model, optimiser, scheduler, step, best score (for --resume)
    checkpoint-best.pt     the model weights with the best validation score
    log.jsonl              one JSON object per logged step and per validation
    predictions-<split>.json   the task's prediction format (scored by `relocbench evaluate`)
    metrics-<split>.json       the task's metrics JSON
    result.json            the leaderboard record (metrics + config, seed, features,
                           manifest sha256, package version, code commit, wall time, hardware)

Every file is written atomically. A killed run restarts from ``checkpoint-last.pt`` with
``--resume``; batches derive from ``(seed, step)``, so a resumed run trains on exactly the
batches an uninterrupted one would. Inputs (config, split, output folders, features) are
checked before the run folder is made, and a run that fails before its first checkpoint
removes the folder it made, so that the same command can simply be run again.

Progress (training steps with loss, last validation score and ETA; validation and
prediction passes in pairs) goes through :mod:`relocbench.progress`: a bar on a terminal,
one line at least every 30 s when stderr is a log file, CI or ``nohup``.

Distributed training: started by ``torchrun --nproc_per_node N relocbench run-baseline
...``; each rank computes its share of every global batch, DDP averages the gradients,
rank 0 validates and writes everything (gloo on CPU, NCCL on CUDA).
"""
from __future__ import annotations

import io
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import __version__
from .provenance import code_revision
from .baseline import Baseline, config_to_dict
from .errors import ConfigError, InputError, OutputExistsError
from .io import atomic_write_bytes, atomic_write_json, read_json
from .progress import Progress
from .registry import get_baseline
from .tasks import get_task

log = logging.getLogger(__name__)

__all__ = ["resolve_device", "run_baseline", "RunResult", "load_config_file", "Distributed", "resolve_config",
           "describe_config", "load_checkpoint", "predict_pairs", "share_chunks", "paper_config_path"]


def resolve_device(spec: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cpu``; ``cuda`` or ``cuda:N`` (error without CUDA)."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} asked for CUDA, but torch sees no CUDA device here; use --device cpu or auto")
        return torch.device(spec)
    raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N. Got {spec!r} instead.")


def refuse_port_zero() -> None:
    """torchrun's ``--master_port 0`` leaves every rank its own port to wait on: refuse it
    before joining (which would wait forever)."""
    if os.environ.get("MASTER_PORT") == "0":
        raise ConfigError("MASTER_PORT is 0: torchrun needs a real port (--master_port 29500) for the ranks to meet")


class Distributed:
    """Rank/world from torchrun's environment; a no-op in a single process."""

    def __init__(self, device) -> None:
        import torch

        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        self.enabled = self.world_size > 1
        if self.enabled:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                refuse_port_zero()
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_flag(self, value: bool) -> bool:
        if not self.enabled:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if value else 0], dtype=torch.int64)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a YAML or JSON file of config overrides (a flat mapping)."""
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        from .io import require_file

        require_file(p, "config file", ConfigError)
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"expected UTF-8 YAML text, found an undecodable byte at offset {exc.start}",
                              file=p) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the config file: {exc.strerror}", file=p) from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None)
            raise ConfigError(f"malformed YAML{where}" + (f": {problem}" if problem else ""), file=p) from None
        except RecursionError:
            raise ConfigError("malformed YAML: nested too deeply", file=p) from None
    else:
        doc = read_json(p, "config file", ConfigError)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"expected a mapping of config keys to values, found a {type(doc).__name__}", file=p)
    bad = [k for k in doc if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"expected string config keys, found {bad[0]!r}", file=p)
    return doc


@dataclass
class RunResult:
    run_dir: Path
    metrics: Dict[str, Any]
    result: Dict[str, Any]
    #: with ``skip_missing``: pairs, scored, missing, missing_videos, subset (see :func:`run_baseline`)
    coverage: Optional[Dict[str, Any]] = None


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _hardware(device, world_size: int = 1) -> Dict[str, Any]:
    """Where a run ran; ``processes`` (the data-parallel ranks, each with ``threads`` threads)
    only for a distributed run."""
    import torch

    hw = {"device": str(device), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
          "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__}
    if world_size > 1:
        hw["processes"] = int(world_size)
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


class _Log:
    def __init__(self, path: Optional[Path]) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")


def _prepare_run_dir(run_dir: Path, run_config: Dict[str, Any], resume: bool, force: bool) -> bool:
    """Create or reuse the run folder; return True when resuming from a checkpoint."""
    cfg_path = run_dir / "config.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("the run folder is not a folder", file=run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            if not cfg_path.is_file():
                raise ConfigError("cannot resume: no config.json in the run folder", file=run_dir)
            old = read_json(cfg_path, "run config", ConfigError)
            if not isinstance(old, dict):
                raise ConfigError(f"cannot resume: expected a JSON object in the run config, found a "
                                  f"{type(old).__name__}; use another --out or --force to start over", file=cfg_path)
            keys = ("baseline", "dataset", "features", "config")
            diff = [k for k in keys if old.get(k) != run_config.get(k)]
            if diff:
                raise ConfigError(
                    f"cannot resume: the run folder was made with a different {', '.join(diff)}; "
                    "use another --out or --force to start over", file=cfg_path,
                )
            return (run_dir / "checkpoint-last.pt").is_file()
        if not force:
            raise OutputExistsError("run folder exists already; pass --resume to continue it or --force to start over",
                                    file=run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, run_config)
    return False


def _make_optimizer(cfg, params):
    import torch

    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_milestones), gamma=cfg.lr_gamma)
    return opt, sched


CHECKPOINT_KEYS = {"checkpoint-last.pt": ("model", "optimizer", "scheduler", "step", "best", "best_step"),
                   "checkpoint-best.pt": ("model", "step")}


def load_checkpoint(path: Path, device) -> Dict[str, Any]:
    """A checkpoint of the run folder; an empty, truncated or foreign file is an InputError
    naming it (instead of an unpickling error deep inside torch)."""
    import torch

    keys = CHECKPOINT_KEYS.get(path.name, ("model",))
    hint = "delete it to restart from the last good state, or pass --force to start the run over"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read the checkpoint: {exc.strerror}", file=path) from None
    if size == 0:
        raise InputError(f"the checkpoint is empty (0 bytes); {hint}", file=path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many kinds on a damaged file (pickle, zip, EOF, runtime)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"not a readable torch checkpoint (truncated or corrupted: {type(exc).__name__}: "
                         f"{first}); {hint}", file=path) from None
    if not isinstance(state, dict) or any(k not in state for k in keys):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise InputError(f"expected a checkpoint holding {list(keys)}, found {found}; {hint}", file=path)
    return state


def _load_weights(model, path: Path, device) -> None:
    state = load_checkpoint(path, device)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"the checkpoint's weights do not fit this model ({first}); pass --force to start the "
                         "run over", file=path) from None


def share_chunks(work: Sequence[float], world_size: int) -> List[int]:
    """The rank that predicts each chunk: the largest first, each to the least loaded rank so far
    (ties: the lower chunk index, then the lower rank). Every rank computes the same list.

    Chunks come sorted by window length, so the round-robin ``r, r + N, ...`` would hand the
    last rank's neighbour the longest windows every time; balanced by work, a validation pass
    of the paper's cgbm run on two ranks takes the longer share's time, not the sum's.
    """
    load = [0.0] * max(1, int(world_size))
    owner = [0] * len(work)
    for i in sorted(range(len(work)), key=lambda j: (-float(work[j]), j)):
        r = min(range(len(load)), key=lambda k: (load[k], k))
        owner[i] = r
        load[r] += float(work[i])
    return owner


def predict_pairs(baseline: Baseline, model, task, ctx, pairs, *, desc: str, quiet: bool,
                  leave: bool = True, dist: Optional["Distributed"] = None) -> Dict[str, list]:
    """``baseline.predict`` over ``pairs`` in the task's chunks, with a progress line.

    Chunks hold ``baseline.prediction_chunk()`` pairs in the task's order (temporal: by
    window length, as the batched predictors sort them), so batched predictors see the
    same batches as in one call and the predictions are the same. With ``dist`` (a
    distributed run: every rank calls this with the same model) the chunks are shared out by
    their work (:func:`share_chunks` of ``task.prediction_work``) and every rank returns all of
    them, merged in chunk order: the same dictionary as one process computes.
    """
    import torch

    chunks = task.prediction_chunks(ctx, pairs, baseline.prediction_chunk())
    share = dist is not None and dist.enabled
    if share:
        owner = share_chunks([task.prediction_work(c) for c in chunks], dist.world_size)
        mine = [(i, c) for i, c in enumerate(chunks) if owner[i] == dist.rank]
    else:
        mine = list(enumerate(chunks))
    done: Dict[int, Dict[str, list]] = {}
    with Progress(total=sum(len(c) for _, c in mine), desc=desc, unit="pair", quiet=quiet, leave=leave) as bar:
        with torch.no_grad():
            for i, chunk in mine:
                done[i] = baseline.predict(model, chunk)
                bar.update(len(chunk))
    if share:
        import torch.distributed as tdist

        every: list = [None] * dist.world_size
        tdist.all_gather_object(every, done)
        done = {i: r for part in every for i, r in part.items()}
    results: Dict[str, list] = {}
    for i in sorted(done):
        results.update(done[i])
    return results


def _train(baseline: Baseline, model, run_dir: Path, dist: Distributed, task, val_pairs, resume: bool,
           progress: bool, logger: _Log) -> Dict[str, Any]:
    """The training loop shared by every trainable baseline."""
    import numpy as np
    import torch

    cfg = baseline.config
    # parameters with requires_grad off are constants of the model (the original cgbm
    # recipe's forget-gate bias): the optimiser never holds them
    opt, sched = _make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    step, best, best_step = 0, -float("inf"), -1
    last = run_dir / "checkpoint-last.pt"
    if resume and last.is_file():
        state = load_checkpoint(last, dist.device)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            step, best, best_step = int(state["step"]), float(state["best"]), int(state["best_step"])
        except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise InputError(f"the checkpoint does not fit this run ({first}); pass --force to start over",
                             file=last) from None
        log.info("resumed at step %d (best %.4f at step %d)", step, best, best_step)
    ddp_model = dist.wrap(model)
    quiet = not (progress and dist.is_main)
    eval_every = cfg.eval_every or cfg.steps
    last_val: Optional[float] = None
    with Progress(total=cfg.steps, desc=f"train {baseline.name}", unit="step", quiet=quiet, initial=step) as bar:
        while step < cfg.steps:
            ddp_model.train()
            torch.manual_seed((cfg.seed * 1_000_003 + step * 101 + dist.rank) % (2**63))  # dropout: exact on resume
            batch = baseline.batch(step, dist.rank, dist.world_size)
            loss, logs = baseline.loss(ddp_model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = None
            if cfg.clip_norm > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
            opt.step()
            sched.step()
            step += 1
            lval = float(loss.detach())
            if not np.isfinite(lval):
                raise ConfigError(f"training diverged: loss is {lval} at step {step}; lower --lr")
            bar.update(1, loss=lval, val=last_val)
            if dist.is_main and (step % 10 == 0 or step == 1):
                logger.write(step=step, loss=lval, grad_norm=gnorm, lr=sched.get_last_lr()[0], **logs)
            if step % eval_every == 0 or step == cfg.steps:
                improved = False
                validate = bool(cfg.select_on_val and val_pairs is not None and len(val_pairs))
                if validate:
                    # every rank predicts its share of the validation pairs (one process: all)
                    model.eval()
                    results = predict_pairs(baseline, model, task, baseline.ctx,
                                            task.predictable(baseline.ctx, val_pairs),
                                            desc=f"validate {baseline.name} at step {step}", quiet=quiet,
                                            leave=False, dist=dist)
                if dist.is_main:
                    score = float("nan")
                    if validate:
                        # a baseline may keep its checkpoint by its own validation score (the
                        # original cgbm recipe: the released code's strict tIoU rule)
                        own = getattr(baseline, "validation_score", None)
                        score = (own(val_pairs, results) if own is not None
                                 else task.headline(task.score(baseline.ctx, val_pairs, results, split="val")))
                        improved = score > best
                        last_val = 100.0 * score
                    else:
                        improved = True  # no validation: keep the last weights
                    if improved:
                        best, best_step = (score if score == score else best), step
                        atomic_write_bytes(run_dir / "checkpoint-best.pt",
                                           _torch_bytes({"model": model.state_dict(), "step": step}))
                    logger.write(step=step, val_score=score, best=best, best_step=best_step)
                    if score == score:
                        log.info("step %d: validation %.4f (best %.4f at step %d)", step, score, best, best_step)
                    atomic_write_bytes(last, _torch_bytes({
                        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "step": step, "best": best, "best_step": best_step,
                    }))
                    bar.set_fields(val=last_val)
                dist.barrier()
    # no validation ran (steps == 0) or none scored: JSON has no -inf
    return {"steps": step, "best_val": best if best > -float("inf") else None,
            "best_step": best_step if best_step >= 0 else None}


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory in the process (CPU training speed).

    By default glibc serves every block above 32 MiB with its own ``mmap`` and gives it back
    on ``free``, and trims the heap top: the large per-step buffers of a training loop (the
    oneDNN LSTM workspaces, the autograd graph of a recurrent model) then come back from the
    kernel as fresh zeroed pages every step: a ``cgbm`` step at batch 128 on this 2-core CPU
    ran 1.20 steps/s with glibc's defaults and 1.37 without those page faults. With ``M_MMAP_MAX = 0`` and an unbounded trim
    threshold the heap keeps them (the process's peak memory stays resident until it exits,
    as with PyTorch's own GPU caching allocator). Not glibc (macOS, musl) or
    ``RELOCBENCH_KEEP_MEMORY=0``: nothing changes. Returns whether the setting took.
    """
    if os.environ.get("RELOCBENCH_KEEP_MEMORY", "1") == "0":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: its option numbers are used below
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _cli_origins(overrides: Mapping[str, Any]) -> Dict[str, str]:
    return {k: "--" + k.replace("_", "-") for k in overrides}


def baselines_with_recipes() -> list:
    """Names of the registered baselines that declare recipes (a ``recipes`` mapping of
    recipe name to config values on the baseline class)."""
    from .registry import list_baselines

    return [c.name for c in list_baselines() if getattr(c, "recipes", None)]


def _recipe_values(cls: type, name: str, recipe: Any, origin: str,
                   file: Optional[Path] = None) -> Dict[str, Any]:
    """The config values of ``recipe`` for baseline ``cls`` (an unknown recipe name is left
    to the config's own check of its ``recipe`` field)."""
    recipes = getattr(cls, "recipes", None)
    if not recipes:
        raise ConfigError(f"{origin} {recipe}: baseline {name!r} has no recipes; recipes exist for "
                          f"{', '.join(baselines_with_recipes()) or 'no baseline'}", file=file)
    return dict(recipes.get(recipe, {})) if isinstance(recipe, str) else {}


def resolve_config(name: str, *, config_file: Optional[Union[str, Path]] = None,
                   overrides: Optional[Mapping[str, Any]] = None):
    """The baseline class and its checked config: defaults, then the values of the config's
    ``recipe`` (for baselines that declare recipes), then ``config_file``, then ``overrides``
    (command-line values, named ``--key`` in errors). Nothing heavy runs."""
    cls = get_baseline(name)
    file_over = load_config_file(config_file) if config_file is not None else {}
    cli_over = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    origins = _cli_origins(cli_over)
    recipe_over: Dict[str, Any] = {}
    if "recipe" in cli_over:
        recipe_over = _recipe_values(cls, name, cli_over["recipe"], "--recipe")
    elif "recipe" in file_over:
        recipe_over = _recipe_values(cls, name, file_over["recipe"], "recipe:", file=Path(config_file))
    cfg = cls.default_config({**recipe_over, **file_over, **cli_over}, source=str(config_file or ""),
                             origins=origins)
    return cls, cfg


def paper_config_path(cls: type) -> Optional[Path]:
    """``configs/paper.yaml`` beside the module that defines baseline ``cls``, if there is one."""
    import sys

    mod = sys.modules.get(cls.__module__)
    f = getattr(mod, "__file__", None)
    if not f:
        return None
    p = Path(f).resolve().parent / "configs" / "paper.yaml"
    return p if p.is_file() else None


def describe_config(name: str, *, config_file: Optional[Union[str, Path]] = None,
                    overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """What ``--config`` may set for baseline ``name``: every field with its allowed values,
    its default (this variant's), the paper config's value and the resolved value.

    Returns ``{"baseline", "config_class", "paper_config", "fields": [{name, allowed,
    default, paper, value}]}``; a field the paper config leaves out has ``paper`` None.
    """
    from dataclasses import fields as dc_fields

    from .params import describe_constraint

    cls, cfg = resolve_config(name, config_file=config_file, overrides=overrides)
    default = cls.default_config()
    paper_path = paper_config_path(cls)
    paper = load_config_file(paper_path) if paper_path is not None else {}
    rows = []
    for f in dc_fields(cfg):
        v, d = getattr(cfg, f.name), getattr(default, f.name)
        pv = paper.get(f.name)
        rows.append({"name": f.name, "allowed": describe_constraint(cls.Config, f.name),
                     "default": list(d) if isinstance(d, tuple) else d,
                     "paper": list(pv) if isinstance(pv, tuple) else pv,
                     "value": list(v) if isinstance(v, tuple) else v})
    return {"baseline": name, "config_class": cls.Config.__name__,
            "paper_config": str(paper_path) if paper_path is not None else None, "fields": rows}


def _check_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse, before any work, a run folder that cannot be made or written, or one that
    holds a run already (without --resume or --force)."""
    from .io import check_writable

    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("the run folder (--out) exists and is not a folder", file=run_dir)
    if run_dir.is_dir() and not (resume or force) and any(run_dir.iterdir()):
        raise OutputExistsError("run folder exists already; pass --resume to continue it or --force to start over",
                                file=run_dir)
    if run_dir.is_dir():
        try:
            probe = tempfile.mkdtemp(prefix=".relocbench-probe-", dir=run_dir)
            os.rmdir(probe)
        except OSError as exc:
            raise ConfigError(f"the run folder (--out) cannot be written ({exc.strerror})", file=run_dir) from None
    else:
        check_writable(run_dir)


def run_baseline(
    name: str,
    *,
    dataset: str = "activitynet",
    features: str = "synthetic",
    split: str = "test",
    out: Optional[Union[str, Path]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    config_file: Optional[Union[str, Path]] = None,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    skip_missing: bool = False,
    score_subset: bool = False,
    threads: Optional[int] = None,
    feature_preset: Optional[str] = None,
    feature_card: Optional[Union[str, Path]] = None,
) -> RunResult:
    """Train (when trainable), select on validation, predict ``split``, score and record.

    Everything that can be checked is checked before the run folder is made: the config
    (``config_file``, then ``overrides``, command-line values named ``--key`` in errors),
    ``--threads``, the split, the run folder's writability, the features and the training
    pairs. A run that fails before its first checkpoint removes the run folder it created,
    so that the same command can be run again.

    ``skip_missing``: pairs whose videos have no features are not predicted and count as
    misses; ``score_subset`` (implies ``skip_missing``): only the pairs that have features
    are scored, and metrics, ``result.json`` and :attr:`RunResult.coverage` say it is a
    subset (such a result is not a benchmark number: never publish it to a leaderboard).

    ``feature_preset`` / ``feature_card``: the time axis of ``features`` (a preset name or a
    card file; see :func:`relocbench.features.open_feature_store`).

    ``progress``: training, validation and prediction report through
    :class:`relocbench.progress.Progress` on stderr (a bar on a terminal, else a line at
    least every ``$RELOCBENCH_PROGRESS_INTERVAL`` seconds, 30 by default).

    >>> run_baseline("chance", dataset="activitynet", out="runs/chance")  # doctest: +SKIP
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"--threads must be an int >= 1. Got {threads!r} instead.")
    if not isinstance(split, str) or not split:
        raise ConfigError(f"--split must be a split name such as 'val' or 'test'. Got {split!r} instead.")
    cls, cfg = resolve_config(name, config_file=config_file, overrides=overrides)
    task = get_task(cls.task)
    if (feature_preset is not None or feature_card is not None) and cls.task != "temporal":
        raise ConfigError(f"--feature-preset / --feature-card describe temporal feature files; {name} is a "
                          f"{cls.task} baseline")
    skip_missing = bool(skip_missing or score_subset)
    if out is not None:
        _check_run_dir(Path(out), resume, force)
    import torch

    if threads is not None:
        # the user's choice; the OpenMP wait policy (threads sleep at barriers, so a shared CPU
        # does not stall them) was chosen by ``import relocbench`` before torch loaded (_openmp.py)
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    dist = Distributed(dev)
    run_dir: Optional[Path] = None
    created = existed_empty = False
    try:
        declared = {k: v for k, v in (("feature_preset", feature_preset), ("feature_card", feature_card))
                    if v is not None}  # only the temporal task reads declared feature files
        ctx = task.open(dataset, features, device=dist.device, seed=cfg.seed, skip_missing=skip_missing, **declared)
        ctx.rank, ctx.world_size = dist.rank, dist.world_size
        run_dir = Path(out) if out is not None else Path("runs") / ctx.dataset / name
        if out is None:
            _check_run_dir(run_dir, resume, force)
        ctx.run_dir = run_dir
        # the split (and validation pairs) before any training
        pairs = task.pairs(ctx, split)
        val_pairs = task.pairs(ctx, "val") if (cls.trainable and cfg.select_on_val) else None
        run_config = {
            "baseline": name, "task": cls.task, "dataset": ctx.dataset, "features": task.describe_features(ctx),
            "split": split, "config": config_to_dict(cfg), "relocbench": __version__,
        }
        code = code_revision()
        if code is not None:  # the commit this run's code came from (module docstring of .provenance)
            run_config["code"] = code
        if cls.trainable:
            task.check_training(ctx)
        baseline = cls(cfg, ctx)
        torch.manual_seed(cfg.seed)
        model = cls.create_model(cfg)
        if model is not None:
            model = model.to(dist.device)
        baseline.prepare(model)
        resuming = False
        if dist.is_main:
            existed_empty = run_dir.is_dir() and not any(run_dir.iterdir())
            created = not run_dir.exists() or (force and not resume)
            resuming = _prepare_run_dir(run_dir, run_config, resume, force)
        resuming = dist.broadcast_flag(resuming)
        dist.barrier()
        logger = _Log(run_dir / "log.jsonl" if dist.is_main else None)
        quiet = not (progress and dist.is_main)
        t0 = time.time()
        train_info: Dict[str, Any] = {}
        if cls.trainable and model is not None:
            train_info = _train(baseline, model, run_dir, dist, task, val_pairs, resuming, progress, logger)
            best = run_dir / "checkpoint-best.pt"
            if best.is_file():
                _load_weights(model, best, dist.device)
        metrics: Dict[str, Any] = {}
        result: Dict[str, Any] = {}
        coverage: Optional[Dict[str, Any]] = None
        if model is not None:
            model.eval()
        asked = task.predictable(ctx, pairs)
        # every rank predicts its share of the split (one process: all of it); rank 0 writes
        results = predict_pairs(baseline, model, task, ctx, asked, desc=f"predict {name} ({split})", quiet=quiet,
                                dist=dist)
        if dist.is_main:
            doc = task.predictions_doc(ctx, split, results)
            atomic_write_json(run_dir / f"predictions-{split}.json", doc)
            if skip_missing:
                coverage = task.coverage(ctx, pairs, asked)
                coverage["subset"] = bool(score_subset)
            scored = asked if score_subset else pairs
            ctx.extras["score_subset"] = bool(score_subset)
            metrics = task.score(ctx, scored, results, split=split)
            if score_subset:
                metrics["subset"] = {**coverage, "note": "only the pairs whose videos have features were scored: "
                                                         "not comparable with full-split results"}
            atomic_write_json(run_dir / f"metrics-{split}.json", metrics)
            wall = time.time() - t0
            result = {
                "baseline": name, "task": cls.task, "dataset": ctx.dataset, "split": split,
                "metrics": metrics, "config": config_to_dict(cfg), "seed": cfg.seed,
                "features": task.describe_features(ctx), "manifest_sha256": task.manifest_sha256(ctx),
                "relocbench": __version__, "wall_time_s": round(wall, 2), "hardware": _hardware(dist.device, dist.world_size),
                "parameters": cls.parameter_count(cfg), "training": train_info,
                "examples": task.examples(ctx, scored, results),
            }
            if code is not None:
                result["code"] = code
            if coverage is not None:
                result["coverage"] = coverage
            if score_subset:
                result["subset"] = metrics["subset"]
            if getattr(model, "weights_note", None) is not None:  # a backbone's weights: a file, or random
                result["weights"] = {"id": getattr(model, "weights_id", None), "note": model.weights_note}
            atomic_write_json(run_dir / "result.json", result)
            logger.write(event="done", split=split, headline=task.headline(metrics), wall_time_s=round(wall, 2))
        dist.barrier()
        return RunResult(run_dir, metrics, result, coverage)
    except BaseException:
        # a run that failed before its first checkpoint leaves nothing worth resuming: remove the
        # folder it created, so that the same command can run again
        if (created or existed_empty) and run_dir is not None and run_dir.is_dir() \
                and not (run_dir / "checkpoint-last.pt").exists():
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:  # the folder was there, empty: leave it empty
                for child in run_dir.iterdir():
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        raise
    finally:
        dist.close()
