"""Batch assembly: masks and ``present`` gathered from per-split tables equal the per-batch definition, the tables
follow changed lengths, and moving a batch to the device it is on costs nothing."""

from __future__ import annotations

import pytest
import torch

from accord.core.types import MODALITIES, Batch
from accord.data.dataset import SplitData, make_split


def split_with(lengths: dict[str, list[int]], steps: dict[str, int]) -> SplitData:
    n = len(lengths["text"])
    feats = {}
    for m in MODALITIES:
        x = torch.randn(n, steps[m], 2)
        for i, ln in enumerate(lengths[m]):
            x[i, ln:] = 0.0
        feats[m] = x
    return make_split(feats, torch.linspace(-1, 1, n), lengths={m: torch.tensor(v) for m, v in lengths.items()},
                      id_prefix="r")


def by_definition(split: SplitData, index: torch.Tensor, trim: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The masks and ``present`` of rows ``index`` as Batch documents them: step < length (over the batch's
    longest length when trimming, at least one step), length > 0."""
    masks = {}
    for m in MODALITIES:
        lens = split.lengths[m][index]
        t = max(int(lens.max()), 1) if trim else split.features[m].shape[1]
        masks[m] = torch.arange(t).unsqueeze(0) < lens.unsqueeze(1)
    present = torch.stack([split.lengths[m][index] > 0 for m in MODALITIES], dim=1)
    return masks, present


@pytest.mark.parametrize("trim", [True, False])
def test_masks_and_present_equal_their_definition(trim: bool) -> None:
    split = split_with({"text": [3, 1, 5, 2], "audio": [0, 4, 2, 1], "visual": [1, 1, 0, 1]},
                       {"text": 5, "audio": 6, "visual": 1})
    for rows in ([2, 0], [1, 3], [3], [0, 1, 2, 3]):
        index = torch.tensor(rows)
        b = split.batch(index, trim=trim)
        masks, present = by_definition(split, index, trim)
        for m in MODALITIES:
            assert b.mask[m].dtype == torch.bool and b.mask[m].is_contiguous()
            assert torch.equal(b.mask[m], masks[m]), (rows, m)
            assert b.features[m].shape[1] == masks[m].shape[1]
            assert torch.equal(b.features[m], split.features[m][index][:, : masks[m].shape[1]])
        assert torch.equal(b.present, present), rows
    empty = split.batch(torch.tensor([], dtype=torch.long), trim=trim)
    assert empty.size == 0 and empty.present.shape == (0, 3)


def test_the_tables_follow_replaced_and_edited_lengths() -> None:
    split = split_with({"text": [2, 1], "audio": [3, 3], "visual": [1, 1]}, {"text": 2, "audio": 3, "visual": 1})
    index = torch.tensor([0, 1])
    assert split.batch(index).present[:, 1].tolist() == [True, True]
    split.features["audio"][1] = 0.0
    split.lengths["audio"][1] = 0  # edited in place: a missing modality now
    b = split.batch(index)
    assert b.present[:, 1].tolist() == [True, False] and b.mask["audio"][1].tolist() == [False, False, False]
    split.lengths["audio"] = torch.tensor([1, 2])  # replaced: the longest is 2, so the batch is trimmed to 2
    b = split.batch(index)
    assert b.mask["audio"].tolist() == [[True, False], [True, True]] and b.present[:, 1].tolist() == [True, True]
    fresh = split_with({"text": [2, 1], "audio": [3, 3], "visual": [1, 1]}, {"text": 2, "audio": 3, "visual": 1})
    fresh.batch(index)
    fresh.lengths["audio"] = torch.tensor([3, 0])  # a new tensor at the same version number as the old one
    assert fresh.batch(index).present[:, 1].tolist() == [True, False]


def test_to_the_device_a_batch_is_on_returns_it_and_elsewhere_a_copy() -> None:
    split = split_with({"text": [2, 1], "audio": [1, 1], "visual": [1, 1]}, {"text": 2, "audio": 1, "visual": 1})
    b = split.batch(torch.tensor([0, 1]))
    assert b.to("cpu") is b and b.to(torch.device("cpu")) is b
    moved = b.to("meta")
    assert moved is not b and isinstance(moved, Batch)
    assert all(t.device.type == "meta" for t in [*moved.features.values(), *moved.mask.values(), moved.present,
                                                  moved.label])
    assert b.label.device.type == "cpu" and moved.ids == b.ids
