"""``data.pool_time``: average chosen modalities over time ONCE, before training (MMSA's ``need_normalized``).

MMSA's TFN and LMF configs average audio and visual over all their steps in the data loader, once per run, so an
epoch never touches the 375 / 500-step sequences. :func:`pool_time` does the same on a built dataset: each listed
modality becomes one step holding the masked mean of the sample's valid steps (a missing modality, length 0, stays
missing with a zero step). A model then trains on ``[B, 1, D_m]`` inputs for those modalities, which is the model
MMSA trains; for an encoder that is linear up to its pooling (``temporal=none``, ``projection=linear``,
``pool=mean``) the result in evaluation mode is the same as on the full sequences, at a fraction of the cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from accord.core.types import MODALITIES
from accord.data.dataset import MultimodalDataset, SplitData

__all__ = ["pool_split", "pool_time", "time_mean"]


def time_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, 1, D]``: the mean of ``x [B, T, D]`` over the steps where ``valid [B, T]`` is true (a sample without a
    valid step gets a zero step)."""
    n = valid.sum(dim=1, keepdim=True)
    return ((x * valid.unsqueeze(-1).to(x.dtype)).sum(dim=1) / n.clamp_min(1).to(x.dtype)).unsqueeze(1)


def pool_split(part: SplitData, modalities: Sequence[str]) -> SplitData:
    """``part`` with each modality of ``modalities`` replaced by its masked time mean ``[N, 1, D_m]``.

    Lengths become ``min(length, 1)`` (so 0, a missing modality, stays 0 and its step is zero); other modalities,
    labels, ids and tokens are shared with ``part``, not copied.
    """
    feats, lens = dict(part.features), dict(part.lengths)
    for m in modalities:
        x, n = part.features[m], part.lengths[m]
        if x.shape[1] == 1:
            continue
        feats[m] = time_mean(x, n.unsqueeze(1) > torch.arange(x.shape[1]).unsqueeze(0))
        lens[m] = n.clamp_max(1)
    return dataclasses.replace(part, features=feats, lengths=lens)


def pool_time(ds: MultimodalDataset, modalities: Sequence[str]) -> MultimodalDataset:
    """A copy of ``ds`` whose every split has ``modalities`` averaged over time (:func:`pool_split`).

    ``ds`` itself (possibly cached and shared by other runs) is not changed; the pooled modalities are recorded in
    ``meta["pool_time"]``, and pooling again is a no-op (a one-step modality is its own mean). An empty
    ``modalities`` returns ``ds``.
    """
    if not modalities:
        return ds
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"pool_time: unknown modalities {unknown}; expected some of {list(MODALITIES)}")
    done = sorted({*ds.meta.get("pool_time", []), *modalities}, key=MODALITIES.index)
    return dataclasses.replace(ds, splits={k: pool_split(v, modalities) for k, v in ds.splits.items()},
                               meta={**ds.meta, "pool_time": done})
