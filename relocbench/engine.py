"""One engine for every baseline: run folder, training loop, resume, DDP, scoring, results.

Run folder layout (``--out``, default ``runs/<dataset>/<baseline>``)::

    config.json            baseline, dataset, features, split, full config, versions
    checkpoint-last.pt     model, optimiser, scheduler, step, best score (for --resume)
    checkpoint-best.pt     the model weights with the best validation score
    log.jsonl              one JSON object per logged step and per validation
    predictions-<split>.json   the task's prediction format (scored by `relocbench evaluate`)
    metrics-<split>.json       the task's metrics JSON
    result.json            the leaderboard record (metrics + config, seed, features,
                           manifest sha256, package version, wall time, hardware)

Every file is written atomically. A killed run restarts from ``checkpoint-last.pt`` with
``--resume``; batches derive from ``(seed, step)``, so a resumed run trains on exactly the
batches an uninterrupted one would.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from . import __version__
from .baseline import Baseline, RunContext, config_to_dict
from .errors import ConfigError, OutputExistsError
from .io import atomic_write_bytes, atomic_write_json, read_json
from .registry import get_baseline
from .tasks import get_task

log = logging.getLogger(__name__)

__all__ = ["resolve_device", "run_baseline", "RunResult", "load_config_file", "Distributed"]


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
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"malformed YAML{where}", file=p) from None
    else:
        doc = read_json(p, "config file", ConfigError)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError("expected a mapping of config keys to values", file=p)
    return doc


@dataclass
class RunResult:
    run_dir: Path
    metrics: Dict[str, Any]
    result: Dict[str, Any]


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _hardware(device) -> Dict[str, Any]:
    import torch

    hw = {"device": str(device), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
          "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__}
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
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            if not cfg_path.is_file():
                raise ConfigError("cannot resume: no config.json in the run folder", file=run_dir)
            old = read_json(cfg_path, "run config", ConfigError)
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


def _train(baseline: Baseline, model, run_dir: Path, dist: Distributed, task, val_pairs, resume: bool,
           progress: bool, logger: _Log) -> Dict[str, Any]:
    """The training loop shared by every trainable baseline."""
    import numpy as np
    import torch

    cfg = baseline.config
    opt, sched = _make_optimizer(cfg, model.parameters())
    step, best, best_step = 0, -float("inf"), -1
    last = run_dir / "checkpoint-last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location=dist.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, best_step = state["step"], state["best"], state["best_step"]
        log.info("resumed at step %d (best %.4f at step %d)", step, best, best_step)
    ddp_model = dist.wrap(model)
    bar = None
    if progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {baseline.name}", unit="step", disable=None)
    t0, seen = time.time(), 0
    eval_every = cfg.eval_every or cfg.steps
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
        seen += 1
        lval = float(loss.detach())
        if not np.isfinite(lval):
            raise ConfigError(f"training diverged: loss is {lval} at step {step}; lower --lr")
        if bar is not None:
            bar.set_postfix(loss=f"{lval:.4f}", steps_per_s=f"{seen / max(time.time() - t0, 1e-9):.2f}")
            bar.update(1)
        if dist.is_main and (step % 10 == 0 or step == 1):
            logger.write(step=step, loss=lval, grad_norm=gnorm, lr=sched.get_last_lr()[0], **logs)
        if step % eval_every == 0 or step == cfg.steps:
            improved = False
            if dist.is_main:
                model.eval()
                score = float("nan")
                if cfg.select_on_val and val_pairs is not None and len(val_pairs):
                    with torch.no_grad():
                        results = baseline.predict(model, task.predictable(baseline.ctx, val_pairs))
                    metrics = task.score(baseline.ctx, val_pairs, results, split="val")
                    score = task.headline(metrics)
                    improved = score > best
                else:
                    improved = True  # no validation: keep the last weights
                if improved:
                    best, best_step = (score if score == score else best), step
                    atomic_write_bytes(run_dir / "checkpoint-best.pt", _torch_bytes({"model": model.state_dict(), "step": step}))
                logger.write(step=step, val_score=score, best=best, best_step=best_step)
                atomic_write_bytes(last, _torch_bytes({
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "best": best, "best_step": best_step,
                }))
            dist.barrier()
    if bar is not None:
        bar.close()
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
    threads: Optional[int] = None,
) -> RunResult:
    """Train (when trainable), select on validation, predict ``split``, score and record.

    >>> run_baseline("chance", dataset="activitynet", out="runs/chance")  # doctest: +SKIP
    """
    import torch

    cls = get_baseline(name)
    task = get_task(cls.task)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1. Got {threads} instead.")
        # one thread per process avoids OpenMP spin-waiting when the CPU is shared
        torch.set_num_threads(threads)
    file_over = load_config_file(config_file) if config_file is not None else {}
    merged = {**file_over, **{k: v for k, v in dict(overrides or {}).items() if v is not None}}
    cfg = cls.default_config(merged, source=str(config_file or ""))
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    dist = Distributed(dev)
    try:
        ctx = task.open(dataset, features, device=dist.device, seed=cfg.seed, skip_missing=skip_missing)
        ctx.rank, ctx.world_size = dist.rank, dist.world_size
        run_dir = Path(out) if out is not None else Path("runs") / ctx.dataset / name
        ctx.run_dir = run_dir
        run_config = {
            "baseline": name, "task": cls.task, "dataset": ctx.dataset, "features": task.describe_features(ctx),
            "split": split, "config": config_to_dict(cfg), "relocbench": __version__,
        }
        resuming = False
        if dist.is_main:
            resuming = _prepare_run_dir(run_dir, run_config, resume, force)
        resuming = dist.broadcast_flag(resuming)
        dist.barrier()
        logger = _Log(run_dir / "log.jsonl" if dist.is_main else None)
        baseline = cls(cfg, ctx)
        torch.manual_seed(cfg.seed)
        model = cls.create_model(cfg)
        if model is not None:
            model = model.to(dist.device)
        baseline.prepare(model)
        t0 = time.time()
        train_info: Dict[str, Any] = {}
        if cls.trainable and model is not None:
            val_pairs = task.pairs(ctx, "val") if cfg.select_on_val else None
            train_info = _train(baseline, model, run_dir, dist, task, val_pairs, resuming, progress, logger)
            best = run_dir / "checkpoint-best.pt"
            if best.is_file():
                model.load_state_dict(torch.load(best, map_location=dist.device, weights_only=False)["model"])
        metrics: Dict[str, Any] = {}
        result: Dict[str, Any] = {}
        if dist.is_main:
            if model is not None:
                model.eval()
            pairs = task.pairs(ctx, split)
            with torch.no_grad():
                results = baseline.predict(model, task.predictable(ctx, pairs))
            doc = task.predictions_doc(ctx, split, results)
            atomic_write_json(run_dir / f"predictions-{split}.json", doc)
            metrics = task.score(ctx, pairs, results, split=split)
            atomic_write_json(run_dir / f"metrics-{split}.json", metrics)
            wall = time.time() - t0
            result = {
                "baseline": name, "task": cls.task, "dataset": ctx.dataset, "split": split,
                "metrics": metrics, "config": config_to_dict(cfg), "seed": cfg.seed,
                "features": task.describe_features(ctx), "manifest_sha256": task.manifest_sha256(ctx),
                "relocbench": __version__, "wall_time_s": round(wall, 2), "hardware": _hardware(dist.device),
                "parameters": cls.parameter_count(cfg), "training": train_info,
                "examples": task.examples(ctx, pairs, results),
            }
            atomic_write_json(run_dir / "result.json", result)
            logger.write(event="done", split=split, headline=task.headline(metrics), wall_time_s=round(wall, 2))
        dist.barrier()
        return RunResult(run_dir, metrics, result)
    finally:
        dist.close()
