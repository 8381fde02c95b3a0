"""Reading Accord's safe on-disk dataset format with numpy only (no torch): the manifest, the checksummed
``.npz`` files and the arrays of a split (:class:`SplitArrays`).

:mod:`accord.data.safe` (which writes the format and loads it into torch tensors) reads through these functions,
and ``accord data info FOLDER`` uses :func:`inspect_dataset_dir` (read, check the data contract, summarise) so
that it never imports torch. The format itself is described in :mod:`accord.data.safe`.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.core.errors import DataError
from accord.core.io import read_json_file
from accord.core.types import MODALITIES
from accord.data.contract import SPLITS, split_dims, summarize, validate_splits

FORMAT = "accord-dataset"
VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(file: Path) -> str:
    """The SHA-256 of ``file``'s bytes (hex)."""
    h = hashlib.sha256()
    with file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_dataset_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``manifest.json`` (what :func:`read_manifest` then checks)."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


# ------------------------------------------------------------------------------------------------ the manifest
def _check_manifest_header(manifest: dict[str, Any], file: Path) -> None:
    """The required top-level keys, format, version, metric family and label range of a manifest."""
    for key in ("format", "version", "name", "metric_family", "label_range", "splits"):
        if key not in manifest:
            raise DataError(f"{file}: missing key {key!r}")
    if manifest["format"] != FORMAT:
        raise DataError(f"{file}: key 'format' is {manifest['format']!r}, expected {FORMAT!r}")
    if manifest["version"] != VERSION:
        raise DataError(
            f"{file}: key 'version' is {manifest['version']!r}; this Accord reads version {VERSION}"
        )
    if manifest["metric_family"] not in ("mosi", "sims"):
        raise DataError(
            f"{file}: key 'metric_family' is {manifest['metric_family']!r}, expected mosi or sims"
        )
    lr = manifest["label_range"]
    if not (isinstance(lr, list) and len(lr) == 2 and all(isinstance(v, int | float) for v in lr)):
        raise DataError(f"{file}: key 'label_range' must be [low, high], got {lr!r}")


def _check_manifest_split(info: Any, split: str, file: Path) -> None:
    """A manifest's ``splits.<split>`` entry: an object with ``file`` (a plain ``.npz`` name), ``n``, ``sha256``."""
    if not isinstance(info, dict):
        raise DataError(f"{file}: key 'splits.{split}' is missing (expected train, valid and test)")
    for key in ("file", "n", "sha256"):
        if key not in info:
            raise DataError(f"{file}: key 'splits.{split}.{key}' is missing")
    name = info["file"]
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npz"):
        raise DataError(f"{file}: key 'splits.{split}.file' must be a plain .npz file name, got {name!r}")


def read_manifest(root: Path) -> dict[str, Any]:
    """The checked ``manifest.json`` of the dataset directory ``root``."""
    file = root / MANIFEST
    if not root.exists():
        raise DataError(f"{root}: dataset directory not found")
    if not root.is_dir():
        raise DataError(f"{root}: is not a directory; expected a dataset directory with {MANIFEST}")
    manifest = read_json_file(file, DataError, "a dataset directory written by `accord data convert`")
    if not isinstance(manifest, dict):
        raise DataError(f"{file}: top level must be a JSON object")
    _check_manifest_header(manifest, file)
    splits = manifest["splits"]
    if not isinstance(splits, dict):
        raise DataError(f"{file}: key 'splits' must be an object")
    for split in SPLITS:
        _check_manifest_split(splits.get(split), split, file)
    return manifest


def label_range_of(manifest: dict[str, Any]) -> tuple[float, float]:
    """The manifest's ``label_range`` as two floats."""
    return float(manifest["label_range"][0]), float(manifest["label_range"][1])


def class_names_of(manifest: dict[str, Any]) -> list[str]:
    """The manifest's ``class_names`` (none: an empty list)."""
    return [str(c) for c in manifest.get("class_names") or []]


# ------------------------------------------------------------------------------------------------- the splits
def _read_npz(file: Path, split: str, info: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a split's ``.npz`` (never unpickling), after checking the file exists and its checksum."""
    if not file.is_file():
        raise DataError(f"{file}: missing (listed in {MANIFEST} for split {split!r})")
    if sha256_file(file) != info["sha256"]:
        raise DataError(f"{file}: checksum mismatch (file changed or corrupt)")
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        detail = " ".join(str(err).split())[:160]
        raise DataError(f"{file}: not a readable .npz ({type(err).__name__}: {detail})") from None


class _Arrays:
    """Checked access to the arrays of one ``.npz`` (errors name the file and the array)."""

    def __init__(self, file: Path, arrays: dict[str, np.ndarray]) -> None:
        self.file, self.arrays = file, arrays

    def need(self, key: str) -> np.ndarray:
        """Array ``key``; a missing one is a DataError."""
        if key not in self.arrays:
            raise DataError(f"{self.file}: missing array {key!r}")
        return self.arrays[key]

    def numeric(self, key: str, kinds: str, dtype: type[np.generic]) -> np.ndarray:
        """Array ``key`` (of a numpy dtype kind in ``kinds``) as a contiguous array of ``dtype``."""
        arr = self.need(key)
        if arr.dtype.kind not in kinds:
            raise DataError(f"{self.file}: array {key!r} has dtype {arr.dtype}, expected a numeric array")
        return np.ascontiguousarray(arr).astype(dtype, copy=False)

    def strings(self, key: str, expected: str) -> list[str]:
        """Array ``key`` of unicode strings as a list."""
        arr = self.need(key)
        if arr.dtype.kind != "U":
            raise DataError(f"{self.file}: array {key!r} has dtype {arr.dtype}, expected {expected}")
        return [str(t) for t in arr.tolist()]

    def with_prefix(self, prefix: str) -> list[str]:
        """The names of the arrays starting with ``prefix``."""
        return [k for k in self.arrays if k.startswith(prefix)]


@dataclass
class SplitArrays:
    """One split as read from its ``.npz``: the fields of :class:`~accord.data.dataset.SplitData` as numpy
    arrays (features, labels and unimodal labels float32; lengths, class labels and text tokens int64)."""

    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    labels: np.ndarray
    ids: list[str]
    raw_text: list[str] = field(default_factory=list)
    class_labels: np.ndarray | None = None
    unimodal_labels: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    text_tokens: np.ndarray | None = None


def read_split(root: Path, split: str, info: dict[str, Any]) -> SplitArrays:
    """Split ``split`` from its ``.npz`` in ``root``, checked against its manifest entry ``info`` (row count,
    feature dims) and its checksum."""
    file = root / info["file"]
    z = _Arrays(file, _read_npz(file, split, info))
    f32, i64 = np.float32, np.int64
    features = {m: z.numeric(f"features_{m}", "f", f32) for m in MODALITIES}
    lengths = {m: z.numeric(f"lengths_{m}", "iu", i64) for m in MODALITIES}
    labels = z.numeric("labels", "f", f32)
    ids = z.strings("ids", "unicode strings")
    raw_text = z.strings("raw_text", "unicode") if "raw_text" in z.arrays else []
    class_labels = z.numeric("class_labels", "iu", i64) if "class_labels" in z.arrays else None
    text_tokens = z.numeric("text_tokens", "iu", i64) if "text_tokens" in z.arrays else None
    unimodal = {k[len("unimodal_labels_") :]: z.numeric(k, "f", f32) for k in z.with_prefix("unimodal_labels_")}
    extras = {k[len("extras_") :]: np.ascontiguousarray(z.arrays[k]) for k in z.with_prefix("extras_")}
    if labels.ndim != 1:
        raise DataError(f"{file}: array 'labels' must be 1-D [N], got shape {tuple(labels.shape)}")
    n = int(labels.shape[0])
    if n != info["n"]:
        raise DataError(f"{file}: has {n} labels but {MANIFEST} says n = {info['n']}")
    part = SplitArrays(features=features, lengths=lengths, labels=labels, ids=ids, raw_text=raw_text,
                       class_labels=class_labels, unimodal_labels=unimodal, extras=extras, text_tokens=text_tokens)
    dims = info.get("dims")
    if dims is not None and all(features[m].ndim == 3 for m in MODALITIES) and split_dims(part) != dims:
        raise DataError(f"{file}: feature dims {split_dims(part)} differ from {MANIFEST}'s {dims}")
    return part


def inspect_dataset_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``accord data info FOLDER`` prints for a safe-format folder, read with numpy only: the manifest and
    checksums are verified and the data contract checked exactly as :func:`accord.data.safe.load_dataset_dir`
    does (same one-line errors), then :func:`~accord.data.contract.summarize`."""
    root = Path(path)
    manifest = read_manifest(root)
    splits = {split: read_split(root, split, manifest["splits"][split]) for split in SPLITS}
    class_names = class_names_of(manifest)
    validate_splits(splits, str(root), label_range_of(manifest), class_names)
    return summarize(splits, str(manifest["name"]), str(root), manifest["metric_family"], class_names)
