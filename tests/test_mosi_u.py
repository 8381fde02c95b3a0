"""MOSI-U from the real bc-LSTM files (skipped where ../shared/data is absent)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.errors import ConfigError, DataError, LeakageError
from accord.core.types import MODALITIES
from accord.data import build_dataset
from accord.data.dataset import MultimodalDataset
from accord.data.mosi_u import find_mosi_dir, load_mosi_u, video_of


@pytest.fixture(scope="module")
def mosi(shared_data: Path) -> MultimodalDataset:
    return build_dataset("mosi-u", str(shared_data / "mosi"))


@pytest.fixture(scope="module")
def label_csv(shared_data: Path) -> dict[str, tuple[float, str]]:
    with (shared_data / "mosi" / "label.csv").open(newline="") as fh:
        return {r["id"]: (float(r["label"]), r["text"]) for r in csv.DictReader(fh)}


def test_sizes_and_videos(mosi: MultimodalDataset) -> None:
    videos = {s: {video_of(i) for i in mosi[s].ids} for s in ("train", "valid", "test")}
    assert len(videos["valid"]) == 10
    assert len(videos["train"]) + len(videos["valid"]) == 62
    assert len(videos["test"]) == 31
    assert not videos["train"] & videos["valid"]
    assert not videos["train"] & videos["test"]
    assert not videos["valid"] & videos["test"]
    dropped = mosi.meta["dropped_unlabelled"]
    assert dropped["count"] == 4
    assert len(mosi["train"]) + len(mosi["valid"]) + len(mosi["test"]) == 1447 + 752 - 4
    assert "2WGyTLYerpo_44" in dropped["ids"]
    all_ids = [i for s in ("train", "valid", "test") for i in mosi[s].ids]
    assert len(set(all_ids)) == len(all_ids)
    assert not set(dropped["ids"]) & set(all_ids)


def test_shapes_and_standardisation(mosi: MultimodalDataset) -> None:
    assert mosi.dims == {"text": 100, "audio": 73, "visual": 100}
    assert mosi.metric_family == "mosi"
    assert mosi.label_range == (-3.0, 3.0)
    for s in ("train", "valid", "test"):
        assert mosi[s].seq_lens() == {"text": 1, "audio": 1, "visual": 1}
        assert all(bool((mosi[s].lengths[m] == 1).all()) for m in MODALITIES)
    for m in MODALITIES:
        x = mosi["train"].features[m][:, 0]
        assert float(x.mean(0).abs().max()) < 1e-4
        std = x.std(0, unbiased=False)
        # unit std, except constant columns (which become zero)
        assert bool(((std - 1).abs() < 1e-3).logical_or(std < 1e-6).all())
    assert float(mosi["test"].features["text"].mean(dim=(0, 1)).abs().max()) > 1e-3  # test stats not used


def test_raw_features_are_not_normalised(shared_data: Path) -> None:
    raw = load_mosi_u(shared_data / "mosi", standardize=False)
    assert float(raw["train"].features["audio"].abs().max()) > 100  # README: audio reaches about 356
    assert "standardize" not in raw.meta


def test_labels_match_label_csv(mosi: MultimodalDataset, label_csv: dict[str, tuple[float, str]]) -> None:
    for s in ("train", "valid", "test"):
        part = mosi[s]
        for k in (0, len(part) // 2, len(part) - 1):
            score, text = label_csv[part.ids[k]]
            assert float(part.labels[k]) == pytest.approx(score, abs=1e-6)
            assert part.raw_text[k] == text
    tr = mosi["train"]
    if "03bSnISJMiM_1" in tr.ids:
        assert float(tr.labels[tr.ids.index("03bSnISJMiM_1")]) == pytest.approx(2.4)


def test_valid_split_is_seeded(shared_data: Path, mosi: MultimodalDataset) -> None:
    again = load_mosi_u(shared_data / "mosi")
    assert again["valid"].ids == mosi["valid"].ids
    other = load_mosi_u(shared_data / "mosi", valid_seed=1, valid_videos=5)
    assert {video_of(i) for i in other["valid"].ids} != {video_of(i) for i in mosi["valid"].ids}
    assert len({video_of(i) for i in other["valid"].ids}) == 5
    assert torch.equal(other["test"].labels, mosi["test"].labels)


def test_standard_folds_refused(shared_data: Path) -> None:
    with pytest.raises(LeakageError, match="leak") as err:
        build_dataset("mosi-u", str(shared_data / "mosi"), {"split": "standard"})
    msg = str(err.value)
    assert "\n" not in msg
    folds = json.loads((shared_data / "folds" / "cmu_mosi_std_folds.json").read_text())
    assert f"of the {len(folds['test'])} standard test videos" in msg
    assert "24 of the 31" in msg
    assert "split='bclstm'" in msg


def test_bad_params(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid_videos"):
        build_dataset("mosi-u", str(shared_data / "mosi"), {"valid_videos": 62})
    with pytest.raises(ConfigError, match="data.params.split"):
        build_dataset("mosi-u", str(shared_data / "mosi"), {"split": "random"})
    with pytest.raises(DataError, match="not found") as err:
        find_mosi_dir(tmp_path / "nowhere")
    assert "MMCPanda" in str(err.value)


def test_text_ridge_reproduces_reference(mosi: MultimodalDataset) -> None:
    """Text-only ridge on their split: README reference 77.9% Non0 accuracy; proves the id join is right."""
    from sklearn.linear_model import Ridge

    x_train = mosi["train"].features["text"][:, 0].numpy()
    y_train = mosi["train"].labels.numpy()
    x_test = mosi["test"].features["text"][:, 0].numpy()
    y_test = mosi["test"].labels.numpy()
    pred = Ridge(alpha=10.0).fit(x_train, y_train).predict(x_test)
    nonzero = y_test != 0
    acc = float(np.mean((pred[nonzero] > 0) == (y_test[nonzero] > 0)))
    assert 0.74 <= acc <= 0.82, acc
    # Shuffling the labels breaks the join: the same ridge drops to chance.
    rng = np.random.default_rng(0)
    shuffled = Ridge(alpha=10.0).fit(x_train, rng.permutation(y_train)).predict(x_test)
    assert float(np.mean((shuffled[nonzero] > 0) == (y_test[nonzero] > 0))) < 0.65


def test_default_path_resolution(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACCORD_DATA", str(shared_data))
    assert find_mosi_dir() == shared_data / "mosi"
    monkeypatch.setenv("ACCORD_DATA", str(tmp_path / "empty"))
    # an explicit ACCORD_DATA is never passed over (issue 14): no fallback to ../shared/data
    with pytest.raises(DataError, match=f"^ACCORD_DATA={tmp_path / 'empty'}: no MOSI-U data there"):
        find_mosi_dir()
    monkeypatch.delenv("ACCORD_DATA")
    # unset: the repository-relative ../shared/data/mosi (or every path tried)
    import accord.data.mosi_u as mod

    repo_relative = Path(mod.__file__).resolve().parents[3].parent / "shared" / "data" / "mosi"
    if (repo_relative / "bclstm").is_dir():
        assert find_mosi_dir().resolve() == repo_relative.resolve()
    else:
        with pytest.raises(DataError, match="tried"):
            find_mosi_dir()
