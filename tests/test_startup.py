"""Start-up cost: the light commands (``accord --help``, ``accord list``, ``accord data info FOLDER``, ``accord config
show``) never import torch, scikit-learn or scipy (each is run in a fresh interpreter that reports its
``sys.modules`` at exit), the static tables they read stay in sync with the real registries (``accord list``'s
catalog; the torch-free declarations a config is resolved from: every built-in method's, dataset's and hook's
parameters), and ``data info`` read with numpy only prints what loading the dataset prints. Timings:
``benchmarks/startup.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from accord.api import catalog
from accord.core.errors import DataError
from accord.data.safe import load_dataset_dir, save_dataset
from accord.data.safe_files import inspect_dataset_dir
from conftest import rewrite_npz, tiny_dataset

HEAVY = ("torch", "sklearn", "scipy")
"""Packages a light command must never import (the top-level names of ``sys.modules`` entries)."""

_REPORT = """
import json, sys
heavy_names, report, args = sys.argv[1].split(","), sys.argv[2], sys.argv[3:]
from accord.cli import app
try:
    app(args, prog_name="accord")
    code = 0
except SystemExit as stop:
    code = stop.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(heavy_names))
with open(report, "w") as fh:
    json.dump({"code": code, "heavy": heavy}, fh)
"""
"""Run as ``python -c _REPORT HEAVY,NAMES REPORT.json ARGS...``: ``accord ARGS``, then which of the heavy packages
are in ``sys.modules``, written to the report."""


def _dataset_dir(root: Path) -> Path:
    """A tiny safe-format dataset (class labels, text tokens and an extra included) under ``root``."""
    ds = tiny_dataset(n=6)
    ds.class_names = ["negative", "neutral", "positive"]
    for k, part in enumerate(ds.splits.values()):
        part.class_labels = (part.labels.sign() + 1).long()
        tokens = np.zeros((len(part), 3, 4), dtype=np.int64)
        tokens[:, 0, :2], tokens[:, 1, :2] = 7 + k, 1
        part.text_tokens = torch.from_numpy(tokens)
        part.extras["conflict"] = torch.zeros(len(part))
    return save_dataset(ds, root / "ds")


def _run(args: tuple[str, ...], cwd: Path) -> dict[str, Any]:
    """Run ``accord ARGS`` in a fresh interpreter: its exit code, output and the heavy packages it imported."""
    report = Path(tempfile.mkstemp(suffix=".json", dir=cwd)[1])
    proc = subprocess.run([sys.executable, "-c", _REPORT, ",".join(HEAVY), str(report), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert report.stat().st_size, proc.stderr[-2000:]
    return {**json.loads(report.read_text()), "stdout": proc.stdout, "stderr": proc.stderr}


COMMANDS: dict[str, tuple[str, ...]] = {
    "help": ("--help",),
    "list": ("list",),
    "data info": ("data", "info", "DATASET"),
    "config show": ("config", "show", "--method", "tfn", "--dataset", "mosi-u"),
}
"""The commands measured (``DATASET``: the tiny safe-format folder); all are light."""
LIGHT = list(COMMANDS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every command of :data:`COMMANDS`, each in its own fresh interpreter, all at once; ``folder`` is the dataset
    ``data info`` read."""
    root = tmp_path_factory.mktemp("startup")
    folder = _dataset_dir(root)
    args = {name: tuple(str(folder) if a == "DATASET" else a for a in command) for name, command in COMMANDS.items()}
    with ThreadPoolExecutor(len(args)) as pool:
        futures = {name: pool.submit(_run, command, root) for name, command in args.items()}
    return {name: {**future.result(), "args": args[name], "folder": folder} for name, future in futures.items()}


@pytest.mark.parametrize("command", LIGHT)
def test_light_commands_never_import_torch_sklearn_or_scipy(command: str, runs: dict[str, dict[str, Any]]) -> None:
    res = runs[command]
    assert res["code"] == 0, res["stderr"]
    assert res["heavy"] == [], f"accord {' '.join(res['args'])} imported {res['heavy']}"


def test_the_light_commands_print_what_they_printed(runs: dict[str, dict[str, Any]]) -> None:
    """The same output as before the start-up work: the list lines, and data info's JSON equals the loaded
    dataset's summary."""
    from accord import api

    names = api.registered()
    assert runs["list"]["stdout"].splitlines() == [
        f"models:   {', '.join(names['models'])}", f"datasets: {', '.join(names['datasets'])}",
        f"hooks:    {', '.join(names['hooks'])}"]
    folder = runs["data info"]["folder"]
    assert json.loads(runs["data info"]["stdout"]) == load_dataset_dir(folder).summary()
    assert "Usage: accord" in runs["help"]["stdout"]


def test_config_show_prints_what_it_printed(runs: dict[str, dict[str, Any]]) -> None:
    """Resolved without torch, ``config show`` prints what this process (every registry imported) prints, and the
    defaults still name the model class and the loader module."""
    import accord.balance  # noqa: F401
    import accord.models  # noqa: F401
    from accord import api
    from accord.core.hooks import HOOKS
    from accord.data.registry import DATASETS
    from accord.models.base import MODELS

    assert "tfn" in MODELS and "mosi-u" in DATASETS and "ogm_ge" in HOOKS  # the registries are loaded here
    res = runs["config show"]
    assert res["stdout"] == api.config_show("tfn", "mosi-u")
    assert "fusion_dim: 16" in res["stdout"] and "# default: accord.models.tfn.TFN.Params" in res["stdout"]
    assert "# default: accord.data.mosi_u.MosiUParams" in res["stdout"]


_RESOLVE = """
import json, sys
from accord.balance.params import BUILTIN_HOOKS
from accord.config import load_config
from accord.data.params import BUILTIN_DATASETS
from accord.models.params import BUILTIN_MODELS
heavy_names, report = sys.argv[1].split(","), sys.argv[2]
hooks = "[" + ", ".join("{name: %s}" % name for name in BUILTIN_HOOKS) + "]"
resolved = {}
for model in BUILTIN_MODELS:
    for dataset in BUILTIN_DATASETS:
        cfg = load_config(method=model, dataset=dataset, overrides=[f"train.hooks={hooks}"])
        resolved[f"{model}/{dataset}"] = cfg.to_dict()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(heavy_names))
with open(report, "w") as fh:
    json.dump({"heavy": heavy, "resolved": resolved}, fh)
"""
"""Run as ``python -c _RESOLVE HEAVY,NAMES REPORT.json``: resolve every built-in method on every built-in dataset
with every built-in hook switched on, then report the heavy packages in ``sys.modules`` and the resolved configs."""


def test_every_builtin_method_dataset_and_hook_resolves_without_torch(tmp_path: Path) -> None:
    """A built-in whose parameters are not findable without torch (its declaration missing from the tables, or
    importing torch) fails here; and each config resolves to what it resolves to with every registry loaded."""
    import accord.balance  # noqa: F401
    import accord.models  # noqa: F401
    from accord.config import load_config

    report = tmp_path / "resolve.json"
    proc = subprocess.run([sys.executable, "-c", _RESOLVE, ",".join(HEAVY), str(report)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(report.read_text())
    assert res["heavy"] == [], f"resolving the built-in configs imported {res['heavy']}"
    model, dataset = "cpsl", "mosi-u"  # one with a model-named hook, checked here with torch and the registries
    hooks = json.loads(json.dumps(res["resolved"][f"{model}/{dataset}"]["train"]["hooks"]))
    cfg = load_config(method=model, dataset=dataset, overrides=[f"train.hooks={json.dumps(hooks)}"])
    assert res["resolved"][f"{model}/{dataset}"] == cfg.to_dict()
    assert len(res["resolved"]) == len(catalog.MODELS) * len(catalog.DATASETS)


_MODELS_ONLY = """
import sys, torch
from accord.models import create_model, list_models
from conftest import tiny_dataset
batch = tiny_dataset(n=4, dims=(6, 4, 5))["train"].batch(torch.arange(4))
for name in list_models():
    model = create_model(name, {"text": 6, "audio": 4, "visual": 5}, 1).eval()
    with torch.no_grad():
        model(batch)
print(sorted(m for m in ("torch._dynamo", "torch._inductor") if m in sys.modules))
"""


def test_building_and_running_every_model_never_imports_the_compiler_stack() -> None:
    """Importing, building and running every registered model (what ``accord evaluate``, ``predict`` and the server
    do before any optimiser exists) imports neither TorchDynamo nor inductor: about a second of start-up. A model's
    deliberate graph breaks are named in ``eager_methods`` and wrapped only when a model is compiled; a
    ``@torch.compiler.disable`` on a method imports the stack with the model's module."""
    proc = subprocess.run([sys.executable, "-c", _MODELS_ONLY], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_declarations_are_what_the_registries_hold() -> None:
    """The torch-free tables a config is resolved from (:data:`accord.models.params.BUILTIN_MODELS`,
    :data:`accord.data.params.BUILTIN_DATASETS`, :data:`accord.balance.params.BUILTIN_HOOKS`) name exactly the
    registered built-ins, each with what its registered class or builder uses: a model class inherits its
    declaration's ``Params``, ``default_loss_weights``, ``text_pooling`` and ``required_hooks`` unchanged."""
    import accord.balance  # noqa: F401
    import accord.models  # noqa: F401
    from accord.balance.params import BUILTIN_HOOKS
    from accord.core.hooks import HOOKS
    from accord.data.params import BUILTIN_DATASETS
    from accord.data.registry import DATASETS
    from accord.models.base import MODELS
    from accord.models.params import BUILTIN_MODELS, declared

    def where(obj: Any) -> str:
        return f"{obj.__module__}:{obj.__qualname__}"

    def builtin(names: list[str], place: Any) -> list[str]:  # leave out what a test registered
        return sorted(n for n in names if where(place(n)).startswith("accord."))

    assert sorted(BUILTIN_MODELS) == builtin(MODELS.names(), lambda n: MODELS.get(n).cls)
    for name, entry in BUILTIN_MODELS.items():
        spec, decl = MODELS.get(name), declared(name).declaration
        assert entry.where == where(spec.cls) and entry.fixed == spec.fixed, name
        assert issubclass(spec.cls, decl), f"{where(spec.cls)} does not inherit {entry.declaration}"
        for attr in ("Params", "default_loss_weights", "text_pooling"):
            assert getattr(spec.cls, attr) is getattr(decl, attr), f"{name}: {attr} set in the model class"
        assert spec.cls.required_hooks.__func__ is decl.required_hooks.__func__, name  # type: ignore[attr-defined]
    assert sorted(BUILTIN_DATASETS) == builtin(DATASETS.names(), lambda n: DATASETS.get(n).build)
    for name, data in BUILTIN_DATASETS.items():
        assert (data.where, data.params) == (where(DATASETS.get(name).build), DATASETS.get(name).params), name
    assert sorted(BUILTIN_HOOKS) == builtin(HOOKS.names(), lambda n: HOOKS.get(n).cls)
    for name, hook in BUILTIN_HOOKS.items():
        spec = HOOKS.get(name)
        assert (hook.where, hook.params) == (where(spec.cls), spec.params), name
        assert hook.default_loss_weights == spec.cls.default_loss_weights, name


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps", "xpu", "meta", "cpu:0", "cuda:1", "cuda:12", "mps:0",
                                    "cuda:01", "cuda:", "CUDA", "gpu", "hpu", "cuda:-1", " cuda", "cuda:1 "])
def test_a_device_is_checked_as_torch_checks_it(device: str) -> None:
    """``train.device`` in a common form is taken without importing torch (:data:`accord.config._COMMON_DEVICE`),
    only where ``torch.device`` takes it; anything else is asked of torch."""
    from accord.config import _COMMON_DEVICE, TrainConfig
    from accord.core.errors import ConfigError

    try:
        torch.device(device)
        valid = True
    except (RuntimeError, ValueError):
        valid = False
    if _COMMON_DEVICE.fullmatch(device):
        assert valid, device
    try:
        TrainConfig(device=device)
        accepted = True
    except (ValueError, ConfigError):
        accepted = False
    assert accepted == valid, device


def test_the_catalog_names_every_registered_model_dataset_and_hook() -> None:
    """:mod:`accord.api.catalog` (what ``accord list`` prints without importing them) names exactly the registered
    built-ins, each at the place it is registered from; datasets with their builder's own description."""
    import accord.balance  # noqa: F401
    import accord.models  # noqa: F401
    from accord.core.hooks import HOOKS
    from accord.data.registry import DATASETS
    from accord.models.base import MODELS

    def where(obj: Any) -> str:
        return f"{obj.__module__}:{obj.__qualname__}"

    def builtin(places: dict[str, str]) -> dict[str, str]:  # leave out what a test registered
        return {n: w for n, w in places.items() if w.startswith("accord.")}

    assert {n: e.where for n, e in catalog.MODELS.items()} == builtin({n: where(MODELS.get(n).cls)
                                                                      for n in MODELS.names()})
    assert {n: e.where for n, e in catalog.DATASETS.items()} == builtin({n: where(DATASETS.get(n).build)
                                                                        for n in DATASETS.names()})
    assert {n: e.where for n, e in catalog.HOOKS.items()} == builtin({n: where(HOOKS.get(n).cls)
                                                                     for n in HOOKS.names()})
    assert {n: e.description for n, e in catalog.DATASETS.items()} == {n: DATASETS.get(n).description
                                                                       for n in catalog.DATASETS}
    assert all(e.description for table in catalog.BUILTIN.values() for e in table.values())


def test_registered_adds_what_was_registered_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from accord import api
    from accord.data.registry import DATASETS

    monkeypatch.setitem(DATASETS._items, "mine", DATASETS.get("saved"))
    names = api.registered()
    assert "mine" in names["datasets"] and set(catalog.DATASETS) < set(names["datasets"])


# ------------------------------------------------------------------------- data info read with numpy only
def _poke(key: str, index: tuple[int, ...], value: Any) -> Any:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[key][index] = value

    return change


BAD = {
    "NaN feature": ("valid", _poke("features_audio", (0, 0, 0), np.nan)),
    "label out of range": ("test", _poke("labels", (1,), 3.5)),
    "length beyond T": ("train", _poke("lengths_text", (2,), 99)),
    "no modality": ("train", lambda a: [a[f"lengths_{m}"].__setitem__(0, 0) for m in ("text", "audio", "visual")]),
    "class label": ("train", _poke("class_labels", (0,), 9)),
    "token mask": ("valid", _poke("text_tokens", (0, 1, 3), 1)),
    "duplicate id": ("valid", _poke("ids", (0,), "train_0")),
    "missing array": ("train", lambda a: a.pop("labels")),
    "2-D labels": ("train", lambda a: a.__setitem__("labels", a["labels"][:, None])),
}


@pytest.mark.parametrize("case", list(BAD))
def test_data_info_with_numpy_refuses_what_loading_refuses(case: str, tmp_path: Path) -> None:
    folder = save_dataset(load_dataset_dir(_dataset_dir(tmp_path)), tmp_path / "bad")
    split, change = BAD[case]
    rewrite_npz(folder, split, change)
    with pytest.raises(DataError) as loading:
        load_dataset_dir(folder)
    with pytest.raises(DataError) as reading:
        inspect_dataset_dir(folder)
    assert str(reading.value) == str(loading.value)


def test_data_info_with_numpy_summarises_as_loading_does(tmp_path: Path) -> None:
    folder = _dataset_dir(tmp_path)
    summary = inspect_dataset_dir(folder)
    assert summary == load_dataset_dir(folder).summary()
    assert summary["train"]["classes"] and summary["train"]["n"] == 6
