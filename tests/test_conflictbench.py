"""ConflictBench: determinism, planted conflicts, text dominance, missing modalities, class labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES
from accord.data import build_dataset

SMALL = {"n_train": 600, "n_valid": 100, "n_test": 400}


def _pooled(split, m: str) -> np.ndarray:
    x, lens = split.features[m], split.lengths[m].clamp_min(1)
    return (x.sum(dim=1) / lens.unsqueeze(1)).numpy()


def _ridge_acc(ds, modality: str, only: np.ndarray | None = None) -> float:
    tr, te = ds["train"], ds["test"]
    clf = Ridge(alpha=1.0).fit(_pooled(tr, modality), tr.labels.numpy())
    pred, y = clf.predict(_pooled(te, modality)), te.labels.numpy()
    keep = np.ones_like(y, dtype=bool) if only is None else only
    return float(((pred[keep] > 0) == (y[keep] > 0)).mean())


def test_same_seed_same_data_other_seed_differs() -> None:
    a = build_dataset("conflictbench", params={**SMALL, "seed": 3})
    b = build_dataset("conflictbench", params={**SMALL, "seed": 3})
    c = build_dataset("conflictbench", params={**SMALL, "seed": 4})
    for m in MODALITIES:
        assert torch.equal(a["train"].features[m], b["train"].features[m])
    assert not torch.equal(a["train"].labels, c["train"].labels)


def test_shapes_lengths_and_padding() -> None:
    p = {**SMALL, "seq_len": {"text": 5, "audio": 9, "visual": 1}, "dims": {"text": 7, "audio": 3, "visual": 4}}
    ds = build_dataset("conflictbench", params=p)
    tr = ds["train"]
    assert tr.features["text"].shape == (600, 5, 7)
    assert tr.features["audio"].shape == (600, 9, 3)
    assert tr.features["visual"].shape == (600, 1, 4)
    assert int(tr.lengths["audio"].min()) >= 5 and int(tr.lengths["audio"].max()) == 9
    assert bool((tr.lengths["visual"] == 1).all())
    # padding beyond each length is exactly zero
    x, lens = tr.features["audio"], tr.lengths["audio"]
    pad = torch.arange(9).unsqueeze(0) >= lens.unsqueeze(1)
    assert float(x[pad].abs().sum()) == 0.0


def test_conflict_rate_and_ground_truth_recorded() -> None:
    ds = build_dataset("conflictbench", params={**SMALL, "conflict_rate": 0.3, "conflict_modalities": ["audio"]})
    tr = ds["train"]
    flag = tr.extras["conflict"].bool()
    assert 0.24 < float(flag.float().mean()) < 0.36
    which = tr.extras["conflict_modality"]
    assert bool((which[flag] == MODALITIES.index("audio")).all())
    assert bool((which[~flag] == -1).all())


def test_text_dominates_by_default() -> None:
    ds = build_dataset("conflictbench", params={**SMALL, "conflict_rate": 0.0})
    acc = {m: _ridge_acc(ds, m) for m in MODALITIES}
    assert acc["text"] > acc["audio"] + 0.05
    assert acc["text"] > acc["visual"] + 0.05
    assert acc["text"] > 0.75  # a linear probe on mean-pooled steps; salient steps are only ~35%


def test_planted_conflict_flips_the_modality() -> None:
    """On conflicting samples the flipped modality predicts the WRONG polarity more often than not."""
    p = {**SMALL, "conflict_rate": 0.5, "conflict_modalities": ["audio"],
         "strength": {"text": 1.0, "audio": 1.0, "visual": 0.35}}
    ds = build_dataset("conflictbench", params=p)
    flag = ds["test"].extras["conflict"].bool().numpy()
    # fit audio on consistent training samples only, so the regressor learns the true mapping
    tr = ds["train"]
    keep = ~tr.extras["conflict"].bool().numpy()
    clf = Ridge(alpha=1.0).fit(_pooled(tr, "audio")[keep], tr.labels.numpy()[keep])
    pred, y = clf.predict(_pooled(ds["test"], "audio")), ds["test"].labels.numpy()
    agree = (pred > 0) == (y > 0)
    assert agree[~flag].mean() > 0.75
    assert agree[flag].mean() < 0.25


def test_missing_rate_never_removes_all_modalities() -> None:
    ds = build_dataset("conflictbench", params={**SMALL, "missing_rate": 0.6})
    tr = ds["train"]
    missing = torch.stack([tr.lengths[m] == 0 for m in MODALITIES], dim=1)
    assert 0.45 < float(missing.float().mean()) < 0.6
    assert not bool(missing.all(dim=1).any())
    assert torch.equal(missing, tr.extras["missing"])
    assert float(tr.features["text"][missing[:, 0]].abs().sum()) == 0.0


@pytest.mark.parametrize("classes,names", [(2, ["negative", "positive"]), (3, ["negative", "neutral", "positive"])])
def test_class_labels_follow_polarity(classes: int, names: list[str]) -> None:
    ds = build_dataset("conflictbench", params={**SMALL, "classes": classes})
    tr = ds["train"]
    assert ds.class_names == names
    assert tr.class_labels is not None
    y, c = tr.labels, tr.class_labels
    if classes == 2:
        assert torch.equal(c, (y >= 0).long())
    else:
        assert bool((c[y.abs() < 0.5] == 1).all()) and bool((c[y >= 0.5] == 2).all())


def test_bad_params_are_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.params\.conflict_rate"):
        build_dataset("conflictbench", params={"conflict_rate": 1.5})
    with pytest.raises(ConfigError, match=r"data\.params\.colour"):
        build_dataset("conflictbench", params={"colour": "red"})
