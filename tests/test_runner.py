"""The studies' one primitive: named configs trained over seeds on a shared dataset, returned as rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from accord.config import load_config
from accord.data.registry import build_dataset
from accord.evaluation.summary import summary_rows
from accord.studies.runner import DatasetCache, finished_rows, rows_table, run_configs, table_metrics, train_seconds

TINY = ["data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.epochs=1",
        "train.batch_size=16", "train.num_threads=1"]


def _cfg(tmp_path: Path, method: str, name: str, *extra: str) -> Any:
    return load_config(method=method, dataset="conflictbench",
                       overrides=[*TINY, f"output.dir={tmp_path}", f"name={name}", *extra])


class CountingBuilder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, path: str | None, params: dict[str, Any]) -> Any:
        self.calls.append((name, dict(params)))
        return build_dataset(name, path, params)


def test_two_configs_share_one_dataset_and_rows_match_the_summaries(tmp_path: Path) -> None:
    builder = CountingBuilder()
    cache = DatasetCache(builder)
    cfgs = {"t": _cfg(tmp_path, "text", "t"), "ef": _cfg(tmp_path, "early_fusion", "ef", "train.seeds=[0, 1]")}
    rows = run_configs(cfgs, progress=False, datasets=cache)
    assert len(builder.calls) == 1 and len(cache) == 1 and builder.calls[0][1]["n_train"] == 64
    assert [r.name for r in rows] == ["t", "ef"] and [r.run_dir for r in rows] == [tmp_path / "t", tmp_path / "ef"]
    for r in rows:
        saved = json.loads((r.run_dir / "summary.json").read_text())
        assert r.test == summary_rows(saved, "test") and r.valid == summary_rows(saved, "valid")
        assert r.seconds == saved["train_seconds"] and r.family == "mosi"
    assert rows[0].test["MAE"][2] == 1 and rows[1].test["MAE"][2] == 2  # n = the seeds
    mean, std, n = rows[1].test["Non0_acc_2"]
    per_seed = [json.loads((tmp_path / "ef" / f"seed_{s}" / "results.json").read_text())["test"]["Non0_acc_2"]
                for s in (0, 1)]
    assert mean == pytest.approx(sum(per_seed) / 2) and n == 2
    assert rows_table(rows) == {"t": rows[0].test, "ef": rows[1].test}
    assert rows_table(rows, "valid")["ef"] == rows[1].valid
    assert train_seconds(rows) == {"t": rows[0].seconds, "ef": rows[1].seconds}
    assert table_metrics(rows) == ["Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Mult_acc_5", "Mult_acc_7",
                                   "MAE", "Corr"]
    # read back without training: the same rows
    again = finished_rows(cfgs)
    assert [(r.name, r.test, r.valid, r.seconds, r.family) for r in again] == \
        [(r.name, r.test, r.valid, r.seconds, r.family) for r in rows]


def test_resume_keeps_finished_seeds(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "text", "t")
    first, = run_configs([("t", cfg)], progress=False)
    results = tmp_path / "t" / "seed_0" / "results.json"
    stamp = results.stat().st_mtime_ns
    second, = run_configs([("t", cfg)], resume=True, progress=False)
    assert results.stat().st_mtime_ns == stamp  # not retrained
    assert second.test == first.test and second.valid == first.valid
    with pytest.raises(Exception, match="run directory exists"):
        run_configs([("t", cfg)], progress=False)  # neither resume nor overwrite: refused


def test_validation_only_and_the_cache_key(tmp_path: Path) -> None:
    builder = CountingBuilder()
    cache = DatasetCache(builder)
    row, = run_configs([("v", _cfg(tmp_path, "text", "v"))], eval_splits=("valid",), progress=False,
                       datasets=cache)
    assert row.test == {} and "MAE" in row.valid
    assert "test" not in json.loads((tmp_path / "v" / "seed_0" / "results.json").read_text())
    # the low-data subset and evaluation corruptions are applied on top: same dataset; other params: a new one
    cache.get(_cfg(tmp_path, "text", "x", "data.train_fraction=0.5", "data.corruption=drop:audio:0.5"))
    assert len(builder.calls) == 1
    cache.get(_cfg(tmp_path, "text", "y", "data.params.conflict_rate=0.5"))
    assert len(builder.calls) == 2 and builder.calls[1][1]["conflict_rate"] == 0.5


def test_repeated_names_are_refused(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "text", "t")
    with pytest.raises(ValueError, match="names repeat: t"):
        run_configs([("t", cfg), ("t", cfg)], progress=False)
