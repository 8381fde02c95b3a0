"""The dataset registry: a name in ``data.name`` -> a builder returning a validated MultimodalDataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from accord.core.errors import ConfigError, config_error
from accord.core.registry import Registry
from accord.data.dataset import MultimodalDataset


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


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str, params: type[DataParams], needs_path: bool, description: str
) -> Callable[[Callable[[str | None, Any], MultimodalDataset]], Callable[[str | None, Any], MultimodalDataset]]:
    """Decorator registering a dataset builder under ``name``."""

    def deco(fn: Callable[[str | None, Any], MultimodalDataset]) -> Callable[[str | None, Any], MultimodalDataset]:
        DATASETS.register(name)(DatasetSpec(fn, params, needs_path, description))
        return fn

    return deco


def validate_data_params(name: str, params: dict[str, Any]) -> DataParams:
    """Validate ``data.params`` for dataset ``name``; errors name the offending key."""
    spec = DATASETS.get(name)
    try:
        return spec.params(**params)
    except ValidationError as err:
        raise config_error(err, where="data.params", owner=f"dataset {name!r}",
                           known=spec.params.model_fields) from None


def build_dataset(name: str, path: str | None = None, params: dict[str, Any] | None = None) -> MultimodalDataset:
    """Build and validate dataset ``name`` (from ``path`` where the builder reads files)."""
    spec = DATASETS.get(name)
    if spec.needs_path and not path:
        raise ConfigError(f"data.path: dataset {name!r} needs a path ({spec.description})")
    ds = spec.build(path, validate_data_params(name, params or {}))
    return ds.validate()
