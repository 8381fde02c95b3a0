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
replaces an existing target only once it is complete. Reading (manifest, checksums, the arrays of a split) is
:mod:`accord.data.safe_files`, numpy only; this module turns what it reads into tensors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.errors import ConfigError, DataError
from accord.core.io import write_npz
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MultimodalDataset, SplitData
from accord.data.mmsa import load_mmsa_pickle
from accord.data.params import SavedParams
from accord.data.registry import register_dataset, validate_data_params
from accord.data.safe_files import (
    FORMAT,
    MANIFEST,
    VERSION,
    SplitArrays,
    class_names_of,
    label_range_of,
    read_manifest,
    read_split,
    sha256_file,
)

__all__ = ["FORMAT", "MANIFEST", "VERSION", "SavedParams", "build_saved", "convert_mmsa", "load_any",
           "load_dataset_dir", "save_dataset"]


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


def save_dataset(ds: MultimodalDataset, out_dir: str | os.PathLike[str], keep: Sequence[str] = ()) -> Path:
    """Validate ``ds`` and write it to ``out_dir`` in the safe format (atomically); returns the directory.

    An existing ``out_dir`` is replaced only if it is an Accord dataset directory (has ``manifest.json``) or
    empty, and only after the new directory is complete. ``keep``: names of entries of an existing ``out_dir``
    (e.g. ``accord data import``'s per-clip feature cache ``clips``) carried into the new directory (and not
    counted as foreign content).
    """
    ds.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; expected a dataset directory to write")
    if (out.is_dir() and any(p.name not in keep for p in out.iterdir())
            and not (out / MANIFEST).is_file()):
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
                "sha256": sha256_file(file),
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
        carried = [name for name in keep if (out / name).exists()]
        for name in carried:
            os.rename(out / name, tmp / name)
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
        for name in keep:  # a carried entry goes back where it was
            if (tmp / name).exists() and not (out / name).exists() and out.is_dir():
                os.rename(tmp / name, out / name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _tensors(part: SplitArrays) -> SplitData:
    """A split read by :func:`~accord.data.safe_files.read_split` as tensors (sharing the arrays' memory)."""
    t = torch.from_numpy
    return SplitData(
        features={m: t(v) for m, v in part.features.items()},
        lengths={m: t(v) for m, v in part.lengths.items()},
        labels=t(part.labels),
        ids=part.ids,
        raw_text=part.raw_text,
        class_labels=None if part.class_labels is None else t(part.class_labels),
        unimodal_labels={m: t(v) for m, v in part.unimodal_labels.items()},
        extras={k: t(v) for k, v in part.extras.items()},
        text_tokens=None if part.text_tokens is None else t(part.text_tokens),
    )


def load_dataset_dir(path: str | os.PathLike[str]) -> MultimodalDataset:
    """Load and validate a dataset directory written by :func:`save_dataset` (checksums verified)."""
    root = Path(path)
    manifest = read_manifest(root)
    splits = {split: _tensors(read_split(root, split, manifest["splits"][split])) for split in SPLITS}
    meta = manifest.get("meta") or {}
    meta = dict(meta) if isinstance(meta, dict) else {"meta": meta}
    meta.setdefault("saved_from", manifest.get("source", ""))
    ds = MultimodalDataset(
        name=str(manifest["name"]),
        splits=splits,
        metric_family=manifest["metric_family"],
        label_range=label_range_of(manifest),
        class_names=class_names_of(manifest),
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
