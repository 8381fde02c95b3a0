"""``accord benchmark --folds DIR``: several methods on every fold of a k-fold dataset, same seeds on every fold.

``DIR`` is a k-fold dataset (``DIR/folds.json`` naming one safe-format dataset folder per fold, read by
:func:`accord.data.folds.read_folds`; ``accord data import --folds K`` writes it). Fold ``i`` is a plain benchmark
(:func:`~accord.studies.benchmark.run_benchmark`, ``data.name=saved``, ``data.path=<fold folder>``) under
``RUNS/fold_<i>/``, with its own ``benchmark.{md,csv,json}``, resumable like any benchmark. This module then writes
``RUNS/kfold.{md,csv,json}``:

* the **across-fold table**: per method, mean ± std over the folds of the per-fold test means (each the mean over
  the seeds within its fold; :func:`across_folds`), with the trivial-baseline row (train mean / majority class,
  learnt per fold from that fold's training labels) aggregated the same way;
* one **per-fold table** per fold: test mean ± std over the seeds, with that fold's baseline row;
* each classification method's test confusion matrix, counts summed over seeds and folds;
* the dataset section of every fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from accord.core.io import atomic_write_text, write_json
from accord.core.rundir import KFOLD_STEM
from accord.data.folds import read_folds
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.sections import dataset_markdown, sum_confusions
from accord.evaluation.summary import (
    Aggregate,
    aggregate,
    aggregate_json,
    aggregate_table_json,
    markdown_table,
    write_csv,
)
from accord.studies.benchmark import confusion_lines, run_benchmark

__all__ = ["across_folds", "run_fold_benchmark", "summed_confusion"]

"""``RUNS/kfold.{md,csv,json}``: the k-fold benchmark's report (``accord report RUNS`` reads the JSON)."""


def across_folds(per_fold: Sequence[Mapping[str, Mapping[str, Aggregate]]]) -> dict[str, dict[str, Aggregate]]:
    """``{row: {metric: (mean, std, n)}}`` over folds: the mean and sample std (``ddof=1``) of each row's per-fold
    MEANS (the std over seeds within a fold is not carried over); ``n`` is the number of folds with a finite mean.
    Rows keep the order in which they first appear; a row missing from a fold is aggregated over the folds that
    have it (:func:`~accord.evaluation.summary.aggregate`)."""
    names: list[str] = []
    for fold in per_fold:
        names += [n for n in fold if n not in names]
    return {name: aggregate([{m: agg[0] for m, agg in fold[name].items()} for fold in per_fold if name in fold])
            for name in names}


def summed_confusion(per_fold: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each method's confusion matrix summed over folds (``per_fold``: each fold's
    :func:`~accord.studies.benchmark.confusion_tables`): ``{name: {"class_names", "matrix", "seeds", "folds"}}``,
    ``seeds`` counting the seed runs summed (seeds x folds)."""
    out: dict[str, dict[str, Any]] = {}
    names: list[str] = []
    for fold in per_fold:
        names += [n for n in fold if n not in names]
    for name in names:
        tables = [fold[name] for fold in per_fold if name in fold]
        total = sum_confusions([t["matrix"] for t in tables])
        assert total is not None
        out[name] = {"class_names": tables[0]["class_names"], "matrix": total.tolist(),
                     "seeds": sum(int(t["seeds"]) for t in tables), "folds": len(tables)}
    return out


def _lines(folds_dir: Path, folds: list[Path], seeds: list[int], results: list[dict[str, Any]],
           across: dict[str, dict[str, Aggregate]], metrics: list[str], confusion: dict[str, dict[str, Any]],
           command: str, out: Path) -> list[str]:
    """The Markdown of a k-fold benchmark."""
    k, first = len(folds), results[0]
    lines = [
        f"# Benchmark over {k} folds: {folds_dir}",
        "",
        f"Each fold of `{folds_dir}` (folds.json) is its own dataset whose test split is that fold's samples; every "
        f"method is trained with the same {len(seeds)} seed(s) {seeds} on every fold, each seed's checkpoint "
        f"selected on the fold's validation split by {first['selection_metric']} (never on test). Runs: "
        f"`{out}/fold_<i>/<method>`. Accuracies and F1 in %.",
        "",
        "## Across folds",
        "",
        f"Test split: per method, mean ± std over the {k} folds of the per-fold test means (each the mean over "
        f"{len(seeds)} seed(s) within its fold; the std is over folds, not seeds); the `folds` column counts "
        f"the folds. The {CONSTANT_ROW} is learnt per fold from that fold's training labels.",
        "",
        markdown_table(across, metrics, first_col="method", count_col="folds").rstrip("\n"),
        "",
        "## Per fold",
        "",
    ]
    for i, (fold, res) in enumerate(zip(folds, results, strict=True)):
        shown = {CONSTANT_ROW: res["constant"]["test"], **res["rows"]}
        lines += [f"### fold_{i} (`{fold}`)", "",
                  f"Test split, mean ± std over {len(seeds)} seed(s).", "",
                  markdown_table(shown, metrics, first_col="method").rstrip("\n"), ""]
    if confusion:
        lines += ["## Confusion matrices", "", *confusion_lines(confusion, f"seed runs ({len(seeds)} seed(s) x {k} "
                                                                         "folds)")]
    lines += ["## Dataset per fold", ""]
    for i, res in enumerate(results):
        lines += [dataset_markdown(res["dataset_info"], f"### fold_{i}").rstrip("\n"), ""]
    seconds = {m: sum(r["train_seconds"].get(m, 0.0) for r in results) / k for m in results[0]["train_seconds"]}
    lines += ["Mean training seconds per seed, averaged over folds (this machine): "
              + ", ".join(f"{m} {v:.1f}" for m, v in seconds.items()), "", f"Produced by `{command}`."]
    return lines


def run_fold_benchmark(methods: list[str], folds_dir: str | Path, seeds: list[int], out_dir: str | Path,
                       overrides: list[str] | None = None, table: str | Path | None = None, resume: bool = False,
                       overwrite: bool = False, console: Console | None = None,
                       config_files: list[str] | None = None, command: str | None = None,
                       workers: int = 1) -> dict[str, Any]:
    """Train every method over ``seeds`` on every fold of the k-fold dataset ``folds_dir`` (fold ``i``: a plain
    benchmark under ``out_dir/fold_<i>``); write ``out_dir/kfold.{md,csv,json}`` (and the Markdown to ``table``).
    Returns ``markdown``, ``across`` (the across-fold table), ``per_fold`` (each fold's benchmark result),
    ``confusion`` and ``metrics``."""
    root, out = Path(folds_dir), Path(out_dir)
    folds = read_folds(root)  # a bad index is one DataError line naming folds.json, before anything trains
    command = command or (f"accord benchmark --methods {','.join(methods)} --folds {root} --seeds {len(seeds)}"
                          + (f" --workers {workers}" if workers > 1 else "")
                          + "".join(f" --set {o}" for o in overrides or []))
    results = []
    for i, fold in enumerate(folds):
        results.append(run_benchmark(
            methods, "saved", seeds, out / f"fold_{i}", overrides=[*(overrides or []), f"data.path={fold}"],
            resume=resume, overwrite=overwrite, console=console, config_files=config_files,
            title=f"Benchmark fold_{i} of {len(folds)} ({fold})", command=f"{command} (fold_{i})", workers=workers))
    across = across_folds([{CONSTANT_ROW: r["constant"]["test"], **r["rows"]} for r in results])
    metrics = [m for m in results[-1]["metrics"]]
    confusion = summed_confusion([r["confusion"] for r in results])
    md = "\n".join(_lines(root, folds, seeds, results, across, metrics, confusion, command, out)) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{KFOLD_STEM}.md", md)
    write_csv(out / f"{KFOLD_STEM}.csv", across, metrics, count_col="folds")
    write_json(out / f"{KFOLD_STEM}.json", {
        "folds_dir": str(root), "folds": [str(f) for f in folds], "k": len(folds), "seeds": seeds,
        "methods": methods, "selection_metric": results[0]["selection_metric"],
        "across_folds": {"test": aggregate_table_json(across), "statistic": "mean ± std over folds of the per-fold "
                         "test means (each over the seeds within the fold); n counts folds"},
        "per_fold": [{"fold": f"fold_{i}", "path": str(fold), "runs": str(out / f"fold_{i}"),
                      "test": aggregate_table_json(r["rows"]),
                      "constant_predictor": aggregate_json(r["constant"]["test"]),
                      "dataset_info": r["dataset_info"]}
                     for i, (fold, r) in enumerate(zip(folds, results, strict=True))],
        "confusion": confusion, "command": command,
    })
    if table:
        atomic_write_text(Path(table), md)
    return {"markdown": md, "across": across, "per_fold": results, "confusion": confusion, "metrics": metrics}
