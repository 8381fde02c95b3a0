"""Executes docs/add_a_method.md: the model file, the optional method config and the Python-API snippet it shows must
work, and the defaults must come from where it says (the code, then only what the config file sets)."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from accord import api
from accord import config as config_module
from accord.config import Config
from accord.core.errors import ConfigError
from accord.core.hooks import HOOKS, HookRequest, hook_params
from accord.core.rundir import read_log
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
    sys.modules.pop("mymethod", None)


MODEL_FILE = "mymethod.py"
METHOD_YAML = "configs/methods/mymethod.yaml"


def test_walkthrough_blocks_are_marked() -> None:
    titled = {t: lang for lang, t, _ in blocks() if t}
    assert titled == {MODEL_FILE: "python", METHOD_YAML: "yaml"}


def _write_files(tmp_path: Path) -> dict[str, Path]:
    files = {t: code for _, t, code in blocks() if t}
    out = {}
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
        out[name] = tmp_path / name
    return out


def _layers(shown: str) -> dict[str, str]:
    """``{"dotted.key: value": layer}`` of ``accord config show`` output (two spaces of indent per level)."""
    out: dict[str, str] = {}
    path: list[str] = []
    for line in shown.splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        path = path[:depth]
        if "#" not in line:
            path.append(line.strip().rstrip(":"))
            continue
        text, layer = line.split("#", 1)
        out[".".join([*path, text.strip()])] = layer.strip()
    return out


def test_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                          unregister: None) -> None:
    """Write the model file and config, run the API snippet (tiny data, 2 epochs), check what it promises."""
    files = _write_files(tmp_path)
    snippet = next(code for lang, t, code in blocks()
                   if lang == "python" and t is None and "spec_from_file_location" in code)
    assert snippet.count('"path/to/mymethod.py"') == 1 and snippet.count('"path/to/mymethod.yaml"') == 2
    assert 'overrides=["train.seeds=[0, 1]"]' in snippet
    runs = tmp_path / "runs"
    snippet = (snippet.replace('"path/to/mymethod.py"', repr(str(files[MODEL_FILE])))
               .replace('"path/to/mymethod.yaml"', repr(str(files[METHOD_YAML])))
               .replace('overrides=["train.seeds=[0, 1]"]', f"overrides={[*TINY, f'output.dir={runs}']!r}"))
    assert "path/to/" not in snippet
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": "walkthrough"}
    exec(compile(snippet, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation

    assert "mymethod" in list_models()
    cfg = namespace["cfg"]
    assert isinstance(cfg, Config) and cfg.model.name == "mymethod"
    # every default comes from the code: Params and default_loss_weights; the file adds only what differs
    assert {k: v for k, v in cfg.model.params.items() if k != "text_encoder"} == {"hidden": 32, "dropout": 0.1}
    assert cfg.model.params["text_encoder"]["source"] == "features"  # every model's text branch: features by default
    assert cfg.loss_weights == {"task": 1.0, "gate_balance": 0.01}
    assert cfg.train.lr == 0.003 and cfg.train.epochs == 2
    shown = _layers(capsys.readouterr().out)
    assert shown["train.lr: 0.003"] == f"file: {files[METHOD_YAML]}"
    assert shown["model.params.hidden: 32"] == "default: mymethod.GatedMean.Params"
    assert shown["loss_weights.gate_balance: 0.01"] == "default: mymethod.GatedMean.default_loss_weights"
    assert shown["train.epochs: 20"] == "dataset: accord/configs/datasets/conflictbench.yaml"
    summary = namespace["summary"]
    assert isinstance(summary, dict) and summary["method"] == "mymethod" and summary["test"]["MAE"]["n"] == 1
    assert np.isfinite(summary["test"]["MAE"]["mean"])
    rd = cfg.run_dir
    assert (rd / "report.html").is_file() and "mymethod" in (rd / "report.html").read_text()
    # the model's unweighted loss is weighted by the trainer and logged per epoch
    epochs = read_log(rd / "seed_0" / "log.jsonl", "epoch")
    assert len(epochs) == 2 and all(np.isfinite(e["loss/gate_balance"]) for e in epochs)
    assert all(-0.012 < e["loss/gate_balance"] <= 0.0 for e in epochs)  # 0.01 x (-entropy of 3 weights)
    # the diagnostics the model promises are saved per test sample
    diag = api.predictions(rd)
    gates = np.stack([diag[f"gate_{m}"] for m in ("text", "audio", "visual")], axis=1)
    assert gates.shape == (48, 3) and np.allclose(gates.sum(axis=1), 1.0, atol=1e-5)
    # evaluation (clean and corrupted) of the trained run, as the doc shows
    res = api.evaluate(rd, corrupt=["drop:audio:1.0"], write=False)
    assert res["mean_std"]["MAE"]["n"] == 1 and np.isfinite(res["mean_std"]["MAE"]["mean"])
    # without the optional file the method runs on its code defaults and the dataset's
    bare = api.load_config(method="mymethod", dataset="conflictbench")
    assert bare.model.params == cfg.model.params and bare.train.lr == 0.002
    # a wrong key in model.params is a one-line ConfigError naming it
    with pytest.raises(ConfigError, match="model.params.hiden"):
        api.load_config(files[METHOD_YAML], method="mymethod", dataset="conflictbench",
                        overrides=["model.params.hiden=3"])


def test_walkthrough_packaged_method_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          unregister: None) -> None:
    """Saved as the doc says, ``configs/methods/mymethod.yaml`` is found by ``--method mymethod`` (layer 3) and
    named as the source of what it sets."""
    files = _write_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("mymethod")  # the registry line's effect
    packaged = tmp_path / "package_configs"  # a copy of the packaged folder with the method's file added
    (packaged / "datasets").mkdir(parents=True)
    (packaged / "datasets" / "conflictbench.yaml").write_text(
        config_module.packaged_configs().joinpath("datasets", "conflictbench.yaml").read_text(encoding="utf-8"))
    (packaged / "methods").mkdir()
    (packaged / "methods" / "mymethod.yaml").write_text(files[METHOD_YAML].read_text())
    monkeypatch.setattr(config_module, "packaged_configs", lambda: packaged)
    cfg = api.load_config(method="mymethod", dataset="conflictbench")
    assert cfg.train.lr == 0.003
    assert {k: v for k, v in cfg.model.params.items() if k != "text_encoder"} == {"hidden": 32, "dropout": 0.1}
    shown = _layers(api.config_show("mymethod", "conflictbench", overrides=["train.lr=0.001"]))
    assert shown["train.lr: 0.001"] == "--set train.lr=0.001"
    shown = _layers(api.config_show("mymethod", "conflictbench"))
    assert shown["train.lr: 0.003"] == "method: accord/configs/methods/mymethod.yaml"
    assert shown["model.params.dropout: 0.1"] == "default: mymethod.GatedMean.Params"


def test_walkthrough_hook_request_is_valid() -> None:
    """The hook the doc's ``required_hooks`` example names exists and takes those parameters."""
    import accord.balance  # noqa: F401 - registers the built-in hooks

    code = next(code for lang, t, code in blocks() if lang == "python" and "def required_hooks" in code)
    found = re.findall(r"HookRequest\((\"\w+\"), (\{.*?\})\)", code)
    assert len(found) == 1
    request = HookRequest(ast.literal_eval(found[0][0]), ast.literal_eval(found[0][1]))
    hook_params(request, "docs/add_a_method.md")
    assert request.name in HOOKS


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
