"""Executes docs/add_a_method.md: the model file and config it shows, and its Python-API snippet, must work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from accord import api
from accord.config import Config
from accord.core.errors import ConfigError
from accord.models.base import MODELS, list_models

DOC = Path(__file__).resolve().parents[1] / "docs" / "add_a_method.md"
FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```$', re.S | re.M)
TINY = ["data.params.n_train=96", "data.params.n_valid=48", "data.params.n_test=48", "train.batch_size=16",
        "train.epochs=2", "train.seeds=[0]"]


def blocks() -> list[tuple[str, str | None, str]]:
    """``(language, title, code)`` of every fenced block of the walk-through."""
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(DOC.read_text())]


@pytest.fixture
def unregister() -> Iterator[None]:
    yield
    MODELS._items.pop("mymethod", None)  # the walk-through registers a model globally; undo it


def test_walkthrough_blocks_are_marked() -> None:
    titled = {t: lang for lang, t, _ in blocks() if t}
    assert titled == {"mymethod.py": "python", "configs/mymethod.yaml": "yaml"}


def test_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unregister: None) -> None:
    """Write the model file and config, run the API snippet (tiny data, 2 epochs), check what it promises."""
    files = {t: code for _, t, code in blocks() if t}
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    snippet = next(code for lang, t, code in blocks()
                   if lang == "python" and t is None and "spec_from_file_location" in code)
    assert snippet.count("path/to/") == 2 and 'overrides=["train.seeds=[0, 1]"]' in snippet
    runs = tmp_path / "runs"
    snippet = (snippet.replace('"path/to/mymethod.py"', repr(str(tmp_path / "mymethod.py")))
               .replace('"path/to/mymethod.yaml"', repr(str(tmp_path / "configs" / "mymethod.yaml")))
               .replace('overrides=["train.seeds=[0, 1]"]', f"overrides={[*TINY, f'output.dir={runs}']!r}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": "walkthrough"}
    exec(compile(snippet, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation

    assert "mymethod" in list_models()
    cfg = namespace["cfg"]
    assert isinstance(cfg, Config) and cfg.model.name == "mymethod"
    assert cfg.model.params == {"hidden": 32, "dropout": 0.1}
    summary = namespace["summary"]
    assert isinstance(summary, dict) and summary["method"] == "mymethod" and summary["test"]["MAE"]["n"] == 1
    assert np.isfinite(summary["test"]["MAE"]["mean"])
    rd = cfg.run_dir
    assert (rd / "report.html").is_file() and "mymethod" in (rd / "report.html").read_text()
    # the diagnostics the model promises are saved per test sample
    diag = api.predictions(rd)
    gates = np.stack([diag[f"gate_{m}"] for m in ("text", "audio", "visual")], axis=1)
    assert gates.shape == (48, 3) and np.allclose(gates.sum(axis=1), 1.0, atol=1e-5)
    # evaluation (clean and corrupted) of the trained run, as the doc shows
    res = api.evaluate(rd, corrupt=["drop:audio:1.0"], write=False)
    assert res["mean_std"]["MAE"]["n"] == 1 and np.isfinite(res["mean_std"]["MAE"]["mean"])
    # a wrong key in model.params is a one-line ConfigError naming it
    with pytest.raises(ConfigError, match="model.params.hiden"):
        api.load_config(tmp_path / "configs" / "mymethod.yaml", dataset="conflictbench",
                           overrides=["model.params.hiden=3"])


METHODS_DOC = DOC.parent / "methods.md"


def test_methods_doc_covers_every_model_and_switch() -> None:
    """docs/methods.md: a section per registered model naming each of its switches; every link resolves."""
    text = METHODS_DOC.read_text()
    preamble, *rest = re.split(r"^## ", text, flags=re.M)
    sections = {s.split("\n", 1)[0].strip(): s for s in rest}
    registered = [n for n in list_models() if n != "mymethod"]
    assert set(registered) <= set(sections), sorted(set(registered) - set(sections))
    for name in registered:
        spec = MODELS.get(name)
        # text/audio/visual are `unimodal` with one key fixed: a switch may be documented under any name of its class
        where = [preamble] + [sections[n] for n in registered if MODELS.get(n).cls is spec.cls]
        for key in spec.cls.Params.model_fields:
            if key not in spec.fixed:
                assert any(f"`{key}`" in w for w in where), f"{name}: switch {key} not documented"
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (METHODS_DOC.parent / target).resolve().exists(), target
