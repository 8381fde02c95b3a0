"""Native (C++) logging captured into a log file while Accord's own output stays on the terminal (issue 18).

``capfd`` stands for the terminal: it captures what reaches file descriptor 2 itself, which is what a C++ logger
writes to, so what it shows is what a user would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accord.core.errors import StorageError
from accord.core.native_log import capture_native_output, terminal_stderr


def test_fd2_writes_go_to_the_log_and_accords_output_to_the_terminal(tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "extract.log"
    before = os.fstat(2).st_ino
    with capture_native_output(log) as where:
        assert where == log
        os.write(2, b"native noise from C++\n")
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child noise\\n')"], check=True)
        terminal_stderr().write("progress 3/10\n")
        assert terminal_stderr() is not sys.stderr
    assert os.fstat(2).st_ino == before and terminal_stderr() is sys.stderr
    os.write(2, b"after the capture\n")
    _, err = capfd.readouterr()
    text = log.read_text()
    for noise in ("native noise from C++", "child noise"):
        assert noise in text and noise not in err
    assert "progress 3/10" in err and "progress 3/10" not in text
    assert "after the capture" in err and "after the capture" not in text


SCRIPT = """
import logging, os, sys, warnings
from accord.core.native_log import capture_native_output, terminal_stderr
with capture_native_output(sys.argv[1]):
    os.write(2, b"W0000 00:00:1 absl noise\\n")
    warnings.warn("a python warning")
    logging.getLogger("absl").warning("python logging noise")
    print("stderr print", file=sys.stderr)
    terminal_stderr().write("progress 10/10\\n")
print("summary: 10 extracted", file=sys.stderr)
"""


def test_python_warnings_and_logging_go_to_the_log_too(tmp_path: Path) -> None:
    """In a plain process (no pytest capture in between) Python's own stderr writers land in the log as well."""
    log = tmp_path / "extract.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, env=env,
                         check=True)
    text = log.read_text()
    for noise in ("absl noise", "a python warning", "python logging noise", "stderr print"):
        assert noise in text and noise not in res.stderr
    assert res.stderr == "progress 10/10\nsummary: 10 extracted\n"


def test_fd2_is_restored_after_an_exception_and_the_log_appends(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "extract.log"
    log.write_text("earlier run\n")
    before = os.fstat(2).st_ino
    with pytest.raises(RuntimeError, match="boom"), capture_native_output(log):
        os.write(2, b"noise before the error\n")
        raise RuntimeError("boom")
    assert os.fstat(2).st_ino == before and terminal_stderr() is sys.stderr
    os.write(2, b"visible again\n")
    err = capfd.readouterr().err
    assert "visible again" in err and "noise before the error" not in err
    assert log.read_text() == "earlier run\nnoise before the error\n"


def test_discarded_nested_and_environment(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLOG_minloglevel", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own choice is kept
    log = tmp_path / "outer.log"
    with capture_native_output(None) as where:
        assert where is None
        os.write(2, b"discarded noise\n")
        assert os.environ["GLOG_minloglevel"] == "2"  # noqa: SIM112 (glog reads this exact name)
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    with capture_native_output(log), capture_native_output(tmp_path / "inner.log"):
        os.write(2, b"inner noise\n")
    assert "inner noise" in log.read_text() and not (tmp_path / "inner.log").exists()
    err = capfd.readouterr().err
    assert "discarded noise" not in err and "inner noise" not in err


def test_unopenable_log_file_is_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as err, capture_native_output(blocker / "extract.log"):
        pass
    assert str(blocker) in str(err.value) and "\n" not in str(err.value)
    assert terminal_stderr() is sys.stderr
