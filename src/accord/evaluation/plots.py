"""Figures of a run's diagnostics (matplotlib, Agg backend; PNGs written atomically).

Gradient imbalance (:mod:`accord.balance.monitor`): :func:`plot_gradients` draws one seed's per-step ``g_m`` and
``r_m`` (``accord plot gradients RUN_DIR``); :func:`plot_max_ratio` compares the per-epoch ``max_m r_m`` of several
runs, mean ± std over seeds.

Conflict (CACR, :mod:`accord.models.cacr`): :func:`plot_conflict` draws the per-sample conflict scores ``C_m`` and
weights ``w_m`` saved at evaluation, split by a saved per-sample label (``accord plot conflict RUN_DIR --by
extra_conflict``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from accord.core import rundir
from accord.core.errors import CheckpointError
from accord.core.io import atomic_write_bytes
from accord.core.types import MODALITIES

MODALITY_COLORS = {"text": "tab:blue", "audio": "tab:orange", "visual": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def grad_records(run_dir: str | Path, seed: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """``(seed, grad lines)`` of a run: the monitor's per-step lines of ``seed_<seed>/log.jsonl`` (first seed
    folder that has them when ``seed`` is None). Errors name the run and what is missing."""
    rd = Path(run_dir)
    if not rd.is_dir():
        raise CheckpointError(f"{rd}: run directory not found")
    candidates = [rundir.seed_dir(rd, seed)] if seed is not None else rundir.seed_dirs(rd)
    if not candidates or not any((c / rundir.LOG).is_file() for c in candidates):
        raise CheckpointError(f"{rd}: no seed_<s>/log.jsonl" + (f" for seed {seed}" if seed is not None else ""))
    for c in candidates:
        recs = rundir.read_log(c / rundir.LOG, "grad")
        if recs:
            return rundir.seed_of(c), recs
    raise CheckpointError(f"{rd}: log.jsonl has no gradient-monitor lines; train with "
                          f"--set 'train.hooks=[{{name: grad_monitor}}]'")


def plot_gradients(run_dir: str | Path, seed: int | None = None, out: str | Path | None = None,
                   kappa: float | None = None, smooth: int = 10) -> Path:
    """Per-step ``g_m`` (log scale) and ``r_m`` over training for one seed, conflict threshold κ dashed.

    Raw steps are drawn faintly, a ``smooth``-step moving average on top; steps flagged as conflicts are ticked
    along the bottom of the ratio panel. Returns the PNG path (default ``RUN_DIR/gradients_seed<s>.png``).
    """
    seed, recs = grad_records(run_dir, seed)
    plt = _pyplot()
    steps = np.array([r["step"] for r in recs], dtype=float)
    mods = [m for m in MODALITIES if f"g/{m}" in recs[0]] or sorted(
        k[2:] for k in recs[0] if k.startswith("g/"))
    fig, (ax_g, ax_r) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for m in mods:
        color = MODALITY_COLORS.get(m)
        g = np.array([r.get(f"g/{m}", np.nan) for r in recs], dtype=float)
        rr = np.array([r.get(f"r/{m}", np.nan) for r in recs], dtype=float)
        gp = np.where(g > 0, g, np.nan)
        ax_g.plot(steps, gp, color=color, alpha=0.25, lw=0.8)
        ax_g.plot(steps, _smooth(np.nan_to_num(gp, nan=0.0), smooth), color=color, lw=1.6, label=f"g_{m}")
        ax_r.plot(steps, rr, color=color, alpha=0.25, lw=0.8)
        ax_r.plot(steps, _smooth(np.nan_to_num(rr, nan=0.0), smooth), color=color, lw=1.6, label=f"r_{m}")
    ax_g.set_yscale("log")
    ax_g.set_ylabel("g_m = ||dL_task / dz_m||")
    ax_g.legend(loc="upper right", fontsize=8)
    if kappa is not None:
        ax_r.axhline(kappa, color="black", ls="--", lw=1, label=f"kappa = {kappa:g}")
    ax_r.axhline(1.0, color="grey", ls=":", lw=1)
    conflict = np.array([float(r.get("conflict", 0.0)) for r in recs]) > 0
    if conflict.any():
        ax_r.plot(steps[conflict], np.zeros(int(conflict.sum())), "|", color="red", ms=6, label="conflict step")
    ax_r.set_ylabel("r_m = g_m / mean_n g_n")
    ax_r.set_xlabel("training step")
    ax_r.set_ylim(bottom=0)
    ax_r.legend(loc="upper right", fontsize=8)
    epochs = np.array([r["epoch"] for r in recs])
    for b in steps[1:][np.diff(epochs) > 0]:
        for ax in (ax_g, ax_r):
            ax.axvline(b, color="grey", alpha=0.15, lw=0.6)
    fig.suptitle(f"{Path(run_dir).name}, seed {seed}: gradient norm at the fusion input per modality")
    target = Path(out) if out is not None else Path(run_dir) / f"gradients_seed{seed}.png"
    return _save(fig, target)


def epoch_series(run_dir: str | Path, key: str = "r_max") -> dict[int, dict[int, float]]:
    """``{seed: {epoch: mean over the epoch's steps of key}}`` from the monitor's lines of every seed."""
    out: dict[int, dict[int, float]] = {}
    for sd in rundir.seed_dirs(run_dir):
        per: dict[int, list[float]] = {}
        for r in rundir.read_log(sd / rundir.LOG, "grad"):
            if key in r:
                per.setdefault(int(r["epoch"]), []).append(float(r[key]))
        if per:
            out[rundir.seed_of(sd)] = {e: float(np.mean(v)) for e, v in sorted(per.items())}
    return out


def plot_max_ratio(runs: Mapping[str, str | Path], out: str | Path, kappa: float | None = None,
                   key: str = "r_max", title: str | None = None) -> Path:
    """Per-epoch mean of the per-step ``max_m r_m`` for several runs (label -> run dir), mean ± std over seeds.

    A seed that stopped early contributes only to the epochs it trained, so late epochs average fewer seeds.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rd in runs.items():
        series = epoch_series(rd, key)
        if not series:
            raise CheckpointError(f"{rd}: no gradient-monitor lines with {key!r}")
        epochs = sorted({e for s in series.values() for e in s})
        mean = np.array([np.mean([s[e] for s in series.values() if e in s]) for e in epochs])
        std = np.array([np.std([s[e] for s in series.values() if e in s]) for e in epochs])
        line = ax.plot(epochs, mean, lw=1.8, label=f"{label} ({len(series)} seeds)")[0]
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if kappa is not None:
        ax.axhline(kappa, color="black", ls="--", lw=1, label=f"kappa = {kappa:g}")
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("max_m r_m (epoch mean of steps)")
    ax.set_ylim(bottom=0.95)  # max_m r_m >= 1 always (1 = balanced)
    ax.legend(fontsize=8)
    ax.set_title(title or "Gradient imbalance at the fusion input")
    return _save(fig, Path(out))



# ----------------------------------------------------------------------------------------------- conflict (CACR)


def conflict_diagnostics(run_dir: str | Path, by: str = "extra_conflict", split: str = "test") -> dict[str, Any]:
    """Per-sample conflict scores ``C_m`` and weights ``w_m`` of every seed of a run, pooled, with the grouping key.

    Reads ``seed_<s>/diagnostics.npz`` (written at evaluation): ``<split>/conflict_<m>``, ``<split>/omega_<m>``
    (when the model saves them, e.g. ``cacr``) and ``<split>/<by>`` (e.g. ConflictBench's ``extra_conflict``).
    Returns ``{"conflict": {m: array}, "omega": {m: array}, "group": array, "seeds": [s, ...]}``.
    """
    from accord.core.errors import ConfigError

    rd = Path(run_dir)
    files = [sd / rundir.DIAGNOSTICS for sd in rundir.seed_dirs(rd) if (sd / rundir.DIAGNOSTICS).is_file()]
    if not rd.is_dir() or not files:
        raise CheckpointError(f"{rd}: no seed_<s>/diagnostics.npz (train the run first)")
    conflict: dict[str, list[np.ndarray]] = {}
    omega: dict[str, list[np.ndarray]] = {}
    group: list[np.ndarray] = []
    seeds: list[int] = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            names = [k.split("/", 1)[1] for k in z.files if k.startswith(f"{split}/")]
            if not any(n.startswith("conflict_") for n in names):
                raise CheckpointError(f"{f}: no {split}/conflict_<modality> diagnostics (the model saves none; "
                                      f"train e.g. --method cacr)")
            if by not in names:
                raise ConfigError(f"--by {by}: not saved in {f} for split {split!r}; available: "
                                  f"{', '.join(sorted(n for n in names if not n.startswith(('conflict_', 'omega_'))))}")
            for m in MODALITIES:
                if f"conflict_{m}" in names:
                    conflict.setdefault(m, []).append(z[f"{split}/conflict_{m}"].astype(float))
                if f"omega_{m}" in names:
                    omega.setdefault(m, []).append(z[f"{split}/omega_{m}"].astype(float))
            group.append(z[f"{split}/{by}"].reshape(len(z[f"{split}/prediction"]), -1)[:, 0])
        seeds.append(int(f.parent.name.split("_")[1]) if f.parent.name.split("_")[1].isdigit() else -1)
    return {"conflict": {m: np.concatenate(v) for m, v in conflict.items()},
            "omega": {m: np.concatenate(v) for m, v in omega.items()},
            "group": np.concatenate(group), "seeds": seeds}


def _conflict_groups(values: np.ndarray, by: str) -> list[tuple[str, np.ndarray]]:
    """``(label, boolean mask)`` per group: the distinct values of ``values`` (up to 8), else its quartiles."""
    uniq = np.unique(values)
    if len(uniq) > 8:
        edges = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
        out = []
        for i in range(4):
            sel = (values >= edges[i]) & ((values <= edges[i + 1]) if i == 3 else (values < edges[i + 1]))
            out.append((f"{by} in [{edges[i]:.2g}, {edges[i + 1]:.2g}{']' if i == 3 else ')'}", sel))
        return out
    names = {-1: "none", **dict(enumerate(MODALITIES))} if by.endswith("conflict_modality") else {}
    return [(f"{by} = {names.get(int(v), f'{v:g}') if float(v).is_integer() else f'{v:g}'}", values == v)
            for v in uniq]


def _panel_auroc(score: np.ndarray, values: np.ndarray, by: str, modality_index: int) -> float | None:
    """AUROC of ``score`` for the positive group: value 1 vs 0 for a 0/1 key; for a ``*conflict_modality`` key,
    "this modality was flipped" vs "no conflict" (-1). None when a group is empty or the key is neither."""
    from sklearn.metrics import roc_auc_score

    uniq = set(np.unique(values).tolist())
    if by.endswith("conflict_modality"):
        pos, neg = values == modality_index, values == -1
    elif uniq <= {0, 1}:
        pos, neg = values == 1, values == 0
    else:
        return None
    if not pos.any() or not neg.any():
        return None
    sel = pos | neg
    return float(roc_auc_score(pos[sel], score[sel]))


def plot_conflict(run_dir: str | Path, by: str = "extra_conflict", split: str = "test", out: str | Path | None = None,
                  bins: int = 30, title: str | None = None) -> Path:
    """Distributions of the per-sample conflict scores ``C_m`` (top row) and weights ``w_m`` (bottom row, when
    saved) per modality, one histogram per group of ``by``, pooled over the run's seeds.

    With a 0/1 key (e.g. ConflictBench's ``extra_conflict``) or ``extra_conflict_modality``, each panel also shows
    the AUROC of the score for the conflicting group. Returns the PNG path (default
    ``RUN_DIR/conflict_<split>_<by>.png``).
    """
    data = conflict_diagnostics(run_dir, by, split)
    plt = _pyplot()
    mods = [m for m in MODALITIES if m in data["conflict"]]
    rows = [("conflict", "conflict score C_m")] + ([("omega", "weight w_m")] if data["omega"] else [])
    fig, axes = plt.subplots(len(rows), len(mods), figsize=(4.0 * len(mods), 3.0 * len(rows)), squeeze=False)
    groups = _conflict_groups(data["group"], by)
    for r, (kind, label) in enumerate(rows):
        for c, m in enumerate(mods):
            ax = axes[r][c]
            if m not in data[kind]:
                ax.set_axis_off()
                continue
            score = data[kind][m]
            lo, hi = float(np.min(score)), float(np.max(score))
            edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
            for name, sel in groups:
                if sel.any():
                    ax.hist(score[sel], bins=edges, density=True, histtype="step", lw=1.6,
                            label=f"{name} (n={int(sel.sum())})")
            auc = _panel_auroc(score, data["group"], by, MODALITIES.index(m)) if kind == "conflict" else None
            ax.set_title(f"{m}" + (f"  (AUROC {auc:.2f})" if auc is not None else ""), fontsize=10)
            ax.set_xlabel(f"{label.split()[-1].replace('_m', '_' + m[0].upper())}")
            if c == 0:
                ax.set_ylabel(f"{label}\ndensity")
            if r == 0 and c == len(mods) - 1:
                ax.legend(fontsize=7)
    seeds = data["seeds"]
    fig.suptitle(title or f"{Path(run_dir).name}: {split} split, {len(seeds)} seed(s), grouped by {by}")
    fig.tight_layout()
    target = Path(out) if out is not None else Path(run_dir) / f"conflict_{split}_{by}.png"
    return _save(fig, target)
