"""What a sweep is asked to do (:class:`SweepOptions`), its checks, and the configs it composes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.config import Config, compose, validate
from accord.core.errors import AccordError
from accord.studies.sweep.space import param_overrides
from accord.training import threads


class SweepError(AccordError):
    """A sweep cannot run: bad storage URL, bad options, a study made for something else, failed workers."""


class SweepInterrupted(SweepError):
    """The sweep's main process was stopped (SIGTERM, Ctrl-C) and stopped its worker processes; ``exit_code`` is
    the shell's ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM). The study keeps every finished trial."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


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
    threads.split(opts.workers, "--workers")  # more worker processes than cores given: one line, before any work
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


def fmt_value(v: Any) -> str:
    """A parameter value for a log line or a table cell (floats with 4 significant digits)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
