"""Self-MM (Yu et al., AAAI 2021): ULGM's equations on hand-computed numbers, its memory, and a training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from accord.balance.ulgm import ULGMHook
from accord.config import load_config
from accord.core.errors import ConfigError, DataError
from accord.core.hooks import StepState
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.data.safe import save_dataset
from accord.models import create_model, list_models
from accord.models.self_mm import (
    EPS,
    TASKS,
    LabelMemory,
    SelfMM,
    class_centres,
    momentum_update,
    relative_distance,
    shifted_label,
    stacked_class_centres,
    unimodal_weights,
)
from accord.objectives.task import reduce_losses
from accord.training.trainer import Trainer
from conftest import tiny_dataset
from test_models import TINY_DIMS, check_output, make_batch, repad


def tiny_model(**params: object) -> SelfMM:
    torch.manual_seed(0)
    model = create_model("self_mm", TINY_DIMS, 1, post_fusion_dim=2, post_unimodal_dim=2, **params)
    assert isinstance(model, SelfMM)
    return model


def fake_step(ids: list[str], y_m: list[float], reps: dict[str, list[list[float]]],
              present: list[list[bool]] | None = None) -> tuple[Batch, ModelOutput]:
    """A batch and a training-mode output carrying hand-chosen representations F_t* (2-D)."""
    b = len(ids)
    batch = make_batch({m: [1] * b for m in MODALITIES}, TINY_DIMS)
    batch.ids, batch.label = list(ids), torch.tensor(y_m)
    if present is not None:
        batch.present = torch.tensor(present)
    out = ModelOutput(prediction=torch.zeros(b), diagnostics={
        "repr_fusion": torch.tensor(reps["fusion"], dtype=torch.float32),
        "repr_unimodal": torch.tensor([reps[m] for m in MODALITIES], dtype=torch.float32).transpose(0, 1)})
    return batch, out


# ----------------------------------------------------------------------------------- the equations by hand
def test_class_centres_by_hand() -> None:
    """Eq. 6: means of the positive / negative samples; a label of exactly 0 belongs to neither."""
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [10.0, 10.0]])
    centres = class_centres(feats, torch.tensor([1.0, 2.0, -1.0, 0.0]))
    assert centres is not None
    torch.testing.assert_close(centres[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(centres[1], torch.tensor([0.0, 4.0]))
    assert class_centres(feats, torch.tensor([1.0, 2.0, 3.0, 0.0])) is None  # no negative class
    kept = class_centres(feats, torch.tensor([1.0, 2.0, -1.0, -3.0]), torch.tensor([False, True, True, True]))
    assert kept is not None  # only the kept rows count: C^p = row 1, C^n = mean of rows 2 and 3
    torch.testing.assert_close(kept[0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(kept[1], torch.tensor([5.0, 7.0]))
    assert class_centres(feats, torch.tensor([1.0, 2.0, -1.0, 0.0]), torch.tensor([True, True, False, True])) is None


def test_relative_distance_by_hand() -> None:
    """Eqs. 7-8 at F = (1, 1), C^p = (1, 0), C^n = (0, 4): d_p = 1, d_n = sqrt(10)."""
    centres = (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 4.0]))
    f = torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(relative_distance(f, centres, "l2"), torch.tensor([math.sqrt(10.0) - 1.0]))
    # squared / sqrt(d): D_p = 1/sqrt(2), D_n = 10/sqrt(2) -> alpha = (10 - 1) / 1 = 9
    torch.testing.assert_close(relative_distance(f, centres, "squared"), torch.tensor([9.0]))


def test_shifted_label_by_hand() -> None:
    """Eq. 11: y_s = (y_m alpha_s / alpha_m + y_m + alpha_s - alpha_m) / 2, clipped to [-H, H]."""
    y = shifted_label(torch.tensor([2.0, 2.0, -1.0]), torch.tensor([1.0, 0.1, 2.0]), torch.tensor([0.5, 2.0, 2.0]),
                      bound=3.0)
    # (2*0.5 + 2 + 0.5 - 1)/2 = 1.25; (2*20 + 2 + 1.9)/2 = 21.95 -> 3; equal alphas -> y_m
    torch.testing.assert_close(y, torch.tensor([1.25, 3.0, -1.0]))
    unclipped = shifted_label(torch.tensor([2.0]), torch.tensor([0.1]), torch.tensor([2.0]))
    torch.testing.assert_close(unclipped, torch.tensor([21.95]))


def test_momentum_update_by_hand() -> None:
    """Eq. 12: y^(n) = (n-1)/(n+1) y^(n-1) + 2/(n+1) y^n, i.e. the average of y^j weighted by j."""
    torch.testing.assert_close(momentum_update(torch.tensor([1.0]), torch.tensor([-2.0]), 2), torch.tensor([-1.0]))
    torch.testing.assert_close(momentum_update(torch.tensor([1.0]), torch.tensor([-2.0]), 3), torch.tensor([-0.5]))
    a, b, c = torch.tensor([0.3]), torch.tensor([-1.2]), torch.tensor([2.4])
    y3 = momentum_update(momentum_update(a, b, 2), c, 3)
    torch.testing.assert_close(y3, (1 * a + 2 * b + 3 * c) / 6)
    with pytest.raises(ValueError, match="epoch 2"):
        momentum_update(a, b, 1)


def test_unimodal_weights_by_hand() -> None:
    """Eq. 13: W_s = tanh(|y_s - y_m|)."""
    w = unimodal_weights(torch.tensor([1.5, -1.0, 1.0, 0.0]), torch.tensor([1.0, -1.0, -1.0, 0.0]))
    torch.testing.assert_close(w, torch.tensor([0.46211716, 0.0, 0.96402758, 0.0]))


# ----------------------------------------------------------------------------------- ULGM memory
def test_ulgm_step_generates_the_hand_computed_label() -> None:
    """Epoch 1 stores 2-D representations of a, b, c; an epoch-2 step of ``a`` then gives y_text = (sqrt 2 - 1)/2.

    Fusion centres C^p = (1, 0) [a, c], C^n = (1, 4) [b]; text centres C^p = (0, 1), C^n = (3, 1). Epoch 2, sample
    ``a`` (y_m = 1): F_m = (1, 1): d_p = 1, d_n = 3, alpha_m = 2; F_t = (0, 4): d_p = 3, d_n = 3 sqrt 2,
    alpha_t = sqrt 2 - 1. Eq. 11: y_t^2 = (alpha_t / 2 + 1 + alpha_t - 2) / 2 = 0.75 alpha_t - 0.5. Eq. 12 (n = 2):
    y_t^(2) = 1/3 * 1 + 2/3 * y_t^2 = alpha_t / 2.
    """
    model = tiny_model().train()
    first = {"fusion": [[0, 0], [1, 4], [2, 0]], "text": [[0, 0], [3, 1], [0, 2]],
             "audio": [[0, 0], [3, 1], [0, 2]], "visual": [[0, 0], [3, 1], [0, 2]]}
    logs = model.ulgm_step(*fake_step(["a", "b", "c"], [1.0, -1.0, 2.0], first), epoch=1)
    mem = model.memory
    assert len(mem) == 3 and mem.first_epoch == 1
    for m in MODALITIES:  # epoch 1 never changes the labels (y_s^(1) = y_m)
        torch.testing.assert_close(mem.labels[m], torch.tensor([1.0, -1.0, 2.0]))
    assert logs == {f"ulgm_drift_{m}": 0.0 for m in MODALITIES}
    # epoch 2, sample a; audio missing for it: its label and stored features stay
    second = {"fusion": [[1, 1]], "text": [[0, 4]], "audio": [[9, 9]], "visual": [[0, 4]]}
    logs = model.ulgm_step(*fake_step(["a"], [1.0], second, present=[[True, False, True]]), epoch=2)
    expected = (math.sqrt(2.0) - 1.0) / 2.0
    for m in ("text", "visual"):
        torch.testing.assert_close(mem.labels[m], torch.tensor([expected, -1.0, 2.0]))
    torch.testing.assert_close(mem.labels["audio"], torch.tensor([1.0, -1.0, 2.0]))
    torch.testing.assert_close(mem.labels["fusion"], torch.tensor([1.0, -1.0, 2.0]))  # y_m is never changed
    torch.testing.assert_close(mem.features["fusion"][0], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(mem.features["audio"][0], torch.tensor([0.0, 0.0]))
    assert logs["ulgm_drift_text"] == pytest.approx((1.0 - expected) / 3, abs=1e-6)
    assert logs["ulgm_drift_audio"] == 0.0


def test_stacked_class_centres_equal_each_tasks_own() -> None:
    """Tasks along a leading dimension: each task's centres are its own rows' (Eq. 6), ``defined`` False where a class
    is empty (then ``class_centres`` gives None)."""
    feats = torch.tensor([[[1.0, 0.0], [0.0, 4.0], [3.0, 2.0]], [[2.0, 2.0], [5.0, 1.0], [1.0, 1.0]]])
    labels = torch.tensor([[1.0, -2.0, 3.0], [1.0, 0.0, 2.0]])  # task 1 has no negative row
    keep = torch.tensor([[True, True, False], [True, True, True]])
    pos, neg, defined = stacked_class_centres(feats, labels, keep)
    assert defined.tolist() == [True, False]
    torch.testing.assert_close(pos[0], torch.tensor([1.0, 0.0]))  # row 2 is not kept
    torch.testing.assert_close(neg[0], torch.tensor([0.0, 4.0]))
    torch.testing.assert_close(pos[1], torch.tensor([1.5, 1.5]))
    single = class_centres(feats[0], labels[0], keep[0])
    assert single is not None and torch.equal(single[0], pos[0]) and torch.equal(single[1], neg[0])
    assert class_centres(feats[1], labels[1], keep[1]) is None


def test_a_unimodal_task_without_both_classes_keeps_its_labels_while_the_others_update() -> None:
    """Visual is missing for the only negative sample in epoch 1, so its stored rows have no negative class: in
    epoch 2 its labels stay (no centre), while text's label is regenerated as in the hand-computed test."""
    model = tiny_model().train()
    first = {"fusion": [[0, 0], [1, 4], [2, 0]], "text": [[0, 0], [3, 1], [0, 2]],
             "audio": [[0, 0], [3, 1], [0, 2]], "visual": [[0, 0], [3, 1], [0, 2]]}
    model.ulgm_step(*fake_step(["a", "b", "c"], [1.0, -1.0, 2.0], first,
                               present=[[True, True, True], [True, True, False], [True, True, True]]), epoch=1)
    mem = model.memory
    assert mem.stored["visual"].tolist() == [True, False, True]
    second = {"fusion": [[1, 1]], "text": [[0, 4]], "audio": [[0, 4]], "visual": [[0, 4]]}
    model.ulgm_step(*fake_step(["a"], [1.0], second), epoch=2)
    expected = (math.sqrt(2.0) - 1.0) / 2.0
    for m in ("text", "audio"):
        torch.testing.assert_close(mem.labels[m], torch.tensor([expected, -1.0, 2.0]))
    torch.testing.assert_close(mem.labels["visual"], torch.tensor([1.0, -1.0, 2.0]))
    torch.testing.assert_close(mem.features["visual"][0], torch.tensor([0.0, 4.0]))  # its features are stored
    assert mem.uni_labels.data_ptr() == mem.labels["text"].data_ptr()  # the per-task entries are views


def test_labels_wait_for_update_start_and_a_full_epoch_of_memory() -> None:
    """No label update before ``update_start_epoch``, nor in the first epoch the memory sees (e.g. after resume)."""
    reps = {"fusion": [[0, 0], [1, 4], [2, 0]], "text": [[0, 4], [3, 1], [0, 2]],
            "audio": [[0, 4], [3, 1], [0, 2]], "visual": [[0, 4], [3, 1], [0, 2]]}
    step = fake_step(["a", "b", "c"], [1.0, -1.0, 2.0], reps)
    late = tiny_model(update_start_epoch=3).train()
    late.ulgm_step(*step, epoch=1)
    late.ulgm_step(*step, epoch=2)
    torch.testing.assert_close(late.memory.labels["text"], torch.tensor([1.0, -1.0, 2.0]))
    late.ulgm_step(*step, epoch=3)
    assert not torch.equal(late.memory.labels["text"], torch.tensor([1.0, -1.0, 2.0]))
    resumed = tiny_model().train()  # memory starts at epoch 5 (a resumed run): epoch 5 only fills it
    resumed.ulgm_step(*step, epoch=5)
    torch.testing.assert_close(resumed.memory.labels["text"], torch.tensor([1.0, -1.0, 2.0]))
    resumed.ulgm_step(*step, epoch=6)
    assert not torch.equal(resumed.memory.labels["text"], torch.tensor([1.0, -1.0, 2.0]))


def test_memory_is_not_updated_in_eval_mode() -> None:
    model = tiny_model().train()
    batch = make_batch({m: [2, 3, 1] for m in MODALITIES}, TINY_DIMS)
    batch.ids = ["t0", "t1", "t2"]
    model.ulgm_step(batch, model(batch), epoch=1)
    model.ulgm_step(batch, model(batch), epoch=2)
    snapshot = {t: (model.memory.features[t].clone(), model.memory.labels[t].clone()) for t in TASKS}
    model.eval()
    other = make_batch({m: [2, 3, 1] for m in MODALITIES}, TINY_DIMS, seed=5)
    for b, ids in ((batch, ["t0", "t1", "t2"]), (other, ["v0", "v1", "v2"])):
        b.ids = ids
        with torch.no_grad():
            out = model(b)
        assert not out.losses and not any(k.startswith("repr_") for k in out.diagnostics)
        assert model.ulgm_step(b, out, epoch=3) == {}
        hook = ULGMHook()
        hook.on_fit_start(model, StepState(seed=0))
        assert hook.after_backward(model, b, out, StepState(seed=0, epoch=3)) == {}
    assert sorted(model.memory.index) == ["t0", "t1", "t2"]  # no valid/test id ever entered
    for t in TASKS:
        torch.testing.assert_close(model.memory.features[t], snapshot[t][0])
        torch.testing.assert_close(model.memory.labels[t], snapshot[t][1])


# ----------------------------------------------------------------------------------- the model contract
def test_unimodal_losses_are_weighted_per_sample() -> None:
    """uni_<m> = tanh(|y_s - y_m|) |y^_s - y_s| per sample (the trainer takes the batch mean; per sample since
    issue 17, so sample weights reach it) with the memory's labels; 0 where the modality is missing."""
    model = tiny_model().train()
    batch = make_batch({"text": [2, 3, 1], "audio": [1, 0, 2], "visual": [3, 1, 2]}, TINY_DIMS)
    batch.ids, batch.label = ["a", "b", "c"], torch.tensor([1.0, -1.0, 0.5])
    out = model(batch)
    assert all(bool((out.losses[f"uni_{m}"] == 0).all()) for m in MODALITIES)  # y_s = y_m before any update
    model.memory.rows(batch.ids, batch.label)
    model.memory.labels["text"][:] = torch.tensor([1.5, -1.0, -0.5])
    model.memory.labels["audio"][:] = torch.tensor([3.0, 2.0, 0.5])
    torch.manual_seed(1)
    out = model(batch)
    y_hat = out.diagnostics["unimodal_text"]
    zero = y_hat.new_zeros(())
    expected = torch.stack([0.46211716 * (y_hat[0] - 1.5).abs(), zero, 0.76159416 * (y_hat[2] + 0.5).abs()])
    torch.testing.assert_close(out.losses["uni_text"], expected)
    y_hat = out.diagnostics["unimodal_audio"]  # sample b has no audio: weight 0 despite |3 - ...|
    torch.testing.assert_close(out.losses["uni_audio"], torch.stack([0.96402758 * (y_hat[0] - 3.0).abs(), zero, zero]))
    assert bool((out.losses["uni_visual"] == 0).all())


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("self_mm", TINY_DIMS, 1).train()
    assert isinstance(model, SelfMM)
    lengths = {"text": [9, 4, 12, 7, 2, 10], "audio": [31, 17, 24, 9, 40, 3], "visual": [22, 40, 13, 31, 8, 27]}
    batch = make_batch(lengths, TINY_DIMS)
    batch.ids = [f"s{i}" for i in range(6)]
    model.memory.rows(batch.ids, batch.label)
    for m in MODALITIES:
        model.memory.labels[m] += torch.linspace(-1.0, 1.0, 6)
    out = model(batch)
    loss = F.l1_loss(out.prediction, batch.label) + sum(reduce_losses(out.losses).values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_contract_shapes_padding_missing_and_errors() -> None:
    assert "self_mm" in list_models()
    model = create_model("self_mm", TINY_DIMS, 1).eval()
    lengths = {"text": [5, 2, 3, 4], "audio": [0, 3, 4, 2], "visual": [3, 1, 0, 2]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        out, padded = model(batch), model(repad(batch, extra=5, noise=True))
    check_output(out, 4, 1)
    assert set(out.diagnostics) == {f"unimodal_{m}" for m in MODALITIES}
    assert out.features["audio"][0].abs().sum() == 0
    torch.testing.assert_close(padded.prediction, out.prediction, atol=1e-5, rtol=1e-5)
    check_output(model.train()(batch), 4, 1)  # train mode without ids: labels = y_m, no memory needed
    with pytest.raises(ConfigError, match="regression only"):
        create_model("self_mm", TINY_DIMS, 3)
    with pytest.raises(ConfigError, match=r"model\.params\.distance"):
        create_model("self_mm", TINY_DIMS, 1, distance="cosine")
    cfg = load_config(method="self_mm", dataset="conflictbench")
    assert cfg.loss_weights == {"task": 1.0, **{f"uni_{m}": 1.0 for m in MODALITIES}}


def test_training_run_builds_the_memory_and_writes_the_generated_labels(tmp_path: Path) -> None:
    """The one trainer trains Self-MM through its hook: labels drift from epoch 2, only training ids in memory."""
    cfg = load_config(method="self_mm", dataset="conflictbench", overrides=[
        "data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.batch_size=16",
        "train.epochs=3", "train.num_threads=1", "train.early_stopping.patience=10", "model.params.hidden=16",
        f"output.dir={tmp_path}", "name=run"])
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    assert summary["test"]["MAE"]["n"] == 1 and np.isfinite(summary["test"]["MAE"]["mean"])
    sd = tmp_path / "run" / "seed_0"
    epochs = [json.loads(x) for x in (sd / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e[f"loss/uni_{m}"] == 0.0 and e[f"ulgm_drift_{m}"] == 0.0 for e in epochs[:1] for m in MODALITIES)
    assert all(epochs[2][f"loss/uni_{m}"] > 0 and epochs[2][f"ulgm_drift_{m}"] > 0 for m in MODALITIES)
    labels = np.load(sd / "ulgm_labels.npz")
    train = trainer.dataset["train"]
    assert sorted(labels["id"].tolist()) == sorted(train.ids)
    y = dict(zip(train.ids, train.labels.tolist(), strict=True))
    np.testing.assert_allclose(labels["label_multimodal"], [y[i] for i in labels["id"]], atol=1e-6)
    for m in MODALITIES:
        drift = np.abs(labels[f"label_{m}"] - labels["label_multimodal"])
        assert drift.max() > 0 and np.abs(labels[f"label_{m}"]).max() <= 3.0 + 1e-6
    diag = np.load(sd / "diagnostics.npz")
    for split in ("valid", "test"):
        for m in MODALITIES:
            values = diag[f"{split}/unimodal_{m}"]
            assert values.shape == (32,) and np.isfinite(values).all()
        assert not any(k.startswith(f"{split}/repr_") for k in diag.files)


def test_memory_gives_a_repeated_id_one_row() -> None:
    model = tiny_model()
    rows = model.memory.rows(["a", "b", "a"], torch.tensor([1.0, -2.0, 1.0]))
    assert rows.tolist() == [0, 1, 0] and len(model.memory) == 2
    torch.testing.assert_close(model.memory.labels["text"], torch.tensor([1.0, -2.0]))
    assert model.memory.features["fusion"].shape == (2, 2)
    looked = model.memory.lookup(["b", "zz"], torch.tensor([5.0, 0.7]))
    torch.testing.assert_close(looked["audio"], torch.tensor([-2.0, 0.7]))  # unknown id -> its own y_m


def test_memory_can_no_longer_merge_two_samples_the_dataset_refuses_them(tmp_path: Path) -> None:
    """Issue 14: the memory is keyed by id, so two samples sharing one were merged (the second started from the
    first one's label). Every dataset is now refused at load (and never written) when an id repeats."""
    ds = tiny_dataset(n=6)
    train = ds["train"]
    train.labels[:2] = torch.tensor([2.0, -2.0])
    train.ids[1] = train.ids[0]
    merged = tiny_model().memory
    for batch in train.iter_batches(4):
        merged.rows(batch.ids, batch.label)
    assert len(merged) == 5 and merged.labels["text"][0].item() == 2.0  # what used to happen to sample 1
    with pytest.raises(DataError, match=r"^<memory>: 1 sample id used more than once: 'train_0' \(train, train\);"):
        ds.validate()
    with pytest.raises(DataError, match=r"'train_0' \(train, train\)"):
        save_dataset(ds, tmp_path / "ds")
    train.ids[1] = "train_1"
    memory = tiny_model().memory
    for batch in ds.validate()["train"].iter_batches(4):
        memory.rows(batch.ids, batch.label)
    assert len(memory) == 6 and memory.labels["text"][:2].tolist() == [2.0, -2.0]  # each from its own label


# ----------------------------------------- Eqs. 6-11 on batches (written after the mutation run over self_mm.py)
def test_relative_distance_is_per_row_on_a_batch() -> None:
    """Eqs. 7-8 row by row on ``[B, d]`` with B = 3 != d = 2: each row's own distances (a sum or norm over the
    whole batch, or over the wrong axis, fails), and a row ON the positive centre (D^p = 0) gets
    alpha = D^n / eps > 0 (the eps guard keeps the sign)."""
    centres = (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 4.0]))
    f = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    # l2: row 0 d_p 1, d_n sqrt(10); row 1 d_p 2, d_n sqrt(17); row 2 d_p 0, d_n sqrt(17)
    l2 = relative_distance(f, centres)  # the default is the released code's l2
    torch.testing.assert_close(l2[:2], torch.tensor([math.sqrt(10.0) - 1.0, (math.sqrt(17.0) - 2.0) / 2.0]))
    assert float(l2[2]) == pytest.approx(math.sqrt(17.0) / EPS, rel=1e-5)
    # squared / sqrt(2): row 1 D_p 4/sqrt(2), D_n 17/sqrt(2) -> alpha = 13/4 (a cube instead of a square: 3.5)
    sq = relative_distance(f, centres, "squared")
    torch.testing.assert_close(sq[:2], torch.tensor([9.0, 13.0 / 4.0]))
    assert float(sq[2]) == pytest.approx(17.0 / math.sqrt(2.0) / EPS, rel=1e-5)


def test_shifted_label_keeps_its_sign_when_alpha_m_is_zero() -> None:
    """Eq. 11's eps guard: alpha_m = 0 gives y_m·alpha_s/eps (large, the sign of y_m·alpha_s), not a flip."""
    y = shifted_label(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert float(y) == pytest.approx(0.5 * (1.0 / EPS + 2.0), rel=1e-6)


def test_label_memory_centres_use_only_the_stored_rows() -> None:
    """Eq. 6 over the rows whose representation was stored: in the first epoch a sample without the modality has
    no stored row and must not pull the centres (its placeholder row is zeros)."""
    mem = LabelMemory({"fusion": 2, "text": 2, "audio": 2, "visual": 2})
    rows = mem.rows(["a", "b", "c", "d"], torch.tensor([1.0, -1.0, 2.0, -2.0]))
    mem.features["audio"][rows[:3]] = torch.tensor([[2.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
    mem.stored["audio"][rows[:3]] = True  # "d" has no audio
    pos, neg = mem.centres("audio")  # type: ignore[misc]
    torch.testing.assert_close(pos, torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(neg, torch.tensor([0.0, 2.0]))  # d's zero row left out: not (0, 1)
    mem.stored["audio"][rows[3]] = True
    _, neg_all = mem.centres("audio")  # type: ignore[misc]
    torch.testing.assert_close(neg_all, torch.tensor([0.0, 1.0]))


def test_fusion_centres_from_the_kept_indicators_equal_eq6_over_the_stored_rows() -> None:
    """The multimodal centres ULGM reads every step come from class indicators kept since each row was added
    (``fusion_member``): equal to Eq. 6 recomputed over the stored rows (a zero label in neither class, an unstored
    row left out, rows added later appended in order), bit for bit; None while a class is empty."""
    mem = LabelMemory({"fusion": 3, "text": 2, "audio": 2, "visual": 2})
    rows = mem.rows(["a", "b", "c", "d"], torch.tensor([1.5, 0.0, -2.0, 3.0]))
    assert mem.fusion_centres() is None  # nothing stored yet
    mem.features["fusion"][rows] = torch.tensor([[1.0, 2.0, 3.0], [9.0, 9.0, 9.0], [0.5, -1.0, 2.0],
                                                 [3.0, 0.0, -1.0]])
    mem.stored["fusion"][rows[:3]] = True  # "d" not stored: it must not pull the positive centre
    pos, neg = mem.fusion_centres()  # type: ignore[misc]
    torch.testing.assert_close(pos, torch.tensor([1.0, 2.0, 3.0]))  # "b" (label 0) in neither class
    torch.testing.assert_close(neg, torch.tensor([0.5, -1.0, 2.0]))
    more = mem.rows(["e", "a"], torch.tensor([-1.0, 1.5]))
    mem.features["fusion"][more[0]] = torch.tensor([1.5, 1.0, 0.0])
    mem.stored["fusion"][more[0]] = True
    mem.stored["fusion"][rows[3]] = True
    for got, want in zip(mem.fusion_centres(), mem.centres("fusion"), strict=True):  # type: ignore[arg-type]
        assert torch.equal(got, want)
    torch.testing.assert_close(mem.fusion_centres()[1], torch.tensor([1.0, 0.0, 1.0]))  # type: ignore[index]
