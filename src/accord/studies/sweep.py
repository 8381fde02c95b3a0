"""``accord sweep``: hyper-parameter search with optuna on a shared database (SQLite or any SQLAlchemy URL).

One *study* lives in an optuna :class:`~optuna.storages.RDBStorage`. Every trial composes the method's config
with the suggested values as ``--set`` overrides (so a bad key fails like any config error), trains ONE seed and
returns the selected checkpoint's VALIDATION selection metric; the trainer is built with ``eval_splits=("valid",)``
so test is never computed during the search. Per-epoch validation scores feed optuna's MedianPruner.

Parallel and resumable:

* ``workers=K`` spawns K processes (``multiprocessing`` spawn), each with ``train.num_threads = max(1, cores // K)``,
  all optimising the same study; separate invocations (other machines) may join the same study through one
  PostgreSQL/MySQL URL.
* Trials finished (COMPLETE + PRUNED) across workers and restarts stop at N: a worker starts a trial only while
  ``finished + running < N`` and a trial that finds itself beyond N in the (start time, number) order at its start
  ends at once as FAIL with ``user_attrs["surplus"]`` (a rare race between workers); optuna's MaxTrialsCallback
  is passed as well.
* Re-running the same command (same storage and study name) continues to N. Trials left RUNNING by a killed
  worker are failed and re-enqueued with the same parameters: at sweep start when their recorded worker
  (hostname + pid + process start time in the trial's user_attrs) is no longer alive on this host, and by the
  storage heartbeat (``heartbeat_interval``/``grace_period`` + RetryFailedTrialCallback) on any host.

When N trials are finished the best trial's config is re-run on the final seeds with the normal evaluation
(valid + test, resumable), the untuned default likewise, and a results file (Markdown + JSON beside it) is written.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from accord.config import Config, compose, packaged_configs, parse_yaml, read_yaml, validate
from accord.core.errors import AccordError, CheckpointError, ConfigError

if TYPE_CHECKING:
    import optuna

SPACE_FOLDER = "sweeps"
"""Per-method search spaces ship in the package: ``accord/configs/sweeps/<method>.yaml``."""

HEARTBEAT_INTERVAL = 20
"""Seconds between a running trial's heartbeats in the storage."""
GRACE_PERIOD = 90
"""A RUNNING trial whose last heartbeat is older than this is failed (and retried) by any worker of the study."""
POLL_SECONDS = 3.0
"""How often an idle worker re-checks the study while other workers' trials finish."""
WORKER_ATTRS = ("host", "pid", "pid_start", "session", "worker")
"""Trial user_attrs that identify the process running a trial (dropped when a trial is re-enqueued)."""


class SweepError(AccordError):
    """A sweep cannot run: bad storage URL, bad options, a study made for something else, failed workers."""


# ---------------------------------------------------------------------------------------------- search space
class ParamSpec(BaseModel):
    """One dimension of the search space, keyed by a dotted config key (``train.lr``, ``model.params.dropout``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("categorical takes only 'choices' (no low/high/log/step)")
            for c in self.choices:
                if not (c is None or isinstance(c, bool | int | float | str)):
                    raise ValueError(f"choice {c!r} is not a number, string, boolean or null")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high (not 'choices')")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"needs low < high (got low {self.low}, high {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log scale and step cannot be combined")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"int needs integer bounds (got {self.low}, {self.high})")
        return self

    def describe(self) -> str:
        """Short human-readable form, e.g. ``float [0.0001, 0.01] log`` or ``categorical {16, 32, 64}``."""
        if self.type == "categorical":
            return "categorical {" + ", ".join(str(c) for c in self.choices or []) + "}"
        low, high = (int(self.low), int(self.high)) if self.type == "int" else (self.low, self.high)  # type: ignore
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.type} [{low:g}, {high:g}]{extra}"


class SweepSpace(BaseModel):
    """The contents of a space file: ``params: {dotted.key: {type, low, high, log, step, choices}}``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamSpec]
    description: str | None = None

    @model_validator(mode="after")
    def _nonempty(self) -> SweepSpace:
        if not self.params:
            raise ValueError("no parameters to search")
        for key in self.params:
            parts = key.split(".")
            if not all(parts) or key.strip() != key:
                raise ValueError(f"{key!r} is not a dotted config key such as train.lr")
        return self


DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
}
"""Used for a method without ``configs/sweeps/<method>.yaml``: learning rate, weight decay and batch size."""


def load_space(method: str, path: str | Path | None = None) -> tuple[SweepSpace, str]:
    """The search space of ``method``: ``path``, else ``configs/sweeps/<method>.yaml``, else :data:`DEFAULT_SPACE`.

    Returns the validated space and where it came from. An unknown or bad key is a one-line ConfigError naming
    the file and the key.
    """
    if path is None:
        node = packaged_configs() / SPACE_FOLDER / f"{method}.yaml"
        if not node.is_file():
            return SweepSpace(params={k: ParamSpec(**v) for k, v in DEFAULT_SPACE.items()}), "built-in default"
        source = f"accord/configs/{SPACE_FOLDER}/{method}.yaml"
        raw = parse_yaml(node.read_text(encoding="utf-8"), source)
    else:
        source = str(path)
        with contextlib.suppress(ValueError):
            source = str(Path(path).resolve().relative_to(Path.cwd()))
        raw = read_yaml(path)
    try:
        return SweepSpace(**raw), source
    except ValidationError as err:
        errors = err.errors()
        e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            raise ConfigError(f"{source}: missing key {key!r}") from None
        if e["type"] == "extra_forbidden":
            hint = (" (a parameter takes type, low, high, log, step, choices)" if len(e["loc"]) == 3
                    else " (a space file has params and description)")
            raise ConfigError(f"{source}: unknown key {key!r}{hint}") from None
        msg = str(e["msg"]).removeprefix("Value error, ")
        got = e.get("input")
        got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
        raise ConfigError(f"{source}: {key or 'params'}: {msg}{got_text}") from None


def yaml_literal(value: Any) -> str:
    """``value`` as the YAML text of a ``--set key=value`` override that reads back as the same value.

    (``str(1e-05)`` would read back as a string under YAML 1.1; ``yaml.safe_dump`` writes ``1.0e-05``.)
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def param_overrides(params: dict[str, Any]) -> list[str]:
    """``--set`` overrides for a dict of dotted keys -> values."""
    return [f"{k}={yaml_literal(v)}" for k, v in params.items()]


def suggest(trial: optuna.Trial, space: SweepSpace) -> dict[str, Any]:
    """Ask ``trial`` for a value of every dimension of ``space``."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, p.choices)  # type: ignore[arg-type]
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1),  # type: ignore
                                         log=p.log)
        else:
            out[key] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)  # type: ignore
    return out


def space_probe(space: SweepSpace) -> dict[str, Any]:
    """One point of ``space`` (low ends and first choices), used to check every key against the config schema."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = p.choices[0]  # type: ignore[index]
        elif p.type == "int":
            out[key] = int(p.low)  # type: ignore[arg-type]
        else:
            out[key] = float(p.low)  # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------------------------------------- options
@dataclass
class SweepOptions:
    """Everything a sweep (and each of its worker processes) needs; picklable for multiprocessing spawn."""

    method: str
    dataset: str
    trials: int
    storage: str
    study: str | None = None
    workers: int = 1
    space: str | None = None
    final_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    overrides: list[str] = field(default_factory=list)
    out: str | None = None
    seed: int = 0
    """The one training seed of every trial."""
    final: bool = True
    """Re-run the best (and the untuned default) config on ``final_seeds`` when N trials are finished."""
    baseline_run: str | None = None
    """A finished run directory of the untuned default to compare with (otherwise it is trained here)."""
    pruning: bool = True
    command: str | None = None

    @property
    def study_name(self) -> str:
        return self.study or f"{self.method}_{self.dataset}".replace("/", "_")


def check_options(opts: SweepOptions) -> None:
    """Reject impossible options with one line each."""
    import accord.data
    import accord.models

    if opts.trials < 1:
        raise SweepError(f"--trials: needs at least 1 trial (got {opts.trials})")
    if opts.workers < 1:
        raise SweepError(f"--workers: needs at least 1 worker (got {opts.workers})")
    if opts.method not in accord.models.list_models():
        raise SweepError(f"--method: unknown method {opts.method!r}; registered: "
                         f"{', '.join(accord.models.list_models())}")
    if opts.dataset not in accord.data.DATASETS:
        raise SweepError(f"--dataset: unknown dataset {opts.dataset!r}; registered: "
                         f"{', '.join(accord.data.DATASETS.names())}")
    if opts.workers > 1 and (opts.storage.rstrip("/") == "sqlite:" or ":memory:" in opts.storage):
        raise SweepError("--storage: an in-memory SQLite database cannot be shared by several workers; use a file "
                         "such as sqlite:///sweeps.db")
    if opts.final and not opts.final_seeds:
        raise SweepError("--final-seeds: needs at least one seed (or pass --no-final)")
    if len(set(opts.final_seeds)) != len(opts.final_seeds):
        raise SweepError(f"--final-seeds: seeds repeat: {opts.final_seeds}")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> list of ints (one-line error otherwise)."""
    text = text.strip()
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-", 1)
            return list(range(int(a), int(b) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SweepError(f"--final-seeds: expected comma-separated integers such as 0,1,2,3,4 (got {text!r})") from None


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def compose_config(opts: SweepOptions, params: dict[str, Any], forced: list[str], source: str,
                   threads: int | None = None) -> Config:
    """Method + dataset YAML, ``train.num_threads=threads`` (the user's ``--set`` may change it), the user's
    ``--set``, the suggested params, then ``forced`` (name, output dir, seeds: always as the sweep says)."""
    import accord.data  # noqa: F401  (register datasets)
    import accord.models  # noqa: F401  (register models)

    pre = [f"train.num_threads={threads}"] if threads else []
    tree = compose(opts.method, opts.dataset, None, [*pre, *opts.overrides, *param_overrides(params), *forced])
    return validate(tree, source)


def base_config(opts: SweepOptions) -> Config:
    """The untuned config (method + dataset YAML + the user's ``--set``)."""
    return compose_config(opts, {}, [], f"configs for {opts.method}/{opts.dataset}")


def sweep_dir(opts: SweepOptions, base: Config | None = None) -> Path:
    """``<output.dir>/sweeps/<study>``."""
    base = base or base_config(opts)
    return Path(base.output.dir) / "sweeps" / opts.study_name


# ---------------------------------------------------------------------------------------------- storage
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
def proc_start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot, /proc/<pid>/stat field 22), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, when known) is still running on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file():
        try:
            state = stat.read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            state = ""
        if state in ("Z", "X"):
            return False
        if start is not None and proc_start_time(pid) != start:
            return False  # the pid was reused by another process
    return True


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


# ---------------------------------------------------------------------------------------------- trials
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
        self._datasets: dict[str, Any] = {}

    def config(self, trial_number: int, params: dict[str, Any]) -> Config:
        forced = [f"name=trial_{trial_number}", f"output.dir={self.out_dir}", f"train.seeds=[{self.opts.seed}]"]
        return compose_config(self.opts, params, forced, f"sweep trial {trial_number}", threads=self.threads)

    def dataset(self, cfg: Config) -> Any:
        from accord.data.registry import build_dataset

        key = json.dumps(cfg.data.model_dump(mode="json", exclude={"corruption"}), sort_keys=True)
        if key not in self._datasets:
            self._datasets[key] = build_dataset(cfg.data.name, cfg.data.path, cfg.data.params)
        return self._datasets[key]

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from accord.training.trainer import Trainer

        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("pid_start", proc_start_time(os.getpid()))
        trial.set_user_attr("session", self.session)
        trial.set_user_attr("worker", self.worker)
        if _is_surplus(trial.study, trial, self.opts.trials):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: {self.opts.trials} trials already finished or running")
        params = suggest(trial, self.space)
        cfg = self.config(trial.number, params)
        trial.set_user_attr("run_dir", str(cfg.run_dir))
        trainer = Trainer(cfg, dataset=self.dataset(cfg), eval_splits=("valid",), progress=False)
        best: list[float] = []

        def on_epoch(seed: int, epoch: int, record: dict[str, Any]) -> None:
            value = record.get(f"valid/{self.metric}")
            if value is None or not math.isfinite(float(value)):
                return
            v = float(value)
            # report the best-so-far validation score: that is what the selected checkpoint would give now
            best.append(v if not best else (min(best[-1], v) if trainer.mode == "min" else max(best[-1], v)))
            trial.report(best[-1], epoch)
            if self.opts.pruning and trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                raise optuna.TrialPruned(f"epoch {epoch + 1}: valid {self.metric} {best[-1]:.4f}")

        t0 = time.perf_counter()
        log_path = self.out_dir / "logs" / f"trial_{trial.number}.log"  # not in the run dir: fit() may clear it
        log_path.parent.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("log", str(log_path))
        with log_path.open("a") as fh, contextlib.redirect_stderr(fh):
            summary = trainer.fit(overwrite=True, on_epoch=on_epoch)
        valid = {k: v["mean"] for k, v in summary["valid"].items()}
        trial.set_user_attr("valid", valid)
        trial.set_user_attr("train_seconds", round(time.perf_counter() - t0, 2))
        value = valid.get(self.metric, float("nan"))
        if not math.isfinite(value):
            raise CheckpointError(f"trial {trial.number}: no finite validation {self.metric}")
        return float(value)


def _log_trial(log: Callable[[str], None], worker: int, metric: str) -> Callable[..., None]:
    def callback(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else float("nan")
        val = "" if t.value is None else f" valid {metric} {t.value:.4f}"
        log(f"[worker {worker}] trial {t.number} {t.state.name}{val} ({secs:.0f}s) "
            + " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()))

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
            optuna.storages.fail_stale_trials(study)
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


def _spawned_worker(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str, worker: int,
                    threads: int) -> None:
    """Entry point of a worker process: one-line errors, exit status 2 on a user error."""
    try:
        run_worker(opts, space, metric, mode, session, worker, threads)
    except AccordError as err:
        print(f"error: worker {worker}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------- the sweep
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_sweep(opts: SweepOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the sweep to N finished trials, then the final re-run and the results file.

    Returns ``{"markdown", "json", "path", "best", "counts"}``; a SweepError when the workers stop before N trials
    are finished (e.g. too many failed trials).
    """
    from accord.training.trainer import Trainer

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    check_options(opts)
    space, space_source = load_space(opts.method, opts.space)
    base = base_config(opts)
    compose_config(opts, space_probe(space), [], f"search space {space_source}")  # every key is a config key
    probe = Trainer(base, eval_splits=("valid",), progress=False)
    metric, mode = probe.metric, probe.mode
    del probe
    attrs = study_attrs(opts, space, metric, mode)
    study = open_study(opts, attrs)
    host, pid = socket.gethostname(), os.getpid()
    session = f"session:{_now()}:{host}:{pid}:{uuid.uuid4().hex[:6]}"
    t_start = time.time()
    at_start = count_states(study)
    recovered = recover_dead_trials(study)
    record: dict[str, Any] = {"started": _now(), "t0": t_start, "host": host, "pid": pid, "workers": opts.workers,
                              "target": opts.trials, "at_start": at_start, "recovered": recovered,
                              "command": opts.command}
    study.set_user_attr(session, record)
    if recovered:
        log(f"recovered {len(recovered)} trial(s) left RUNNING by dead workers: "
            + ", ".join(f"#{r['number']} -> #{r['requeued_as']}" for r in recovered))
    log(f"study {opts.study_name!r} in {safe_url(opts.storage)}: {n_finished(at_start)}/{opts.trials} finished, "
        f"{opts.workers} worker(s), objective = validation {metric} ({mode}) on seed {opts.seed}")
    threads = max(1, cores() // opts.workers)
    if n_finished(count_states(study)) < opts.trials:
        if opts.workers == 1:
            run_worker(opts, space, metric, mode, session, 0, threads, log)
        else:
            _run_processes(opts, space, metric, mode, session, threads)
    counts = count_states(study)
    record.update({"ended": _now(), "seconds": round(time.time() - t_start, 1), "at_end": counts})
    study.set_user_attr(session, record)
    if n_finished(counts) < opts.trials:
        raise SweepError(f"study {opts.study_name!r}: only {n_finished(counts)} of {opts.trials} trials finished "
                         f"({counts}); run the same command again to continue")
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


def run_processes(procs: list[multiprocessing.process.BaseProcess], stagger: float = 0.0) -> list[int | None]:
    """Start ``procs`` (``stagger`` seconds apart), wait for all, and return their exit codes; on an interruption
    (Ctrl-C) the ones still alive are terminated before the exception propagates."""
    for p in procs:
        p.start()
        time.sleep(stagger)
    try:
        for p in procs:
            p.join()
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    return [p.exitcode for p in procs]


def _run_processes(opts: SweepOptions, space: SweepSpace, metric: str, mode: str, session: str,
                   threads: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawned_worker, args=(opts, space, metric, mode, session, i, threads),
                         name=f"accord-sweep-{i}") for i in range(opts.workers)]
    codes = run_processes(procs, stagger=0.5)  # stagger the first storage writes
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        raise SweepError("worker(s) " + ", ".join(f"{i} (exit {c})" for i, c in bad) + " failed; see above")


# ---------------------------------------------------------------------------------------------- results
def trial_seconds(t: Any) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
    return None


def top_trials(study: optuna.Study, mode: str, k: int = 10) -> list[Any]:
    """The ``k`` best finished trials (COMPLETE by value; PRUNED by their best validation value when pruned)."""
    done = [t for t in study.get_trials(deepcopy=False, states=finished_states()) if t.value is not None
            and math.isfinite(t.value)]
    done.sort(key=lambda t: (t.value if mode == "min" else -t.value, t.number))
    return done[:k]


def sessions(study: optuna.Study) -> list[dict[str, Any]]:
    """Session records (one per invocation of the sweep), oldest first, with the activity of interrupted ones."""
    out = [dict(v, key=k) for k, v in study.user_attrs.items() if k.startswith("session:")]
    out.sort(key=lambda s: (s["started"], s.get("t0", 0.0)))
    trials = study.get_trials(deepcopy=False)
    for s in out:
        mine = [t for t in trials if t.user_attrs.get("session") == s["key"]]
        s["trials_run"] = sorted(t.number for t in mine)
        s["trials_by_state"] = dict(Counter(t.state.name for t in mine))
        ends = [t.datetime_complete for t in mine if t.datetime_complete and t.state.name in ("COMPLETE", "PRUNED")]
        s["last_trial_end"] = max(ends).isoformat(timespec="seconds") if ends else None
        s["left_running"] = sorted(r["number"] for later in out for r in later.get("recovered", [])
                                   if r["number"] in s["trials_run"])
    return out


def _session_story(ss: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, s in enumerate(ss, 1):
        st = s.get("at_start", {})
        head = (f"{i}. `{s['started']}` on {s['host']} (pid {s['pid']}), {s['workers']} worker(s): at start "
                f"{n_finished(st)} finished ({_states(st)})")
        if s.get("recovered"):
            head += "; RUNNING trials of dead workers failed and re-enqueued with the same params: " + ", ".join(
                f"#{r['number']} (pid {r['pid']}) -> #{r['requeued_as']}" for r in s["recovered"])
        if s.get("ended"):
            head += (f"; its trials ended `{s['ended']}` after {s['seconds']:.0f} s wall-clock with "
                     f"{n_finished(s['at_end'])} finished ({_states(s['at_end'])})")
        else:
            done = {k: v for k, v in s["trials_by_state"].items() if k in ("COMPLETE", "PRUNED")}
            head += (f"; INTERRUPTED (no end record): its workers finished {sum(done.values())} trial(s) "
                     f"({_states(done)}), the last at `{s['last_trial_end']}`, and left "
                     f"{len(s['left_running'])} RUNNING when killed ("
                     + (", ".join(f"#{n}" for n in s["left_running"]) or "none recovered yet") + ")")
            if i < len(ss):
                upto = (datetime.fromisoformat(ss[i]["started"]) - datetime.fromisoformat(s["started"]))
                head += f"; it ran at most {upto.total_seconds():.0f} s (until the next invocation started)"
        if s.get("final_started"):
            head += (f"; final re-run started `{s['final_started']}`, " + (
                f"ended `{s['final_ended']}` after {s['final_seconds']:.0f} s" if s.get("final_ended")
                else "INTERRUPTED (no end record; it resumes from its checkpoints)"))
        lines.append(head + ".")
    return lines


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"


def summarise(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str,
              mode: str, final: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the results (Markdown + JSON) and write them atomically (``--out`` or ``<sweep dir>/results.md``)."""
    from accord.core.io import atomic_write_text, write_json

    counts = count_states(study)
    best = study.best_trial
    top = top_trials(study, mode)
    keys = list(space.params)
    ss = sessions(study)
    all_t = study.get_trials(deepcopy=False)
    retried = [t for t in all_t if "failed_trial" in t.system_attrs]
    spent = [s for s in (trial_seconds(t) for t in all_t if t.state.name in ("COMPLETE", "PRUNED")) if s]
    lines = [
        f"# Hyper-parameter sweep: {opts.method} on {opts.dataset}",
        "",
        f"Study `{opts.study_name}` in `{safe_url(opts.storage)}` ({len(ss)} invocation(s)): direction "
        f"{study.direction.name.lower()} on the VALIDATION {metric} of one seed ({opts.seed}) per trial; test was "
        f"never computed during the search (trials evaluate the selected checkpoint on validation only). Target "
        f"N = {opts.trials} finished trials (COMPLETE + PRUNED). Trials by state: {_states(counts)}. Workers per "
        f"invocation: {', '.join(str(s['workers']) for s in ss)}. Sampler TPE (multivariate, constant liar); "
        f"pruner {'MedianPruner (5 startup trials, 5 warm-up epochs)' if opts.pruning else 'none'}.",
        "",
        f"Training time of finished trials: {sum(spent):.0f} s in total, median {_median(spent):.0f} s per trial "
        f"(wall-clock per invocation below).",
        "",
        "## Invocations (interruptions and resumption)",
        "",
        *_session_story(ss),
        "",
    ]
    notes = [str(v) for k, v in sorted(study.user_attrs.items()) if k.startswith("note:")]
    if notes:  # free-text notes an operator attached to the study (study.set_user_attr("note:<when>", text))
        lines += ["Notes attached to the study:", "", *(f"* {n}" for n in notes), ""]
    if retried:
        lines += ["Re-enqueued trials: " + ", ".join(f"#{t.number} (retry of #{t.system_attrs['failed_trial']}, "
                                                     f"{t.state.name})" for t in retried) + ".", ""]
    lines += [f"## Search space ({space_source})", "", "| key | distribution |", "|:---|:---|"]
    lines += [f"| `{k}` | {p.describe()} |" for k, p in space.params.items()]
    lines += ["", f"## Top trials ({len(top)} best finished, by validation {metric})", "",
              "| trial | state | valid " + metric + " | seconds | " + " | ".join(f"`{k}`" for k in keys) + " |",
              "|---:|:---|---:|---:|" + "---:|" * len(keys)]
    for t in top:
        lines.append(f"| {t.number} | {t.state.name} | {t.value:.4f} | {trial_seconds(t) or 0:.0f} | "
                     + " | ".join(_fmt(t.params.get(k, "")) for k in keys) + " |")
    lines += ["", f"Best trial: #{best.number}, validation {metric} {best.value:.4f}; params: "
              + ", ".join(f"`{k}={_fmt(v)}`" for k, v in best.params.items()) + ".", ""]
    result: dict[str, Any] = {
        "study": {"name": opts.study_name, "storage": safe_url(opts.storage), "direction": study.direction.name,
                  "metric": metric, "objective": f"validation {metric}, seed {opts.seed}", "target": opts.trials,
                  "counts": counts, "workers": [s["workers"] for s in ss], "method": opts.method,
                  "dataset": opts.dataset, "overrides": opts.overrides},
        "sessions": ss,
        "space": {k: v.model_dump(exclude_none=True) for k, v in space.params.items()},
        "space_source": space_source,
        "top": [{"number": t.number, "state": t.state.name, "value": t.value, "seconds": trial_seconds(t),
                 "params": t.params, "valid": t.user_attrs.get("valid"), "run_dir": t.user_attrs.get("run_dir")}
                for t in top],
        "best": {"number": best.number, "value": best.value, "params": best.params,
                 "run_dir": best.user_attrs.get("run_dir")},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "seconds": trial_seconds(t),
                    "params": t.params, "user_attrs": {k: v for k, v in t.user_attrs.items()},
                    "retry_of": t.system_attrs.get("failed_trial")} for t in all_t],
    }
    if final:
        lines += final["markdown"]
        result["final"] = final["json"]
    if opts.dataset == "mosi-u":
        lines += ["**Caveat (MOSI-U).** The validation videos are training videos of the bc-LSTM feature "
                  "extractors, so validation scores are optimistic (about 98% Non0_acc_2 for every model) and only "
                  "weakly related to test: the search optimises a nearly saturated, partly leaked signal, and a "
                  "better validation score need not carry over to test. Only the test numbers of the final "
                  "re-run are clean.", ""]
    if opts.command:
        lines += [f"Produced by `{opts.command}`."]
    md = "\n".join(lines) + "\n"
    path = Path(opts.out) if opts.out else sweep_dir(opts) / "results.md"
    atomic_write_text(path, md)
    write_json(path.with_suffix(".json"), result)
    return {"markdown": md, "json": result, "path": path, "best": best, "counts": counts}


def _median(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def headline_metric(family: str, task: str) -> str:
    """The metric a verdict is stated in (as in ``accord benchmark``)."""
    if task == "classification":
        return "Acc"
    return "Non0_acc_2" if family == "mosi" else "Mult_acc_2"


def final_rerun(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str,
                mode: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Re-run the best trial's config (and the untuned default) on the final seeds with valid + test evaluation;
    resumable. Writes the results file with the final numbers and returns :func:`summarise`'s result."""
    from accord.evaluation.metrics import METRIC_ORDER, metric_mode
    from accord.evaluation.summary import format_mean_std, markdown_table
    from accord.training.trainer import Trainer

    best = study.best_trial
    out_dir = sweep_dir(opts)
    extra = [f"output.dir={out_dir}", f"train.seeds={json.dumps(opts.final_seeds)}"]
    jobs: list[tuple[dict[str, Any], list[str], str]] = [
        (best.params, [f"name=final_trial_{best.number}", *extra], "sweep final re-run")]
    if not opts.baseline_run:
        jobs.append(({}, ["name=default", *extra], "sweep untuned default"))
    # the tuned and the default runs go in parallel, the cores split between them (two 1-thread trainings are
    # much faster than one 2-thread training after another on a busy 2-core machine); this depends on the machine
    # only, not on --workers, so that a re-run with other --workers resumes the same final runs
    parallel = max(1, min(len(jobs), cores()))
    threads = max(1, cores() // parallel)
    cfgs = [compose_config(opts, p, f, src, threads=threads) for p, f, src in jobs]
    log(f"final re-run of trial #{best.number} on seeds {opts.final_seeds} -> {cfgs[0].run_dir}"
        + (f"; untuned default -> {cfgs[1].run_dir}" if len(cfgs) > 1 else "")
        + (f" ({parallel} processes, {threads} thread(s) each)" if parallel > 1 else ""))
    t0 = time.time()
    if parallel == 1:
        for cfg in cfgs:
            Trainer(cfg, progress=False).fit(resume=True)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = []
        for (p, f, src), cfg in zip(jobs, cfgs, strict=True):
            log_path = out_dir / "logs" / f"{cfg.run_name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            procs.append(ctx.Process(target=_spawned_final_job, args=(opts, p, f, src, threads, str(log_path)),
                                     name=f"accord-final-{cfg.run_name}"))
        codes = run_processes(procs)
        bad = [cfg.run_name for cfg, code in zip(cfgs, codes, strict=True) if code != 0]
        if bad:
            raise SweepError(f"final re-run(s) {', '.join(bad)} failed; see {out_dir / 'logs'}")
    tuned_seconds = time.time() - t0
    best_cfg = cfgs[0]
    tuned = json.loads((best_cfg.run_dir / "summary.json").read_text())
    if opts.baseline_run:
        path = Path(opts.baseline_run) / "summary.json"
        if not path.is_file():
            raise CheckpointError(f"--baseline-run {opts.baseline_run}: no summary.json (not a finished run)")
        default = json.loads(path.read_text())
        default_dir = Path(opts.baseline_run)
        if "test" not in default:
            raise CheckpointError(f"{path}: has no test metrics")
    else:
        default = json.loads((cfgs[1].run_dir / "summary.json").read_text())
        default_dir = cfgs[1].run_dir
    family = ("mosi" if "Non0_acc_2" in tuned["test"] else
              "sims" if "Mult_acc_2" in tuned["test"] else "classification")
    task = "classification" if family == "classification" else "regression"
    head = headline_metric(family, task)
    order = [m for m in METRIC_ORDER[family] if m in tuned["test"]]
    rows = {}
    for label, summ in ((f"tuned (trial #{best.number}) valid", tuned["valid"]),
                        (f"tuned (trial #{best.number}) test", tuned["test"]),
                        ("untuned default valid", default.get("valid", {})),
                        ("untuned default test", default["test"])):
        rows[label] = {k: (v["mean"], v["std"], v["n"]) for k, v in summ.items()}
    t_mean, t_std = tuned["test"][head]["mean"], tuned["test"][head]["std"]
    d_mean, d_std = default["test"][head]["mean"], default["test"][head]["std"]
    diff = t_mean - d_mean
    better = diff > 0 if metric_mode(head) == "max" else diff < 0
    noise = max(t_std, d_std)
    tv, dv = tuned["valid"][metric], default["valid"][metric]
    verdict = (f"On test, the tuned config reaches {head} {format_mean_std(t_mean, t_std, head)} vs "
               f"{format_mean_std(d_mean, d_std, head)} for the untuned default on the same seeds "
               f"({diff:+.2f}); "
               + ("a difference smaller than the seed std, i.e. no clear change" if abs(diff) < noise else
                  ("better by more than the seed std" if better else "WORSE by more than the seed std"))
               + f". Validation {metric} over the same seeds: tuned {format_mean_std(tv['mean'], tv['std'], metric)}"
               f" vs default {format_mean_std(dv['mean'], dv['std'], metric)}; the best trial's single-seed "
               f"validation {metric} was {best.value:.4f}, the best of {n_finished(count_states(study))} trials and so "
               f"optimistic (winner's curse), and the validation comparison itself favours the tuned config, "
               f"which was selected on validation.")
    md = [f"## Final re-run of the best config on seeds {opts.final_seeds} (valid + test)", "",
          f"Best trial #{best.number}'s config re-trained on {len(opts.final_seeds)} seeds with the normal "
          f"evaluation ({best_cfg.run_dir}; {parallel} process(es) of {threads} thread(s), {tuned_seconds:.0f} s "
          f"wall-clock in the invocation that wrote this file, finished seeds kept from earlier ones), next to the "
          f"untuned default "
          f"({default_dir}). Mean ± std over seeds; accuracies and F1 in %.", "",
          markdown_table(rows, order, first_col="config", bold_best=False).rstrip("\n"), "", verdict, ""]
    js = {"seeds": opts.final_seeds, "best_trial": best.number, "params": best.params,
          "run_dir": str(best_cfg.run_dir), "valid": tuned["valid"], "test": tuned["test"],
          "default": {"run_dir": str(default_dir), "valid": default.get("valid"), "test": default["test"]},
          "headline_metric": head, "verdict": verdict, "seconds": round(tuned_seconds, 1)}
    parts = {"markdown": md, "json": js}
    return {**summarise(study, opts, space, space_source, metric, mode, final=parts), "final_parts": parts}


def _spawned_final_job(opts: SweepOptions, params: dict[str, Any], forced: list[str], source: str, threads: int,
                       log_path: str) -> None:
    """Entry point of a final re-run process: train one config on the final seeds (resumable), log to a file."""
    from accord.training.trainer import Trainer

    try:
        cfg = compose_config(opts, params, forced, source, threads=threads)
        with open(log_path, "a") as fh, contextlib.redirect_stderr(fh):
            Trainer(cfg, progress=False).fit(resume=True)
    except (AccordError, FloatingPointError) as err:
        print(f"error: {source}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)

