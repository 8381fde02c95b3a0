"""The pieces every table and report of Accord carries beside its metrics, computed once here:

* the **confusion matrix** of a classification run: counts on a split (the test split in every table), summed over
  seeds, rows = true class, columns = predicted class (:func:`confusion_matrix`; the trainer records each seed's in
  ``seed_<s>/results.json`` under ``confusion``, :func:`run_confusion` sums them back, falling back to the predictions
  in ``diagnostics.npz`` for a run trained before);
* the **dataset section**: source and path, samples per split, class counts per split (classification) and, per
  split, the share of samples with each modality absent (length 0), as the trainer records them in ``dataset.json``
  (:func:`accord.data.contract.dataset_record`).

Each is rendered as a header and rows of text cells (:func:`confusion_cells`, :func:`dataset_cells`), which
:func:`cells_markdown` turns into Markdown and the HTML report (:mod:`accord.evaluation.report`) into HTML, so the
numbers read the same everywhere. No torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from accord.core import rundir
from accord.core.errors import DataError
from accord.core.types import MODALITIES

__all__ = ["CONSTANT_ROW", "Cells", "cells_markdown", "confusion_cells", "confusion_markdown", "confusion_matrix",
           "dataset_cells", "dataset_line", "dataset_markdown", "run_confusion", "seed_confusion", "sum_confusions"]

CONSTANT_ROW = "constant predictor (train mean / majority class)"
"""The row name of the trivial baseline in every table (:mod:`accord.evaluation.baselines` computes its values)."""

Cells = tuple[list[str], list[list[str]]]
"""A table as text: its header cells and its rows of cells."""


# ---------------------------------------------------------------------------------------------- confusion matrix
def confusion_matrix(pred: Any, labels: Any, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts: entry ``[t, p]`` is how many samples of true class ``t`` were
    predicted as ``p``. ``pred`` is logits ``[N, C]`` (argmax taken) or class indices ``[N]``; ``labels`` class
    indices ``[N]``. A class index outside ``[0, num_classes)`` or a length mismatch is a one-line DataError."""
    p = np.asarray(pred)
    y = np.asarray(labels).astype(np.int64).ravel()
    idx = p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64).ravel()
    if len(idx) != len(y):
        raise DataError(f"confusion matrix: {len(idx)} predictions for {len(y)} labels")
    if len(y) and (min(idx.min(), y.min()) < 0 or max(idx.max(), y.max()) >= num_classes):
        raise DataError(f"confusion matrix: a class index outside [0, {num_classes - 1}]")
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (y, idx), 1)
    return out


def sum_confusions(matrices: Sequence[Any]) -> np.ndarray | None:
    """The element-wise sum of confusion matrices (``None`` for none)."""
    arrays = [np.asarray(m, dtype=np.int64) for m in matrices]
    return np.sum(arrays, axis=0).astype(np.int64) if arrays else None


def seed_confusion(results: Mapping[str, Any], seed_folder: str | Path | None, split: str,
                   num_classes: int) -> np.ndarray | None:
    """One seed's confusion matrix on ``split``: ``results["confusion"][split]`` (recorded by the trainer), else
    computed from the logits and labels in ``seed_folder/diagnostics.npz``; ``None`` when neither has it."""
    recorded = (results.get("confusion") or {}).get(split)
    if recorded is not None:
        return np.asarray(recorded, dtype=np.int64)
    if seed_folder is None or not (Path(seed_folder) / rundir.DIAGNOSTICS).is_file():
        return None
    diag = rundir.read_diagnostics(seed_folder, split)
    if "prediction" not in diag or "label" not in diag or np.asarray(diag["prediction"]).ndim != 2:
        return None
    return confusion_matrix(diag["prediction"], diag["label"], num_classes)


def run_confusion(run_dir: str | Path, split: str = "test") -> tuple[np.ndarray, list[str], int] | None:
    """``(matrix summed over seeds, class names, seeds summed)`` of a finished classification run on ``split``;
    ``None`` for a regression run (``dataset.json``'s ``out_dim`` 1) or when no seed has it."""
    rd = Path(run_dir)
    if not (rd / rundir.DATASET).is_file():
        return None
    info = rundir.read_dataset_info(rd)
    names = [str(c) for c in info.get("class_names") or []]
    if int(info.get("out_dim", 1)) < 2 or not names:
        return None
    found = []
    for sd in rundir.seed_dirs(rd):
        results = rundir.read_results(sd) if (sd / rundir.RESULTS).is_file() else {}
        m = seed_confusion(results, sd, split, len(names))
        if m is not None:
            found.append(m)
    total = sum_confusions(found)
    return None if total is None else (total, names, len(found))


def confusion_cells(matrix: Any, class_names: Sequence[str]) -> Cells:
    """The confusion matrix as text cells: one row per true class, one column per predicted class, then the row's
    total (the true class's samples)."""
    m = np.asarray(matrix, dtype=np.int64)
    header = ["true \\ predicted", *class_names, "total"]
    rows = [[str(c), *(str(int(v)) for v in m[i]), str(int(m[i].sum()))] for i, c in enumerate(class_names)]
    return header, rows


def confusion_markdown(matrix: Any, class_names: Sequence[str], caption: str) -> str:
    """``caption`` then the Markdown confusion matrix (:func:`confusion_cells`); ends with a newline."""
    return f"{caption}\n\n{cells_markdown(confusion_cells(matrix, class_names))}"


# ---------------------------------------------------------------------------------------------- dataset section
def _pct(share: Any) -> str:
    return f"{100.0 * float(share):.1f}%"


def dataset_cells(info: Mapping[str, Any]) -> Cells | None:
    """The dataset section's table of a run's ``dataset.json`` (or a study's record of one): one row per split with
    its samples, the share of samples with each modality absent and, for classification, each class's count;
    ``None`` when ``info`` lacks the per-split record (a run trained before Accord recorded it)."""
    n, absent = info.get("n"), info.get("absent")
    if not isinstance(n, Mapping) or not isinstance(absent, Mapping):
        return None
    counts = info.get("class_counts") or {}
    classes = [str(c) for c in info.get("class_names") or []] if counts else []
    header = ["split", "n", *(f"{m} absent" for m in MODALITIES), *(f"class {c}" for c in classes)]
    rows = []
    for split, size in n.items():
        shares = absent.get(split, {})
        row = [str(split), str(int(size)), *(_pct(shares[m]) if m in shares else "n/a" for m in MODALITIES)]
        row += [str(int(counts.get(split, {}).get(c, 0))) for c in classes]
        rows.append(row)
    return header, rows


def shown_source(source: str) -> str:
    """A dataset's source as a report shows it: an absolute path to an existing file or folder becomes relative to
    the working directory (``/home/me/accord/../shared/data/mosi`` -> ``../shared/data/mosi``), so a committed
    report names no machine's home; anything else (``conflictbench(seed=0)``) as it is."""
    if os.path.isabs(source) and os.path.exists(source):
        return os.path.relpath(source)
    return source


def dataset_line(info: Mapping[str, Any]) -> str:
    """The dataset section's first line: name, source and ``data.path``."""
    path = info.get("path")
    return (f"Dataset `{info.get('name', '?')}`: source {shown_source(str(info.get('source') or 'n/a'))}"
            + (f", data.path `{path}`" if path else "") + ".")


def dataset_markdown(info: Mapping[str, Any], heading: str = "Dataset") -> str:
    """The dataset section in Markdown: ``heading``, :func:`dataset_line` and :func:`dataset_cells`'s table ("absent":
    the share of the split's samples whose modality has length 0); ends with a newline."""
    cells = dataset_cells(info)
    lines = [heading, "", dataset_line(info), ""]
    if cells is None:
        lines += ["Samples per split and absent modalities: not recorded for this run (trained before Accord "
                  "recorded them in dataset.json).", ""]
    else:
        lines += [cells_markdown(cells).rstrip("\n"), "",
                  "\"absent\": share of the split's samples whose modality has length 0.", ""]
    return "\n".join(lines)


def cells_markdown(cells: Cells) -> str:
    """A Markdown table of text cells (first column left-aligned, the others right-aligned); ends with a newline."""
    header, rows = cells
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines) + "\n"
