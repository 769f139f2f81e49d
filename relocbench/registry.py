"""The baseline registry: ``register_baseline``, ``list_baselines``, ``get_baseline``.

Baselines live in the ``relocbench_baselines`` package (the model zoo, the repository's
``baselines/`` folder), which imports ``relocbench``, never the reverse. The registry finds
them through the ``relocbench.baselines`` entry-point group: each entry names a module
whose import registers its baselines with the decorator.
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
import importlib.util
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from .errors import ConfigError

__all__ = ["register_baseline", "list_baselines", "get_baseline", "baseline_rows", "render_listing",
           "write_listing", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "relocbench.baselines"
_REGISTRY: Dict[str, type] = {}
# the repository's baselines/ folder installs as relocbench_baselines (``baselines`` is another
# project's import name)
_IN_REPO_ZOO = ("relocbench_baselines.temporal.zoo", "relocbench_baselines.stvr.zoo")
_LOADED = False
T = TypeVar("T", bound=type)


def register_baseline(name: str, *, description: str = "", **defaults) -> Callable[[T], T]:
    """Class decorator: register a Baseline subclass under ``name``.

    ``defaults`` override fields of the class's config dataclass for this name, so that
    variants (``cgbm-base``, ``stvr-warp``, ...) are configurations of one class;
    ``description`` is the variant's one line in ``list-baselines`` (default: the first line
    of the class docstring and the variant's settings)::

        @register_baseline("cgbm-base", gating=False, bilinear=False,
                           description="Table 2 ablation: no cross gating, concatenation")
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
                                               "variant_description": str(description),
                                               "__module__": cls.__module__, "__doc__": cls.__doc__})
        variant.__qualname__ = cls.__qualname__
        _REGISTRY[name] = variant
        return cls

    return deco


def _entry_points() -> list:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except TypeError:  # Python < 3.10
        return list(entry_points().get(ENTRY_POINT_GROUP, []))


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    eps = _entry_points()
    seen = set()
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        ep.load()
    # the in-repo zoo also registers when the package metadata is stale (editable installs)
    for mod in _IN_REPO_ZOO:
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


# --------------------------------------------------------------------------- fast listing
# ``relocbench list-baselines`` reads the built-in zoo's rows from a committed table
# (relocbench/baseline_listing.py) instead of importing torch and building every model;
# tests/test_list_baselines.py keeps the table equal to what the registry computes.

LISTING_FILE = Path(__file__).with_name("baseline_listing.py")


def _row(cls: type) -> Dict[str, Any]:
    return {"name": cls.name, "task": cls.task, "trainable": bool(cls.trainable),
            "parameters": int(cls.parameter_count()), "description": cls.description()}


def _zoo_modules() -> List[str]:
    """The modules that register baselines here: entry points, and the in-repo zoo when
    its package is installed (looked up without importing it)."""
    mods = {ep.value for ep in _entry_points()}
    for mod in _IN_REPO_ZOO:
        top = mod.split(".")[0]
        if importlib.util.find_spec(top) is not None:
            mods.add(mod)
    return sorted(mods)


def baseline_rows(task: Optional[str] = None) -> List[Dict[str, Any]]:
    """One row per registered baseline (name, task, trainable, parameters at its default
    config, description), sorted by task then name.

    When every module that registers baselines is covered by the committed listing table,
    its rows are used (nothing heavy is imported); baselines registered otherwise (already
    imported by the caller) are computed live. Else everything is loaded and computed.
    """
    rows: Dict[str, Dict[str, Any]] = {}
    table = None
    try:
        from . import baseline_listing as table
    except ImportError:  # pragma: no cover - the table is committed
        table = None
    if table is not None and not _LOADED and set(_zoo_modules()) <= set(table.MODULES):
        rows = {r["name"]: dict(r) for r in table.BASELINES}
        for name, cls in _REGISTRY.items():
            if name not in rows:
                rows[name] = _row(cls)
    else:
        rows = {c.name: _row(c) for c in list_baselines()}
    out = [r for r in rows.values() if task is None or r["task"] == task]
    return sorted(out, key=lambda r: (r["task"], r["name"]))


def render_listing() -> str:
    """The text of relocbench/baseline_listing.py for the current zoo (imports it all)."""
    _load_entry_points()
    mods = [m for m in _zoo_modules() if _importable(m)]
    zoo = tuple(sorted(mods))
    rows = [_row(c) for c in list_baselines() if c.__module__ in zoo]
    lines = [
        '"""Rows of `relocbench list-baselines` for the built-in zoo, so that listing imports no model.',
        "",
        "Generated by `python -m relocbench.registry`; do not edit by hand.",
        "tests/test_list_baselines.py fails when this table and the registry disagree.",
        '"""',
        "",
        f"MODULES = {zoo!r}",
        "",
        "BASELINES = (",
    ]
    for r in rows:
        lines.append(f"    {r!r},")
    lines += [")", ""]
    return "\n".join(lines)


def _importable(mod: str) -> bool:
    try:
        importlib.import_module(mod)
    except ModuleNotFoundError:
        return False
    return True


def write_listing(path: Optional[Path] = None) -> Path:
    """Regenerate the committed listing table (atomically)."""
    from .io import atomic_write_text

    return atomic_write_text(path or LISTING_FILE, render_listing())


if __name__ == "__main__":  # pragma: no cover
    # through the imported module: the zoo registers into relocbench.registry, not __main__
    from relocbench.registry import write_listing as _write

    print(f"Wrote {_write()}")
