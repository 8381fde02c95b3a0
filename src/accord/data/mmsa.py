"""The MMSA 2.x pickle format (``aligned_50.pkl``, ``unaligned_50.pkl``, ``unaligned_39.pkl``): load, write.

Layout (as produced by the MMSA toolkit for CMU-MOSI, CMU-MOSEI and CH-SIMS): a dict with keys ``train``,
``valid`` and ``test``, each a dict of numpy arrays:

- ``text`` ``[N, T_t, D_t]`` float (BERT or GloVe features; 768-d in the released files);
- ``text_bert`` ``[N, 3, T_t]`` (token ids / attention mask / segment ids; optional): the text length of a
  sample is the sum of its attention-mask row; without ``text_bert`` the text is taken as full length. Its
  whole-number values become ``SplitData.text_tokens`` (long), unless every token id is 0 (a mask-only
  placeholder, as older writers produced: then there are no tokens);
- ``audio`` ``[N, T_a, D_a]`` and ``vision`` ``[N, T_v, D_v]`` float;
- ``audio_lengths`` / ``vision_lengths`` ``[N]`` (only in the unaligned files; absent means full length);
- ``regression_labels`` ``[N]``; CH-SIMS adds ``regression_labels_T``, ``_A`` and ``_V`` (unimodal labels);
- ``id`` and ``raw_text`` ``[N]`` strings; ``annotations`` and ``classification_labels`` are ignored on load.

Known feature dims (text/audio/visual): MOSI 768/5/20, MOSEI 768/74/35, CH-SIMS 768/33/709.

The loader zeroes every step at or past a sample's length (the data contract says padding is zero; MMSA's BERT
features are not zero on padding tokens), renames ``vision`` to ``visual`` and checks everything it reads: a
bad file gives a one-line :class:`~accord.core.errors.DataError` naming the file, the split and the key.

Security: a pickle can run arbitrary code when it is loaded, and these files are usually downloaded from third
parties. This module therefore never calls :func:`pickle.load`; it uses a restricted unpickler that only
resolves numpy's array-reconstruction functions and refuses any other global (``refusing to unpickle
os.system``). Even so, pickles remain a known risk: ``accord data convert`` turns a pickle into Accord's safe
format (``.npz`` arrays plus a JSON manifest with checksums, see :mod:`accord.data.safe`), which loads without
unpickling anything.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import pickle
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from accord.core.errors import ConfigError, DataError
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MultimodalDataset, SplitData
from accord.data.params import Family, MMSAParams, NonFinite
from accord.data.registry import register_dataset

#: MMSA key of each modality's features and lengths.
FEATURE_KEYS: dict[str, str] = {"text": "text", "audio": "audio", "visual": "vision"}
LENGTH_KEYS: dict[str, str] = {"audio": "audio_lengths", "visual": "vision_lengths"}
#: CH-SIMS unimodal label keys.
UNIMODAL_KEYS: dict[str, str] = {
    "text": "regression_labels_T",
    "audio": "regression_labels_A",
    "visual": "regression_labels_V",
}
REQUIRED_KEYS: tuple[str, ...] = ("text", "audio", "vision", "regression_labels")
LABEL_RANGES: dict[str, tuple[float, float]] = {"mosi": (-3.0, 3.0), "sims": (-1.0, 1.0)}
#: Feature dims (text, audio, visual) of the released MMSA files, used to name a loaded dataset.
KNOWN_DIMS: dict[tuple[int, int, int], str] = {
    (768, 5, 20): "mosi",
    (768, 74, 35): "mosei",
    (768, 33, 709): "sims",
}
#: Sign-based classes written by :func:`write_mmsa_pickle` (``classification_labels`` / ``annotations``).
SIGN_CLASSES: tuple[str, str, str] = ("Negative", "Neutral", "Positive")


# ------------------------------------------------------------------------------------------------------
# Restricted unpickling
# ------------------------------------------------------------------------------------------------------
#
# What a hostile pickle can do to this loader, and what stops it:
#
# - run code: only the globals of ``_NumpyOnlyUnpickler._table`` resolve; any other is refused by name.
# - expand while it is unpickled: the unpickler itself builds Python containers, strings and bytes from opcodes that
#   each cost at least one byte of the file, so those are bounded by the file size. The allow-listed callables are
#   the only way to build more than that, and each is guarded: ``_codecs.encode`` accepts only the ``latin1``
#   encoding (``hex`` doubles its input and can be chained), ``numpy.ndarray`` may not be called (only named as
#   ``_reconstruct``'s subtype: ``ndarray(shape, dtype, buffer, strides=0)`` makes an array of any size from a few
#   bytes), ``_reconstruct`` makes only the empty array numpy's pickles start from, and every array's shape is
#   charged to a budget of elements BEFORE numpy allocates it (its size is known from its header: the state that
#   ``BUILD`` hands to ``__setstate__``, or ``_frombuffer``'s arguments), so arrays sharing one memoised state list
#   cannot multiply it either.
# - crash numpy: ``ndarray.__setstate__`` reads past the end of an object array's value list shorter than its shape
#   (a segfault in numpy 2.4), and a structured dtype with a field offset beyond its item size reads past the array
#   when used. The array state is checked (values exactly ``size``, bytes exactly ``size × itemsize``) and dtypes are
#   limited to plain numbers, strings and objects (no fields, sub-arrays, void or datetime).
# - expand after it is unpickled: a small pickle can reference one container many times (memo references: ``a=[0]
#   * 1000; b=[a] * 1000; c=[b] * 1000`` is a few KB and 10^9 elements once ``np.asarray`` copies it), or nest
#   containers deeply. :func:`_check_expansion` walks the unpickled graph once, memoised by object identity, and
#   computes exactly how many elements it holds when every shared reference is copied, and how deeply containers
#   nest, before anything is converted.

#: Deepest nesting of containers (dict, list, tuple, set, object array) an MMSA pickle may have. A real file nests
#: 3 levels (the dict of splits, a split's dict, an object array of strings).
MAX_NESTING = 32
#: Elements a pickle may expand to on top of one per byte of the file (see :func:`expansion_limit`).
EXPANSION_ALLOWANCE = 1_000_000
#: Array kinds a pickle may hold: bool, integers, floats, complex, byte and unicode strings, Python objects.
ARRAY_KINDS = "biufcSUO"


def expansion_limit(file_size: int) -> int:
    """The most elements a pickle of ``file_size`` bytes may expand to: one per byte plus
    :data:`EXPANSION_ALLOWANCE`.

    Elements are numbers of numeric arrays, characters of strings and bytes, and one per container and per other
    object, counted with every shared reference copied (what ``np.asarray`` and ``str`` would build). A file's own
    content never exceeds one element per byte: an array element takes at least one byte (four for the float32
    features of MMSA), a character at least one, and an unshared container or reference at least one opcode. Only
    shared references (memo gets) and constructed arrays go beyond, and real MMSA files hold ~0.25 element per byte
    (their bulk is float32 features).
    """
    return int(file_size) + EXPANSION_ALLOWANCE


class _Refused(pickle.UnpicklingError):
    """A pickle the restricted unpickler will not build; the message completes ``"<file>: ..."``."""


class _RefusedGlobal(_Refused):
    """A global outside the allow-list."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass
class _Budget:
    """Elements the arrays of one pickle may still allocate (charged before numpy allocates anything)."""

    limit: int
    used: int = 0

    def take(self, n: int, shape: tuple[int, ...]) -> None:
        self.used += n
        if self.used > self.limit:
            raise _Refused(
                f"its numpy arrays would hold more than {self.limit:,} elements (at an array of shape {shape}); "
                f"the limit is one element per byte of the file + {EXPANSION_ALLOWANCE:,}"
            )


class _DtypeRecipe:
    """What ``numpy.dtype(...)`` plus ``BUILD`` in a pickle asks for; :meth:`resolve` makes the real dtype after
    checking it is plain (a crafted dtype state can give a field an offset beyond its item size)."""

    def __init__(self, obj: Any, align: Any = False, copy: Any = True) -> None:
        self.obj, self.state = obj, None
        self.resolved: np.dtype[Any] | None = None

    def __setstate__(self, state: Any) -> None:
        self.state, self.resolved = state, None

    def resolve(self) -> np.dtype[Any]:
        if self.resolved is None:
            self.resolved = _plain_dtype(self.obj, self.state)
        return self.resolved


def _plain_dtype(obj: Any, state: Any) -> np.dtype[Any]:
    """``np.dtype(obj)`` with the byte order and item size of the pickled ``state``; refused unless plain."""
    if not isinstance(obj, str):
        raise _Refused(f"refusing a numpy dtype made from {type(obj).__name__} (a pickled dtype is a type code)")
    dt = np.dtype(obj)
    if state is not None:
        if not (isinstance(state, tuple) and len(state) == 8 and state[2:5] == (None, None, None)
                and state[1] in ("<", ">", "|", "=") and isinstance(state[5], int)):
            raise _Refused(f"refusing numpy dtype {obj[:20]!r} with fields, sub-arrays or an unknown state: an MMSA "
                           "pickle holds plain numbers, strings and objects")
        if state[5] >= 0 and dt.kind in "SU":
            dt = np.dtype((dt.type, state[5] // (4 if dt.kind == "U" else 1)))
        if state[1] in "<>":
            dt = dt.newbyteorder(state[1])
    if dt.kind not in ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise _Refused(f"refusing numpy dtype {dt.str!r}: an MMSA pickle holds numbers, strings and objects only")
    return dt


def _dtype_of(value: Any) -> np.dtype[Any]:
    if not isinstance(value, _DtypeRecipe):
        raise _Refused(f"refusing a numpy array whose dtype is a {type(value).__name__}")
    return value.resolve()


def _shape_of(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, tuple) and len(value) <= 64
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise _Refused(f"refusing a numpy array of shape {str(value)[:80]}")
    return value


def _checked_state(state: Any, budget: _Budget) -> tuple[Any, ...]:
    """The state ``(version, shape, dtype, fortran, data)`` of a pickled ndarray after checking its size against
    ``budget`` and its data against its shape (numpy reads past an object array's short value list)."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _Refused("refusing a numpy array with a malformed state")
    version, shape, dtype, fortran, data = state if len(state) == 5 else (1, *state)
    shape, dt = _shape_of(shape), _dtype_of(dtype)
    n = math.prod(shape)
    budget.take(n, shape)
    if dt.hasobject:
        ok, held = isinstance(data, list) and len(data) == n, len(data) if isinstance(data, list) else "no"
    else:
        ok = isinstance(data, bytes | bytearray | str) and len(data) == n * dt.itemsize
        held = f"{len(data)} bytes" if isinstance(data, bytes | bytearray | str) else "no"
    if not ok:
        raise _Refused(f"refusing a numpy array of shape {shape} and dtype {dt.str!r} whose state holds {held} "
                       "values for it")
    return (version, shape, dt, bool(fortran), data)


class _CheckedArray(np.ndarray):
    """The ndarray the restricted unpickler builds: its ``__setstate__`` (pickle's ``BUILD``) checks the state
    first. Loaders use ``np.asarray``, which gives a plain ndarray view of it."""

    budget: _Budget

    def __setstate__(self, state: Any) -> None:
        np.ndarray.__setstate__(self, _checked_state(state, self.budget))


class _NdarrayName:
    """What the global ``numpy.ndarray`` resolves to: a name for ``_reconstruct``, never called."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _RefusedGlobal("numpy.ndarray called directly")


_NDARRAY = _NdarrayName()


def _numpy_modules() -> tuple[Any, Any]:
    """numpy's ``multiarray`` and ``numeric`` modules (``numpy._core`` in numpy 2, ``numpy.core`` before)."""
    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _nm
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _nm  # type: ignore[no-redef]
    return _ma, _nm


_MA, _NM = _numpy_modules()


def _reconstruct(budget: _Budget, subtype: Any, shape: Any, typecode: Any) -> _CheckedArray:
    """numpy's ``_reconstruct`` as its pickles use it: an empty ndarray that ``BUILD`` then fills."""
    if subtype is not _NDARRAY:
        raise _Refused(f"refusing numpy _reconstruct of a {type(subtype).__name__} (only of numpy.ndarray)")
    if math.prod(_shape_of(shape)) != 0:
        raise _Refused(f"refusing numpy _reconstruct of shape {shape} (numpy's pickles reconstruct an empty "
                       "ndarray, then fill it from the file)")
    arr: _CheckedArray = _MA._reconstruct(_CheckedArray, (0,), b"b")
    arr.budget = budget
    return arr


def _frombuffer(budget: _Budget, buf: Any, dtype: Any, shape: Any, order: Any) -> _CheckedArray:
    """numpy's ``_frombuffer`` (protocol-5 pickles) with its shape charged to ``budget`` first."""
    dims, dt = _shape_of(shape), _dtype_of(dtype)
    budget.take(math.prod(dims), dims)
    arr: _CheckedArray = _NM._frombuffer(buf, dt, dims, order).view(_CheckedArray)
    arr.budget = budget
    return arr


def _scalar(budget: _Budget, dtype: Any, *args: Any) -> Any:
    """numpy's ``scalar`` (a pickled numpy scalar) with a checked dtype."""
    budget.take(1, ())
    return _MA.scalar(_dtype_of(dtype), *args)


def _latin1_encode(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol-2 pickles store bytes (no other codec: ``hex`` expands)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refusing _codecs.encode with encoding {str(encoding)[:20]!r} (pickles use latin1)")
    return obj.encode("latin1", errors="strict")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array reconstruction globals, each guarded (see above); arrays may
    hold at most ``limit`` elements in all."""

    def __init__(self, fh: Any, limit: int) -> None:
        super().__init__(fh)
        budget = _Budget(limit)
        self._table: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _DtypeRecipe,
            ("_codecs", "encode"): _latin1_encode,
        }
        # Files written with numpy 1.x name numpy.core, numpy 2.x numpy._core: both resolve to the same guards.
        for pkg in ("numpy.core", "numpy._core"):
            self._table[(f"{pkg}.multiarray", "_reconstruct")] = functools.partial(_reconstruct, budget)
            self._table[(f"{pkg}.multiarray", "scalar")] = functools.partial(_scalar, budget)
            self._table[(f"{pkg}.numeric", "_frombuffer")] = functools.partial(_frombuffer, budget)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _leaf_size(obj: Any) -> int | None:
    """Elements of a leaf (None for a container): characters of a string or bytes, numbers of a non-object
    array, 1 for anything else."""
    if isinstance(obj, _CONTAINERS) or (isinstance(obj, np.ndarray) and obj.dtype.hasobject):
        return None
    if isinstance(obj, str | bytes | bytearray):
        return max(1, len(obj))
    if isinstance(obj, np.ndarray):
        return max(1, int(obj.size))
    return 1


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        return itertools.chain.from_iterable(obj.items())
    if isinstance(obj, np.ndarray):
        return iter(obj.flat)
    return iter(obj)


def _check_expansion(root: Any, limit: int) -> int:
    """The number of elements ``root`` expands to when every shared reference is copied (see
    :func:`expansion_limit`); refuses nesting deeper than :data:`MAX_NESTING`, a container holding itself and a
    total above ``limit``.

    One iterative depth-first walk over the graph as unpickled: each container's expanded size is computed once and
    memoised by identity, so the work is one visit per distinct object and one step per reference, all bounded by
    the file size; nothing is copied. (A pickletools scan of the opcodes would have to replay the unpickler's stack
    and memo to know what each reference points to; walking the built graph gives the same count exactly.)
    """
    first = _leaf_size(root)
    if first is not None:
        return first
    done: dict[int, tuple[Any, int]] = {}  # id -> (the object, kept alive so its id stays unique; its size)
    path: list[tuple[Any, Iterator[Any], list[int]]] = [(root, _children(root), [1])]
    on_path = {id(root)}
    total = 0
    while path:
        obj, items, acc = path[-1]
        child = next(items, _DONE)
        if child is _DONE:
            path.pop()
            on_path.discard(id(obj))
            done[id(obj)] = (obj, acc[0])
            if path:
                path[-1][2][0] += acc[0]
            total = acc[0]
            continue
        size = _leaf_size(child)
        if size is None:
            key = id(child)
            if key in done:
                size = done[key][1]
            elif key in on_path:
                raise _Refused("a container holds itself (a reference cycle): an MMSA pickle is a tree of dicts "
                               "and arrays")
            elif len(path) >= MAX_NESTING:
                raise _Refused(f"containers nest more than {MAX_NESTING} levels deep (an MMSA pickle nests 3: "
                               "the dict of splits, a split's dict, an array); refusing to expand it")
            else:
                path.append((child, _children(child), [1]))
                on_path.add(key)
                continue
        acc[0] += size
    if total > limit:
        raise _Refused(f"would expand to {total:,} elements once shared references are copied, more than the "
                       f"limit of {limit:,} (one element per byte of the file + {EXPANSION_ALLOWANCE:,}); "
                       "refusing to expand it")
    return total


_DONE = object()


def _read_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler and check its expansion; every failure is a one-line
    DataError."""
    if not path.exists():
        raise DataError(f"{path}: file not found (expected an MMSA pickle such as unaligned_50.pkl)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an MMSA pickle file such as unaligned_50.pkl")
    try:
        limit = expansion_limit(path.stat().st_size)
        with path.open("rb") as fh:
            data = _NumpyOnlyUnpickler(fh, limit).load()
        _check_expansion(data, limit)
        return data
    except _RefusedGlobal as err:
        raise DataError(
            f"{path}: refusing to unpickle {err.name}: an MMSA pickle may only contain numpy arrays "
            "(a pickle can run code when it is loaded)"
        ) from None
    except _Refused as err:
        raise DataError(f"{path}: {err}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        ImportError,
        OverflowError,
        UnicodeDecodeError,
        MemoryError,
        struct.error,
    ) as err:
        detail = " ".join(str(err).split())[:160] or "no detail"
        raise DataError(
            f"{path}: not a readable pickle ({type(err).__name__}: {detail}); the file is truncated, corrupt "
            "or not a pickle"
        ) from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


def _numeric(raw: dict[str, Any], key: str, where: str, ndim: int, shape_doc: str) -> np.ndarray:
    """``raw[key]`` as a numeric numpy array of ``ndim`` dimensions (DataError otherwise)."""
    value = raw[key]
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        kind = getattr(getattr(value, "dtype", None), "name", type(value).__name__)
        raise DataError(f"{where}: key {key!r} must be a numeric array {shape_doc}, got {kind}") from None
    if arr.ndim != ndim:
        raise DataError(f"{where}: key {key!r} must be {ndim}-D {shape_doc}, got shape {tuple(arr.shape)}")
    return arr


def _labels(raw: dict[str, Any], key: str, where: str) -> np.ndarray:
    """A label array ``[N]`` (``[N, 1]`` / ``[N, 1, 1]`` are squeezed), finite, as float32."""
    value = raw[key]
    try:
        arr = np.asarray(value)
        arr = (
            arr.astype(np.float32) if arr.dtype.kind in "biuf" else arr.astype(np.float64).astype(np.float32)
        )
    except (TypeError, ValueError):
        raise DataError(f"{where}: key {key!r} must be a numeric array [N]") from None
    if arr.ndim > 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(arr.shape[0])
    if arr.ndim != 1:
        raise DataError(f"{where}: key {key!r} must be 1-D [N], got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: key {key!r} contains {int((~np.isfinite(arr)).sum())} NaN/Inf labels")
    return arr


def _strings(raw: dict[str, Any], key: str, where: str, n: int) -> list[str]:
    """A 1-D array of ``n`` strings (bytes are decoded as UTF-8)."""
    arr = np.asarray(raw[key], dtype=object)
    if arr.ndim != 1:
        raise DataError(f"{where}: key {key!r} must be 1-D [N] strings, got shape {tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise DataError(f"{where}: key {key!r} has {arr.shape[0]} rows but 'regression_labels' has {n}")
    out: list[str] = []
    for item in arr.tolist():
        if isinstance(item, bytes):
            out.append(item.decode("utf-8", errors="replace"))
        else:
            out.append(str(item))
    return out


def _lengths(raw: dict[str, Any], key: str, where: str, n: int, t: int, of: str) -> np.ndarray:
    """A 1-D array of ``n`` integer lengths within ``[0, t]``."""
    arr = np.asarray(raw[key])
    if arr.ndim != 1:
        raise DataError(f"{where}: key {key!r} must be 1-D [N], got shape {tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise DataError(f"{where}: key {key!r} has {arr.shape[0]} rows but 'regression_labels' has {n}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: key {key!r} must hold integer lengths, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or not np.equal(np.round(arr), arr).all()):
        raise DataError(f"{where}: key {key!r} must hold whole-number lengths")
    lens = arr.astype(np.int64)
    if n and lens.max() > t:
        raise DataError(
            f"{where}: key {key!r} has a length of {int(lens.max())} beyond the padded length T={t} of {of!r}"
        )
    if n and lens.min() < 0:
        raise DataError(f"{where}: key {key!r} has a negative length {int(lens.min())}")
    return lens


@dataclass
class _RawSplit:
    """One checked MMSA split as numpy arrays keyed by Accord names (see :func:`_split_arrays`)."""

    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    labels: np.ndarray
    unimodal: dict[str, np.ndarray]
    ids: list[str]
    raw_text: list[str]
    has_text_bert: bool
    text_tokens: np.ndarray | None
    has_lengths: bool


def _check_split_keys(raw: Any, where: str) -> dict[str, Any]:
    """``raw`` as a dict holding every key of :data:`REQUIRED_KEYS` (DataError otherwise)."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a dict of arrays, got {type(raw).__name__}")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise DataError(f"{where}: missing key {key!r} (an MMSA split needs {', '.join(REQUIRED_KEYS)})")
    return raw


def _feature(raw: dict[str, Any], key: str, where: str, n: int, nonfinite: NonFinite,
             replaced: dict[str, int]) -> np.ndarray:
    """The float32 features ``raw[key]`` ``[n, T, D]``; NaN/Inf raise or become 0 (counted in ``replaced``)."""
    x = _numeric(raw, key, where, 3, "[N, T, D]")
    if x.shape[0] != n:
        raise DataError(f"{where}: key {key!r} has {x.shape[0]} rows but 'regression_labels' has {n}")
    x = x.astype(np.float32, copy=False)  # the unpickled array is ours: edit it in place ...
    if not x.flags.writeable:  # ... unless it came back read-only (protocol 5 with an in-band bytes buffer)
        x = x.copy()
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        if nonfinite == "error":
            raise DataError(
                f"{where}: key {key!r} contains {count} non-finite values (NaN/Inf); "
                "set data.params.nonfinite=zero to replace them by 0 as MMSA does"
            )
        x[bad] = 0.0
        replaced[key] = count
    return x


def _text_bert(raw: dict[str, Any], where: str, n: int) -> np.ndarray | None:
    """The checked ``text_bert`` ``[n, 3, T]`` as int64 (whole numbers, 0/1 mask), or None when absent."""
    if "text_bert" not in raw:
        return None
    tb = _numeric(raw, "text_bert", where, 3, "[N, 3, T] (token ids, attention mask, segment ids)")
    if tb.shape[0] != n:
        raise DataError(f"{where}: key 'text_bert' has {tb.shape[0]} rows but 'regression_labels' has {n}")
    if tb.shape[1] != 3:
        raise DataError(
            f"{where}: key 'text_bert' must be [N, 3, T] (token ids, attention mask in row 1, segment ids), "
            f"got shape {tuple(tb.shape)}"
        )
    if not np.isin(tb[:, 1, :], (0, 1)).all():
        raise DataError(f"{where}: key 'text_bert' row 1 (the attention mask) must hold only 0 and 1")
    if tb.dtype.kind == "f":
        whole = np.isfinite(tb) & (np.round(tb) == tb)
        if not whole.all():
            bad = float(tb[~whole][0])
            raise DataError(f"{where}: key 'text_bert' must hold whole numbers (token ids), found {bad:g}")
    return tb.astype(np.int64)


def _text_lengths(tb: np.ndarray | None, where: str, n: int, t: int) -> np.ndarray:
    """Text lengths: the row sums of the ``text_bert`` attention mask, or full length ``t`` without it."""
    if tb is None:
        return np.full(n, t, dtype=np.int64)
    return _lengths({"text_bert": tb[:, 1, :].sum(axis=1)}, "text_bert", where, n, t, "text")


def _split_lengths(raw: dict[str, Any], where: str, n: int, feats: dict[str, np.ndarray],
                   tb: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-modality lengths ``[n]``: text from ``text_bert`` (``tb``), audio/visual from their length keys (else
    full)."""
    lengths = {"text": _text_lengths(tb, where, n, feats["text"].shape[1])}
    for m, key in LENGTH_KEYS.items():
        t = feats[m].shape[1]
        lengths[m] = _lengths(raw, key, where, n, t, FEATURE_KEYS[m]) if key in raw else np.full(n, t, np.int64)
    return lengths


def _split_unimodal(raw: dict[str, Any], where: str, n: int) -> dict[str, np.ndarray]:
    """The CH-SIMS unimodal labels present in ``raw`` (modality -> ``[n]``)."""
    unimodal: dict[str, np.ndarray] = {}
    for m, key in UNIMODAL_KEYS.items():
        if key in raw:
            y = _labels(raw, key, where)
            if y.shape[0] != n:
                raise DataError(f"{where}: key {key!r} has {y.shape[0]} rows but 'regression_labels' has {n}")
            unimodal[m] = y
    return unimodal


def _split_arrays(raw: Any, split: str, where: str, nonfinite: NonFinite, replaced: dict[str, int]) -> _RawSplit:
    """Read and check one MMSA split; returns numpy arrays keyed by Accord names."""
    raw = _check_split_keys(raw, where)
    labels = _labels(raw, "regression_labels", where)
    n = int(labels.shape[0])
    if n == 0:
        raise DataError(f"{where}: is empty (0 samples in 'regression_labels')")
    feats = {m: _feature(raw, key, where, n, nonfinite, replaced) for m, key in FEATURE_KEYS.items()}
    tb = _text_bert(raw, where, n)
    lengths = _split_lengths(raw, where, n, feats, tb)
    for m in MODALITIES:  # the data contract: steps at or past the length are zero
        steps = np.arange(feats[m].shape[1])[None, :] < lengths[m][:, None]
        feats[m] *= steps[:, :, None]
    unimodal = _split_unimodal(raw, where, n)
    ids = _strings(raw, "id", where, n) if "id" in raw else [f"{split}_{i}" for i in range(n)]
    raw_text = _strings(raw, "raw_text", where, n) if "raw_text" in raw else ["" for _ in range(n)]
    return _RawSplit(
        features=feats,
        lengths=lengths,
        labels=labels,
        unimodal=unimodal,
        ids=ids,
        raw_text=raw_text,
        has_text_bert=tb is not None,
        text_tokens=None if tb is None or not tb[:, 0].any() else tb,
        has_lengths=all(k in raw for k in LENGTH_KEYS.values()),
    )


def _check_range(arr: np.ndarray, key: str, where: str, lo: float, hi: float, family: str) -> None:
    out = (arr < lo) | (arr > hi)
    if out.any():
        raise DataError(
            f"{where}: key {key!r} has value {float(arr[out][0]):g} outside [{lo:g}, {hi:g}] "
            f"(family {family}; set data.params.family if the family was guessed wrong)"
        )


def _check_options(family: str, nonfinite: str, max_len: Mapping[str, int] | None) -> None:
    """ConfigError for a bad ``family``, ``nonfinite`` or ``max_len`` of :func:`load_mmsa_pickle`."""
    if family not in ("auto", "mosi", "sims"):
        raise ConfigError(f"data.params.family: expected auto, mosi or sims, got {family!r}")
    if nonfinite not in ("error", "zero"):
        raise ConfigError(f"data.params.nonfinite: expected error or zero, got {nonfinite!r}")
    for m, limit in (max_len or {}).items():
        if m not in MODALITIES:
            raise ConfigError(f"data.params.max_len.{m}: unknown modality; expected text, audio or visual")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError(f"data.params.max_len.{m}: expected a positive integer, got {limit!r}")


def _read_splits(file: Path, nonfinite: NonFinite) -> tuple[dict[str, _RawSplit], dict[str, dict[str, int]]]:
    """The checked splits of the pickle ``file`` and, per split, the non-finite values replaced per key."""
    data = _read_pickle(file)
    if not isinstance(data, dict):
        raise DataError(
            f"{file}: top level is a {type(data).__name__}, expected a dict with keys train, valid, test"
        )
    for split in SPLITS:
        if split not in data:
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise DataError(f"{file}: missing split {split!r} (expected keys train, valid, test; found {keys})")
    parts: dict[str, _RawSplit] = {}
    replaced: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        rep: dict[str, int] = {}
        # pop: the raw split is released as soon as it is converted (MOSEI's pickles are several GB)
        parts[split] = _split_arrays(data.pop(split), split, f"{file}: split {split!r}", nonfinite, rep)
        if rep:
            replaced[split] = rep
    return parts, replaced


def _check_across_splits(file: Path, parts: dict[str, _RawSplit]) -> tuple[dict[str, int], set[str]]:
    """Feature dims equal to train's and the same unimodal labels in every split; returns the dims and the
    modalities with unimodal labels."""
    ref = {m: parts["train"].features[m].shape[2] for m in MODALITIES}
    for split in SPLITS:
        dims = {m: parts[split].features[m].shape[2] for m in MODALITIES}
        if dims != ref:
            m = next(m for m in MODALITIES if dims[m] != ref[m])
            raise DataError(
                f"{file}: split {split!r}: key {FEATURE_KEYS[m]!r} has feature dim {dims[m]} but "
                f"train has {ref[m]}"
            )
    have_uni = {m for split in SPLITS for m in parts[split].unimodal}
    for split in SPLITS:
        for m in sorted(have_uni):
            if m not in parts[split].unimodal:
                raise DataError(f"{file}: split {split!r}: missing key {UNIMODAL_KEYS[m]!r} (other splits have it)")
    return ref, have_uni


def _family(family: Family, parts: dict[str, _RawSplit], have_uni: set[str]) -> Literal["mosi", "sims"]:
    """The label family: ``family`` itself, or for ``auto`` sims when every label lies in [-1, 1] and there are
    text unimodal labels, else mosi."""
    if family != "auto":
        return family
    in_unit = all(bool((np.abs(parts[s].labels) <= 1.0).all()) for s in SPLITS)
    return "sims" if in_unit and "text" in have_uni else "mosi"


def _check_label_ranges(file: Path, parts: dict[str, _RawSplit], family: Literal["mosi", "sims"]) -> None:
    """Every label (and unimodal label) within the range of ``family``."""
    lo, hi = LABEL_RANGES[family]
    for split in SPLITS:
        where = f"{file}: split {split!r}"
        _check_range(parts[split].labels, "regression_labels", where, lo, hi, family)
        for m, y in parts[split].unimodal.items():
            _check_range(y, UNIMODAL_KEYS[m], where, lo, hi, family)


def _split_data(p: _RawSplit, max_len: Mapping[str, int] | None) -> SplitData:
    """The :class:`SplitData` of a checked split, truncated to ``max_len`` where given."""
    feats = {m: torch.from_numpy(p.features[m]) for m in MODALITIES}
    lens = {m: torch.from_numpy(p.lengths[m]) for m in MODALITIES}
    tokens = None if p.text_tokens is None else torch.from_numpy(p.text_tokens)
    for m, limit in (max_len or {}).items():
        feats[m] = feats[m][:, :limit].contiguous()
        lens[m] = lens[m].clamp(max=limit)
        if m == "text" and tokens is not None:  # text_bert and the text features share their steps
            tokens = tokens[:, :, :limit].contiguous()
    return SplitData(
        features=feats,
        lengths=lens,
        labels=torch.from_numpy(p.labels),
        ids=p.ids,
        raw_text=p.raw_text,
        unimodal_labels={m: torch.from_numpy(y) for m, y in p.unimodal.items()},
        text_tokens=tokens,
    )


def load_mmsa_pickle(
    path: str | os.PathLike[str],
    family: Family = "auto",
    nonfinite: NonFinite = "error",
    max_len: Mapping[str, int] | None = None,
) -> MultimodalDataset:
    """Load an MMSA 2.x pickle into a validated :class:`MultimodalDataset`.

    Args:
        path: the ``.pkl`` file.
        family: ``"mosi"`` (MOSI/MOSEI, labels in [-3, 3]), ``"sims"`` (CH-SIMS, labels in [-1, 1]) or
            ``"auto"``: sims when every label lies in [-1, 1] and the file has ``regression_labels_T``, else
            mosi.
        nonfinite: ``"error"`` (default) raises on NaN/Inf features with their count; ``"zero"`` replaces them
            by 0, as MMSA does for the ``-inf`` values in the released MOSI audio (counts go to ``ds.meta``).
        max_len: optional per-modality truncation (``{"audio": 50}``); lengths are clipped accordingly.

    Raises:
        DataError: naming the file, split and key, for any problem with the file.
        ConfigError: for a bad ``family``, ``nonfinite`` or ``max_len``.
    """
    _check_options(family, nonfinite, max_len)
    file = Path(path)
    parts, replaced = _read_splits(file, nonfinite)
    ref, have_uni = _check_across_splits(file, parts)
    family_used = _family(family, parts, have_uni)
    _check_label_ranges(file, parts, family_used)
    splits = {split: _split_data(parts[split], max_len) for split in SPLITS}
    guess = KNOWN_DIMS.get((ref["text"], ref["audio"], ref["visual"]), "mmsa")
    ds = MultimodalDataset(
        name=f"{guess}-{file.stem}",
        splits=splits,
        metric_family=family_used,
        label_range=LABEL_RANGES[family_used],
        source=str(file),
        meta={
            "loader": "mmsa",
            "file": str(file),
            "family": family_used,
            "family_requested": family,
            "dataset_guess": guess,
            "aligned": not all(parts[s].has_lengths for s in SPLITS),
            "text_lengths": "text_bert attention mask" if parts["train"].has_text_bert else "full length",
            "text_tokens": all(parts[s].text_tokens is not None for s in SPLITS),
            "nonfinite": nonfinite,
            "nonfinite_replaced": replaced,
            "max_len": dict(max_len or {}),
        },
    )
    return ds.validate()


# ------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------


def _sign_class(y: np.ndarray) -> np.ndarray:
    """0 negative, 1 neutral (exactly 0), 2 positive."""
    return (np.sign(y).astype(np.int64) + 1).astype(np.int64)


def _text_bert_of(part: SplitData, where: str) -> np.ndarray:
    """The ``text_bert`` array to write for ``part``: its text tokens (as float32, like MMSA's files), or zeros
    with row 1 the attention mask of the text lengths when it has none."""
    if part.text_tokens is not None:
        counts = part.text_tokens[:, 1].long().sum(dim=1)
        if not torch.equal(counts, part.lengths["text"].long()):
            i = int((counts != part.lengths["text"].long()).nonzero()[0].item())
            raise DataError(
                f"{where}: row {i} has {int(counts[i])} real text tokens but a text length of "
                f"{int(part.lengths['text'][i])}; MMSA takes text lengths from the text_bert mask, so they must "
                "agree (save in the safe format instead)"
            )
        return part.text_tokens.numpy().astype(np.float32)
    n, t_text = len(part), part.features["text"].shape[1]
    text_bert = np.zeros((n, 3, t_text), dtype=np.float32)
    text_bert[:, 1, :] = (np.arange(t_text)[None, :] < part.lengths["text"].numpy()[:, None]).astype(np.float32)
    return text_bert


def write_mmsa_pickle(ds: MultimodalDataset, path: str | os.PathLike[str], aligned: bool = False) -> Path:
    """Write ``ds`` as an MMSA 2.x pickle (for tests and for side-by-side runs against MMSA).

    Each split gets ``text``, ``text_bert`` (the split's ``text_tokens`` when it has them, else zeros with row 1
    the attention mask of the text lengths),
    ``audio``, ``vision``, ``audio_lengths`` / ``vision_lengths`` (omitted when ``aligned``),
    ``regression_labels`` (plus ``regression_labels_T/A/V`` when the dataset has unimodal labels), ``id``,
    ``raw_text``, and the sign-based ``classification_labels`` (0 negative, 1 neutral = exactly 0, 2 positive)
    and ``annotations`` ('Negative' / 'Neutral' / 'Positive'). Class labels and extras of ``ds`` are not part
    of the format and are not written. The file is written to a temporary name and renamed, so a failed write
    leaves no partial file.

    Raises:
        DataError: when ``aligned`` is requested for a dataset whose modalities differ in padded length or
            whose audio/visual lengths are not full (the aligned layout stores no audio/vision lengths), or
            whose text tokens' real counts differ from its text lengths (MMSA reads the text lengths from the
            ``text_bert`` mask).
    """
    ds.validate()
    out: dict[str, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        part = ds.splits[split]
        n = len(part)
        where = f"{ds.source}: split {split!r}"
        if aligned:
            seq = part.seq_lens()
            if len(set(seq.values())) != 1:
                raise DataError(
                    f"{where}: aligned=True needs one padded length for all modalities, got {seq}"
                )
            for m in ("audio", "visual"):
                if bool((part.lengths[m] != seq[m]).any()):
                    raise DataError(
                        f"{where}: aligned=True needs full-length {m} (the aligned layout stores no "
                        f"{LENGTH_KEYS[m]}); write with aligned=False"
                    )
        text_bert = _text_bert_of(part, where)
        y = part.labels.numpy().astype(np.float32)
        cls = _sign_class(y)
        entry: dict[str, np.ndarray] = {
            "raw_text": np.array(part.raw_text if part.raw_text else ["" for _ in range(n)], dtype=object),
            "audio": part.features["audio"].numpy().astype(np.float32),
            "vision": part.features["visual"].numpy().astype(np.float32),
            "id": np.array(list(part.ids), dtype=object),
            "text": part.features["text"].numpy().astype(np.float32),
            "text_bert": text_bert,
            "annotations": np.array([SIGN_CLASSES[c] for c in cls.tolist()], dtype=object),
            "classification_labels": cls,
            "regression_labels": y,
        }
        if not aligned:
            entry["audio_lengths"] = part.lengths["audio"].numpy().astype(np.int64)
            entry["vision_lengths"] = part.lengths["visual"].numpy().astype(np.int64)
        for m, key in UNIMODAL_KEYS.items():
            if m in part.unimodal_labels:
                entry[key] = part.unimodal_labels[m].numpy().astype(np.float32)
        out[split] = entry
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(out, fh, protocol=4)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


# ------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------


@register_dataset(
    "mmsa",
    params=MMSAParams,
    needs_path=True,
    description="an MMSA 2.x pickle (aligned_50.pkl / unaligned_50.pkl / unaligned_39.pkl of MOSI, MOSEI, "
    "CH-SIMS)",
)
def build_mmsa(path: str | None, params: MMSAParams) -> MultimodalDataset:
    """Registry builder: :func:`load_mmsa_pickle` with ``data.params``."""
    assert path is not None  # build_dataset enforces needs_path
    return load_mmsa_pickle(
        path,
        family=params.family,
        nonfinite=params.nonfinite,
        max_len={str(m): n for m, n in params.max_len.items()} if params.max_len else None,
    )
