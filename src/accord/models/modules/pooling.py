"""Masked pooling over time: turn ``[B, T, D]`` sequences with a ``[B, T]`` validity mask into ``[B, D]``.

Every function ignores padded steps exactly (their values never reach the result, so appending more padding does
not change it) and returns zeros for a sample with no valid step at all (a missing modality, length 0), never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.models.params.encoders import PoolMode


def _check(x: Tensor, mask: Tensor) -> None:
    if x.ndim != 3 or mask.shape != x.shape[:2]:
        raise ValueError(f"expected x [B, T, D] and mask [B, T], got {tuple(x.shape)} and {tuple(mask.shape)}")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x [B, T, D]`` over the steps where ``mask [B, T]`` is True; zeros where no step is valid.

    On one step (utterance-level data) the mean is that step times its mask: the same values and gradients (a sum
    of one term, divided by a count of 1) in three ops instead of seven."""
    _check(x, mask)
    if x.shape[1] == 1:
        return x[:, 0] * mask.to(x.dtype)
    m = mask.to(x.dtype).unsqueeze(-1)
    count = m.sum(dim=1).clamp_min(1.0)
    return (x * m).sum(dim=1) / count


def masked_std(x: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Population standard deviation over valid steps (``sqrt(var + eps) - sqrt(eps)``, so 0 for constant input).

    The ``eps`` keeps the gradient finite at zero variance (one valid step, or a missing modality, which gives 0).
    """
    _check(x, mask)
    m = mask.to(x.dtype).unsqueeze(-1)
    count = m.sum(dim=1).clamp_min(1.0)
    mean = (x * m).sum(dim=1, keepdim=True) / count.unsqueeze(1)
    var = (((x - mean) * m) ** 2).sum(dim=1) / count
    return (var + eps).sqrt() - eps**0.5


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Maximum of ``x`` over valid steps; zeros where no step is valid."""
    _check(x, mask)
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    out = filled.max(dim=1).values
    return torch.where(mask.any(dim=1, keepdim=True), out, torch.zeros_like(out))


def last_valid(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` at the last valid step of each sample (the last True of ``mask``); zeros where no step is valid.

    Works for any mask, not only right-padded ones (it takes the highest valid index).
    """
    _check(x, mask)
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    idx = torch.where(mask, steps, torch.zeros_like(steps)).amax(dim=1)  # [B]
    out = x[torch.arange(x.shape[0], device=x.device), idx]
    return out * mask.any(dim=1, keepdim=True).to(x.dtype)


def downsample_mean(x: Tensor, mask: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Average non-overlapping windows of ``stride`` steps over valid steps only.

    Returns ``(x' [B, ceil(T / stride), D], mask' [B, ceil(T / stride)])``; a window is valid when it holds at least
    one valid step and is the mean of those steps (zero otherwise). Windows start at step 0, so trailing padding
    never changes a valid window. ``stride == 1`` returns the inputs unchanged; one step (utterance-level data) is
    its own window: ``x`` times its mask (the same values and gradients as padding it to ``stride`` steps).
    """
    _check(x, mask)
    if stride == 1:
        return x, mask
    if x.shape[1] == 1:
        return x * mask.to(x.dtype).unsqueeze(-1), mask
    b, t, d = x.shape
    n = -(-t // stride)
    pad = n * stride - t
    m = mask.to(x.dtype)
    if torch.compiler.is_compiling() or pad:  # compiled: one graph for every length (no branch on T % stride)
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        m = torch.nn.functional.pad(m, (0, pad))
    xs = (x * m.unsqueeze(-1)).view(b, n, stride, d).sum(dim=2)
    count = m.view(b, n, stride).sum(dim=2)
    return xs / count.clamp_min(1.0).unsqueeze(-1), count > 0


def pool(x: Tensor, mask: Tensor, mode: PoolMode = "mean") -> Tensor:
    """Dispatch to :func:`masked_mean`, :func:`masked_max` or :func:`last_valid` by ``mode``."""
    if mode == "mean":
        return masked_mean(x, mask)
    if mode == "max":
        return masked_max(x, mask)
    if mode == "last":
        return last_valid(x, mask)
    raise ValueError(f"unknown pooling mode {mode!r}; expected 'mean', 'max' or 'last'")
