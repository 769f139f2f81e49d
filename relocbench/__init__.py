"""relocbench: benchmarks and baselines for temporal and spatio-temporal video re-localization.

The error classes are imported eagerly (they need only the standard library); the manifest
functions and ``open_feature_store`` are loaded on first use, so that ``import relocbench``
and ``relocbench --help`` do not import numpy, pandas or pyarrow. Importing the package (first, before torch) also
chooses the OpenMP wait policy of PyTorch's CPU threads (:mod:`relocbench._openmp`).
"""
__version__ = "0.1.0"

# Before anything imports torch: PyTorch's OpenMP threads sleep instead of spinning at
# barriers (a CPU shared with other processes otherwise slows training 5x to 15x); a user's
# own OMP_WAIT_POLICY / GOMP_SPINCOUNT / KMP_BLOCKTIME wins. See relocbench/_openmp.py.
from ._openmp import choose_wait_policy as _choose_wait_policy  # noqa: E402

_choose_wait_policy()

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
    "open_feature_store": "features",
}

__all__ = [
    "__version__",
    "load_manifest",
    "open_manifest",
    "write_manifest",
    "open_feature_store",
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
