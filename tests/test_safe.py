"""The safe on-disk format: round trip, checksums, atomic replacement."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.errors import DataError
from accord.core.types import MODALITIES
from accord.data import build_dataset
from accord.data.dataset import MultimodalDataset
from accord.data.safe import MANIFEST, load_any, load_dataset_dir, save_dataset
from conftest import tiny_dataset


def rich_dataset() -> MultimodalDataset:
    """tiny_dataset plus class labels, unimodal labels, extras of several dtypes and unicode raw text."""
    ds = tiny_dataset(n=9)
    ds.class_names = ["neg", "neu", "pos"]
    ds.meta = {"generator": "tiny", "seed": 0, "nested": {"a": [1, 2.5, "x"]}}
    for split, part in ds.splits.items():
        n = len(part)
        part.class_labels = torch.sign(part.labels).long() + 1
        part.unimodal_labels = {m: part.labels * 0.5 for m in MODALITIES}
        part.extras = {
            "conflict": torch.arange(n) % 2 == 0,
            "score": torch.linspace(0, 1, n, dtype=torch.float64),
            "pair": torch.arange(2 * n).reshape(n, 2),
        }
        part.raw_text = [f"{split} ünïcödé 情感 {i} 🙂" for i in range(n)]
        part.raw_text[0] = ""
    return ds


def assert_same(a: MultimodalDataset, b: MultimodalDataset) -> None:
    assert b.name == a.name
    assert b.metric_family == a.metric_family
    assert b.label_range == a.label_range
    assert b.class_names == a.class_names
    for split in ("train", "valid", "test"):
        x, y = a[split], b[split]
        for m in MODALITIES:
            assert torch.equal(x.features[m], y.features[m])
            assert torch.equal(x.lengths[m], y.lengths[m])
        assert torch.equal(x.labels, y.labels)
        assert y.ids == x.ids
        assert y.raw_text == x.raw_text
        if x.class_labels is None:
            assert y.class_labels is None
        else:
            assert y.class_labels is not None and torch.equal(x.class_labels, y.class_labels)
        assert set(y.unimodal_labels) == set(x.unimodal_labels)
        for m in x.unimodal_labels:
            assert torch.equal(x.unimodal_labels[m], y.unimodal_labels[m])
        assert set(y.extras) == set(x.extras)
        for k in x.extras:
            assert y.extras[k].dtype == x.extras[k].dtype
            assert torch.equal(x.extras[k], y.extras[k])


def test_round_trip(tmp_path: Path) -> None:
    ds = rich_dataset()
    out = save_dataset(ds, tmp_path / "ds")
    back = load_dataset_dir(out)
    assert_same(ds, back)
    assert back.meta["nested"] == {"a": [1, 2.5, "x"]}
    assert back.source == str(out)
    assert_same(ds, load_any(out))
    assert_same(ds, build_dataset("saved", str(out)))


def test_manifest_and_no_object_arrays(tmp_path: Path) -> None:
    out = save_dataset(rich_dataset(), tmp_path / "ds")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "accord-dataset"
    assert manifest["version"] == 1
    assert manifest["splits"]["train"]["n"] == 9
    assert manifest["splits"]["train"]["dims"] == {"text": 6, "audio": 4, "visual": 5}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.npz", "train.npz", "valid.npz"]
    with np.load(out / "train.npz", allow_pickle=False) as z:
        assert {
            "features_text",
            "lengths_audio",
            "labels",
            "class_labels",
            "unimodal_labels_visual",
            "extras_conflict",
            "ids",
            "raw_text",
        } <= set(z.files)
        assert all(z[k].dtype != object for k in z.files)
        assert z["ids"].dtype.kind == "U"


def test_checksum_mismatch(tmp_path: Path) -> None:
    out = save_dataset(tiny_dataset(), tmp_path / "ds")
    with np.load(out / "valid.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = arrays["labels"] * 0  # a valid npz with different content
    np.savez(out / "valid.npz", **arrays)
    with pytest.raises(DataError, match="valid.npz: checksum mismatch \\(file changed or corrupt\\)"):
        load_dataset_dir(out)


def test_atomic_replace(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    first = tiny_dataset(seed=1)
    second = tiny_dataset(seed=2)
    save_dataset(first, target)
    save_dataset(second, target)
    assert_same(second, load_dataset_dir(target))
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp or backup directories left


def test_failed_write_keeps_old_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ds"
    first = tiny_dataset(seed=1)
    save_dataset(first, target)
    calls = {"n": 0}
    real_savez = np.savez

    def failing_savez(file: object, **arrays: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(tiny_dataset(seed=2), target)
    assert calls["n"] == 2
    monkeypatch.undo()
    assert_same(first, load_dataset_dir(target))
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("important")
    with pytest.raises(DataError, match="refusing to replace"):
        save_dataset(tiny_dataset(), target)
    assert (target / "notes.txt").read_text() == "important"


def test_corrupt_npz_with_matching_checksum(tmp_path: Path) -> None:
    out = save_dataset(tiny_dataset(), tmp_path / "ds")
    (out / "test.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    manifest = json.loads((out / MANIFEST).read_text())
    import hashlib

    manifest["splits"]["test"]["sha256"] = hashlib.sha256((out / "test.npz").read_bytes()).hexdigest()
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="test.npz: not a readable .npz") as err:
        load_dataset_dir(out)
    assert "\n" not in str(err.value)
    assert zipfile.is_zipfile(out / "train.npz")


def test_meta_must_be_json(tmp_path: Path) -> None:
    ds = tiny_dataset()
    ds.meta["bad"] = object()
    with pytest.raises(DataError, match="not JSON-serialisable"):
        save_dataset(ds, tmp_path / "ds")
    assert not any(tmp_path.iterdir())
