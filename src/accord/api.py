"""The Python API; the CLI is a thin layer over these functions.

    import accord
    summary = accord.train(accord.load_config(method="mult", dataset="mosi-u"))
    metrics = accord.evaluate("runs/mult_mosi-u", corrupt=["drop:audio:0.5"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from accord.config import Config, load_config
from accord.core.errors import CheckpointError, DataError
from accord.core.hooks import TrainerHook
from accord.core.io import write_json
from accord.data.corrupt import apply_corruptions, parse_corruption
from accord.data.dataset import MultimodalDataset
from accord.data.registry import build_dataset
from accord.evaluation.summary import aggregate, aggregate_json
from accord.models.base import AccordModel, create_model
from accord.training.checkpoint import load_weights
from accord.training.trainer import Trainer, evaluate_split, load_run, resolve_device


def train(cfg: Config, resume: bool = False, overwrite: bool = False, hooks: list[TrainerHook] | None = None,
          dataset: MultimodalDataset | None = None, console: Console | None = None) -> dict[str, Any]:
    """Train ``cfg`` over its seeds; returns the summary (mean ± std over seeds on valid and test)."""
    return Trainer(cfg, dataset=dataset, hooks=hooks or [], console=console).fit(resume=resume,
                                                                                  overwrite=overwrite)


def seed_dirs(run_dir: str | Path) -> list[Path]:
    """The ``seed_<s>`` folders of a run that hold a selected checkpoint."""
    dirs = sorted(p for p in Path(run_dir).glob("seed_*") if (p / "best.safetensors").is_file())
    if not dirs:
        raise CheckpointError(f"{run_dir}: no seed_*/best.safetensors (train the run first)")
    return dirs


def load(run_dir: str | Path, seed: int | None = None, device: str | None = None) -> AccordModel:
    """The trained model of ``run_dir`` (its first seed, or ``seed``), in eval mode."""
    cfg, info = load_run(run_dir)
    dirs = seed_dirs(run_dir)
    chosen = dirs[0] if seed is None else Path(run_dir) / f"seed_{seed}"
    if not (chosen / "best.safetensors").is_file():
        raise CheckpointError(f"{chosen}: no best.safetensors")
    dev = resolve_device(device or cfg.train.device)
    if not info:
        raise CheckpointError(f"{run_dir}/dataset.json: missing (needed to rebuild the model's input sizes)")
    model = create_model(cfg.model.name, info["dims"], int(info["out_dim"]), **cfg.model.params).to(dev)
    load_weights(model, chosen / "best.safetensors", dev)
    return model.eval()


def evaluate(run_dir: str | Path, corrupt: list[str] | None = None, split: str = "test",
             dataset: MultimodalDataset | None = None, write: bool = True) -> dict[str, Any]:
    """Evaluate every seed's selected checkpoint of ``run_dir`` on ``split``, optionally corrupted.

    ``corrupt`` takes specs like ``drop:audio:0.5``, ``noise:all:0.3``, ``temporal_drop:visual:0.2``.
    Returns per-seed metrics and their mean ± std; with ``write`` also saves ``eval_<split>_<tag>.json``.
    """
    cfg, info = load_run(run_dir)
    specs = [parse_corruption(c) for c in (corrupt or [])]
    ds = dataset or build_dataset(cfg.data.name, cfg.data.path, cfg.data.params)
    if info and ds.dims != info["dims"]:
        raise DataError(f"{cfg.data.name}: feature dims {ds.dims} differ from the run's {info['dims']}")
    part = apply_corruptions(ds[split], specs) if specs else ds[split]
    dev = resolve_device(cfg.train.device)
    per_seed: dict[str, dict[str, float]] = {}
    for sd in seed_dirs(run_dir):
        model = load(run_dir, seed=int(sd.name.split("_", 1)[1]), device=str(dev))
        per_seed[sd.name] = evaluate_split(model, part, cfg, ds, dev).metrics
    agg = aggregate(list(per_seed.values()))
    result = {"run": str(run_dir), "split": split, "corruption": [s.model_dump() for s in specs],
              "per_seed": per_seed, "mean_std": aggregate_json(agg)}
    if write:
        tag = "_".join(f"{s.kind}-{s.modality}-{s.level:g}" for s in specs) or "clean"
        write_json(Path(run_dir) / f"eval_{split}_{tag}.json", result)
    return result


def find_runs(target: str | Path) -> list[Path]:
    """``target`` itself if it is a run directory, else every run directory directly inside it (a benchmark)."""
    t = Path(target)
    if (t / "config.yaml").is_file():
        return [t]
    runs = sorted(p for p in t.glob("*") if (p / "config.yaml").is_file()) if t.is_dir() else []
    if not runs:
        raise CheckpointError(f"{t}: neither a run directory nor a folder of runs (no config.yaml found)")
    return runs


def robustness(
    targets: list[str | Path],
    modalities: list[str] | None = None,
    corruptions: list[str] | None = None,
    levels: list[float] | None = None,
    split: str = "test",
    metric: str | None = None,
    reference: str = "late_fusion",
    out: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score runs under increasing corruption; write a table, curves (PNG) and relative/effective robustness.

    ``targets`` are run directories or benchmark folders (every run inside is compared on one figure).
    Each (corruption kind, modality, level) is applied to the ``split`` with a fixed ``seed``, so every run sees the
    same corrupted samples. Results go to ``out`` (default: the single run's folder, or the benchmark folder):
    ``robustness.json``, ``robustness.md``, ``robustness.png``.
    """
    from accord.evaluation.robustness import Curve, markdown, plot_curves, summary_rows

    modalities = modalities or ["text", "audio", "visual", "all"]
    corruptions = corruptions or ["drop", "noise"]
    levels = levels if levels is not None else [round(0.1 * i, 1) for i in range(10)]
    runs = [r for t in targets for r in find_runs(t)]
    cache: dict[str, MultimodalDataset] = {}
    curves: list[Curve] = []
    for rd in runs:
        cfg, info = load_run(rd)
        key = json.dumps(cfg.data.model_dump(mode="json", exclude={"corruption"}), sort_keys=True)
        if key not in cache:
            cache[key] = build_dataset(cfg.data.name, cfg.data.path, cfg.data.params)
        ds = cache[key]
        family = "classification" if cfg.task.kind == "classification" else ds.metric_family
        chosen = metric or ("Acc" if family == "classification" else
                            ("Non0_acc_2" if family == "mosi" else "Mult_acc_2"))
        dev = resolve_device(cfg.train.device)
        models = [load(rd, seed=int(sd.name.split("_", 1)[1]), device=str(dev)) for sd in seed_dirs(rd)]
        for kind in corruptions:
            for mod in modalities:
                per_level: list[list[float]] = []
                for lv in levels:
                    spec = parse_corruption({"kind": kind, "modality": mod, "level": lv, "seed": seed})
                    part = apply_corruptions(ds[split], [spec]) if lv > 0 else ds[split]
                    scores = []
                    for model in models:
                        m = evaluate_split(model, part, cfg, ds, dev).metrics
                        if chosen not in m:
                            raise DataError(f"{rd}: metric {chosen!r} not computed; available: {', '.join(m)}")
                        scores.append(m[chosen])
                    per_level.append(scores)
                arr = np.array(per_level, dtype=float)
                std = arr.std(axis=1, ddof=1) if arr.shape[1] > 1 else np.zeros(len(levels))
                curves.append(Curve(rd.name, kind, mod, chosen, list(levels), arr.mean(axis=1).tolist(),
                                    std.tolist(), arr.T.tolist()))
    dest = Path(out) if out else (runs[0] if len(runs) == 1 else Path(targets[0]))
    ref = reference if any(c.run == reference for c in curves) else None
    md = markdown(curves, ref)
    title = f"Robustness on {split} ({', '.join(r.name for r in runs)})"
    from accord.core.io import atomic_write_text

    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "robustness.md", f"# {title}\n\n" + md)
    plot_curves(curves, dest / "robustness.png", title)
    result = {"split": split, "levels": levels, "reference": ref, "runs": [str(r) for r in runs],
              "rows": summary_rows(curves, ref),
              "curves": [c.__dict__ for c in curves], "markdown": md, "png": str(dest / "robustness.png")}
    write_json(dest / "robustness.json", result)
    return result


def predictions(run_dir: str | Path, seed: int | None = None, split: str = "test") -> dict[str, np.ndarray]:
    """The saved per-sample predictions and diagnostics of a seed (from ``diagnostics.npz``)."""
    sd = seed_dirs(run_dir)[0] if seed is None else Path(run_dir) / f"seed_{seed}"
    with np.load(sd / "diagnostics.npz", allow_pickle=False) as z:
        return {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{split}/")}


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's ``summary.json``."""
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        raise CheckpointError(f"{p}: missing (the run has not finished)")
    return json.loads(p.read_text())


def report(target: str | Path, out: str | Path | None = None, split: str = "test") -> Path:
    """Write one self-contained HTML report of a run or benchmark folder (default ``<target>/report.html``).

    Config, metrics (mean ± std), training curves and every diagnostic the run has, figures inlined as PNG.
    """
    from accord.evaluation.report import write_report

    return write_report(target, out=out, split=split)


__all__ = ["evaluate", "find_runs", "load", "load_config", "predictions", "read_summary", "report", "robustness",
           "train"]
