"""Issue 18: ``accord benchmark --folds`` (per-fold and across-fold tables) and the pieces every table and report
carries: the trivial-baseline row, the confusion matrix (classification) and the dataset section. Numbers are checked
against hand computations; the end-to-end test trains 2 methods x 2 seeds x 2 folds for 1 epoch on tiny data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from accord.cli import app
from accord.core.errors import DataError
from accord.data.contract import absent_shares, dataset_record
from accord.data.folds import FOLDS_FILE, write_folds_index
from accord.data.registry import build_dataset
from accord.data.safe import save_dataset
from accord.evaluation.baselines import CONSTANT_ROW, constant_predictor_rows, constant_value
from accord.evaluation.sections import (
    confusion_matrix,
    dataset_markdown,
    run_confusion,
    seed_confusion,
    sum_confusions,
)
from accord.studies.kfold import across_folds, summed_confusion

runner = CliRunner()
N_TEST, NO_AUDIO = 24, 6  # per fold: test samples, and how many of them have their audio planted absent


# ------------------------------------------------------------------------------------------------- across folds
def test_across_folds_is_mean_and_std_over_folds_of_the_per_fold_means() -> None:
    per_fold = [
        {"a": {"MAE": (1.0, 0.5, 3), "Acc": (50.0, 9.0, 3)}, "b": {"MAE": (2.0, 0.0, 3)}},
        {"a": {"MAE": (2.0, 0.1, 3), "Acc": (60.0, 1.0, 3)}},  # b missing in this fold
        {"a": {"MAE": (4.0, 0.2, 3), "Acc": (math.nan, math.nan, 0)}, "b": {"MAE": (3.0, 0.0, 3)}},
    ]
    out = across_folds(per_fold)
    assert list(out) == ["a", "b"]
    mean, std, n = out["a"]["MAE"]
    # means 1, 2, 4: mean 7/3; sample std sqrt(((1-7/3)^2 + (2-7/3)^2 + (4-7/3)^2) / 2) = sqrt(7/3)
    assert (n, mean) == (3, pytest.approx(7 / 3)) and std == pytest.approx(math.sqrt(7 / 3))
    assert out["a"]["Acc"] == (55.0, pytest.approx(math.sqrt(50.0)), 2)  # the NaN fold is left out
    assert out["b"]["MAE"] == (2.5, pytest.approx(math.sqrt(0.5)), 2)  # the seeds' stds are not carried over


# ------------------------------------------------------------------------------------------ trivial baseline row
def test_majority_class_row_by_hand() -> None:
    train = np.array([0, 0, 1, 2, 2, 2])  # majority: class 2
    rows = constant_predictor_rows(train, {"test": np.array([2, 0, 1, 2, 2])}, "classification",
                                   class_names=["neg", "neu", "pos"], seeds=3)
    assert constant_value(train, "classification", 3) == 2.0
    assert rows["test"]["Acc"] == (pytest.approx(60.0), 0.0, 3)  # 3 of 5 test labels are class 2
    # F1 of class 2: precision 3/5, recall 1 -> 2 * 0.6 / 1.6 = 0.75; the other classes 0
    assert rows["test"]["F1_pos"][0] == pytest.approx(75.0) and rows["test"]["F1_neg"][0] == 0.0


def test_train_mean_row_by_hand() -> None:
    train = np.array([1.0, -1.0, 3.0])  # mean 1.0
    rows = constant_predictor_rows(train, {"test": np.array([0.0, 2.0, -2.0])}, "regression", "mosi")
    assert rows["test"]["MAE"][0] == pytest.approx((1 + 1 + 3) / 3)
    assert rows["test"]["Corr"][0] == 0.0 or math.isnan(rows["test"]["Corr"][0])


# ------------------------------------------------------------------------------------------------ confusion matrix
def test_confusion_matrix_by_hand(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1, 2, 2, 1])
    pred = np.array([0, 1, 1, 2, 0, 1])
    want = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows: true class, columns: predicted
    assert confusion_matrix(pred, labels, 3).tolist() == want
    logits = np.eye(3)[pred] * 2.0 - 0.5  # argmax is the predicted class
    assert confusion_matrix(logits, labels, 3).tolist() == want
    assert sum_confusions([want, want]).tolist() == [[2, 2, 0], [0, 4, 0], [2, 0, 2]]  # type: ignore[union-attr]
    with pytest.raises(DataError, match=r"class index outside \[0, 1\]"):
        confusion_matrix(pred, labels, 2)
    # a run: seed 0 recorded its matrix in results.json, seed 1 only has diagnostics.npz (trained before)
    run = tmp_path / "run"
    for s in (0, 1):
        (run / f"seed_{s}").mkdir(parents=True)
    (run / "dataset.json").write_text(json.dumps({"dims": {}, "out_dim": 3, "class_names": ["a", "b", "c"]}))
    (run / "seed_0" / "results.json").write_text(json.dumps({"confusion": {"test": want}}))
    np.savez(run / "seed_1" / "diagnostics.npz", **{"test/prediction": np.eye(3)[[2, 2, 2, 2, 2, 2]],
                                                    "test/label": labels})
    assert seed_confusion({}, run / "seed_1", "test", 3).tolist() == [[0, 0, 2], [0, 0, 2], [0, 0, 2]]  # type: ignore
    matrix, names, seeds = run_confusion(run)  # type: ignore[misc]
    assert (matrix.tolist(), names, seeds) == ([[1, 1, 2], [0, 2, 2], [1, 0, 3]], ["a", "b", "c"], 2)
    (run / "dataset.json").write_text(json.dumps({"dims": {}, "out_dim": 1, "class_names": ["a", "b", "c"]}))
    assert run_confusion(run) is None  # a regression run has none


# ------------------------------------------------------------------------------------------------- dataset section
def test_absent_shares_of_planted_absent_samples() -> None:
    def split(n: int, absent: dict[str, list[int]]) -> SimpleNamespace:
        lengths = {m: np.full(n, 3) for m in ("text", "audio", "visual")}
        for m, rows in absent.items():
            lengths[m][rows] = 0
        return SimpleNamespace(labels=np.zeros(n, dtype=np.float32), lengths=lengths,
                               class_labels=np.array([0, 1, 1, 2][:n] * (n // 4 + 1))[:n])

    splits = {"train": split(8, {"audio": [0, 1], "visual": [7]}), "valid": split(4, {}),
              "test": split(5, {"text": [4], "audio": [0, 1, 2]})}
    shares = absent_shares(splits)
    assert shares["train"] == {"text": 0.0, "audio": 0.25, "visual": 0.125}
    assert shares["test"] == {"text": 0.2, "audio": 0.6, "visual": 0.0}
    rec = dataset_record(splits, ["x", "y", "z"])
    assert rec["n"] == {"train": 8, "valid": 4, "test": 5}
    assert rec["class_counts"]["test"] == {"x": 2, "y": 2, "z": 1}  # labels 0 1 1 2 0
    md = dataset_markdown({"name": "toy", "source": "here", "path": "/d", "class_names": ["x", "y", "z"], **rec})
    assert "| test | 5 | 20.0% | 60.0% | 0.0% | 2 | 2 | 1 |" in md and "data.path `/d`" in md
    assert "not recorded" in dataset_markdown({"name": "old"})
    assert "source here," in md  # a source that is not a path stays as it is
    # the same numbers from torch tensors (the trainer's dataset)
    ds = build_dataset("conflictbench", None, {"n_train": 8, "n_valid": 4, "n_test": 10})
    ds.splits["test"].lengths["visual"][[1, 5, 6]] = 0
    assert absent_shares(ds.splits)["test"] == {"text": 0.0, "audio": 0.0, "visual": pytest.approx(0.3)}


# ------------------------------------------------------------------------------------------------------- the CLI
def _folds(root: Path, k: int = 2) -> Path:
    """A k-fold dataset of tiny 3-class ConflictBench folds; in each fold's test split the first NO_AUDIO samples
    have no audio."""
    for i in range(k):
        ds = build_dataset("conflictbench", None, {"n_train": 48, "n_valid": 24, "n_test": N_TEST, "classes": 3,
                                                   "seed": i})
        test = ds.splits["test"]
        test.lengths["audio"][:NO_AUDIO] = 0
        test.features["audio"][:NO_AUDIO] = 0
        save_dataset(ds, root / f"fold_{i}")
    write_folds_index(root, [f"fold_{i}" for i in range(k)])
    return root


def _one_line_error(args: list[str], pattern: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], res.stderr


def test_folds_and_dataset_together_is_one_line(tmp_path: Path) -> None:
    _one_line_error(["benchmark", "--methods", "text", "--folds", str(tmp_path), "--dataset", "mosi-u"],
                    f"--folds {tmp_path} and --dataset mosi-u: give one")


def test_bad_folds_json_is_one_line_naming_it(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"fold_{i}").mkdir()
        (tmp_path / f"fold_{i}" / "manifest.json").write_text("{}")
    write_folds_index(tmp_path, ["fold_0", "fold_1"])
    index = json.loads((tmp_path / FOLDS_FILE).read_text())
    (tmp_path / FOLDS_FILE).write_text(json.dumps({**index, "k": 3}))
    _one_line_error(["benchmark", "--methods", "text", "--folds", str(tmp_path), "--out", str(tmp_path / "runs")],
                    f"{tmp_path / FOLDS_FILE}: key 'k' is 3 but 'folds' lists 2")
    assert not (tmp_path / "runs").exists()  # refused before anything trained
    _one_line_error(["benchmark", "--methods", "text", "--folds", str(tmp_path / "fold_0")], "folds.json: missing")


def _hand_confusion(run: Path, seeds: list[int]) -> np.ndarray:
    """Counts summed over seeds from each seed's saved test logits and labels, by a plain loop."""
    total = np.zeros((3, 3), dtype=int)
    for s in seeds:
        with np.load(run / f"seed_{s}" / "diagnostics.npz") as z:
            for t, p in zip(z["test/label"], z["test/prediction"].argmax(1), strict=True):
                total[int(t), int(p)] += 1
    return total


def test_cli_benchmark_on_two_folds_end_to_end(tmp_path: Path) -> None:
    folds = _folds(tmp_path / "data")
    out = tmp_path / "runs"
    args = ["benchmark", "--methods", "text,late_fusion", "--folds", str(folds), "--seeds", "2", "--out", str(out),
            "--table", str(tmp_path / "t.md"), "--set", "task.kind=classification", "--set", "train.epochs=1",
            "--set", "train.num_threads=1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    kf = json.loads((out / "kfold.json").read_text())
    assert kf["k"] == 2 and kf["seeds"] == [0, 1] and kf["methods"] == ["text", "late_fusion"]
    md = (out / "kfold.md").read_text()
    assert (tmp_path / "t.md").read_text() == md and "mean ± std over the 2 folds of the per-fold test means" in md
    assert "| method | Acc | F1_weighted | F1_macro | folds |" in md
    # the across-fold table, by hand from each fold's own benchmark.json (test means over 2 seeds)
    fold_tables = [json.loads((out / f"fold_{i}" / "benchmark.json").read_text()) for i in range(2)]
    for method in ("text", "late_fusion"):
        means = [b["test"][method]["Acc"]["mean"] for b in fold_tables]
        assert all(b["test"][method]["Acc"]["n"] == 2 for b in fold_tables)  # 2 seeds within each fold
        got = kf["across_folds"]["test"][method]["Acc"]
        assert got["mean"] == pytest.approx((means[0] + means[1]) / 2)
        assert got["std"] == pytest.approx(abs(means[0] - means[1]) / math.sqrt(2)) and got["n"] == 2
    # the baseline row: majority class of each fold's training labels, scored on its test labels
    shares = []
    for i in range(2):
        with np.load(folds / f"fold_{i}" / "train.npz") as tr, np.load(folds / f"fold_{i}" / "test.npz") as te:
            majority = np.bincount(tr["class_labels"], minlength=3).argmax()
            shares.append(100.0 * float(np.mean(te["class_labels"] == majority)))
        assert kf["per_fold"][i]["constant_predictor"]["Acc"]["mean"] == pytest.approx(shares[i])
    assert kf["across_folds"]["test"][CONSTANT_ROW]["Acc"]["mean"] == pytest.approx(sum(shares) / 2)
    assert md.count(f"| {CONSTANT_ROW} |") == 3  # across folds and in each fold's table
    # confusion matrices: summed over 2 seeds x 2 folds, equal to the counts from the saved predictions
    for method in ("text", "late_fusion"):
        want = sum(_hand_confusion(out / f"fold_{i}" / method, [0, 1]) for i in range(2))
        assert kf["confusion"][method]["matrix"] == want.tolist() and int(want.sum()) == 2 * 2 * N_TEST
    # the dataset section: the planted absent audio, per fold
    info = kf["per_fold"][0]["dataset_info"]
    assert info["absent"]["test"]["audio"] == NO_AUDIO / N_TEST and info["absent"]["train"]["audio"] == 0.0
    assert info["n"] == {"train": 48, "valid": 24, "test": N_TEST} and info["path"] == str(folds / "fold_0")
    assert f"| test | {N_TEST} | 0.0% | 25.0% | 0.0% |" in md
    # a run's own summary: baseline rows, its confusion matrix, the dataset section
    run = out / "fold_1" / "late_fusion"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["confusion"]["test"] == _hand_confusion(run, [0, 1]).tolist()
    assert summary["constant_predictor"]["test"]["Acc"]["mean"] == pytest.approx(shares[1])
    run_md = (run / "summary.md").read_text()
    assert f"| test: {CONSTANT_ROW} |" in run_md and "Confusion matrix on test" in run_md and "## Dataset" in run_md
    # accord evaluate of that run: the same matrix (same checkpoints, same data) and baseline
    from accord import api

    ev = api.evaluate(run, write=False)
    assert ev["confusion"]["matrix"] == summary["confusion"]["test"]
    assert ev["constant_predictor"]["Acc"]["mean"] == pytest.approx(shares[1])
    assert f"| test: {CONSTANT_ROW} |" in ev["markdown"] and "25.0%" in ev["markdown"]
    # the HTML report of the k-fold folder
    html = runner.invoke(app, ["report", str(out)])
    assert html.exit_code == 0, html.output
    page = (out / "report.html").read_text()
    assert "Across folds" in page and "Confusion matrix of late_fusion" in page and "fold_1/late_fusion" in page
    assert page.count(CONSTANT_ROW) >= 3 and "25.0%" in page
    from accord.evaluation.report import build_report

    fold_page = build_report(out / "fold_0")  # one fold: a plain benchmark folder
    assert f"<td>{CONSTANT_ROW}</td>" in fold_page and "Dataset" in fold_page
    assert "Confusion matrix on test" in fold_page
    # resumed: nothing retrained, the same tables
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "kfold.json").read_text())["across_folds"] == kf["across_folds"]


def test_regression_run_summary_has_the_train_mean_row(tmp_path: Path) -> None:
    from accord.config import load_config
    from accord.training.trainer import Trainer

    cfg = load_config(method="text", dataset="conflictbench", overrides=[
        "data.params.n_train=40", "data.params.n_valid=20", "data.params.n_test=20", "train.epochs=1",
        "train.seeds=[0]", f"output.dir={tmp_path}", "name=r"])
    tr = Trainer(cfg, progress=False)
    summary = tr.fit()
    train, test = tr.dataset["train"].labels.numpy(), tr.dataset["test"].labels.numpy()
    mae = float(np.mean(np.abs(test.astype(np.float64) - float(np.mean(train.astype(np.float64))))))
    assert summary["constant_predictor"]["test"]["MAE"]["mean"] == pytest.approx(mae)
    info = json.loads((tmp_path / "r" / "dataset.json").read_text())
    assert info["constant_prediction"] == pytest.approx(float(np.mean(train.astype(np.float64))))
    assert "class_counts" not in info and info["absent"]["test"] == {"text": 0.0, "audio": 0.0, "visual": 0.0}
    md = (tmp_path / "r" / "summary.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| test: {CONSTANT_ROW} |"))
    assert f"| {mae:.3f} ± 0.000 |" in row
    assert "Confusion matrix" not in md and "## Dataset" in md


def test_summed_confusion_over_folds() -> None:
    fold = {"m": {"class_names": ["a", "b"], "matrix": [[1, 2], [3, 4]], "seeds": 2}}
    out = summed_confusion([fold, fold, {}])
    assert out == {"m": {"class_names": ["a", "b"], "matrix": [[2, 4], [6, 8]], "seeds": 4, "folds": 2}}


def test_dataset_source_path_is_shown_relative_to_the_working_directory(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "shared" / "data" / "mosi"
    data.mkdir(parents=True)
    work = tmp_path / "accord"
    work.mkdir()
    monkeypatch.chdir(work)
    md = dataset_markdown({"name": "mosi-u", "source": str(work / ".." / "shared" / "data" / "mosi")})
    assert "source ../shared/data/mosi." in md and str(tmp_path) not in md
    gone = str(tmp_path / "gone")  # not on this machine: shown as recorded
    assert f"source {gone}." in dataset_markdown({"name": "x", "source": gone})
