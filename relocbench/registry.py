"""The baseline registry: ``register_baseline``, ``list_baselines``, ``get_baseline``.

Baselines live in the ``baselines`` package (the model zoo), which imports ``relocbench``,
never the reverse. The registry finds them through the ``relocbench.baselines`` entry-point
group: each entry names a module whose import registers its baselines with the decorator.
Outside packages add their own baselines the same way::

    [options.entry_points]
    relocbench.baselines =
        mine = mypackage.zoo

    # mypackage/zoo.py
    from relocbench.registry import register_baseline
    @register_baseline("my-model")
    class MyModel(TemporalBaseline): ...
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Optional, Type, TypeVar

from .errors import ConfigError

__all__ = ["register_baseline", "list_baselines", "get_baseline", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "relocbench.baselines"
_REGISTRY: Dict[str, type] = {}
_LOADED = False
T = TypeVar("T", bound=type)


def register_baseline(name: str, **defaults) -> Callable[[T], T]:
    """Class decorator: register a Baseline subclass under ``name``.

    ``defaults`` override fields of the class's config dataclass for this name, so that
    variants (``cgbm-base``, ``stvr-warp``, ...) are configurations of one class::

        @register_baseline("cgbm-base", gating=False, bilinear=False)
        @register_baseline("cgbm")
        class CGBM(TemporalBaseline): ...
    """

    def deco(cls: T) -> T:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ConfigError(
                f"baseline name {name!r} is registered twice ({existing.__qualname__} and {cls.__qualname__})"
            )
        variant = type(cls.__name__, (cls,), {"name": name, "variant_defaults": dict(defaults),
                                               "__module__": cls.__module__, "__doc__": cls.__doc__})
        variant.__qualname__ = cls.__qualname__
        _REGISTRY[name] = variant
        return cls

    return deco


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10
        eps = entry_points().get(ENTRY_POINT_GROUP, [])
    seen = set()
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        ep.load()
    # the in-repo zoo also registers when the package metadata is stale (editable installs)
    for mod in ("baselines.temporal.zoo", "baselines.stvr.zoo"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod.startswith(exc.name):
                raise


def list_baselines(task: Optional[str] = None) -> List[type]:
    """Every registered baseline class (one per name), sorted by task then name."""
    _load_entry_points()
    items = [c for c in _REGISTRY.values() if task is None or c.task == task]
    return sorted(items, key=lambda c: (c.task, c.name))


def get_baseline(name: str) -> type:
    _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown baseline {name!r}; expected one of {sorted(_REGISTRY)} (see `relocbench list-baselines`)"
        )
    return _REGISTRY[name]
