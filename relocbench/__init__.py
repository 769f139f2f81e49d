"""relocbench: benchmarks and baselines for temporal and spatio-temporal video re-localization."""
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
from .manifest import load_manifest, open_manifest, write_manifest  # noqa: E402

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
