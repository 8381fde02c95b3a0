"""Errors that reach the user as one clear line.

Every problem with user input (a file, a config key, a tensor) raises an :class:`AccordError` subclass whose
message names the file or key, the problem and what was expected. The CLI prints ``error: <message>`` and exits
with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base class of every user-facing error; ``str(err)`` is a single line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DataError(AccordError):
    """A data file or an in-memory dataset breaks the data contract."""


class ConfigError(AccordError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


class LeakageError(DataError):
    """A split was requested that would leak labels into the features (see docs/data.md)."""


class CheckpointError(AccordError):
    """A run directory or checkpoint is missing, corrupt or incompatible."""
