"""EBMC's pure objectives (METHODS.md §3; seed 001): the energy equilibrium loss and trust distillation.

- :func:`equilibrium_loss` — ``L_eq = Σ_m relu(E_m − sg(mean_n E_n))²`` over per-modality energies (sg =
  stop-gradient): one-sided, ``∂L_eq/∂E_m = 2 relu(E_m − mean_n E_n)``, so only modalities above the mean energy
  (the weak ones) are pushed down and nothing rewards raising a strong modality's loss. ``form="two_sided"`` is
  ``Σ_m (E_m − mean_n E_n)²``, whose gradient ``2 (E_m − mean)`` also pushes low-energy (strong) modalities UP.
- :func:`trust_teacher` — ``t = softmax(−err / T)`` over the available modalities; an absent modality gets 0.
- :func:`trust_kl` — ``KL(t ‖ w) = Σ_m t_m (log t_m − log w_m)`` with ``0 log 0 = 0``.

Every function takes an optional boolean ``present`` mask of the same shape as the energies / errors (False =
modality unavailable); masked entries take no part.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["EqForm", "equilibrium_loss", "trust_kl", "trust_kl_per_sample", "trust_teacher"]

EqForm = Literal["one_sided", "two_sided"]
"""``one_sided``: ``Σ relu(E_m − sg(mean))²`` (METHODS §3); ``two_sided``: ``Σ (E_m − mean)²``."""

_NEG = -1e9  # finite "minus infinity": keeps softmax/log-softmax free of NaN when a whole row is masked


def equilibrium_loss(energies: Tensor, present: Tensor | None = None, form: EqForm = "one_sided") -> Tensor:
    """``L_eq = Σ_m relu(E_m − sg(mean_n E_n))²`` (METHODS.md §3, "energy-guided modality coordination").

    ``energies`` is ``[M]`` or ``[..., M]``; the sum runs over the last axis (modalities, restricted to ``present``
    where given, and the mean ``mean_n E_n`` is over those modalities only and detached); leading axes are
    averaged. A row with fewer than two valid modalities contributes 0. ``form="two_sided"``:
    ``Σ_m (E_m − mean_n E_n)²`` (the pre-issue-17 form, kept for comparison; it rewards raising a strong
    modality's energy).
    """
    if form not in ("one_sided", "two_sided"):
        raise ValueError(f"equilibrium_loss: form must be 'one_sided' or 'two_sided', got {form!r}")
    e = energies if energies.ndim > 1 else energies.unsqueeze(0)
    valid = torch.ones_like(e, dtype=torch.bool) if present is None else present.reshape(e.shape).bool()
    v = valid.to(e.dtype)
    e0 = torch.where(valid, e, torch.zeros_like(e))
    mean = (e0 * v).sum(dim=-1, keepdim=True) / v.sum(dim=-1, keepdim=True).clamp_min(1.0)
    dev = e0 - mean if form == "two_sided" else torch.relu(e0 - mean.detach())
    per_row = (dev.pow(2) * v).sum(dim=-1)
    return per_row.mean()


def trust_teacher(errors: Tensor, temperature: float, present: Tensor | None = None) -> Tensor:
    """The distillation target ``t^(i) = softmax(−err^(i) / T)`` over modalities (last axis), ``[B, M]``.

    Absent modalities (``present`` False) get exactly 0 and the rest renormalise; a row with no modality present is
    all zeros. ``errors`` should be detached per-sample unimodal errors (the caller detaches).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = -errors / temperature
    if present is None:
        return logits.softmax(dim=-1)
    valid = present.bool()
    t = logits.masked_fill(~valid, _NEG).softmax(dim=-1) * valid.to(logits.dtype)
    return t / t.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def trust_kl(teacher: Tensor, log_weights: Tensor, present: Tensor | None = None) -> Tensor:
    """``L_trust = mean_i KL(t^(i) ‖ w^(i)) = mean_i Σ_m t_m (log t_m − log w_m)``, with ``0 log 0 = 0``.

    ``log_weights`` is ``log w`` (e.g. a masked ``log_softmax``; pass logs, not weights, so a zero weight on an absent
    modality stays finite). Entries with ``t_m = 0`` or ``present`` False contribute nothing. Rows with no
    modality present are skipped from the mean.
    """
    per, rows = trust_kl_per_sample(teacher, log_weights, present)
    return per.sum() / rows.sum().clamp_min(1.0)


def trust_kl_per_sample(teacher: Tensor, log_weights: Tensor, present: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
    """``(KL(t^(i) ‖ w^(i)) [B], valid rows [B])`` as in :func:`trust_kl`, before the mean: rows with no modality
    present get 0 and a row flag of 0 (the mean of :func:`trust_kl` skips them)."""
    t = teacher
    valid = (t > 0) if present is None else (present.bool() & (t > 0))
    safe_log_w = torch.where(valid, log_weights, torch.zeros_like(log_weights))
    per = torch.where(valid, torch.xlogy(t, t) - t * safe_log_w, torch.zeros_like(t)).sum(dim=-1)
    rows = valid.any(dim=-1).to(per.dtype)
    return per * rows, rows
