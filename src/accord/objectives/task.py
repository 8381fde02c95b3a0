"""Task losses (pure functions): L1 / MSE for regression, cross-entropy for classification; and the one reduction
of a per-sample loss under per-sample weights, which the trainer applies to every loss term."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor

__all__ = ["reduce_losses", "reduce_per_sample", "task_loss"]


def reduce_per_sample(loss: Tensor, weight: Tensor | None = None) -> Tensor:
    """The batch value of a loss: ``sum_i w_i l_i / max(sum_i w_i, 1e-12)`` for a per-sample loss ``l [B]`` and
    weights ``w [B]`` (a sample of weight 0 contributes nothing; all weights 0 give 0), the plain mean without
    weights, and a scalar (a batch-level loss, e.g. a statistic over the batch) as it is.

    No data-dependent control flow (only shape checks), so it runs under :func:`torch.func.vmap`.

    Raises:
        ValueError: ``loss`` is neither a scalar nor ``[B]``, or ``weight`` is not ``[B]``.
    """
    if loss.ndim == 0:
        return loss
    if loss.ndim != 1:
        raise ValueError(f"a loss must be a scalar or per-sample [B], got shape {tuple(loss.shape)}")
    if weight is None:
        return loss.mean()
    if weight.shape != loss.shape:
        raise ValueError(f"sample weights {tuple(weight.shape)} do not match the per-sample loss {tuple(loss.shape)}")
    w = weight.to(loss.dtype)
    return (loss * w).sum() / w.sum().clamp_min(1e-12)


def reduce_losses(losses: Mapping[str, Tensor], weight: Tensor | None = None) -> dict[str, Tensor]:
    """Every loss of ``losses`` (a model's ``ModelOutput.losses``, a hook's) reduced by :func:`reduce_per_sample`:
    the scalars the trainer weights, logs and differentiates."""
    return {name: reduce_per_sample(value, weight) for name, value in losses.items()}


def task_loss(prediction: Tensor, target: Tensor, loss: str, weight: Tensor | None = None) -> Tensor:
    """The task loss of ``prediction`` against ``target``.

    ``loss`` is ``l1`` (mean absolute error; the MSA default, as in MMSA), ``mse`` or ``ce`` (cross-entropy on
    logits ``[B, C]`` with long targets ``[B]``). ``weight`` (``[B]``, optional) weights samples; the result is
    the weighted mean :func:`reduce_per_sample` (samples of weight 0 contribute nothing).
    """
    if loss == "ce":
        per = F.cross_entropy(prediction, target.long(), reduction="none")
    elif loss == "l1":
        per = (prediction - target.to(prediction.dtype)).abs()
    elif loss == "mse":
        per = (prediction - target.to(prediction.dtype)) ** 2
    else:
        raise ValueError(f"unknown task loss {loss!r} (expected l1, mse or ce)")
    return reduce_per_sample(per, weight)
