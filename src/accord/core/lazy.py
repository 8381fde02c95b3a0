"""Lazy package attributes: a package binds its public names on first use, so importing it stays light.

``accord.data``, ``accord.models`` and ``accord.balance`` export names whose modules import torch; their module
``__getattr__`` calls :func:`lazy_attribute`, which imports the name's module on first use and binds the value in
the package (later look-ups skip ``__getattr__``), or imports a submodule (``accord.models.tfn``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, exports: Mapping[str, str], namespace: dict[str, Any], name: str) -> Any:
    """``package.<name>``: an exported name (``exports``: name → module path), imported and bound in ``namespace``
    (the package's ``globals()``), or a submodule ``package.<name>``; else the AttributeError Python raises."""
    if name in exports:
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later look-ups skip the package's __getattr__
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{package}.{name}":
                raise
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
