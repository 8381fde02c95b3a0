"""QASA flows (``accord augment fit`` / ``sample``): they compose the config, the data and :mod:`accord.augment`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from accord.augment.augmented import fit_generator_dir, sample_dataset
from accord.augment.diffusion import CONFIG as GENERATOR_CONFIG
from accord.augment.diffusion import FeatureDiffusion, read_generator_config
from accord.augment.quality import QualityScorer
from accord.config import Config, DataConfig, compose, load_config, validate
from accord.core.errors import ConfigError
from accord.data.dataset import MultimodalDataset
from accord.data.pool_time import pool_time
from accord.data.registry import DATASETS, build_dataset
from accord.data.safe import MANIFEST, save_dataset
from accord.data.subset import apply_train_fraction


def dataset_for(data: DataConfig | dict[str, Any]) -> MultimodalDataset:
    """Build the dataset of a ``data`` config section (a :class:`~accord.config.DataConfig` or its dict),
    with ``data.pool_time`` and ``data.train_fraction`` applied: the training split a generator is fitted on."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    ds = pool_time(build_dataset(cfg.name, cfg.path, cfg.params), cfg.pool_time)
    return apply_train_fraction(ds, cfg.train_fraction, cfg.train_fraction_seed, cfg.train_fraction_by)


def config_for_target(target: str | Path, overrides: Sequence[str] | None = None) -> Config:
    """The config ``accord augment fit TARGET`` works from: a run directory's config, a registered dataset's
    defaults, or a dataset file/folder (MMSA ``.pkl`` or safe-format folder); then ``--set`` overrides."""
    sets = list(overrides or [])
    name = str(target)
    path = Path(name)
    if (path / "config.yaml").is_file():
        return validate(compose(files=[path / "config.yaml"], overrides=sets), str(path / "config.yaml"))
    if name in DATASETS:
        return load_config(dataset=name, overrides=sets)
    if path.suffix == ".pkl" and path.is_file():
        return load_config(overrides=["data.name=mmsa", f"data.path={path}", *sets])
    if (path / MANIFEST).is_file():
        return load_config(overrides=["data.name=saved", f"data.path={path}", *sets])
    raise ConfigError(f"{name}: not a run directory (config.yaml), a dataset name ({', '.join(DATASETS.names())}),"
                      f" an MMSA .pkl or a dataset folder ({MANIFEST})")


def augment_fit(target: str | Path, overrides: Sequence[str] | None = None, out: str | Path | None = None,
                log: Callable[[str], None] | None = None) -> tuple[Path, FeatureDiffusion, QualityScorer]:
    """``accord augment fit``: fit the generator and the quality scorer on TARGET's TRAINING split only (see
    :func:`config_for_target`) and save both to ``out`` (default ``<output.dir>/generator_<dataset>[_frac<f>]``).

    Returns the folder written, the generator and the scorer.
    """
    cfg = config_for_target(target, overrides)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    ds = dataset_for(cfg.data)
    frac = "" if cfg.data.train_fraction == 1.0 else f"_frac{cfg.data.train_fraction:g}"
    folder = Path(out) if out is not None else Path(cfg.output.dir) / f"generator_{cfg.data.name}{frac}"
    generator, scorer = fit_generator_dir(ds, cfg.augment, folder, cfg.data.model_dump(mode="json"), log)
    return folder, generator, scorer


def augment_sample(generator_dir: str | Path, out: str | Path, per_sample: int = 1, seed: int = 0
                   ) -> MultimodalDataset:
    """``accord augment sample``: rebuild the generator's training split from its recorded data config, draw
    ``per_sample`` scored variants per real row and save the augmented dataset (safe format) to ``out``.

    Returns that dataset; ``meta["qasa"]`` has the row counts and the generated rows' score statistics.
    """
    if per_sample < 1:
        raise ConfigError(f"--per-sample: expected at least 1, got {per_sample}")
    root = Path(generator_dir)
    info = read_generator_config(root)
    if not isinstance(info.get("data"), dict) or not info["data"]:
        raise ConfigError(f"{root / GENERATOR_CONFIG}: key 'data' is missing; cannot rebuild the training split")
    ds = dataset_for(info["data"])
    full = sample_dataset(ds, root, per_sample, seed, {"generator": str(root), "data": info["data"]})
    save_dataset(full, out)
    return full
