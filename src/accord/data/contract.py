"""The data contract's checks and summary, for torch tensors and numpy arrays alike.

:meth:`accord.data.dataset.MultimodalDataset.validate` and ``.summary()`` run these functions on a dataset's
tensors; ``accord data info`` of a safe-format folder runs the same functions on the folder's numpy arrays
(:mod:`accord.data.safe_files`) without importing torch. A split is anything with the attributes of
:class:`~accord.data.dataset.SplitData` (:class:`SplitLike`); each array is a ``torch.Tensor`` or an
``np.ndarray`` and only the few operations the two differ in go through the helpers below (``_isfinite``,
``_is_float``, ``_is_int``, ``_first_true``, and the float32 statistics of the summary), so the messages and
the printed numbers are the same for both.
"""

from __future__ import annotations

import functools
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from accord.core.errors import DataError
from accord.core.types import MODALITIES

SPLITS: tuple[str, str, str] = ("train", "valid", "test")
#: Duplicate ids named in the error of :func:`check_ids`.
_SHOWN_IDS = 3
#: Integer dtypes text tokens may have (torch's names; numpy's are the same without the ``torch.`` prefix).
_INT_DTYPES = ("uint8", "int8", "int16", "int32", "int64")


class SplitLike(Protocol):
    """What the checks read of a split (:class:`~accord.data.dataset.SplitData`, or its numpy twin
    :class:`~accord.data.safe_files.SplitArrays`); arrays are torch tensors or numpy arrays."""

    @property
    def features(self) -> Mapping[str, Any]: ...
    @property
    def lengths(self) -> Mapping[str, Any]: ...
    @property
    def labels(self) -> Any: ...
    @property
    def ids(self) -> Sequence[Any]: ...
    @property
    def raw_text(self) -> Sequence[str]: ...
    @property
    def class_labels(self) -> Any: ...
    @property
    def unimodal_labels(self) -> Mapping[str, Any]: ...
    @property
    def extras(self) -> Mapping[str, Any]: ...
    @property
    def text_tokens(self) -> Any: ...


# ------------------------------------------------------------------------------------ tensor / array helpers
def _isfinite(x: Any) -> Any:
    """Elementwise "is finite" of a tensor or an array."""
    return np.isfinite(x) if isinstance(x, np.ndarray) else x.isfinite()


def _is_float(x: Any) -> bool:
    """Whether ``x`` holds floating-point numbers."""
    return x.dtype.kind == "f" if isinstance(x, np.ndarray) else bool(x.is_floating_point())


def _is_int(x: Any) -> bool:
    """Whether ``x`` holds one of the integer dtypes text tokens may have (:data:`_INT_DTYPES`)."""
    return str(x.dtype).removeprefix("torch.") in _INT_DTYPES


def _first_true(mask: Any) -> int:
    """The index of the first True of a 1-D boolean tensor or array (which has one)."""
    if isinstance(mask, np.ndarray):
        return int(np.flatnonzero(mask)[0])
    return int(mask.nonzero()[0].item())


def _mean_length(lens: Any) -> float:
    """The mean of integer lengths in float32 (as torch's ``lens.float().mean()``)."""
    if isinstance(lens, np.ndarray):
        return float(lens.astype(np.float32).mean())
    return float(lens.float().mean())


def _label_stats(y: Any) -> dict[str, float]:
    """Mean, population std, min and max of the labels, in their own dtype (float32), as torch computes them."""
    std = y.std() if isinstance(y, np.ndarray) else y.std(unbiased=False)
    return {"mean": float(y.mean()), "std": float(std), "min": float(y.min()), "max": float(y.max())}


def _class_counts(labels: Any, k: int) -> list[int]:
    """How many samples each of the ``k`` classes has."""
    if isinstance(labels, np.ndarray):
        return np.bincount(labels, minlength=k).tolist()
    return labels.bincount(minlength=k).tolist()


def class_counts(splits: Mapping[str, SplitLike], class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{split: {class name: samples}}`` over the splits that have class labels."""
    return {split: {c: int(n) for c, n in zip(class_names, _class_counts(part.class_labels, len(class_names)),
                                              strict=True)}
            for split, part in splits.items() if part.class_labels is not None}


def absent_shares(splits: Mapping[str, SplitLike]) -> dict[str, dict[str, float]]:
    """``{split: {modality: share}}``: the share (0..1) of each split's samples whose modality is absent (length 0)."""
    out: dict[str, dict[str, float]] = {}
    for split, part in splits.items():
        n = int(part.labels.shape[0])
        out[split] = {m: int((part.lengths[m] == 0).sum()) / n if n else 0.0 for m in MODALITIES}
    return out


def dataset_record(splits: Mapping[str, SplitLike], class_names: Sequence[str] = ()) -> dict[str, Any]:
    """What a run records of its data (``dataset.json``) for the dataset section of every table and report:
    ``n`` (samples per split), ``absent`` (:func:`absent_shares`) and, with ``class_names`` (a classification run),
    ``class_counts`` (:func:`class_counts`)."""
    record: dict[str, Any] = {"n": {split: int(part.labels.shape[0]) for split, part in splits.items()},
                              "absent": absent_shares(splits)}
    if class_names:
        record["class_counts"] = class_counts(splits, class_names)
    return record


def split_dims(part: SplitLike) -> dict[str, int]:
    """Feature dimension per modality."""
    return {m: int(part.features[m].shape[2]) for m in MODALITIES}


# ------------------------------------------------------------------------------------------------ the checks
def validate_splits(splits: Mapping[str, SplitLike], source: str, label_range: tuple[float, float],
                    class_names: Sequence[str]) -> None:
    """Check the whole data contract; raise a one-line :class:`DataError` naming the source and problem.

    Checks: all three splits present and non-empty; three modalities with 3-D float arrays; same feature dims
    across splits; one row count per split across features, lengths, labels, ids, raw text and extras; lengths
    within ``[0, T_m]``; finite features and labels; labels within ``label_range``; class labels in
    ``[0, len(class_names))``; no sample with every modality missing; text tokens, when present, as
    :func:`check_text_tokens` wants them; sample ids unique across all splits (:func:`check_ids`).
    """
    for split in SPLITS:
        if split not in splits:
            raise DataError(f"{source}: missing split {split!r} (expected train, valid and test)")
    ref_dims: dict[str, int] | None = None
    for split in SPLITS:
        part = splits[split]
        where = f"{source}: split {split!r}"
        n = _sample_count(part, where)
        for m in MODALITIES:
            _check_modality(part, m, n, where)
        if ref_dims is None:
            ref_dims = split_dims(part)
        elif split_dims(part) != ref_dims:
            raise DataError(f"{where}: feature dims {split_dims(part)} differ from train's {ref_dims}")
        _check_labels(part, n, where, label_range, class_names)
        _check_per_sample(part, n, where)
    check_ids(splits, source)


def check_regression_labels(labels: Any, source: str) -> None:
    """A one-line DataError when regression labels look like classes or an uncentred scale: only two distinct values
    (0/1 classes), or all of one sign (every sentiment metric but MAE and Corr splits at 0: with labels >= 0, Non0
    drops the zeros and Has0 calls every sample positive, so they read 100%). ``labels`` are the training split's."""
    values = np.unique(np.asarray(labels, dtype=np.float64))
    fix = ("train it as classes (task.kind=classification, with class labels in the dataset) or put the scores on a "
           "scale centred on 0 (e.g. label - midpoint); task.check_labels=false trains anyway")
    if len(values) == 2:
        raise DataError(f"{source}: the training labels take only two values ({values[0]:g} and {values[1]:g}): "
                        f"classes trained as a regression; {fix}")
    if len(values) and (values[0] >= 0 or values[-1] <= 0):
        side = ">= 0" if values[0] >= 0 else "<= 0"
        raise DataError(f"{source}: every training label is {side} (range {values[0]:g} to {values[-1]:g}): the "
                        f"sentiment metrics split at 0 and would be meaningless; {fix}")


def check_ids(splits: Mapping[str, SplitLike], source: str) -> None:
    """Every sample id unique across the whole dataset (all splits together), as strings; else a one-line
    :class:`DataError` naming the source, the first duplicate ids with their splits and how many there are."""
    counts = Counter(str(i) for part in splits.values() for i in part.ids)
    if all(c == 1 for c in counts.values()):
        return
    where: dict[str, list[str]] = {}
    for split, part in splits.items():
        for i in part.ids:
            if counts[str(i)] > 1:
                where.setdefault(str(i), []).append(split)
    shown = ", ".join(f"{i[:60]!r} ({', '.join(s)})" for i, s in list(where.items())[:_SHOWN_IDS])
    more = f" and {len(where) - _SHOWN_IDS} more" if len(where) > _SHOWN_IDS else ""
    raise DataError(
        f"{source}: {len(where)} sample id{'s' if len(where) > 1 else ''} used more than once: "
        f"{shown}{more}; ids must be unique across train, valid and test"
    )


def _sample_count(part: SplitLike, where: str) -> int:
    """The number of samples of ``part``: the length of its 1-D labels (DataError when 2-D or empty)."""
    if part.labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D [N], got shape {tuple(part.labels.shape)}")
    n = int(part.labels.shape[0])
    if n == 0:
        raise DataError(f"{where}: is empty (0 samples)")
    return n


def _check_modality(part: SplitLike, m: str, n: int, where: str) -> None:
    """Modality ``m`` of ``part``: finite float features ``[n, T, D]`` and lengths ``[n]`` within ``[0, T]``."""
    if m not in part.features or m not in part.lengths:
        raise DataError(f"{where}: modality {m!r} is missing (expected text, audio and visual)")
    x = part.features[m]
    if x.ndim != 3:
        raise DataError(f"{where}: {m} features must be [N, T, D], got shape {tuple(x.shape)}")
    if not _is_float(x):
        raise DataError(f"{where}: {m} features must be floating point, got {x.dtype}")
    if x.shape[0] != n:
        raise DataError(f"{where}: {m} features have {x.shape[0]} rows but there are {n} labels")
    lens = part.lengths[m]
    if tuple(lens.shape) != (n,):
        raise DataError(f"{where}: {m} lengths have shape {tuple(lens.shape)}, expected ({n},)")
    if bool((lens < 0).any()) or bool((lens > x.shape[1]).any()):
        bad = int(lens.max().item()) if bool((lens > x.shape[1]).any()) else int(lens.min().item())
        raise DataError(f"{where}: {m} length {bad} outside [0, {x.shape[1]}] (the padded length)")
    finite = _isfinite(x)
    if not bool(finite.all()):
        count = int((~finite).sum().item())
        raise DataError(f"{where}: {m} features contain {count} NaN/Inf values")


def _check_labels(part: SplitLike, n: int, where: str, label_range: tuple[float, float],
                  class_names: Sequence[str]) -> None:
    """Finite labels within ``label_range``, ``n`` ids (and raw texts, if any), class labels ``[n]`` within
    ``[0, len(class_names))``."""
    if not bool(_isfinite(part.labels).all()):
        raise DataError(f"{where}: labels contain NaN/Inf")
    lo, hi = label_range
    if bool((part.labels < lo).any()) or bool((part.labels > hi).any()):
        bad_val = float(part.labels[(part.labels < lo) | (part.labels > hi)][0])
        raise DataError(f"{where}: label {bad_val:g} outside the expected range [{lo:g}, {hi:g}]")
    if len(part.ids) != n:
        raise DataError(f"{where}: {len(part.ids)} ids for {n} samples")
    if part.raw_text and len(part.raw_text) != n:
        raise DataError(f"{where}: {len(part.raw_text)} raw_text entries for {n} samples")
    if part.class_labels is not None:
        if tuple(part.class_labels.shape) != (n,):
            raise DataError(f"{where}: class labels have shape {tuple(part.class_labels.shape)}")
        k = len(class_names)
        if bool((part.class_labels < 0).any()) or bool((part.class_labels >= k).any()):
            raise DataError(f"{where}: class label outside [0, {k - 1}] ({k} classes)")


def _check_per_sample(part: SplitLike, n: int, where: str) -> None:
    """Unimodal labels (``n`` finite values), extras (``n`` rows) and text tokens (:func:`check_text_tokens`) of
    ``part``; no sample without any modality."""
    for m, y in part.unimodal_labels.items():
        if tuple(y.shape) != (n,) or not bool(_isfinite(y).all()):
            raise DataError(f"{where}: unimodal labels of {m} must be {n} finite values")
    for key, v in part.extras.items():
        if v.shape[0] != n:
            raise DataError(f"{where}: extra {key!r} has {v.shape[0]} rows for {n} samples")
    if part.text_tokens is not None:
        check_text_tokens(part.text_tokens, n, where)
    all_missing = functools.reduce(operator.and_, [part.lengths[m] == 0 for m in MODALITIES])
    if bool(all_missing.any()):
        i = _first_true(all_missing)
        raise DataError(f"{where}: sample {part.ids[i]!r} has no modality at all (every length is 0)")


def check_text_tokens(tokens: Any, n: int, where: str) -> None:
    """Text tokens in MMSA's ``text_bert`` layout: an integer ``[n, 3, L]`` tensor or array (ids, mask, segments)
    with ids >= 0, a right-padded 0/1 mask and at least one real token per row; else a one-line
    :class:`DataError`."""
    if not _is_int(tokens):
        raise DataError(f"{where}: text tokens must be an integer tensor [N, 3, L], got {tokens.dtype}")
    if tokens.ndim != 3 or tokens.shape[1] != 3 or tokens.shape[0] != n:
        raise DataError(
            f"{where}: text tokens must be [N, 3, L] = (ids, attention mask, segment ids) with N = {n}, "
            f"got shape {tuple(tokens.shape)}"
        )
    if tokens.shape[2] == 0:
        raise DataError(f"{where}: text tokens have no columns (L = 0); every row needs at least one token")
    if bool((tokens[:, 0] < 0).any()):
        raise DataError(f"{where}: text token ids must be >= 0, found {int(tokens[:, 0].min())}")
    mask = tokens[:, 1]
    if bool(((mask != 0) & (mask != 1)).any()):
        raise DataError(f"{where}: text token attention mask (row 1) must hold only 0 and 1")
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise DataError(f"{where}: text token attention mask must be right-padded (1s, then 0s)")
    empty = mask.sum(1) == 0
    if bool(empty.any()):
        i = _first_true(empty)
        raise DataError(
            f"{where}: {int(empty.sum())} row(s) of text tokens have no real token (mask sum 0), "
            f"first row {i}; every sample needs at least one token"
        )


# ----------------------------------------------------------------------------------------------- the summary
def summarize(splits: Mapping[str, SplitLike], name: str, source: str, metric_family: str,
              class_names: Sequence[str]) -> dict[str, Any]:
    """Per-split counts, shapes and label statistics (what ``accord data info`` prints)."""
    out: dict[str, Any] = {"name": name, "source": source, "metric_family": metric_family}
    classes = class_counts(splits, class_names)
    for split, part in splits.items():
        y = part.labels
        stats = _label_stats(y)
        info: dict[str, Any] = {
            "n": int(y.shape[0]),
            "shapes": {m: [int(s) for s in part.features[m].shape] for m in MODALITIES},
            "mean_length": {m: round(_mean_length(part.lengths[m]), 2) for m in MODALITIES},
            "missing": {m: int((part.lengths[m] == 0).sum()) for m in MODALITIES},
            "label": {
                **{key: round(value, 4) for key, value in stats.items()},
                "zeros": int((y == 0).sum()),
                "positive": int((y > 0).sum()),
                "negative": int((y < 0).sum()),
            },
        }
        if split in classes:
            info["classes"] = classes[split]
        out[split] = info
    return out
