"""Conflict-aware weighting (CAW) of CACR, as pure functions (METHODS.md §1.2; seed 003, "Key Designs" 1-2).

For one sample ``i`` and the temporally pooled shared features ``h_m`` of the modalities ``m in M``:

    d_mn = 1 - cos(h_m, h_n)                                   cosine distance in the shared space
    C_m  = (1 / |S_m|) sum_{n in S_m} d_mn,   S_m = M \\ {m}     conflict score of modality m, in [0, 2]
    w_m  = w_min + (1 - w_min) exp(-C_m / tau)                 exponential decay with a floor, in [w_min, 1]
    w^_m = w_m / (sum_n w_n) * |M|                             normalised per sample (sums to |M|)
    L_rec(i) = sum_m w^_m(i) l_m(i)                            the weighted cross-reconstruction loss of sample i
    L_rec = mean_i L_rec(i)                                    its batch mean (the trainer's, with sample weights)

The paper states the exponential decay with a floor ``w_min`` but leaves the exact form open; we use
``w_min + (1 - w_min) exp(-C / tau)``, which keeps ``w`` in ``[w_min, 1]`` with ``w = 1`` at zero conflict.

Missing modalities (the paper leaves them open; its benchmarks have none): a modality absent from a sample is
left out of every other modality's ``S_m``; its own ``C_m`` is 0 and its weight ``w^_m`` is 0, and the
normalisation runs over the present modalities only (``sum_{n present} w^_n = |M_present|``).

These functions never detach: the caller detaches ``C`` (CACR does) so the weights do not push the shared
features apart to lower the reconstruction loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "conflict_scores",
    "conflict_weights",
    "normalize_weights",
    "pairwise_cosine_distance",
    "weighted_reconstruction_loss",
    "weighted_reconstruction_per_sample",
]


def pairwise_cosine_distance(h: Tensor, eps: float = 1e-8) -> Tensor:
    """``d[b, m, n] = 1 - cos(h[b, m], h[b, n])`` for pooled features ``h [B, M, d]``; returns ``[B, M, M]``.

    A zero vector (a missing modality) has cosine 0 with everything (distance 1); callers mask it out.
    """
    if h.ndim != 3:
        raise ValueError(f"expected pooled features [B, M, d], got shape {tuple(h.shape)}")
    unit = F.normalize(h, dim=-1, eps=eps)
    return 1.0 - unit @ unit.transpose(1, 2)


def conflict_scores(h: Tensor, present: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Per-sample conflict score ``C [B, M]`` (seed 003: ``C_m = mean_{n != m} (1 - cos(h_m, h_n))``).

    ``present [B, M]`` (bool, optional) marks available modalities: absent ones are excluded from the mean and
    get ``C = 0``; a modality with no present partner also gets ``C = 0`` (nothing to conflict with).
    """
    b, k, _ = h.shape
    dist = pairwise_cosine_distance(h, eps)
    pres = torch.ones(b, k, dtype=torch.bool, device=h.device) if present is None else present.bool()
    others = ~torch.eye(k, dtype=torch.bool, device=h.device)
    pair = others.unsqueeze(0) & pres.unsqueeze(1) & pres.unsqueeze(2)  # [B, M, M]
    w = pair.to(h.dtype)
    count = w.sum(dim=2)
    return (dist * w).sum(dim=2) / count.clamp_min(1.0)


def conflict_weights(conflict: Tensor, omega_min: float, tau: float) -> Tensor:
    """``w = w_min + (1 - w_min) exp(-C / tau)`` elementwise: 1 at ``C = 0``, decreasing towards ``w_min``.

    The arguments are checked in eager mode; while ``torch.compile`` traces (``dynamic=True`` makes them symbolic
    floats, which ``math.isfinite`` cannot read without a graph break) the model's validated params are trusted."""
    if not torch.compiler.is_compiling():
        if not 0.0 <= omega_min <= 1.0:
            raise ValueError(f"omega_min must be in [0, 1], got {omega_min}")
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"tau must be a positive finite number, got {tau}")
    return omega_min + (1.0 - omega_min) * torch.exp(-conflict / tau)


def normalize_weights(omega: Tensor, present: Tensor | None = None) -> Tensor:
    """``w^_m = w_m / sum_n w_n * |M|`` per sample over the present modalities (0 for absent ones)."""
    if present is None:
        return omega / omega.sum(dim=1, keepdim=True).clamp_min(1e-12) * omega.shape[1]
    p = present.to(omega.dtype)
    w = omega * p
    return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12) * p.sum(dim=1, keepdim=True)


def weighted_reconstruction_per_sample(per_sample: Tensor, weights: Tensor) -> Tensor:
    """``L_rec(i) = sum_m w^_m(i) l_m(i)`` ``[B]`` for per-sample, per-modality errors ``l [B, M]``."""
    if per_sample.shape != weights.shape:
        raise ValueError(f"errors {tuple(per_sample.shape)} and weights {tuple(weights.shape)} differ in shape")
    return (per_sample * weights).sum(dim=1)


def weighted_reconstruction_loss(per_sample: Tensor, weights: Tensor) -> Tensor:
    """``L_rec = mean_i sum_m w^_m(i) l_m(i)``, the batch mean of :func:`weighted_reconstruction_per_sample`."""
    return weighted_reconstruction_per_sample(per_sample, weights).mean()
