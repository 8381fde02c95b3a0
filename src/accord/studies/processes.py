"""The processes a study starts (sweep workers, the sweep's final re-run): they die with their parent, and the parent
stops them cleanly when it is interrupted.

* :func:`spawn` makes a ``multiprocessing`` (spawn) process whose target first calls :func:`die_with_parent`: on
  Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (the kernel sends the child SIGTERM the moment its parent dies, even by
  SIGKILL), elsewhere a watchdog thread that polls the parent pid once a second. The child ignores SIGINT: a Ctrl-C
  in a terminal reaches every process of the foreground group, and the parent, not each child, decides what to do.
* :func:`stop_on_signals` turns SIGTERM and SIGINT of the parent into :class:`Interrupted` (a ``BaseException``, so
  no ``except Exception`` on the way swallows it, and optuna leaves the trial RUNNING for the recovery);
  :func:`run_processes` then terminates its children (SIGTERM, then SIGKILL after a grace period) before the
  exception goes on, and the caller reports one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal the kernel sends this process when its parent dies."""
WATCHDOG_SECONDS = 1.0
"""How often the fallback watchdog (no prctl) checks that the parent is still alive."""
TERMINATE_GRACE = 10.0
"""Seconds a child has to exit after SIGTERM before it is killed."""


class Interrupted(BaseException):
    """The parent received SIGTERM or SIGINT while children ran (raised by :func:`stop_on_signals`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(WATCHDOG_SECONDS)


def die_with_parent(parent: int, use_prctl: bool = True) -> str:
    """Make this process end (SIGTERM) when process ``parent`` dies; returns the mechanism (``"prctl"`` or
    ``"watchdog"``). A parent that died before this call ends the process at once."""
    how = "prctl" if use_prctl and _prctl_pdeathsig(signal.SIGTERM) else "watchdog"
    if how == "watchdog":
        threading.Thread(target=_watch_parent, args=(parent,), name="accord-parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent is already gone (it died before the death signal was armed)
        os.kill(os.getpid(), signal.SIGTERM)
    return how


def _child_main(parent: int, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its children
    target(*args)


def spawn(target: Callable[..., Any], args: tuple[Any, ...], name: str) -> multiprocessing.process.BaseProcess:
    """A spawn-context process running ``target(*args)`` that dies with this process (not started yet)."""
    ctx = multiprocessing.get_context("spawn")
    return ctx.Process(target=_child_main, args=(os.getpid(), target, args), name=name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` (once; a repeated signal during the clean-up
    is ignored). Only in the main thread (signal handlers can be set nowhere else); the old handlers come back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop(procs: Sequence[multiprocessing.process.BaseProcess], grace: float = TERMINATE_GRACE) -> None:
    """Terminate (SIGTERM) every process still alive, wait up to ``grace`` seconds, then kill the rest."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def run_processes(procs: Sequence[multiprocessing.process.BaseProcess], stagger: float = 0.0) -> list[int | None]:
    """Start ``procs`` (``stagger`` seconds apart), wait for all, and return their exit codes; on any interruption
    (:class:`Interrupted`, KeyboardInterrupt, an error) the ones still alive are stopped before it propagates."""
    try:
        for p in procs:
            p.start()
            time.sleep(stagger)
        for p in procs:
            p.join()
    except BaseException:
        stop([p for p in procs if p.pid is not None])
        raise
    return [p.exitcode for p in procs]


def exit_reason(code: int | None) -> str:
    """An exit code in words: ``exit 2``, ``killed by SIGKILL``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
