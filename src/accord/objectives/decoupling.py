"""Losses of decoupled (shared / private) representation learning, as pure functions.

CACR (METHODS.md §1; seed 003):

* :func:`soft_orthogonality`: ``L_o = sum_m |cos(H_m, P_m)|`` with each sample's ``[T, d]`` sequences
  flattened over its valid steps (per-sample values; the model averages over the batch and sums over m).
* :func:`reconstruction_error`: the per-sample reconstruction error ``l_m = ||X~_m - X_m||_2``. Paper leaves
  the normalisation over time open; we divide the Frobenius norm over the valid steps by ``sqrt(length)`` (the
  root of the mean squared per-step error), so a sequence's error does not grow with its length and equals the
  plain L2 norm at T = 1.
* :func:`private_preservation`: ``L_p = sum_m ||P~_m - P_m||^2``; paper leaves the normalisation open; we use
  the squared per-step L2 norm averaged over valid steps (per sample).

MISA (Hazarika, Zimmermann, Poria, "MISA: Modality-Invariant and -Specific Representations for Multimodal
Sentiment Analysis", ACM MM 2020), the decoupling baseline CACR argues against:

* :func:`cmd`: central moment discrepancy (Zellinger et al., ICLR 2017), MISA's similarity loss (Eq. 6);
  optional per-row weights give the CMD of a subset of rows without data-dependent indexing (EBMC's shared term);
* :func:`misa_difference`: MISA's soft orthogonality ``||H_c^T H_p||_F^2`` on batch matrices (Eq. 7), computed
  as in MISA's released ``DiffLoss`` (rows mean-centred and L2-normalised, mean of the squared entries).

Both are statistics over the batch (scalars), not per-sample losses, so per-sample weights cannot be applied to
their value afterwards; they take an optional per-row ``weight [N]`` instead, which weights the batch statistics
themselves (weighted moments ``sum_i w_i x_i^k / sum_i w_i``, ``A^T diag(w) B``): a row of weight 0 has no
influence at all, a row of weight 2 counts as two copies, and ``weight=None`` is the unweighted original.

All functions take an optional validity mask and return zeros (not NaN) for empty inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cmd", "misa_difference", "private_preservation", "reconstruction_error", "soft_orthogonality"]


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match sequences {tuple(x.shape)}")
    return x * mask.unsqueeze(-1).to(x.dtype)


def _lengths(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.full((x.shape[0],), float(x.shape[1]), dtype=x.dtype, device=x.device)
    return mask.to(x.dtype).sum(dim=1)


def soft_orthogonality(shared: Tensor, private: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``|cos(vec(H), vec(P))|`` per sample for ``[B, T, d]`` sequences (padding excluded); returns ``[B]``.

    Zero for orthogonal inputs, 1 for parallel ones, 0 for a sample with no valid step.
    """
    h = _masked(shared, mask).flatten(1)
    p = _masked(private, mask).flatten(1)
    return F.cosine_similarity(h, p, dim=1, eps=eps).abs()


def reconstruction_error(reconstruction: Tensor, target: Tensor, mask: Tensor | None = None,
                         eps: float = 1e-12) -> Tensor:
    """``||X~ - X||_F / sqrt(length)`` per sample over valid steps (``[B, T, d]`` -> ``[B]``; 0 if empty).

    ``eps`` inside the square root keeps the gradient finite at a perfect reconstruction.
    """
    diff = _masked(reconstruction - target, mask)
    sq = diff.pow(2).flatten(1).sum(dim=1)
    n = _lengths(diff, mask)
    return torch.where(n > 0, (sq / n.clamp_min(1.0) + eps).sqrt() - eps**0.5, torch.zeros_like(sq))


def private_preservation(private_again: Tensor, private: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mean_t ||P~_t - P_t||^2`` per sample over valid steps (``[B, T, d]`` -> ``[B]``; 0 if empty)."""
    sq = _masked(private_again - private, mask).pow(2).flatten(1).sum(dim=1)
    return sq / _lengths(private, mask).clamp_min(1.0)


def _row_mean(x: Tensor, weight: Tensor | None) -> Tensor:
    """Mean over the rows (dim -2) of ``x [..., N, d]``: ``sum_i w_i x_i / max(sum_i w_i, 1e-12)`` with ``weight
    [..., N]`` (broadcast against ``x``'s leading dimensions), or the plain mean."""
    if weight is None:
        return x.mean(dim=-2)
    w = weight.to(x.dtype).unsqueeze(-1)
    return (w * x).sum(dim=-2) / w.sum(dim=-2).clamp_min(1e-12)


def _check_weight(weight: Tensor | None, *xs: Tensor) -> None:
    for x in xs:
        if weight is not None and weight.shape != x.shape[:-1]:
            rows = f"{x.shape[-2]} rows" if x.dim() == 2 else f"the rows {tuple(x.shape[:-1])} (pairs x rows)"
            raise ValueError(f"row weights {tuple(weight.shape)} do not match {rows}")


def _moments(x: Tensor, moments: int, weight: Tensor | None) -> Tensor:
    """``[moments, ..., d]``: the (weighted) mean of ``x [..., N, d]`` over its rows, then its central moments of
    order 2..``moments``."""
    mean = _row_mean(x, weight)
    if moments < 2:
        return mean.unsqueeze(0)
    centred = x - mean.unsqueeze(-2)
    powers = torch.stack([centred.pow(k) for k in range(2, moments + 1)])  # [moments - 1, ..., N, d]
    return torch.cat([mean.unsqueeze(0), _row_mean(powers, weight)])


def cmd(x: Tensor, y: Tensor, moments: int = 5, weight: Tensor | None = None) -> Tensor:
    """Central moment discrepancy between two batches of vectors ``[N, d]`` (MISA's similarity loss).

    ``||E x - E y||_2 + sum_{k=2..moments} ||c_k(x) - c_k(y)||_2`` with ``c_k`` the k-th central moment per
    dimension; MISA uses ``moments = 5`` and omits CMD's ``1/|b-a|^k`` scaling (its features are sigmoid outputs
    in [0, 1]), and so do we. ``weight [N]`` (optional) weights the rows of both batches (row ``i`` of ``x`` and
    of ``y`` belong to one sample) in every moment: ``E_w x = sum_i w_i x_i / sum_i w_i``,
    ``c_k = E_w (x - E_w x)^k``; with 0/1 weights this equals ``cmd`` of the rows where ``w = 1`` without indexing
    by a data-dependent mask (so it runs under ``vmap``). 0 for an empty batch or all weights 0.

    Leading dimensions are independent pairs: ``x, y [..., N, d]`` (``weight [..., N]``) give ``[...]``, each entry
    the CMD of its own pair, all moments of all pairs in a few tensor operations (MISA and EBMC take the three
    modality pairs at once; one pair at a time cost about a hundred small operations each, forward).
    """
    _check_weight(weight, x, y)
    if weight is None and (x.shape[-2] == 0 or y.shape[-2] == 0):
        return x.sum(dim=(-2, -1)) * 0.0 + y.sum(dim=(-2, -1)) * 0.0
    gap = _moments(x, moments, weight) - _moments(y, moments, weight)  # [moments, ..., d]
    total = (gap.pow(2).sum(dim=-1) + 1e-12).sqrt().sum(dim=0)
    return total if weight is None else total * (weight.sum(dim=-1) > 0).to(total.dtype)


def misa_difference(a: Tensor, b: Tensor, eps: float = 1e-6, weight: Tensor | None = None) -> Tensor:
    """MISA's ``DiffLoss``: ``mean((A^T B)^2)`` after mean-centring the rows of ``A, B [N, d]`` over the batch and
    scaling each row to unit L2 norm (norm detached, as in MISA's code). 0 for orthogonal column spaces.

    ``weight [N]`` (optional) weights the rows: centring on the weighted mean ``sum_i w_i a_i / sum_i w_i`` and
    ``mean((A^T diag(w) B)^2)``, i.e. ``A^T B = sum_i w_i a_i b_i^T`` (weights 0/1 select rows). 0 when all
    weights are 0. Leading dimensions are independent pairs: ``a, b [..., N, d]`` (``weight [..., N]``) give
    ``[...]`` (one batched product for all of them)."""
    _check_weight(weight, a, b)
    if a.shape[-2] == 0:
        return a.sum(dim=(-2, -1)) * 0.0 + b.sum(dim=(-2, -1)) * 0.0
    a = a - _row_mean(a, weight).unsqueeze(-2)
    b = b - _row_mean(b, weight).unsqueeze(-2)
    a = a / (a.norm(dim=-1, keepdim=True).detach() + eps)
    b = b / (b.norm(dim=-1, keepdim=True).detach() + eps)
    if weight is not None:
        a = a * weight.to(a.dtype).unsqueeze(-1)
    return (a.transpose(-1, -2) @ b).pow(2).mean(dim=(-2, -1))
