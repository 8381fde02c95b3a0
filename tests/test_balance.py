"""Modality balancing: the gradient monitor, CP's penalty and projection, SL, OGM-GE and AGM (hand-computed cases),
and the guarantee that monitoring alone does not change training."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from accord.balance.agm import AGM, AGMParams, agm_coefficient, agm_ratios
from accord.balance.cp import ConflictPenalty, CPParams, conflict_penalty, project_conflicting
from accord.balance.modality import (
    modality_parameters,
    modality_responses,
    present_rows,
    require_modality_parameters,
    shapley_responses,
    zero_modalities,
)
from accord.balance.monitor import GradMonitor, feature_grad_norms, imbalance_ratios
from accord.balance.ogm_ge import (
    OGMGE,
    OGMGEParams,
    classification_score,
    discrepancy_ratios,
    ogm_coefficient,
    regression_score,
)
from accord.config import load_config
from accord.core.errors import ConfigError
from accord.core.hooks import StepState
from accord.core.rundir import read_log
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models import create_model
from accord.objectives.statistical import statistical_loss
from accord.training.trainer import Trainer

TINY = ["data.params.n_train=96", "data.params.n_valid=48", "data.params.n_test=48",
        "train.batch_size=16", "train.epochs=2", "train.early_stopping.patience=10",
        "train.num_threads=1"]


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """Training with train.num_threads=1 (fast on a shared 2-core machine) sets torch's global thread count."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
DIMS = {"text": 2, "audio": 2, "visual": 2}  # equal widths: r_m = |w_m| / mean |w| in Additive


def make_batch(b: int = 4, present: Tensor | None = None, seed: int = 0) -> Batch:
    """T = 1 features of DIMS, all modalities present unless ``present`` says otherwise."""
    g = torch.Generator().manual_seed(seed)
    pres = torch.ones(b, 3, dtype=torch.bool) if present is None else present
    feats = {m: torch.randn(b, 1, d, generator=g) * pres[:, k].view(-1, 1, 1)
             for k, m in enumerate(MODALITIES) for d in [DIMS[m]]}
    mask = {m: pres[:, k].view(-1, 1).clone() for k, m in enumerate(MODALITIES)}
    return Batch(features=feats, mask=mask, present=pres, label=torch.randn(b, generator=g))


class Additive(nn.Module):
    """``ŷ = Σ_m w_m · sum(z_m)`` with ``z_m = u_m ⊙ x_m`` (T = 1): every gradient is known by hand.

    ``∂L/∂z_m = w_m · ∂L/∂ŷ`` per element, so ``g_m ∝ |w_m|`` and ``r_m = |w_m| / mean |w|``.
    """

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.u = nn.ParameterDict({m: nn.Parameter(torch.ones(DIMS[m])) for m in MODALITIES})
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: Batch) -> ModelOutput:
        z = {m: batch.features[m][:, 0] * self.u[m] for m in MODALITIES}
        pred = sum(self.w[k] * z[m].sum(dim=1) for k, m in enumerate(MODALITIES)) + self.bias
        assert isinstance(pred, Tensor)
        return ModelOutput(prediction=pred, features=z)


def state(**weights: float) -> StepState:
    return StepState(seed=0, task_kind="regression", task_loss="mse", loss_weights=weights)


# ---------------------------------------------------------------------------------------------- the monitor
def test_grad_norms_and_ratios_match_the_hand_computation() -> None:
    model = Additive([4.0, 1.0, 1.0])
    batch = make_batch()
    out = model(batch)
    loss = ((out.prediction - batch.label) ** 2).mean()
    norms, _, active = feature_grad_norms(loss, out.features, batch)
    dl = (2 * (out.prediction - batch.label) / batch.size).detach()  # ∂L/∂ŷ per sample
    for k, m in enumerate(MODALITIES):
        expected = abs([4.0, 1.0, 1.0][k]) * float(dl.norm()) * math.sqrt(DIMS[m])
        assert float(norms[m]) == pytest.approx(expected, rel=1e-5), m
    ratios = imbalance_ratios(norms, active)
    mean = sum(float(norms[m]) for m in MODALITIES) / 3
    assert float(ratios["text"]) == pytest.approx(float(norms["text"]) / mean, rel=1e-6)
    assert sum(float(v) for v in ratios.values()) == pytest.approx(3.0, rel=1e-6)


def test_missing_modality_rows_are_left_out_and_never_nan() -> None:
    model = Additive([1.0, 1.0, 1.0])
    pres = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    batch = make_batch(present=pres)
    out = model(batch)
    loss = (out.prediction - batch.label).abs().mean()
    norms, grads, _ = feature_grad_norms(loss, out.features, batch)
    # ∂L/∂z_audio has rows for the absent samples too (the model still uses their zero features): not counted
    assert grads["audio"][1].abs().sum() > 0
    assert float(norms["audio"]) == pytest.approx(float(grads["audio"][[0, 3]].norm()), rel=1e-5)
    # a modality missing from the whole batch: g = 0, r = 0, the others average to 1, no NaN anywhere
    none = torch.tensor([[1, 0, 1]] * 4, dtype=torch.bool)
    batch = make_batch(present=none)
    out = model(batch)
    norms, _, active = feature_grad_norms((out.prediction - batch.label).abs().mean(), out.features, batch)
    ratios = imbalance_ratios(norms, active)
    assert active == ["text", "visual"]
    assert float(norms["audio"]) == 0.0 and float(ratios["audio"]) == 0.0
    assert float(ratios["text"] + ratios["visual"]) == pytest.approx(2.0)
    assert all(math.isfinite(float(v)) for v in [*norms.values(), *ratios.values()])
    # all gradients zero (prediction exactly on the labels): ratios 0, not NaN
    zero = imbalance_ratios({m: torch.zeros(()) for m in MODALITIES}, list(MODALITIES))
    assert all(float(v) == 0.0 for v in zero.values())


def test_monitor_hook_measures_without_touching_gradients() -> None:
    model = Additive([3.0, 1.0, 1.0])
    batch = make_batch(b=6)
    mon = GradMonitor()
    st = state()
    mon.on_fit_start(model, st)
    out = model(batch)
    assert mon.extra_losses(model, batch, out) == {}
    assert all(p.grad is None for p in model.parameters())  # measuring does not accumulate .grad
    loss = ((out.prediction - batch.label) ** 2).mean()
    loss.backward()
    st.loss_terms = {"task": loss.detach(), "total": loss.detach()}
    logged = mon.after_backward(model, batch, out, st)
    assert logged["r/text"] == pytest.approx(3.0 / (5.0 / 3.0), rel=1e-5)  # r = |w| / mean |w|
    assert logged["conflict"] == 1.0 and logged["r_max"] > 1.5
    [line] = st.records  # the hook hands its line to the trainer, which writes it (hooks never write files)
    assert line["type"] == "grad" and line["step"] == 1 and line["dominant"] == "text"
    assert line["loss/task"] == pytest.approx(float(loss.detach()))


def test_monitoring_does_not_change_the_training_result(tmp_path: Path) -> None:
    base = ["name=run", "train.log_every_steps=0"]
    plain = Trainer(load_config(method="late_fusion", dataset="conflictbench",
                                overrides=[*TINY, *base, f"output.dir={tmp_path / 'a'}"]), progress=False).fit()
    cfg = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=[*TINY, *base, f"output.dir={tmp_path / 'b'}", "train.hooks=[{name: grad_monitor}]"])
    monitored = Trainer(cfg, progress=False).fit()
    assert monitored["test"] == plain["test"] and monitored["valid"] == plain["valid"]
    lines = read_log(tmp_path / "b" / "run" / "seed_0" / "log.jsonl", "grad")
    assert [x["step"] for x in lines] == list(range(1, 13))  # 2 epochs x 6 steps, every step
    assert {"g/text", "r/audio", "r_max", "conflict", "cos/unimodal_text", "loss/total"} <= set(lines[0])
    epoch = [json.loads(x) for x in (tmp_path / "b" / "run" / "seed_0" / "log.jsonl").read_text().splitlines()
             if json.loads(x)["type"] == "epoch"]
    assert epoch[0]["r/text"] == pytest.approx(sum(x["r/text"] for x in lines[:6]) / 6, rel=1e-6)
    # the same figure from the CLI
    from accord.cli import app

    res = CliRunner().invoke(app, ["plot", "gradients", str(tmp_path / "b" / "run"), "--out",
                                   str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(app, ["plot", "gradients", str(tmp_path / "a" / "run")])
    assert res.exit_code == 2 and "no gradient-monitor lines" in res.output


# ---------------------------------------------------------------------------------------------- CP
def test_penalty_is_zero_when_balanced_and_positive_past_kappa() -> None:
    assert float(conflict_penalty(torch.tensor([1.0, 1.0, 1.0]), 1.5)) == 0.0
    assert float(conflict_penalty(torch.tensor([2.4, 0.3, 0.3]), 1.5)) == pytest.approx(0.81)
    hook = ConflictPenalty(CPParams(kappa=1.5, projection=False))  # the loss is unweighted: λ_cp is the trainer's
    hook.on_fit_start(Additive([1.0] * 3), state())
    for w, expected in ([1.0, 1.0, 1.0], 0.0), ([4.0, 1.0, 1.0], 0.25):  # r = (2, .5, .5): relu(2 - 1.5)^2
        model = Additive(w)
        batch = make_batch()
        out = model(batch)
        cp = hook.extra_losses(model, batch, out)["cp"]
        assert float(cp.detach()) == pytest.approx(expected, abs=1e-6)
        if expected == 0.0:
            assert not cp.requires_grad  # no second-order graph on balanced steps
        else:
            # differentiable (create_graph): r_text = 3 w_t / Σw, dP/dw = 2 (r_t - κ) dr_t/dw = [1/6, -1/3, -1/3],
            # so a descent step lowers the dominant weight and raises the others
            (dw,) = torch.autograd.grad(cp, [model.w])
            torch.testing.assert_close(dw, torch.tensor([1 / 6, -1 / 3, -1 / 3]))
        hook.after_backward(model, batch, out, state())


def test_projection_removes_exactly_the_negative_cosine_component() -> None:
    (p,), cos = project_conflicting([torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])])
    assert cos == pytest.approx(-1 / math.sqrt(2))
    torch.testing.assert_close(p, torch.tensor([0.5, 0.5]))  # g - (g.r / |r|^2) r = [1,0] + 0.5 [-1,1]
    assert float(p @ torch.tensor([-1.0, 1.0])) == pytest.approx(0.0)
    (same,), cos = project_conflicting([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])])
    assert cos > 0
    torch.testing.assert_close(same, torch.tensor([1.0, 0.0]))  # agreeing gradients are left alone
    # several tensors form one vector: g = ([2], [0, 1]), r = ([-1], [0, 1]): g.r = -1, |r|^2 = 2
    g, cos = project_conflicting([torch.tensor([2.0]), torch.tensor([0.0, 1.0])],
                                 [torch.tensor([-1.0]), torch.tensor([0.0, 1.0])])
    assert cos == pytest.approx(-1 / (math.sqrt(5) * math.sqrt(2)))
    torch.testing.assert_close(g[0], torch.tensor([1.5]))
    torch.testing.assert_close(g[1], torch.tensor([0.0, 1.5]))


class WithSL(Additive):
    """:class:`Additive` plus an SL loss on the prediction (so the projection has something to protect)."""

    def forward(self, batch: Batch) -> ModelOutput:
        out = super().forward(batch)
        out.losses["sl"] = statistical_loss(out.prediction, batch.label)
        return out


def test_cp_hook_projects_the_dominant_task_gradient_off_sl() -> None:
    torch.manual_seed(0)
    found = False
    for seed in range(20):  # find a batch where the text task gradient conflicts with SL's on u_text
        model = WithSL([0.4, 0.1, 0.1])  # r_text = 2; a narrow prediction: SL wants it wider
        with torch.no_grad():
            model.u["text"].copy_(torch.tensor([1.0, -0.5]))
        batch = make_batch(b=6, seed=seed)
        hook = ConflictPenalty(CPParams(kappa=1.5, penalty=False))
        hook.on_fit_start(model, state())
        out = model(batch)
        hook.extra_losses(model, batch, out)
        task = ((out.prediction - batch.label) ** 2).mean()
        g_text = torch.autograd.grad(task, [model.u["text"]], retain_graph=True)[0]  # flows only through z_text
        g_sl = torch.autograd.grad(out.losses["sl"], [model.u["text"]], retain_graph=True)[0]
        (task + out.losses["sl"]).backward()
        before = model.u["text"].grad.clone()
        other = {n: p.grad.clone() for n, p in model.named_parameters() if n != "u.text"}
        logged = hook.after_backward(model, batch, out, state())
        if logged.get("cp/projected") != 1.0:
            torch.testing.assert_close(model.u["text"].grad, before)  # no conflict: nothing changes
            continue
        found = True
        assert logged["cp/cos"] < 0
        cos = float(g_text @ g_sl / (g_text.norm() * g_sl.norm()))
        assert logged["cp/cos"] == pytest.approx(cos, rel=1e-5)
        task_part = model.u["text"].grad - g_sl  # what remains of the task gradient after the edit
        assert float(task_part @ g_sl) == pytest.approx(0.0, abs=1e-5)  # orthogonal to SL now
        torch.testing.assert_close(task_part, g_text - (g_text @ g_sl) / (g_sl @ g_sl) * g_sl)
        for n, p in model.named_parameters():  # audio/visual/shared parameters untouched
            if n != "u.text":
                torch.testing.assert_close(p.grad, other[n])
        break
    assert found, "no batch produced a conflicting projection"


def balanced_sl_step(labels: list[float], project_on: Literal["always", "conflict"] | None = None) -> tuple[
        dict[str, float], Tensor]:
    """One step of :class:`WithSL` ``w = (1.2, 1.0, 0.8)``, ``u = 1``, with CP, ``λ_task = 2``, ``λ_sl = 0.5``;
    returns the hook's log and ``u_text.grad`` (``project_on`` None: the default). Text ``x = ([1, 0], [0, −1])``,
    audio/visual zero, so ``ŷ = (1.2 u_1, −1.2 u_2) = (1.2, −1.2)``; ``r_m = w_m / mean w = (1.2, 1.0, 0.8)``:
    balanced (κ = 1.5), no penalty, text dominant. On ``u_text`` (the only parameter both the text task gradient
    and SL reach), with ``∂ŷ/∂u_1 = (1.2, 0)``, ``∂ŷ/∂u_2 = (0, −1.2)``:
    task (MSE, ∂L/∂ŷ = ŷ − y): ``g = (1.2 (ŷ_1 − y_1), −1.2 (ŷ_2 − y_2))``;
    SL, for both label pairs used (mean 1 > mean ŷ = 0, std 2 > std ŷ = 1.2, so both |·| terms have sign −1):
    ``∂SL/∂ŷ = −(.5, .5) − (ŷ − mean ŷ)/(2·1.2) = −(.5, .5) − (.5, −.5) = (−1, 0)``, ``s = (−1.2, 0)``."""
    model = WithSL([1.2, 1.0, 0.8])
    feats = {"text": torch.tensor([[[1.0, 0.0]], [[0.0, -1.0]]]), "audio": torch.zeros(2, 1, 2),
             "visual": torch.zeros(2, 1, 2)}
    batch = Batch(features=feats, mask={m: torch.ones(2, 1, dtype=torch.bool) for m in MODALITIES},
                  present=torch.ones(2, 3, dtype=torch.bool), label=torch.tensor(labels))
    hook = ConflictPenalty(CPParams(kappa=1.5) if project_on is None else CPParams(kappa=1.5, project_on=project_on))
    st = state(task=2.0, sl=0.5)
    hook.on_fit_start(model, st)
    out = model(batch)
    cp = hook.extra_losses(model, batch, out)["cp"]
    task = ((out.prediction - batch.label) ** 2).mean()
    (2.0 * task + 0.5 * out.losses["sl"] + 0.1 * cp).backward()
    assert model.u["text"].grad is not None
    other = {n: p.grad.clone() for n, p in model.named_parameters() if n != "u.text" and p.grad is not None}
    logged = hook.after_backward(model, batch, out, st)
    for n, p in model.named_parameters():  # the edit touches only the shared parameters (u_text)
        if n in other:
            torch.testing.assert_close(p.grad, other[n])
    return logged, model.u["text"].grad


def test_cp_projects_on_a_balanced_step_when_the_cosine_is_negative() -> None:
    """METHODS §2: the projection is decided on EVERY step by the cosine, not only on norm-conflict steps."""
    # y = (−1, 3): g = 1.2·(2.2, 4.2) = (2.64, 5.04), s = (−1.2, 0): g·s = −3.168 < 0, cos = −2.64 / |g|
    # = −2.64 / sqrt(2.64² + 5.04²) = −2.64 / 5.689569 = −0.464007; PCGrad: g − (g·s/|s|²) s = g + 2.2 s = (0, 5.04)
    # (λ_sl scales s, not its direction). u_text.grad = 2·(0, 5.04) + 0.5·(−1.2, 0) = (−0.6, 10.08)
    logged, grad = balanced_sl_step([-1.0, 3.0])
    assert logged["cp/conflict"] == 0.0 and logged["cp/penalty"] == 0.0
    assert logged["cp/r_max"] == pytest.approx(1.2, rel=1e-5)
    assert logged["cp/projected"] == 1.0 and logged["cp/cos"] == pytest.approx(-0.464007, abs=1e-5)
    torch.testing.assert_close(grad, torch.tensor([-0.6, 10.08]))
    # the old rule (project only on conflict steps) leaves this step alone: 2·(2.64, 5.04) + 0.5·(−1.2, 0)
    logged, grad = balanced_sl_step([-1.0, 3.0], project_on="conflict")
    assert logged["cp/projected"] == 0.0 and "cp/cos" not in logged
    torch.testing.assert_close(grad, torch.tensor([4.68, 10.08]))


def test_cp_does_not_project_when_the_cosine_is_positive() -> None:
    # y = (3, −1): g = 1.2·(−1.8, 0.2) = (−2.16, 0.24), s = (−1.2, 0): g·s = 2.592 > 0, cos = 2.16 / |g|
    # = 2.16 / sqrt(2.16² + 0.24²) = 0.993884; u_text.grad = 2·(−2.16, 0.24) + 0.5·(−1.2, 0) = (−4.92, 0.48)
    logged, grad = balanced_sl_step([3.0, -1.0])
    assert logged["cp/conflict"] == 0.0 and logged["cp/projected"] == 0.0
    assert logged["cp/cos"] == pytest.approx(0.993884, abs=1e-5)
    torch.testing.assert_close(grad, torch.tensor([-4.92, 0.48]))


def test_cp_has_nothing_to_do_without_features_gradients_or_a_modality_that_reaches_the_prediction() -> None:
    batch = make_batch(b=4)
    bare = ModelOutput(prediction=torch.zeros(4, requires_grad=True))  # a model that exposes no features
    for penalty, want in ((True, {"cp": 0.0}), (False, {})):
        hook = ConflictPenalty(CPParams(penalty=penalty))
        hook.on_fit_start(Additive([1.0, 1.0, 1.0]), state())
        got = hook.extra_losses(Additive([1.0, 1.0, 1.0]), batch, bare)
        assert {k: float(v) for k, v in got.items()} == want
        assert hook.after_backward(Additive([1.0, 1.0, 1.0]), batch, bare, state()) == {}  # nothing measured
        model = Additive([1.0, 2.0, 3.0])
        with torch.no_grad():  # evaluation: no gradient to measure
            got = hook.extra_losses(model, batch, model(batch))
        assert {k: float(v) for k, v in got.items()} == want
    plain = ConflictPenalty(CPParams(penalty=False, projection=False))
    model = Additive([2.0, 1.0, 1.0])
    plain.on_fit_start(model, state())
    assert plain.extra_losses(model, batch, model(batch)) == {}  # no penalty term at all when it is off
    # features outside the graph (detached): no active modality, r_max 0, no conflict, no penalty, no projection
    model = Additive([2.0, 1.0, 1.0])
    out = model(batch)
    detached = ModelOutput(prediction=out.prediction, features={m: z.detach() for m, z in out.features.items()},
                           losses={"sl": out.prediction.std()})
    hook = ConflictPenalty(CPParams(kappa=1.2))
    hook.on_fit_start(model, state())
    got = hook.extra_losses(model, batch, detached)
    assert float(got["cp"]) == 0.0
    logged = hook.after_backward(model, batch, detached, state())
    assert logged == {"cp/penalty": 0.0, "cp/conflict": 0.0, "cp/r_max": 0.0, "cp/projected": 0.0}


# ---------------------------------------------------------------------------------------------- SL
def test_statistical_loss_on_a_hand_computed_batch() -> None:
    pred, y = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 2.0, 2.0, 4.0])
    # |2.5 - 2| + |sqrt(1.25) - sqrt(2)| = 0.5 + 0.296179
    assert float(statistical_loss(pred, y)) == pytest.approx(0.5 + math.sqrt(2) - math.sqrt(1.25), abs=1e-5)
    corr = 1.5 / (math.sqrt(1.25) * math.sqrt(2))  # cov 1.5
    assert float(statistical_loss(pred, y, correlation=True)) == pytest.approx(
        0.5 + math.sqrt(2) - math.sqrt(1.25) + 1 - corr, abs=1e-5)
    assert float(statistical_loss(y, y)) == pytest.approx(0.0, abs=1e-6)
    # a collapsed (constant) prediction is penalised by the label spread, with a finite gradient
    flat = torch.zeros(4, requires_grad=True)
    loss = statistical_loss(flat, y)
    assert float(loss.detach()) == pytest.approx(2.0 + math.sqrt(2), abs=1e-5)
    (g,) = torch.autograd.grad(loss, [flat])
    assert torch.isfinite(g).all()
    with pytest.raises(ValueError, match=r"two \[B\] tensors"):
        statistical_loss(torch.zeros(4, 2), torch.zeros(4))


# ---------------------------------------------------------------------------------------------- OGM-GE
def test_ogm_ge_coefficient_on_a_hand_case() -> None:
    # paper Eq. 10: k = 1 − tanh(α·ρ) for the dominant modality (ρ > 1); ρ = 1.2, α = 0.3:
    # tanh(0.36) = (e^0.72 − 1) / (e^0.72 + 1) = 1.054433 / 3.054433 = 0.345214, so k = 0.654786
    assert ogm_coefficient(1.2, 0.3) == pytest.approx(0.654786, abs=1e-6)
    assert ogm_coefficient(1.5, 0.5) == pytest.approx(1 - math.tanh(0.75))
    assert ogm_coefficient(0.9, 0.3) == 1.0 and ogm_coefficient(0.7, 0.5) == 1.0
    assert ogm_coefficient(1.0, 0.3) == 1.0 and ogm_coefficient(1.0, 3.0) == 1.0  # ρ = 1 does not lead
    # the jump at ρ = 1: just above it k = 1 − tanh(α) already (0.709 at α = 0.3), not ≈ 1
    assert ogm_coefficient(1.0 + 1e-9, 0.3) == pytest.approx(1 - math.tanh(0.3))
    # the continuous (non-paper) form, kept as an option: 1 − tanh(α·relu(ρ − 1))
    assert ogm_coefficient(1.2, 0.3, "continuous") == pytest.approx(1 - math.tanh(0.06))
    assert ogm_coefficient(0.9, 0.3, "continuous") == 1.0
    ratios = discrepancy_ratios({"text": 0.6, "audio": 0.3, "visual": 0.3})
    assert ratios == pytest.approx({"text": 2.0, "audio": 0.3 / 0.45, "visual": 0.3 / 0.45})
    assert regression_score(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0])) == pytest.approx(
        (1 + math.exp(-2)) / 2)


def test_ogm_ge_scores_ratios_and_window_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0], [0.0, 0.0]])  # rows (1/4, 3/4), (2/3, 1/3)
    assert classification_score(logits, torch.tensor([1, 0, 1])) == pytest.approx((0.75 + 2 / 3 + 0.5) / 3, abs=1e-6)
    assert regression_score(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])) == pytest.approx(
        (1 + math.exp(-2)) / 2, abs=1e-6)
    assert discrepancy_ratios({"text": 0.6, "audio": 0.2, "visual": 0.4}) == pytest.approx(
        {"text": 2.0, "audio": 0.4, "visual": 1.0})
    assert discrepancy_ratios({"text": 0.5, "audio": 0.0}) == {"text": 1.0, "audio": 0.0}  # others' mean 0: ρ = 1
    assert discrepancy_ratios({"text": 0.7}) == {"text": 1.0}
    hook = OGMGE(OGMGEParams(start_epoch=2, end_epoch=4))
    assert [hook.active(e) for e in range(5)] == [False, True, True, False, False]  # 1-based epochs 2 and 3
    assert OGMGE().active(0) and OGMGE().active(99)


class TwoGroups(nn.Module):
    """Parameters owned by text and audio, their gradients set by hand (forward unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(2))  # grad None: skipped, the rest still modulated
        self.const = nn.Parameter(torch.zeros(2))  # a constant gradient: std 0, no noise drawn for it
        self.w = nn.Parameter(torch.zeros(2))
        self.s = nn.Parameter(torch.zeros(1))  # one element: no std, no noise
        self.v = nn.Parameter(torch.zeros(3))

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"text": [self.unused, self.const, self.w, self.s], "audio": [self.v]}


@pytest.mark.parametrize("gaussian", [True, False])
def test_ogm_ge_generalization_enhancement_by_hand(gaussian: bool) -> None:
    """g ← k_m·g + N(0, std(g)²) per parameter, std of the gradient before scaling, noise drawn from a generator
    seeded with seed·1,000,003 + step in the order of the groups; k = 1 for a modality without a coefficient."""
    model = TwoGroups()
    grads = {"const": torch.tensor([2.0, 2.0]), "w": torch.tensor([1.0, -3.0]), "s": torch.tensor([4.0]),
             "v": torch.tensor([0.5, 1.5, -1.0])}
    for name, g in grads.items():
        getattr(model, name).grad = g.clone()
    hook = OGMGE(OGMGEParams(gaussian=gaussian))
    hook.on_fit_start(model, state())
    hook.coefficients = lambda *a: ({"text": 0.9, "audio": 0.3}, {"text": 0.5})  # type: ignore[method-assign]
    st = StepState(seed=3, task_kind="regression", task_loss="l1", loss_weights={}, epoch=0, step=7)
    log = hook.after_backward(model, make_batch(), ModelOutput(prediction=torch.zeros(4)), st)
    assert log == {"ogm/s_text": 0.9, "ogm/s_audio": 0.3, "ogm/k_text": 0.5}
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 7)
    want = {"const": grads["const"] * 0.5, "s": grads["s"] * 0.5}
    want["w"] = grads["w"] * 0.5 + (torch.randn(2, generator=gen) * grads["w"].std() if gaussian else 0)
    want["v"] = grads["v"] * 1.0 + (torch.randn(3, generator=gen) * grads["v"].std() if gaussian else 0)
    assert model.unused.grad is None
    for name, g in want.items():
        torch.testing.assert_close(getattr(model, name).grad, g, msg=name)


def test_ogm_ge_hook_scales_only_the_leading_encoder() -> None:
    torch.manual_seed(0)
    model = create_model("late_fusion", DIMS, 1)
    batch = make_batch(b=4)
    y = batch.label
    # text predicts the labels exactly, audio and visual are off by 1: s = (1, e^-1, e^-1), rho_text = e
    aux = {"unimodal_text": y.clone(), "unimodal_audio": y + 1, "unimodal_visual": y - 1}
    out = ModelOutput(prediction=y.clone(), aux_predictions=aux)
    hook = OGMGE(OGMGEParams(alpha=0.5, gaussian=False))
    hook.on_fit_start(model, state())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    logged = hook.after_backward(model, batch, out, state())
    k_text = 1 - math.tanh(0.5 * math.e)  # Eq. 10 with ρ_text = e > 1: 0.123806
    assert logged["ogm/k_text"] == pytest.approx(k_text, rel=1e-5) and k_text == pytest.approx(0.123806, abs=1e-6)
    assert logged["ogm/k_audio"] == 1.0 and logged["ogm/k_visual"] == 1.0
    for name, p in model.named_parameters():
        expected = k_text if (".text." in name) else 1.0  # encoders.text.*, heads.text.*
        assert torch.allclose(p.grad, torch.full_like(p, expected)), name
    # Gaussian enhancement: noise with the gradient's own std, reproducible from (seed, step)
    hook = OGMGE(OGMGEParams(alpha=0.5, gaussian=True))
    hook.on_fit_start(model, state())
    grads = []
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.linspace(0, 1, p.numel()).view_as(p).clone()
        hook.after_backward(model, batch, out, state())
        grads.append(model.encoders["audio"].proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert not torch.allclose(grads[0], torch.linspace(0, 1, grads[0].numel()).view_as(grads[0]))


# ---------------------------------------------------------------------------------------------- AGM
def test_shapley_responses_of_an_additive_model_are_its_terms() -> None:
    model = Additive([2.0, -1.0, 0.5])
    with torch.no_grad():
        model.bias.fill_(0.3)
    batch = make_batch(b=5)
    resp = shapley_responses(model, batch, scale_to_label=False)
    total = model(batch).prediction.detach()
    for k, m in enumerate(MODALITIES):
        term = model.w[k].detach() * batch.features[m][:, 0].sum(dim=1)
        torch.testing.assert_close(resp[m], term + 0.3 / 3)  # phi_m + f(empty)/K
    torch.testing.assert_close(sum(resp.values()), total)  # efficiency: the parts sum to the prediction
    scaled = shapley_responses(model, batch)
    torch.testing.assert_close(scaled["text"], 3 * resp["text"])
    assert model.training  # the training mode is restored


def test_agm_coefficients_and_running_means() -> None:
    r = agm_ratios({"text": 0.5, "audio": 1.0, "visual": 1.5})  # mean 1, K/(K-1) = 1.5
    assert r == pytest.approx({"text": math.exp(0.75), "audio": 1.0, "visual": math.exp(-0.75)})
    assert agm_coefficient(1.0, math.exp(0.75), 0.5) == pytest.approx(math.exp(0.5 * (1 - math.exp(0.75))))
    assert agm_coefficient(1.0, -100.0, 1.0) == pytest.approx(math.exp(7.0))  # capped
    hook = AGM(AGMParams(alpha=1.0))
    hook.on_fit_start(create_model("late_fusion", DIMS, 1), state())
    first = hook.coefficients({"text": 0.5, "audio": 1.0, "visual": 1.5})
    assert first["text"] < 1 < first["visual"]  # text beats the others: slowed; visual sped up
    same = hook.coefficients({"text": 0.5, "audio": 1.0, "visual": 1.5})
    assert same == pytest.approx({m: 1.0 for m in MODALITIES})  # as good as it usually is: no modulation


def test_ogm_ge_coefficients_from_the_responses() -> None:
    """Per modality: the score of its present rows (classification: mean true-class probability), the ratio to the
    others', and the coefficient of the configured form."""
    pres = torch.tensor([[False, True, True], [False, True, True], [False, False, True], [False, True, True]])
    batch = make_batch(b=4, present=pres)
    model = WithHeads()
    out = model(batch)
    hook = OGMGE(OGMGEParams(alpha=0.5, coefficient="continuous", response="heads"))
    hook.on_fit_start(model, state())
    scores, coeffs = hook.coefficients(model, batch, out)
    assert set(scores) == {"audio", "visual"}  # text is absent from every row: not scored, and the loop goes on
    rows = pres[:, 1]
    audio = out.aux_predictions["unimodal_audio"].detach()
    assert scores["audio"] == pytest.approx(regression_score(audio[rows], batch.label[rows]))
    ratios = discrepancy_ratios(scores)
    assert coeffs == pytest.approx({m: ogm_coefficient(ratios[m], 0.5, "continuous") for m in scores})
    logits = {m: torch.randn(4, 3, generator=torch.Generator().manual_seed(k)) for k, m in enumerate(MODALITIES)}
    cls_out = ModelOutput(prediction=torch.zeros(4, 3), aux_predictions={f"unimodal_{m}": v for m, v in
                                                                          logits.items()})
    labels = torch.tensor([0, 2, 1, 2])
    cls_batch = dataclasses.replace(batch, label=labels)
    hook = OGMGE(OGMGEParams(response="heads"))
    hook.on_fit_start(model, StepState(seed=0, task_kind="classification", task_loss="ce", loss_weights={}))
    scores, _ = hook.coefficients(model, cls_batch, cls_out)
    assert scores["audio"] == pytest.approx(classification_score(logits["audio"][rows], labels[rows]))


def test_agm_by_hand_ratios_scores_window_and_rescaling() -> None:
    assert agm_ratios({"text": 1.0, "audio": 2.0}) == pytest.approx({"text": math.e, "audio": math.exp(-1)})  # K=2
    assert agm_ratios({"text": 0.3}) == {"text": 1.0}
    hook = AGM(AGMParams(start_epoch=2, end_epoch=3))
    assert [hook.active(e) for e in range(4)] == [False, True, False, False]
    # scores: the task loss of each modality's response, heads or zero-padding Shapley on the label's scale
    batch = make_batch(b=4)
    model = WithHeads()
    out = model(batch)
    for source in ("heads", "shapley"):
        hook = AGM(AGMParams(response=source))  # type: ignore[arg-type]
        hook.on_fit_start(model, state())
        resp = modality_responses(model, batch, out, source)  # type: ignore[arg-type]
        want = {m: float((resp[m] - batch.label).pow(2).mean()) for m in MODALITIES}  # mse (state()), all present
        assert hook.scores(model, batch, out) == pytest.approx(want)
    # rescaling: text and visual scored (audio absent from the scores: c = 1), first step: running ratios 1
    two = TwoGroups()
    for name in ("const", "w", "s", "v"):
        getattr(two, name).grad = torch.ones_like(getattr(two, name))
    hook = AGM(AGMParams(alpha=0.5))
    hook.on_fit_start(two, state())
    hook.scores = lambda *a: {"text": 0.5, "visual": 1.0}  # type: ignore[method-assign]
    log = hook.after_backward(two, batch, out, state())
    c_text = math.exp(0.5 * (1 - math.exp(0.5)))  # ρ_text = exp((0.75 - 0.5)·2)
    assert log["agm/c_text"] == pytest.approx(c_text) and "agm/c_audio" not in log
    for name in ("const", "w", "s"):
        torch.testing.assert_close(getattr(two, name).grad, torch.full_like(getattr(two, name), c_text))
    torch.testing.assert_close(two.v.grad, torch.ones(3))  # audio: no coefficient, unchanged
    assert two.unused.grad is None
    assert hook.running == {"text": 0.5, "visual": 1.0} and hook.counts == {"text": 1, "visual": 1}
    hook.scores = lambda *a: {"text": 1.5, "visual": 1.0}  # type: ignore[method-assign]
    log = hook.after_backward(two, batch, out, state())
    # history now: running ratios from the running means (0.5, 1.0) before this step's update
    rho = agm_ratios({"text": 1.5, "visual": 1.0})["text"]
    run_rho = agm_ratios({"text": 0.5, "visual": 1.0})["text"]
    assert log["agm/c_text"] == pytest.approx(math.exp(0.5 * min(run_rho - rho, 7.0)))
    assert hook.running == pytest.approx({"text": 1.0, "visual": 1.0}) and hook.counts == {"text": 2, "visual": 2}
    # scores read each modality's present rows only
    pres = torch.tensor([[True, True, True], [True, False, True], [True, True, True], [True, False, True]])
    gap = make_batch(b=4, present=pres)
    hook = AGM(AGMParams(response="heads"))
    hook.on_fit_start(model, state())
    out_gap = model(gap)
    got = hook.scores(model, gap, out_gap)
    rows = pres[:, 1]
    heads = out_gap.aux_predictions["unimodal_audio"].detach()
    assert got["audio"] == pytest.approx(float((heads[rows] - gap.label[rows]).pow(2).mean()))


def test_agm_and_ogm_ge_pass_the_task_kind_to_the_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classification responses are logits (unscaled Shapley), regression ones scores on the label's scale."""
    seen: list[tuple[str, str]] = []

    def spy(model: nn.Module, batch: Batch, output: ModelOutput, source: str, task_kind: str = "regression"
            ) -> dict[str, Tensor]:
        assert isinstance(model, Additive) and isinstance(batch, Batch) and isinstance(output, ModelOutput)
        seen.append((source, task_kind))
        return {}

    import accord.balance.agm as agm_mod
    import accord.balance.ogm_ge as ogm_mod

    monkeypatch.setattr(agm_mod, "modality_responses", spy)
    monkeypatch.setattr(ogm_mod, "modality_responses", spy)
    cls = StepState(seed=0, task_kind="classification", task_loss="ce", loss_weights={})
    for hook in (AGM(AGMParams(response="heads")), OGMGE(OGMGEParams(response="shapley"))):
        hook.on_fit_start(Additive([1.0, 1.0, 1.0]), cls)
        hook.after_backward(Additive([1.0, 1.0, 1.0]), make_batch(), ModelOutput(prediction=torch.zeros(4)), cls)
    assert seen == [("heads", "classification"), ("shapley", "classification")]


def test_agm_hook_rescales_each_branch(tmp_path: Path) -> None:
    cfg = load_config(method="late_fusion", dataset="conflictbench",
                      overrides=[*TINY, "train.epochs=1", f"output.dir={tmp_path}", "name=run",
                                 "train.hooks=[{name: agm, params: {alpha: 0.5}}, {name: grad_monitor}]"])
    Trainer(cfg, progress=False).fit()
    lines = read_log(tmp_path / "run" / "seed_0" / "log.jsonl", "grad")
    assert len(lines) == 6 and all({"agm/c_text", "agm/s_audio"} <= set(x) for x in lines)
    assert any(abs(x["agm/c_text"] - 1.0) > 1e-6 for x in lines[1:])


# ---------------------------------------------------------------------------------------------- conventions
def test_modality_parameters_convention() -> None:
    for name in ("late_fusion", "early_fusion", "tfn", "mult", "cpsl"):
        model = create_model(name, DIMS, 1)
        groups = modality_parameters(model)
        ids = {m: {id(p) for p in ps} for m, ps in groups.items()}
        assert all(ids[m] for m in MODALITIES), name
        assert not (ids["text"] & ids["audio"]) and not (ids["audio"] & ids["visual"]), name
        shared = {id(p) for p in model.parameters()} - set().union(*ids.values())
        if name != "late_fusion":
            assert shared, name  # the fusion itself belongs to no modality

    class Named(nn.Module):  # the name fallback
        def __init__(self) -> None:
            super().__init__()
            self.audio_encoder = nn.Linear(2, 2)
            self.proj_visual = nn.Linear(2, 2)
            self.encoders = nn.ModuleDict({"text": nn.Linear(2, 2)})
            self.cross = nn.ModuleDict({"text_from_audio": nn.Linear(2, 2)})

    groups = modality_parameters(Named())
    assert [len(groups[m]) for m in MODALITIES] == [2, 2, 2]  # cross.text_from_audio is shared
    with pytest.raises(ConfigError, match="needs modality-specific parameters"):
        OGMGE().on_fit_start(nn.Linear(2, 2), state())


# ---------------------------------------------------------------------------------------------- modality helpers
def test_a_models_own_modality_parameters_win_over_names_and_the_text_branch_is_texts() -> None:
    class Own(nn.Module):  # names say audio/visual, the model's own method says otherwise
        def __init__(self) -> None:
            super().__init__()
            self.audio_proj = nn.Linear(2, 2)
            self.visual_proj = nn.Linear(2, 2)
            self.text_input = nn.Linear(2, 1)  # a pretrained text branch: text's, added once
            self.frozen = nn.Linear(2, 2).requires_grad_(False)

        def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
            return {"text": [self.text_input.weight], "visual": [*self.audio_proj.parameters(),
                                                                 *self.frozen.parameters()]}

    model = Own()
    groups = modality_parameters(model)
    assert groups["text"] == [model.text_input.weight, model.text_input.bias]  # no duplicate, own first
    assert groups["visual"] == list(model.audio_proj.parameters())  # frozen parameters dropped
    assert groups["audio"] == []  # a modality the method leaves out: empty, and the name fallback is not used

    class Names(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.audio_proj = nn.Linear(2, 2)
            self.text_input = nn.Linear(2, 1)

    class NoText(Own):
        def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
            return {"audio": list(self.audio_proj.parameters())}

    no_text = NoText()
    assert modality_parameters(no_text)["text"] == list(no_text.text_input.parameters())
    named = Names()
    groups = modality_parameters(named)
    assert groups["text"] == list(named.text_input.parameters())
    assert groups["audio"] == list(named.audio_proj.parameters()) and groups["visual"] == []
    with pytest.raises(ConfigError, match=r"train\.hooks: 'ogm_ge' needs .* model Linear defines no"):
        require_modality_parameters(nn.Linear(2, 2), "ogm_ge")


def test_present_rows_and_zero_padding() -> None:
    pres = torch.tensor([[True, False, True], [True, True, False], [False, True, True]])
    batch = make_batch(b=3, present=pres)
    batch = dataclasses.replace(batch, ids=["a", "b", "c"], extras={"conflict": torch.tensor([1, 0, 1])},
                                unimodal_labels={"text": torch.ones(3)}, text_tokens=torch.ones(3, 3, 4).long())
    for k, m in enumerate(MODALITIES):
        rows = present_rows(batch, m)
        assert rows.dtype == torch.bool and rows.tolist() == pres[:, k].tolist()
    other = present_rows(batch, "depth")
    assert other.dtype == torch.bool and other.tolist() == [True, True, True]
    flat = dataclasses.replace(batch, present=torch.ones(3, dtype=torch.bool))  # not [B, 3]: every row
    assert present_rows(flat, "audio").tolist() == [True, True, True]

    z = zero_modalities(batch, ("audio",))
    assert torch.equal(z.features["audio"], torch.zeros_like(batch.features["audio"]))
    assert z.features["text"] is batch.features["text"] and z.features["visual"] is batch.features["visual"]
    assert z.mask is batch.mask and torch.equal(z.present, batch.present) and z.label is batch.label
    assert z.ids == batch.ids and z.extras is batch.extras and z.unimodal_labels is batch.unimodal_labels
    assert z.text_tokens is batch.text_tokens
    zt = zero_modalities(batch, ("text",))  # tokens present: text is also marked absent for the text branch
    assert zt.present[:, 0].tolist() == [False, False, False] and zt.present[:, 1:].tolist() == pres[:, 1:].tolist()
    assert batch.present[:, 0].tolist() == [True, True, False]  # the caller's batch is not modified


class WithHeads(nn.Module):
    """Additive plus unimodal heads ``unimodal_<m> = 10 * w_m * sum(x_m)`` (different from the Shapley terms)."""

    def __init__(self, heads: bool = True) -> None:
        super().__init__()
        self.inner = Additive([2.0, -1.0, 0.5])
        self.heads = heads

    def forward(self, batch: Batch) -> ModelOutput:
        out = self.inner(batch)
        if self.heads:
            out.aux_predictions.update({f"unimodal_{m}": 10 * self.inner.w[k] * batch.features[m][:, 0].sum(1)
                                        for k, m in enumerate(MODALITIES)})
        return out


def test_modality_responses_choose_heads_or_shapley() -> None:
    batch = make_batch(b=4)
    model = WithHeads()
    out = model(batch)
    for source in ("heads", "auto"):
        resp = modality_responses(model, batch, out, source)  # type: ignore[arg-type]
        for m in MODALITIES:
            torch.testing.assert_close(resp[m], out.aux_predictions[f"unimodal_{m}"].detach())
            assert not resp[m].requires_grad
    shap = shapley_responses(model, batch)
    forced = modality_responses(model, batch, out, "shapley")
    assert all(torch.allclose(forced[m], shap[m]) for m in MODALITIES)  # shapley even where heads exist
    bare = WithHeads(heads=False)
    out = bare(batch)
    reg = modality_responses(bare, batch, out, "auto")
    cls = modality_responses(bare, batch, out, "auto", task_kind="classification")
    unscaled = shapley_responses(bare, batch, scale_to_label=False)
    for m in MODALITIES:
        torch.testing.assert_close(cls[m], unscaled[m])  # logits: phi_m + f(empty)/K
        torch.testing.assert_close(reg[m], 3 * unscaled[m])  # regression: on the label's scale
    with pytest.raises(ConfigError, match=r"response source 'heads' needs .* model WithHeads emits \[\]"):
        modality_responses(bare, batch, out, "heads")


def test_ulgm_hook_calls_the_model_with_the_1_based_epoch_and_saves_only_non_empty_labels() -> None:
    from accord.balance.ulgm import ULGMHook

    class Fake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[int] = []
            self.ids: list[str] = []

        def ulgm_step(self, batch: Batch, output: ModelOutput, epoch: int) -> dict[str, float]:
            self.epochs.append(epoch)
            return {"ulgm/steps": float(len(self.epochs))}

        def generated_labels(self) -> dict[str, np.ndarray]:
            return {"id": np.array(self.ids), "text": np.zeros(len(self.ids))}

    model = Fake()
    hook = ULGMHook()
    assert hook.artifacts() == {}  # before any step: nothing to save
    hook.on_fit_start(model, state())
    assert hook.artifacts() == {}  # an empty memory is not saved
    st = StepState(seed=0, task_kind="regression", task_loss="l1", loss_weights={}, epoch=3, step=0)
    assert hook.after_backward(model, make_batch(), ModelOutput(prediction=torch.zeros(4)), st) == {"ulgm/steps": 1.0}
    assert model.epochs == [4]  # Self-MM's epochs count from 1
    model.ids = ["a", "b"]
    assert list(hook.artifacts()) == ["ulgm_labels"]
    with pytest.raises(ConfigError, match=r"self_mm_ulgm needs a model with ulgm_step \(Self-MM\), not Linear$"):
        ULGMHook().on_fit_start(nn.Linear(2, 2), state())
