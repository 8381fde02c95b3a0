"""Robustness corruptions applied at evaluation time: missing modalities, dropped time steps, feature noise.

Every corruption returns a NEW :class:`~accord.data.dataset.SplitData` (the input is never modified) and is
deterministic given its seed. Kinds:

- ``drop``: remove the modality for exactly ``round(level * N)`` samples, chosen by a seeded permutation:
  their features are zeroed and their length set to 0 (``Batch.present`` becomes False). With modality ``all``
  each modality is dropped independently for its own share, so a sample may lose every modality (a corrupted
  split is for evaluation only and need not pass ``MultimodalDataset.validate``).
- ``temporal_drop``: zero each real time step independently with probability ``level``; the length is kept
  (the zeroed steps stay inside the mask) unless every real step of a sample was dropped, in which case its
  length becomes 0. With T = 1 this acts like ``drop`` with a random share.
- ``noise``: add Gaussian noise with std ``level * s_j`` to the real steps, where ``s_j`` is the std of column
  ``j`` of that modality over the real steps of this split; padding stays zero.

Level 0 is the exact identity for every kind; level 1 of ``drop`` / ``temporal_drop`` removes everything.
The string form is ``kind:modality:level[:seed]``, e.g. ``drop:audio:0.5`` or ``noise:all:0.3:7``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from accord.core.types import MODALITIES
from accord.data.corruption_spec import (  # noqa: F401  (the spec is part of this module's API)
    CorruptionKind,
    CorruptionModality,
    CorruptionSpec,
    parse_corruption,
)
from accord.data.dataset import SplitData


def _generator(seed: int, modality: str) -> torch.Generator:
    """A generator per (seed, modality), so ``all`` corrupts each modality independently and a single-modality
    corruption draws exactly what ``all`` would draw for that modality."""
    return torch.Generator().manual_seed(seed * 1_000_003 + MODALITIES.index(modality) * 7_919 + 17)


def _copy(split: SplitData) -> SplitData:
    return SplitData(
        features={m: v.clone() for m, v in split.features.items()},
        lengths={m: v.clone() for m, v in split.lengths.items()},
        labels=split.labels.clone(),
        ids=list(split.ids),
        raw_text=list(split.raw_text),
        class_labels=None if split.class_labels is None else split.class_labels.clone(),
        unimodal_labels={m: v.clone() for m, v in split.unimodal_labels.items()},
        extras={k: v.clone() for k, v in split.extras.items()},
        text_tokens=None if split.text_tokens is None else split.text_tokens.clone(),
    )


def _real_mask(x: Tensor, lengths: Tensor) -> Tensor:
    """``[N, T]`` True on real steps."""
    return torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)


def _drop(out: SplitData, m: str, level: float, gen: torch.Generator) -> None:
    n = len(out)
    k = int(round(level * n))
    if k == 0:
        return
    rows = torch.randperm(n, generator=gen)[:k].to(out.lengths[m].device)
    out.features[m][rows] = 0.0
    out.lengths[m][rows] = 0


def _temporal_drop(out: SplitData, m: str, level: float, gen: torch.Generator) -> None:
    x, lens = out.features[m], out.lengths[m]
    real = _real_mask(x, lens)
    dropped = (torch.rand(real.shape, generator=gen) < level).to(real.device) & real
    x[dropped] = 0.0
    emptied = (real.sum(dim=1) > 0) & ((real & ~dropped).sum(dim=1) == 0)
    lens[emptied] = 0


def _noise(out: SplitData, m: str, level: float, gen: torch.Generator) -> None:
    x, lens = out.features[m], out.lengths[m]
    real = _real_mask(x, lens).unsqueeze(-1)
    count = real.sum().clamp_min(1)
    mean = (x * real).sum(dim=(0, 1)) / count
    std = ((((x - mean) * real) ** 2).sum(dim=(0, 1)) / count).sqrt()
    eps = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    x.add_(eps * (level * std) * real)


_APPLY = {"drop": _drop, "temporal_drop": _temporal_drop, "noise": _noise}


def apply_corruption(split: SplitData, spec: CorruptionSpec | str | Mapping[str, Any]) -> SplitData:
    """Return a corrupted copy of ``split`` (see the module docstring); ``split`` itself is not modified."""
    spec = parse_corruption(spec)
    out = _copy(split)
    if spec.level == 0.0:
        return out
    modalities = MODALITIES if spec.modality == "all" else (spec.modality,)
    for m in modalities:
        _APPLY[spec.kind](out, m, spec.level, _generator(spec.seed, m))
    return out


def apply_corruptions(
    split: SplitData, specs: Iterable[CorruptionSpec | str | Mapping[str, Any]]
) -> SplitData:
    """Apply ``specs`` in order; returns a new split (the input is not modified)."""
    out = _copy(split)
    for spec in specs:
        out = apply_corruption(out, spec)
    return out
