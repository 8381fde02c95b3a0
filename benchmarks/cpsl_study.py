"""CP+SL study: ablations, OGM-GE / AGM on late fusion, gradient imbalance and prediction spread (issue #4).

For each dataset (MOSI-U, ConflictBench with its default text dominance) and each variant, trains every seed with
the one trainer (checkpoint selected on VALIDATION MAE), the gradient monitor switched on (it does not change
training; tested), one thread per run. Writes ``benchmarks/results/cpsl_mosi_u.md`` with, per dataset:

* test metrics, mean ± std over seeds: CP+SL full / no_cp / no_sl / no_projection / backbone, late fusion, late
  fusion + OGM-GE, late fusion + AGM, and text alone for reference;
* gradient imbalance: mean over training steps of ``max_m r_m``, share of steps with a conflict (``max r > κ``);
* prediction spread: ``std(ŷ) / std(y)`` on the test and validation splits (1 = as spread as the labels);
* on ConflictBench, accuracy on the planted-conflict vs consistent test samples;

plus the figures ``cpsl_<dataset>_max_ratio.png`` (per-epoch max r_m: late fusion vs CP+SL with and without CP).

Usage (the command that produced the committed results is recorded in the results file)::

    python benchmarks/cpsl_study.py --seeds 5 --out runs/cpsl_study
    python benchmarks/cpsl_study.py --datasets mosi-u --variants cpsl,cpsl_no_cp --seeds 3 \\
        --set cpsl:model.params.kappa=1.2 --out runs/sweep_k12 --no-report      # a validation sweep

``--set VARIANT:key=value`` (or ``all:key=value``) adds an override to some runs; ``--resume`` keeps finished seeds;
``--report-only`` rewrites the results files from the finished runs in ``--out`` (their summaries, logs and
diagnostics), training nothing and writing nothing there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from accord.config import Config, load_config
from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.evaluation.baselines import CONSTANT_ROW, constant_value
from accord.evaluation.metrics import register_metric
from accord.evaluation.plots import plot_max_ratio
from accord.evaluation.summary import Aggregate, aggregate, markdown_table
from accord.studies.benchmark import CONFLICT_COLUMNS, conflict_split_rows
from accord.studies.runner import (
    DatasetCache,
    constant_rows,
    finished_rows,
    rows_table,
    run_configs,
    table_metrics,
    train_seconds,
)

VARIANTS: dict[str, tuple[str, list[str], str]] = {
    # name: (registered model, overrides, description)
    "cpsl": ("cpsl", ["model.params.ablation=full"], "CP+SL full"),
    "cpsl_no_cp": ("cpsl", ["model.params.ablation=no_cp"], "w/o CP (SL only)"),
    "cpsl_no_sl": ("cpsl", ["model.params.ablation=no_sl"], "w/o SL (CP only)"),
    "cpsl_no_projection": ("cpsl", ["model.params.ablation=no_projection"], "CP without projection, + SL"),
    "cpsl_backbone": ("cpsl", ["model.params.ablation=backbone"], "backbone, neither CP nor SL"),
    "cpsl_sl_x10": ("cpsl", ["model.params.ablation=full", "loss_weights.sl=1.0"],
                    "full, λ_sl = 1.0 (10x the validated weight)"),
    "late_fusion": ("late_fusion", [], "late fusion"),
    "late_fusion_ogm_ge": ("late_fusion", ["ogm_ge"], "late fusion + OGM-GE"),
    "late_fusion_agm": ("late_fusion", ["agm"], "late fusion + AGM"),
    "text": ("text", [], "text alone (reference)"),
}
BALANCE_HOOKS = {"ogm_ge", "agm"}
"""Overrides naming a balancing plugin: the run gets ``train.hooks=[<plugin>, grad_monitor]``."""

STEP_METRICS = ["max_r", "conflict_share", "r_text", "r_audio", "r_visual", "projected_share"]
SPREAD_METRICS = ["std_ratio_test", "std_ratio_valid"]
for _name, _what in [("max_r", "mean over training steps of max_m r_m"),
                     ("conflict_share", "share of training steps with max_m r_m > kappa"),
                     *((f"r_{m}", f"mean over training steps of r_{m}") for m in ("text", "audio", "visual")),
                     ("projected_share", "share of training steps where CP projected the task gradient"),
                     *((f"std_ratio_{s}", f"std of the predictions / std of the labels on {s}")
                       for s in ("test", "valid"))]:
    register_metric(_name, "max", description=_what)

DATASET_NAMES = {"mosi-u": "MOSI-U (real CMU-MOSI utterance features, T = 1)",
                 "conflictbench": "ConflictBench (default: text strength 1.5, audio 0.5, visual 0.4; 20% conflicts)"}


def variant_config(variant: str, dataset: str, seeds: list[int], out: Path, extra: Sequence[str],
                   hook_params: dict[str, dict[str, Any]], kappa: float) -> Config:
    """The validated config of one variant: method + dataset YAML, the variant's switches, monitor (conflict
    threshold ``kappa`` for every variant, so conflict shares compare), overrides."""
    method, switches, _ = VARIANTS[variant]
    hooks: list[str] = []
    overrides = []
    for s in switches:
        if s in BALANCE_HOOKS:
            params = json.dumps(hook_params.get(s, {}))
            hooks.append(f"{{name: {s}, params: {params}}}")
        else:
            overrides.append(s)
    if method != "text":
        hooks.append(f"{{name: grad_monitor, params: {{kappa: {kappa}}}}}")
    forced = [f"name={variant}", f"output.dir={out / dataset}", f"train.seeds={json.dumps(seeds)}",
              "train.num_threads=1"]
    if hooks:
        forced.append(f"train.hooks=[{', '.join(hooks)}]")
    return load_config(method=method, dataset=dataset, overrides=[*overrides, *extra, *forced])


def step_stats(run_dir: Path, seeds: list[int]) -> dict[str, Aggregate]:
    """Per seed: mean over training steps of max_m r_m, share of conflict steps, mean r of each modality."""
    per_seed = []
    for s in seeds:
        recs = rundir.read_log(rundir.seed_dir(run_dir, s) / rundir.LOG, "grad")
        if not recs:
            continue
        row = {"max_r": float(np.mean([r["r_max"] for r in recs])),
               "conflict_share": float(np.mean([r["conflict"] for r in recs]))}
        for m in ("text", "audio", "visual"):
            if f"r/{m}" in recs[0]:
                row[f"r_{m}"] = float(np.mean([r[f"r/{m}"] for r in recs]))
        if "cp/projected" in recs[0] or any("cp/projected" in r for r in recs):
            considered = [r["cp/projected"] for r in recs if "cp/projected" in r]
            row["projected_share"] = float(np.sum(considered)) / len(recs)
        per_seed.append(row)
    return aggregate(per_seed)


def spread_stats(run_dir: Path, seeds: list[int]) -> dict[str, Aggregate]:
    """``std(ŷ)/std(y)`` of the selected checkpoint on test and valid, per seed (population stds)."""
    per_seed = []
    for s in seeds:
        sd = rundir.seed_dir(run_dir, s)
        if not (sd / rundir.DIAGNOSTICS).is_file():
            continue
        z = rundir.read_diagnostics(sd)
        row = {}
        for split in ("test", "valid"):
            pred, y = z[f"{split}/prediction"], z[f"{split}/label"]
            row[f"std_ratio_{split}"] = float(np.std(pred) / max(np.std(y), 1e-12))
        per_seed.append(row)
    return aggregate(per_seed)


def run_dataset(dataset: str, variants: list[str], seeds: list[int], out: Path, sets: dict[str, list[str]],
                hook_params: dict[str, dict[str, Any]], resume: bool, report_only: bool = False) -> dict[str, Any]:
    """Train every variant on ``dataset`` (``report_only``: read the finished runs instead); return rows of
    test/valid metrics, step and spread statistics."""
    cp_cfg = load_config(method="cpsl", dataset=dataset, overrides=[*sets.get("all", []), *sets.get("cpsl", [])])
    kappa = float(cp_cfg.model.params.get("kappa", 1.2))
    cfgs = {v: variant_config(v, dataset, seeds, out, [*sets.get("all", []), *sets.get(v, [])], hook_params, kappa)
            for v in variants}
    cache = DatasetCache()
    if report_only:
        rows = finished_rows(cfgs)
    else:
        rows = run_configs(cfgs, resume=resume, overwrite=not resume, progress=False, datasets=cache,
                           log=lambda m: print(f"[{dataset}] {m}", file=sys.stderr, flush=True))
    run_dirs = {r.name: r.run_dir for r in rows}
    ds = cache.get(cfgs[variants[0]].data)
    constant = constant_rows(ds, len(seeds), "regression")
    # the train mean, scored on the conflicting / consistent subsets too (runs trained before dataset.json recorded
    # their constant prediction get it from here)
    train_mean = constant_value(ds.splits["train"].labels.numpy(), "regression")
    return {"test": rows_table(rows), "valid": rows_table(rows, "valid"), "constant": constant,
            "steps": {v: step_stats(rd, seeds) for v, rd in run_dirs.items()},
            "spread": {v: spread_stats(rd, seeds) for v, rd in run_dirs.items()}, "seconds": train_seconds(rows),
            "run_dirs": run_dirs, "metrics": table_metrics(rows), "kappa": kappa,
            "conflict": conflict_split_rows(run_dirs, seeds, "regression", train_mean)}


def dataset_section(dataset: str, res: dict[str, Any], seeds: list[int], figure: str | None) -> list[str]:
    metrics = res["metrics"]
    label = {v: f"{v} ({VARIANTS[v][2]})" for v in res["test"]}
    relabel = lambda rows: {label[k]: r for k, r in rows.items()}  # noqa: E731
    lines = [f"## {DATASET_NAMES.get(dataset, dataset)}", "",
             f"Test split, mean ± std over {len(seeds)} seeds {seeds}; checkpoint selected on validation MAE.", "",
             markdown_table({CONSTANT_ROW: res["constant"]["test"], **relabel(res["test"])}, metrics).rstrip("\n"),
             "", "Validation (the selection split) MAE and Corr:", "",
             markdown_table({CONSTANT_ROW: res["constant"]["valid"],
                             **relabel({k: {m: r[m] for m in ("MAE", "Corr") if m in r}
                                        for k, r in res["valid"].items()})}, ["MAE", "Corr"]).rstrip("\n"), ""]
    steps = {k: r for k, r in res["steps"].items() if r}
    lines += [f"Gradient imbalance at the fusion input over all training steps (gradient monitor; conflict = "
              f"max_m r_m > κ = {res['kappa']:g}; projected = share of steps where CP removed the dominant "
              f"modality's component from the task gradient). Ratios compare modalities within one model; across "
              f"models they measure different representations.", "",
              markdown_table(relabel(steps), [m for m in STEP_METRICS if any(m in r for r in steps.values())],
                             bold_best=False).rstrip("\n"), ""]
    lines += ["Prediction spread of the selected checkpoint, std(ŷ) / std(y) (1 = predictions as spread as the "
              "labels; < 1 = pulled towards the mean):", "",
              markdown_table(relabel(res["spread"]), SPREAD_METRICS,
                             bold_best=False).rstrip("\n"), ""]
    if res["conflict"]:
        shown = {CONSTANT_ROW if k == CONSTANT_ROW else label[k]: r for k, r in res["conflict"].items()}
        lines += ["Planted conflicts (ConflictBench ground truth): binary accuracy on conflicting vs consistent "
                  "test samples.", "",
                  markdown_table(shown, CONFLICT_COLUMNS).rstrip("\n"), ""]
    if figure:
        lines += [f"![max r_m over training]({figure})", "",
                  f"`{figure}`: per-epoch mean of the per-step max_m r_m (mean ± std over seeds; a seed stops "
                  "contributing after early stopping).", ""]
    lines += ["Mean training seconds per seed (one thread, shared machine): "
              + ", ".join(f"{k} {v:.0f}" for k, v in res["seconds"].items()), ""]
    return lines


def parse_sets(items: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        target, _, assignment = item.partition(":")
        if not assignment or (target != "all" and target not in VARIANTS):
            raise SystemExit(f"--set {item!r}: expected VARIANT:key=value with VARIANT in all, {', '.join(VARIANTS)}")
        out.setdefault(target, []).append(assignment)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mosi-u,conflictbench")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/cpsl_study"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="VARIANT:key=value (or all:key=value)")
    ap.add_argument("--ogm-alpha", type=float, default=None, help="OGM-GE alpha (default: the plugin's)")
    ap.add_argument("--agm-alpha", type=float, default=None, help="AGM alpha (default: the plugin's)")
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-report", action="store_true", help="train and print, write no results file")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the results files from the finished runs in --out, training nothing")
    ap.add_argument("--notes", type=Path, default=Path(__file__).with_name("cpsl_study_notes.md"),
                    help="hand-written discussion appended to the results file (if it exists)")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    sets = parse_sets(args.sets)
    hook_params: dict[str, dict[str, Any]] = {}
    if args.ogm_alpha is not None:
        hook_params["ogm_ge"] = {"alpha": args.ogm_alpha}
    if args.agm_alpha is not None:
        hook_params["agm"] = {"alpha": args.agm_alpha}
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *given])
    if args.report_only:
        command += "`; this file was then rewritten from the finished runs by the same command with `--report-only"
    results: dict[str, Any] = {}
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        results[dataset] = run_dataset(dataset, variants, seeds, args.out, sets, hook_params, args.resume,
                                       args.report_only)
        res = results[dataset]
        for v in variants:
            mae, std, _ = res["valid"][v]["MAE"]
            print(f"[{dataset}] {v}: valid MAE {mae:.4f} ± {std:.4f}, test MAE {res['test'][v]['MAE'][0]:.4f}, "
                  f"test Non0_acc_2 {res['test'][v].get('Non0_acc_2', (float('nan'),))[0]:.1f}", file=sys.stderr)
    if args.no_report:
        return
    args.results.mkdir(parents=True, exist_ok=True)
    lines = ["# CP+SL: ablations, OGM-GE / AGM, gradient imbalance and prediction spread", "",
             f"Produced by `{command}` (every run: `train.num_threads=1`, gradient monitor on).", ""]
    for dataset, res in results.items():
        figure = None
        curves = {name: res["run_dirs"][v] for v, name in
                  (("late_fusion", "late fusion"), ("cpsl", "CP+SL (with CP)"), ("cpsl_no_cp", "CP+SL w/o CP"))
                  if v in res["run_dirs"]}
        if curves:
            figure = f"cpsl_{dataset.replace('-', '_')}_max_ratio.png"
            plot_max_ratio(curves, args.results / figure, kappa=res["kappa"],
                           title=f"{dataset}: max_m r_m over training (gradient monitor)")
        lines += dataset_section(dataset, res, seeds, figure)
    if args.notes.is_file():
        lines += [args.notes.read_text().rstrip("\n"), ""]
    atomic_write_text(args.results / "cpsl_mosi_u.md", "\n".join(lines) + "\n")
    write_json(args.results / "cpsl_mosi_u.json", {
        d: {k: res[k] for k in ("test", "valid", "constant", "steps", "spread", "seconds", "conflict", "kappa")}
        for d, res in results.items()})
    print(f"wrote {args.results / 'cpsl_mosi_u.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
