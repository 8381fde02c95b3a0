"""Datasets and registries: what is registered, inspect, build and convert datasets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accord.config import apply_override
from accord.core.errors import AccordError
from accord.core.hooks import HOOKS
from accord.data.dataset import MultimodalDataset
from accord.data.registry import DATASETS, build_dataset
from accord.data.safe import convert_mmsa, load_any, save_dataset


def registered() -> dict[str, list[str]]:
    """Registered ``models``, ``datasets`` and trainer ``hooks`` by name (``accord list``)."""
    import accord.balance  # noqa: F401 - registers the built-in hooks
    import accord.models  # registers the built-in models (the datasets register with accord.data)

    return {"models": accord.models.list_models(), "datasets": DATASETS.names(), "hooks": HOOKS.names()}


def open_dataset(target: str | Path, overrides: Sequence[str] | None = None, path: str | None = None
                 ) -> MultimodalDataset:
    """A registered dataset by name (built from ``path``), an MMSA ``.pkl`` or a safe-format folder; ``overrides``
    (``key=value``) are its parameters."""
    params: dict[str, Any] = {}
    for o in overrides or []:
        params = apply_override(params, o)
    name = str(target)
    if name in DATASETS:
        return build_dataset(name, path, params)
    if Path(name).exists():
        return load_any(name, **params)
    raise AccordError(f"{name}: neither a file/folder nor a dataset name ({', '.join(DATASETS.names())})")


def data_info(target: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Splits, shapes and label statistics of a dataset (see :func:`open_dataset` for ``target``)."""
    return open_dataset(target, overrides).summary()


def data_build(name: str, out: str | Path, path: str | None = None, overrides: Sequence[str] | None = None
               ) -> MultimodalDataset:
    """Build a registered dataset (``overrides`` are its parameters) and save it in the safe format to ``out``."""
    ds = open_dataset(name, overrides, path=path)
    save_dataset(ds, out)
    return ds


def data_convert(source: str | Path, out: str | Path, nonfinite: str = "error") -> Path:
    """Convert an MMSA pickle to the safe format at ``out`` (``nonfinite``: ``error`` or ``zero`` for NaN/Inf
    features); returns ``out``."""
    convert_mmsa(source, out, nonfinite=nonfinite)
    return Path(out)
