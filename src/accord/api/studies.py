"""Studies: several runs compared in one table (benchmark, demo, ablation) and hyper-parameter sweeps.

Each function composes the studies floor (:mod:`accord.studies`), imported when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from accord.core.errors import ConfigError

DEMO_METHODS: tuple[str, ...] = ("text", "audio", "visual", "early_fusion", "late_fusion", "tfn", "mult")
"""What ``accord demo`` compares: the unimodal baselines and four fusion baselines."""


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    """Seeds ``0..seeds-1`` or the list given; none at all is an error (never an empty study)."""
    out = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not out:
        raise ConfigError(f"--seeds: expected at least 1 (got {seeds!r})")
    return out


def benchmark(methods: Sequence[str], dataset: str | None = None, seeds: int | Sequence[int] = 5,
              out: str | Path | None = None, overrides: Sequence[str] | None = None,
              config_files: Sequence[str | Path] | None = None, table: str | Path | None = None,
              resume: bool = False, overwrite: bool = False, console: Console | None = None,
              title: str | None = None, command: str | None = None, workers: int = 1,
              folds: str | Path | None = None) -> dict[str, Any]:
    """Train ``methods`` with the same seeds (``0..seeds-1`` or a list) and data; one table of TEST mean ± std.

    ``dataset`` names the dataset (default ``conflictbench``); runs go to ``out`` (default
    ``runs/benchmark_<dataset>``), with ``benchmark.{md,csv,json}``; ``table`` also gets the Markdown table.
    ``folds`` instead names a k-fold dataset folder (``folds.json``): every method is trained on every fold
    (:mod:`accord.studies.kfold`; runs under ``out/fold_<i>``, default ``out`` ``runs/benchmark_folds_<folder>``) and
    the result has per-fold and across-fold tables (``kfold.{md,csv,json}``); giving both is an error.
    ``workers`` > 1 trains the methods in that many processes at once (they share the cores:
    :mod:`accord.studies.parallel`). Returns the study's result (``markdown``, rows, ...).
    """
    if folds is not None:
        if dataset is not None:
            raise ConfigError(f"--folds {folds} and --dataset {dataset}: give one (--folds trains on the fold "
                              "datasets of a k-fold folder, --dataset on one dataset)")
        from accord.studies.kfold import run_fold_benchmark

        root = Path(folds)
        return run_fold_benchmark(list(methods), root, _seed_list(seeds),
                                  Path(out) if out is not None else Path("runs") / f"benchmark_folds_{root.name}",
                                  overrides=list(overrides or []), table=table, resume=resume, overwrite=overwrite,
                                  console=console, config_files=[str(c) for c in config_files or []],
                                  command=command, workers=workers)
    from accord.studies.benchmark import run_benchmark

    dataset = dataset or "conflictbench"
    return run_benchmark(list(methods), dataset, _seed_list(seeds),
                         Path(out) if out is not None else Path("runs") / f"benchmark_{dataset}",
                         overrides=list(overrides or []), table=table, resume=resume, overwrite=overwrite,
                         console=console, config_files=[str(c) for c in config_files or []], title=title,
                         command=command, workers=workers)


def demo(seeds: int = 2, out: str | Path = "runs/demo", methods: Sequence[str] | None = None,
         console: Console | None = None, workers: int | None = None) -> dict[str, Any]:
    """``accord demo``: the baselines (default :data:`DEMO_METHODS`) on the built-in ConflictBench (text dominates,
    20% planted conflicts), each method's run started over, in ``workers`` processes (default: 2, or 1 on a
    one-core machine or where ``ACCORD_CORES=1``)."""
    from accord.training.threads import cores

    names = list(methods or DEMO_METHODS)
    n = workers if workers is not None else min(2, cores())
    return benchmark(names, "conflictbench", seeds, Path(out), overwrite=True, console=console, title="Demo",
                     command=f"accord demo --seeds {seeds} --methods {','.join(names)} --workers {n}", workers=n)


def ablate(method: str = "cacr", dataset: str = "conflictbench", seeds: int | Sequence[int] = 5,
           out: str | Path | None = None, names: Sequence[str] | None = None,
           overrides: Sequence[str] | None = None, config_files: Sequence[str | Path] | None = None,
           table: str | Path | None = None, resume: bool = False, overwrite: bool = False,
           console: Console | None = None) -> dict[str, Any]:
    """Re-run ``method``'s ablation table (or the ablations ``names``), one run per ablation, in the paper's layout.

    Runs go to ``out`` (default ``runs/ablate_<method>_<dataset>``), with ``ablation.{md,csv,json}``.
    """
    from accord.studies.ablate import run_ablation

    return run_ablation(method, dataset, _seed_list(seeds),
                        Path(out) if out is not None else Path("runs") / f"ablate_{method}_{dataset}",
                        names=list(names) if names else None, overrides=list(overrides or []),
                        config_files=[str(c) for c in config_files or []], table=table, resume=resume,
                        overwrite=overwrite, console=console)


def sweep(method: str, dataset: str, trials: int, storage: str, study: str | None = None, workers: int = 1,
          space: str | Path | None = None, final_seeds: str | Sequence[int] = (0, 1, 2, 3, 4), seed: int = 0,
          overrides: Sequence[str] | None = None, out: str | Path | None = None, final: bool = True,
          baseline_run: str | Path | None = None, prune: bool = True, command: str | None = None,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Hyper-parameter search (optuna) on the VALIDATION metric, resumable, several workers per study.

    ``final_seeds`` is a list or the command line's text (``"0,1,2"``, ``"0-4"``). Returns the study's result:
    ``markdown``, ``json``, ``path`` (the results file), ``best``, ``counts``.
    """
    from accord.studies.sweep import SweepOptions, parse_seeds, run_sweep

    opts = SweepOptions(method=method, dataset=dataset, trials=trials, storage=storage, study=study, workers=workers,
                        space=str(space) if space else None,
                        final_seeds=parse_seeds(final_seeds) if isinstance(final_seeds, str) else list(final_seeds),
                        overrides=list(overrides or []), out=str(out) if out else None, seed=seed, final=final,
                        baseline_run=str(baseline_run) if baseline_run else None, pruning=prune, command=command)
    return run_sweep(opts, log=log)
