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
from accord.data.corrupt import apply_corruptions, parse_corruption
from accord.data.dataset import MultimodalDataset
from accord.data.registry import build_dataset
from accord.errors import CheckpointError, DataError
from accord.evaluate.summary import aggregate
from accord.io import write_json
from accord.models.base import AccordModel, create_model
from accord.train.checkpoint import load_weights
from accord.train.hooks import TrainerHook
from accord.train.trainer import Trainer, evaluate_split, load_run, resolve_device


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
              "per_seed": per_seed, "mean_std": {k: {"mean": v[0], "std": v[1], "n": v[2]} for k, v in agg.items()}}
    if write:
        tag = "_".join(f"{s.kind}-{s.modality}-{s.level:g}" for s in specs) or "clean"
        write_json(Path(run_dir) / f"eval_{split}_{tag}.json", result)
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


__all__ = ["evaluate", "load", "load_config", "predictions", "read_summary", "train"]
