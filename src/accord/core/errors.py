"""Errors that reach the user as one clear line.

Every problem with user input (a file, a config key, a tensor) raises an :class:`AccordError` subclass whose
message names the file or key, the problem and what was expected. The CLI prints ``error: <message>`` and exits
with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pydantic import ValidationError


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


class StorageError(AccordError, OSError):
    """The operating system refused a file operation of Accord's own (disk full, a read-only folder, a name too
    long for the file system, no permission): one line naming the path, what was tried and the cause. It is also an
    :class:`OSError` (with the original ``errno``), so code that handles OSError keeps handling it."""


def storage_error(path: str | os.PathLike[str], err: OSError, action: str = "write") -> StorageError:
    """The one-line :class:`StorageError` for ``err``: ``<path>: cannot <action> (<cause>)``, the cause being the
    system's words for the error number (``No space left on device``, ``Read-only file system``, ...)."""
    cause = err.strerror or str(err) or type(err).__name__
    out = StorageError(f"{os.fspath(path)}: cannot {action} ({cause})")
    out.errno = err.errno
    return out


def config_error(err: ValidationError, where: str = "", owner: str = "", known: Iterable[str] | None = None,
                 source: str = "") -> ConfigError:
    """The one-line :class:`ConfigError` for a pydantic validation error (its first problem), the one format every
    typed section uses: ``[<source>: ]<where>.<key>: unknown key[ for <owner>][; known: a, b]`` for a key the
    model does not have, ``[<source>: ]<where>.<key>: <problem> (got <value>)`` for a bad value."""
    e = err.errors()[0]
    path = ".".join(p for p in (where, ".".join(str(x) for x in e["loc"])) if p)
    head = f"{source}: " if source else ""
    if e["type"] == "extra_forbidden":
        tail = f" for {owner}" if owner else ""
        if known is not None:
            tail += f"; known: {', '.join(sorted(known)) or 'none'}"
        return ConfigError(f"{head}{path}: unknown key{tail}")
    got = e.get("input")
    got_text = "" if isinstance(got, dict) or got is None and e["type"] == "missing" else f" (got {got!r})"
    msg = str(e["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{head}{path}: {msg}{got_text}" if path else f"{head}{msg}{got_text}")
