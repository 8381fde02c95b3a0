"""``accord sweep``: hyper-parameter search with optuna on a shared database (SQLite or any SQLAlchemy URL).

One *study* lives in an optuna :class:`~optuna.storages.RDBStorage` (:mod:`.storage`). Every trial
(:mod:`.objective`) composes the method's config with the suggested values of the search space (:mod:`.space`) as
``--set`` overrides (so a bad key fails like any config error), trains ONE seed through the runner primitive
(:func:`accord.studies.runner.run_configs`) and returns the selected checkpoint's VALIDATION selection metric; the
trainer evaluates on ``("valid",)`` only, so test is never computed during the search. Per-epoch validation scores
feed optuna's MedianPruner.

Parallel and resumable (:mod:`.workers`):

* ``workers=K`` spawns K processes (:func:`accord.studies.processes.spawn`: they die with the sweep), their torch
  threads set by the thread policy (:func:`accord.training.threads.split`: at most the cores given), all optimising
  the same study; separate invocations (other machines) may join the same study through one PostgreSQL/MySQL URL.
* Trials finished (COMPLETE + PRUNED) across workers and restarts stop at N: a worker starts a trial only while
  ``finished + running < N`` and a trial that finds itself beyond N in the (start time, number) order at its start
  ends at once as FAIL with ``user_attrs["surplus"]`` (a rare race between workers); optuna's MaxTrialsCallback
  is passed as well.
* Re-running the same command (same storage and study name) continues to N. Trials left RUNNING by a killed
  worker are failed and re-enqueued with the same parameters: at sweep start when their recorded worker
  (hostname + pid + process start time in the trial's user_attrs) is no longer alive on this host, and by the
  storage heartbeat (``heartbeat_interval``/``grace_period`` + RetryFailedTrialCallback) on any host.

When N trials are finished the best trial's config is re-run on the final seeds with the normal evaluation
(valid + test, resumable; :mod:`.final`), the untuned default likewise, and a results file (Markdown + JSON beside
it; :mod:`.report`) is written.
"""

from accord.studies.sweep.final import final_rerun
from accord.studies.sweep.objective import Objective, SurplusTrial, _is_surplus
from accord.studies.sweep.options import (
    SweepError,
    SweepOptions,
    base_config,
    check_options,
    compose_config,
    parse_seeds,
    sweep_dir,
)
from accord.studies.sweep.report import summarise
from accord.studies.sweep.run import run_sweep
from accord.studies.sweep.space import (
    DEFAULT_SPACE,
    ParamSpec,
    SweepSpace,
    load_space,
    param_overrides,
    space_probe,
    suggest,
    yaml_literal,
)
from accord.studies.sweep.storage import (
    count_states,
    n_finished,
    open_storage,
    open_study,
    pid_alive,
    recover_dead_trials,
    study_attrs,
)
from accord.studies.sweep.workers import run_worker

__all__ = ["DEFAULT_SPACE", "Objective", "ParamSpec", "SurplusTrial", "SweepError", "SweepOptions", "SweepSpace",
           "_is_surplus", "base_config", "check_options", "compose_config", "count_states", "final_rerun",
           "load_space", "n_finished", "open_storage", "open_study", "param_overrides", "parse_seeds", "pid_alive",
           "recover_dead_trials", "run_sweep", "run_worker", "space_probe", "study_attrs",
           "suggest", "summarise", "sweep_dir", "yaml_literal"]
