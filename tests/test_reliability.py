"""Faults and hostile input (issue 14): the run lock (two real processes), temp files of dead writers, one error path
for the operating system's refusals (read-only folder, disk full, name too long), checkpoint and results files
validated on read, and no silent fallback. Every user-facing error is one line naming the file or key."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from accord.cli import app
from accord.config import Config, load_config
from accord.core.errors import CheckpointError, ConfigError, DataError, StorageError
from accord.core.io import atomic_write_bytes, clean_dead_temps, temp_name
from accord.core.lock import RunLock
from accord.core.process import proc_start_time
from accord.core.rundir import LOCK
from accord.training.checkpoint import save_state
from accord.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is several times faster

runner = CliRunner()
TINY = ["data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.batch_size=16",
        "train.epochs=2", "train.early_stopping.patience=10", "train.num_threads=1"]
TINY_CLI = [x for o in TINY for x in ("--set", o)]


def tiny_cfg(out: Path, *extra: str, name: str = "r") -> Config:
    return load_config(method="early_fusion", dataset="conflictbench",
                       overrides=[*TINY, f"output.dir={out}", f"name={name}", *extra])


def one_error_line(res: object) -> str:
    """The one ``error: ...`` line of a CLI result that exited 2 (fails otherwise)."""
    assert getattr(res, "exit_code") == 2, getattr(res, "output")  # noqa: B009
    lines = [x for x in getattr(res, "stderr").splitlines() if x.strip()]  # noqa: B009
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def dead_pid() -> int:
    """The pid of a process that has ended (a child that exited and was reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (early_fusion on ConflictBench, 2 epochs); tests work on copies of it."""
    out = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    Trainer(tiny_cfg(out), progress=False).fit()
    return out / "r"


def copy_run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run as ``tmp_path/r`` (its config's ``output.dir`` moved along, so it resumes)."""
    shutil.copytree(trained, tmp_path / "r")
    config = tmp_path / "r" / "config.yaml"
    config.write_text(config.read_text().replace(str(trained.parent), str(tmp_path)))
    return tmp_path / "r"


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` mounted at ``mount_point`` (True), or just the folder where mounting is not permitted
    (False: not root, or a sandbox without the capability)."""
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True)
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


# ----------------------------------------------------------------------------------------------- the run lock
RACER = """
import json, sys, time
from pathlib import Path
from accord.config import load_config
from accord.training.trainer import Trainer
out, go, overrides = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])

def gate(seed, epoch, record):  # hold the run open after its first epoch until the test says go
    deadline = time.time() + 120
    while epoch == 0 and not go.exists() and time.time() < deadline:
        time.sleep(0.01)

cfg = load_config(method="early_fusion", dataset="conflictbench", overrides=[*overrides, f"output.dir={out}", "name=r"])
Trainer(cfg, progress=False).fit(overwrite=True, on_epoch=gate)
"""


def test_a_second_run_into_a_running_run_is_refused_and_the_first_is_undisturbed(tmp_path: Path) -> None:
    """Two real processes: a training run (a subprocess, held open after its first epoch) and `accord train ...
    --overwrite` into the same run directory (this process). The second exits 2 with one line naming the holder
    and deletes nothing; the first then finishes with exactly the results of an undisturbed run of the config."""
    a, b, go = tmp_path / "a", tmp_path / "b", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", RACER, str(a), str(go), json.dumps(TINY)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        Trainer(tiny_cfg(b), progress=False).fit()  # the undisturbed run, while the first one starts
        lock, last = a / "r" / LOCK, a / "r" / "seed_0" / "last.pt"
        deadline = time.time() + 120
        while not last.is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert first.poll() is None and lock.is_file(), first.stderr.read() if first.stderr else ""
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        assert holder["start"] == proc_start_time(first.pid) and holder["command"].startswith("python -c")
        before = sorted(p.relative_to(a) for p in a.rglob("*"))

        res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                                  "--set", f"output.dir={a}", "--set", "name=r", "--overwrite"])
        line = one_error_line(res)
        assert line.startswith(f"error: {a / 'r'}: run is in use by pid {first.pid} on {socket.gethostname()} "
                               f"since {holder['started']} (python -c "), line
        assert sorted(p.relative_to(a) for p in a.rglob("*")) == before  # nothing deleted
        res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                                  "--set", f"output.dir={a}", "--set", "name=r", "--resume"])
        assert f"run is in use by pid {first.pid}" in one_error_line(res)
    finally:
        go.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert not (a / "r" / LOCK).exists()  # released at the end
    got = json.loads((a / "r" / "seed_0" / "results.json").read_text())
    want = json.loads((b / "r" / "seed_0" / "results.json").read_text())
    assert got.pop("train_seconds") > 0 and want.pop("train_seconds") > 0
    assert got.pop("pid") == first.pid and want.pop("pid") == os.getpid()
    assert got == want
    assert (a / "r" / "seed_0" / "best.safetensors").read_bytes() == (b / "r" / "seed_0" / "best.safetensors"
                                                                       ).read_bytes()
    epochs = [json.loads(x) for x in (a / "r" / "seed_0" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]  # one run's lines only


def test_lock_names_its_holder_and_is_released_on_every_exit(tmp_path: Path) -> None:
    rd = tmp_path / "run"
    with RunLock(rd) as held:
        info = json.loads((rd / LOCK).read_text())
        assert set(info) == {"pid", "start", "host", "command", "started"}
        assert info["pid"] == os.getpid() and info["start"] == proc_start_time(os.getpid())
        with pytest.raises(CheckpointError) as err:
            RunLock(rd).acquire()
        assert str(err.value) == (f"{rd}: run is in use by {held.info.describe() if held.info else ''}; wait for it "
                                  f"to finish or stop it (the run lock is {rd / LOCK})")
    assert not (rd / LOCK).exists()
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), RunLock(rd):
            raise exc
        assert not (rd / LOCK).exists()


def test_stale_locks_are_taken_over_and_foreign_ones_refused(tmp_path: Path) -> None:
    rd = tmp_path / "run"
    rd.mkdir()
    host = socket.gethostname()
    me = os.getpid()
    for pid, start in [(dead_pid(), None), (me, "1")]:  # a dead holder; a reused pid (another start time)
        (rd / LOCK).write_text(json.dumps({"pid": pid, "start": start, "host": host, "command": "accord train x",
                                           "started": "2025-01-01T00:00:00+00:00"}))
        lock = RunLock(rd)
        note = lock.acquire()
        assert note == (f"note: {rd / LOCK}: took over a stale run lock of pid {pid} on {host} since "
                        f"2025-01-01T00:00:00+00:00 (accord train x), which is no longer running")
        assert json.loads((rd / LOCK).read_text())["pid"] == me
        lock.release()
    (rd / LOCK).write_text("{")  # a creator killed while writing it
    lock = RunLock(rd)
    assert lock.acquire() == f"note: {rd / LOCK}: replaced a damaged run lock (it named no holder)"
    lock.release()
    (rd / LOCK).write_text(json.dumps({"pid": dead_pid(), "start": None, "host": "elsewhere", "command": "accord",
                                       "started": "2025-01-01T00:00:00+00:00"}))
    with pytest.raises(CheckpointError, match=r"run is locked by pid \d+ on elsewhere since .*; a lock taken on "
                                              r"another host is never considered stale: if that run is gone, delete"):
        RunLock(rd).acquire()


def test_trainer_releases_the_lock_on_interrupt_and_refuses_a_locked_run(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)

    def interrupt(seed: int, epoch: int, record: dict[str, object]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, progress=False).fit(on_epoch=interrupt)
    rd = tmp_path / "r"
    assert not (rd / LOCK).exists() and (rd / "seed_0" / "last.pt").is_file()
    with RunLock(rd):  # another run holds it (this process, as another run would)
        files = sorted(rd.rglob("*"))
        for flags in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(CheckpointError, match=f"run is in use by pid {os.getpid()}"):
                Trainer(cfg, progress=False).fit(**flags)
        assert sorted(rd.rglob("*")) == files  # --overwrite refused before deleting anything


# ------------------------------------------------------------------------------------- temp files of dead writers
def test_temp_files_of_dead_writers_are_removed_when_a_run_resumes(trained: Path, tmp_path: Path) -> None:
    rd = copy_run(trained, tmp_path)
    dead = rd / "seed_0" / f".last.pt.{dead_pid()}.0123456789ab.tmp"
    live = rd / temp_name("summary.json")  # this process's: a live writer
    other = rd / "seed_0" / ".notes.tmp"  # not a name of ours
    for p in (dead, live, other):
        p.write_bytes(b"x" * 100)
    assert clean_dead_temps(rd / "nowhere") == []
    Trainer(tiny_cfg(tmp_path), progress=False).fit(resume=True)  # both seeds finished: only clean-up and summary
    assert not dead.exists() and live.exists() and other.exists()


# ------------------------------------------------------------------------------------------------- OS errors
def test_a_read_only_run_folder(trained: Path, tmp_path: Path) -> None:
    """A read-only tmpfs (as root, where chmod does not stop writes) or a folder chmod 0o500 (not root): `accord
    evaluate` still prints its table and says in one line that the file could not be saved (exit 0); `accord train
    --overwrite` into it is one error line naming the path and the cause."""
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "16m") as mounted:
        if not mounted and os.geteuid() == 0:
            pytest.skip("running as root (chmod does not stop writes) and mounting a tmpfs is not permitted here; "
                        "test_a_file_in_place_of_a_folder covers the same error path")
        shutil.copytree(trained, mnt / "r")
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        else:
            (mnt / "r").chmod(0o500)
        try:
            res = runner.invoke(app, ["evaluate", str(mnt / "r")])
            assert res.exit_code == 0, res.output
            assert "| test |" in res.stdout
            cause = "Read-only file system" if mounted else "Permission denied"
            assert res.stderr == (f"warning: results not saved: {mnt / 'r' / 'eval_test_clean.json'}: cannot write "
                                  f"({cause})\n")
            res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                                      "--set", f"output.dir={mnt}", "--set", "name=r", "--overwrite"])
            assert one_error_line(res) == f"error: {mnt / 'r' / LOCK}: cannot create the run lock ({cause})"
        finally:
            (mnt / "r").chmod(0o700) if not mounted else None


def test_a_file_in_place_of_a_folder(trained: Path, tmp_path: Path) -> None:
    """The same error path without privileges: a file where the output folder should be, a folder where the
    evaluation's JSON should be; and `accord evaluate --no-save` writes nothing."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                              "--set", f"output.dir={blocker}", "--set", "name=r"])
    assert one_error_line(res) == f"error: {blocker / 'r'}: cannot create the run directory (Not a directory)"
    rd = copy_run(trained, tmp_path)
    (rd / "eval_test_clean.json").mkdir()
    res = runner.invoke(app, ["evaluate", str(rd)])
    assert res.exit_code == 0 and "| test |" in res.stdout, res.output
    assert res.stderr == f"warning: results not saved: {rd / 'eval_test_clean.json'}: cannot write (Is a directory)\n"
    assert not list(rd.glob(".*.tmp"))
    res = runner.invoke(app, ["evaluate", str(rd), "--split", "valid", "--no-save"])
    assert res.exit_code == 0 and "| valid |" in res.stdout and res.stderr == "", res.output
    assert not (rd / "eval_valid_clean.json").exists()


def test_a_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    name = "n" * 300
    res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                              "--set", f"output.dir={tmp_path}", "--set", f"name={name}"])
    assert one_error_line(res) == f"error: {tmp_path / name}: cannot create the run directory (File name too long)"
    with pytest.raises(StorageError, match=r"x{250}\.json: cannot write \(File name too long\)$"):
        atomic_write_bytes(tmp_path / ("x" * 250 + ".json"), b"{}")  # the name fits, its temp file's does not
    assert list(tmp_path.iterdir()) == []


def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A training run into a full disk: a 64 KiB tmpfs where mounting works (root); elsewhere ENOSPC is simulated
    by an ``os.fsync`` that raises it for Accord's temporary files (in-process). One error line naming the file and
    the cause, exit 2, no temporary file and no lock left behind."""
    mnt = tmp_path / "small"
    with tmpfs(mnt, "64k") as mounted:
        if not mounted:
            real_fsync = os.fsync

            def full(fd: int) -> None:
                if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                real_fsync(fd)

            monkeypatch.setattr(os, "fsync", full)
        res = runner.invoke(app, ["train", "--method", "early_fusion", "--dataset", "conflictbench", *TINY_CLI,
                                  "--set", f"output.dir={mnt}", "--set", "name=r"])
        line = one_error_line(res)
        assert line.startswith(f"error: {mnt / 'r'}/") and line.endswith(": cannot write (No space left on device)")
        assert not list(mnt.rglob("*.tmp")) and not (mnt / "r" / LOCK).exists()


class _FillsUp:
    """An open file whose writes fail with ENOSPC once ``room`` bytes are written (a full disk, simulated)."""

    def __init__(self, fh: Any, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return int(self.fh.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def __enter__(self) -> _FillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def test_a_training_state_larger_than_the_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``save_state`` streams ``torch.save`` into its temporary file. torch reports a failed write as an unrelated
    RuntimeError ("unexpected pos ..."), so the disk-full OSError must still come out as the one-line StorageError
    naming the file, with no temporary file left (a 64 KiB tmpfs where mounting works, else writes that fail)."""
    state = {"model": {"w": torch.zeros(256 * 1024)}, "epoch": 0}  # 1 MiB
    mnt = tmp_path / "small"
    with tmpfs(mnt, "64k") as mounted:
        if not mounted:
            real_fdopen = os.fdopen
            monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FillsUp(real_fdopen(fd, *a, **k), 64 * 1024))
        with pytest.raises(StorageError, match=r"small/last\.pt: cannot write \(No space left on device\)$"):
            save_state(state, mnt / "last.pt")
        assert list(mnt.iterdir()) == []


def test_other_os_errors_in_the_cli_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from accord import api

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/x.pkl")

    monkeypatch.setattr(api, "data_info", refuse)
    res = runner.invoke(app, ["data", "info", "x"])
    assert one_error_line(res) == "error: /data/x.pkl: Permission denied"


# ------------------------------------------------------------------------------ checkpoints validated on read
def _edit_state(path: Path, edit: str) -> None:
    if edit == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return
    state = torch.load(path, weights_only=True)
    if edit == "missing keys":
        del state["best_epoch"], state["step"]
    elif edit == "wrong kind":
        state["epoch"] = "three"
    elif edit == "other model":
        state["model"] = {"fusion.weight": torch.zeros(2, 2)}
    torch.save(state, path)


@pytest.mark.parametrize("edit,message", [
    ("missing keys", "training state lacks best_epoch, step (damaged, or not a last.pt of Accord); start the run "
                     "over with --overwrite"),
    ("wrong kind", "training state holds values of the wrong kind for epoch (damaged); start the run over with "
                   "--overwrite"),
    ("other model", "training state does not fit this run's model or optimiser (Error(s) in loading state_dict for "),
    ("truncated", "unreadable training state ("),
])
def test_a_damaged_last_pt_is_one_line_naming_it(trained: Path, tmp_path: Path, edit: str, message: str) -> None:
    rd = copy_run(trained, tmp_path)
    (rd / "seed_0" / "results.json").unlink()
    _edit_state(rd / "seed_0" / "last.pt", edit)
    with pytest.raises(CheckpointError) as err:
        Trainer(tiny_cfg(tmp_path), progress=False).fit(resume=True)
    assert str(err.value).startswith(f"{rd / 'seed_0' / 'last.pt'}: {message}") and "\n" not in str(err.value)
    assert not (rd / LOCK).exists()


@pytest.mark.parametrize("text,message", [
    ("{", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); the seed "
          "has not finished"),
    ('{"seed": 0, "valid": {"MAE": 1.0}, "test": 3}', "lacks test, train_seconds (damaged or not written by this "
                                                      "trainer); delete it and resume to evaluate the seed again"),
])
def test_a_damaged_results_json_on_resume(trained: Path, tmp_path: Path, text: str, message: str) -> None:
    rd = copy_run(trained, tmp_path)
    (rd / "seed_0" / "results.json").write_text(text)
    with pytest.raises(CheckpointError) as err:
        Trainer(tiny_cfg(tmp_path), progress=False).fit(resume=True)
    assert str(err.value) == f"{rd / 'seed_0' / 'results.json'}: {message}"


def test_weights_that_do_not_fit_the_model(trained: Path, tmp_path: Path) -> None:
    rd = copy_run(trained, tmp_path)
    (rd / "seed_0" / "best.safetensors").write_bytes(st_save({"head.weight": torch.zeros(3, 3)}))
    res = runner.invoke(app, ["evaluate", str(rd)])
    assert one_error_line(res).startswith(f"error: {rd / 'seed_0' / 'best.safetensors'}: weights do not fit the "
                                          f"configured model (")


# ----------------------------------------------------------------------------------------- no silent fallback
def test_explicit_accord_data_never_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.data.mosi_u import find_mosi_dir

    monkeypatch.setenv("ACCORD_DATA", str(tmp_path / "nonexistent"))
    with pytest.raises(DataError, match=f"^ACCORD_DATA={tmp_path / 'nonexistent'}: no MOSI-U data there "
                                        f"\\(expected {tmp_path / 'nonexistent' / 'mosi'} with label.csv"):
        find_mosi_dir()
    res = runner.invoke(app, ["train", "--method", "text", "--dataset", "mosi-u"])
    assert one_error_line(res).startswith(f"error: ACCORD_DATA={tmp_path / 'nonexistent'}: no MOSI-U data there")


@pytest.mark.parametrize("extra,message", [
    (["train.early_stopping.metric=F1"], "train.early_stopping.metric: 'F1' is not computed for regression on dataset "
                                         "'conflictbench' (metric family mosi); available: Has0_acc_2, Has0_F1, "
                                         "Non0_acc_2, Non0_F1, Mult_acc_5, Mult_acc_7, MAE, Corr"),
    (["task.kind=classification", "train.early_stopping.metric=MAE"],
     "train.early_stopping.metric: 'MAE' is not computed for classification on dataset 'conflictbench' (metric "
     "family classification); available: Acc, F1_weighted, F1_macro, F1_negative, F1_positive"),
])
def test_a_selection_metric_the_dataset_does_not_compute_fails_before_training(tmp_path: Path, extra: list[str],
                                                                               message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Trainer(tiny_cfg(tmp_path, *extra), progress=False)
    assert str(err.value) == message
    assert not (tmp_path / "r").exists()
    Trainer(tiny_cfg(tmp_path, "task.kind=classification", "train.early_stopping.metric=F1_positive"), progress=False)
