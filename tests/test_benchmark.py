"""Benchmark helpers: the fusion verdict and the conflicting/consistent split, on hand-made inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.studies.benchmark import conflict_split_rows, fusion_verdict


def test_conflict_split_by_hand(tmp_path: Path) -> None:
    for seed, pred in ((0, [1.0, 1.0, 1.0, -1.0, 0.5]), (1, [1.0, -1.0, -1.0, -1.0, 0.5])):
        sd = tmp_path / "m" / f"seed_{seed}"
        sd.mkdir(parents=True)
        np.savez(sd / "diagnostics.npz", **{
            "test/prediction": np.array(pred), "test/label": np.array([1.0, 1.0, -1.0, -1.0, 0.0]),
            "test/extra_conflict": np.array([1, 1, 0, 0, 1], dtype=np.int8)})
    rows = conflict_split_rows({"m": tmp_path / "m"}, [0, 1], "regression")
    # seed 0: conflicting (labels != 0) hits [T, T] -> 100; consistent hits [F, T] -> 50
    # seed 1: conflicting hits [T, F] -> 50;  consistent hits [T, T] -> 100
    mean, std, n = rows["m"]["acc_conflicting"]
    assert (mean, n) == (75.0, 2) and std == pytest.approx(np.std([100, 50], ddof=1))
    assert rows["m"]["acc_consistent"][0] == 75.0


def test_conflict_split_has_the_constant_predictor_row(tmp_path: Path) -> None:
    import json

    from accord.evaluation.baselines import CONSTANT_ROW

    sd = tmp_path / "m" / "seed_0"
    sd.mkdir(parents=True)
    np.savez(sd / "diagnostics.npz", **{
        "test/prediction": np.array([1.0, -1.0, 1.0, -1.0, 0.5]), "test/label": np.array([1.0, 1.0, -1.0, -1.0, 0.0]),
        "test/extra_conflict": np.array([1, 1, 0, 0, 1], dtype=np.int8)})
    (tmp_path / "m" / "dataset.json").write_text(json.dumps({"dims": {}, "out_dim": 1, "constant_prediction": 0.5}))
    rows = conflict_split_rows({"m": tmp_path / "m"}, [0], "regression")
    assert list(rows) == [CONSTANT_ROW, "m"]
    # the constant 0.5 > 0: right on the conflicting labels [1, 1], wrong on the consistent [-1, -1]
    assert rows[CONSTANT_ROW] == {"acc_conflicting": (100.0, 0.0, 1), "acc_consistent": (0.0, 0.0, 1)}
    assert rows["m"]["acc_conflicting"][0] == 50.0 and rows["m"]["acc_consistent"][0] == 50.0
    # the run's recorded constant wins over a given one; a run that recorded none takes the given one (-0.5 < 0:
    # wrong on the conflicting [1, 1], right on the consistent [-1, -1]), and has no such row without it
    assert conflict_split_rows({"m": tmp_path / "m"}, [0], "regression", -0.5)[CONSTANT_ROW] == rows[CONSTANT_ROW]
    (tmp_path / "m" / "dataset.json").write_text(json.dumps({"dims": {}, "out_dim": 1}))
    assert list(conflict_split_rows({"m": tmp_path / "m"}, [0], "regression")) == ["m"]
    assert conflict_split_rows({"m": tmp_path / "m"}, [0], "regression", -0.5)[CONSTANT_ROW] == {
        "acc_conflicting": (0.0, 0.0, 1), "acc_consistent": (100.0, 0.0, 1)}


def test_fusion_verdict_names_winners_and_losers() -> None:
    rows = {"text": {"Non0_acc_2": (77.0, 1.0, 5)}, "audio": {"Non0_acc_2": (55.0, 1.0, 5)},
            "tfn": {"Non0_acc_2": (78.0, 0.5, 5)}, "mult": {"Non0_acc_2": (74.0, 2.0, 5)}}
    v = fusion_verdict(rows, "Non0_acc_2")
    assert "Beat text alone on mean Non0_acc_2: tfn 78" in v and "did not: mult 74" in v and "audio" not in v
    v = fusion_verdict({"text": {"MAE": (0.9, 0.0, 1)}, "tfn": {"MAE": (1.0, 0.0, 1)}}, "MAE")
    assert "No fusion method beats text alone" in v


def test_workers_train_every_method_exactly_as_one_process_does(tmp_path: Path) -> None:
    """`accord benchmark --workers 2`: the methods train in two processes (one thread each) and the table's numbers
    are those of the same benchmark in this process."""
    import json

    from accord.api import benchmark

    tiny = ["data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.epochs=2",
            "train.num_threads=1"]
    one = benchmark(["text", "late_fusion", "early_fusion"], "conflictbench", 2, tmp_path / "one", overrides=tiny)
    two = benchmark(["text", "late_fusion", "early_fusion"], "conflictbench", 2, tmp_path / "two", overrides=tiny,
                    workers=2)
    assert list(two["rows"]) == ["text", "late_fusion", "early_fusion"]
    assert two["rows"] == one["rows"]
    assert "--workers 2" in (tmp_path / "two" / "benchmark.md").read_text()
    pids = {json.loads((tmp_path / "two" / m / "seed_0" / "results.json").read_text()).get("pid")
            for m in ("text", "late_fusion", "early_fusion")}
    assert len(pids) == 2  # two worker processes shared the three methods


def test_a_failing_method_in_a_worker_is_one_line_naming_it(tmp_path: Path) -> None:
    from accord.api import benchmark
    from accord.studies.parallel import WorkerError

    # a selection metric a regression run does not compute: the config loads, the worker's trainer refuses it
    bad = ["data.params.n_train=64", "train.epochs=1", "train.early_stopping.metric=F1_negative"]
    with pytest.raises(WorkerError, match=r"study config '\w+' failed in a worker process: ConfigError: "
                                          r"train.early_stopping.metric") as err:
        benchmark(["text", "late_fusion"], "conflictbench", 1, tmp_path, overrides=bad, workers=2)
    assert "\n" not in str(err.value)
