"""``accord benchmark``: several methods on one dataset, same seeds and budget, one table of mean ± std; the runs
are trained by the runner primitive (:func:`~accord.studies.runner.run_configs`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from accord.config import Config, load_config
from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.metrics import headline_metric, metric_mode, register_metric
from accord.evaluation.sections import confusion_markdown, dataset_markdown, run_confusion
from accord.evaluation.summary import Aggregate, aggregate, aggregate_table_json, markdown_table, write_csv
from accord.studies.parallel import run_configs_parallel
from accord.studies.runner import (
    DatasetCache,
    constant_rows,
    rows_table,
    selection_metric,
    table_metrics,
    train_seconds,
)

UNIMODAL = ("text", "audio", "visual")
CONFLICT_COLUMNS = ["acc_conflicting", "acc_consistent"]
"""The columns of :func:`conflict_split_rows` (registered metrics, in %)."""

register_metric("acc_conflicting", "max", "%", description="binary accuracy on samples with a planted conflict")
register_metric("acc_consistent", "max", "%", description="binary accuracy on samples without one")


def benchmark_configs(methods: list[str], dataset: str, seeds: list[int], out_dir: str | Path,
                      overrides: list[str] | None = None, config_files: list[str] | None = None) -> list[Config]:
    """One validated config per method: method YAML + dataset YAML + overrides, seeds and output forced."""
    cfgs = []
    for m in methods:
        forced = [f"name={m}", f"output.dir={out_dir}", f"train.seeds={json.dumps(seeds)}"]
        if config_files:
            from accord.config import compose, validate

            tree = compose(m, dataset, list(config_files), [*(overrides or []), *forced])
            cfgs.append(validate(tree, f"benchmark {m}/{dataset}"))
        else:
            cfgs.append(load_config(method=m, dataset=dataset, overrides=[*(overrides or []), *forced]))
    return cfgs


def fusion_verdict(rows: dict[str, dict[str, tuple[float, float, int]]], metric: str) -> str:
    """One sentence saying which multimodal method, if any, beats text alone on ``metric`` (means ± std)."""
    if "text" not in rows or metric not in rows["text"]:
        return ""
    t_mean, t_std, _ = rows["text"][metric]
    better = metric_mode(metric)
    wins: list[str] = []
    losses: list[str] = []
    for name, agg in rows.items():
        if name in UNIMODAL or metric not in agg:
            continue
        mean, std, _ = agg[metric]
        beats = mean > t_mean if better == "max" else mean < t_mean
        (wins if beats else losses).append(f"{name} {mean:.3g} ± {std:.2g}")
    head = f"Text alone: {metric} {t_mean:.3g} ± {t_std:.2g}. "
    if wins:
        head += f"Beat text alone on mean {metric}: {', '.join(wins)}"
        head += f"; did not: {', '.join(losses)}." if losses else "."
        return head + " (A difference smaller than the stds is not a clear win.)"
    return head + f"No fusion method beats text alone on mean {metric} ({', '.join(losses)})."


def write_study_report(out: Path, stem: str, lines: list[str], seconds: dict[str, float], command: str,
                       rows: dict[str, dict[str, Aggregate]], metrics: list[str], payload: dict[str, Any],
                       table: str | Path | None = None) -> str:
    """Close a study's Markdown (training seconds per method, the command that made it) and write
    ``<out>/<stem>.md``, ``.csv`` (``rows`` x ``metrics``) and ``.json`` (``payload``), atomically; the Markdown also
    goes to ``table`` when given. Returns the Markdown."""
    lines = [*lines, "Mean training seconds per seed (this machine): "
             + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()), "", f"Produced by `{command}`."]
    md = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.md", md)
    write_csv(out / f"{stem}.csv", rows, metrics)
    write_json(out / f"{stem}.json", payload)
    if table:
        atomic_write_text(Path(table), md)
    return md


def _conflict_hits(diag: dict[str, np.ndarray], task: str) -> dict[str, float]:
    """One seed's binary accuracy (%) on conflicting and on consistent test samples (NaN where there are none)."""
    pred, y, flag = diag["prediction"], diag["label"], diag["extra_conflict"].astype(bool)
    if task == "classification":
        hit, keep = pred.argmax(axis=1) == y, np.ones_like(flag)
    else:
        hit, keep = (pred > 0) == (y > 0), y != 0
    return {
        "acc_conflicting": float(100 * hit[keep & flag].mean()) if (keep & flag).any() else float("nan"),
        "acc_consistent": float(100 * hit[keep & ~flag].mean()) if (keep & ~flag).any() else float("nan"),
    }


def _constant_conflict_row(run_dir: Path, diag: dict[str, np.ndarray], task: str, seeds: int,
                           fallback: float | None = None) -> dict[str, Aggregate] | None:
    """The trivial-baseline row of the conflict table: the run's recorded constant prediction (``dataset.json``'s
    ``constant_prediction``: train mean or majority class), else ``fallback``, scored like a seed on ``diag``'s test
    samples; ``None`` for a run that did not record it when there is no fallback."""
    info = rundir.read_dataset_info(run_dir) if (run_dir / rundir.DATASET).is_file() else {}
    value = info.get("constant_prediction", fallback)
    if value is None:
        return None
    n = len(diag["label"])
    pred: np.ndarray = np.full(n, float(value))
    if task == "classification":
        pred = np.zeros((n, int(info.get("out_dim") or diag["prediction"].shape[-1])))
        pred[:, int(value)] = 1.0
    hits = _conflict_hits({**diag, "prediction": pred}, task)
    return {k: (v, 0.0, seeds) for k, v in hits.items()}


def conflict_split_rows(run_dirs: dict[str, Path], seeds: list[int], task: str, constant: float | None = None
                        ) -> dict[str, dict[str, Aggregate]]:
    """Binary accuracy (%) on conflicting vs consistent test samples, per method, mean ± std over seeds.

    Uses the ground truth that ConflictBench stores per sample (``extra_conflict``) beside each prediction in
    ``seed_<s>/diagnostics.npz``; methods whose run lacks it are skipped. Regression: sign agreement on non-zero
    labels; classification: exact class agreement. The first row is the trivial baseline (:data:`CONSTANT_ROW`,
    the first such run's recorded constant prediction, else ``constant``: e.g. the train mean of the dataset, for
    runs trained before the constant was recorded) when there is one.
    """
    rows: dict[str, dict[str, Aggregate]] = {}
    for name, rd in run_dirs.items():
        per_seed = []
        for s in seeds:
            sd = rundir.seed_dir(rd, s)
            if not (sd / rundir.DIAGNOSTICS).is_file():
                continue
            diag = rundir.read_diagnostics(sd, "test")
            if "extra_conflict" in diag:
                per_seed.append(_conflict_hits(diag, task))
                if not rows and len(per_seed) == 1:
                    constant_row = _constant_conflict_row(rd, diag, task, len(seeds), constant)
                    if constant_row is not None:
                        rows[CONSTANT_ROW] = constant_row
        if per_seed:
            rows[name] = aggregate(per_seed)
    return rows


def confusion_tables(run_dirs: Mapping[str, Path], split: str = "test") -> dict[str, dict[str, Any]]:
    """``{name: {"class_names", "matrix", "seeds"}}``: each classification run's confusion matrix on ``split``,
    counts summed over its seeds (:func:`~accord.evaluation.sections.run_confusion`); regression runs are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, rd in run_dirs.items():
        found = run_confusion(rd, split)
        if found is not None:
            matrix, names, seeds = found
            out[name] = {"class_names": names, "matrix": matrix.tolist(), "seeds": seeds}
    return out


def confusion_lines(tables: Mapping[str, Mapping[str, Any]], over: str = "seeds") -> list[str]:
    """The Markdown of :func:`confusion_tables` (one matrix per run; ``over`` says what the counts are summed over),
    no lines for a regression study."""
    lines: list[str] = []
    for name, t in tables.items():
        lines += [confusion_markdown(t["matrix"], t["class_names"],
                                     f"Confusion matrix of {name} on test, counts summed over {t['seeds']} {over} "
                                     "(rows: true class, columns: predicted class):").rstrip("\n"), ""]
    return lines


def dataset_info(run_dir: Path) -> dict[str, Any]:
    """The dataset record of a finished run (its ``dataset.json``): what a study's dataset section shows."""
    return rundir.read_dataset_info(run_dir)


def _benchmark_lines(dataset: str, title: str | None, seeds: list[int], c0: Config, sel: str, table: str,
                     verdict: str, reference: Any, conflict_rows: dict[str, dict[str, Aggregate]]) -> list[str]:
    """The Markdown of a benchmark above its closing lines (:func:`write_study_report`)."""
    lines = [
        f"# {title or 'Benchmark'}: {dataset}",
        "",
        f"Test split, mean ± std over {len(seeds)} seed(s) {seeds}; each seed's checkpoint selected on the "
        f"validation split by {sel} (never on test). Budget: up to {c0.train.epochs} epochs, batch "
        f"{c0.train.batch_size}, lr {c0.train.lr:g} unless a method's config says otherwise. Accuracies and F1 in %.",
        "",
        table.rstrip("\n"),
        "",
    ]
    if verdict:
        lines += [verdict, ""]
    if reference:
        lines += [str(reference), ""]
    if conflict_rows:
        lines += [
            "Planted conflicts (ConflictBench ground truth): accuracy on test samples where one modality carries the "
            "opposite polarity vs on consistent samples.",
            "",
            markdown_table(conflict_rows, CONFLICT_COLUMNS, first_col="method"),
            "",
        ]
    return lines


def run_benchmark(methods: list[str], dataset: str, seeds: list[int], out_dir: str | Path,
                  overrides: list[str] | None = None, table: str | Path | None = None, resume: bool = False,
                  overwrite: bool = False, console: Console | None = None,
                  config_files: list[str] | None = None, title: str | None = None,
                  command: str | None = None, workers: int = 1) -> dict[str, Any]:
    """Train every method on ``dataset`` over ``seeds``; write ``benchmark.{md,csv,json}`` in ``out_dir``.

    The dataset is built once per distinct data config and shared (per worker process with ``workers`` > 1:
    :func:`~accord.studies.parallel.run_configs_parallel`). Checkpoints are selected on validation; the table
    reports TEST metrics as mean ± std over seeds, plus the validation selection metric.
    """
    out = Path(out_dir)
    cfgs = benchmark_configs(methods, dataset, seeds, out, overrides, config_files)
    datasets = DatasetCache()
    trained = run_configs_parallel([(c.run_name, c) for c in cfgs], workers, resume=resume, overwrite=overwrite,
                                   console=console, datasets=datasets)
    rows, valid_rows, seconds = rows_table(trained), rows_table(trained, "valid"), train_seconds(trained)
    confusion = confusion_tables({c.run_name: c.run_dir for c in cfgs})
    info = dataset_info(cfgs[0].run_dir)
    family = trained[-1].family
    metrics = table_metrics(trained)
    sel = selection_metric(cfgs[0], family)
    verdict = fusion_verdict(rows, headline_metric(trained[-1].cfg.task.kind, family))
    conflict_rows = conflict_split_rows({c.run_name: c.run_dir for c in cfgs}, seeds, cfgs[0].task.kind)
    constant = constant_rows(datasets.get(cfgs[0].data), len(seeds), cfgs[0].task.kind)
    shown = {CONSTANT_ROW: constant["test"], **rows}
    lines = _benchmark_lines(dataset, title, seeds, cfgs[0], sel, markdown_table(shown, metrics, first_col="method"),
                             verdict, datasets.get(cfgs[0].data).meta.get("reference"), conflict_rows)
    lines += [*confusion_lines(confusion), dataset_markdown(info, "## Dataset")]
    command = command or (f"accord benchmark --dataset {dataset} --methods {','.join(methods)} --seeds {len(seeds)}"
                          + (f" --workers {workers}" if workers > 1 else "")
                          + "".join(f" --set {o}" for o in overrides or []))
    md = write_study_report(out, "benchmark", lines, seconds, command, shown, metrics, {
        "dataset": dataset, "seeds": seeds, "methods": methods, "selection_metric": sel,
        "test": aggregate_table_json(rows),
        "constant_predictor": aggregate_table_json(constant),
        "valid": aggregate_table_json(valid_rows),
        "train_seconds": seconds, "verdict": verdict,
        "conflict_split": aggregate_table_json(conflict_rows),
        "confusion": confusion, "dataset_info": info,
    }, table)
    return {"markdown": md, "rows": rows, "verdict": verdict, "metrics": metrics, "conflict": conflict_rows,
            "constant": constant, "confusion": confusion, "dataset_info": info, "selection_metric": sel,
            "train_seconds": seconds}
