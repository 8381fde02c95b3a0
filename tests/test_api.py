"""The top-level Python API: ``accord.<name>`` is the function ``accord.api.<name>`` whatever was imported before
(the trainer lives in ``accord.training``, the metrics in ``accord.evaluation``: no subpackage shares a name with an
API function), bound lazily so that light modules do not pull the API in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import accord
import accord.evaluation.metrics  # noqa: F401
import accord.studies.benchmark  # noqa: F401
import accord.training.trainer  # noqa: F401
from accord import api


def test_api_names_survive_subpackage_imports(tmp_path: Path) -> None:
    assert accord.train is api.train and accord.evaluate is api.evaluate
    assert accord.load is api.load and accord.load_config is api.load_config
    for name in accord.__all__:
        assert getattr(accord, name) is getattr(api, name), name
        assert callable(getattr(accord, name)) and getattr(api, name).__module__.startswith("accord."), name
    cfg = accord.load_config(method="early_fusion", dataset="conflictbench", overrides=[
        "data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.epochs=1",
        f"output.dir={tmp_path}", "name=r"])
    summary = accord.train(cfg)
    assert summary["test"]["MAE"]["n"] == 1
    model = accord.load(cfg.run_dir)
    assert not model.training
    assert callable(accord.train)
    res = accord.evaluate(cfg.run_dir, write=False)
    assert res["mean_std"]["MAE"]["n"] == 1 and res["markdown"].startswith(f"**{cfg.run_dir}** on test (clean)")
    assert res["saved"] is None and not (cfg.run_dir / "eval_test_clean.json").exists()
    saved = accord.evaluate(cfg.run_dir)["saved"]
    assert saved == str(cfg.run_dir / "eval_test_clean.json")
    assert json.loads(Path(saved).read_text())["mean_std"] == res["mean_std"]


def test_api_is_bound_lazily_and_never_imports_media_packages() -> None:
    """``import accord`` and the core floor do not import the API (nor, through it, the trainer); the whole API,
    the feature extraction and the CLI import none of the optional media packages (one fresh interpreter)."""
    code = ("import sys, accord, accord.core.types, accord.core.errors; "
            "print(sorted(m for m in ('accord.api', 'accord.training', 'accord.models') if m in sys.modules)); "
            "f = accord.train; print(f is sys.modules['accord.api'].train, 'accord.training' in sys.modules); "
            "import accord.features.extract, accord.features.predict, accord.cli; "
            "print(sorted(m for m in ('mediapipe', 'opensmile', 'transformers', 'imageio_ffmpeg', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True True" and out[2] == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no_such_function"):
        accord.no_such_function  # noqa: B018


def test_every_api_module_name_is_not_a_function_name() -> None:
    """``accord.api.<name>`` stays the function even after ``import accord.api.<module>``."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(api.__path__)}
    assert modules and not modules & set(api.__all__)
    assert set(accord.__all__) <= set(api.__all__)
