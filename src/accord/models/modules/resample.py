"""Per-sample linear resampling of padded sequences to another length (for unaligned modalities).

CACR's cross-reconstruction decodes a target modality ``m`` (``T_m`` steps) from another modality's shared sequence
``H_n`` (``T_n`` steps); seed 003 does not say how lengths are matched; METHODS.md §1.3 fixes "resample ``H_n`` to
``T_m`` (interpolate) first". :func:`masked_resample` does that per sample on the VALID steps only, so padding
never leaks in and the result does not depend on how much padding either sequence carries.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_resample"]


def masked_resample(x: Tensor, x_mask: Tensor, target_mask: Tensor) -> Tensor:
    """Resample each sample's valid steps of ``x [B, T_x, d]`` to the number of valid steps of ``target_mask``.

    Linear interpolation with half-pixel centres (``align_corners=False``, as :func:`torch.nn.functional.interpolate`):
    output step ``t < L_out`` reads source position ``(t + 0.5) * L_in / L_out - 0.5`` clamped to ``[0, L_in - 1]``,
    with ``L_in = x_mask[b].sum()`` and ``L_out = target_mask[b].sum()``. Masks must be right-padded (valid steps
    first). Returns ``[B, T_target, d]``: zero at padded target steps and for samples whose source is empty
    (a missing modality). Equal lengths give the input back exactly; ``L_in = 1`` broadcasts the one step.
    """
    if x.ndim != 3 or x_mask.shape != x.shape[:2] or target_mask.ndim != 2 or target_mask.shape[0] != x.shape[0]:
        raise ValueError(f"expected x [B, T, d] with x_mask [B, T] and target_mask [B, T'], got "
                         f"{tuple(x.shape)}, {tuple(x_mask.shape)}, {tuple(target_mask.shape)}")
    b, _, d = x.shape
    t_out = target_mask.shape[1]
    len_in = x_mask.sum(dim=1).to(x.dtype)  # [B]
    len_out = target_mask.sum(dim=1).to(x.dtype)
    steps = torch.arange(t_out, device=x.device, dtype=x.dtype).unsqueeze(0)  # [1, T']
    pos = (steps + 0.5) * (len_in / len_out.clamp_min(1.0)).unsqueeze(1) - 0.5
    pos = torch.minimum(pos.clamp_min(0.0), (len_in - 1).clamp_min(0.0).unsqueeze(1))
    i0 = pos.floor()
    frac = (pos - i0).unsqueeze(-1)
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, (len_in.long() - 1).clamp_min(0).unsqueeze(1))
    lo = x.gather(1, i0.unsqueeze(-1).expand(b, t_out, d))
    hi = x.gather(1, i1.unsqueeze(-1).expand(b, t_out, d))
    out = lo + frac * (hi - lo)
    keep = target_mask & (len_in > 0).unsqueeze(1)
    return out * keep.unsqueeze(-1).to(x.dtype)
