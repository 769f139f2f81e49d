"""One error family for every input, manifest, prediction and configuration problem.

Every error message says what was expected and what was found, naming the file and the
item (and line, where there is one). The CLI prints ``str(error)`` on one line and exits
with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

__all__ = [
    "RelocbenchError",
    "InputError",
    "ManifestError",
    "PredictionError",
    "ConfigError",
    "OutputExistsError",
    "FeatureError",
]


class RelocbenchError(ValueError):
    """Base class of every error relocbench raises for bad input.

    ``file`` and ``item`` are optional context; when given they prefix the message as
    ``file: item: message`` so that one line says where the problem is.
    """

    def __init__(
        self,
        message: str,
        *,
        file: Optional[Union[str, Path]] = None,
        item: Optional[str] = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.item = item
        parts = [p for p in (self.file, item) if p]
        parts.append(message)
        super().__init__(": ".join(parts))

    def __reduce__(self):  # keeps ``file`` and ``item`` (an error may cross a process boundary)
        return _rebuild, (type(self), self.message, self.file, self.item)


def _rebuild(cls, message, file, item):
    return cls(message, file=file, item=item)


class InputError(RelocbenchError):
    """A source file (annotations, lengths, class split, CSV, ...) is missing or malformed."""


class ManifestError(RelocbenchError):
    """A manifest folder is missing, incomplete, corrupted or does not match its schema."""


class PredictionError(RelocbenchError):
    """A predictions file does not match its ground truth or its schema."""


class ConfigError(RelocbenchError):
    """A parameter or configuration value is out of its allowed range."""


class OutputExistsError(RelocbenchError):
    """An output exists already and ``force`` was not given."""


class FeatureError(RelocbenchError):
    """A feature store is missing a video or holds malformed features."""
