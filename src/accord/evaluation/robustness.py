"""Robustness under missing and noisy modalities (MultiBench-style), computed from evaluation curves.

A *curve* is the score of one run at increasing corruption levels of one kind (drop, temporal_drop, noise) on one
modality (or all). From it:

* **relative robustness** = the area under the score-vs-level curve divided by the level range (trapezoid rule):
  the mean score across levels, clean included. Higher is better (for a "min" metric such as MAE, lower).
* **effective robustness** = how much less a run loses under corruption than the reference run (late fusion)
  does: ``(RR_run − clean_run) − (RR_ref − clean_ref)``, i.e. the robustness gap to the reference at the same
  clean score (MultiBench, Liang et al., NeurIPS 2021 Datasets & Benchmarks, defines it against the trend of
  clean vs corrupted performance; with one reference run that trend is the reference itself).

The tables and the figure also carry the **trivial baseline** (:class:`ConstantLine`: the train-mean / majority-class
predictor of :mod:`accord.evaluation.baselines`). It reads no input, so it scores the same at every level of every
corruption: one row (corruption and modality "any") with that value at each level, RR = the value, no ER.

Plotting uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.core.errors import ConfigError
from accord.evaluation.metrics import metric_spec

KINDS = ("drop", "temporal_drop", "noise")
ANY = "any"
"""The corruption kind and modality of a :class:`ConstantLine`'s row: it is the same under all of them."""


@dataclass
class Curve:
    """Scores of one run for one corruption kind and modality, at ``levels`` (mean and std over seeds)."""

    run: str
    kind: str
    modality: str
    metric: str
    levels: list[float]
    mean: list[float]
    std: list[float]
    per_seed: list[list[float]] = field(default_factory=list)

    @property
    def clean(self) -> float:
        """The score at level 0 (the first level must be 0)."""
        return self.mean[0]

    def relative_robustness(self) -> float:
        """Area under the score-vs-level curve over the level range (trapezoid): the mean score across levels."""
        return area_under(self.levels, self.mean)


@dataclass(frozen=True)
class ConstantLine:
    """The trivial baseline of a robustness table: ``name`` (the table's row), the ``metric`` it is scored on and its
    ``value``, the same at every corruption level (a constant prediction reads no input)."""

    name: str
    metric: str
    value: float


def area_under(levels: Sequence[float], scores: Sequence[float]) -> float:
    """Trapezoid area under ``scores`` over ``levels`` divided by the level range.

    For levels [0, 0.5, 1] and scores [80, 60, 50]: ((80+60)/2·0.5 + (60+50)/2·0.5) / 1 = 62.5.
    A single level returns its score.
    """
    x, y = np.asarray(levels, dtype=float), np.asarray(scores, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"robustness: {len(x)} levels for {len(y)} scores")
    if len(x) == 1:
        return float(y[0])
    if np.any(np.diff(x) <= 0):
        raise ValueError("robustness: levels must increase")
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    return area / float(x[-1] - x[0])


def effective_robustness(curve: Curve, reference: Curve) -> float:
    """``(RR − clean) − (RR_ref − clean_ref)``: positive when the run loses less than the reference does."""
    return (curve.relative_robustness() - curve.clean) - (reference.relative_robustness() - reference.clean)


def parse_levels(text: str) -> list[float]:
    """``"0,0.1,0.5"`` -> [0.0, 0.1, 0.5]; must start at 0 and increase."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--levels {text!r}: expected comma-separated numbers, e.g. 0,0.1,0.5") from None
    if not levels or levels[0] != 0.0:
        raise ConfigError(f"--levels {text!r}: must start at 0 (the clean score)")
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ConfigError(f"--levels {text!r}: must increase")
    return levels


def constant_summary_row(line: ConstantLine, levels: Sequence[float]) -> dict[str, Any]:
    """The summary row of a trivial baseline: ``value`` clean, at every level and as RR; no ER (NaN)."""
    return {"run": line.name, "kind": ANY, "modality": ANY, "metric": line.metric, "clean": line.value,
            "relative_robustness": line.value, "effective_robustness": math.nan,
            **{f"level_{lv:g}": line.value for lv in levels}}


def summary_rows(curves: list[Curve], reference_run: str | None,
                 constants: Sequence[ConstantLine] = ()) -> list[dict[str, Any]]:
    """One row per curve: clean score, relative robustness, and effective robustness vs ``reference_run``; the
    trivial baselines' rows (:func:`constant_summary_row`) first."""
    refs = {(c.kind, c.modality): c for c in curves if c.run == reference_run}
    levels = curves[0].levels if curves else []
    rows = [constant_summary_row(line, levels) for line in constants]
    for c in curves:
        ref = refs.get((c.kind, c.modality))
        rows.append({
            "run": c.run, "kind": c.kind, "modality": c.modality, "metric": c.metric,
            "clean": c.clean, "relative_robustness": c.relative_robustness(),
            "effective_robustness": (effective_robustness(c, ref) if ref is not None and c.run != reference_run
                                     else math.nan),
            **{f"level_{lv:g}": m for lv, m in zip(c.levels, c.mean, strict=True)},
        })
    return rows


def markdown(curves: list[Curve], reference_run: str | None, constants: Sequence[ConstantLine] = ()) -> str:
    """Tables: per run, kind and modality the scores at each level (mean ± std), RR and ER; first the trivial
    baselines' rows (``constants``: corruption and modality "any", the value at every level, RR the value, ER –)."""
    if not curves:
        return ""
    levels = curves[0].levels
    metric = curves[0].metric
    spec = metric_spec(metric)
    better = "higher" if spec.direction == "max" else "lower"
    lines = [
        f"Metric: {metric} ({better} is better), mean ± std over seeds. RR = relative robustness (mean over levels, "
        f"area under the curve); ER = effective robustness vs `{reference_run}` (RR − clean, minus the same for the "
        f"reference; > 0 means it degrades less).",
        "",
        "| run | corruption | modality | " + " | ".join(f"{lv:g}" for lv in levels) + " | RR | ER |",
        "|:---|:---|:---|" + "---:|" * (len(levels) + 2),
    ]
    by_key = {(r["run"], r["kind"], r["modality"]): r for r in summary_rows(curves, reference_run)}
    digits = spec.digits
    for line in constants:
        d = metric_spec(line.metric).digits
        lines.append(f"| {line.name} | {ANY} | {ANY} | " + " | ".join([f"{line.value:.{d}f} ± {0:.{d}f}"] * len(levels))
                     + f" | {line.value:.{d}f} | – |")
    for c in curves:
        r = by_key[(c.run, c.kind, c.modality)]
        cells = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(c.mean, c.std, strict=True)]
        er = r["effective_robustness"]
        lines.append(f"| {c.run} | {c.kind} | {c.modality} | " + " | ".join(cells)
                     + f" | {r['relative_robustness']:.{digits}f} | " + ("–" if math.isnan(er) else f"{er:+.{digits}f}")
                     + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: list[Curve], path: str | Path, title: str = "", constants: Sequence[ConstantLine] = ()
                ) -> Path:
    """One PNG: a panel per (corruption kind, modality), a line per run with a ±std band, and a dashed grey line per
    trivial baseline (``constants``) at its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from accord.core.io import atomic_write_bytes

    order = ("text", "audio", "visual", "all")
    panels = sorted({(c.kind, c.modality) for c in curves},
                    key=lambda k: (KINDS.index(k[0]), order.index(k[1]) if k[1] in order else len(order)))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharey=True)
    for ax, (kind, mod) in zip(axes.flat, panels, strict=False):
        for c in (c for c in curves if (c.kind, c.modality) == (kind, mod)):
            m, s = np.array(c.mean), np.array(c.std)
            ax.plot(c.levels, m, marker="o", ms=3, label=c.run)
            ax.fill_between(c.levels, m - s, m + s, alpha=0.15)
        for i, line in enumerate(constants):
            ax.axhline(line.value, color="0.45", ls=(0, (4, 2 + 2 * i)), lw=1, label=line.name)
        ax.set_title(f"{kind} · {mod}", fontsize=9)
        ax.set_xlabel("level", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel(curves[0].metric)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
