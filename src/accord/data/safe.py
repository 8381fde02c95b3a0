"""Accord's safe on-disk dataset format: plain ``.npz`` arrays plus a JSON manifest with checksums.

A dataset directory holds::

    manifest.json   {"format": "accord-dataset", "version": 1, "name", "metric_family", "label_range",
                     "class_names", "meta", "splits": {split: {"file", "n", "dims", "seq_lens", "sha256"}}}
    train.npz       features_<m>, lengths_<m>, labels, [class_labels], [unimodal_labels_<m>], [extras_<key>],
    valid.npz       ids, [raw_text], [text_tokens]   (strings as numpy unicode arrays; never object arrays;
    test.npz        text_tokens int64 [N, 3, L] in MMSA's text_bert layout)

Loading never unpickles anything (``np.load(..., allow_pickle=False)``) and verifies every file's SHA-256
against the manifest, so unlike the MMSA pickles (:mod:`accord.data.mmsa`) a downloaded dataset directory
cannot run code. Writes are atomic: everything is written into a temporary directory beside the target, which
replaces an existing target only once it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.errors import ConfigError, DataError
from accord.core.io import read_json_file, write_npz
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MultimodalDataset, SplitData
from accord.data.mmsa import load_mmsa_pickle
from accord.data.registry import DataParams, register_dataset, validate_data_params

FORMAT = "accord-dataset"
VERSION = 1
MANIFEST = "manifest.json"


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_numpy(t: torch.Tensor, what: str) -> np.ndarray:
    try:
        return t.detach().cpu().numpy()
    except TypeError as err:  # e.g. bfloat16
        raise DataError(f"{what}: cannot be stored in .npz ({err})") from None


def _split_arrays(part: SplitData, where: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        arrays[f"features_{m}"] = _to_numpy(part.features[m].float(), f"{where}: features of {m}")
        arrays[f"lengths_{m}"] = _to_numpy(part.lengths[m].long(), f"{where}: lengths of {m}")
    arrays["labels"] = _to_numpy(part.labels.float(), f"{where}: labels")
    if part.class_labels is not None:
        arrays["class_labels"] = _to_numpy(part.class_labels.long(), f"{where}: class labels")
    for m, y in part.unimodal_labels.items():
        arrays[f"unimodal_labels_{m}"] = _to_numpy(y.float(), f"{where}: unimodal labels of {m}")
    for key, v in part.extras.items():
        if not key or "/" in key or "\\" in key:
            raise DataError(f"{where}: extra key {key!r} cannot be a file name inside .npz")
        arrays[f"extras_{key}"] = _to_numpy(v, f"{where}: extra {key!r}")
    arrays["ids"] = np.array([str(i) for i in part.ids], dtype=np.str_)
    if part.raw_text:
        arrays["raw_text"] = np.array([str(t) for t in part.raw_text], dtype=np.str_)
    if part.text_tokens is not None:
        arrays["text_tokens"] = _to_numpy(part.text_tokens.long(), f"{where}: text tokens")
    return arrays


def save_dataset(ds: MultimodalDataset, out_dir: str | os.PathLike[str]) -> Path:
    """Validate ``ds`` and write it to ``out_dir`` in the safe format (atomically); returns the directory.

    An existing ``out_dir`` is replaced only if it is an Accord dataset directory (has ``manifest.json``) or
    empty, and only after the new directory is complete.
    """
    ds.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; expected a dataset directory to write")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise DataError(
            f"{out}: exists, is not empty and has no {MANIFEST}; refusing to replace a directory that "
            "is not an Accord dataset"
        )
    try:
        meta_json = json.loads(json.dumps(ds.meta))
    except (TypeError, ValueError) as err:
        raise DataError(f"{ds.source}: dataset meta is not JSON-serialisable ({err})") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        splits_info: dict[str, Any] = {}
        for split in SPLITS:
            part = ds.splits[split]
            file = tmp / f"{split}.npz"
            write_npz(file, _split_arrays(part, f"{ds.source}: split {split!r}"))
            splits_info[split] = {
                "file": file.name,
                "n": len(part),
                "dims": part.dims(),
                "seq_lens": part.seq_lens(),
                "sha256": _sha256(file),
            }
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "name": ds.name,
            "metric_family": ds.metric_family,
            "label_range": [float(ds.label_range[0]), float(ds.label_range[1])],
            "class_names": list(ds.class_names),
            "source": ds.source,
            "meta": meta_json,
            "splits": splits_info,
        }
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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


def _read_manifest(root: Path) -> dict[str, Any]:
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


def _read_npz(file: Path, split: str, info: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a split's ``.npz`` (never unpickling), after checking the file exists and its checksum."""
    if not file.is_file():
        raise DataError(f"{file}: missing (listed in {MANIFEST} for split {split!r})")
    if _sha256(file) != info["sha256"]:
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
        if key not in self.arrays:
            raise DataError(f"{self.file}: missing array {key!r}")
        return self.arrays[key]

    def tensor(self, key: str, kinds: str) -> torch.Tensor:
        arr = self.need(key)
        if arr.dtype.kind not in kinds:
            raise DataError(f"{self.file}: array {key!r} has dtype {arr.dtype}, expected a numeric array")
        return torch.from_numpy(np.ascontiguousarray(arr))

    def strings(self, key: str, expected: str) -> list[str]:
        arr = self.need(key)
        if arr.dtype.kind != "U":
            raise DataError(f"{self.file}: array {key!r} has dtype {arr.dtype}, expected {expected}")
        return [str(t) for t in arr.tolist()]

    def with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.arrays if k.startswith(prefix)]


def _load_split(root: Path, split: str, info: dict[str, Any]) -> SplitData:
    """Split ``split`` from its ``.npz`` in ``root``, checked against its manifest entry ``info``."""
    file = root / info["file"]
    z = _Arrays(file, _read_npz(file, split, info))
    features = {m: z.tensor(f"features_{m}", "f").float() for m in MODALITIES}
    lengths = {m: z.tensor(f"lengths_{m}", "iu").long() for m in MODALITIES}
    labels = z.tensor("labels", "f").float()
    ids = z.strings("ids", "unicode strings")
    raw_text = z.strings("raw_text", "unicode") if "raw_text" in z.arrays else []
    class_labels = z.tensor("class_labels", "iu").long() if "class_labels" in z.arrays else None
    text_tokens = z.tensor("text_tokens", "iu").long() if "text_tokens" in z.arrays else None
    unimodal = {k[len("unimodal_labels_") :]: z.tensor(k, "f").float() for k in z.with_prefix("unimodal_labels_")}
    extras = {
        k[len("extras_") :]: torch.from_numpy(np.ascontiguousarray(z.arrays[k])) for k in z.with_prefix("extras_")
    }
    if labels.ndim != 1:
        raise DataError(f"{file}: array 'labels' must be 1-D [N], got shape {tuple(labels.shape)}")
    n = int(labels.shape[0])
    if n != info["n"]:
        raise DataError(f"{file}: has {n} labels but {MANIFEST} says n = {info['n']}")
    part = SplitData(
        features=features,
        lengths=lengths,
        labels=labels,
        ids=ids,
        raw_text=raw_text,
        class_labels=class_labels,
        unimodal_labels=unimodal,
        extras=extras,
        text_tokens=text_tokens,
    )
    dims = info.get("dims")
    if dims is not None and all(features[m].ndim == 3 for m in MODALITIES) and part.dims() != dims:
        raise DataError(f"{file}: feature dims {part.dims()} differ from {MANIFEST}'s {dims}")
    return part


def load_dataset_dir(path: str | os.PathLike[str]) -> MultimodalDataset:
    """Load and validate a dataset directory written by :func:`save_dataset` (checksums verified)."""
    root = Path(path)
    manifest = _read_manifest(root)
    splits = {split: _load_split(root, split, manifest["splits"][split]) for split in SPLITS}
    meta = manifest.get("meta") or {}
    meta = dict(meta) if isinstance(meta, dict) else {"meta": meta}
    meta.setdefault("saved_from", manifest.get("source", ""))
    ds = MultimodalDataset(
        name=str(manifest["name"]),
        splits=splits,
        metric_family=manifest["metric_family"],
        label_range=(float(manifest["label_range"][0]), float(manifest["label_range"][1])),
        class_names=[str(c) for c in manifest.get("class_names") or []],
        source=str(root),
        meta=meta,
    )
    return ds.validate()


def _mmsa_options(kw: dict[str, Any]) -> dict[str, Any]:
    """Validate MMSA loader options like ``data.params`` (an unknown key is a ConfigError naming it)."""
    params = validate_data_params("mmsa", kw)
    return {k: getattr(params, k) for k in kw}


def load_any(path: str | os.PathLike[str], **kw: Any) -> MultimodalDataset:
    """Load ``path`` by what it is: ``*.pkl`` → :func:`~accord.data.mmsa.load_mmsa_pickle` (``kw`` are its
    options), a directory with ``manifest.json`` → :func:`load_dataset_dir`."""
    p = Path(path)
    if p.suffix == ".pkl":
        return load_mmsa_pickle(p, **_mmsa_options(kw))
    if p.is_dir() and (p / MANIFEST).is_file():
        if kw:
            raise ConfigError(
                f"{p}: options {sorted(kw)} apply to MMSA pickles only, not to a dataset directory"
            )
        return load_dataset_dir(p)
    if not p.exists():
        raise DataError(f"{p}: not found; expected an MMSA .pkl file or a dataset directory with {MANIFEST}")
    raise DataError(
        f"{p}: unrecognised; expected an MMSA .pkl file or a dataset directory with {MANIFEST} "
        "(written by `accord data convert`)"
    )


def convert_mmsa(
    pkl_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], **kw: Any
) -> MultimodalDataset:
    """Load an MMSA pickle (``kw`` as for :func:`~accord.data.mmsa.load_mmsa_pickle`) and save it to
    ``out_dir`` in the safe format; returns the loaded dataset."""
    ds = load_mmsa_pickle(pkl_path, **_mmsa_options(kw))
    save_dataset(ds, out_dir)
    return ds


class SavedParams(DataParams):
    """``data.params`` of the ``saved`` dataset: none."""


@register_dataset(
    "saved",
    params=SavedParams,
    needs_path=True,
    description="a dataset directory in Accord's safe format (manifest.json + .npz), e.g. from "
    "`accord data convert`",
)
def build_saved(path: str | None, params: SavedParams) -> MultimodalDataset:
    """Registry builder: :func:`load_dataset_dir`."""
    assert path is not None  # build_dataset enforces needs_path
    return load_dataset_dir(path)
