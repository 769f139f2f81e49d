"""What a baseline is: a config dataclass plus a few hooks; the engine does everything else.

Every baseline of the zoo (temporal and spatio-temporal) subclasses :class:`Baseline`:

* ``Config``: a dataclass deriving from :class:`TrainConfig` (training settings shared by
  every baseline: steps, batch size, optimiser, clipping, evaluation cadence) with the
  model's own keyword-only hyperparameters. Variants registered with
  ``register_baseline("name", **defaults)`` are configurations of one class, not copies.
* ``create_model(config)`` (trainable baselines): the ``nn.Module``; ``None`` otherwise.
* ``batch(step, rank, world_size)``: the training batch of one global step, this rank's
  share of it. It must derive from ``(config.seed, step)`` alone, so that a resumed run
  sees exactly the batches an uninterrupted one would.
* ``loss(model, batch) -> (scalar tensor, {name: float})``.
* ``predict(model, pairs) -> {pair_id: [prediction, ...]}`` in the task's prediction
  format, best first.

The engine (:mod:`relocbench.engine`) owns the loop, the optimiser, checkpoints, resume,
DDP, device placement, validation-based checkpoint selection, scoring and the run folder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import ConfigError
from .params import Bool, Constraint, Float, Int, IntSeq, Options, check_params

__all__ = ["TrainConfig", "Baseline", "RunContext", "make_config", "config_to_dict"]


@dataclass
class TrainConfig:
    """Training settings every baseline shares (non-trainable baselines ignore most).

    Every field of a config class declares its allowed values in ``parameter_constraints``
    (merged over the class hierarchy, see :mod:`relocbench.params`); :func:`make_config`
    checks them all before anything runs. ``validate()`` is for checks across fields.
    """

    seed: int = 0
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: float = 5.0  # global gradient norm; 0 disables
    lr_milestones: Tuple[int, ...] = ()
    lr_gamma: float = 0.1
    eval_every: int = 200  # validation (and checkpoint selection) every N steps; 0: only at the end
    select_on_val: bool = True  # keep the checkpoint with the best validation headline metric

    parameter_constraints: ClassVar[Dict[str, Constraint]] = {
        "seed": Int(ge=0),
        "steps": Int(ge=0),
        "batch_size": Int(ge=1),
        "lr": Float(gt=0),
        "optimizer": Options("adam", "sgd"),
        "momentum": Float(ge=0, lt=1),
        "weight_decay": Float(ge=0),
        "clip_norm": Float(ge=0),
        "lr_milestones": IntSeq(ge=1, increasing=True),
        "lr_gamma": Float(gt=0, le=1),
        "eval_every": Int(ge=0),
        "select_on_val": Bool(),
    }

    def validate(self) -> None:
        """Checks across fields (each field alone is checked by its declared constraint)."""


def make_config(cls: type, overrides: Optional[Mapping[str, Any]] = None, *, source: str = "",
                origins: Optional[Mapping[str, Optional[str]]] = None) -> Any:
    """Instantiate config dataclass ``cls`` with ``overrides``, every value checked first.

    Unknown keys are an error; each value is checked against its field's declared
    constraint (:func:`relocbench.params.check_params`), the error naming ``source`` (the
    config file) or, for the keys in ``origins``, the command-line option it came from.
    """
    overrides = dict(overrides or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in overrides if k not in names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for {cls.__name__}; expected some of {sorted(names)}",
            file=source or None,
        )
    checked = check_params(cls, overrides, origins=origins, source=source or None)
    cfg = dataclasses.replace(cls(), **checked)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass
class RunContext:
    """What a baseline gets from the engine: data, features, device and distribution."""

    dataset: str  # name used in the run folder and leaderboard
    manifest: Any  # relocbench.manifest.Manifest
    features: Any  # task-specific source (a FeatureStore for temporal baselines)
    device: Any  # torch.device
    run_dir: Optional[Path] = None
    rank: int = 0
    world_size: int = 1
    extras: Dict[str, Any] = field(default_factory=dict)

    def global_sum(self, *values: float) -> Tuple[float, ...]:
        """``values`` summed over every process of a distributed run (unchanged in one process).

        A loss that averages over a variable number of elements (boxes, RoIs) divides by the
        batch-wide count from here and multiplies by ``world_size``: DDP then averages the
        ranks' gradients into exactly the one-process gradient.
        """
        if self.world_size <= 1:
            return tuple(float(v) for v in values)
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t)
        return tuple(float(v) for v in t.cpu())


class Baseline:
    """Base class of every baseline. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    task: ClassVar[str] = "temporal"
    Config: ClassVar[type] = TrainConfig
    trainable: ClassVar[bool] = False
    variant_defaults: ClassVar[Dict[str, Any]] = {}
    variant_description: ClassVar[str] = ""
    #: Torch threads on a CPU when the OpenMP threads sleep at barriers (``OMP_WAIT_POLICY=
    #: PASSIVE``, as ``import relocbench`` sets it) and neither ``--threads`` nor
    #: ``OMP_NUM_THREADS`` chose a count; ``None``: torch's default (one per core). A model
    #: made of many small ops gains nothing from a second passive thread (every parallel op
    #: wakes it) and can set 1.
    cpu_threads: ClassVar[Optional[int]] = None

    def __init__(self, config: Any, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx

    # ------------------------------------------------------------------ configuration
    @classmethod
    def default_config(cls, overrides: Optional[Mapping[str, Any]] = None, *, source: str = "",
                       origins: Optional[Mapping[str, Optional[str]]] = None) -> Any:
        """The config of this baseline (variant defaults applied), with ``overrides`` checked."""
        merged = {**cls.variant_defaults, **dict(overrides or {})}
        return make_config(cls.Config, merged, source=source, origins=origins)

    @classmethod
    def description(cls) -> str:
        """The variant's own description (``register_baseline(..., description=...)``), else
        the first line of the class docstring followed by the variant's settings."""
        if cls.variant_description:
            return cls.variant_description
        doc = (cls.__doc__ or "").strip().splitlines()
        text = doc[0].strip() if doc else ""
        if cls.variant_defaults:
            text += " (" + ", ".join(f"{k}={v}" for k, v in cls.variant_defaults.items()) + ")"
        return text

    # ------------------------------------------------------------------ model
    @classmethod
    def create_model(cls, config: Any):
        """The trainable module (``None`` for baselines without parameters)."""
        return None

    @classmethod
    def parameter_count(cls, config: Any = None) -> int:
        model = cls.create_model(config if config is not None else cls.default_config())
        if model is None:
            return 0
        return int(sum(p.numel() for p in model.parameters()))

    # ------------------------------------------------------------------ hooks
    def prepare(self, model) -> None:
        """Called once before training/prediction (e.g. to precompute statistics)."""

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    def loss(self, model, batch: Any):
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    def predict(self, model, pairs) -> Dict[str, List[dict]]:
        raise NotImplementedError

    def prediction_chunk(self) -> int:
        """Pairs per ``predict`` call when the engine reports progress: the config's
        ``eval_batch_size`` when it has one (a batched predictor then sees its own batches),
        else 16."""
        return int(getattr(self.config, "eval_batch_size", 16) or 16)

    def examples(self) -> Sequence[str]:
        """Pair ids whose predictions the leaderboard figure shows (default: chosen by the task)."""
        return ()
