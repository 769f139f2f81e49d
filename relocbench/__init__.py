"""relocbench: benchmarks and baselines for temporal and spatio-temporal video re-localization.

The error classes are imported eagerly (they need only the standard library); the manifest
functions are loaded on first use, so that ``import relocbench`` and ``relocbench --help``
do not import numpy, pandas or pyarrow.
"""
__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ConfigError,
    FeatureError,
    InputError,
    ManifestError,
    OutputExistsError,
    PredictionError,
    RelocbenchError,
)

# Public name -> module that defines it, imported on first access.
_LAZY = {
    "load_manifest": "manifest",
    "open_manifest": "manifest",
    "write_manifest": "manifest",
}

__all__ = [
    "__version__",
    "load_manifest",
    "open_manifest",
    "write_manifest",
    "RelocbenchError",
    "InputError",
    "ManifestError",
    "PredictionError",
    "ConfigError",
    "OutputExistsError",
    "FeatureError",
]


from ._lazy import lazy_attributes  # noqa: E402

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
