"""The run-directory lock: one training run writes a run directory at a time.

A run holds ``<run_dir>/.lock`` (:data:`accord.core.rundir.LOCK`) for its whole life. The file is created atomically
(``O_CREAT | O_EXCL``: of two processes creating it at once exactly one succeeds) and holds one JSON object naming
its holder::

    {"pid": 4242, "start": "981234", "host": "gpu-3", "command": "accord train ... --overwrite",
     "started": "2025-05-01T10:12:03+02:00"}

``start`` is the holder's process start time (:func:`accord.core.process.proc_start_time`), so a pid the kernel has
since given to another process is not mistaken for the holder. A lock whose holder is no longer running on this
host is stale: the next run takes it over and says so. A lock written on another host is never taken to be stale
(its process cannot be checked from here): the error says so and names the file to remove by hand.

    with RunLock(run_dir) as lock:        # CheckpointError (one line, naming the holder) when it is held
        ...                               # released on every exit: normal end, exception, KeyboardInterrupt
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from accord.core.errors import CheckpointError, storage_error
from accord.core.process import pid_alive, proc_start_time
from accord.core.rundir import LOCK

__all__ = ["LockInfo", "RunLock", "lock_holder", "read_lock"]

_READ_TRIES = 20
"""A lock file read while its creator is still writing it is empty: so many tries, 25 ms apart, before it counts
as damaged (its creator died between creating and writing it)."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock: process id and start time, host, command line and when the lock was taken."""

    pid: int
    start: str | None
    host: str
    command: str
    started: str

    @classmethod
    def of_this_process(cls) -> LockInfo:
        pid = os.getpid()
        return cls(pid=pid, start=proc_start_time(pid), host=socket.gethostname(), command=_command(),
                   started=datetime.now().astimezone().isoformat(timespec="seconds"))

    def describe(self) -> str:
        """``pid 4242 on gpu-3 since 2025-05-01T10:12:03+02:00 (accord train ...)``."""
        return f"pid {self.pid} on {self.host} since {self.started} ({self.command or 'command unknown'})"

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the holder still runs (only answerable on its own host: elsewhere it counts as running)."""
        return not self.on_this_host() or pid_alive(self.pid, self.start)


def _command() -> str:
    """This process's command line (``accord ...`` for the console script), at most 300 characters."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name == "accord":
        argv[0] = "accord"
    elif argv[0] in ("-c", "-m"):
        argv = ["python", *argv]
    text = " ".join(shlex.join(argv).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _parse(raw: bytes) -> LockInfo | None:
    """The holder a lock file's bytes name; ``None`` for bytes that are not a lock's JSON."""
    try:
        obj = json.loads(raw.decode("utf-8"))
        return LockInfo(pid=int(obj["pid"]), start=None if obj.get("start") is None else str(obj["start"]),
                        host=str(obj["host"]), command=str(obj.get("command", "")), started=str(obj["started"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def read_lock(path: str | os.PathLike[str]) -> tuple[bytes, LockInfo | None] | None:
    """The bytes of the lock file ``path`` and the holder they name (``None`` when they name none, after waiting
    briefly for a creator that is still writing it); ``None`` when there is no lock file."""
    p = Path(path)
    raw = b""
    for _ in range(_READ_TRIES):
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise storage_error(p, err, "read the run lock") from None
        info = _parse(raw)
        if info is not None:
            return raw, info
        time.sleep(0.025)
    return raw, None


class RunLock:
    """The lock of one run directory (see the module docstring). ``acquire()`` returns a note when it took over a
    stale lock (``None`` otherwise); ``release()`` removes the file if this process still holds it."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.info: LockInfo | None = None
        self._raw = b""

    @property
    def held(self) -> bool:
        return self.info is not None

    def acquire(self) -> str | None:
        """Take the lock; a live holder is a one-line CheckpointError naming it. Returns the note of a stale lock
        taken over, else ``None``."""
        if self.held:
            raise CheckpointError(f"{self.path}: already held by this lock object")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise storage_error(self.run_dir, err, "create the run directory") from None
        me = LockInfo.of_this_process()
        raw = (json.dumps(asdict(me)) + "\n").encode("utf-8")
        note: str | None = None
        for _ in range(5):  # a few rounds: another process may take over the same stale lock at the same time
            if self._create(raw):
                self.info, self._raw = me, raw
                return note
            note = self._clear_stale() or note
        raise CheckpointError(f"{self.path}: could not take the run lock (other processes keep taking it)")

    def _create(self, raw: bytes) -> bool:
        """Create the lock file holding ``raw``; False when one exists."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise storage_error(self.path, err, "create the run lock") from None
        try:
            os.write(fd, raw)
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise storage_error(self.path, err, "write the run lock") from None
        os.close(fd)
        return True

    def _clear_stale(self) -> str | None:
        """Remove the existing lock file when its holder is gone (returns the note saying so); raise the one-line
        error naming a live holder, or a holder on another host."""
        found = read_lock(self.path)
        if found is None:
            return None  # released meanwhile: try again
        raw, holder = found
        if holder is not None and not holder.on_this_host():
            raise CheckpointError(f"{self.run_dir}: run is locked by {holder.describe()}; a lock taken on another "
                                  f"host is never considered stale: if that run is gone, delete {self.path}")
        if holder is not None and holder.alive():
            raise CheckpointError(f"{self.run_dir}: run is in use by {holder.describe()}; wait for it to finish or "
                                  f"stop it (the run lock is {self.path})")
        if not self._remove_if_unchanged(raw):
            return None
        if holder is None:
            return f"note: {self.path}: replaced a damaged run lock (it named no holder)"
        return f"note: {self.path}: took over a stale run lock of {holder.describe()}, which is no longer running"

    def _remove_if_unchanged(self, raw: bytes) -> bool:
        """Remove the lock file if it still holds ``raw`` (the stale lock judged): move it aside under a unique
        name first, so that a lock another process created meanwhile is put back, never deleted."""
        aside = self.path.with_name(f"{LOCK}.{os.getpid()}.{uuid.uuid4().hex[:12]}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise storage_error(self.path, err, "remove the stale run lock") from None
        try:
            same = aside.read_bytes() == raw
            if not same:  # put the newer lock back (fails if yet another one exists)
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)
        return same

    def release(self) -> None:
        """Remove the lock file if it is still this holder's (best effort: a failure to remove it leaves a stale
        lock, which the next run takes over)."""
        if not self.held:
            return
        self.info = None
        with contextlib.suppress(OSError):
            if self.path.read_bytes() == self._raw:
                self.path.unlink()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.run_dir)!r}, held={self.held})"


def lock_holder(run_dir: str | os.PathLike[str]) -> LockInfo | None:
    """The holder named by ``<run_dir>/.lock``, or ``None`` (no lock, or a damaged one)."""
    found = read_lock(Path(run_dir) / LOCK)
    return None if found is None else found[1]
