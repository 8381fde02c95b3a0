"""A k-fold dataset on disk: one safe-format dataset folder per fold plus an index, ``folds.json``.

::

    OUT/folds.json   {"format": "accord-folds", "version": 1, "k": K, "folds": ["fold_0", ...], "meta": {...}}
    OUT/fold_0/      a dataset folder (manifest.json + train/valid/test.npz): test = fold 0's samples
    ...

``accord data import --folds K`` writes it and ``accord benchmark --folds OUT`` trains every method on every fold
(:func:`read_folds` lists the fold folders). Numpy/json only: no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accord.core.errors import DataError
from accord.core.io import read_json_file, write_json

__all__ = ["FOLDS_FILE", "FOLDS_FORMAT", "FOLDS_VERSION", "is_folds_dir", "read_folds", "read_folds_index",
           "write_folds_index"]

FOLDS_FILE = "folds.json"
FOLDS_FORMAT = "accord-folds"
FOLDS_VERSION = 1


def is_folds_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``folds.json`` (what :func:`read_folds` then checks)."""
    p = Path(path)
    return p.is_dir() and (p / FOLDS_FILE).is_file()


def _check_fold(root: Path, name: str, where: str) -> None:
    """A one-line DataError (starting with ``where``) unless ``name`` is a dataset folder inside ``root``."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise DataError(f"{where}: must be a folder name inside {root}")
    if not (root / name / "manifest.json").is_file():
        raise DataError(f"{where}: {root / name} is not a dataset folder (no manifest.json)")


def write_folds_index(out: str | os.PathLike[str], folds: list[str], meta: dict[str, Any] | None = None) -> Path:
    """Write ``out/folds.json`` (atomically) naming the fold folders ``folds`` (relative to ``out``, in order);
    every one must already be a dataset folder. Returns the index file."""
    root = Path(out)
    if len(folds) < 2:
        raise DataError(f"{root}: a k-fold dataset needs at least 2 folds, got {len(folds)}")
    for name in folds:
        _check_fold(root, name, f"{root}: fold {name!r}")
    file = root / FOLDS_FILE
    write_json(file, {"format": FOLDS_FORMAT, "version": FOLDS_VERSION, "k": len(folds), "folds": list(folds),
                      "meta": dict(meta or {})})
    return file


def read_folds_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked contents of ``path/folds.json``; a one-line DataError naming the file and the key otherwise."""
    root = Path(path)
    file = root / FOLDS_FILE
    if not file.is_file():
        raise DataError(f"{file}: missing; expected a k-fold dataset folder (written by `accord data import "
                        "--folds K`)")
    index = read_json_file(file, DataError, "a k-fold index (JSON object)")
    if not isinstance(index, dict):
        raise DataError(f"{file}: expected a JSON object")
    if index.get("format") != FOLDS_FORMAT:
        raise DataError(f"{file}: key 'format' is {index.get('format')!r}, expected {FOLDS_FORMAT!r}")
    if index.get("version") != FOLDS_VERSION:
        raise DataError(f"{file}: key 'version' is {index.get('version')!r}; this Accord reads version "
                        f"{FOLDS_VERSION}")
    folds = index.get("folds")
    if not isinstance(folds, list) or not all(isinstance(f, str) for f in folds) or len(folds) < 2:
        raise DataError(f"{file}: key 'folds' must list at least 2 fold folder names, got {folds!r}")
    if len(set(folds)) != len(folds):
        raise DataError(f"{file}: key 'folds' names a fold twice: {folds}")
    if index.get("k") != len(folds):
        raise DataError(f"{file}: key 'k' is {index.get('k')!r} but 'folds' lists {len(folds)}")
    for name in folds:
        _check_fold(root, name, f"{file}: fold {name!r}")
    return index


def read_folds(path: str | os.PathLike[str]) -> list[Path]:
    """The fold dataset folders of the k-fold dataset at ``path``, in order (checked by :func:`read_folds_index`)."""
    root = Path(path)
    return [root / name for name in read_folds_index(root)["folds"]]
