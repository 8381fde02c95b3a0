"""Cross-dataset evaluation: make another dataset's inputs look like those a run was trained on.

A run records, in ``dataset.json``, its input ``dims``, which modalities its training split had at all
(``present``) and the training-split standardisation (``standardize``: per-modality mean and std). A model trained
on dataset A is evaluated on dataset B (e.g. MOSEI text → the MOSI test fold) by :func:`align_to_run`:

* a modality whose width differs between A and B becomes MISSING (zeros at A's width, length 0, ``present``
  False) when either side never had it (MOSEI has no audio; the model never read MOSI's); when both had it with
  different widths the model cannot read B's, and that is an error naming both widths;
* features B standardised with its own training statistics are mapped back to raw values and standardised with
  A's (exactly what a model trained on A expects; padding stays 0). A run without recorded statistics takes B's
  features as they are.

Text tokens and raw transcripts pass through untouched (a pretrained text branch tokenizes with its own
tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from accord.core.errors import DataError
from accord.core.types import MODALITIES
from accord.data.dataset import MultimodalDataset

__all__ = ["align_to_run", "presence", "run_record"]


def presence(ds: MultimodalDataset) -> dict[str, bool]:
    """Per modality: does any training sample have it (length > 0)?"""
    train = ds.splits["train"]
    return {m: bool((train.lengths[m] > 0).any()) for m in MODALITIES}


def run_record(ds: MultimodalDataset) -> dict[str, Any]:
    """What a run records of its training data for :func:`align_to_run`: ``present`` and ``standardize``."""
    out: dict[str, Any] = {"present": presence(ds)}
    if "standardize" in ds.meta:
        out["standardize"] = ds.meta["standardize"]
    return out


def _restandardize(x: torch.Tensor, mask: torch.Tensor, target: Mapping[str, Any], run: Mapping[str, Any]
                   ) -> torch.Tensor:
    """``x`` standardised with ``target``'s mean/std, re-standardised with ``run``'s (masked steps stay 0)."""
    mean_t, std_t = torch.tensor(target["mean"]), torch.tensor(target["std"])
    mean_r, std_r = torch.tensor(run["mean"]), torch.tensor(run["std"])
    raw = x * std_t + mean_t
    return ((raw - mean_r) / std_r) * mask.unsqueeze(-1)


def align_to_run(ds: MultimodalDataset, info: Mapping[str, Any], where: str) -> MultimodalDataset:
    """A copy of ``ds`` whose inputs have the run's widths and standardisation (module docstring); ``info`` is the
    run's ``dataset.json``, ``where`` names the run in errors. ``ds`` itself is not changed."""
    dims: Mapping[str, int] = info.get("dims", {})
    run_present: Mapping[str, bool] = info.get("present", {})
    target_present = presence(ds)
    run_stats: Mapping[str, Any] = info.get("standardize", {})
    target_stats: Mapping[str, Any] = ds.meta.get("standardize", {})
    splits = {}
    for name, part in ds.splits.items():
        feats, lengths = dict(part.features), dict(part.lengths)
        for m in MODALITIES:
            want = int(dims.get(m, ds.dims[m]))
            if want != ds.dims[m]:
                if run_present.get(m, True) and target_present[m]:
                    raise DataError(f"{where}: {m} features are {ds.dims[m]}-d in {ds.name} but the run was trained "
                                    f"on {want}-d {m}; cross-dataset evaluation needs the same {m} features")
                n = len(part)
                feats[m] = torch.zeros(n, 1, want)
                lengths[m] = torch.zeros(n, dtype=torch.long)
                continue
            if m in run_stats and m in target_stats:
                steps = torch.arange(feats[m].shape[1]).unsqueeze(0)
                mask = (steps < lengths[m].unsqueeze(1)).float()
                feats[m] = _restandardize(feats[m], mask, target_stats[m], run_stats[m])
        splits[name] = replace(part, features=feats, lengths=lengths)
    meta = {**ds.meta, "aligned_to": where}
    if run_stats:
        meta["standardize"] = dict(run_stats)
    out = MultimodalDataset(name=ds.name, splits=splits, metric_family=ds.metric_family, label_range=ds.label_range,
                            class_names=list(ds.class_names), source=ds.source, meta=meta)
    return out.validate()
