"""CP+SL: the backbone's contract, its ablation switches and a short training run through the one trainer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from accord.balance.cp import ConflictPenalty
from accord.config import load_config
from accord.core.errors import ConfigError
from accord.core.hooks import StepState, build_hook
from accord.core.types import MODALITIES, Batch
from accord.models import create_model, list_models
from accord.models.cpsl import CPSL
from accord.objectives.statistical import statistical_loss
from accord.training.trainer import Trainer

DIMS = {"text": 6, "audio": 4, "visual": 5}


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """Training with train.num_threads=1 (fast on a shared 2-core machine) sets torch's global thread count."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def batch(lengths: dict[str, list[int]], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = len(lengths["text"])
    feats, masks = {}, {}
    for m in MODALITIES:
        lens = torch.tensor(lengths[m])
        t = max(int(lens.max()), 1)
        mask = torch.arange(t).unsqueeze(0) < lens.unsqueeze(1)
        feats[m] = torch.randn(b, t, DIMS[m], generator=g) * mask.unsqueeze(-1)
        masks[m] = mask
    present = torch.stack([torch.tensor(lengths[m]) > 0 for m in MODALITIES], dim=1)
    return Batch(features=feats, mask=masks, present=present, label=torch.randn(b, generator=g) * 2)


FULL = {"text": [5, 2, 3, 4], "audio": [3, 6, 1, 2], "visual": [2, 2, 4, 1]}


def test_registered_with_its_config() -> None:
    assert "cpsl" in list_models()
    cfg = load_config(method="cpsl", dataset="conflictbench")
    assert cfg.model.name == "cpsl" and cfg.model.params["ablation"] == "full"
    with pytest.raises(ConfigError, match=r"model\.params\.ablation"):
        load_config(method="cpsl", dataset="conflictbench", overrides=["model.params.ablation=no_everything"])
    with pytest.raises(ConfigError, match=r"model\.params\.fusion_heads: 3 does not divide hidden=64"):
        create_model("cpsl", DIMS, 1, fusion_heads=3)


def test_forward_contract_gain_and_sl() -> None:
    torch.manual_seed(0)
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=8, fusion_heads=2)
    b = batch(FULL)
    out = model(b)
    assert out.prediction.shape == (4,)
    assert set(out.aux_predictions) == {f"unimodal_{m}" for m in MODALITIES}
    for k, m in enumerate(MODALITIES):
        # the fusion input: the gained sequence [B, T_m, d], zero at padding
        assert out.features[m].shape == (4, b.features[m].shape[1], 8) and out.features[m].requires_grad
        assert (out.features[m][~b.mask[m]] == 0).all()
        torch.testing.assert_close(out.aux_weights[f"unimodal_{m}"], b.present[:, k].float())
    torch.testing.assert_close(out.diagnostics["gain"], torch.ones(4, 3))  # a_m = 2 sigmoid(0) = 1 at init
    assert out.diagnostics["gate"].shape == (4, 2)
    # unweighted: the trainer multiplies it by loss_weights.sl (λ_sl, default 0.1) once
    torch.testing.assert_close(out.losses["sl"], statistical_loss(out.prediction, b.label))
    assert CPSL.default_loss_weights["sl"] == 0.1 and CPSL.default_loss_weights["cp"] == 1.0
    # every modality reaches the prediction through the fusion
    grads = torch.autograd.grad(out.prediction.sum(), [out.features[m] for m in MODALITIES])
    assert all(g.abs().sum() > 0 for g in grads)


def test_gain_and_gated_fusion_follow_the_equations() -> None:
    """Z_m = a_m · H_m with a_m = 2σ(w_mᵀh_m + b_m); F = Z_L + Σ_{m∈A,V} G_m ⊙ C_m with C_m = Attn(LN(Z_L), LN(Z_m))
    over m's real steps only, G_m = σ(W_m[Z_L; C_m] + b_m); prediction = head(masked mean of F over text)."""
    torch.manual_seed(0)
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=8, fusion_heads=2).eval()
    assert isinstance(model, CPSL)
    with torch.no_grad():  # gains away from 1: a_text = 2σ(log 3) = 1.5, a_audio = 2σ(-log 3) = 0.5
        model.gain["text"].bias.fill_(float(torch.log(torch.tensor(3.0))))
        model.gain["audio"].bias.fill_(-float(torch.log(torch.tensor(3.0))))
        model.gain["visual"].weight.normal_()
    b = batch(FULL, seed=1)
    feats, gains = model.encode(b)
    for k, m in enumerate(MODALITIES):
        enc = model.encoders[m](b.features[m], b.mask[m])
        a = 2 * torch.sigmoid(enc.pooled @ model.gain[m].weight.T + model.gain[m].bias).squeeze(-1)
        torch.testing.assert_close(gains[:, k], a)
        torch.testing.assert_close(feats[m], enc.seq * a.view(-1, 1, 1))
    torch.testing.assert_close(gains[:, 0], torch.full((4,), 1.5))
    torch.testing.assert_close(gains[:, 1], torch.full((4,), 0.5))
    zl = feats["text"]
    fused = zl.clone()
    for m in ("audio", "visual"):
        c = torch.stack([  # attention of each sample over m's REAL steps only, written per sample
            model.cross[m](model.ln_query(zl[i:i + 1]), model.ln_source[m](feats[m][i:i + 1, :n]))[0][0]
            for i, n in enumerate(b.mask[m].sum(1).tolist())])
        g = torch.sigmoid(torch.cat([zl, c], dim=-1) @ model.gate[m].weight.T + model.gate[m].bias)
        fused = fused + g * c
    tmask = b.mask["text"].unsqueeze(-1).float()
    pooled = (fused * tmask).sum(1) / tmask.sum(1)
    got_pooled, gates = model.fuse(feats, b.mask)
    torch.testing.assert_close(got_pooled, pooled)
    torch.testing.assert_close(model(b).prediction, model.head(pooled).squeeze(-1))
    # padding of audio/visual is never read: noise beyond the real steps changes nothing
    noisy = {m: torch.where(b.mask[m].unsqueeze(-1), b.features[m], torch.randn_like(b.features[m]) * 9)
             for m in MODALITIES}
    torch.testing.assert_close(model(Batch(**{**b.__dict__, "features": noisy})).prediction, model(b).prediction)


def test_missing_modalities_give_finite_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=8, fusion_heads=2)
    b = batch({"text": [5, 2, 0, 4], "audio": [0, 6, 1, 0], "visual": [2, 0, 4, 1]})
    out = model(b)
    loss = out.prediction.abs().mean() + out.losses["sl"] + sum(a.abs().mean() for a in out.aux_predictions.values())
    loss.backward()
    assert torch.isfinite(out.prediction).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("ablation", "has_sl", "penalty", "projection"), [
    ("full", True, True, True), ("no_cp", True, False, False), ("no_sl", False, True, False),
    ("no_projection", True, True, False), ("backbone", False, False, False)])
def test_ablation_switches(ablation: str, has_sl: bool, penalty: bool, projection: bool) -> None:
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=8, fusion_heads=2, ablation=ablation)
    assert ("sl" in model(batch(FULL)).losses) == has_sl
    requests = CPSL.required_hooks(model.params)
    assert len(requests) == int(penalty)
    if penalty:  # the model names the hook; the trainer builds it from the registry
        hook = build_hook(requests[0])
        assert isinstance(hook, ConflictPenalty) and hook.p.projection == projection
        assert hook.p.kappa == model.params.kappa  # type: ignore[attr-defined]
        assert hook.p.project_on == "always"  # METHODS §2: the projection is decided on every step


def test_sl_needs_regression() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.ablation: 'full' uses the statistical loss"):
        create_model("cpsl", DIMS, 3)
    out = create_model("cpsl", DIMS, 3, ablation="no_sl")(batch(FULL))
    assert out.prediction.shape == (4, 3) and "sl" not in out.losses


def test_penalty_is_differentiable_through_the_fusion() -> None:
    """CP's create_graph penalty back-propagates through the cross-attention (double backward) into the encoders."""
    torch.manual_seed(0)
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=8, fusion_heads=2, kappa=1.01)
    assert isinstance(model, CPSL)
    hook = build_hook(CPSL.required_hooks(model.params)[0])
    hook.on_fit_start(model, StepState(seed=0, task_loss="l1"))
    b = batch(FULL)
    out = model(b)
    cp = hook.extra_losses(model, b, out)["cp"]
    assert float(cp.detach()) > 0 and cp.requires_grad
    params = [model.cross["audio"].kv_proj.weight, model.encoders["text"].proj.weight, model.gain["audio"].weight]
    grads = torch.autograd.grad(cp, params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_training_logs_cp_and_sl(tmp_path: Path) -> None:
    cfg = load_config(method="cpsl", dataset="conflictbench", overrides=[
        "data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=32", "train.batch_size=16",
        "train.epochs=2", "train.num_threads=1", "model.params.hidden=16", "model.params.head_hidden=16",
        "model.params.kappa=1.05",
        f"output.dir={tmp_path}", "name=run", "train.hooks=[{name: grad_monitor}]"])
    summary = Trainer(cfg, progress=False).fit()
    assert summary["test"]["MAE"]["n"] == 1
    lines = [json.loads(x) for x in (tmp_path / "run" / "seed_0" / "log.jsonl").read_text().splitlines()]
    grad = [x for x in lines if x["type"] == "grad"]
    epoch = [x for x in lines if x["type"] == "epoch"]
    assert len(grad) == 8 and len(epoch) == 2
    # the model's CP hook ran before the monitor: its values are in the monitor's step lines
    assert all({"cp/penalty", "cp/conflict", "cp/projected", "loss/sl", "loss/cp", "cos/sl", "r/text"} <= set(x)
               for x in grad)
    assert all("cp/cos" in x for x in grad)  # the projection is considered on every step, conflict or not
    assert any(x["cp/conflict"] == 1.0 and x["loss/cp"] > 0 for x in grad)
    assert {"loss/sl", "loss/cp", "cp/conflict"} <= set(epoch[0])


def test_sl_correlation_and_head_widths_reach_the_model() -> None:
    torch.manual_seed(0)
    model = create_model("cpsl", DIMS, 1, hidden=8, head_hidden=12, fusion_heads=2, sl_correlation=True)
    b = batch(FULL)
    out = model(b)
    torch.testing.assert_close(out.losses["sl"], statistical_loss(out.prediction, b.label, correlation=True))
    assert not torch.allclose(out.losses["sl"], statistical_loss(out.prediction, b.label))
    assert isinstance(model, CPSL)
    assert model.head.net[0].out_features == 12
    assert all(model.unimodal[m].net[0].out_features == 12 for m in MODALITIES)
