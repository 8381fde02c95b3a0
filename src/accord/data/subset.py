"""Low-data option ``data.train_fraction``: keep a seeded share of the training GROUPS (videos), nothing else.

A group is a sample id up to its last ``_`` (the video for MOSI ids ``<video>_<segment>``; an id without ``_`` is
its own group). Whole groups are kept or dropped, so no video is split between kept and dropped utterances, and
validation and test are never touched. ``by="sample"`` keeps a share of single rows instead (for datasets whose
ids carry no group, e.g. ConflictBench).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from accord.core.errors import ConfigError
from accord.data.dataset import MultimodalDataset, SplitData

FractionBy = Literal["group", "sample"]


def group_of(sample_id: str) -> str:
    """The group of a sample id: everything before the last ``_`` (the id itself when it has none)."""
    return sample_id.rsplit("_", 1)[0] if "_" in sample_id else sample_id


def keep_fraction(split: SplitData, fraction: float, seed: int = 0, by: FractionBy = "group") -> SplitData:
    """Rows of ``split`` belonging to ``max(1, round(fraction · n_groups))`` groups drawn with ``seed``.

    The groups are sorted before the seeded permutation, so the choice depends only on the ids and the seed.
    Row order is preserved. ``fraction == 1`` returns ``split`` itself.

    Raises:
        ConfigError: ``fraction`` outside (0, 1], or ``by="group"`` with a fraction below 1 on a split that has
            a single group (nothing could be dropped; use ``by="sample"``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.train_fraction: expected a share in (0, 1], got {fraction}")
    if fraction == 1.0:
        return split
    keys = [group_of(i) for i in split.ids] if by == "group" else [str(i) for i in range(len(split))]
    groups = sorted(set(keys))
    if by == "group" and len(groups) == 1:
        raise ConfigError(
            f"data.train_fraction: the training ids form one group ({groups[0]!r}: the id up to the last '_'), "
            "so no share of groups can be kept; set data.train_fraction_by=sample"
        )
    n_keep = max(1, round(fraction * len(groups)))
    rng = np.random.default_rng(seed)
    chosen = {groups[i] for i in rng.permutation(len(groups))[:n_keep].tolist()}
    return split.subset([i for i, k in enumerate(keys) if k in chosen])


def apply_train_fraction(ds: MultimodalDataset, fraction: float, seed: int = 0,
                         by: FractionBy = "group") -> MultimodalDataset:
    """A copy of ``ds`` whose training split keeps ``fraction`` of its groups (:func:`keep_fraction`).

    Idempotent: the applied setting is recorded in ``meta["train_fraction"]`` and a dataset that already carries
    the same setting is returned unchanged (so a dataset shared between runs is never cut twice). ``ds`` itself is
    not modified. ``fraction == 1`` returns ``ds``.
    """
    if fraction == 1.0:
        return ds
    setting = {"fraction": fraction, "seed": seed, "by": by}
    done = ds.meta.get("train_fraction")
    if done == setting:
        return ds
    if done is not None:
        raise ConfigError(f"data.train_fraction: dataset {ds.name!r} was already cut with {done}; cannot apply "
                          f"{setting} on top (build it afresh)")
    train = ds["train"]
    kept = keep_fraction(train, fraction, seed, by)
    meta = {**ds.meta, "train_fraction": setting,
            "train_fraction_kept": {"rows": len(kept), "of_rows": len(train),
                                    "groups": len({group_of(i) for i in kept.ids}),
                                    "of_groups": len({group_of(i) for i in train.ids})}}
    return dataclasses.replace(ds, splits={**ds.splits, "train": kept}, meta=meta)
