"""The one primitive of the studies floor: train named configs over their seeds on a cached dataset, return rows.

Every study (``accord benchmark``, ``accord ablate``, a sweep's trials and final re-run, the scripts in
``benchmarks/``) is a caller of :func:`run_configs`::

    rows = run_configs({"text": cfg_text, "tfn": cfg_tfn}, resume=True)
    table = rows_table(rows)                      # {"text": {"MAE": (mean, std, n), ...}, "tfn": {...}}

* Configs whose data sections share :meth:`~accord.config.DataConfig.cache_key` share ONE built dataset
  (:class:`DatasetCache`); the low-data subset and the evaluation corruptions are applied on top by the trainer.
* Each config is trained by the one :class:`~accord.training.trainer.Trainer` (checkpoint selected on validation);
  its summary becomes a :class:`Row`: the test and validation aggregates ``(mean, std, n)`` per metric
  (:func:`~accord.evaluation.summary.summary_rows`), the mean training seconds per seed and the metric family.
* :func:`finished_rows` reads the same rows back from finished run directories without training (a report rebuilt
  from finished runs, or runs another process trained).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from accord.config import Config, DataConfig
from accord.core import rundir
from accord.core.hooks import TrainerHook
from accord.data.dataset import MultimodalDataset
from accord.data.registry import build_dataset
from accord.evaluation.baselines import constant_predictor_rows
from accord.evaluation.metrics import METRIC_ORDER, default_metric, metric_family
from accord.evaluation.summary import Aggregate, aggregate_from_json, summary_rows
from accord.training.trainer import EpochCallback, Trainer

__all__ = ["Configs", "DatasetCache", "Row", "constant_rows", "finished_rows", "named_configs", "row_from_summary",
           "rows_table", "run_configs", "selection_metric", "summary_constant_rows", "table_metrics", "train_seconds"]

Configs = Sequence[tuple[str, Config]] | Mapping[str, Config]
"""Named configs, in table order: ``[(name, cfg), ...]`` or ``{name: cfg}``."""

Builder = Callable[[str, str | None, dict[str, Any]], MultimodalDataset]
"""What builds a dataset from ``data.name``, ``data.path`` and ``data.params`` (:func:`build_dataset`)."""


class DatasetCache:
    """Built datasets keyed by :meth:`DataConfig.cache_key` (THE rule for when two runs may share one): each distinct
    data section is built once, in the order first asked for."""

    def __init__(self, builder: Builder | None = None) -> None:
        self.builder: Builder = builder or build_dataset
        self._built: dict[str, MultimodalDataset] = {}

    def get(self, data: DataConfig | Config) -> MultimodalDataset:
        """The dataset of ``data`` (a config's data section, or a config), built on first use."""
        section = data.data if isinstance(data, Config) else data
        key = section.cache_key()
        if key not in self._built:
            self._built[key] = self.builder(section.name, section.path, section.params)
        return self._built[key]

    def __len__(self) -> int:
        return len(self._built)

    def __contains__(self, data: object) -> bool:
        section = data.data if isinstance(data, Config) else data
        return isinstance(section, DataConfig) and section.cache_key() in self._built


@dataclass
class Row:
    """One trained (or finished) config: its name in the study, config, run directory, the trainer's summary, the
    test and validation aggregates per metric, mean training seconds per seed, and its metric family
    (``mosi``, ``sims`` or ``classification``)."""

    name: str
    cfg: Config
    run_dir: Path
    summary: dict[str, Any]
    test: dict[str, Aggregate]
    valid: dict[str, Aggregate]
    seconds: float
    family: str


def named_configs(configs: Configs) -> list[tuple[str, Config]]:
    """``configs`` as a list of ``(name, cfg)``; a repeated name is an error (rows are keyed by name)."""
    pairs = list(configs.items()) if isinstance(configs, Mapping) else [(str(n), c) for n, c in configs]
    names = [n for n, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"run_configs: names repeat: {', '.join(repeated)}")
    return pairs


def row_from_summary(name: str, cfg: Config, summary: dict[str, Any], family: str) -> Row:
    """The :class:`Row` of a trainer summary (``summary.json``)."""
    return Row(name=name, cfg=cfg, run_dir=cfg.run_dir, summary=summary, test=summary_rows(summary, "test"),
               valid=summary_rows(summary, "valid"), seconds=float(summary["train_seconds"]), family=family)


def run_configs(
    configs: Configs,
    *,
    resume: bool = False,
    overwrite: bool = False,
    console: Console | None = None,
    progress: bool | None = None,
    eval_splits: Sequence[str] = ("valid", "test"),
    datasets: DatasetCache | None = None,
    hooks: Sequence[TrainerHook] = (),
    on_epoch: EpochCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Train every named config over its seeds, in order, on datasets shared through ``datasets`` (a fresh
    :class:`DatasetCache` when not given); returns one :class:`Row` per config.

    ``resume`` keeps finished seeds and continues interrupted ones, ``overwrite`` starts an existing run over;
    ``console``/``progress`` go to the trainer (progress bars by default when the console is a terminal);
    ``eval_splits`` are the splits the selected checkpoint is evaluated on (a sweep trial: ``("valid",)``, so test is
    never computed); ``hooks`` are extra trainer hooks for every config; ``on_epoch(seed, epoch, record)`` is called
    after each epoch; ``log`` gets one line before and after each config.
    """
    cache = datasets if datasets is not None else DatasetCache()
    rows = []
    for name, cfg in named_configs(configs):
        ds = cache.get(cfg.data)
        if log:
            log(f"{name}: {cfg.model.name} on {ds.name}, seeds {list(cfg.train.seeds)} -> {cfg.run_dir}")
        t0 = time.perf_counter()
        trainer = Trainer(cfg, dataset=ds, hooks=hooks, console=console, progress=progress, eval_splits=eval_splits)
        summary = trainer.fit(resume=resume, overwrite=overwrite, on_epoch=on_epoch)
        rows.append(row_from_summary(name, cfg, summary, trainer.family))
        if log:
            log(f"{name}: done in {time.perf_counter() - t0:.0f}s")
    return rows


def finished_rows(configs: Configs) -> list[Row]:
    """The rows of runs already trained (their ``summary.json`` and ``dataset.json``), without building a dataset or
    training anything; an unfinished run is a one-line CheckpointError naming the file."""
    rows = []
    for name, cfg in named_configs(configs):
        summary = rundir.read_summary(cfg.run_dir)
        info = rundir.read_dataset_info(cfg.run_dir)
        family = metric_family(cfg.task.kind, str(info.get("metric_family", "mosi")))
        rows.append(row_from_summary(name, cfg, summary, family))
    return rows


def rows_table(rows: Sequence[Row], split: Literal["test", "valid"] = "test") -> dict[str, dict[str, Aggregate]]:
    """``{row name: {metric: (mean, std, n)}}`` of ``split``: what the tables render."""
    return {r.name: r.test if split == "test" else r.valid for r in rows}


def train_seconds(rows: Sequence[Row]) -> dict[str, float]:
    """``{row name: mean training seconds per seed}``."""
    return {r.name: r.seconds for r in rows}


def table_metrics(rows: Sequence[Row], split: Literal["test", "valid"] = "test") -> list[str]:
    """The metrics of the rows' family (that of the LAST row) in display order, those some row has."""
    family = rows[-1].family if rows else "mosi"
    table = rows_table(rows, split)
    return [m for m in METRIC_ORDER[family] if any(m in r for r in table.values())]


def selection_metric(cfg: Config, family: str) -> str:
    """The validation metric ``cfg`` selects checkpoints on: ``train.early_stopping.metric``, else the task's
    default (:func:`~accord.evaluation.metrics.default_metric`)."""
    if family == "classification":
        return cfg.train.early_stopping.metric or default_metric("classification")
    return cfg.train.early_stopping.metric or default_metric("regression", family)


def constant_rows(ds: MultimodalDataset, seeds: int, task: str) -> dict[str, dict[str, Aggregate]]:
    """The trivial-baseline row of ``ds`` (:mod:`accord.evaluation.baselines`: train-mean predictor for regression,
    majority class for classification) on its valid and test splits, as ``{split: {metric: (value, 0, seeds)}}``."""
    labels = {}
    for s in ("train", "valid", "test"):
        part = ds.splits[s]
        y = part.class_labels if task == "classification" and part.class_labels is not None else part.labels
        labels[s] = y.numpy()
    train = labels.pop("train")
    return constant_predictor_rows(train, labels, task, ds.metric_family, ds.class_names, seeds)


def summary_constant_rows(row: Row) -> dict[str, dict[str, Aggregate]]:
    """The trivial-baseline row per split that the trainer recorded in ``row``'s summary (``constant_predictor``:
    train-mean / majority-class predictor of the run's training labels); ``{}`` for a summary without it."""
    return {split: aggregate_from_json(agg) for split, agg in (row.summary.get("constant_predictor") or {}).items()}
