"""Process identity on this host: is a process (pid + start time) still running? Used by run-directory locks,
the clean-up of temporary files left by a killed writer, and the sweep's dead-worker recovery.

A pid alone is not an identity (the kernel reuses pids); the start time in ``/proc/<pid>/stat`` (field 22, clock
ticks since boot) tells a reused pid apart. Where ``/proc`` is absent (not Linux) only the pid is checked.
"""

from __future__ import annotations

import os
from pathlib import Path


def proc_start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot, /proc/<pid>/stat field 22), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, when known) is still running on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file():
        try:
            state = stat.read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            state = ""
        if state in ("Z", "X"):
            return False
        if start is not None and proc_start_time(pid) != start:
            return False  # the pid was reused by another process
    return True
