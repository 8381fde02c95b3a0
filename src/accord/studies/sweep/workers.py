"""A sweep's processes: a worker optimising the shared study until N trials are finished, and K of them spawned
(each dying with the sweep's main process, :mod:`accord.studies.processes`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from accord.core.errors import AccordError, CheckpointError
from accord.studies.processes import exit_reason, run_processes, spawn
from accord.studies.sweep.objective import Objective, SurplusTrial
from accord.studies.sweep.options import SweepError, SweepOptions, fmt_value, sweep_dir
from accord.studies.sweep.space import SweepSpace
from accord.studies.sweep.storage import (
    count_states,
    finished_states,
    n_finished,
    open_study,
    recover_dead_trials,
    study_attrs,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["POLL_SECONDS", "run_worker", "run_worker_processes"]

POLL_SECONDS = 3.0
"""How often an idle worker re-checks the study while other workers' trials finish."""


def _log_trial(log: Callable[[str], None], worker: int, metric: str) -> Callable[..., None]:
    def callback(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else float("nan")
        val = "" if t.value is None else f" valid {metric} {t.value:.4f}"
        log(f"[worker {worker}] trial {t.number} {t.state.name}{val} ({secs:.0f}s) "
            + " ".join(f"{k}={fmt_value(v)}" for k, v in t.params.items()))

    return callback


def run_worker(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str, worker: int,
               threads: int, log: Callable[[str], None] | None = None,
               on_trial: Callable[[Any, Any], None] | None = None) -> int:
    """Optimise the shared study until N trials are finished; returns how many trials this worker ran."""
    import optuna
    from optuna.study import MaxTrialsCallback

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    study = open_study(opts, study_attrs(opts, space, metric, mode))
    objective = Objective(opts, space, metric, threads, session, worker, log)
    callbacks: list[Any] = [MaxTrialsCallback(opts.trials, states=finished_states()),
                            _log_trial(log, worker, metric)]
    if on_trial is not None:
        callbacks.append(on_trial)
    ran = failures = 0
    while True:
        counts = count_states(study)
        finished, running = n_finished(counts), counts.get("RUNNING", 0)
        if finished >= opts.trials:
            return ran
        if finished + running >= opts.trials:  # the remaining trials are running elsewhere: wait for them
            _recover(study, worker, log)
            time.sleep(POLL_SECONDS)
            continue
        before = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
        study.optimize(objective, n_trials=1, callbacks=callbacks, gc_after_trial=True,
                       catch=(SurplusTrial, FloatingPointError, CheckpointError))
        ran += 1
        after = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if len(after) > before and not after[-1].user_attrs.get("surplus"):
            failures += 1
            if failures > max(3, opts.trials):
                raise SweepError(f"worker {worker}: {failures} trials failed (diverged or no finite validation "
                                 f"score); see the trial logs in {sweep_dir(opts) / 'logs'}")


def _recover(study: optuna.Study, worker: int, log: Callable[[str], None]) -> None:
    """While waiting for trials running elsewhere: fail and re-enqueue those of dead workers on this host at once
    (a killed sibling worker; no need to wait for the heartbeat's grace period), and the heartbeat-stale ones."""
    import optuna

    for r in recover_dead_trials(study):
        log(f"[worker {worker}] trial {r['number']} of a dead worker (pid {r['pid']}) failed and re-enqueued as "
            f"#{r['requeued_as']}")
    optuna.storages.fail_stale_trials(study)


def _spawned_worker(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str, worker: int,
                    threads: int) -> None:
    """Entry point of a worker process: one-line errors, exit status 2 on a user error."""
    try:
        run_worker(opts, space, metric, mode, session, worker, threads)
    except AccordError as err:
        print(f"error: worker {worker}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_worker_processes(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str,
                         threads: int) -> list[str]:
    """Run K worker processes to the end; returns a phrase per worker that did not end normally (``worker 1:
    killed by SIGKILL``). Whether the sweep succeeded is judged by the study (N finished trials), not by the exit
    codes: a worker killed after its last trial, or whose trial another worker re-ran, failed nothing."""
    procs = [spawn(_spawned_worker, (opts, space, metric, mode, session, i, threads), f"accord-sweep-{i}")
             for i in range(opts.workers)]
    codes = run_processes(procs, stagger=0.5)  # stagger the first storage writes
    return [f"worker {i}: {exit_reason(c)}" + (" (its error is above)" if c == 2 else "")
            for i, c in enumerate(codes) if c != 0]
