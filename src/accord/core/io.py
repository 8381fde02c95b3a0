"""Atomic file writes (a reader, or a crash, never sees a half-written result file) and checked JSON reads.

Each writer creates a uniquely named temporary file in the destination's directory (so the final rename stays
on one file system), writes and ``fsync``\\ s it, and moves it over the destination with :func:`os.replace`,
which is atomic on POSIX and Windows. On any error the temporary file is removed and the destination is left
untouched. Missing parent directories are created. New files get the usual permissions (``0o666`` minus the
process umask), not the ``0o600`` of :func:`tempfile.mkstemp`.

An error of the operating system (disk full, a read-only folder, a name too long for the file system) is a one-line
:class:`~accord.core.errors.StorageError` naming the destination and the cause. A writer killed between its write
and its rename leaves its temporary file ``.<name>.<pid>.<hex>.tmp``; :func:`clean_dead_temps` removes those whose
writer is gone (the trainer calls it when a run starts or resumes).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from accord.core.errors import storage_error
from accord.core.process import pid_alive

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_with", "clean_dead_temps", "npz_bytes",
           "read_json_file", "temp_name", "write_json", "write_npz"]

PathLike = str | os.PathLike[str]


def temp_name(name: str) -> str:
    """The name of the temporary file a write of ``name`` goes through: ``.<name>.<pid>.<12 hex>.tmp`` (the pid
    tells :func:`clean_dead_temps` whether its writer still runs)."""
    return f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``).

    Raises:
        StorageError: the system refused (disk full, read-only folder, name too long, ...): one line naming
            ``path`` and the cause; the temporary file is removed and ``path`` is left as it was.
    """
    atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_with(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Atomically write what ``write(fh)`` writes to the open temporary file ``fh`` (then fsync, ``os.replace``):
    a large payload (a training state) streams to disk without first being built in memory as one bytes object.
    Errors as :func:`atomic_write_bytes`; an exception ``write`` raises removes the temporary file and propagates.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(target.parent, err, "create the folder") from None
    tmp = target.with_name(temp_name(target.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise storage_error(target, err) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise storage_error(target, err) from None
        raise
    _fsync_dir(target.parent)


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{12}\.tmp$")


def clean_dead_temps(folder: PathLike) -> list[Path]:
    """Remove the temporary files (:func:`temp_name`) in ``folder`` whose writer is no longer running: a writer
    killed between writing and renaming leaves one (a ``last.pt`` one is megabytes). Files of live writers are
    kept. Returns the removed files; a missing folder has none.

    Raises:
        StorageError: a dead writer's file cannot be removed (a read-only folder, ...).
    """
    d = Path(folder)
    try:
        entries = sorted(d.iterdir()) if d.is_dir() else []
    except OSError as err:
        raise storage_error(d, err, "list the folder") from None
    removed: list[Path] = []
    for p in entries:
        m = _TEMP.match(p.name)
        if m is None or not p.is_file() or pid_alive(int(m["pid"])):
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise storage_error(p, err, "remove a dead writer's temporary file") from None
        removed.append(p)
    return removed


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8, without newline translation."""
    atomic_write_bytes(path, text.encode("utf-8"))


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays`` (name -> array), readable without pickle."""
    buf = io.BytesIO()
    np.savez(buf, **{str(k): np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def write_npz(path: PathLike, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as an ``.npz`` file atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))


def write_npy(path: PathLike, array: Any) -> None:
    """Write one array as a ``.npy`` file atomically (never pickled)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def read_npy(path: PathLike) -> np.ndarray | None:
    """The array of a ``.npy`` file (never unpickled), or ``None`` when it is absent or unreadable: a cache miss."""
    if not Path(path).is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def read_json_file(file: Path, error: type[Exception], expected: str, context: str = "") -> Any:
    """The parsed JSON of ``file``; a missing, unreadable or unparsable file raises ``error`` with one line naming
    the file.

    ``expected`` completes the message of a missing file: ``"<file>: missing; expected <expected>"``; ``context``,
    when given, ends the other messages (``"<file>: not valid JSON (...); <context>"``).
    """
    if not file.is_file():
        raise error(f"{file}: missing; expected {expected}")
    tail = f"; {context}" if context else ""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{file}: not valid JSON ({err}){tail}") from None
    except OSError as err:
        raise error(f"{file}: cannot read ({err.strerror or err}){tail}") from None


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (``indent=2``, trailing newline) atomically.

    NaN and +/-Inf floats become ``null`` (strict JSON has no such values); numpy scalars and arrays, and
    torch tensors (anything with ``tolist()``), become plain numbers and lists; tuples become lists;
    :class:`os.PathLike` values become strings. Key order is preserved.

    Raises:
        TypeError: ``obj`` contains a value JSON cannot represent.
    """
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _jsonable(obj: Any) -> Any:
    """A copy of ``obj`` with only JSON-native values; non-finite floats become ``None``."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_key(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar / 0-d array / 0-d tensor
        return _jsonable(obj.item())
    if hasattr(obj, "tolist"):  # numpy array, torch tensor
        return _jsonable(obj.tolist())
    raise TypeError(f"write_json: cannot serialise a value of type {type(obj).__name__}")


def _key(key: Any) -> Any:
    """A dict key JSON accepts (numpy scalar keys become Python numbers)."""
    if key is None or isinstance(key, bool | int | float | str):
        return key
    if hasattr(key, "item"):
        return key.item()
    return str(key)


def _fsync_dir(directory: Path) -> None:
    """Flush the directory entry of the rename to disk where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
