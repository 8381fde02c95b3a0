"""Mean ± std over seeds, and result tables in Markdown and CSV.

The usual flow: collect one metrics dict per seed, :func:`aggregate` them into ``(mean, std, n)`` per metric,
gather those per method into ``rows`` and render them with :func:`markdown_table` / :func:`csv_rows`.
Files are written atomically via :mod:`accord.core.io`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from accord.core.errors import DataError
from accord.core.io import PathLike, atomic_write_text
from accord.evaluation.metrics import metric_spec

__all__ = [
    "Aggregate",
    "aggregate",
    "aggregate_from_json",
    "aggregate_json",
    "aggregate_table_from_json",
    "aggregate_table_json",
    "csv_rows",
    "format_mean_std",
    "markdown_table",
    "summary_rows",
    "write_csv",
    "write_markdown",
]

Aggregate = tuple[float, float, int]
"""``(mean, std, n)`` of one metric over ``n`` seeds; ``(nan, nan, 0)`` when no seed has a finite value."""

NA = "n/a"


def aggregate(per_seed: Sequence[Mapping[str, float]]) -> dict[str, Aggregate]:
    """Mean, sample standard deviation and count per metric over seeds.

    Non-finite values (NaN, e.g. ``Non0_acc_2`` on an all-zero split, and ±Inf) are ignored and ``n`` counts
    the finite ones; a metric missing from some seeds is aggregated over the seeds that have it. ``std`` uses
    ``ddof=1`` when ``n > 1`` and is ``0.0`` when ``n == 1``; a metric with no finite value at all gives
    ``(nan, nan, 0)``. Metrics keep the order in which they first appear.

    Raises:
        DataError: a value is not a number.
    """
    values: dict[str, list[float]] = {}
    for i, metrics in enumerate(per_seed):
        for name, value in metrics.items():
            try:
                v = float(value)
            except (TypeError, ValueError) as err:
                raise DataError(f"summary: metric {name!r} of seed #{i} is not a number: {value!r}") from err
            bucket = values.setdefault(name, [])
            if math.isfinite(v):
                bucket.append(v)
    out: dict[str, Aggregate] = {}
    for name, vals in values.items():
        n = len(vals)
        if n == 0:
            out[name] = (math.nan, math.nan, 0)
        elif n == 1:
            out[name] = (vals[0], 0.0, 1)
        else:
            arr = np.asarray(vals, dtype=np.float64)
            out[name] = (float(arr.mean()), float(arr.std(ddof=1)), n)
    return out


def aggregate_json(agg: Mapping[str, Aggregate]) -> dict[str, dict[str, float | int]]:
    """``aggregate``'s result as JSON-ready ``{metric: {"mean", "std", "n"}}`` (the form results files use)."""
    return {k: {"mean": v[0], "std": v[1], "n": v[2]} for k, v in agg.items()}


def aggregate_from_json(agg: Mapping[str, Mapping[str, Any]]) -> dict[str, Aggregate]:
    """``{metric: {"mean", "std", "n"}}`` (the form results files use) back to ``{metric: (mean, std, n)}``: the
    inverse of :func:`aggregate_json`."""
    return {k: (v["mean"], v["std"], v["n"]) for k, v in agg.items()}


def summary_rows(summary: Mapping[str, Any], split: str) -> dict[str, Aggregate]:
    """The aggregates of one ``split`` of a run's summary (``summary.json``: ``{split: {metric: {"mean", "std",
    "n"}}}``) as ``{metric: (mean, std, n)}``; a split the summary lacks (a sweep trial evaluates ``valid`` only)
    gives ``{}``."""
    return aggregate_from_json(summary.get(split, {}))


def aggregate_table_json(rows: Mapping[str, Mapping[str, Aggregate]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """A table of aggregates (row -> metric -> Aggregate) as JSON-ready nested dicts."""
    return {k: aggregate_json(r) for k, r in rows.items()}


def aggregate_table_from_json(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Aggregate]]:
    """The inverse of :func:`aggregate_table_json` (a study's ``test``/``valid`` tables read back from its JSON)."""
    return {k: aggregate_from_json(r) for k, r in table.items()}


def format_mean_std(mean: float, std: float, metric: str) -> str:
    """Format ``mean ± std`` for a table cell with the metric's registered decimals
    (:func:`~accord.evaluation.metrics.metric_spec`): accuracies and F1 scores (in %) one, e.g. ``"77.9 ± 0.4"``;
    ``MAE``, ``Corr`` three, e.g. ``"0.953 ± 0.012"``. A NaN mean gives ``"n/a"``; a NaN std gives the mean alone.
    """
    digits = metric_spec(metric).digits
    if not math.isfinite(mean):
        return NA
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _seeds_cell(stats: Mapping[str, Aggregate], metrics: Sequence[str]) -> str:
    """The seed count of a row: ``"3"``, or ``"2-3"`` when metrics were aggregated over different counts."""
    counts = sorted({stats[m][2] for m in metrics if m in stats and stats[m][2] > 0})
    if not counts:
        return "0"
    if len(counts) == 1:
        return str(counts[0])
    return f"{counts[0]}-{counts[-1]}"


def _best_rows(rows: Mapping[str, Mapping[str, Aggregate]], metric: str) -> set[str]:
    """Keys of the rows with the best finite mean of ``metric`` (ties all win); empty if < 2 finite means."""
    means = {key: stats[metric][0] for key, stats in rows.items()
             if metric in stats and math.isfinite(stats[metric][0])}
    if len(means) < 2:
        return set()
    best = min(means.values()) if metric_spec(metric).direction == "min" else max(means.values())
    return {key for key, m in means.items() if m == best}


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown_table(rows: Mapping[str, Mapping[str, Aggregate]], metrics: Sequence[str],
                   first_col: str = "method", bold_best: bool = True, count_col: str = "seeds") -> str:
    """A Markdown table: one row per key of ``rows``, one column per metric, then a ``seeds`` column (named
    ``count_col``: ``folds`` for a table of means over folds).

    Cells are formatted with :func:`format_mean_std` (``"n/a"`` when a row lacks the metric). With
    ``bold_best``, the best mean of each column (lowest for ``"min"`` metrics such as ``MAE``, highest
    otherwise, see :func:`~accord.evaluation.metrics.metric_mode`) is bold; exact ties are all bold, and a
    column with fewer than two finite means has no bold cell. The returned text ends with a newline.
    """
    best = {m: _best_rows(rows, m) for m in metrics} if bold_best else {m: set() for m in metrics}
    header = [first_col, *metrics, count_col]
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join([":---", *(["---:"] * (len(metrics) + 1))]) + "|",
    ]
    for key, stats in rows.items():
        cells = [_escape(str(key))]
        for m in metrics:
            cell = format_mean_std(stats[m][0], stats[m][1], m) if m in stats else NA
            cells.append(f"**{cell}**" if key in best[m] else cell)
        cells.append(_seeds_cell(stats, metrics))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_rows(rows: Mapping[str, Mapping[str, Aggregate]],
             metrics: Sequence[str], count_col: str = "seeds") -> list[dict[str, str | float]]:
    """Flat CSV records: ``method``, ``<metric>_mean`` and ``<metric>_std`` per metric, then ``seeds`` (named
    ``count_col``).

    Means and stds are raw floats (NaN when a row lacks the metric); ``seeds`` is formatted as in
    :func:`markdown_table`.
    """
    records: list[dict[str, str | float]] = []
    for key, stats in rows.items():
        record: dict[str, str | float] = {"method": str(key)}
        for m in metrics:
            mean, std, _ = stats.get(m, (math.nan, math.nan, 0))
            record[f"{m}_mean"] = float(mean)
            record[f"{m}_std"] = float(std)
        record[count_col] = _seeds_cell(stats, metrics)
        records.append(record)
    return records


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return value


def write_csv(path: PathLike, rows: Mapping[str, Mapping[str, Aggregate]], metrics: Sequence[str],
              count_col: str = "seeds") -> None:
    """Write :func:`csv_rows` to ``path`` atomically (``\\n`` line ends, non-finite values as empty cells)."""
    fieldnames = ["method", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), count_col]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for record in csv_rows(rows, metrics, count_col):
        writer.writerow({k: _csv_cell(v) for k, v in record.items()})
    atomic_write_text(path, buf.getvalue())


def write_markdown(path: PathLike, text: str) -> None:
    """Write Markdown ``text`` to ``path`` atomically."""
    atomic_write_text(path, text)
