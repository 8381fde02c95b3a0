"""Run a study's configs in several processes at once (``accord benchmark --workers N``, ``accord demo``).

:func:`run_configs_parallel` is :func:`~accord.studies.runner.run_configs` spread over ``workers`` processes:
each worker takes the next config from a shared queue (the LAST listed first: tables list the heavier methods
last, and a long run started late would leave the other workers idle), trains it with the one trainer, and the
parent reads the finished rows back (:func:`~accord.studies.runner.finished_rows`). A config trains exactly as
it would in one process (same seeds, same selection; tested); the workers share the cores Accord is given
(:func:`accord.training.threads.split`: ``C // workers`` torch threads each, 1 on an unconfigured machine),
unless a config sets ``train.num_threads`` itself. Workers die with the parent, and a stopped parent stops them
(:mod:`accord.studies.processes`); a worker's error comes back as the parent's one-line error naming the config.
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

from accord.core.errors import AccordError
from accord.studies.processes import exit_reason, run_processes, spawn, stop_on_signals
from accord.studies.runner import Configs, Row, finished_rows, named_configs, run_configs


class WorkerError(AccordError):
    """A config failed in a worker process (the message names the config and the error's first line)."""


def _worker(jobs: Any, errors: Any, trees: dict[str, dict[str, Any]], threads: int, resume: bool,
            overwrite: bool) -> None:
    """Train configs from ``jobs`` until it is empty; a failure goes to ``errors`` as ``(name, message)``."""
    from accord.config import validate

    while True:
        try:
            name = jobs.get_nowait()
        except queue.Empty:
            return
        try:
            tree = trees[name]
            if tree["train"].get("num_threads") is None:
                tree = {**tree, "train": {**tree["train"], "num_threads": threads}}
            cfg = validate(tree, f"study config {name}")
            run_configs([(name, cfg)], resume=resume, overwrite=overwrite, progress=False,
                        log=lambda text: print(text, flush=True))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            errors.put((name, f"{type(err).__name__}: {first}"))
            return


def run_configs_parallel(configs: Configs, workers: int, *, resume: bool = False, overwrite: bool = False,
                         **kwargs: Any) -> list[Row]:
    """Train the named configs in ``workers`` processes; returns their rows in the given order. ``workers`` ≤ 1
    (or a single config) is :func:`run_configs` in this process, with ``kwargs`` passed on."""
    from accord.training.threads import split

    pairs = named_configs(configs)
    if workers <= 1 or len(pairs) <= 1:
        return run_configs(pairs, resume=resume, overwrite=overwrite, **kwargs)
    workers = min(workers, len(pairs))
    threads = split(workers, "--workers")
    ctx = multiprocessing.get_context("spawn")
    jobs, errors = ctx.Queue(), ctx.Queue()
    for name, _ in reversed(pairs):
        jobs.put(name)
    trees = {name: cfg.to_dict() for name, cfg in pairs}
    procs = [spawn(_worker, (jobs, errors, trees, threads, resume, overwrite), f"accord-study-{i}")
             for i in range(workers)]
    with stop_on_signals():
        codes = run_processes(procs)
    failures: list[tuple[str, str]] = []
    while True:
        try:
            failures.append(errors.get(timeout=0.1))
        except queue.Empty:
            break
    if failures:
        name, message = failures[0]
        raise WorkerError(f"study config {name!r} failed in a worker process: {message}")
    bad = [exit_reason(c) for c in codes if c != 0]
    if bad:
        raise WorkerError(f"a study worker process ended with {bad[0]}; the runs it left can be continued with "
                          "--resume")
    return finished_rows(pairs)
