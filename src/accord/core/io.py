"""Atomic file writes (a reader, or a crash, never sees a half-written result file) and checked JSON reads.

Each writer creates a uniquely named temporary file in the destination's directory (so the final rename stays
on one file system), writes and ``fsync``\\ s it, and moves it over the destination with :func:`os.replace`,
which is atomic on POSIX and Windows. On any error the temporary file is removed and the destination is left
untouched. Missing parent directories are created. New files get the usual permissions (``0o666`` minus the
process umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "npz_bytes", "read_json_file", "write_json", "write_npz"]

PathLike = str | os.PathLike[str]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


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


def read_json_file(file: Path, error: type[Exception], expected: str) -> Any:
    """The parsed JSON of ``file``; a missing or unparsable file raises ``error`` with one line naming the file.

    ``expected`` completes the message of a missing file: ``"<file>: missing; expected <expected>"``.
    """
    if not file.is_file():
        raise error(f"{file}: missing; expected {expected}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{file}: not valid JSON ({err})") from None


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
