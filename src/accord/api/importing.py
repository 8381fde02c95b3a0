"""``accord data import``: a user's corpus table (CSV, TSV, JSON lines; any common encoding) and optionally a folder
of clips -> a safe-format dataset (or k fold datasets), without writing Python (docs/your_data.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from accord.features.importer import ImportReport, import_table, options_from_strings

__all__ = ["data_import"]


def data_import(table: str | os.PathLike[str], out: str | os.PathLike[str], *,
                media: str | os.PathLike[str] | None = None, format: str | None = None,  # noqa: A002 - the option
                encoding: str | None = None, columns: dict[str, str | None] | None = None,
                columns_file: str | os.PathLike[str] | None = None, task: str = "regression",
                label_range: str | Sequence[float] = (-3.0, 3.0), classes: str | Sequence[str] | None = None,
                split: str | Sequence[float] | None = None, folds: int | None = None,
                folds_file: str | os.PathLike[str] | None = None, group_by: str | None = None, seed: int = 0,
                valid_share: float = 0.15, level: str = "vector", name: str | None = None, fps: float = 5.0,
                audio_pool: int = 10, progress: bool = True) -> ImportReport:
    """Import ``table`` into the dataset folder ``out`` (k folds: ``out/fold_<i>/`` and ``out/folds.json``).

    ``columns``: role (id, text, label, split, group, context, media) -> column name, over ``columns_file`` (a YAML
    of the same keys); the default of a role is its canonical name, matched case-insensitively. ``task``
    ``regression`` (labels within ``label_range``, ``"LO,HI"``) or ``classification`` (``classes`` fix the order,
    ``"a,b,c"``). Splits: the split column, or ``split`` shares ``"0.7,0.15,0.15"``, or ``folds`` K, or a
    ``folds_file`` (``id,fold``); ``group_by`` keeps a group's rows together; ``seed`` draws them. Returns the
    :class:`~accord.features.importer.ImportReport` (``summary_lines()`` is what the CLI prints).
    """
    opts = options_from_strings(table, out, media=media, format=format, encoding=encoding,
                                columns=dict(columns or {}), columns_file=columns_file, task=task,
                                label_range=label_range, classes=classes, split=split, folds=folds,
                                folds_file=folds_file, group_by=group_by, seed=seed, valid_share=valid_share,
                                level=level, name=name, fps=fps, audio_pool=audio_pool)
    return import_table(opts, progress=progress)
