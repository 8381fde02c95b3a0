"""Seed aggregation, table rendering and atomic result files."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.errors import DataError
from accord.core.io import atomic_write_bytes, atomic_write_text, write_json
from accord.evaluation.summary import (
    aggregate,
    csv_rows,
    format_mean_std,
    markdown_table,
    write_csv,
    write_markdown,
)

# ------------------------------------------------------------------------------------------- aggregate


def test_aggregate_mean_and_sample_std() -> None:
    # [1, 2, 3]: mean 2; deviations -1, 0, 1 -> sum of squares 2 / (n - 1 = 2) = 1 -> std 1.0
    # [77.0, 78.0, 79.5]: mean 78.1667; squares 1.3611 + 0.0278 + 1.7778 = 3.1667; / 2 -> 1.5833; sqrt 1.2583
    out = aggregate([{"Acc": 1.0, "F1": 77.0}, {"Acc": 2.0, "F1": 78.0}, {"Acc": 3.0, "F1": 79.5}])
    assert out["Acc"] == pytest.approx((2.0, 1.0, 3))
    mean, std, n = out["F1"]
    assert (mean, std, n) == pytest.approx((78.1667, 1.2583, 3), abs=1e-4)


def test_aggregate_ignores_nan_and_missing_metrics() -> None:
    # MAE: only 0.9 and 1.1 are finite -> mean 1.0, std sqrt(((-0.1)^2 + 0.1^2) / 1) = 0.141421, n 2
    # Corr: present in one seed only -> std 0.0, n 1
    # Non0_acc_2: never finite -> (nan, nan, 0)
    out = aggregate([
        {"MAE": 0.9, "Non0_acc_2": math.nan, "Corr": 0.5},
        {"MAE": math.nan, "Non0_acc_2": math.nan},
        {"MAE": 1.1, "Non0_acc_2": math.inf},
    ])
    assert out["MAE"] == pytest.approx((1.0, math.sqrt(0.02), 2))
    assert out["Corr"] == (0.5, 0.0, 1)
    mean, std, n = out["Non0_acc_2"]
    assert math.isnan(mean) and math.isnan(std) and n == 0
    assert list(out) == ["MAE", "Non0_acc_2", "Corr"]


def test_aggregate_single_seed_has_zero_std() -> None:
    assert aggregate([{"Acc": 81.5}]) == {"Acc": (81.5, 0.0, 1)}


def test_aggregate_rejects_non_numbers() -> None:
    with pytest.raises(DataError, match="metric 'Acc' of seed #1 is not a number"):
        aggregate([{"Acc": 1.0}, {"Acc": "high"}])  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------- formatting


def test_format_mean_std() -> None:
    assert format_mean_std(77.94, 0.42, "Has0_acc_2") == "77.9 ± 0.4"
    assert format_mean_std(80.06, 1.26, "Non0_F1") == "80.1 ± 1.3"
    assert format_mean_std(0.9531, 0.0123, "MAE") == "0.953 ± 0.012"
    assert format_mean_std(0.6989, 0.0004, "Corr") == "0.699 ± 0.000"
    assert format_mean_std(math.nan, math.nan, "MAE") == "n/a"
    assert format_mean_std(72.0, math.nan, "Acc") == "72.0"


def _cells(table: str) -> dict[str, list[str]]:
    """Row key -> the cells after the key, from a Markdown table (header and rule skipped)."""
    rows = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


ROWS = {
    "early": {"Has0_acc_2": (77.9, 0.4, 3), "MAE": (0.953, 0.012, 3)},
    "late": {"Has0_acc_2": (79.2, 0.6, 3), "MAE": (0.981, 0.020, 3)},
    "tfn": {"Has0_acc_2": (78.4, 0.3, 2), "MAE": (0.962, 0.011, 3)},
}


def test_markdown_bolds_best_per_metric_mode() -> None:
    table = markdown_table(ROWS, ["Has0_acc_2", "MAE"])
    lines = table.strip().splitlines()
    assert lines[0] == "| method | Has0_acc_2 | MAE | seeds |"
    cells = _cells(table)
    # Has0_acc_2 is "max": late (79.2) wins; MAE is "min": early (0.953) wins
    assert cells["late"][0] == "**79.2 ± 0.6**"
    assert cells["early"][0] == "77.9 ± 0.4"
    assert cells["early"][1] == "**0.953 ± 0.012**"
    assert cells["late"][1] == "0.981 ± 0.020"
    assert table.count("**") == 4  # exactly two bold cells
    # seeds column: n per row, a range when metrics were aggregated over different seed counts
    assert cells["early"][2] == "3"
    assert cells["tfn"][2] == "2-3"


def test_markdown_without_bold_and_with_missing_metric() -> None:
    rows = {**ROWS, "mult": {"MAE": (0.9, 0.0, 1)}}
    table = markdown_table(rows, ["Has0_acc_2", "MAE"], first_col="model", bold_best=False)
    assert "**" not in table
    assert table.startswith("| model |")
    assert _cells(table)["mult"] == ["n/a", "0.900 ± 0.000", "1"]


def test_csv_rows_and_write_csv(tmp_path: Path) -> None:
    records = csv_rows({"early": ROWS["early"], "mult": {"MAE": (0.9, 0.0, 1)}}, ["Has0_acc_2", "MAE"])
    assert records[0] == {"method": "early", "Has0_acc_2_mean": 77.9, "Has0_acc_2_std": 0.4,
                          "MAE_mean": 0.953, "MAE_std": 0.012, "seeds": "3"}
    assert math.isnan(float(records[1]["Has0_acc_2_mean"]))

    path = tmp_path / "results.csv"
    write_csv(path, {"early": ROWS["early"], "mult": {"MAE": (0.9, 0.0, 1)}}, ["Has0_acc_2", "MAE"])
    with path.open(newline="") as fh:
        read = list(csv.DictReader(fh))
    assert float(read[0]["MAE_mean"]) == 0.953
    assert read[1]["Has0_acc_2_mean"] == ""  # NaN is written as an empty cell
    assert read[1]["seeds"] == "1"


def test_write_markdown(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "table.md"
    write_markdown(path, markdown_table(ROWS, ["MAE"]))
    assert path.read_text(encoding="utf-8").startswith("| method | MAE | seeds |")


# ------------------------------------------------------------------------------------------- atomic io


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old content that is longer than the new one\n", encoding="utf-8")
    atomic_write_text(path, "new ± text\n")
    assert path.read_text(encoding="utf-8") == "new ± text\n"
    assert os.listdir(tmp_path) == ["out.txt"]
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n", encoding="utf-8")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new\n")
    assert path.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "perm.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "perm.txt").stat().st_mode & 0o777 == 0o644


def test_write_json_turns_nan_into_null(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {
        "MAE": 0.5, "Non0_acc_2": math.nan, "Corr": -math.inf, "n": np.int64(3),
        "f32": np.float32(0.25), "curve": (1.0, math.nan), "t": torch.tensor([0.5, float("nan")]),
        "arr": np.array([[1.0, np.inf]]), "dir": tmp_path,
    })
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert text.startswith('{\n  "MAE": 0.5,')  # indent=2
    assert json.loads(text) == {
        "MAE": 0.5, "Non0_acc_2": None, "Corr": None, "n": 3, "f32": 0.25, "curve": [1.0, None],
        "t": [0.5, None], "arr": [[1.0, None]], "dir": str(tmp_path),
    }
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_write_json_rejects_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot serialise a value of type object"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
