"""Module attributes loaded on first access (PEP 562), shared by the packages that use them.

``__getattr__, __dir__ = lazy_attributes(__name__, {"name": "submodule", ...}, globals())``
keeps ``import relocbench`` and ``import relocbench.metrics`` free of numpy, pandas and
pyarrow until a name that needs them is used.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, MutableMapping, Tuple


def lazy_attributes(package: str, table: Dict[str, str], namespace: MutableMapping[str, object]
                    ) -> Tuple[Callable[[str], object], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps a public name to the
    submodule (relative to ``package``) defining it; a loaded name is cached in ``namespace``."""

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(f".{table[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
