"""Processes Accord starts (sweep workers, the final re-run) die with their parent; a stopped sweep stops its workers
and says so in one line with the shell's exit code; a sweep's exit status follows the study, not the workers' exit
codes; the thread policy keeps the threads of those processes within the cores given (issue 14, items 6 and 10)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from accord.core.errors import ConfigError
from accord.core.process import pid_alive
from accord.studies.processes import Interrupted, exit_reason, run_processes, spawn, stop_on_signals
from accord.studies.sweep import SweepError, run_sweep
from accord.training import threads
from test_sweep import _opts

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# A parent that starts one child which arms die_with_parent (by prctl or by the watchdog thread) and sleeps; the
# parent prints the child's pid once the child is armed and then sleeps too, until the test kills it with SIGKILL.
PARENT = textwrap.dedent("""
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
    print(child.pid, child.stdout.readline().strip(), flush=True)
    import time; time.sleep(120)
""")
CHILD = textwrap.dedent("""
    import os, sys, time
    from accord.studies.processes import die_with_parent
    print(die_with_parent(os.getppid(), use_prctl={use_prctl}), flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("use_prctl,mechanism", [(True, "prctl"), (False, "watchdog")])
def test_a_child_dies_when_its_parent_is_killed(use_prctl: bool, mechanism: str) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD.format(use_prctl=use_prctl)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        pid_text, how = parent.stdout.readline().split()  # type: ignore[union-attr]
        child = int(pid_text)
        assert how == mechanism and pid_alive(child)
        parent.kill()  # SIGKILL: the parent runs no clean-up of its own
        parent.wait()
        assert _wait_gone(child, 5.0), f"child {child} outlived its parent (mechanism {mechanism})"
    finally:
        parent.kill()
        parent.wait()


def test_spawned_processes_are_stopped_when_the_parent_is_interrupted() -> None:
    procs = [spawn(time.sleep, (60,), f"sleeper-{i}") for i in range(2)]
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(Interrupted) as caught, stop_on_signals():
            run_processes(procs)
    finally:
        timer.cancel()
    assert caught.value.name == "SIGTERM"
    assert all(p.pid is not None and not p.is_alive() for p in procs)
    assert [exit_reason(p.exitcode) for p in procs] == ["killed by SIGTERM"] * 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the old handler is back


def test_exit_reasons_in_words() -> None:
    assert [exit_reason(c) for c in (0, 2, -9, -15, None)] == [
        "exit 0", "exit 2", "killed by SIGKILL", "killed by SIGTERM", "still running"]


def test_sweep_success_follows_the_study_not_the_workers_exit_codes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that ended abnormally after every trial finished (the old code exited 2 here) is a note; a sweep
    whose workers stopped short of N trials is an error naming them."""
    workers_module = sys.modules["accord.studies.sweep.workers"]
    real = workers_module.run_worker

    def two_workers_one_killed(opts, space, metric, mode, session, threads):  # type: ignore[no-untyped-def]
        real(opts, space, metric, mode, session, 0, threads, lambda m: None)
        return ["worker 1: killed by SIGKILL"]

    monkeypatch.setattr(workers_module, "run_worker_processes", two_workers_one_killed)
    monkeypatch.setenv("ACCORD_CORES", "2")
    said: list[str] = []
    out = run_sweep(_opts(tmp_path, trials=2, workers=2), log=said.append)
    assert sum(out["counts"].values()) == 2
    assert "note: worker 1: killed by SIGKILL; all 2 trials finished regardless" in said

    monkeypatch.setattr(workers_module, "run_worker_processes", lambda *a: ["worker 0: exit 2 (its error is above)"])
    with pytest.raises(SweepError, match=r"only 2 of 3 trials finished \(\{.*\}\); worker 0: exit 2 "
                                         r"\(its error is above\); run the same command again to continue$"):
        run_sweep(_opts(tmp_path, trials=3, workers=2), log=lambda m: None)


@pytest.mark.slow
def test_a_stopped_sweep_stops_its_workers_and_exits_143(tmp_path: Path) -> None:
    """``accord sweep --workers 2`` for real: SIGTERM to the main process ends both workers, one line, exit 143."""
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.lr: {type: float, low: 0.0001, high: 0.01, log: true}\n")
    cmd = [sys.executable, "-m", "accord", "sweep", "-m", "early_fusion", "-d", "conflictbench", "--trials", "50",
           "--storage", f"sqlite:///{tmp_path / 's.db'}", "--workers", "2", "--no-final", "--space", str(space),
           "--set", "train.epochs=200", "--set", "train.early_stopping.patience=1000",
           "--set", f"output.dir={tmp_path / 'runs'}"]
    proc = subprocess.Popen(cmd, env={**os.environ, "ACCORD_CORES": "2"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        kids: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(kids) < 2:  # both workers running their first trial
            logs = list((tmp_path / "runs").glob("**/log.jsonl"))
            if len(logs) >= 2:
                kids = _children(proc.pid)
            time.sleep(0.2)
        assert len(kids) >= 2, "the workers did not start"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines == ["error: sweep stopped by SIGTERM: its worker processes were stopped; the study keeps its "
                     "finished trials: run the same command again to continue"], err[-2000:]
    assert "Traceback" not in err
    assert all(_wait_gone(k, 5.0) for k in kids)


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc; the spawn context's resource tracker excluded)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmd:
            out.append(int(d.name))
    return out


def test_thread_policy_splits_the_cores_and_refuses_more_processes_than_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("ACCORD_CORES", raising=False)
    assert threads.cores() == len(os.sched_getaffinity(0)) and threads.cores_given() is None
    # nothing given: one thread per process, whatever the machine (Accord cannot see the other work on it)
    assert threads.resolve(None) == threads.DEFAULT_THREADS == 1
    assert threads.split(1, "--workers") == 1
    assert threads.resolve(3) == 3  # an explicit train.num_threads always wins
    monkeypatch.setenv("ACCORD_CORES", "4")  # four cores given: the processes running at once share them
    assert threads.cores() == 4 and threads.resolve(None) == 4
    assert [threads.split(k, "--workers") for k in (1, 2, 3, 4)] == [4, 2, 1, 1]
    with pytest.raises(ConfigError, match=r"^--workers: 5 processes at once, but Accord is given 4 core\(s\) "
                                          r"\(ACCORD_CORES=4\); use at most 4"):
        threads.split(5, "--workers")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun ranks on this machine
    assert threads.default_threads() == 2
    monkeypatch.setenv("ACCORD_CORES", "1")
    assert threads.default_threads() == 1  # never below one
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("ACCORD_CORES", bad)
        with pytest.raises(ConfigError, match=rf"^environment ACCORD_CORES: expected a whole number of cores >= 1, "
                                              rf"got '{bad}'$"):
            threads.cores()


def test_sweep_refuses_more_workers_than_cores_before_any_work(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_CORES", "2")
    with pytest.raises(ConfigError, match=r"^--workers: 3 processes at once, but Accord is given 2 core\(s\)"):
        run_sweep(_opts(tmp_path, trials=2, workers=3), log=lambda m: None)
    assert not (tmp_path / "db").exists()


def test_trainer_uses_the_policy_default_and_restores_the_callers_threads(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from accord.config import load_config
    from accord.training.trainer import Trainer

    seen: list[int] = []
    cfg = load_config(method="late_fusion", overrides=[
        "data.params.n_train=32", "data.params.n_valid=16", "data.params.n_test=16", "train.epochs=1",
        "train.num_threads=null", f"output.dir={tmp_path}"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.delenv("ACCORD_CORES", raising=False)
    try:
        Trainer(cfg, progress=False).fit(on_epoch=lambda s, e, r: seen.append(torch.get_num_threads()))
        monkeypatch.setenv("ACCORD_CORES", "3")
        Trainer(cfg, progress=False).fit(overwrite=True, on_epoch=lambda s, e, r: seen.append(torch.get_num_threads()))
        assert seen == [threads.DEFAULT_THREADS, 3]
        assert json.loads((tmp_path / cfg.run_name / "seed_0" / "results.json").read_text())["torch_threads"] == 3
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
