"""``accord ablate``: re-run a method's ablation table by configuration alone, one table in the paper's layout.

A model class that declares an ablation table gets it re-run here:

* ``ablation_param`` (class attribute): the ``model.params`` key that switches a component off (CACR: ``ablation``);
* ``ablation_table``: ``{value: {"label": paper row name, "paper": {our metric name: paper number}}}`` in the
  paper's row order;
* ``ablation_reference`` (optional): where the paper numbers come from.

Each row is the method's config with ``--set model.params.<param>=<value>``, trained over the same seeds and data
by the one :class:`~accord.training.trainer.Trainer` (checkpoint selected on VALIDATION), named
``<method>_<value>`` under ``out_dir``. The table reports TEST mean ± std over seeds beside the paper's numbers, then
the full metric table, the validation selection metric, and (ConflictBench) accuracy on conflicting vs consistent
samples (:func:`~accord.studies.benchmark.conflict_split_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from accord.config import Config, compose, validate
from accord.core.errors import ConfigError
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.sections import dataset_markdown
from accord.evaluation.summary import Aggregate, aggregate_table_json, format_mean_std, markdown_table
from accord.studies.benchmark import (
    CONFLICT_COLUMNS,
    conflict_split_rows,
    confusion_lines,
    confusion_tables,
    dataset_info,
    write_study_report,
)
from accord.studies.runner import (
    rows_table,
    run_configs,
    selection_metric,
    summary_constant_rows,
    table_metrics,
    train_seconds,
)

PAPER_COLUMNS: dict[str, str] = {"Mult_acc_7": "ACC7", "Non0_acc_2": "ACC2", "MAE": "MAE"}
"""Our metric -> the column name of seed 003's ablation table (its single ACC2 is compared with Non0_acc_2)."""


def ablation_spec(method: str) -> tuple[str, dict[str, dict[str, Any]], str]:
    """``(param, table, reference)`` declared by the model class of ``method``; ConfigError if it has none."""
    import accord.models  # noqa: F401  (register models)
    from accord.models.base import MODELS

    cls = MODELS.get(method).cls
    param = getattr(cls, "ablation_param", None)
    table = getattr(cls, "ablation_table", None)
    if not param or not table:
        raise ConfigError(f"--method {method}: model {method!r} declares no ablation table (ablation_param and "
                          f"ablation_table on its class)")
    return str(param), dict(table), str(getattr(cls, "ablation_reference", ""))


def ablation_configs(method: str, dataset: str, seeds: list[int], out_dir: str | Path, names: list[str],
                     overrides: list[str] | None = None, config_files: list[str] | None = None) -> list[Config]:
    """One validated config per ablation ``name``: method + dataset YAML, files, overrides, then the switch."""
    param, _, _ = ablation_spec(method)
    cfgs = []
    for name in names:
        forced = [f"model.params.{param}={name}", f"name={method}_{name}", f"output.dir={out_dir}",
                  f"train.seeds={json.dumps(seeds)}"]
        tree = compose(method, dataset, list(config_files or []), [*(overrides or []), *forced])
        cfgs.append(validate(tree, f"ablate {method}/{dataset} ({param}={name})"))
    return cfgs


def paper_layout_table(rows: dict[str, dict[str, Aggregate]], table: dict[str, dict[str, Any]],
                       reference_row: str = "full") -> str:
    """The paper's layout: configuration, ACC7, ACC2, MAE (ours, test mean ± std), the paper's numbers beside,
    and our change of ACC2 against ``reference_row``."""
    ours = list(PAPER_COLUMNS)
    header = ["Configuration", "`ablation`", *(f"{PAPER_COLUMNS[m]} ({m})" for m in ours),
              *(f"paper {PAPER_COLUMNS[m]}" for m in ours), "Δ ACC2 vs full (ours / paper)", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", ":---", *["---:"] * (len(header) - 2)]) + "|"]
    ref = rows.get(reference_row, {})
    ref_paper = table.get(reference_row, {}).get("paper", {})
    for name, stats in rows.items():
        spec = table.get(name, {})
        paper = spec.get("paper", {})
        cells = [str(spec.get("label", name)), f"`{name}`" if name in table else "—"]
        cells += [format_mean_std(*stats[m][:2], m) if m in stats else "n/a" for m in ours]
        cells += [(f"{paper[m]:.3f}" if m == "MAE" else f"{paper[m]:.2f}") if m in paper else "—" for m in ours]
        if name == reference_row or name not in table:
            cells.append("—")
        else:
            d_ours = (f"{stats['Non0_acc_2'][0] - ref['Non0_acc_2'][0]:+.1f}"
                      if "Non0_acc_2" in stats and "Non0_acc_2" in ref else "n/a")
            d_paper = (f"{paper['Non0_acc_2'] - ref_paper['Non0_acc_2']:+.2f}"
                       if "Non0_acc_2" in paper and "Non0_acc_2" in ref_paper else "—")
            cells.append(f"{d_ours} / {d_paper}")
        n = {stats[m][2] for m in ours if m in stats}
        cells.append(str(max(n)) if n else "0")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ablation_lines(method: str, dataset: str, param: str, seeds: list[int], c0: Config, sel: str, reference: str,
                    spec: dict[str, dict[str, Any]], rows: dict[str, dict[str, Aggregate]],
                    valid_rows: dict[str, dict[str, Aggregate]], metrics: list[str],
                    conflict_rows: dict[str, dict[str, Aggregate]], notes: str,
                    constant: dict[str, dict[str, Aggregate]] | None = None) -> list[str]:
    """The Markdown of an ablation above its closing lines (:func:`write_study_report`); ``constant`` is the
    trivial-baseline row per split, shown first in every table."""
    const = constant or {}
    rows = {**({CONSTANT_ROW: const["test"]} if "test" in const else {}), **rows}
    valid_rows = {**({CONSTANT_ROW: const["valid"]} if "valid" in const else {}), **valid_rows}
    lines = [
        f"# Ablation of `{method}` on `{dataset}`",
        "",
        f"Each row is `{method}` with `--set model.params.{param}=<ablation>`; test split, mean ± std over "
        f"{len(seeds)} seed(s) {seeds}; each seed's checkpoint selected on the validation split by {sel} (never on "
        f"test). Budget: up to {c0.train.epochs} epochs, patience {c0.train.early_stopping.patience}, batch "
        f"{c0.train.batch_size}, lr {c0.train.lr:g}. Accuracies in %.",
        "",
    ]
    if all(m in metrics for m in PAPER_COLUMNS):
        lines += [f"Paper numbers: {reference or 'the paper'}.", "", paper_layout_table(rows, spec).rstrip("\n"), ""]
    lines += ["All metrics (test):", "", markdown_table(rows, metrics, first_col="ablation").rstrip("\n"), ""]
    lines += [f"Validation {sel} (the selection metric):", "",
              markdown_table({k: {sel: v[sel]} for k, v in valid_rows.items() if sel in v}, [sel],
                             first_col="ablation").rstrip("\n"), ""]
    if conflict_rows:
        lines += ["Planted conflicts (ConflictBench ground truth): binary accuracy on conflicting vs consistent "
                  "test samples.", "",
                  markdown_table(conflict_rows, CONFLICT_COLUMNS, first_col="ablation").rstrip("\n"), ""]
    if notes:
        lines += [notes.rstrip("\n"), ""]
    return lines


def run_ablation(method: str, dataset: str, seeds: list[int], out_dir: str | Path,
                 names: list[str] | None = None, overrides: list[str] | None = None,
                 config_files: list[str] | None = None, table: str | Path | None = None, resume: bool = False,
                 overwrite: bool = False, console: Console | None = None, command: str | None = None,
                 notes: str = "") -> dict[str, Any]:
    """Train every ablation of ``method`` (or ``names``) on ``dataset``; write ``ablation.{md,csv,json}``."""
    param, spec, reference = ablation_spec(method)
    names = names or list(spec)
    unknown = [n for n in names if n not in spec]
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: not an ablation of {method!r}; known: {', '.join(spec)}")
    out = Path(out_dir)
    cfgs = ablation_configs(method, dataset, seeds, out, names, overrides, config_files)
    trained = run_configs(list(zip(names, cfgs, strict=True)), resume=resume, overwrite=overwrite, console=console)
    rows, valid_rows, seconds = rows_table(trained), rows_table(trained, "valid"), train_seconds(trained)
    metrics = table_metrics(trained)
    c0 = cfgs[0]
    sel = selection_metric(c0, trained[-1].family)
    run_dirs = {r.name: r.run_dir for r in trained}
    conflict_rows = conflict_split_rows(run_dirs, seeds, c0.task.kind)
    constant = summary_constant_rows(trained[0])
    confusion = confusion_tables(run_dirs)
    info = dataset_info(trained[0].run_dir)
    lines = _ablation_lines(method, dataset, param, seeds, c0, sel, reference, spec, rows, valid_rows, metrics,
                            conflict_rows, notes, constant)
    lines += [*confusion_lines(confusion), dataset_markdown(info, "## Dataset")]
    command = command or (f"accord ablate --method {method} --dataset {dataset} --seeds {len(seeds)}"
                          + "".join(f" --set {o}" for o in overrides or []))
    shown = {**({CONSTANT_ROW: constant["test"]} if "test" in constant else {}), **rows}
    md = write_study_report(out, "ablation", lines, seconds, command, shown, metrics, {
        "method": method, "dataset": dataset, "seeds": seeds, "param": param, "ablations": names,
        "selection_metric": sel, "paper": {n: spec[n].get("paper", {}) for n in names}, "reference": reference,
        "test": aggregate_table_json(rows),
        "valid": aggregate_table_json(valid_rows),
        "conflict_split": aggregate_table_json(conflict_rows),
        "constant_predictor": aggregate_table_json(constant), "confusion": confusion, "dataset_info": info,
        "train_seconds": seconds, "command": command,
    }, table)
    return {"markdown": md, "rows": rows, "valid": valid_rows, "conflict": conflict_rows, "run_dirs": run_dirs,
            "constant": constant, "confusion": confusion}
