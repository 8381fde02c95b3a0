"""A sweep's trial: train the suggested config on ONE seed through the runner primitive, evaluated on validation
only, and report the selected checkpoint's validation selection metric (per epoch to optuna's pruner)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from accord.config import Config
from accord.core.errors import CheckpointError
from accord.core.process import proc_start_time
from accord.evaluation.metrics import metric_mode
from accord.studies.runner import DatasetCache, run_configs
from accord.studies.sweep.options import SweepOptions, compose_config, sweep_dir
from accord.studies.sweep.space import SweepSpace, suggest

if TYPE_CHECKING:
    import optuna


class SurplusTrial(Exception):
    """A trial started by a worker race after N trials were already finished or running (it ends as FAIL)."""


def _is_surplus(study: optuna.Study, trial: optuna.Trial, n: int) -> bool:
    """Whether ``n`` trials are already finished or running AHEAD of ``trial`` (ordered by start time, number)."""
    from optuna.trial import TrialState

    me = (trial.datetime_start or datetime.max, trial.number)
    ahead = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        running = t.state == TrialState.RUNNING
        if not running or (t.number != trial.number and (t.datetime_start or datetime.max, t.number) < me):
            ahead += 1
    return ahead >= n



class Objective:
    """Train the trial's config on one seed; return the selected checkpoint's validation selection metric."""

    def __init__(self, opts: SweepOptions, space: SweepSpace, metric: str, threads: int, session: str,
                 worker: int, log: Callable[[str], None]) -> None:
        self.opts, self.space, self.metric, self.threads = opts, space, metric, threads
        self.session, self.worker, self.log = session, worker, log
        self.out_dir = sweep_dir(opts)
        self.datasets = DatasetCache()  # the trials of one worker share each built dataset
        self.mode = metric_mode(metric)

    def config(self, trial_number: int, params: dict[str, Any]) -> Config:
        forced = [f"name=trial_{trial_number}", f"output.dir={self.out_dir}", f"train.seeds=[{self.opts.seed}]"]
        return compose_config(self.opts, params, forced, f"sweep trial {trial_number}", threads=self.threads)

    def claim(self, trial: optuna.Trial) -> None:
        """Record which process runs ``trial``; a trial beyond N (a worker race) ends as a SurplusTrial."""
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("pid_start", proc_start_time(os.getpid()))
        trial.set_user_attr("session", self.session)
        trial.set_user_attr("worker", self.worker)
        if _is_surplus(trial.study, trial, self.opts.trials):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: {self.opts.trials} trials already finished or running")

    def pruning_callback(self, trial: optuna.Trial) -> Callable[[int, int, dict[str, Any]], None]:
        """The per-epoch callback: report the best-so-far validation score (what the selected checkpoint would give
        now) and stop a trial the pruner gives up on."""
        import optuna

        best: list[float] = []

        def on_epoch(seed: int, epoch: int, record: dict[str, Any]) -> None:
            value = record.get(f"valid/{self.metric}")
            if value is None or not math.isfinite(float(value)):
                return
            v = float(value)
            best.append(v if not best else (min(best[-1], v) if self.mode == "min" else max(best[-1], v)))
            trial.report(best[-1], epoch)
            if self.opts.pruning and trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                raise optuna.TrialPruned(f"epoch {epoch + 1}: valid {self.metric} {best[-1]:.4f}")

        return on_epoch

    def __call__(self, trial: optuna.Trial) -> float:
        self.claim(trial)
        params = suggest(trial, self.space)
        cfg = self.config(trial.number, params)
        trial.set_user_attr("run_dir", str(cfg.run_dir))
        t0 = time.perf_counter()
        log_path = self.out_dir / "logs" / f"trial_{trial.number}.log"  # not in the run dir: fit() may clear it
        log_path.parent.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("log", str(log_path))
        with log_path.open("a") as fh, contextlib.redirect_stderr(fh):
            row, = run_configs([(cfg.run_name, cfg)], overwrite=True, progress=False, eval_splits=("valid",),
                               datasets=self.datasets, on_epoch=self.pruning_callback(trial))
        valid = {k: agg[0] for k, agg in row.valid.items()}
        trial.set_user_attr("valid", valid)
        trial.set_user_attr("train_seconds", round(time.perf_counter() - t0, 2))
        value = valid.get(self.metric, float("nan"))
        if not math.isfinite(value):
            raise CheckpointError(f"trial {trial.number}: no finite validation {self.metric}")
        return float(value)
