"""Robustness study: score trained runs under increasing corruption of each modality and write a table, curves (PNG)
and relative/effective robustness (the pure computations live in :mod:`accord.evaluation.robustness`).

``accord robustness`` and :func:`accord.api.robustness` call :func:`run_robustness`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.config import Config
from accord.core import rundir
from accord.core.errors import DataError
from accord.core.io import atomic_write_text, write_json
from accord.data.corrupt import apply_corruptions, parse_corruption
from accord.data.dataset import MultimodalDataset
from accord.evaluation.baselines import CONSTANT_ROW, constant_value, constant_value_rows
from accord.evaluation.metrics import headline_metric
from accord.evaluation.robustness import ConstantLine, Curve, markdown, plot_curves, summary_rows
from accord.models.base import AccordModel
from accord.studies.runner import DatasetCache
from accord.training.text_tokens import prepare_inputs
from accord.training.trainer import evaluate_split, load_model, load_run, resolve_device

__all__ = ["run_robustness"]

MODALITIES_ALL = ["text", "audio", "visual", "all"]
CORRUPTIONS = ["drop", "noise"]


def default_levels() -> list[float]:
    """0, 0.1, ..., 0.9."""
    return [round(0.1 * i, 1) for i in range(10)]


def load_seed_models(rd: Path, dev: torch.device) -> list[AccordModel]:
    """The selected checkpoint of every seed of run ``rd`` (numeric seed order), in eval mode on ``dev``."""
    return [load_model(rd, rundir.seed_of(sd), dev) for sd in rundir.seed_dirs(rd, with_checkpoint=True)]


def level_scores(rd: Path, models: list[AccordModel], part: Any, cfg: Config, ds: MultimodalDataset,
                 dev: torch.device, metric: str) -> list[float]:
    """``metric`` of every seed's model on the (corrupted) split ``part``."""
    scores = []
    for model in models:
        m = evaluate_split(model, part, cfg, ds, dev).metrics
        if metric not in m:
            raise DataError(f"{rd}: metric {metric!r} not computed; available: {', '.join(m)}")
        scores.append(m[metric])
    return scores


def corruption_curve(rd: Path, models: list[AccordModel], cfg: Config, ds: MultimodalDataset, dev: torch.device,
                     kind: str, modality: str, levels: list[float], split: str, metric: str, seed: int) -> Curve:
    """The curve of one run for one corruption kind and modality: per level, mean and std over seeds. Each level is
    applied with the fixed ``seed``, so every run sees the same corrupted samples."""
    per_level: list[list[float]] = []
    for lv in levels:
        spec = parse_corruption({"kind": kind, "modality": modality, "level": lv, "seed": seed})
        part = apply_corruptions(ds[split], [spec]) if lv > 0 else ds[split]
        per_level.append(level_scores(rd, models, part, cfg, ds, dev, metric))
    arr = np.array(per_level, dtype=float)
    std = arr.std(axis=1, ddof=1) if arr.shape[1] > 1 else np.zeros(len(levels))
    return Curve(rd.name, kind, modality, metric, list(levels), arr.mean(axis=1).tolist(), std.tolist(),
                 arr.T.tolist())


def _task_labels(ds: MultimodalDataset, split: str, task: str) -> np.ndarray:
    """The labels of ``split`` the task scores: class indices (classification) or scores (regression)."""
    part = ds[split]
    y = part.class_labels if task == "classification" and part.class_labels is not None else part.labels
    return y.cpu().numpy()


def run_constant(rd: Path, cfg: Config, ds: MultimodalDataset, split: str, metric: str) -> tuple[str, float]:
    """``(dataset name, score)``: the trivial baseline of run ``rd`` (the constant prediction its ``dataset.json``
    records, else the train mean / majority class of ``ds``) scored with ``metric`` on ``split``'s labels. Corruption
    changes inputs, never labels, so this is its score at every level."""
    task = cfg.task.kind
    names = list(ds.class_names or []) if task == "classification" else []
    info = rundir.read_dataset_info(rd) if (rd / rundir.DATASET).is_file() else {}
    value = info.get("constant_prediction")
    if value is None:
        value = constant_value(_task_labels(ds, "train", task), task, len(names))
    scored = constant_value_rows(float(value), {split: _task_labels(ds, split, task)}, task, ds.metric_family,
                                 names)[split]
    if metric not in scored:
        raise DataError(f"{rd}: metric {metric!r} not computed; available: {', '.join(scored)}")
    return cfg.data.name, scored[metric][0]


def run_curves(rd: Path, datasets: DatasetCache, modalities: Sequence[str], corruptions: Sequence[str],
               levels: list[float], split: str, metric: str | None, seed: int
               ) -> tuple[list[Curve], tuple[str, str, float]]:
    """Every (corruption kind, modality) curve of run ``rd``, on ``metric`` (default: the headline metric), and its
    trivial baseline as ``(dataset name, metric, score)`` (:func:`run_constant`)."""
    cfg, _ = load_run(rd)
    ds = prepare_inputs(datasets.get(cfg.data), cfg.data, cfg.model.params)
    chosen = metric or headline_metric(cfg.task.kind, ds.metric_family)
    dev = resolve_device(cfg.train.device)
    models = load_seed_models(rd, dev)
    curves = [corruption_curve(rd, models, cfg, ds, dev, kind, mod, levels, split, chosen, seed)
              for kind in corruptions for mod in modalities]
    data_name, score = run_constant(rd, cfg, ds, split, chosen)
    return curves, (data_name, chosen, score)


def constant_lines(per_run: Sequence[tuple[str, str, float]]) -> list[ConstantLine]:
    """The trivial-baseline rows of the runs' ``(dataset name, metric, score)``: one per distinct triple (runs on
    one dataset share one row), named :data:`CONSTANT_ROW`, followed by the dataset's name when there are several
    (and by the metric when one dataset is scored on several)."""
    distinct = list(dict.fromkeys(per_run))
    if len(distinct) == 1:
        return [ConstantLine(CONSTANT_ROW, distinct[0][1], distinct[0][2])]
    names = [d for d, _, _ in distinct]
    out = []
    for data_name, metric, score in distinct:
        tag = data_name if names.count(data_name) == 1 else f"{data_name}, {metric}"
        out.append(ConstantLine(f"{CONSTANT_ROW}, {tag}", metric, score))
    return out


def write_robustness(curves: list[Curve], runs: list[Path], dest: Path, split: str, levels: list[float],
                     reference: str, constants: Sequence[ConstantLine] = ()) -> dict[str, Any]:
    """Write ``robustness.{md,png,json}`` in ``dest``; returns what the JSON holds (``constant_predictor``: the
    trivial baselines' rows, each ``{name, metric, value}``; they are also first in ``rows``)."""
    ref = reference if any(c.run == reference for c in curves) else None
    md = markdown(curves, ref, constants)
    title = f"Robustness on {split} ({', '.join(r.name for r in runs)})"
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "robustness.md", f"# {title}\n\n" + md)
    plot_curves(curves, dest / "robustness.png", title, constants)
    result = {"split": split, "levels": levels, "reference": ref, "runs": [str(r) for r in runs],
              "rows": summary_rows(curves, ref, constants),
              "constant_predictor": [line.__dict__ for line in constants],
              "curves": [c.__dict__ for c in curves], "markdown": md, "png": str(dest / "robustness.png")}
    write_json(dest / "robustness.json", result)
    return result


def run_robustness(
    targets: list[str | Path],
    modalities: list[str] | None = None,
    corruptions: list[str] | None = None,
    levels: list[float] | None = None,
    split: str = "test",
    metric: str | None = None,
    reference: str = "late_fusion",
    out: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score runs under increasing corruption; write a table, curves (PNG) and relative/effective robustness.

    ``targets`` are run directories or benchmark folders (every run inside is compared on one figure).
    Each (corruption kind, modality, level) is applied to the ``split`` with a fixed ``seed``, so every run sees the
    same corrupted samples. Results go to ``out`` (default: the single run's folder, or the benchmark folder):
    ``robustness.json``, ``robustness.md``, ``robustness.png``. The table's first row, the JSON's first rows and a
    dashed line in every panel of the figure are the trivial baseline (train-mean / majority-class predictor): one
    for the runs of one dataset, the same at every level since it reads no input.
    """
    modalities = modalities or list(MODALITIES_ALL)
    corruptions = corruptions or list(CORRUPTIONS)
    levels = levels if levels is not None else default_levels()
    runs = [r for t in targets for r in rundir.find_runs(t)]
    datasets = DatasetCache()
    per_run = [run_curves(rd, datasets, modalities, corruptions, levels, split, metric, seed) for rd in runs]
    curves = [c for cs, _ in per_run for c in cs]
    constants = constant_lines([const for _, const in per_run])
    dest = Path(out) if out else (runs[0] if len(runs) == 1 else Path(targets[0]))
    return write_robustness(curves, runs, dest, split, levels, reference, constants)
