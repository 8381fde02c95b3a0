"""ConflictBench: a generated benchmark where text dominance and cross-modal conflict are planted on purpose.

Every sample has a latent sentiment ``s`` (the label, in [-3, 3]). Each modality ``m`` expresses a polarity-carrying
code ``s_m`` in a few *salient* time steps of an otherwise noisy sequence:

    x_m[t] = strength_m · (s_m · u_m + (|s_m| − 1.5) · v_m) · salient_m[t] + speaker_m + noise · ε_t

with fixed random unit directions ``u_m, v_m`` (per dataset seed), a per-sample nuisance offset ``speaker_m`` and
Gaussian noise. Normally ``s_m = s``. In a *conflicting* sample one chosen modality carries the opposite polarity
(``s_m = −s``); which one is recorded per sample in ``extras["conflict"]`` (0/1) and
``extras["conflict_modality"]`` (index into MODALITIES, −1 when none). ``extras["missing"]`` is ``[N, 3]``.

Defaults make text the strongest modality (strength 1.5 vs audio 0.5 and visual 0.4), so "text dominates";
``conflict_rate`` makes modalities contradict. Everything is deterministic given ``seed``.
Class labels (for ``task.kind = classification``) are the polarity: negative (s < 0) / positive, or with
``classes: 3`` negative / neutral (|s| < neutral_band) / positive.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch

from accord.core.types import MODALITIES
from accord.data.dataset import MultimodalDataset, make_split
from accord.data.params import MODS, ConflictBenchParams
from accord.data.registry import register_dataset


def _unit(g: torch.Generator, d: int) -> torch.Tensor:
    v = torch.randn(d, generator=g)
    return v / v.norm()


class SplitParts(TypedDict):
    """The pieces of a generated split, as :func:`~accord.data.dataset.make_split` takes them."""

    features: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    labels: torch.Tensor
    class_labels: torch.Tensor
    extras: dict[str, torch.Tensor]


def generate_split(p: ConflictBenchParams, n: int, directions: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   g: torch.Generator) -> SplitParts:
    """Draw ``n`` samples; returns the pieces of a SplitData (see the module docstring for the model)."""
    s = torch.rand(n, generator=g) * 6 - 3
    rate = p.conflict_rate
    conflict = (torch.rand(n, generator=g) < rate) if rate > 0 else torch.zeros(n, dtype=torch.bool)
    which = torch.full((n,), -1, dtype=torch.long)
    if bool(conflict.any()):
        choice = torch.randint(len(p.conflict_modalities), (n,), generator=g)
        idx = torch.tensor([MODALITIES.index(m) for m in p.conflict_modalities])[choice]
        which = torch.where(conflict, idx, which)
    missing = torch.rand(n, 3, generator=g) < p.missing_rate
    all_missing = missing.all(dim=1)
    if bool(all_missing.any()):  # keep one modality (a random one) for samples that lost all three
        keep = torch.randint(3, (n,), generator=g)
        missing[all_missing, keep[all_missing]] = False
    feats: dict[str, torch.Tensor] = {}
    lengths: dict[str, torch.Tensor] = {}
    for k, m in enumerate(MODS):
        t_max, d = p.seq_len[m], p.dims[m]
        u, v = directions[m]
        s_m = torch.where(which == k, -s, s)
        if p.variable_length and t_max > 1:
            lens = torch.randint(math.ceil(t_max / 2), t_max + 1, (n,), generator=g)
        else:
            lens = torch.full((n,), t_max, dtype=torch.long)
        steps = torch.arange(t_max).unsqueeze(0)
        real = steps < lens.unsqueeze(1)
        salient = (torch.rand(n, t_max, generator=g) < p.salient_share) & real
        # at least one salient step per sample so every present modality carries its polarity
        first = torch.randint(0, t_max, (n,), generator=g) % lens
        salient[torch.arange(n), first] = True
        code = s_m.unsqueeze(1) * u + (s_m.abs() - 1.5).unsqueeze(1) * v  # [n, d]
        signal = p.strength[m] * code.unsqueeze(1) * salient.unsqueeze(-1)
        speaker = 0.5 * torch.randn(n, 1, d, generator=g)
        x = signal + speaker + p.noise * torch.randn(n, t_max, d, generator=g)
        x = x * real.unsqueeze(-1)
        x[missing[:, k]] = 0.0
        lens = torch.where(missing[:, k], torch.zeros_like(lens), lens)
        feats[m], lengths[m] = x, lens
    y = s + p.label_noise * torch.randn(n, generator=g)
    y = y.clamp(-3, 3)
    if p.classes == 2:
        cls = (y >= 0).long()
    else:
        cls = torch.where(y.abs() < p.neutral_band, 1, torch.where(y > 0, 2, 0)).long()
    return {
        "features": feats,
        "lengths": lengths,
        "labels": y,
        "class_labels": cls,
        "extras": {"conflict": conflict.to(torch.int8), "conflict_modality": which, "missing": missing},
    }


@register_dataset("conflictbench", params=ConflictBenchParams, needs_path=False,
                  description="generated; text dominance and planted conflicts, deterministic by seed")
def build_conflictbench(path: str | None, p: ConflictBenchParams) -> MultimodalDataset:
    """Generate ConflictBench (``path`` is unused). The three splits come from one seeded generator."""
    del path
    g = torch.Generator().manual_seed(p.seed)
    directions: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        m: (_unit(g, p.dims[m]), _unit(g, p.dims[m])) for m in MODS
    }
    splits = {}
    for split, n in (("train", p.n_train), ("valid", p.n_valid), ("test", p.n_test)):
        parts = generate_split(p, n, directions, g)
        splits[split] = make_split(
            parts["features"],
            parts["labels"],
            ids=[f"cb{p.seed}_{split}_{i:05d}" for i in range(n)],
            lengths=parts["lengths"],
            raw_text=["" for _ in range(n)],
            class_labels=parts["class_labels"],
            extras=parts["extras"],
        )
    class_names = ["negative", "positive"] if p.classes == 2 else ["negative", "neutral", "positive"]
    return MultimodalDataset(
        name="conflictbench",
        splits=splits,
        metric_family="mosi",
        label_range=(-3.0, 3.0),
        class_names=class_names,
        source=f"conflictbench(seed={p.seed})",
        meta={"generator": "conflictbench", "params": p.model_dump()},
    )
