"""Sample ids are unique per dataset (all splits together), checked at load for every source."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.augment.augmented import augment_split, noise_rows
from accord.core.errors import DataError
from accord.data import build_dataset
from accord.data.mmsa import load_mmsa_pickle
from accord.data.safe import MANIFEST, load_dataset_dir, save_dataset
from conftest import tiny_dataset
from test_mmsa import dump, mmsa_dict

MOSI = (768, 5, 20)


def _one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_mmsa_pickle_with_a_repeated_id_is_refused(tmp_path: Path) -> None:
    raw = mmsa_dict(MOSI)
    raw["train"]["id"][3] = raw["train"]["id"][1]  # two train samples, one id
    path = dump(raw, tmp_path / "unaligned_50.pkl")
    for load in (lambda: load_mmsa_pickle(path), lambda: build_dataset("mmsa", str(path))):
        with pytest.raises(DataError) as err:
            load()
        assert _one_line(err) == (
            f"{path}: 1 sample id used more than once: 'vidtrain0$_$1' (train, train); ids must be unique across "
            "train, valid and test"
        )


def test_the_same_id_in_train_and_test_is_refused(tmp_path: Path) -> None:
    raw = mmsa_dict(MOSI)
    raw["test"]["id"][2] = raw["train"]["id"][0]  # a test sample named like a training sample: a leak
    path = dump(raw, tmp_path / "aligned_50.pkl")
    with pytest.raises(DataError) as err:
        load_mmsa_pickle(path)
    assert "1 sample id used more than once: 'vidtrain0$_$0' (train, test);" in _one_line(err)


def test_safe_format_folder_with_duplicate_ids_is_refused(tmp_path: Path) -> None:
    out = save_dataset(tiny_dataset(n=5), tmp_path / "ds")
    file = out / "valid.npz"
    with np.load(file) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["ids"] = np.array(["valid_0", "valid_0", "valid_2", "train_4", "valid_4"])
    np.savez(file, **arrays)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["splits"]["valid"]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()  # checksum is not the guard
    (out / MANIFEST).write_text(json.dumps(manifest))
    for load in (lambda: load_dataset_dir(out), lambda: build_dataset("saved", str(out))):
        with pytest.raises(DataError) as err:
            load()
        assert _one_line(err) == (
            f"{out}: 2 sample ids used more than once: 'train_4' (train, valid), 'valid_0' (valid, valid); ids must "
            "be unique across train, valid and test"
        )


def test_hand_built_dataset_names_the_first_duplicates_and_counts_them(tmp_path: Path) -> None:
    ds = tiny_dataset(n=5)
    ds.splits["valid"].ids = list(ds.splits["train"].ids)  # every valid id repeats a train id
    with pytest.raises(DataError) as err:
        ds.validate()
    assert _one_line(err) == (
        "<memory>: 5 sample ids used more than once: 'train_0' (train, valid), 'train_1' (train, valid), "
        "'train_2' (train, valid) and 2 more; ids must be unique across train, valid and test"
    )
    with pytest.raises(DataError, match="5 sample ids used more than once"):  # and it is never written
        save_dataset(ds, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    ds.splits["valid"].ids = [f"valid_{i}" for i in range(5)]
    assert ds.validate() is ds


def test_ids_compare_as_strings() -> None:
    """The safe format stores ids as strings, so 1 and '1' are the same id."""
    ds = tiny_dataset(n=3)
    ds.splits["train"].ids = [1, 2, 3]  # type: ignore[list-item]
    ds.splits["test"].ids = ["1", "x", "y"]
    with pytest.raises(DataError, match=r"1 sample id used more than once: '1' \(train, test\)"):
        ds.validate()


def test_builtin_sources_have_unique_ids() -> None:
    ds = build_dataset("conflictbench", params={"n_train": 40, "n_valid": 20, "n_test": 20})
    ids = [i for part in ds.splits.values() for i in part.ids]
    assert len(ids) == 80 and len(set(ids)) == 80 and ids[0] == "cb0_train_00000" and ids[-1] == "cb0_test_00019"


def test_generated_rows_get_ids_distinct_from_the_real_ones() -> None:
    """QASA/noise rows are concatenated with the real training rows: their ids (``<real id>#g<variant>``) are new."""
    ds = tiny_dataset(n=4)
    train = ds["train"]
    aug = augment_split(train, noise_rows(train, 2, 0.1, ["audio"]), None)
    assert aug.ids == [*train.ids, *(f"train_{i}#g{v}" for v in range(2) for i in range(4))]
    assert dataclasses.replace(ds, splits={**ds.splits, "train": aug}).validate()["train"].ids == aug.ids
    assert torch.equal(aug.extras["generated"], torch.tensor([0] * 4 + [1] * 8))
