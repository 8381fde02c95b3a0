"""Regression labels that are 0/1 classes or all of one sign stop training with one line that names the fix
(issue 18: 0/1 labels trained as scores reported Has0/Non0 accuracy of 100.0 ± 0.0 without a warning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accord.cli import app
from accord.config import load_config
from accord.core.errors import DataError
from accord.data.contract import check_regression_labels
from accord.data.dataset import MultimodalDataset
from accord.data.safe import save_dataset
from accord.training.trainer import Trainer
from conftest import tiny_dataset


def relabel(ds: MultimodalDataset, fn) -> MultimodalDataset:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    return dataclasses.replace(ds, splits={k: dataclasses.replace(v, labels=fn(len(v), g)) for k, v in
                                           ds.splits.items()})


def binary(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float()


def test_check_regression_labels_by_case() -> None:
    check_regression_labels(np.array([-1.5, 0.0, 2.0]), "src")  # both signs, three values: fine
    check_regression_labels(np.array([-1.0, 0.0, 0.0, 1.0]), "src")
    with pytest.raises(DataError, match=r"^src: the training labels take only two values \(0 and 1\): classes "
                                        r"trained as a regression; train it as classes \(task\.kind=classification"):
        check_regression_labels(np.array([0, 1, 1, 0]), "src")
    with pytest.raises(DataError, match=r"only two values \(-1 and 1\)"):  # two values on both sides: still classes
        check_regression_labels(np.array([-1.0, 1.0, 1.0]), "src")
    with pytest.raises(DataError, match=r"^src: every training label is >= 0 \(range 0 to 5\): the sentiment metrics "
                                        r"split at 0 .*centred on 0 .*task\.check_labels=false trains anyway$"):
        check_regression_labels(np.array([0.0, 2.5, 5.0, 1.0]), "src")
    with pytest.raises(DataError, match=r"every training label is <= 0 \(range -3 to -0\.5\)"):
        check_regression_labels(np.array([-3.0, -1.0, -0.5]), "src")


def test_binary_labels_under_regression_stop_before_training(tmp_path: Path) -> None:
    ds = relabel(tiny_dataset(), binary)
    cfg = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=[f"output.dir={tmp_path}", "name=r", "train.epochs=1"])
    with pytest.raises(DataError, match=r"dataset 'tiny', task\.kind=regression: the training labels take only two "
                                        r"values \(0 and 1\)"):
        Trainer(cfg, dataset=ds, progress=False)
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written
    positive = relabel(tiny_dataset(), lambda n, g: torch.rand(n, generator=g) * 5)
    with pytest.raises(DataError, match=r"every training label is >= 0"):
        Trainer(cfg, dataset=positive, progress=False)
    off = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=[f"output.dir={tmp_path}", "name=r", "train.epochs=1", "task.check_labels=false"])
    Trainer(off, dataset=positive, progress=False)  # a rating scale, on purpose: trains


def test_cli_train_on_a_folder_of_01_labels_is_one_line(tmp_path: Path) -> None:
    folder = save_dataset(relabel(tiny_dataset(), binary), tmp_path / "clips")
    res = CliRunner().invoke(app, ["train", "--method", "late_fusion", "--dataset", "saved",
                                   "--set", f"data.path={folder}", "--set", f"output.dir={tmp_path / 'runs'}",
                                   "--set", "train.epochs=1"])
    assert res.exit_code != 0
    err = res.output.strip().splitlines()
    assert len(err) == 1 and "only two values (0 and 1)" in err[0] and "task.kind=classification" in err[0], err
    assert "Traceback" not in res.output


def test_class_counts_are_reported_before_training_and_recorded(tmp_path: Path) -> None:
    import io
    import json

    from rich.console import Console

    out = io.StringIO()
    cfg = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=[f"output.dir={tmp_path}", "name=c", "task.kind=classification", "train.epochs=1",
                                 "data.params.n_train=40", "data.params.n_valid=20", "data.params.n_test=20",
                                 "train.seeds=[0]"])
    tr = Trainer(cfg, progress=False, console=Console(file=out, width=300))
    tr.fit()
    info = json.loads((tmp_path / "c" / "dataset.json").read_text())
    counts = info["class_counts"]
    assert set(counts) == {"train", "valid", "test"} and sum(counts["train"].values()) == 40
    labels = tr.dataset["train"].class_labels
    names = tr.dataset.class_names
    assert counts["train"] == {c: int((labels == k).sum()) for k, c in enumerate(names)}
    top = max(counts["train"], key=lambda c: counts["train"][c])
    share = 100 * counts["train"][top] / 40
    assert f"majority {top!r} is {share:.1f}%" in out.getvalue()
    reg = load_config(method="late_fusion", dataset="conflictbench", overrides=[f"output.dir={tmp_path}", "name=r"])
    assert Trainer(reg, progress=False).class_counts() == {}
