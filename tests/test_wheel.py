"""A wheel install behaves exactly like the editable one: every default ships inside the package.

The test builds the wheel, installs it (without dependencies) into a fresh virtual environment whose only other
import path is this environment's site-packages (for torch, numpy, ...; the editable install's path hook is not
activated there), and runs the same command with both installs.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from accord.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["train", "--method", "tfn", "--dataset", "conflictbench", "--seeds", "1"]


def _start(exe: str, cwd: Path) -> subprocess.Popen[str]:
    """The command with the installed ``accord`` script, on one thread, in the background."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACCORD_DATA")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen([exe, *COMMAND], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _results(cwd: Path) -> dict[str, object]:
    return json.loads((cwd / "runs" / "tfn_conflictbench" / "seed_0" / "results.json").read_text())


@pytest.mark.slow
def test_wheel_install_gives_the_same_metrics_as_the_editable_install(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(dist), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("accord-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()] or [sysconfig.get_paths()["purelib"]]
    (purelib / "accord_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import accord, accord.config as c; "
                            "print(accord.__file__); print(c.packaged_configs())"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert all(Path(w).is_relative_to(purelib) for w in where), where  # the wheel's copy, not the source tree
    (tmp_path / "wheel_run").mkdir()
    (tmp_path / "editable_run").mkdir()
    wheel_proc = _start(str(venv / "bin" / "accord"), tmp_path / "wheel_run")
    # meanwhile the same command with the editable install, in this process (one thread, like the other)
    monkeypatch.chdir(tmp_path / "editable_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(app, COMMAND)
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output[-3000:]
    _, err = wheel_proc.communicate(timeout=600)
    assert wheel_proc.returncode == 0, err[-3000:]
    from_wheel, editable = _results(tmp_path / "wheel_run"), _results(tmp_path / "editable_run")
    assert from_wheel["test"] == editable["test"] and from_wheel["valid"] == editable["valid"]
    assert from_wheel["best_epoch"] == editable["best_epoch"]
    # the packaged dataset defaults were applied in both (ConflictBench trains for at most 20 epochs at lr 0.002)
    config = (tmp_path / "wheel_run" / "runs" / "tfn_conflictbench" / "config.yaml").read_text()
    assert "epochs: 20" in config and "lr: 0.002" in config
