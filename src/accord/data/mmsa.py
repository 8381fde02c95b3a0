"""The MMSA 2.x pickle format (``aligned_50.pkl``, ``unaligned_50.pkl``, ``unaligned_39.pkl``): load, write.

Layout (as produced by the MMSA toolkit for CMU-MOSI, CMU-MOSEI and CH-SIMS): a dict with keys ``train``,
``valid`` and ``test``, each a dict of numpy arrays:

- ``text`` ``[N, T_t, D_t]`` float (BERT or GloVe features; 768-d in the released files);
- ``text_bert`` ``[N, 3, T_t]`` (token ids / attention mask / segment ids; optional): the text length of a
  sample is the sum of its attention-mask row; without ``text_bert`` the text is taken as full length;
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

import codecs
import os
import pickle
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import PositiveInt

from accord.core.errors import ConfigError, DataError
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MultimodalDataset, SplitData
from accord.data.registry import DataParams, register_dataset

Family = Literal["auto", "mosi", "sims"]
NonFinite = Literal["error", "zero"]

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


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals an MMSA pickle may reference: numpy array/dtype/scalar reconstruction."""
    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _nm
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _nm  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Protocol-2 pickles encode bytes as _codecs.encode(str, 'latin1'); harmless.
        ("_codecs", "encode"): codecs.encode,
    }
    # Files written with numpy 1.x name numpy.core, numpy 2.x numpy._core: resolve both to the same objects.
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = _ma._reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = _ma.scalar
        # _frombuffer is private to numpy and absent from its stubs
        table[(f"{pkg}.numeric", "_frombuffer")] = _nm._frombuffer  # type: ignore[attr-defined]
    return table


_ALLOWED = _allowed_globals()


class _RefusedGlobal(pickle.UnpicklingError):
    """Raised by the restricted unpickler for a global outside the allow-list."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array reconstruction globals (see :data:`_ALLOWED`)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _read_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler; every failure is a one-line DataError."""
    if not path.exists():
        raise DataError(f"{path}: file not found (expected an MMSA pickle such as unaligned_50.pkl)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an MMSA pickle file such as unaligned_50.pkl")
    try:
        with path.open("rb") as fh:
            return _NumpyOnlyUnpickler(fh).load()
    except _RefusedGlobal as err:
        raise DataError(
            f"{path}: refusing to unpickle {err.name}: an MMSA pickle may only contain numpy arrays "
            "(a pickle can run code when it is loaded)"
        ) from None
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


def _text_lengths(raw: dict[str, Any], where: str, n: int, t: int) -> np.ndarray:
    """Text lengths: the row sums of the ``text_bert`` attention mask, or full length ``t`` without it."""
    if "text_bert" not in raw:
        return np.full(n, t, dtype=np.int64)
    tb = _numeric(raw, "text_bert", where, 3, "[N, 3, T] (token ids, attention mask, segment ids)")
    if tb.shape[0] != n:
        raise DataError(f"{where}: key 'text_bert' has {tb.shape[0]} rows but 'regression_labels' has {n}")
    if tb.shape[1] < 2:
        raise DataError(
            f"{where}: key 'text_bert' must be [N, 3, T] with the attention mask in row 1, "
            f"got shape {tuple(tb.shape)}"
        )
    mask = tb[:, 1, :]
    if not np.isin(mask, (0, 1)).all():
        raise DataError(f"{where}: key 'text_bert' row 1 (the attention mask) must hold only 0 and 1")
    return _lengths({"text_bert": mask.sum(axis=1)}, "text_bert", where, n, t, "text")


def _split_lengths(raw: dict[str, Any], where: str, n: int, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-modality lengths ``[n]``: text from ``text_bert``, audio/visual from their length keys (else full)."""
    lengths = {"text": _text_lengths(raw, where, n, feats["text"].shape[1])}
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
    lengths = _split_lengths(raw, where, n, feats)
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
        has_text_bert="text_bert" in raw,
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
    for m, limit in (max_len or {}).items():
        feats[m] = feats[m][:, :limit].contiguous()
        lens[m] = lens[m].clamp(max=limit)
    return SplitData(
        features=feats,
        lengths=lens,
        labels=torch.from_numpy(p.labels),
        ids=p.ids,
        raw_text=p.raw_text,
        unimodal_labels={m: torch.from_numpy(y) for m, y in p.unimodal.items()},
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


def write_mmsa_pickle(ds: MultimodalDataset, path: str | os.PathLike[str], aligned: bool = False) -> Path:
    """Write ``ds`` as an MMSA 2.x pickle (for tests and for side-by-side runs against MMSA).

    Each split gets ``text``, ``text_bert`` (zeros, with row 1 the attention mask of the text lengths),
    ``audio``, ``vision``, ``audio_lengths`` / ``vision_lengths`` (omitted when ``aligned``),
    ``regression_labels`` (plus ``regression_labels_T/A/V`` when the dataset has unimodal labels), ``id``,
    ``raw_text``, and the sign-based ``classification_labels`` (0 negative, 1 neutral = exactly 0, 2 positive)
    and ``annotations`` ('Negative' / 'Neutral' / 'Positive'). Class labels and extras of ``ds`` are not part
    of the format and are not written. The file is written to a temporary name and renamed, so a failed write
    leaves no partial file.

    Raises:
        DataError: when ``aligned`` is requested for a dataset whose modalities differ in padded length or
            whose audio/visual lengths are not full (the aligned layout stores no audio/vision lengths).
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
        t_text = part.features["text"].shape[1]
        text_bert = np.zeros((n, 3, t_text), dtype=np.float32)
        text_bert[:, 1, :] = (np.arange(t_text)[None, :] < part.lengths["text"].numpy()[:, None]).astype(
            np.float32
        )
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


class MMSAParams(DataParams):
    """``data.params`` of the ``mmsa`` dataset."""

    family: Family = "auto"
    """``auto`` (sims if labels are in [-1, 1] and ``regression_labels_T`` exists, else mosi), ``mosi`` or
    ``sims``."""
    nonfinite: NonFinite = "error"
    """``error``: NaN/Inf features are an error; ``zero``: replace them by 0 (as MMSA does)."""
    max_len: dict[Literal["text", "audio", "visual"], PositiveInt] | None = None
    """Optional per-modality truncation of the padded length."""


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
