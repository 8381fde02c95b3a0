"""``run_sweep``: check, open (or continue) the study, run the workers to N finished trials, then the final re-run
and the results file; each invocation is recorded in the study as a session."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from accord.config import Config
from accord.studies.processes import Interrupted, stop_on_signals
from accord.studies.sweep import workers
from accord.studies.sweep.final import final_rerun
from accord.studies.sweep.options import (
    SweepError,
    SweepInterrupted,
    SweepOptions,
    base_config,
    check_options,
    compose_config,
)
from accord.studies.sweep.report import summarise
from accord.studies.sweep.space import load_space, space_probe
from accord.studies.sweep.storage import (
    count_states,
    n_finished,
    open_study,
    recover_dead_trials,
    safe_url,
    study_attrs,
)
from accord.training import threads as thread_policy

if TYPE_CHECKING:
    import optuna

    from accord.studies.sweep.space import SweepSpace


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def selection(base: Config) -> tuple[str, str]:
    """The validation metric the trials optimise and its direction: what the trainer selects checkpoints on for the
    untuned config ``base`` (building it also checks the config and the dataset before any storage is touched)."""
    from accord.training.trainer import Trainer

    probe = Trainer(base, eval_splits=("valid",), progress=False)
    return probe.metric, probe.mode


def start_session(study: optuna.Study, opts: SweepOptions, log: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """Record this invocation in the study (after failing and re-enqueuing the trials of dead workers)."""
    host, pid = socket.gethostname(), os.getpid()
    session = f"session:{_now()}:{host}:{pid}:{uuid.uuid4().hex[:6]}"
    at_start = count_states(study)
    recovered = recover_dead_trials(study)
    record: dict[str, Any] = {"started": _now(), "t0": time.time(), "host": host, "pid": pid,
                              "workers": opts.workers, "target": opts.trials, "at_start": at_start,
                              "recovered": recovered, "command": opts.command}
    study.set_user_attr(session, record)
    if recovered:
        log(f"recovered {len(recovered)} trial(s) left RUNNING by dead workers: "
            + ", ".join(f"#{r['number']} -> #{r['requeued_as']}" for r in recovered))
    return session, record


def run_sweep(opts: SweepOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the sweep to N finished trials, then the final re-run and the results file.

    Success is judged by the study, not by the workers' exit codes: the sweep succeeds when N trials are finished
    (a worker that ended abnormally is reported in a note) and fails with a SweepError when fewer are. SIGTERM or
    Ctrl-C stops the worker processes (they also die with this process if it is killed) and raises
    :class:`SweepInterrupted`. The K workers get ``cores // K`` torch threads each (:mod:`accord.training.threads`).

    Returns ``{"markdown", "json", "path", "best", "counts"}``.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    check_options(opts)
    space, space_source = load_space(opts.method, opts.space)
    base = base_config(opts)
    compose_config(opts, space_probe(space), [], f"search space {space_source}")  # every key is a config key
    metric, mode = selection(base)
    study = open_study(opts, study_attrs(opts, space, metric, mode))
    session, record = start_session(study, opts, log)
    log(f"study {opts.study_name!r} in {safe_url(opts.storage)}: {n_finished(record['at_start'])}/{opts.trials} "
        f"finished, {opts.workers} worker(s), objective = validation {metric} ({mode}) on seed {opts.seed}")
    try:
        with stop_on_signals():
            abnormal = run_workers(opts, space, metric, mode, session, study, log)
            counts = count_states(study)
            record.update({"ended": _now(), "seconds": round(time.time() - record["t0"], 1), "at_end": counts,
                           "abnormal_exits": abnormal})
            study.set_user_attr(session, record)
            if n_finished(counts) < opts.trials:
                raise SweepError(f"study {opts.study_name!r}: only {n_finished(counts)} of {opts.trials} trials "
                                 f"finished ({counts}); " + "; ".join(abnormal or ["see the errors above"])
                                 + "; run the same command again to continue")
            for line in abnormal:  # every trial finished anyway (another worker re-ran what a dead one left)
                log(f"note: {line}; all {opts.trials} trials finished regardless")
            return finish(study, opts, space, space_source, metric, mode, session, record, log)
    except Interrupted as stop:
        raise SweepInterrupted(f"sweep stopped by {stop.name}: its worker processes were stopped; the study keeps "
                               f"its finished trials: run the same command again to continue", stop.signum) from None


def run_workers(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str,
                study: optuna.Study, log: Callable[[str], None]) -> list[str]:
    """Run the workers until N trials are finished (in this process for one worker); returns the phrases of the
    workers that ended abnormally."""
    threads = thread_policy.split(opts.workers, "--workers")
    if n_finished(count_states(study)) >= opts.trials:
        return []
    if opts.workers == 1:
        workers.run_worker(opts, space, metric, mode, session, 0, threads, log)
        return []
    return workers.run_worker_processes(opts, space, metric, mode, session, threads)


def finish(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str, mode: str,
           session: str, record: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The results file, after the final re-run of the best config (``opts.final``)."""
    result = summarise(study, opts, space, space_source, metric, mode)
    if opts.final:
        record["final_started"] = _now()
        study.set_user_attr(session, record)
        t_final = time.time()
        result = final_rerun(study, opts, space, space_source, metric, mode, log)
        record.update({"final_ended": _now(), "final_seconds": round(time.time() - t_final, 1)})
        study.set_user_attr(session, record)
        result = summarise(study, opts, space, space_source, metric, mode, final=result["final_parts"])
    return result
