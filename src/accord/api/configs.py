"""Configs: ``accord config show`` and :func:`load_config`. Light: resolving a config of built-in methods, datasets
and hooks imports no torch (:func:`accord.config.validate`), so ``accord config show`` starts without it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from accord import config as _config
from accord.config import load_config

__all__ = ["config_show", "load_config"]


def config_show(method: str | None = None, dataset: str | None = None, files: Sequence[str | Path] | None = None,
                overrides: Sequence[str] | None = None) -> str:
    """The resolved config as YAML, every value followed by ``# <the layer it came from>`` (``accord config show``).

    Layers, later winning: code defaults, the packaged dataset file, the packaged method file(s), ``files`` in
    order, ``overrides`` in order (see :mod:`accord.config`).
    """
    return _config.show(method, dataset, list(files or []), list(overrides or []))
