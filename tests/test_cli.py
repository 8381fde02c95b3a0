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


def test_benchmark_writes_one_table(tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    res = runner.invoke(app, ["benchmark", "--methods", "text,late_fusion", "--dataset", "conflictbench",
                              "--seeds", "2", "--out", str(tmp_path / "b"), "--table", str(table), *TINY])
    assert res.exit_code == 0, res.output
    md = table.read_text()
    assert "| text |" in md and "| late_fusion |" in md and "Text alone" in md
    assert "Planted conflicts" in md and "acc_conflicting" in md
    assert (tmp_path / "b" / "benchmark.json").is_file()


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
