"""Per-sample weights (``batch.extras["sample_weight"]``, QASA's quality scores) reach every loss term: the one
reduction of a per-sample loss, the weighted batch statistics (CMD, MISA's difference loss, CP+SL's SL), and
whole models, where a row of weight 0 must change no gradient and no parameter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from accord.config import load_config
from accord.core.types import MODALITIES, Batch
from accord.models import create_model, list_models
from accord.models.base import model_class
from accord.models.modules import Decoupling
from accord.models.self_mm import SelfMM
from accord.objectives.decoupling import cmd, misa_difference
from accord.objectives.statistical import statistical_loss
from accord.objectives.task import reduce_per_sample, task_loss
from accord.training.trainer import Trainer
from conftest import tiny_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"text": 6, "audio": 4, "visual": 5}
MODELS = list_models()


# ------------------------------------------------------------------------------------------------ the reduction


def test_reduce_per_sample_by_hand() -> None:
    loss, w = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 0.5])
    assert reduce_per_sample(loss, w).item() == pytest.approx((1 * 1 + 3 * 0.5) / 1.5)  # 5/3
    assert reduce_per_sample(loss, None).item() == pytest.approx(2.0)  # no weights: the plain mean
    assert reduce_per_sample(loss, torch.zeros(3)).item() == 0.0  # all weights 0: nothing counts, no NaN
    scalar = torch.tensor(4.0)
    assert reduce_per_sample(scalar, w) is scalar  # a batch-level loss is taken as it is
    # the task loss is the same reduction of the per-sample errors |ŷ - y|
    pred, y = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 3.0, 4.0])
    assert task_loss(pred, y, "l1", w).item() == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match=r"\[B\]"):
        reduce_per_sample(torch.ones(3, 2), w)
    with pytest.raises(ValueError, match="weights"):
        reduce_per_sample(loss, torch.ones(4))


# ------------------------------------------------------------------------------------ weighted batch statistics


def _rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 4, generator=g), torch.rand(6, 4, generator=g)
    return x, y, torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])


def _weights_select_and_count_rows(fn: Callable[..., torch.Tensor]) -> None:
    """0/1 weights give ``fn`` of the selected rows, all-ones the unweighted value, and a weight of 2 counts a row
    twice (weighted moments ``Σ w x^k / Σ w``)."""
    x, y, w = _rows()
    keep = w > 0
    torch.testing.assert_close(fn(x, y, weight=w), fn(x[keep], y[keep]))
    torch.testing.assert_close(fn(x, y, weight=torch.ones(6)), fn(x, y))
    w2 = torch.tensor([2.0, 1, 1, 1, 1, 1])
    torch.testing.assert_close(fn(x, y, weight=w2), fn(torch.cat([x, x[:1]]), torch.cat([y, y[:1]])))


def test_weighted_cmd_is_cmd_of_the_weighted_rows() -> None:
    _weights_select_and_count_rows(cmd)
    x, y, w = _rows()
    keep = w > 0
    # unweighted: CMD's hand value (shift of the mean only) is unchanged
    z = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert cmd(z, z + torch.tensor([3.0, 4.0])).item() == pytest.approx(5.0, abs=1e-5)
    assert cmd(x, y, weight=torch.zeros(6)).item() == 0.0
    # a weight-0 row has no gradient
    xg = x.clone().requires_grad_()
    cmd(xg, y, weight=w).backward()
    assert xg.grad is not None and (xg.grad[~keep] == 0).all() and (xg.grad[keep] != 0).any()


def test_weighted_misa_difference_is_the_difference_of_the_weighted_rows() -> None:
    _weights_select_and_count_rows(misa_difference)
    x, y, w = _rows()
    keep = w > 0
    # the unweighted hand value: unit rows ±e1 -> A^T A = [[4, 0], [0, 0]] -> 16 / 4
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert misa_difference(a, a).item() == pytest.approx(4.0, abs=1e-4)
    assert misa_difference(x, y, weight=torch.zeros(6)).item() == 0.0
    xg = x.clone().requires_grad_()
    misa_difference(xg, y, weight=w).backward()
    assert xg.grad is not None and (xg.grad[~keep] == 0).all() and (xg.grad[keep] != 0).any()


def test_weighted_statistical_loss() -> None:
    pred, y = torch.tensor([0.0, 2.0, 9.0, 4.0]), torch.tensor([1.0, 1.0, -5.0, 3.0])
    w = torch.tensor([1.0, 1.0, 0.0, 1.0])
    # rows 0, 1, 3: mean(ŷ) = 2, mean(y) = 5/3; std(ŷ) = sqrt(8/3), std(y) = sqrt(8/9)
    by_hand = abs(2 - 5 / 3) + abs((8 / 3) ** 0.5 - (8 / 9) ** 0.5)
    assert statistical_loss(pred, y, weight=w).item() == pytest.approx(by_hand, abs=1e-5)
    for corr in (False, True):
        torch.testing.assert_close(statistical_loss(pred, y, corr, weight=w),
                                   statistical_loss(pred[w > 0], y[w > 0], corr))
        torch.testing.assert_close(statistical_loss(pred, y, corr, weight=torch.ones(4)),
                                   statistical_loss(pred, y, corr))


# ---------------------------------------------------------------------------------------------- whole models


def _trainer(tmp_path: Path, name: str) -> Trainer:
    """A trainer of model ``name`` on a tiny dataset with every dropout of the model at 0 (CACR's ``private_drop``
    too: its random draws would differ between the two batches compared)."""
    fields = model_class(name).Params.model_fields
    no_dropout = [f"model.params.{k}=0.0" for k, f in fields.items()
                  if "drop" in k and isinstance(f.default, float)]
    cfg = load_config(method=name, overrides=[f"output.dir={tmp_path}", f"name={name}", *no_dropout])
    return Trainer(cfg, dataset=tiny_dataset(n=8), progress=False)


def _batch(tr: Trainer) -> Batch:
    """8 training rows; row 1 misses audio; rows 6 and 7 (the "generated" ones) are scaled far off the others."""
    batch = tr.dataset["train"].batch(torch.arange(8), trim=False)
    k = MODALITIES.index("audio")
    batch.mask["audio"][1] = False
    batch.features["audio"][1] = 0.0
    batch.present[1, k] = False
    for m in MODALITIES:
        batch.features[m][6:] *= 5.0
    return batch


def _grads(tr: Trainer, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    terms = tr.loss_terms(model, batch, model(batch))  # type: ignore[arg-type]
    terms["total"].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_rows_of_weight_zero_change_no_gradient(tmp_path: Path, name: str) -> None:
    """[real rows + rows of weight 0] gives exactly the gradients of [real rows] alone, in every parameter."""
    tr = _trainer(tmp_path, name)
    torch.manual_seed(0)
    model = tr.build_model().train()
    batch = _batch(tr)
    if isinstance(model, SelfMM):  # generated unimodal labels away from y_m, else its unimodal losses are all 0
        model.memory.rows(batch.ids, batch.label)
        for m in MODALITIES:
            model.memory.labels[m] += torch.linspace(-1.0, 1.0, 8)
    batch.extras["sample_weight"] = torch.tensor([1.0] * 6 + [0.0] * 2)
    real = batch.select(slice(0, 6))
    real.extras.pop("sample_weight")
    mixed, alone = _grads(tr, model, batch), _grads(tr, model, real)
    assert mixed.keys() == alone.keys() and len(alone) > 0
    for n in alone:
        torch.testing.assert_close(mixed[n], alone[n], atol=1e-6, rtol=1e-5, msg=lambda s, n=n: f"{n}: {s}")
    # the rows do count with weight 1 (so the comparison above can fail)
    batch.extras["sample_weight"] = torch.ones(8)
    counted = _grads(tr, model, batch)
    assert any(not torch.allclose(counted[n], alone[n], atol=1e-6) for n in alone)


@pytest.mark.parametrize("name", ["cacr", "misa", "ebmc"])
def test_a_step_on_rows_of_weight_zero_changes_no_parameter(tmp_path: Path, name: str) -> None:
    """Every row of weight 0: every gradient is zero (or absent) and an AdamW step leaves every parameter as is."""
    tr = _trainer(tmp_path, name)
    torch.manual_seed(0)
    model = tr.build_model().train()
    batch = _batch(tr)
    batch.extras["sample_weight"] = torch.zeros(8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    grads = _grads(tr, model, batch)
    assert grads and all(bool((g == 0).all()) for g in grads.values()), [n for n, g in grads.items() if g.any()]
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed == []


# ------------------------------------------------------------------------------------- per-sample model losses


def test_orthogonality_per_sample_and_its_batch_form() -> None:
    """L_o(i) = sum_m p_m(i) |cos(H_m, P_m)|; its batch mean equals the batch form only when all are present."""
    shared = {m: torch.zeros(2, 1, 3) for m in MODALITIES}
    private = {m: torch.zeros(2, 1, 3) for m in MODALITIES}
    for k, m in enumerate(MODALITIES):  # orthogonal everywhere ...
        shared[m][..., k] = 1.0
        private[m][..., (k + 1) % 3] = 1.0
    private["audio"][0, 0] = torch.tensor([0.0, 2.0, 0.0])  # ... but sample 0's audio: P parallel to H, |cos| = 1
    mask = {m: torch.ones(2, 1, dtype=torch.bool) for m in MODALITIES}
    torch.testing.assert_close(Decoupling.orthogonality(shared, private, mask, per_sample=True),
                               torch.tensor([1.0, 0.0]))
    assert Decoupling.orthogonality(shared, private, mask).item() == pytest.approx(0.5)  # = mean of [1, 0]
    mask["audio"] = torch.tensor([[True], [False]])  # sample 1 has no audio
    torch.testing.assert_close(Decoupling.orthogonality(shared, private, mask, per_sample=True),
                               torch.tensor([1.0, 0.0]))  # batch mean 0.5
    assert Decoupling.orthogonality(shared, private, mask).item() == pytest.approx(1.0)  # audio's mean over 1 sample


def test_misa_recon_is_per_sample() -> None:
    """recon(i) = mean over i's present modalities of the squared error averaged over valid steps and channels;
    with full-length rows and every modality present its mean is the former batch value."""
    torch.manual_seed(0)
    model = create_model("misa", TINY, 1).eval()
    full = {"text": [4, 4, 4], "audio": [8, 8, 8], "visual": [4, 4, 4]}
    ragged = {"text": [4, 2, 3], "audio": [8, 0, 5], "visual": [4, 1, 2]}  # row 1 without audio
    with torch.no_grad():
        for lengths in (full, ragged):
            batch = _synthetic_batch(lengths)
            x, shared, private, mask = model.decoupling(batch.features, batch.mask)
            per, old = torch.zeros(3, 3), []  # per [row, modality]
            for k, m in enumerate(MODALITIES):
                sq = (model.recon[m](shared[m] + private[m]) - x[m]).pow(2).mean(dim=-1)  # [B, T'], channel mean
                per[:, k] = (sq * mask[m]).sum(dim=1) / mask[m].sum(dim=1).clamp_min(1)
                old.append((sq * mask[m]).sum() / mask[m].sum())  # the former form: over the batch's valid steps
            present = torch.stack([mask[m].any(dim=1) for m in MODALITIES], dim=1)
            expected = (per * present).sum(dim=1) / present.sum(dim=1)
            recon = model(batch).losses["recon"]
            assert recon.shape == (3,)
            torch.testing.assert_close(recon, expected)
            if lengths is full:
                torch.testing.assert_close(recon.mean(), torch.stack(old).mean())
        assert expected[1].item() == pytest.approx(float((per[1, 0] + per[1, 2]) / 2))  # row 1: text, visual only


def _synthetic_batch(lengths: dict[str, list[int]]) -> Batch:
    g = torch.Generator().manual_seed(3)
    b = len(lengths["text"])
    feats, masks = {}, {}
    for m in MODALITIES:
        lens = torch.tensor(lengths[m])
        t = max(int(lens.max()), 1)
        masks[m] = torch.arange(t).unsqueeze(0) < lens.unsqueeze(1)
        feats[m] = torch.randn(b, t, TINY[m], generator=g) * masks[m].unsqueeze(-1)
    present = torch.stack([torch.tensor(lengths[m]) > 0 for m in MODALITIES], dim=1)
    return Batch(features=feats, mask=masks, present=present, label=torch.randn(b, generator=g))
