"""Runs: configure, train, load, evaluate, score under corruption, report and plot a run directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from accord import config as _config
from accord.config import Config, load_config
from accord.core import rundir
from accord.core.errors import AccordError, ConfigError, DataError, StorageError
from accord.core.hooks import TrainerHook
from accord.core.io import write_json
from accord.data.contract import dataset_record
from accord.data.corrupt import apply_corruptions, parse_corruption
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.registry import build_dataset
from accord.data.transfer import align_to_run
from accord.evaluation.baselines import CONSTANT_ROW, constant_value, constant_value_rows
from accord.evaluation.sections import confusion_markdown, confusion_matrix, dataset_markdown, sum_confusions
from accord.evaluation.summary import Aggregate, aggregate, aggregate_json, markdown_table
from accord.models.base import AccordModel
from accord.training import threads
from accord.training.distributed import env_rank
from accord.training.text_tokens import prepare_inputs
from accord.training.trainer import Trainer, evaluate_split, load_model, load_run, resolve_device


# ------------------------------------------------------------------------------------------------------ training
def train(cfg: Config, resume: bool = False, overwrite: bool = False, hooks: list[TrainerHook] | None = None,
          dataset: MultimodalDataset | None = None, console: Console | None = None) -> dict[str, Any]:
    """Train ``cfg`` over its seeds; returns the summary (mean ± std over seeds on valid and test)."""
    return Trainer(cfg, dataset=dataset, hooks=hooks or [], console=console).fit(resume=resume,
                                                                                  overwrite=overwrite)


@dataclass
class TrainRun:
    """What :func:`train_run` did: the resolved config, the summary, and the summary table (``None`` on the
    ranks other than 0 of a torchrun job, which neither write nor report)."""

    config: Config
    summary: dict[str, Any]
    run_dir: Path
    markdown: str | None


def train_run(config_file: str | Path | None = None, method: str | None = None, dataset: str | None = None,
              overrides: Sequence[str] | None = None, seeds: int | None = None, resume: bool = False,
              overwrite: bool = False, console: Console | None = None) -> TrainRun:
    """``accord train``: load the config (a file and/or a method + dataset, ``overrides``, seeds ``0..seeds-1``)
    and train it. ``seeds``, when given, wins over the config's ``train.seeds`` (and over ``overrides``); fewer
    than 1 is an error."""
    if config_file is None and method is None:
        raise AccordError("give a config file or --method (and --dataset)")
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds: expected at least 1 (got {seeds})")
    extra = [f"train.seeds={json.dumps(list(range(seeds)))}"] if seeds is not None else []
    cfg = load_config(config_file, [*(overrides or []), *extra], method=method, dataset=dataset)
    summary = train(cfg, resume=resume, overwrite=overwrite, console=console)
    main = env_rank() == 0  # under torchrun only rank 0 reports (and only it wrote the run directory)
    markdown = (cfg.run_dir / "summary.md").read_text() if main else None
    return TrainRun(cfg, summary, cfg.run_dir, markdown)


# ------------------------------------------------------------------------------------------------------ runs
def seed_dirs(run_dir: str | Path) -> list[Path]:
    """The ``seed_<s>`` folders of a run that hold a selected checkpoint (numeric seed order)."""
    return rundir.seed_dirs(run_dir, with_checkpoint=True)


def load(run_dir: str | Path, seed: int | None = None, device: str | None = None, compile: str = "off"
         ) -> AccordModel:
    """The trained model of ``run_dir`` (its first seed, or ``seed``), in eval mode; ``compile`` (``inductor``,
    ``eager``) wraps it in ``torch.compile`` (:func:`~accord.training.trainer.load_model`)."""
    return load_model(run_dir, seed, device, compile)


def _other_dataset(run_dir: str | Path, info: dict[str, Any], name: str, overrides: Sequence[str] | None,
                   path: str | None) -> MultimodalDataset:
    """Dataset ``name`` (``key=value`` params ``overrides``, ``data.path`` ``path``) aligned to the run's inputs."""
    params: dict[str, Any] = {}
    for assignment in overrides or []:
        params = _config.deep_merge(params, _config.override_tree(assignment))
    return align_to_run(build_dataset(name, path, params), info, str(run_dir))


def _save_evaluation(result: dict[str, Any], file: Path) -> None:
    """Write ``result`` (without ``saved``) to ``file``; ``saved`` is its path, or ``not_saved`` the reason."""
    try:
        write_json(file, {k: v for k, v in result.items() if k != "saved"})
        result["saved"] = str(file)
    except StorageError as err:
        result["not_saved"] = str(err)


def _task_labels(part: SplitData, task: str) -> np.ndarray:
    """The labels of ``part`` the task scores: class indices (classification) or scores (regression)."""
    y = part.class_labels if task == "classification" and part.class_labels is not None else part.labels
    return y.cpu().numpy()


def _evaluated_constant(cfg: Config, info: dict[str, Any], ds: MultimodalDataset, part: SplitData,
                        seeds: int) -> dict[str, Aggregate]:
    """The trivial-baseline row on the evaluated split: the run's own constant prediction (``dataset.json``), or for
    a run trained before it was recorded, the train mean / majority class of ``ds``'s training split."""
    task = cfg.task.kind
    names = list(ds.class_names or [])
    value = info.get("constant_prediction")
    if value is None:
        value = constant_value(_task_labels(ds["train"], task), task, len(names))
    return constant_value_rows(float(value), {"x": _task_labels(part, task)}, task, ds.metric_family, names,
                               seeds)["x"]


def _evaluation_dataset(run_dir: str | Path, cfg: Any, info: dict[str, Any], dataset: MultimodalDataset | None,
                        on: str | None, on_overrides: Sequence[str] | None, on_path: str | None) -> MultimodalDataset:
    """The dataset ``accord evaluate`` scores: ``dataset``, else ``on`` aligned to the run, else the run's own; its
    inputs prepared as in training and its dims checked against the run's."""
    if on:
        dataset = _other_dataset(run_dir, info, on, on_overrides, on_path)
    ds = prepare_inputs(dataset or build_dataset(cfg.data.name, cfg.data.path, cfg.data.params), cfg.data,
                        cfg.model.params)
    if info and ds.dims != info["dims"]:
        raise DataError(f"{cfg.data.name}: feature dims {ds.dims} differ from the run's {info['dims']}")
    return ds


def _evaluate_seeds(run_dir: str | Path, cfg: Any, ds: MultimodalDataset, part: Any, n_classes: int
                    ) -> tuple[dict[str, dict[str, float]], list[Any]]:
    """Every seed's metrics on ``part`` and, for a classifier (``n_classes`` > 0), its confusion matrix."""
    dev = resolve_device(cfg.train.device)
    per_seed: dict[str, dict[str, float]] = {}
    matrices = []
    with threads.using(cfg.train.num_threads):  # the thread policy, as in training
        for sd in seed_dirs(run_dir):
            model = load_model(run_dir, rundir.seed_of(sd), dev)
            res = evaluate_split(model, part, cfg, ds, dev)
            per_seed[sd.name] = res.metrics
            if n_classes:
                matrices.append(confusion_matrix(res.predictions, res.labels, n_classes))
    return per_seed, matrices


def evaluate(run_dir: str | Path, corrupt: list[str] | None = None, split: str = "test",
             dataset: MultimodalDataset | None = None, write: bool = True, on: str | None = None,
             on_overrides: Sequence[str] | None = None, on_path: str | None = None) -> dict[str, Any]:
    """Evaluate every seed's selected checkpoint of ``run_dir`` on ``split``, optionally corrupted.

    ``on`` names ANOTHER registered dataset to evaluate on (cross-dataset: ``on_overrides`` are ``key=value`` of its
    ``data.params``, ``on_path`` its ``data.path``): its inputs are aligned to the run's
    (:func:`accord.data.transfer.align_to_run`: a modality one side never had becomes missing, features
    re-standardised with the run's training statistics) and the saved file is ``eval_<split>_on-<name>_<tag>.json``.

    ``corrupt`` takes specs like ``drop:audio:0.5``, ``noise:all:0.3``, ``temporal_drop:visual:0.2``.
    Returns per-seed metrics and their mean ± std, and ``markdown`` (that table, as ``accord evaluate`` prints it);
    with ``write`` also saves ``eval_<split>_<tag>.json`` (without the table) into the run directory: ``saved`` is
    its path, or ``None`` with ``not_saved`` the one-line reason when the run directory cannot be written (a
    read-only folder, a full disk): the results are still returned.
    """
    cfg, info = load_run(run_dir)
    specs = [parse_corruption(c) for c in (corrupt or [])]
    ds = _evaluation_dataset(run_dir, cfg, info, dataset, on, on_overrides, on_path)
    part = apply_corruptions(ds[split], specs) if specs else ds[split]
    classification = cfg.task.kind == "classification"
    names = list(ds.class_names or [])
    per_seed, matrices = _evaluate_seeds(run_dir, cfg, ds, part, len(names) if classification else 0)
    agg = aggregate(list(per_seed.values()))
    mean_std = aggregate_json(agg)
    constant = _evaluated_constant(cfg, info, ds, part, len(per_seed))
    confusion = sum_confusions(matrices)
    data_info = {"name": on or cfg.data.name, "source": ds.source, "path": on_path if on else cfg.data.path,
                 "class_names": names, **dataset_record({**ds.splits, split: part}, names if classification else [])}
    result: dict[str, Any] = {"run": str(run_dir), "split": split, "dataset": on or cfg.data.name,
                              "corruption": [s.model_dump() for s in specs],
                              "per_seed": per_seed, "mean_std": mean_std,
                              "constant_predictor": aggregate_json(constant),
                              **({"confusion": {"class_names": names, "matrix": confusion.tolist()}}
                                 if confusion is not None else {}),
                              "dataset_info": data_info}
    result["saved"] = None
    if write:
        tag = "_".join(f"{s.kind}-{s.modality}-{s.level:g}" for s in specs) or "clean"
        _save_evaluation(result, Path(run_dir) / f"eval_{split}_{f'on-{on}_' if on else ''}{tag}.json")
    where = f"{on} {split}" if on else split
    result["markdown"] = _evaluation_markdown(
        f"**{run_dir}** on {where} ({', '.join(corrupt or []) or 'clean'})", split, where, agg, constant, confusion,
        names, len(matrices), data_info, "Dataset" + (f" (split {split} as evaluated, after the corruption)"
                                                      if specs else ""))
    return result


def _evaluation_markdown(title: str, split: str, where: str, agg: dict[str, Any], constant: dict[str, Any],
                         confusion: Any, names: list[str], n_seeds: int, data_info: dict[str, Any],
                         heading: str) -> str:
    """``accord evaluate``'s printout: the metrics with the trivial-baseline row, the confusion matrix (a
    classifier) and the dataset section."""
    table = markdown_table({split: agg, f"{split}: {CONSTANT_ROW}": constant}, list(agg), first_col="split",
                           bold_best=False)
    parts = [f"{title}\n\n{table}"]
    if confusion is not None:
        parts.append(confusion_markdown(confusion, names, f"Confusion matrix on {where}, counts summed over "
                                        f"{n_seeds} seed(s) (rows: true class, columns: predicted class):"))
    parts.append(dataset_markdown(data_info, f"**{heading}**"))
    return "\n".join(parts) + "\n"


def find_runs(target: str | Path) -> list[Path]:
    """``target`` itself if it is a run directory, else every run directory directly inside it (a benchmark)."""
    return rundir.find_runs(target)


def robustness(
    targets: list[str | Path],
    modalities: list[str] | None = None,
    corruptions: list[str] | None = None,
    levels: list[float] | str | None = None,
    split: str = "test",
    metric: str | None = None,
    reference: str = "late_fusion",
    out: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score runs (or every run of a benchmark folder) under increasing corruption: the study
    :func:`accord.studies.robustness.run_robustness` (its docstring says what is written where). ``levels`` may
    also be the command line's text (``"0,0.1,0.5"``: starts at 0, increases)."""
    from accord.evaluation.robustness import parse_levels
    from accord.studies.robustness import run_robustness

    if isinstance(levels, str):
        levels = parse_levels(levels)
    return run_robustness(targets, modalities=modalities, corruptions=corruptions, levels=levels, split=split,
                          metric=metric, reference=reference, out=out, seed=seed)


def predictions(run_dir: str | Path, seed: int | None = None, split: str = "test") -> dict[str, np.ndarray]:
    """The saved per-sample predictions and diagnostics of a seed (from ``diagnostics.npz``)."""
    folder = seed_dirs(run_dir)[0] if seed is None else rundir.seed_dir(run_dir, seed)
    return rundir.read_diagnostics(folder, split)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's ``summary.json``."""
    return rundir.read_summary(run_dir)


def report(target: str | Path, out: str | Path | None = None, split: str = "test") -> Path:
    """Write one self-contained HTML report of a run or benchmark folder (default ``<target>/report.html``).

    Config, metrics (mean ± std), training curves and every diagnostic the run has, figures inlined as PNG.
    """
    from accord.evaluation.report import write_report

    return write_report(target, out=out, split=split)


def probe(run_dir: str | Path, split: str = "test", write: bool = True) -> dict[str, Any]:
    """The mechanism probes of a trained run (:mod:`accord.studies.probes`: CACR's H_n-dependence and conflict
    AUROC, CP's projected share, EBMC's trust under a dropped or noised modality, QASA's weight-error correlation,
    Self-MM's label drift), per seed and mean ± std, with ``markdown``; ``write`` saves
    ``<run>/probe_<split>.json``, which ``accord report`` shows."""
    from accord.studies.probes import probe_run

    return probe_run(run_dir, split=split, write=write)


# ------------------------------------------------------------------------------------------------------ plots
def monitor_kappa(cfg: Config) -> float:
    """The conflict threshold κ a run's gradient monitor used: its ``train.hooks`` entry's, else the model's
    ``kappa`` parameter, else 1.5."""
    return next((float(h.params["kappa"]) for h in cfg.train.hooks
                 if h.name == "grad_monitor" and h.params.get("kappa") is not None),
                float(cfg.model.params.get("kappa", 1.5)))


def plot_gradients(run_dir: str | Path, seed: int | None = None, out: str | Path | None = None,
                   kappa: float | None = None) -> Path:
    """Per-step gradient norms g_m and imbalance ratios r_m of a monitored run, to PNG (default
    ``RUN_DIR/gradients_seed<s>.png``); ``kappa`` defaults to the run's own (:func:`monitor_kappa`)."""
    from accord.evaluation.plots import plot_gradients as draw

    if kappa is None:
        kappa = monitor_kappa(load_run(run_dir)[0])
    return draw(run_dir, seed=seed, out=out, kappa=kappa)


def plot_conflict(run_dir: str | Path, by: str = "extra_conflict", split: str = "test",
                  out: str | Path | None = None) -> Path:
    """Distributions of the per-sample conflict scores C_m and weights w_m, split by a saved per-sample label, to
    PNG (default ``RUN_DIR/conflict_<split>_<by>.png``)."""
    from accord.evaluation.plots import plot_conflict as draw

    return draw(run_dir, by=by, split=split, out=out)
