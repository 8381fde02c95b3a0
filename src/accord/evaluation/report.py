"""One self-contained HTML report of a run or a benchmark folder (``accord report RUN_OR_BENCHMARK_DIR``).

The page needs nothing but the file itself: CSS is inline, every figure is a base64 PNG ``data:`` URI drawn with
matplotlib's Agg backend, and there is no JavaScript. For each run it shows

* the config (``config.yaml``, verbatim),
* the metrics table, mean ± std over seeds on valid and test (``summary.json``),
* training curves per seed: ``loss/total`` and the validation selection metric per epoch (``seed_<s>/log.jsonl``),
* predictions against labels (regression),
* every diagnostic the run has: gradient-norm traces of the gradient monitor (:func:`accord.evaluation.plots.
  plot_gradients`), conflict score / weight distributions (``conflict_<m>`` / ``omega_<m>`` in ``diagnostics.npz``),
  trust weights (``trust_<m>``), any other per-modality diagnostic (``<name>_<m>``, or ``[N, 3]`` arrays such as
  ``fusion_weight``), and robustness curves (``robustness.png``, embedded as is).

A benchmark folder (``benchmark.json`` + several run folders) gets its table of test mean ± std first, then one
section per run; a k-fold benchmark folder (``kfold.json`` + ``fold_<i>/`` benchmark folders, ``accord benchmark
--folds``) its across-fold and per-fold tables, then one section per run of every fold. Every metrics table has the
trivial-baseline row (train mean / majority class), every classification run its confusion matrix and every run (and
study) the dataset section (:mod:`accord.evaluation.sections`). All text taken from files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.core import rundir
from accord.core.errors import AccordError, CheckpointError, ConfigError
from accord.core.io import atomic_write_text
from accord.core.types import MODALITIES
from accord.evaluation.sections import CONSTANT_ROW, Cells, confusion_cells, dataset_cells, dataset_line, run_confusion

__all__ = ["Figure", "build_report", "metrics_table", "write_report"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2.2em; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: .8em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eef1f4; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
.note { color: #777; font-style: italic; }
nav ul { columns: 2; }
"""


@dataclass
class Figure:
    """A PNG figure with a caption, inlined into the page as a data URI."""

    caption: str
    png: bytes

    def html(self) -> str:
        """``<figure>`` with the PNG as a base64 data URI and the escaped caption."""
        data = base64.b64encode(self.png).decode("ascii")
        alt = html.escape(self.caption, quote=True)
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{html.escape(self.caption)}</figcaption></figure>")


@dataclass
class RunSection:
    """Everything the report shows about one run directory."""

    name: str
    config: str
    summary: dict[str, Any] | None
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, Any] | None = None
    """``probe_<split>.json`` (``accord probe``): the mechanism probes' mean ± std, when the run has them."""
    tables_html: str = ""
    """The run's confusion matrix (classification) and dataset section (:func:`run_tables_html`)."""


# ------------------------------------------------------------------------------------------------------ helpers


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _fmt(cell: Mapping[str, Any] | None) -> str:
    """``{"mean", "std", "n"}`` -> ``"mean ± std"`` (no std for one value; ``–`` for missing / null)."""
    if not cell or cell.get("mean") is None:
        return "–"
    mean = float(cell["mean"])
    std = cell.get("std")
    n = int(cell.get("n", 0) or 0)
    if std is None or n < 2:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {float(std):.2g}"


def metrics_table(rows: Mapping[str, Mapping[str, Mapping[str, Any]]], first_col: str) -> str:
    """An HTML table: one row per key of ``rows``, one column per metric, cells ``mean ± std``.

    ``rows`` maps a row label (a split, or a method) to ``{metric: {"mean", "std", "n"}}``; the metric columns are
    the union over rows in first-seen order.
    """
    metrics: list[str] = []
    for r in rows.values():
        metrics += [m for m in r if m not in metrics]
    head = "".join(f"<th>{_esc(m)}</th>" for m in [first_col, *metrics])
    body = "".join(
        "<tr>" + f"<td>{_esc(label)}</td>" + "".join(f"<td>{_esc(_fmt(r.get(m)))}</td>" for m in metrics) + "</tr>"
        for label, r in rows.items())
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _via_file(draw: Callable[[Path], Path]) -> bytes:
    """PNG bytes of a plotting function that writes to a path (the existing :mod:`accord.evaluation.plots` API)."""
    with tempfile.TemporaryDirectory(prefix="accord_report_") as tmp:
        return draw(Path(tmp) / "figure.png").read_bytes()


# ------------------------------------------------------------------------------------------------------ figures


def training_curves(run_dir: Path, metric: str | None) -> Figure | None:
    """``loss/total`` and ``valid/<metric>`` per epoch, one line per seed; None when no seed logged an epoch."""
    series: dict[str, list[dict[str, Any]]] = {}
    for sd in rundir.seed_dirs(run_dir):
        if (sd / rundir.LOG).is_file():
            lines = rundir.read_log(sd / rundir.LOG, "epoch")
            if lines:
                series[sd.name] = lines
    if not series:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    keys = ["loss/total"] + ([f"valid/{metric}"] if metric else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5.0 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for seed, lines in series.items():
            pts = [(r["epoch"], r[key]) for r in lines if isinstance(r.get(key), int | float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, lw=1.4, label=seed)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"{run_dir.name}: training curves")
    fig.tight_layout()
    caption = "Training curves per seed: loss/total" + (f" and validation {metric} (selection metric)"
                                                         if metric else "")
    return Figure(caption, _fig_png(fig))


def _has_grad_lines(run_dir: Path) -> bool:
    return any(rundir.read_log(sd / rundir.LOG, "grad") for sd in rundir.seed_dirs(run_dir))


def gradient_figure(run_dir: Path) -> Figure | None:
    """The gradient monitor's per-step ``g_m`` / ``r_m`` of the first monitored seed; None if nothing monitored."""
    if not _has_grad_lines(run_dir):
        return None
    from accord.evaluation.plots import plot_gradients

    try:
        png = _via_file(lambda out: plot_gradients(run_dir, out=out))
    except AccordError:
        return None
    return Figure("Gradient norms g_m at the fusion input and imbalance ratios r_m per training step "
                  "(gradient monitor)", png)


def _diagnostics(run_dir: Path, split: str) -> dict[str, list[np.ndarray]]:
    """Per-sample ``<split>/<name>`` arrays of every seed's ``diagnostics.npz``, name -> list over seeds."""
    out: dict[str, list[np.ndarray]] = {}
    for sd in rundir.seed_dirs(run_dir):
        if not (sd / rundir.DIAGNOSTICS).is_file():
            continue
        for k, v in rundir.read_diagnostics(sd, split).items():
            out.setdefault(k, []).append(np.asarray(v))
    return out


def _histograms(values: Mapping[str, np.ndarray], title: str, xlabel: str, bins: int = 30) -> bytes:
    from accord.evaluation.plots import MODALITY_COLORS

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(values), figsize=(3.8 * len(values), 3.0), squeeze=False)
    for ax, (m, v) in zip(axes[0], values.items(), strict=True):
        ax.hist(v.astype(float).ravel(), bins=bins, color=MODALITY_COLORS.get(m, "tab:gray"), alpha=0.8)
        ax.set_title(f"{m} (mean {float(np.mean(v)):.3g})", fontsize=10)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("samples")
    fig.suptitle(title)
    fig.tight_layout()
    return _fig_png(fig)


def conflict_figure(run_dir: Path, diag: Mapping[str, list[np.ndarray]], split: str) -> Figure | None:
    """Conflict score (and weight) distributions when the model saved ``conflict_<m>``; None otherwise.

    Uses :func:`accord.evaluation.plots.plot_conflict` grouped by ConflictBench's ``extra_conflict`` when saved,
    else plain per-modality histograms pooled over seeds.
    """
    mods = [m for m in MODALITIES if f"conflict_{m}" in diag]
    if not mods:
        return None
    if "extra_conflict" in diag:
        from accord.evaluation.plots import plot_conflict

        try:
            png = _via_file(lambda out: plot_conflict(run_dir, by="extra_conflict", split=split, out=out))
            return Figure(f"Conflict scores C_m and weights w_m on {split}, split by planted conflict "
                          "(extra_conflict), pooled over seeds", png)
        except AccordError:
            pass
    values = {m: np.concatenate(diag[f"conflict_{m}"]) for m in mods}
    return Figure(f"Conflict scores C_m on {split}, pooled over seeds",
                  _histograms(values, f"{run_dir.name}: conflict scores ({split})", "C_m"))


def trust_figure(run_dir: Path, diag: Mapping[str, list[np.ndarray]], split: str) -> Figure | None:
    """Distributions of the per-sample trust weights ``trust_<m>``; None when the model saved none."""
    mods = [m for m in MODALITIES if f"trust_{m}" in diag]
    if not mods:
        return None
    values = {m: np.concatenate(diag[f"trust_{m}"]) for m in mods}
    return Figure(f"Trust weights w_m on {split}, pooled over seeds",
                  _histograms(values, f"{run_dir.name}: trust weights ({split})", "trust w_m"))


SKIP_PREFIXES = ("conflict", "omega", "trust", "extra", "aux")


def other_diagnostic_figures(run_dir: Path, diag: Mapping[str, list[np.ndarray]], split: str) -> list[Figure]:
    """One histogram figure per other per-modality diagnostic the model saved.

    Covers ``<name>_<m>`` arrays ``[N]`` (e.g. EBMC's ``teacher_<m>``, ``energy_<m>``, CACR's ``rec_error_<m>``)
    and ``<name>`` arrays ``[N, 3]`` with one column per modality (e.g. late fusion's ``fusion_weight``). Conflict
    and trust have their own figures; dataset extras (``extra_*``) and auxiliary predictions (``aux_*``) are skipped.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, arrays in diag.items():
        if name.startswith(SKIP_PREFIXES) or not all(np.issubdtype(a.dtype, np.number) for a in arrays):
            continue
        arr = np.concatenate(arrays)
        mod = next((m for m in MODALITIES if name.endswith(f"_{m}")), None)
        if mod is not None and arr.ndim == 1:
            groups.setdefault(name[: -len(mod) - 1], {})[mod] = arr
        elif arr.ndim == 2 and arr.shape[1] == len(MODALITIES) and name not in ("prediction", "label"):
            groups[name] = {m: arr[:, k] for k, m in enumerate(MODALITIES)}
    figs = []
    for prefix, values in sorted(groups.items()):
        ordered = {m: values[m] for m in MODALITIES if m in values}
        figs.append(Figure(f"Per-sample diagnostic {prefix} per modality on {split}, pooled over seeds",
                           _histograms(ordered, f"{run_dir.name}: {prefix} ({split})", prefix)))
    return figs


def prediction_figure(run_dir: Path, diag: Mapping[str, list[np.ndarray]], split: str) -> Figure | None:
    """Predictions against labels (regression: scatter; classification logits are skipped); None if not saved."""
    if "prediction" not in diag or "label" not in diag:
        return None
    pred, label = np.concatenate(diag["prediction"]), np.concatenate(diag["label"])
    if pred.ndim != 1 or label.ndim != 1 or not np.issubdtype(pred.dtype, np.floating):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(label, pred, s=10, alpha=0.6)
    lo, hi = float(min(label.min(), pred.min())), float(max(label.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
    ax.set_xlabel("label")
    ax.set_ylabel("prediction")
    ax.set_title(f"{run_dir.name}: {split}, {len(diag['prediction'])} seed(s)", fontsize=10)
    fig.tight_layout()
    return Figure(f"Predictions against labels on {split}, pooled over seeds (dashed: perfect)", _fig_png(fig))


def robustness_figure(folder: Path) -> Figure | None:
    """``robustness.png`` of a run or benchmark folder, as is; None when absent."""
    png = folder / "robustness.png"
    if not png.is_file():
        return None
    return Figure("Robustness: score under increasing corruption per modality (accord robustness)", png.read_bytes())


# ------------------------------------------------------------------------------------------------------ sections


def run_section(run_dir: Path, split: str = "test") -> RunSection:
    """Collect the config, summary and every available figure of one run directory."""
    cfg_path = run_dir / rundir.CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {rundir.CONFIG})")
    summary = rundir.read_summary(run_dir) if (run_dir / rundir.SUMMARY).is_file() else None
    sec = RunSection(run_dir.name, cfg_path.read_text(), summary)
    if summary is None:
        sec.notes.append("summary.json missing: the run has not finished.")
    metric = (summary or {}).get("selection_metric")
    if metric is None:
        try:
            import yaml

            metric = ((yaml.safe_load(sec.config) or {}).get("train", {}).get("early_stopping", {}) or {}).get(
                "metric")
        except Exception:  # noqa: BLE001 - an unreadable config only loses the metric curve
            metric = None
    probe_file = run_dir / f"probe_{split}.json"
    if probe_file.is_file():
        sec.probes = rundir.read_json(probe_file, "probe results")
    diag = _diagnostics(run_dir, split)
    figures = [training_curves(run_dir, metric), prediction_figure(run_dir, diag, split), gradient_figure(run_dir),
               conflict_figure(run_dir, diag, split), trust_figure(run_dir, diag, split),
               *other_diagnostic_figures(run_dir, diag, split), robustness_figure(run_dir),
               attribution_figure(run_dir, split)]
    sec.figures += [f for f in figures if f is not None]
    if not diag:
        sec.notes.append("No diagnostics.npz: no per-sample diagnostics to show.")
    sec.tables_html = run_tables_html(run_dir, split, 3)
    return sec


def _anchor(name: str) -> str:
    return "run-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _section_html(sec: RunSection, level: int) -> str:
    h = f"h{level}"
    parts = [f'<section id="{_esc(_anchor(sec.name))}"><{h}>{_esc(sec.name)}</{h}>']
    s = sec.summary
    if s is not None:
        parts.append(f"<p>method <code>{_esc(s.get('method', '?'))}</code> on <code>{_esc(s.get('dataset', '?'))}"
                     f"</code>, seeds {_esc(', '.join(str(x) for x in s.get('seeds', [])))}; checkpoint selected on "
                     f"validation {_esc(s.get('selection_metric', '?'))}; mean training time per seed "
                     f"{float(s.get('train_seconds', 0.0)):.1f} s.</p>")
        rows = {k: s[k] for k in ("valid", "test") if isinstance(s.get(k), dict)}
        rows.update(constant_rows(s))
        parts.append(f"<h{level + 1}>Metrics (mean ± std over seeds)</h{level + 1}>")
        parts.append(metrics_table(rows, "split"))
    if sec.probes is not None:
        parts.append(f"<h{level + 1}>Mechanism probes ({_esc(', '.join(sec.probes.get('probes', [])))}; "
                     f"see accord.studies.probes)</h{level + 1}>")
        parts.append(metrics_table({"probe": sec.probes.get("mean_std", {})}, "measure"))
    parts.append(sec.tables_html)
    for note in sec.notes:
        parts.append(f'<p class="note">{_esc(note)}</p>')
    if sec.figures:
        parts.append(f"<h{level + 1}>Figures</h{level + 1}>")
        parts += [f.html() for f in sec.figures]
    parts.append(f"<h{level + 1}>Config</h{level + 1}><pre>{_esc(sec.config)}</pre></section>")
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{_esc(title)}</h1>\n"
            f"{body}\n<p class=\"note\">Generated by <code>accord report</code>.</p>\n</body></html>\n")


def build_report(target: str | Path, split: str = "test") -> str:
    """The HTML report of a run directory or a benchmark folder (a folder of run directories).

    Raises :class:`~accord.core.errors.CheckpointError` when ``target`` is neither,
    :class:`~accord.core.errors.ConfigError` for a ``split`` other than valid / test.
    """
    if split not in ("valid", "test"):
        raise ConfigError(f"--split {split!r}: expected valid or test")
    t = Path(target)
    if not t.is_dir():
        raise CheckpointError(f"{t}: not a directory (give a run directory or a benchmark folder)")
    if (t / "config.yaml").is_file():
        return _page(f"Accord report: {t.name}", _section_html(run_section(t, split), 2))
    if (t / KFOLD_JSON).is_file():
        return kfold_report(t, split)
    runs = sorted(p for p in t.iterdir() if (p / "config.yaml").is_file())
    if not runs:
        raise CheckpointError(f"{t}: neither a run directory nor a folder of runs (no config.yaml found)")
    parts: list[str] = []
    bench_path = t / "benchmark.json"
    if bench_path.is_file():
        bench = json.loads(bench_path.read_text())
        parts.append(f"<p>dataset <code>{_esc(bench.get('dataset', '?'))}</code>, seeds "
                     f"{_esc(', '.join(str(x) for x in bench.get('seeds', [])))}, checkpoints selected on validation "
                     f"{_esc(bench.get('selection_metric', '?'))}.</p>")
        if isinstance(bench.get("test"), dict) and bench["test"]:
            parts.append("<h2>Test metrics (mean ± std over seeds)</h2>")
            parts.append(metrics_table(with_constant_row(bench["test"], bench.get("constant_predictor")), "method"))
        if isinstance(bench.get("conflict_split"), dict) and bench["conflict_split"]:
            parts.append("<h2>Planted conflicts: accuracy on conflicting vs consistent test samples</h2>")
            parts.append(metrics_table(bench["conflict_split"], "method"))
        if bench.get("verdict"):
            parts.append(f"<p>{_esc(bench['verdict'])}</p>")
        if isinstance(bench.get("dataset_info"), dict):
            parts.append(dataset_html(bench["dataset_info"], "h2"))
    else:
        parts.append('<p class="note">No benchmark.json in this folder: showing each run.</p>')
    rob = robustness_figure(t)
    if rob is not None:
        parts.append("<h2>Robustness</h2>" + rob.html())
    parts.append("<nav><h2>Runs</h2><ul>" + "".join(
        f'<li><a href="#{_esc(_anchor(r.name))}">{_esc(r.name)}</a></li>' for r in runs) + "</ul></nav>")
    parts += [_section_html(run_section(r, split), 2) for r in runs]
    return _page(f"Accord benchmark report: {t.name}", "\n".join(parts))


# ------------------------------------- trivial-baseline row, confusion matrix, dataset section, k-fold benchmark

KFOLD_JSON = f"{rundir.KFOLD_STEM}.json"
"""The k-fold benchmark's results (``accord benchmark --folds``)."""


def constant_rows(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``{"<split>: constant predictor ...": {metric: {"mean", "std", "n"}}}``: the trivial-baseline rows a run's
    summary recorded (``constant_predictor``), empty for a run trained before they were."""
    recorded = summary.get("constant_predictor")
    if not isinstance(recorded, dict):
        return {}
    return {f"{split}: {CONSTANT_ROW}": recorded[split] for split in ("valid", "test")
            if isinstance(recorded.get(split), dict)}


def with_constant_row(table: Mapping[str, Any], constant: Any) -> dict[str, Any]:
    """A study's table with its trivial-baseline row first (when the study recorded one)."""
    if not isinstance(constant, dict) or not constant:
        return dict(table)
    return {CONSTANT_ROW: constant.get("test", constant), **table}


def cells_html(cells: Cells) -> str:
    """An HTML table of text cells (:data:`accord.evaluation.sections.Cells`), escaped."""
    header, rows = cells
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="cells"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def confusion_html(matrix: Any, class_names: list[str], caption: str, tag: str) -> str:
    """A confusion matrix under the heading ``caption`` (``tag``: h2, h3, ...)."""
    return f"<{tag}>{_esc(caption)}</{tag}>" + cells_html(confusion_cells(matrix, class_names))


def dataset_html(info: Mapping[str, Any], tag: str, title: str = "Dataset") -> str:
    """The dataset section of a run's ``dataset.json`` (or a study's record of it)."""
    cells = dataset_cells(info)
    table = (cells_html(cells) + '<p class="note">absent: share of the split\'s samples whose modality has length 0.'
             "</p>") if cells is not None else \
        '<p class="note">Samples per split and absent modalities: not recorded for this run.</p>'
    return f"<{tag}>{_esc(title)}</{tag}><p>{_esc(dataset_line(info).replace('`', ''))}</p>{table}"


def run_tables_html(run_dir: Path, split: str, level: int) -> str:
    """A run's confusion matrix on ``split`` (classification; counts summed over seeds) and its dataset section."""
    parts = []
    found = run_confusion(run_dir, split)
    if found is not None:
        matrix, names, seeds = found
        parts.append(confusion_html(matrix, names, f"Confusion matrix on {split}, counts summed over {seeds} "
                                    "seed(s) (rows: true class, columns: predicted)", f"h{level}"))
    if (run_dir / rundir.DATASET).is_file():
        parts.append(dataset_html(rundir.read_dataset_info(run_dir), f"h{level}"))
    return "\n".join(parts)


def kfold_report(folder: Path, split: str = "test") -> str:
    """The page of a k-fold benchmark folder: the across-fold table (mean ± std over folds of the per-fold means),
    each fold's table, the confusion matrices summed over seeds and folds, the dataset per fold, then every run."""
    kf = rundir.read_json(folder / KFOLD_JSON, "a k-fold benchmark's results")
    parts = [f"<p>k-fold dataset <code>{_esc(kf.get('folds_dir', '?'))}</code> ({_esc(kf.get('k', '?'))} folds), "
             f"seeds {_esc(', '.join(str(x) for x in kf.get('seeds', [])))} on every fold, checkpoints selected on "
             f"validation {_esc(kf.get('selection_metric', '?'))}.</p>"]
    across = (kf.get("across_folds") or {}).get("test")
    if isinstance(across, dict):
        parts.append("<h2>Across folds: test, mean ± std over folds of the per-fold means</h2>")
        parts.append(f'<p class="note">{_esc((kf.get("across_folds") or {}).get("statistic", ""))}</p>')
        parts.append(metrics_table(across, "method"))
    for fold in kf.get("per_fold", []):
        parts.append(f"<h2>{_esc(fold.get('fold', '?'))}: test, mean ± std over seeds</h2>")
        parts.append(metrics_table(with_constant_row(fold.get("test", {}), fold.get("constant_predictor")), "method"))
    for name, t in (kf.get("confusion") or {}).items():
        parts.append(confusion_html(t["matrix"], t["class_names"], f"Confusion matrix of {name} on test, counts "
                                    f"summed over {t.get('seeds', '?')} seed runs ({t.get('folds', '?')} folds)", "h2"))
    for fold in kf.get("per_fold", []):
        if isinstance(fold.get("dataset_info"), dict):
            parts.append(dataset_html(fold["dataset_info"], "h2", f"Dataset of {fold.get('fold', '?')}"))
    sections = []
    for fold_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("fold_")):
        for run in sorted(p for p in fold_dir.iterdir() if (p / rundir.CONFIG).is_file()):
            sec = run_section(run, split)
            sec.name = f"{fold_dir.name}/{run.name}"
            sections.append(sec)
    parts.append("<nav><h2>Runs</h2><ul>" + "".join(
        f'<li><a href="#{_esc(_anchor(sec.name))}">{_esc(sec.name)}</a></li>' for sec in sections) + "</ul></nav>")
    parts += [_section_html(sec, 2) for sec in sections]
    return _page(f"Accord k-fold benchmark report: {folder.name}", "\n".join(parts))


def write_report(target: str | Path, out: str | Path | None = None, split: str = "test") -> Path:
    """Write :func:`build_report` of ``target`` to ``out`` (default ``<target>/report.html``) atomically."""
    dest = Path(out) if out is not None else Path(target) / "report.html"
    text = build_report(target, split)
    atomic_write_text(dest, text)
    return dest


# ------------------------------------------------------------------------------------------------------ attribution


def attribution_figure(run_dir: Path, split: str = "test") -> Figure | None:
    """Mean |φ_m| per modality of ``attribution_<split>.json`` (``accord attribute``: exact Shapley values of each
    prediction over the modalities, :mod:`accord.evaluation.attribution`) as bars, the caption giving the numbers
    and the share of samples whose modalities disagree; None when the run has no such file."""
    file = run_dir / f"attribution_{split}.json"
    if not file.is_file():
        return None
    att = rundir.read_json(file, "modality attribution")
    mean_abs = {m: float(att.get("mean_abs_phi", {}).get(m, 0.0)) for m in MODALITIES}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(list(mean_abs), list(mean_abs.values()), color=["#4c72b0", "#dd8452", "#55a868"])
    ax.set_ylabel("mean |φ| (Shapley)")
    ax.set_title(f"Modality attribution on {split}")
    fig.tight_layout()
    png = _fig_png(fig)
    parts = ", ".join(f"{m} {v:.3f}" for m, v in mean_abs.items())
    return Figure(f"Shapley attribution over the modalities (accord attribute, {split}, {att.get('n', '?')} samples, "
                  f"mean over seeds): mean |φ| {parts}; the modalities disagree (one pushes up and another down by "
                  f"more than {att.get('disagree_fraction', 0.1):g}·Σ|φ|) on "
                  f"{100 * float(att.get('disagree_share', 0.0)):.1f}% of samples.", png)
