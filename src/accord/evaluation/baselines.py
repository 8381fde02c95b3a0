"""Trivial baselines every result table carries: what a model that ignores its inputs scores.

* regression: the **train-mean predictor**: every sample gets the mean training label (the constant that
  minimises the training MSE). Its binary accuracies are those of the majority class on the side of 0 the mean
  falls on; ``Corr`` is 0 (a constant has no variance).
* classification: the **majority-class predictor**: every sample gets the most frequent training class.

Both are deterministic, so the "± std" of a baseline row is 0 over any number of seeds; ``n`` is set to the seeds
of the table it sits in so the row reads like the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from accord.evaluation.metrics import compute_metrics
from accord.evaluation.sections import CONSTANT_ROW
from accord.evaluation.summary import Aggregate

__all__ = ["CONSTANT_ROW", "constant_predictions", "constant_predictor_rows", "constant_value", "constant_value_rows"]



def constant_value(train_labels: np.ndarray, task: str, num_classes: int = 0) -> float:
    """The trivial prediction learnt from ``train_labels``: their mean (regression) or the index of their most
    frequent class (classification; the lowest class index wins a tie). A run records it in ``dataset.json``
    (``constant_prediction``), so a table built later needs no training labels."""
    y = np.asarray(train_labels)
    if task == "classification":
        return float(np.argmax(np.bincount(y.astype(np.int64).ravel(), minlength=num_classes)))
    return float(np.mean(y.astype(np.float64)))


def _filled(value: float, n: int, task: str, num_classes: int) -> np.ndarray:
    """``n`` copies of the trivial prediction ``value`` (one-hot logits of class ``value`` for classification)."""
    if task == "classification":
        logits = np.zeros((n, num_classes), dtype=np.float64)
        logits[:, int(value)] = 1.0
        return logits
    return np.full(n, float(value), dtype=np.float64)


def constant_predictions(train_labels: np.ndarray, n: int, task: str, num_classes: int = 0) -> np.ndarray:
    """``n`` copies of the trivial prediction learnt from ``train_labels``: their mean (regression, shape ``[n]``) or
    one-hot logits of their most frequent class (classification, shape ``[n, num_classes]``; the lowest class index
    wins a tie)."""
    return _filled(constant_value(train_labels, task, num_classes), n, task, num_classes)


def constant_value_rows(value: float, split_labels: Mapping[str, np.ndarray], task: str = "regression",
                        family: str = "mosi", class_names: Sequence[str] = (), seeds: int = 1
                        ) -> dict[str, dict[str, Aggregate]]:
    """``{split: {metric: (value, 0.0, seeds)}}``: the constant prediction ``value`` (:func:`constant_value`) scored
    on each split's labels with the task's metrics (``family``: the regression metric set; ``class_names`` for
    classification)."""
    out: dict[str, dict[str, Aggregate]] = {}
    for split, y in split_labels.items():
        y = np.asarray(y)
        pred = _filled(value, len(y), task, len(class_names))
        metrics = compute_metrics(pred, y, task, family, list(class_names) if task == "classification" else None)
        out[split] = {k: (float(v), 0.0, seeds) for k, v in metrics.items()}
    return out


def constant_predictor_rows(train_labels: np.ndarray, split_labels: Mapping[str, np.ndarray], task: str = "regression",
                            family: str = "mosi", class_names: Sequence[str] = (), seeds: int = 1
                            ) -> dict[str, dict[str, Aggregate]]:
    """``{split: {metric: (value, 0.0, seeds)}}``: the trivial predictor of ``train_labels`` scored on each split's
    labels with the task's metrics (``family``: the regression metric set; ``class_names`` for classification)."""
    value = constant_value(train_labels, task, len(class_names))
    return constant_value_rows(value, split_labels, task, family, class_names, seeds)
