"""Exact Shapley attribution of a prediction over the three modalities (text, audio, visual).

The players are the modalities ``N = {text, audio, visual}`` (``n = 3``). The value of a coalition ``S ⊆ N`` for
one sample is the model's prediction with only the modalities in ``S`` present, ``v(S)``: a modality outside ``S``
is marked absent exactly as :mod:`accord.features.predict` and the data's missing modalities are (``present``
False, ``mask`` all False, i.e. length 0, features zero). For a regression model ``v`` is the score; for a
classifier it is the vector of class probabilities (softmax of the logits), so each class gets its own ``φ``.

Equation (Shapley, 1953), for each sample and modality ``m``::

    φ_m = Σ_{S ⊆ N \\ {m}}  |S|! (n − |S| − 1)! / n!  ·  (v(S ∪ {m}) − v(S)),    n = 3

(weights 1/3 for |S| = 0, 1/6 for |S| = 1, 1/3 for |S| = 2). Efficiency: ``Σ_m φ_m = v(N) − v(∅)``; ``v(∅)`` (no
modality present) is reported as the ``base``.

A modality absent from the INPUT (the sample never had it) is a dummy player: every coalition is evaluated on
``S ∩ P`` (``P`` the sample's present modalities), so its ``φ`` is exactly 0 and the others' are those of the game
over ``P``. All 8 coalitions of a batch of ``B`` samples are evaluated in ONE forward of ``8·B`` rows
(:func:`coalition_batch`; row ``c·B + i`` is sample ``i`` with coalition ``c``, coalition ``c`` the bitmask whose
bit ``k`` is ``MODALITIES[k]``). ``Batch.text_tokens`` (a pretrained text branch's input) are kept for every row:
that branch zeroes the text wherever ``present`` is False, so the tokens of an absent text are never read.

Nothing here knows a model: :func:`attribute` takes a callable batch → ``v`` (``[rows]`` or ``[rows, C]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from accord.core.types import MODALITIES, Batch

if TYPE_CHECKING:
    from accord.core.types import ModelOutput

__all__ = ["COALITIONS", "DISAGREE_FRACTION", "Attribution", "attribute", "coalition_batch", "disagreement",
           "shapley_from_values", "shapley_weight", "summarize", "value_of"]

N_PLAYERS = len(MODALITIES)
COALITIONS: tuple[tuple[bool, ...], ...] = tuple(
    tuple(bool(c >> k & 1) for k in range(N_PLAYERS)) for c in range(2 ** N_PLAYERS))
"""The 8 coalitions; index ``c`` is the bitmask (bit ``k`` = ``MODALITIES[k]`` present): 0 = ∅, 7 = N."""

DISAGREE_FRACTION = 0.1
"""``τ = 0.1 · Σ_m |φ_m|``: the modalities *disagree* when one pushes the prediction up by more than τ and another
pushes it down by more than τ (:func:`disagreement`)."""


def shapley_weight(size: int, n: int = N_PLAYERS) -> float:
    """``|S|! (n − |S| − 1)! / n!``, the weight of a coalition of ``size`` players without ``m``."""
    return math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)


def _repeat(x: Tensor, times: int) -> Tensor:
    """``x`` stacked ``times`` times along dim 0 (coalition-major)."""
    return x.repeat(times, *([1] * (x.ndim - 1)))


def coalition_batch(batch: Batch) -> Batch:
    """The ``8·B``-row batch of every coalition of every sample: row ``c·B + i`` is sample ``i`` with only the
    modalities of coalition ``c`` that the sample has kept; the others absent (``present`` False, mask all False,
    features zero). Labels, ids, extras and text tokens are repeated."""
    b = batch.size
    n_c = len(COALITIONS)
    keep = torch.tensor(COALITIONS, dtype=torch.bool, device=batch.present.device)  # [8, 3]
    present = (keep.unsqueeze(1) & batch.present.bool().unsqueeze(0)).reshape(n_c * b, N_PLAYERS)
    feats: dict[str, Tensor] = {}
    masks: dict[str, Tensor] = {}
    for k, m in enumerate(MODALITIES):
        mask = _repeat(batch.mask[m], n_c) & present[:, k:k + 1]
        masks[m] = mask
        feats[m] = _repeat(batch.features[m], n_c) * mask.unsqueeze(-1).to(batch.features[m].dtype)
    return Batch(features=feats, mask=masks, present=present, label=_repeat(batch.label, n_c),
                 unimodal_labels={k: _repeat(v, n_c) for k, v in batch.unimodal_labels.items()},
                 ids=list(batch.ids) * n_c, extras={k: _repeat(v, n_c) for k, v in batch.extras.items()},
                 text_tokens=None if batch.text_tokens is None else _repeat(batch.text_tokens, n_c))


def _bits(present: Tensor) -> Tensor:
    """``[B]`` bitmask of each sample's present modalities."""
    w = torch.tensor([1 << k for k in range(N_PLAYERS)], device=present.device)
    return (present.bool().long() * w).sum(dim=1)


def shapley_from_values(values: Tensor, present: Tensor | None = None) -> Tensor:
    """``φ [B, 3, *K]`` from the coalition values ``values [8, B, *K]`` (index = coalition bitmask), by the
    equation of the module docstring. With ``present [B, 3]`` each coalition ``S`` is read as ``S ∩ P``, so a
    modality the sample lacks is an exact dummy (``φ = 0``)."""
    if values.shape[0] != len(COALITIONS):
        raise ValueError(f"values: expected the {len(COALITIONS)} coalitions on dim 0, got shape "
                         f"{tuple(values.shape)}")
    b = values.shape[1]
    if present is not None:
        idx = torch.arange(len(COALITIONS), device=values.device).unsqueeze(1) & _bits(present).to(values.device)
        values = values[idx, torch.arange(b, device=values.device).unsqueeze(0)]  # v(S ∩ P)
    phi = values.new_zeros((b, N_PLAYERS, *values.shape[2:]))
    for k in range(N_PLAYERS):
        for s in range(len(COALITIONS)):
            if s >> k & 1:
                continue
            w = shapley_weight(bin(s).count("1"))
            phi[:, k] += w * (values[s | 1 << k] - values[s])
    return phi


@dataclass
class Attribution:
    """Shapley values of a batch: ``phi [B, 3, *K]`` (modalities in ``MODALITIES`` order), ``base`` = v(∅) and
    ``full`` = v(P) (the prediction with every modality the sample has) ``[B, *K]``, the coalition values
    ``values [8, B, *K]`` as read (``S ∩ P``)."""

    phi: Tensor
    base: Tensor
    full: Tensor
    values: Tensor


def value_of(out: ModelOutput, task: str) -> Tensor:
    """The game's value per row of a model output: the score ``[rows]`` (regression) or the class probabilities
    ``[rows, C]`` (classification, softmax of the logits)."""
    pred = out.prediction.detach().float()
    return pred.softmax(dim=-1) if task == "classification" else pred.reshape(-1)


def attribute(value: Callable[[Batch], Tensor], batch: Batch, batched: bool = True) -> Attribution:
    """Exact Shapley attribution of ``batch`` over the three modalities.

    ``value(batch) -> [rows, *K]`` is the prediction to explain (e.g. ``value_of(model(b), task)``; a caller that
    also wants the model's diagnostics keeps the output in its closure). ``batched`` evaluates all 8 coalitions as
    ONE call on ``8·B`` rows (:func:`coalition_batch`); otherwise one call per coalition (the reference the tests
    compare with)."""
    b = batch.size
    big = coalition_batch(batch)
    if batched:
        v = value(big)
        values = v.reshape(len(COALITIONS), b, *v.shape[1:])
    else:
        values = torch.stack([value(big.select(slice(c * b, (c + 1) * b))) for c in range(len(COALITIONS))])
    present = batch.present.bool()
    idx = torch.arange(len(COALITIONS), device=values.device).unsqueeze(1) & _bits(present).to(values.device)
    read = values[idx, torch.arange(b, device=values.device).unsqueeze(0)]  # v(S ∩ P)
    phi = shapley_from_values(read)
    return Attribution(phi=phi, base=read[0], full=read[-1], values=read)


def disagreement(phi: Tensor, fraction: float = DISAGREE_FRACTION) -> Tensor:
    """``[B]`` bool: some ``φ_m > τ`` and some ``φ_m' < −τ`` with ``τ = fraction · Σ_m |φ_m|`` (``phi [B, 3]``:
    one value per modality, e.g. the predicted class's)."""
    tau = fraction * phi.abs().sum(dim=1, keepdim=True)
    return (phi > tau).any(dim=1) & (phi < -tau).any(dim=1)


def summarize(phi: Tensor, present: Tensor, fraction: float = DISAGREE_FRACTION) -> dict[str, Any]:
    """Split-level summary of per-sample ``phi [N, 3]`` (one value per modality): per modality the mean ``|φ|``
    and mean ``φ`` over ALL samples (an absent modality counts with ``φ = 0``) and the share of samples that have
    it; the share of samples whose modalities disagree (:func:`disagreement`), and ``τ``'s fraction."""
    pres = present.bool()
    n = int(phi.shape[0])
    dis = disagreement(phi, fraction)
    return {
        "n": n,
        "mean_abs_phi": {m: float(phi[:, k].abs().mean()) if n else 0.0 for k, m in enumerate(MODALITIES)},
        "mean_phi": {m: float(phi[:, k].mean()) if n else 0.0 for k, m in enumerate(MODALITIES)},
        "present_share": {m: float(pres[:, k].float().mean()) if n else 0.0 for k, m in enumerate(MODALITIES)},
        "disagree_share": float(dis.float().mean()) if n else 0.0,
        "disagree_fraction": fraction,
    }
