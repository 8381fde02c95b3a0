"""Where a sweep lives: the optuna storage (any SQLAlchemy URL, with heartbeats), opening a study made for this
sweep only, counting its trials, and failing + re-enqueuing the RUNNING trials of dead workers."""

from __future__ import annotations

import copy
import json
import socket
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.core.process import pid_alive
from accord.studies.sweep.options import SweepError, SweepOptions
from accord.studies.sweep.space import SweepSpace

if TYPE_CHECKING:
    import optuna

HEARTBEAT_INTERVAL = 20
"""Seconds between a running trial's heartbeats in the storage."""
GRACE_PERIOD = 90
"""A RUNNING trial whose last heartbeat is older than this is failed (and retried) by any worker of the study."""
WORKER_ATTRS = ("host", "pid", "pid_start", "session", "worker")
"""Trial user_attrs that identify the process running a trial (dropped when a trial is re-enqueued)."""


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def safe_url(url: str) -> str:
    """The storage URL with any password masked."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


class RetryStale:
    """Heartbeat / dead-worker retry: optuna's RetryFailedTrialCallback (RetryHeartbeatStaleTrialCallback from
    optuna 4.9), enqueuing the same params WITHOUT the dead worker's identity attrs."""

    def __init__(self, max_retry: int | None = 3) -> None:
        from optuna import storages

        cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
        self.inner = cls(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        t = copy.copy(trial)
        t.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in WORKER_ATTRS}
        self.inner(study, t)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDBStorage with heartbeats for ``url`` (any SQLAlchemy URL); a bad URL is a one-line SweepError."""
    import optuna

    _quiet_optuna()
    if "://" not in url:
        raise SweepError(f"--storage {url!r}: expected an SQLAlchemy URL such as sqlite:///sweeps.db or "
                         f"postgresql://user@host/db")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db = url.split("///", 1)[1] if "///" in url else ""
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    kw: dict[str, Any] = {"heartbeat_interval": HEARTBEAT_INTERVAL, "grace_period": GRACE_PERIOD}
    import inspect

    cb_name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
               in inspect.signature(optuna.storages.RDBStorage.__init__).parameters else "failed_trial_callback")
    kw[cb_name] = RetryStale()
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kw)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises many kinds; the user needs one line
        msg = " ".join(str(err).split())[:200]
        raise SweepError(f"--storage {safe_url(url)}: cannot open ({type(err).__name__}: {msg})") from None


def study_attrs(opts: SweepOptions, space: SweepSpace, metric: str, mode: str) -> dict[str, Any]:
    """What a study is about; a later invocation with a different method/dataset/metric/space is refused."""
    return {"method": opts.method, "dataset": opts.dataset, "metric": metric, "direction": mode,
            "space": {k: v.model_dump(exclude_none=True) for k, v in space.params.items()},
            "overrides": list(opts.overrides), "seed": opts.seed}


def open_study(opts: SweepOptions, attrs: dict[str, Any], create: bool = True) -> optuna.Study:
    """Create or load (load_if_exists) the study; refuse one made for another method/dataset/metric/space."""
    import optuna

    storage = open_storage(opts.storage)
    direction = "minimize" if attrs["direction"] == "min" else "maximize"
    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=None)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5) if opts.pruning
              else optuna.pruners.NopPruner())
    try:
        if create:
            study = optuna.create_study(study_name=opts.study_name, storage=storage, direction=direction,
                                        sampler=sampler, pruner=pruner, load_if_exists=True)
        else:
            study = optuna.load_study(study_name=opts.study_name, storage=storage, sampler=sampler, pruner=pruner)
    except ValueError as err:
        raise SweepError(f"study {opts.study_name!r}: {err}") from None
    if study.direction.name.lower() != direction:
        raise SweepError(f"study {opts.study_name!r} in {safe_url(opts.storage)} optimises {study.direction.name} "
                         f"but {attrs['metric']} needs {direction}; use another --study name")
    have = study.user_attrs.get("sweep")
    if have is None and create:
        study.set_user_attr("sweep", attrs)
    elif have is not None:
        for key in ("method", "dataset", "metric", "space", "overrides", "seed"):
            if have.get(key) != attrs.get(key):
                raise SweepError(f"study {opts.study_name!r} in {safe_url(opts.storage)} was made with a different "
                                 f"{key} ({json.dumps(have.get(key))[:120]}); continue it with the same command or "
                                 f"use another --study name")
    return study


def finished_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials per state name, e.g. ``{"COMPLETE": 9, "PRUNED": 3, "RUNNING": 2}``."""
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def n_finished(counts: dict[str, int]) -> int:
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)



# ---------------------------------------------------------------------------------------------- worker identity
def recover_dead_trials(study: optuna.Study) -> list[dict[str, Any]]:
    """Fail every RUNNING trial whose recorded worker (this host, pid) is dead and re-enqueue its params.

    Trials of other hosts are left to the storage heartbeat. Returns one record per recovered trial:
    ``{"number", "params", "pid", "requeued_as"}``.
    """
    from optuna.trial import TrialState

    host = socket.gethostname()
    retry = RetryStale(max_retry=None)
    out = []
    for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or "pid" not in t.user_attrs:
            continue
        if pid_alive(int(t.user_attrs["pid"]), t.user_attrs.get("pid_start")):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - finished meanwhile by someone else: nothing to recover
            continue
        before = {x.number for x in study.get_trials(deepcopy=False)}
        retry(study, t)
        new = sorted({x.number for x in study.get_trials(deepcopy=False)} - before)
        out.append({"number": t.number, "params": t.params, "pid": t.user_attrs["pid"],
                    "requeued_as": new[0] if new else None})
    return out

