"""The top-level Python API: ``accord.train``/``accord.evaluate`` are the API functions whatever was imported before
(the trainer lives in ``accord.training``, the metrics in ``accord.evaluation``: no subpackage shares a name with an
API function)."""

from __future__ import annotations

from pathlib import Path

import accord
import accord.evaluation.metrics  # noqa: F401
import accord.studies.benchmark  # noqa: F401
import accord.training.trainer  # noqa: F401


def test_api_names_survive_subpackage_imports(tmp_path: Path) -> None:
    assert accord.train.__module__ == "accord.api" and accord.evaluate.__module__ == "accord.api"
    cfg = accord.load_config(method="early_fusion", dataset="conflictbench", overrides=[
        "data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.epochs=1",
        f"output.dir={tmp_path}", "name=r"])
    summary = accord.train(cfg)
    assert summary["test"]["MAE"]["n"] == 1
    model = accord.load(cfg.run_dir)
    assert not model.training
    assert callable(accord.train)
