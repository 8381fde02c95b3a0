"""``data.pool_time``: modalities averaged over their valid steps once when a run loads its data (MMSA's
``need_normalized``), and the same pooled inputs again when the run is evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import accord
from accord.config import load_config
from accord.core.errors import ConfigError
from accord.data.dataset import MultimodalDataset, make_split
from accord.data.pool_time import pool_split, pool_time
from accord.data.registry import build_dataset
from accord.models.base import create_model
from accord.training.trainer import Trainer


def three_rows() -> MultimodalDataset:
    audio = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [0.0, 0.0]],   # length 2 -> mean (2, 4)
                          [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],   # length 0 (missing) -> stays missing, zero step
                          [[1.0, 1.0], [2.0, 2.0], [6.0, 0.0]]])  # length 3 -> mean (3, 1)
    feats = {"text": torch.ones(3, 2, 1), "audio": audio, "visual": torch.ones(3, 4, 1)}
    lengths = {"text": torch.tensor([2, 1, 2]), "audio": torch.tensor([2, 0, 3]), "visual": torch.tensor([4, 4, 1])}
    split = make_split(feats, torch.zeros(3), lengths=lengths, id_prefix="t")
    return MultimodalDataset("toy", {"train": split, "valid": split, "test": split})


def test_pooled_modality_is_one_step_holding_the_mean_of_the_valid_steps() -> None:
    ds = three_rows()
    out = pool_split(ds["train"], ["audio"])
    assert torch.equal(out.features["audio"], torch.tensor([[[2.0, 4.0]], [[0.0, 0.0]], [[3.0, 1.0]]]))
    assert out.lengths["audio"].tolist() == [1, 0, 1]
    assert out.features["text"] is ds["train"].features["text"]  # other modalities untouched, shared
    assert ds["train"].features["audio"].shape == (3, 3, 2)  # the input split is not changed


def test_prediction_time_pooling_equals_the_training_datas() -> None:
    """``accord predict``/``serve`` pool a batch (features.predict.pool_batch) as the run's data was pooled before
    training (pool_split): same one-step features, same masks."""
    from accord.features.predict import pool_batch

    part = three_rows()["train"]
    rows = torch.arange(3)
    live = pool_batch(part.batch(rows), ["audio"])
    trained = pool_split(part, ["audio"]).batch(rows)
    assert torch.equal(live.features["audio"], trained.features["audio"])
    assert torch.equal(live.features["audio"], torch.tensor([[[2.0, 4.0]], [[0.0, 0.0]], [[3.0, 1.0]]]))
    assert torch.equal(live.mask["audio"], trained.mask["audio"]) and live.mask["audio"].tolist() == [[True], [False],
                                                                                                       [True]]
    assert torch.equal(live.features["visual"], part.batch(rows).features["visual"])  # other modalities untouched


def test_pool_time_records_what_it_did_and_pooling_again_changes_nothing() -> None:
    ds = three_rows()
    once = pool_time(ds, ["audio", "visual"])
    assert once.meta["pool_time"] == ["audio", "visual"] and "pool_time" not in ds.meta
    assert once["test"].seq_lens() == {"text": 2, "audio": 1, "visual": 1}
    twice = pool_time(once, ["visual"])
    assert torch.equal(twice["test"].features["visual"], once["test"].features["visual"])
    assert pool_time(ds, []) is ds
    with pytest.raises(ValueError, match="unknown modalities"):
        pool_time(ds, ["smell"])


def test_a_linear_encoder_on_pooled_inputs_gives_the_full_sequence_result_in_eval_mode() -> None:
    """TFN with temporal=none, linear projection and mean pooling is linear up to the pooling, so averaging first
    (once) gives the same evaluation output; a temporal convolution does not commute with the mean (the check can
    fail)."""
    ds = build_dataset("conflictbench", params={"n_train": 16, "n_valid": 8, "n_test": 8})
    pooled = pool_time(ds, ["audio", "visual"])
    idx = torch.arange(8)
    for temporal, same in (("none", True), ("conv", False)):
        torch.manual_seed(0)
        model = create_model("tfn", ds.dims, 1, temporal=temporal).eval()
        with torch.no_grad():
            full = model(ds["test"].batch(idx)).prediction
            short = model(pooled["test"].batch(idx)).prediction
        assert torch.allclose(full, short, atol=1e-5) is same, temporal


def test_a_run_trains_and_is_evaluated_on_the_pooled_inputs(tmp_path: Path) -> None:
    cfg = load_config(method="tfn", dataset="conflictbench", overrides=[
        "data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.epochs=2",
        "train.seeds=[0]", "data.pool_time=[audio,visual]", f"output.dir={tmp_path}", "name=r"])
    trainer = Trainer(cfg, progress=False)
    assert trainer.dataset["train"].seq_lens()["audio"] == 1 and trainer.dataset["train"].seq_lens()["visual"] == 1
    assert trainer.dataset["train"].seq_lens()["text"] > 1
    summary = trainer.fit()
    res = accord.evaluate(cfg.run_dir, write=False)
    assert res["mean_std"]["MAE"]["mean"] == pytest.approx(summary["test"]["MAE"]["mean"], abs=1e-6)


def test_an_unknown_modality_in_pool_time_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.pool_time"):
        load_config(method="tfn", dataset="conflictbench", overrides=["data.pool_time=[smell]"])
