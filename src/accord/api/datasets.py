"""Datasets and registries: what is registered, inspect, build and convert datasets.

Importing this module does not import torch: ``accord list`` reads the static table :mod:`accord.api.catalog`
and ``accord data info FOLDER`` of a safe-format folder reads it with numpy (:mod:`accord.data.safe_files`);
everything that builds a dataset imports its loader (and torch) when called.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.api import catalog
from accord.core.errors import AccordError
from accord.data.registry import DATASETS, build_dataset

if TYPE_CHECKING:
    from accord.data.dataset import MultimodalDataset

#: The registries of the three kinds, as (module, name): read only when the module is already imported.
_REGISTRIES: dict[str, tuple[str, str]] = {"models": ("accord.models.base", "MODELS"),
                                           "datasets": ("accord.data.registry", "DATASETS"),
                                           "hooks": ("accord.core.hooks", "HOOKS")}


def registered() -> dict[str, list[str]]:
    """Registered ``models``, ``datasets`` and trainer ``hooks`` by name (``accord list``): the built-in ones
    (:mod:`accord.api.catalog`, nothing imported) and any registered since in this process."""
    names = {kind: set(table) for kind, table in catalog.BUILTIN.items()}
    for kind, (module, attr) in _REGISTRIES.items():
        loaded = sys.modules.get(module)
        if loaded is not None:  # e.g. a user's own @register_model: its registry module is then imported
            names[kind].update(getattr(loaded, attr).registered())
    return {kind: sorted(found) for kind, found in names.items()}


def _not_found(name: str, datasets: list[str]) -> AccordError:
    """The one-line error for a target that is neither a file/folder nor one of ``datasets``."""
    return AccordError(f"{name}: neither a file/folder nor a dataset name ({', '.join(datasets)})")


def _is_dataset_name(name: str) -> bool:
    """Whether ``name`` is a registered dataset (the built-in names are known without importing a loader)."""
    return name in catalog.DATASETS or name in DATASETS.registered()


def open_dataset(target: str | Path, overrides: Sequence[str] | None = None, path: str | None = None
                 ) -> MultimodalDataset:
    """A registered dataset by name (built from ``path``), an MMSA ``.pkl`` or a safe-format folder; ``overrides``
    (``key=value``) are its parameters."""
    from accord.config import apply_override

    params: dict[str, Any] = {}
    for o in overrides or []:
        params = apply_override(params, o)
    name = str(target)
    if name in DATASETS:
        return build_dataset(name, path, params)
    if Path(name).exists():
        from accord.data.safe import load_any

        return load_any(name, **params)
    raise _not_found(name, DATASETS.names())


def data_info(target: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Splits, shapes and label statistics of a dataset (see :func:`open_dataset` for ``target``).

    A safe-format folder (without ``overrides``) is read with numpy only (no torch imported), with the same checks
    and the same summary as loading it (:func:`accord.data.safe_files.inspect_dataset_dir`); a path that does not
    exist is refused without importing anything either.
    """
    from accord.data.safe_files import inspect_dataset_dir, is_dataset_dir  # numpy: not for `accord list`

    name = str(target)
    if not overrides and not _is_dataset_name(name):
        if is_dataset_dir(name):
            return inspect_dataset_dir(name)
        if not Path(name).exists():
            raise _not_found(name, registered()["datasets"])
    return open_dataset(target, overrides).summary()


def data_build(name: str, out: str | Path, path: str | None = None, overrides: Sequence[str] | None = None
               ) -> MultimodalDataset:
    """Build a registered dataset (``overrides`` are its parameters) and save it in the safe format to ``out``."""
    from accord.data.safe import save_dataset

    ds = open_dataset(name, overrides, path=path)
    save_dataset(ds, out)
    return ds


def data_convert(source: str | Path, out: str | Path, nonfinite: str = "error") -> Path:
    """Convert an MMSA pickle to the safe format at ``out`` (``nonfinite``: ``error`` or ``zero`` for NaN/Inf
    features); returns ``out``."""
    from accord.data.safe import convert_mmsa

    convert_mmsa(source, out, nonfinite=nonfinite)
    return Path(out)
