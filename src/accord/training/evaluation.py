"""Prediction and metrics on one split: what the trainer runs after every epoch (validation) and on the selected
checkpoint (valid and test), and what :func:`accord.evaluate` runs on a finished run."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from accord.config import Config
from accord.core.errors import ConfigError
from accord.data.dataset import MultimodalDataset, SplitData
from accord.evaluation.metrics import compute_metrics
from accord.models.base import AccordModel
from accord.training.distributed import SINGLE, DistContext, shard_rows


@dataclass
class EvalResult:
    """Metrics on one split plus per-sample predictions and diagnostics (numpy)."""

    metrics: dict[str, float]
    predictions: np.ndarray
    labels: np.ndarray
    ids: list[str]
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict_split(model: AccordModel, split: SplitData, task: str, batch_size: int,
                  device: torch.device, rows: slice | None = None, trim: bool = True
                  ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Run ``model`` over ``split`` (or its ``rows``) in eval mode; return predictions and diagnostics. ``trim``:
    dynamic padding (``train.dynamic_padding``; off pads every batch to the split's longest sentence).

    With dynamic padding and text tokens, rows are batched in order of token count (each batch pads little) and
    the results are returned in the split's order.

    Predictions are ``None`` when ``rows`` is empty (a distributed rank with no share of a tiny split).
    """
    model.eval()
    preds: list[torch.Tensor] = []
    diags: dict[str, list[torch.Tensor]] = defaultdict(list)
    start, stop = (0, len(split)) if rows is None else (rows.start, rows.stop)
    order = torch.arange(start, stop)
    if trim and split.text_tokens is not None:
        order = order[torch.argsort(split.token_counts()[start:stop], stable=True)]
    for a in range(0, len(order), batch_size):
        batch = split.batch(order[a:a + batch_size], task=task, trim=trim)
        out = model(batch.to(device))
        preds.append(out.prediction.detach().float().cpu())
        for k, v in out.diagnostics.items():
            diags[k].append(v.detach().float().cpu())
        for k, v in out.aux_predictions.items():
            diags[f"aux_{k}"].append(v.detach().float().cpu())
    if not preds:
        return None, {}
    back = torch.argsort(order)  # the split's order again
    return torch.cat(preds)[back].numpy(), {k: torch.cat(v)[back].numpy() for k, v in diags.items()}


def autocast(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``train.precision`` (bf16 / fp16) on ``device``; a no-op context for fp32."""
    if cfg.train.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate_split(model: AccordModel, split: SplitData, cfg: Config, ds: MultimodalDataset,
                   device: torch.device, ctx: DistContext = SINGLE) -> EvalResult:
    """Predict ``split`` and compute the task's metrics on it.

    Distributed (``ctx.enabled``): each rank predicts its contiguous share of the rows and the shares are gathered
    in rank order, so every rank computes the same metrics on the whole split.
    """
    rows = shard_rows(len(split), ctx) if ctx.enabled else None
    with autocast(cfg, device):
        pred, diags = predict_split(model, split, cfg.task.kind, cfg.train.eval_batch_size, device, rows,
                                    trim=cfg.train.dynamic_padding)
    if ctx.enabled:
        parts = [p for p in ctx.all_gather_object((pred, diags)) if p[0] is not None]
        pred = np.concatenate([p[0] for p in parts])
        diags = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    if pred is None:
        raise ConfigError(f"split of dataset {ds.name!r} is empty; nothing to evaluate")
    y = (split.class_labels if cfg.task.kind == "classification" else split.labels)
    assert y is not None
    labels = y.numpy()
    metrics = compute_metrics(pred, labels, cfg.task.kind, ds.metric_family, ds.class_names)
    return EvalResult(metrics, pred, labels, list(split.ids), diags)
