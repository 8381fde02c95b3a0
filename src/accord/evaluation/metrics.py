"""MMSA-compatible evaluation metrics for regression (MOSI/MOSEI, CH-SIMS) and classification.

Every accuracy and F1 score is returned in **percent** (a float in ``[0, 100]``); ``MAE`` and ``Corr`` are
raw. Inputs may be numpy arrays, torch tensors (any device, with or without grad) or plain sequences.

The definitions follow MMSA's ``MetricsTop`` (``__eval_mosei_regression`` and ``__eval_sims_regression``)
so that numbers are comparable with published MMSA tables, with three deliberate differences that only
matter for degenerate inputs, where MMSA returns NaN or crashes:

* ``Corr`` is ``0.0`` (not NaN) when predictions or labels have zero variance (e.g. a collapsed model that
  predicts a constant);
* ``Non0_acc_2`` / ``Non0_F1`` are NaN when every label is exactly 0 (there is nothing to score);
* F1 scores use a fixed label set and ``zero_division=0``, so a batch with a single class neither warns nor
  fails.

Invalid input (empty arrays, a length mismatch, NaN/Inf values, wrong shapes) raises
:class:`~accord.core.errors.DataError` with a one-line message; an unknown task or family raises
:class:`~accord.core.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeGuard

import numpy as np
import torch

from accord.core.errors import ConfigError, DataError
from accord.evaluation.metric_specs import METRICS, Direction, MetricSpec, metric_spec, register_metric

__all__ = [
    "METRICS",
    "METRIC_ORDER",
    "MetricSpec",
    "SIMS_BINS",
    "classification_metrics",
    "compute_metrics",
    "default_metric",
    "headline_metric",
    "metric_family",
    "metric_mode",
    "metric_spec",
    "regression_metrics",
    "register_metric",
]

Family = Literal["mosi", "sims"]

METRIC_ORDER: Final[dict[str, list[str]]] = {
    "mosi": ["Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"],
    "sims": ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1", "MAE", "Corr"],
    "classification": ["Acc", "F1_weighted", "F1_macro"],
}
"""Display order of the metrics per family (``"mosi"`` also covers MOSEI); classification tables append the
per-class ``F1_<name>`` columns after these."""

SIMS_BINS: Final[dict[str, tuple[float, ...]]] = {
    "Mult_acc_2": (-1.01, 0.0, 1.01),
    "Mult_acc_3": (-1.01, -0.1, 0.1, 1.01),
    "Mult_acc_5": (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}
"""CH-SIMS class edges; bin ``i`` is the half-open interval ``(edges[i], edges[i + 1]]`` (as in MMSA)."""

_FAMILIES: Final[tuple[str, ...]] = ("mosi", "sims")
_TASKS: Final[tuple[str, ...]] = ("regression", "classification")


def _is_family(name: str) -> TypeGuard[Family]:
    """Whether ``name`` is a regression metric family (``mosi`` or ``sims``)."""
    return name in _FAMILIES


# --------------------------------------------------------------------------------------------- helpers
def _to_numpy(x: Any, what: str) -> np.ndarray:
    """Convert a tensor / array / sequence to numpy (detached, on CPU), keeping float32 / float64 as is."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # bfloat16 / float16 have no (exact) numpy counterpart
        return t.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise DataError(f"metrics: {what} cannot be converted to an array ({err})") from err


def _as_float_1d(x: Any, what: str) -> np.ndarray:
    """A finite 1-D float array; ``[N, 1]`` is accepted and flattened. Float32 input stays float32."""
    arr = _to_numpy(x, what)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"metrics: {what} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "b" or arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise DataError(f"metrics: {what} must be numeric, got dtype {arr.dtype}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataError(f"metrics: {what} contain {bad} NaN/Inf values")
    return arr


def _check_lengths(n_pred: int, n_true: int) -> None:
    if n_true == 0 or n_pred == 0:
        raise DataError(f"metrics: empty input ({n_pred} predictions, {n_true} labels)")
    if n_pred != n_true:
        raise DataError(f"metrics: {n_pred} predictions for {n_true} labels")


def _pct(x: float) -> float:
    return float(100.0 * x)


def _accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true))


def f1_per_class(true: np.ndarray, pred: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(F1 per label, support per label)``: ``F1 = 2·tp / (2·tp + fn + fp)``, 0 where that denominator is 0
    (scikit-learn's ``f1_score(..., labels=labels, average=None, zero_division=0)``, computed the same way, so the
    values are bit-identical; tested against it). Computed here so that metrics do not import scikit-learn."""
    lab = list(labels)
    tp = np.array([np.count_nonzero((pred == k) & (true == k)) for k in lab], dtype=np.float64)
    pred_sum = np.array([np.count_nonzero(pred == k) for k in lab], dtype=np.float64)
    true_sum = np.array([np.count_nonzero(true == k) for k in lab], dtype=np.float64)
    denom = 1.0 * true_sum + pred_sum
    empty = denom == 0
    denom[empty] = 1.0
    f1 = (2.0 * tp) / denom
    f1[empty] = 0.0
    return f1, true_sum


def _weighted_f1(true: np.ndarray, pred: np.ndarray, labels: Sequence[int]) -> float:
    """Support-weighted mean F1 over ``labels`` (a plain mean when no label occurs in ``true``)."""
    f1, support = f1_per_class(true, pred, labels)
    return float(np.average(f1, weights=support)) if support.sum() > 0 else float(np.mean(f1))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation in float64; 0.0 when either side has zero variance."""
    a64 = a.astype(np.float64) - float(np.mean(a, dtype=np.float64))
    b64 = b.astype(np.float64) - float(np.mean(b, dtype=np.float64))
    denom = float(np.sqrt(np.dot(a64, a64) * np.dot(b64, b64)))
    if np.all(a == a[0]) or np.all(b == b[0]) or denom == 0.0:
        return 0.0
    return float(np.clip(np.dot(a64, b64) / denom, -1.0, 1.0))


def _bin(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Class index of each value for bins ``(edges[i], edges[i + 1]]``.

    The inner edges are cast to ``x``'s dtype, so a float32 label ``0.1`` falls on the edge ``0.1`` exactly
    as in MMSA (which compares float32 arrays with Python floats), instead of just above it.
    """
    inner = np.asarray(edges[1:-1], dtype=x.dtype)
    return np.searchsorted(inner, x, side="left")


# ------------------------------------------------------------------------------------------ regression
def regression_metrics(pred: Any, y: Any, family: Family = "mosi") -> dict[str, float]:
    """MMSA regression metrics; accuracies and F1 in percent, ``MAE`` and ``Corr`` raw.

    Family ``"mosi"`` (CMU-MOSI / CMU-MOSEI, labels in ``[-3, 3]``):

    * ``Has0_acc_2`` / ``Has0_F1``: binary classes ``value >= 0`` vs ``value < 0`` for labels and predictions
      (0 counts as positive); F1 is the support-weighted F1 of both classes.
    * ``Non0_acc_2`` / ``Non0_F1``: samples whose *label* is exactly 0 are dropped, then class
      ``value > 0``; weighted F1. NaN when every label is 0.
    * ``Mult_acc_5`` / ``Mult_acc_7``: both sides clipped to ``[-2, 2]`` / ``[-3, 3]``, rounded with
      ``np.round`` (round half to even: 2.5 -> 2, -0.5 -> -0) and compared.
    * ``MAE``: mean absolute error of the unclipped values; ``Corr``: Pearson correlation of the unclipped
      values.

    Family ``"sims"`` (CH-SIMS, labels in ``[-1, 1]``): both sides are first clipped to ``[-1, 1]`` (also for
    ``MAE`` and ``Corr``, as in MMSA), then binned with half-open bins ``(lo, hi]`` (:data:`SIMS_BINS`):

    * ``Mult_acc_2``: ``[-1, 0]`` -> 0, ``(0, 1]`` -> 1;
    * ``Mult_acc_3``: ``[-1, -0.1]``, ``(-0.1, 0.1]``, ``(0.1, 1]``;
    * ``Mult_acc_5``: ``[-1, -0.7]``, ``(-0.7, -0.1]``, ``(-0.1, 0.1]``, ``(0.1, 0.7]``, ``(0.7, 1]``;
    * ``F1``: weighted F1 of the 2-class version; ``MAE``; ``Corr``.

    Edge cases: ``Corr`` is 0.0 when either side has zero variance; a single-class batch gives well-defined
    F1 values (``zero_division=0``). ``[N, 1]`` inputs are flattened.

    Raises:
        DataError: empty input, a length mismatch, a non-1-D shape, or NaN/Inf predictions or labels.
        ConfigError: an unknown ``family``.
    """
    if family not in _FAMILIES:
        raise ConfigError(f"metrics: unknown regression family {family!r} (expected 'mosi' or 'sims')")
    p = _as_float_1d(pred, "predictions")
    t = _as_float_1d(y, "labels")
    _check_lengths(p.shape[0], t.shape[0])
    if family == "sims":
        return _sims_regression(p, t)
    return _mosi_regression(p, t)


def _mosi_regression(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    p64 = p.astype(np.float64)
    t64 = t.astype(np.float64)
    out: dict[str, float] = {}

    has0_p = (p64 >= 0).astype(np.int64)
    has0_t = (t64 >= 0).astype(np.int64)
    out["Has0_acc_2"] = _pct(_accuracy(has0_p, has0_t))
    out["Has0_F1"] = _pct(_weighted_f1(has0_t, has0_p, labels=(0, 1)))

    keep = t64 != 0
    if np.any(keep):
        non0_p = (p64[keep] > 0).astype(np.int64)
        non0_t = (t64[keep] > 0).astype(np.int64)
        out["Non0_acc_2"] = _pct(_accuracy(non0_p, non0_t))
        out["Non0_F1"] = _pct(_weighted_f1(non0_t, non0_p, labels=(0, 1)))
    else:
        out["Non0_acc_2"] = float("nan")
        out["Non0_F1"] = float("nan")

    for key, bound in (("Mult_acc_5", 2.0), ("Mult_acc_7", 3.0)):
        rp = np.round(np.clip(p64, -bound, bound))
        rt = np.round(np.clip(t64, -bound, bound))
        out[key] = _pct(_accuracy(rp, rt))

    out["MAE"] = float(np.mean(np.abs(p64 - t64)))
    out["Corr"] = _pearson(p64, t64)
    return out


def _sims_regression(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    pc = np.clip(p, -1.0, 1.0)
    tc = np.clip(t, -1.0, 1.0)
    out: dict[str, float] = {}
    binned: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, edges in SIMS_BINS.items():
        bp, bt = _bin(pc, edges), _bin(tc, edges)
        binned[key] = (bp, bt)
        out[key] = _pct(_accuracy(bp, bt))
    bp2, bt2 = binned["Mult_acc_2"]
    out["F1"] = _pct(_weighted_f1(bt2, bp2, labels=(0, 1)))
    out["MAE"] = float(np.mean(np.abs(pc.astype(np.float64) - tc.astype(np.float64))))
    out["Corr"] = _pearson(pc, tc)
    return out


# -------------------------------------------------------------------------------------- classification
def _class_indices(x: np.ndarray, what: str, num_classes: int) -> np.ndarray:
    """Validate a 1-D array of class indices in ``[0, num_classes)`` and return it as int64."""
    if x.ndim != 1:
        raise DataError(f"metrics: {what} must be 1-D class indices, got shape {tuple(x.shape)}")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise DataError(f"metrics: {what} contain {bad} NaN/Inf values")
        if np.any(x != np.round(x)):
            raise DataError(f"metrics: {what} must be integer class indices, got non-integer values")
    elif x.dtype.kind not in "iub":
        raise DataError(f"metrics: {what} must be integer class indices, got dtype {x.dtype}")
    idx = x.astype(np.int64)
    out_of_range = int(np.count_nonzero((idx < 0) | (idx >= num_classes)))
    if out_of_range:
        raise DataError(f"metrics: {what} contain {out_of_range} class indices outside [0, {num_classes})")
    return idx


def classification_metrics(logits_or_classes: Any, y: Any, class_names: list[str]) -> dict[str, float]:
    """Accuracy and F1 scores (percent) for a classification task.

    Args:
        logits_or_classes: logits / probabilities ``[N, C]`` (the arg-max is the prediction) or predicted
            class indices ``[N]``.
        y: true class indices ``[N]``.
        class_names: the ``C`` class names, in index order.

    Returns:
        ``Acc``, ``F1_weighted`` (support-weighted), ``F1_macro`` (unweighted mean over all ``C`` classes) and
        ``F1_<name>`` per class. All F1 values use ``zero_division=0``: a class that never occurs in ``y`` nor
        in the predictions scores 0 and still counts in ``F1_macro``.

    Raises:
        DataError: empty input, a length mismatch, NaN/Inf logits, a logits width other than
            ``len(class_names)``, or class indices outside ``[0, C)``.
        ConfigError: ``class_names`` is empty or has duplicates.
    """
    num_classes = len(class_names)
    if num_classes == 0:
        raise ConfigError("metrics: class_names is empty")
    if len(set(class_names)) != num_classes:
        raise ConfigError(f"metrics: class_names has duplicates: {class_names}")
    p = _to_numpy(logits_or_classes, "predictions")
    t = _to_numpy(y, "labels")
    if t.ndim != 1:
        raise DataError(f"metrics: labels must be 1-D class indices, got shape {tuple(t.shape)}")
    n_pred = int(p.shape[0]) if p.ndim >= 1 else 0
    _check_lengths(n_pred, int(t.shape[0]))
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise DataError(f"metrics: logits have {p.shape[1]} columns for {num_classes} class names")
        if p.dtype.kind not in "fiu":
            raise DataError(f"metrics: logits must be numeric, got dtype {p.dtype}")
        bad = int(np.count_nonzero(~np.isfinite(p)))
        if bad:
            raise DataError(f"metrics: predictions contain {bad} NaN/Inf values")
        pred_idx = np.argmax(p, axis=1).astype(np.int64)
    elif p.ndim == 1:
        pred_idx = _class_indices(p, "predictions", num_classes)
    else:
        shape = tuple(p.shape)
        raise DataError(f"metrics: predictions must be [N, C] logits or [N] classes, got shape {shape}")
    true_idx = _class_indices(t, "labels", num_classes)

    labels = list(range(num_classes))
    per_class, _ = f1_per_class(true_idx, pred_idx, labels)
    out: dict[str, float] = {
        "Acc": _pct(_accuracy(pred_idx, true_idx)),
        "F1_weighted": _pct(_weighted_f1(true_idx, pred_idx, labels)),
        "F1_macro": _pct(float(np.mean(per_class))),
    }
    for name, value in zip(class_names, per_class, strict=True):
        out[f"F1_{name}"] = _pct(float(value))
    return out


# -------------------------------------------------------------------------------------------- dispatch
def compute_metrics(pred: Any, y: Any, task: str, family: str = "mosi",
                    class_names: list[str] | None = None) -> dict[str, float]:
    """Dispatch to :func:`regression_metrics` or :func:`classification_metrics` by ``task``.

    For classification without ``class_names``, the names ``"0" .. "C-1"`` are used, with ``C`` taken from
    the logits width; class-index predictions then require ``class_names``.

    Raises:
        ConfigError: an unknown task or family, or missing ``class_names`` for class-index predictions.
        DataError: see the two metric functions.
    """
    if task == "regression":
        if not _is_family(family):
            raise ConfigError(f"metrics: unknown regression family {family!r} (expected 'mosi' or 'sims')")
        return regression_metrics(pred, y, family=family)
    if task == "classification":
        if class_names is None:
            shape = tuple(pred.shape) if hasattr(pred, "shape") else tuple(np.shape(pred))
            if len(shape) != 2:
                raise ConfigError("metrics: class_names is required for classification from class indices")
            class_names = [str(i) for i in range(shape[1])]
        return classification_metrics(pred, y, class_names)
    raise ConfigError(f"metrics: unknown task {task!r} (expected 'regression' or 'classification')")


# ------------------------------------------------------------------------------------------- the registry
# (accord.evaluation.metric_specs: METRICS, MetricSpec, register_metric, metric_spec; free of numpy and torch)
def metric_mode(name: str) -> Direction:
    """Whether lower (``"min"``) or higher (``"max"``) values of metric ``name`` are better (its registered spec)."""
    return metric_spec(name).direction


def headline_metric(task: str, family: str = "mosi") -> str:
    """The one metric a study's verdict is stated in: ``Non0_acc_2`` (MOSI/MOSEI), ``Mult_acc_2`` (CH-SIMS) or
    ``Acc`` (classification)."""
    if task == "classification":
        return "Acc"
    return "Mult_acc_2" if family == "sims" else "Non0_acc_2"


def metric_family(task: str, family: str) -> str:
    """The metric family of a run: ``classification`` for classification, else the dataset's (``mosi``/``sims``)."""
    return "classification" if task == "classification" else family


def default_metric(task: str, family: str = "mosi") -> str:
    """The validation metric used for model selection / early stopping when the config names none.

    Regression (both families) selects on ``MAE``: on the small validation splits of MOSI (229 samples) and
    CH-SIMS (456) the binary accuracies move in steps of 0.2-0.4 points and flip with a handful of
    near-zero predictions, so selecting on them is noisy; MAE uses every prediction continuously and is
    what the models are trained to reduce. Classification selects on ``F1_weighted``, which is robust to
    class imbalance.

    Raises:
        ConfigError: an unknown task or regression family.
    """
    if task == "regression":
        if family not in _FAMILIES:
            raise ConfigError(f"metrics: unknown regression family {family!r} (expected 'mosi' or 'sims')")
        return "MAE"
    if task == "classification":
        return "F1_weighted"
    raise ConfigError(f"metrics: unknown task {task!r} (expected 'regression' or 'classification')")
