"""The CLI: commands run end to end; user errors are one line with exit code 2, never a traceback."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli import app

runner = CliRunner()
TINY = ["--set", "data.params.n_train=64", "--set", "data.params.n_valid=32", "--set", "data.params.n_test=32",
        "--set", "train.epochs=2", "--set", "train.batch_size=16"]


def test_train_evaluate_and_info(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY,
                              "--set", f"output.dir={tmp_path}", "--set", "name=r", "--seeds", "2"])
    assert res.exit_code == 0, res.output
    assert "Non0_acc_2" in res.stdout and "±" in res.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["test"]["MAE"]["n"] == 2
    res = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--corrupt", "noise:all:0.5"])
    assert res.exit_code == 0, res.output
    assert "noise:all:0.5" in res.stdout
    res = runner.invoke(app, ["data", "info", "conflictbench", "--set", "n_train=10"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["train"]["n"] == 10


def test_seeds_option_wins_over_the_config(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {name: early_fusion}\ntrain: {seeds: [5, 6], epochs: 1}\n")
    res = runner.invoke(app, ["train", str(mine), *TINY, "--set", "train.epochs=1", "--set", "train.seeds=[7]",
                              "--set", f"output.dir={tmp_path}", "--set", "name=r", "--seeds", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["seeds"] == [0]


def test_benchmark_writes_one_table(tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    res = runner.invoke(app, ["benchmark", "--methods", "text,late_fusion", "--dataset", "conflictbench",
                              "--seeds", "2", "--out", str(tmp_path / "b"), "--table", str(table), *TINY])
    assert res.exit_code == 0, res.output
    md = table.read_text()
    assert "| text |" in md and "| late_fusion |" in md and "Text alone" in md
    assert "Planted conflicts" in md and "acc_conflicting" in md
    assert (tmp_path / "b" / "benchmark.json").is_file()
    # the trivial-baseline row: every cell of it is the train-mean predictor's value, ± 0.0 over the 2 seeds
    row = next(line for line in md.splitlines() if line.startswith("| constant predictor"))
    assert "± 0.0" in row and "0.000 ± 0.000" in row  # Corr of a constant is 0
    saved = json.loads((tmp_path / "b" / "benchmark.json").read_text())["constant_predictor"]
    assert saved["test"]["Corr"]["mean"] == 0.0 and saved["test"]["MAE"]["n"] == 2


def test_data_build_and_convert(tmp_path: Path) -> None:
    out = tmp_path / "cb"
    res = runner.invoke(app, ["data", "build", "conflictbench", "--out", str(out), "--set", "n_train=20"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["train"]["n"] == 20


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["train", "--method", "late_fusion", "--set", "train.lrr=1"], "train.lrr: unknown key"),
        (["train", "--method", "nosuch"], "unknown model 'nosuch'"),
        (["train", "missing.yaml"], "missing.yaml: config file not found"),
        (["evaluate", "nowhere"], "nowhere: not a run directory"),
        (["evaluate", "RUN", "--corrupt", "explode:audio:1"], "explode"),
        (["data", "info", "nosuch.pkl"], "nosuch.pkl"),
        (["data", "info", "BADPKL"], "bad.pkl"),
        (["data", "convert", "BADPKL", "OUT"], "bad.pkl"),
        (["train", "--method", "late_fusion", "--dataset", "mmsa"], "data.path"),
        (["train", "--method", "late_fusion", "--set", "task.kind=classification", "--set", "data.name=mmsa",
          "--set", "data.path=BADPKL"], "bad.pkl"),
        (["train", "--method", "late_fusion", "--seeds", "0"], "--seeds: expected at least 1 (got 0)"),
        (["benchmark", "--methods", "text", "--seeds", "0"], "--seeds: expected at least 1 (got 0)"),
        (["train", "--method", "late_fusion", "--set", "train.device=banana"],
         "train.device: not a torch device string (e.g. cpu, cuda, cuda:1, mps) (got 'banana')"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, args: list[str], pattern: str) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"train": 1})[:7])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: late_fusion}\n")
    args = [a.replace("BADPKL", str(bad)).replace("OUT", str(tmp_path / "out")).replace("RUN", str(run))
            for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert pattern in lines[0]


def test_error_messages_print_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No rich markup in messages: brackets in paths and install hints reach the user as they are."""
    from accord import api
    from accord.core.errors import DataError

    missing = tmp_path / "mosi[raw].pkl"
    res = runner.invoke(app, ["data", "info", str(missing)])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [
        f"error: {missing}: neither a file/folder nor a dataset name ({', '.join(api.registered()['datasets'])})"]

    def broken(*args: object, **kwargs: object) -> None:
        raise DataError("[bold]clip[/] x.mp4: needs the media extra: pip install 'accord[media]'")

    monkeypatch.setattr(api, "data_info", broken)
    res = runner.invoke(app, ["data", "info", "anything"])
    assert res.exit_code == 2
    assert res.stderr == "error: [bold]clip[/] x.mp4: needs the media extra: pip install 'accord[media]'\n"


def test_config_show_names_each_values_layer() -> None:
    res = runner.invoke(app, ["config", "show", "--method", "tfn", "--dataset", "mosi-u", "--set", "train.lr=0.0005",
                              "--set", "model.params.hidden=48"])
    assert res.exit_code == 0, res.output
    lines = {ln.split("#")[0].strip(): ln.split("#", 1)[1].strip() for ln in res.stdout.splitlines() if "#" in ln}
    assert lines["epochs: 40"] == "dataset: accord/configs/datasets/mosi-u.yaml"  # the dataset's packaged YAML
    assert lines["lr: 0.0005"] == "--set train.lr=0.0005"  # an override
    assert lines["hidden: 48"] == "--set model.params.hidden=48"
    assert lines["fusion_dim: 16"] == "default: accord.models.tfn.TFN.Params"  # the model's code default
    assert lines["eval_batch_size: 256"] == "default: accord.config.TrainConfig"  # a section's code default
    assert lines["name: tfn"] == "method"
    assert res.stdout.startswith("name: null") and "\ntrain:\n  epochs: 40" in res.stdout


def test_config_show_with_a_file_and_errors(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("train: {epochs: 3}\nmodel: {params: {hidden: 8}}\n")
    res = runner.invoke(app, ["config", "show", str(mine), "--method", "tfn", "--dataset", "mosi-u"])
    assert res.exit_code == 0, res.output
    assert "epochs: 3" in res.stdout and f"# file: {mine}" in res.stdout
    res = runner.invoke(app, ["config", "show", "--method", "tfn", "--set", "model.params.hiden=3"])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "model.params.hiden" in res.stderr


def test_list_names_models_datasets_and_hooks() -> None:
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("models:") and "tfn" in lines[0] and "cacr" in lines[0]
    assert lines[1].startswith("datasets:") and "conflictbench" in lines[1]
    assert lines[2].startswith("hooks:") and "grad_monitor" in lines[2]


def test_python_dash_m_accord() -> None:
    """``python -m accord`` is the same command line as ``accord``."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "accord", "--help"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and "config" in res.stdout and "augment" in res.stdout
    # a command that reaches the API (`list` itself is checked in-process above)
    res = subprocess.run([sys.executable, "-m", "accord", "evaluate", "no/such/run"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and res.stderr.startswith("error: no/such/run")


def test_cli_imports_only_the_api_and_the_core() -> None:
    """The face calls the public API only, and starts its HTTP half (`accord serve`: accord.server, which calls the
    public API only); the import contracts check this statically too."""
    import ast

    import accord.cli

    tree = ast.parse(Path(accord.cli.__file__).read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {n for n in names if n.startswith("accord")}
    assert ours == {"accord", "accord.core.errors", "accord.server"}
