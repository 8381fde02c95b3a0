"""Third-party native logging kept off the terminal: file descriptor 2 redirected to a log file around native calls.

MediaPipe, TensorFlow Lite, absl and glog write their warnings from C++ straight to file descriptor 2; a Python
``sys.stderr`` swap cannot catch them, and they bury a progress bar and a command's summary.
:func:`capture_native_output` points fd 2 at a log file (``os.dup2``) for the duration of a block, so every write to
fd 2 (C++ logging, Python warnings and ``logging`` handlers that write to ``sys.stderr``, child processes that
inherit fd 2) lands in that file; the original fd 2 is restored when the block ends, also when it raises. Accord's
own terminal output (progress bars, per-clip failures) goes to :func:`terminal_stderr`, a stream on a duplicate of
the ORIGINAL fd 2, so it stays visible during the capture.

It also sets ``GLOG_minloglevel=2`` (glog: errors only) and ``TF_CPP_MIN_LOG_LEVEL=3`` (TensorFlow's C++ logging:
fatal only) unless the user set them, before anything imports MediaPipe, so what remains (the absl lines written
before its logging is initialised, TFLite delegate notes, Python warnings) is worth keeping. fd 2 belongs to the
whole process: a capture is meant for the main thread of a command (``accord extract``, ``accord predict``); nested
captures write to the outermost capture's file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from accord.core.errors import storage_error

__all__ = ["NATIVE_LOG_ENV", "capture_native_output", "quiet_native_env", "terminal_stderr"]

NATIVE_LOG_ENV: dict[str, str] = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
"""Environment variables read by glog / TensorFlow Lite when they initialise (set only where the user has not)."""

_terminal: list[TextIO] = []  # the stack of active captures' terminal streams (innermost last)


def quiet_native_env() -> None:
    """Set :data:`NATIVE_LOG_ENV` where the user has not set the variables (call before importing MediaPipe)."""
    for key, value in NATIVE_LOG_ENV.items():
        os.environ.setdefault(key, value)


def terminal_stderr() -> TextIO:
    """The terminal's stderr: inside :func:`capture_native_output` a stream on the original fd 2, else
    ``sys.stderr``. Progress bars and messages meant for the user write here."""
    return _terminal[-1] if _terminal else sys.stderr


def _flush_python_streams() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


@contextlib.contextmanager
def capture_native_output(log_file: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """Redirect file descriptor 2 to ``log_file`` (appended; ``None``: discarded to the null device) while the block
    runs; yields the log file's path (``None`` when discarded).

    Inside the block :func:`terminal_stderr` is a stream on the original fd 2. fd 2 and ``terminal_stderr()`` are
    restored afterwards, also when the block raises. Nested calls keep the outer capture (the inner file is not
    used).

    Raises:
        StorageError: the log file cannot be opened (one line naming it).
    """
    quiet_native_env()
    if _terminal:  # already captured: fd 2 already points at the outer log file
        yield Path(log_file) if log_file is not None else None
        return
    target = Path(log_file) if log_file is not None else None
    dest = os.devnull if target is None else str(target)
    try:
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as err:
        raise storage_error(target or Path(dest), err, "open the native log file") from None
    _flush_python_streams()
    saved = os.dup(2)
    try:
        terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                             errors="replace")
    except BaseException:
        os.close(saved)
        os.close(log_fd)
        raise
    os.dup2(log_fd, 2)
    os.close(log_fd)
    _terminal.append(terminal)
    try:
        yield target
    finally:
        _flush_python_streams()
        _terminal.pop()
        with contextlib.suppress(OSError, ValueError):
            terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(OSError, ValueError):
            terminal.close()
