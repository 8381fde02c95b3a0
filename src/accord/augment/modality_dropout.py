"""Training-time modality dropout: remove a modality from a share of the samples of each batch (any model).

The removed modality looks exactly like a missing one at test time: features zeroed, mask all False,
``present`` False. A sample never loses every modality: where the draw would remove all of a sample's remaining
modalities, that sample keeps them all for this step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from accord.core.types import MODALITIES, Batch


def modality_dropout(batch: Batch, rates: Mapping[str, float], generator: torch.Generator) -> Batch:
    """A copy of ``batch`` where modality ``m`` is removed for each sample with probability ``rates[m]``."""
    n = batch.size
    drop = torch.zeros(n, len(MODALITIES), dtype=torch.bool)
    for k, m in enumerate(MODALITIES):
        p = float(rates.get(m, 0.0))
        if p > 0:
            drop[:, k] = torch.rand(n, generator=generator) < p
    present = batch.present.cpu()
    drop &= present
    emptied = ~(present & ~drop).any(dim=1)
    drop[emptied] = False
    if not bool(drop.any()):
        return batch
    feats, mask = dict(batch.features), dict(batch.mask)
    for k, m in enumerate(MODALITIES):
        d = drop[:, k].to(batch.present.device)
        if bool(d.any()):
            keep = (~d).to(feats[m].dtype).view(-1, *([1] * (feats[m].ndim - 1)))
            feats[m] = feats[m] * keep
            mask[m] = mask[m] & ~d.unsqueeze(1)
    return dataclasses.replace(batch, features=feats, mask=mask, present=batch.present & ~drop.to(batch.present.device))
