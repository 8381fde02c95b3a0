"""The dataset registry: a name in ``data.name`` -> a builder returning a validated MultimodalDataset.

The built-in loaders (:data:`BUILTIN_LOADERS`) register themselves when they are imported; :data:`DATASETS`
imports them on its first look-up, so importing this module (or :mod:`accord.data`) does not import torch; a
built-in dataset's ``data.params`` are validated from :mod:`accord.data.params` without importing its loader.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from accord.core.errors import ConfigError, config_error
from accord.core.registry import Registry

if TYPE_CHECKING:
    from accord.data.dataset import MultimodalDataset

BUILTIN_LOADERS: tuple[str, ...] = ("conflictbench", "mmsa", "mosei_text", "mosi_u", "safe")
"""The modules of :mod:`accord.data` that register the built-in datasets."""


class DataParams(BaseModel):
    """Base of every builder's ``data.params`` model: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset builder: ``build(path, params) -> MultimodalDataset`` and its params model."""

    build: Callable[[str | None, Any], MultimodalDataset]
    params: type[DataParams]
    needs_path: bool
    description: str


def _register_builtins() -> None:
    """Import the built-in loaders (each registers its dataset)."""
    for module in BUILTIN_LOADERS:
        importlib.import_module(f"accord.data.{module}")


DATASETS: Registry[DatasetSpec] = Registry("dataset", builtins=_register_builtins)
"""Every registered dataset builder; the built-in ones are imported on the first look-up."""


def register_dataset(
    name: str, params: type[DataParams], needs_path: bool, description: str
) -> Callable[[Callable[[str | None, Any], MultimodalDataset]], Callable[[str | None, Any], MultimodalDataset]]:
    """Decorator registering a dataset builder under ``name``."""

    def deco(fn: Callable[[str | None, Any], MultimodalDataset]) -> Callable[[str | None, Any], MultimodalDataset]:
        DATASETS.register(name)(DatasetSpec(fn, params, needs_path, description))
        return fn

    return deco


def data_params_model(name: str) -> type[DataParams]:
    """The ``data.params`` model of dataset ``name``: a built-in's from :data:`accord.data.params.BUILTIN_DATASETS`
    (no loader imported, so no torch), any other's from the registry (an unknown name is a ConfigError)."""
    return declared_data_params(name)[0]


def declared_data_params(name: str) -> tuple[type[DataParams], str]:
    """The ``data.params`` model of dataset ``name`` and its dotted name in the module of the dataset's builder
    (where ``accord config show`` says its defaults live), without importing a built-in loader."""
    from accord.data.params import BUILTIN_DATASETS

    builtin = BUILTIN_DATASETS.get(name)
    if builtin is not None:
        return builtin.params, f"{builtin.where.partition(':')[0]}.{builtin.params.__qualname__}"
    params = DATASETS.get(name).params
    return params, f"{params.__module__}.{params.__qualname__}"


def validate_data_params(name: str, params: dict[str, Any]) -> DataParams:
    """Validate ``data.params`` for dataset ``name``; errors name the offending key."""
    model = data_params_model(name)
    try:
        return model(**params)
    except ValidationError as err:
        raise config_error(err, where="data.params", owner=f"dataset {name!r}", known=model.model_fields) from None


def build_dataset(name: str, path: str | None = None, params: dict[str, Any] | None = None) -> MultimodalDataset:
    """Build and validate dataset ``name`` (from ``path`` where the builder reads files)."""
    spec = DATASETS.get(name)
    if spec.needs_path and not path:
        raise ConfigError(f"data.path: dataset {name!r} needs a path ({spec.description})")
    ds = spec.build(path, validate_data_params(name, params or {}))
    return ds.validate()
