"""The run directory: its layout (one name per file) and the readers every upper floor shares.

::

    <run>/config.yaml                 the resolved config           read_config_tree
    <run>/dataset.json                dims, classes, metric family  read_dataset_info
    <run>/summary.{json,csv,md}       mean ± std over seeds         read_summary
    <run>/seed_<s>/log.jsonl          epoch, step and hook lines    read_log
    <run>/seed_<s>/results.json       selected checkpoint's metrics read_results
    <run>/seed_<s>/diagnostics.npz    per-sample outputs            read_diagnostics
    <run>/seed_<s>/best.safetensors   selected weights
    <run>/seed_<s>/last.pt            resume state
    <run>/seed_<s>/<artifact>.npz     arrays a trainer hook hands the trainer (e.g. Self-MM's generated labels)

The trainer writes these files (atomically, :mod:`accord.core.io`); everything else reads them through this module,
so a file name or a log-line format is defined once. Every reader raises a one-line
:class:`~accord.core.errors.CheckpointError` naming the file that is missing or unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

from accord.core.errors import CheckpointError
from accord.core.io import read_json_file

CONFIG: Final = "config.yaml"
DATASET: Final = "dataset.json"
SUMMARY: Final = "summary.json"
LOG: Final = "log.jsonl"
RESULTS: Final = "results.json"
DIAGNOSTICS: Final = "diagnostics.npz"
BEST: Final = "best.safetensors"
LAST: Final = "last.pt"
LOCK: Final = ".lock"
KFOLD_STEM: Final = "kfold"
"""A k-fold benchmark folder's results: ``kfold.{md,csv,json}`` (``accord benchmark --folds``)."""

PathLike = str | Path


def seed_dir(run_dir: PathLike, seed: int) -> Path:
    """``<run_dir>/seed_<seed>``."""
    return Path(run_dir) / f"seed_{seed}"


def seed_of(path: PathLike) -> int:
    """The seed of a ``seed_<s>`` folder; a folder not named so is a CheckpointError."""
    name = Path(path).name
    tail = name.split("_", 1)[1] if name.startswith("seed_") else ""
    try:
        return int(tail)
    except ValueError:
        raise CheckpointError(f"{path}: not a seed folder (expected seed_<integer>)") from None


def seed_dirs(run_dir: PathLike, with_checkpoint: bool = False) -> list[Path]:
    """The ``seed_<s>`` folders of a run in numeric seed order (only those with ``best.safetensors`` when
    ``with_checkpoint``; then an empty list is a CheckpointError: the run has not been trained)."""
    rd = Path(run_dir)
    found = [p for p in rd.glob("seed_*") if p.is_dir() and p.name[5:].lstrip("-").isdigit()]
    if with_checkpoint:
        found = [p for p in found if (p / BEST).is_file()]
        if not found:
            raise CheckpointError(f"{rd}: no seed_*/{BEST} (train the run first)")
    return sorted(found, key=seed_of)


def is_run_dir(path: PathLike) -> bool:
    """Whether ``path`` holds a run (its ``config.yaml``)."""
    return (Path(path) / CONFIG).is_file()


def find_runs(target: PathLike) -> list[Path]:
    """``target`` itself if it is a run directory, else every run directory directly inside it (a study folder)."""
    t = Path(target)
    if is_run_dir(t):
        return [t]
    runs = sorted(p for p in t.iterdir() if is_run_dir(p)) if t.is_dir() else []
    if not runs:
        raise CheckpointError(f"{t}: neither a run directory nor a folder of runs (no {CONFIG} found)")
    return runs


def read_json(path: PathLike, what: str) -> Any:
    """The parsed JSON of ``path``; missing or unparsable is a CheckpointError naming the file and ``what`` it is."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: missing ({what})")
    return read_json_file(p, CheckpointError, what, context=what)


def read_config_tree(run_dir: PathLike) -> dict[str, Any]:
    """The raw mapping of ``<run_dir>/config.yaml`` (validate it with :func:`accord.config.validate`)."""
    p = Path(run_dir) / CONFIG
    if not p.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CheckpointError(f"{p}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{p}: expected a mapping of config sections")
    return tree


def read_dataset_info(run_dir: PathLike) -> dict[str, Any]:
    """``dataset.json``: input ``dims``, ``out_dim``, ``class_names``, ``metric_family`` and ``source``."""
    info = read_json(Path(run_dir) / DATASET, "needed to rebuild the model's input sizes")
    if not isinstance(info, dict) or "dims" not in info or "out_dim" not in info:
        raise CheckpointError(f"{Path(run_dir) / DATASET}: expected a mapping with dims and out_dim")
    return info


def read_summary(run_dir: PathLike) -> dict[str, Any]:
    """A finished run's ``summary.json``."""
    summary = read_json(Path(run_dir) / SUMMARY, "the run has not finished")
    if not isinstance(summary, dict):
        raise CheckpointError(f"{Path(run_dir) / SUMMARY}: expected a mapping")
    return summary


def read_results(seed_folder: PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """One seed's ``results.json``; a key of ``required`` it lacks (or, for ``valid``/``test``, holds no mapping of
    metrics) is a CheckpointError naming the file and the keys."""
    file = Path(seed_folder) / RESULTS
    results = read_json(file, "the seed has not finished")
    if not isinstance(results, dict):
        raise CheckpointError(f"{file}: expected a mapping")
    missing = [k for k in required if k not in results
               or k in ("valid", "test") and not isinstance(results[k], dict)]
    if missing:
        raise CheckpointError(f"{file}: lacks {', '.join(missing)} (damaged or not written by this trainer); "
                              f"delete it and resume to evaluate the seed again")
    return results


def read_log(path: PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (only those of ``"type": kind`` when given: ``epoch``, ``step``, ``grad``).

    A line cut by an interruption (not valid JSON) is skipped; a missing file gives no records.
    """
    p = Path(path)
    if not p.is_file():
        return []
    out: list[dict[str, Any]] = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and (kind is None or rec.get("type") == kind):
            out.append(rec)
    return out


def read_diagnostics(seed_folder: PathLike, split: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``diagnostics.npz``: every ``<split>/<name>`` key, or, with ``split``, that split's arrays
    keyed by ``<name>`` (``prediction``, ``label``, ``id``, ``conflict_text``, ``extra_conflict``, ...)."""
    p = Path(seed_folder) / DIAGNOSTICS
    if not p.is_file():
        raise CheckpointError(f"{p}: missing (train the run first)")
    try:
        with np.load(p, allow_pickle=False) as z:
            if split is None:
                return {k: z[k] for k in z.files}
            return {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{split}/")}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{p}: unreadable ({err})") from None
