"""A sweep's final re-run: the best trial's config (and the untuned default) trained on the final seeds through the
runner primitive, evaluated on valid + test, resumable; the comparison goes into the results file."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.config import Config
from accord.core import rundir
from accord.core.errors import AccordError, CheckpointError
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.metrics import METRIC_ORDER, headline_metric, metric_mode
from accord.evaluation.sections import dataset_markdown
from accord.evaluation.summary import Aggregate, format_mean_std, markdown_table, summary_rows
from accord.studies.benchmark import confusion_lines, confusion_tables, dataset_info
from accord.studies.processes import exit_reason, run_processes, spawn
from accord.studies.runner import Row, finished_rows, run_configs, summary_constant_rows
from accord.studies.sweep.options import SweepError, SweepOptions, compose_config, sweep_dir
from accord.studies.sweep.report import summarise
from accord.studies.sweep.space import SweepSpace
from accord.studies.sweep.storage import count_states, n_finished
from accord.training import threads as thread_policy

if TYPE_CHECKING:
    import optuna


@dataclass
class FinalJob:
    """One config of the final re-run: the params on top of the untuned config, the forced keys, and its source."""

    params: dict[str, Any]
    forced: list[str]
    source: str


def final_jobs(opts: SweepOptions, best: Any, out_dir: Path) -> list[FinalJob]:
    """The best trial's params on the final seeds, and the untuned default unless ``--baseline-run`` gives one."""
    extra = [f"output.dir={out_dir}", f"train.seeds={json.dumps(opts.final_seeds)}"]
    jobs = [FinalJob(best.params, [f"name=final_trial_{best.number}", *extra], "sweep final re-run")]
    if not opts.baseline_run:
        jobs.append(FinalJob({}, ["name=default", *extra], "sweep untuned default"))
    return jobs


def train_final(opts: SweepOptions, jobs: list[FinalJob], cfgs: list[Config], parallel: int, threads: int,
                out_dir: Path) -> None:
    """Train the final configs (resumable): in this process one after the other, or one spawned process each."""
    if parallel == 1:
        run_configs([(c.run_name, c) for c in cfgs], resume=True, progress=False)
        return
    procs = []
    for job, cfg in zip(jobs, cfgs, strict=True):
        log_path = out_dir / "logs" / f"{cfg.run_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        procs.append(spawn(_spawned_final_job, (opts, job, threads, str(log_path)), f"accord-final-{cfg.run_name}"))
    codes = run_processes(procs)
    bad = [f"{cfg.run_name} ({exit_reason(code)})" for cfg, code in zip(cfgs, codes, strict=True) if code != 0]
    if bad:
        raise SweepError(f"final re-run(s) {', '.join(bad)} failed; see {out_dir / 'logs'}")


def default_summary(opts: SweepOptions, cfgs: list[Config]) -> tuple[dict[str, Any], Path]:
    """The untuned default's summary and run directory: ``--baseline-run`` (checked), else the one trained here."""
    if not opts.baseline_run:
        return rundir.read_summary(cfgs[1].run_dir), cfgs[1].run_dir
    path = Path(opts.baseline_run) / rundir.SUMMARY
    if not path.is_file():
        raise CheckpointError(f"--baseline-run {opts.baseline_run}: no summary.json (not a finished run)")
    default = rundir.read_summary(opts.baseline_run)
    if "test" not in default:
        raise CheckpointError(f"{path}: has no test metrics")
    return default, Path(opts.baseline_run)


def final_verdict(tuned: Row, default: dict[str, Any], head: str, metric: str, best: Any, n_trials: int) -> str:
    """The sentence comparing the tuned and the untuned config on test (and, with its caveats, on validation)."""
    (t_mean, t_std, _), (d_mean, d_std, _) = tuned.test[head], summary_rows(default, "test")[head]
    diff = t_mean - d_mean
    better = diff > 0 if metric_mode(head) == "max" else diff < 0
    noise = max(t_std, d_std)
    tv, dv = tuned.valid[metric], summary_rows(default, "valid")[metric]
    return (f"On test, the tuned config reaches {head} {format_mean_std(t_mean, t_std, head)} vs "
            f"{format_mean_std(d_mean, d_std, head)} for the untuned default on the same seeds "
            f"({diff:+.2f}); "
            + ("a difference smaller than the seed std, i.e. no clear change" if abs(diff) < noise else
               ("better by more than the seed std" if better else "WORSE by more than the seed std"))
            + f". Validation {metric} over the same seeds: tuned {format_mean_std(tv[0], tv[1], metric)}"
            f" vs default {format_mean_std(dv[0], dv[1], metric)}; the best trial's single-seed "
            f"validation {metric} was {best.value:.4f}, the best of {n_trials} trials and so "
            f"optimistic (winner's curse), and the validation comparison itself favours the tuned config, "
            f"which was selected on validation.")


def final_table(tuned: Row, default: dict[str, Any], best: Any) -> str:
    """Valid and test of the tuned and the untuned config, mean ± std over the final seeds, and the trivial-baseline
    row (train-mean / majority-class predictor) on valid and test."""
    order = [m for m in METRIC_ORDER[tuned.family] if m in tuned.test]
    constant = summary_constant_rows(tuned)
    rows: dict[str, dict[str, Aggregate]] = {
        **{f"{CONSTANT_ROW} {split}": constant[split] for split in ("valid", "test") if split in constant},
        f"tuned (trial #{best.number}) valid": tuned.valid,
        f"tuned (trial #{best.number}) test": tuned.test,
        "untuned default valid": summary_rows(default, "valid"),
        "untuned default test": summary_rows(default, "test"),
    }
    return markdown_table(rows, order, first_col="config", bold_best=False)


def final_rerun(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str,
                mode: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Re-run the best trial's config (and the untuned default) on the final seeds with valid + test evaluation;
    resumable. Writes the results file with the final numbers and returns :func:`summarise`'s result."""
    best = study.best_trial
    out_dir = sweep_dir(opts)
    jobs = final_jobs(opts, best, out_dir)
    # the tuned and the default runs go in parallel, the cores split between them (two 1-thread trainings are
    # much faster than one 2-thread training after another on a busy 2-core machine); this depends on the machine
    # only, not on --workers, so that a re-run with other --workers resumes the same final runs
    parallel = max(1, min(len(jobs), thread_policy.cores()))
    threads = thread_policy.split(parallel, "the final re-run")
    cfgs = [compose_config(opts, j.params, j.forced, j.source, threads=threads) for j in jobs]
    log(f"final re-run of trial #{best.number} on seeds {opts.final_seeds} -> {cfgs[0].run_dir}"
        + (f"; untuned default -> {cfgs[1].run_dir}" if len(cfgs) > 1 else "")
        + (f" ({parallel} processes, {threads} thread(s) each)" if parallel > 1 else ""))
    t0 = time.time()
    train_final(opts, jobs, cfgs, parallel, threads, out_dir)
    tuned_seconds = time.time() - t0
    tuned, = finished_rows([(cfgs[0].run_name, cfgs[0])])
    default, default_dir = default_summary(opts, cfgs)
    head = headline_metric(tuned.cfg.task.kind, tuned.family)
    verdict = final_verdict(tuned, default, head, metric, best, n_finished(count_states(study)))
    md = [f"## Final re-run of the best config on seeds {opts.final_seeds} (valid + test)", "",
          f"Best trial #{best.number}'s config re-trained on {len(opts.final_seeds)} seeds with the normal "
          f"evaluation ({tuned.run_dir}; {parallel} process(es) of {threads} thread(s), {tuned_seconds:.0f} s "
          f"wall-clock in the invocation that wrote this file, finished seeds kept from earlier ones), next to the "
          f"untuned default "
          f"({default_dir}). Mean ± std over seeds; accuracies and F1 in %.", "",
          final_table(tuned, default, best).rstrip("\n"), "", verdict, ""]
    confusion = confusion_tables({f"the tuned config (trial #{best.number})": tuned.run_dir})
    info = dataset_info(tuned.run_dir)
    md += [*confusion_lines(confusion), dataset_markdown(info, "### Dataset")]
    js = {"seeds": opts.final_seeds, "best_trial": best.number, "params": best.params,
          "run_dir": str(tuned.run_dir), "valid": tuned.summary["valid"], "test": tuned.summary["test"],
          "default": {"run_dir": str(default_dir), "valid": default.get("valid"), "test": default["test"]},
          "headline_metric": head, "verdict": verdict, "seconds": round(tuned_seconds, 1),
          "constant_predictor": tuned.summary.get("constant_predictor"), "confusion": confusion,
          "dataset_info": info}
    parts = {"markdown": md, "json": js}
    return {**summarise(study, opts, space, space_source, metric, mode, final=parts), "final_parts": parts}


def _spawned_final_job(opts: SweepOptions, job: FinalJob, threads: int, log_path: str) -> None:
    """Entry point of a final re-run process: train one config on the final seeds (resumable), log to a file."""
    try:
        cfg = compose_config(opts, job.params, job.forced, job.source, threads=threads)
        with open(log_path, "a") as fh, contextlib.redirect_stderr(fh):
            run_configs([(cfg.run_name, cfg)], resume=True, progress=False)
    except (AccordError, FloatingPointError) as err:
        print(f"error: {job.source}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
