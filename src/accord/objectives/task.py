"""Task losses (pure functions): L1 / MSE for regression, cross-entropy for classification."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def task_loss(prediction: Tensor, target: Tensor, loss: str, weight: Tensor | None = None) -> Tensor:
    """The task loss of ``prediction`` against ``target``.

    ``loss`` is ``l1`` (mean absolute error; the MSA default, as in MMSA), ``mse`` or ``ce`` (cross-entropy on
    logits ``[B, C]`` with long targets ``[B]``). ``weight`` (``[B]``, optional) weights samples; the result is
    the weighted mean (samples of weight 0 contribute nothing).
    """
    if loss == "ce":
        per = F.cross_entropy(prediction, target.long(), reduction="none")
    elif loss == "l1":
        per = (prediction - target.to(prediction.dtype)).abs()
    elif loss == "mse":
        per = (prediction - target.to(prediction.dtype)) ** 2
    else:
        raise ValueError(f"unknown task loss {loss!r} (expected l1, mse or ce)")
    if weight is None:
        return per.mean()
    w = weight.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1e-12)
