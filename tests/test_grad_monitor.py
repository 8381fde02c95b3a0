"""The gradient-imbalance monitor (``grad_monitor``, METHODS.md §2 "gradient-norm conflict"): sample weights,
masks, the conflict threshold, the objective cosines and the hook's logging, each against a hand-computed value.

The mutation run over ``balance/monitor.py`` (benchmarks/results/mutation.md) showed that the tests in
``test_balance.py`` checked the norms and ratios but not these parts; every test here kills at least one mutant.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from accord.balance.monitor import (
    GradMonitor,
    batch_task_loss,
    feature_grad_norms,
    flat_cosine,
    imbalance_ratios,
    objective_cosines,
)
from accord.balance.params import GradMonitorParams
from accord.core.hooks import StepState
from accord.core.types import MODALITIES, Batch, ModelOutput
from test_balance import Additive
from test_balance import make_batch as balance_batch


def make_batch(b: int = 4, seed: int = 0, weight: list[float] | None = None) -> Batch:
    """``test_balance``'s batch (T = 1, two features per modality, all present), with ``sample_weight`` rows."""
    batch = balance_batch(b, seed=seed)
    if weight is not None:
        batch.extras["sample_weight"] = torch.tensor(weight)
    return batch


def with_kappa(model: nn.Module, kappa: float) -> nn.Module:
    """``model`` declaring ``params.kappa`` (as CP+SL does), for the monitor's default threshold."""
    model.params = SimpleNamespace(kappa=kappa)  # type: ignore[assignment]
    return model


def _l1_norms(w: list[float], batch: Batch, rows: list[float]) -> list[float]:
    """g_m for the weighted L1 loss by hand: ∂L/∂ŷ_i = r_i·sign(ŷ_i − y_i)/Σr, ∂L/∂z_m,i,k = w_m·∂L/∂ŷ_i, so
    g_m = |w_m|·sqrt(2·Σ_i (∂L/∂ŷ_i)²) (two feature elements per sample)."""
    pred = sum(w[k] * batch.features[m][:, 0].sum(dim=1) for k, m in enumerate(MODALITIES))
    r = torch.tensor(rows)
    dl = r * torch.sign(pred - batch.label) / r.sum()
    return [abs(wm) * math.sqrt(2 * float((dl ** 2).sum())) for wm in w]


def test_the_task_loss_carries_the_sample_weights() -> None:
    """A sample of weight 0 adds nothing to g_m: the monitor's loss is the trainer's weighted task loss."""
    w = [2.0, 1.0, 0.5]
    batch = make_batch(weight=[1.0, 0.0, 2.0, 1.0])
    out = Additive(w)(batch)
    loss = batch_task_loss(out, batch, "l1")
    norms, _, _ = feature_grad_norms(loss, out.features, batch)
    expected = _l1_norms(w, batch, [1.0, 0.0, 2.0, 1.0])
    assert [float(norms[m]) for m in MODALITIES] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_l1_norms(w, batch, [1.0] * 4), rel=1e-3)  # the weights matter here


def test_a_fresh_monitor_uses_l1_and_kappa_1_5() -> None:
    """Defaults (before ``on_fit_start``): the MSA task loss L1 and κ = 1.5."""
    mon = GradMonitor()
    assert mon.kappa == 1.5 and mon.loss_name == "l1"
    w = [1.0, 2.0, 3.0]
    batch = make_batch()
    vals = mon.measure(Additive(w), batch, Additive(w)(batch))
    expected = _l1_norms(w, batch, [1.0] * 4)
    assert [vals[f"g/{m}"] for m in MODALITIES] == pytest.approx(expected, rel=1e-5)


def test_unknown_feature_names_count_every_row() -> None:
    """A feature that is not a modality (here ``fused``, batch size 3 and 5 columns, so rows and columns differ)
    counts all rows: its norm is the plain gradient norm."""
    batch = make_batch(b=3)
    x = torch.randn(3, 5, requires_grad=True)
    loss = (x * torch.arange(5.0)).sum()
    norms, grads, active = feature_grad_norms(loss, {"fused": x}, batch)
    assert active == ["fused"]
    assert float(norms["fused"]) == pytest.approx(math.sqrt(3 * sum(k * k for k in range(5))), rel=1e-6)
    assert grads["fused"].shape == (3, 5)


def test_unused_features_are_skipped_and_the_rest_still_measured() -> None:
    """A feature the loss does not reach (first in the dict) gets g = 0 and is not active; the ones after it are
    still measured; the norms carry no graph (the monitor never builds second-order graphs)."""
    batch = make_batch(b=2)
    unused = torch.randn(2, 2, requires_grad=True)
    used = torch.randn(2, 2, requires_grad=True)
    scale = torch.tensor(3.0, requires_grad=True)  # ∂loss/∂used = scale: a gradient that depends on a parameter
    norms, _, active = feature_grad_norms((scale * used).sum(), {"text": unused, "audio": used}, batch)
    assert active == ["audio"]
    assert float(norms["text"]) == 0.0
    assert float(norms["audio"]) == pytest.approx(3 * 2.0, rel=1e-6)  # sqrt(4 elements · 9)
    assert not norms["audio"].requires_grad  # no graph through the gradient unless create_graph is asked for
    with_graph, _, _ = feature_grad_norms((scale * used).sum(), {"audio": used}, batch, create_graph=True)
    assert with_graph["audio"].requires_grad


def test_a_present_modality_with_a_zero_gradient_has_a_finite_norm() -> None:
    """g = sqrt(Σ grad² + 1e-24): an exactly-zero gradient gives 1e-12, never NaN."""
    batch = make_batch()
    out = Additive([1.0, 1.0, 0.0])(batch)
    norms, _, active = feature_grad_norms(batch_task_loss(out, batch, "l1"), out.features, batch)
    assert "visual" in active
    assert float(norms["visual"]) == pytest.approx(1e-12, rel=1e-6)


def test_inactive_modalities_get_ratio_zero_whatever_their_norm() -> None:
    norms = {"text": torch.tensor(2.0), "audio": torch.tensor(1.0), "visual": torch.tensor(5.0)}
    ratios = imbalance_ratios(norms, ["text", "audio"])
    assert float(ratios["text"]) == pytest.approx(2 / 1.5) and float(ratios["audio"]) == pytest.approx(1 / 1.5)
    assert float(ratios["visual"]) == 0.0


def test_flat_cosine_by_hand_and_zero_for_a_zero_gradient() -> None:
    a = [torch.tensor([1.0, 0.0]), torch.tensor([2.0])]
    b = [torch.tensor([0.0, 3.0]), torch.tensor([4.0])]
    assert flat_cosine(a, b) == pytest.approx(8 / (math.sqrt(5) * 5))
    zero = [torch.zeros(2), torch.zeros(1)]
    assert flat_cosine(zero, b) == 0.0 and flat_cosine(a, zero) == 0.0 and flat_cosine(zero, zero) == 0.0


class WithObjectives(nn.Module):
    """A linear model with two unimodal heads (one detached) and a per-sample model loss."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.lin = nn.ParameterDict({m: nn.Parameter(torch.randn(2, generator=g)) for m in MODALITIES})

    def forward(self, batch: Batch) -> ModelOutput:
        z = {m: batch.features[m][:, 0] for m in MODALITIES}
        per = {m: (z[m] * self.lin[m]).sum(dim=1) for m in MODALITIES}
        pred = per["text"] + per["audio"] + per["visual"]
        return ModelOutput(prediction=pred, features=z,
                           aux_predictions={"dead": per["visual"].detach(), "text": per["text"] * 1.5},
                           aux_weights={"text": torch.tensor([0.5, 1.0, 1.0, 0.0])},
                           losses={"sq": (per["audio"] - 1.0) ** 2})


def test_objective_cosines_weight_each_objective_like_the_trainer() -> None:
    """cos(∇θ L_task, ∇θ L_o) with L_task weighted by the sample weights s, a unimodal head by s·(its own
    weights), a per-sample model loss by s; a detached head is skipped and the heads after it still measured."""
    s = [1.0, 0.0, 2.0, 1.0]
    batch = make_batch(weight=s)
    model = WithObjectives()
    out = model(batch)
    task = batch_task_loss(out, batch, "l1")
    got = objective_cosines(model, batch, out, task, "l1")
    assert set(got) == {"cos/text", "cos/sq"}
    # by hand: the weighted losses and their parameter gradients, from the formulas (not the monitor's code)
    sw = torch.tensor(s)
    params = list(model.parameters())

    def grad(loss: Tensor) -> list[Tensor | None]:
        return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))

    def cos(a: list[Tensor | None], b: list[Tensor | None]) -> float:
        """Over the parameters both gradients reach."""
        both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        fa, fb = torch.cat([x.flatten() for x, _ in both]), torch.cat([y.flatten() for _, y in both])
        return float(fa @ fb / (fa.norm() * fb.norm()))

    g_task = grad((sw * (out.prediction - batch.label).abs()).sum() / sw.sum())
    w_text = sw * torch.tensor([0.5, 1.0, 1.0, 0.0])
    g_text = grad((w_text * (out.aux_predictions["text"] - batch.label).abs()).sum() / w_text.sum())
    g_sq = grad((sw * out.losses["sq"]).sum() / sw.sum())
    assert got["cos/text"] == pytest.approx(cos(g_task, g_text), rel=1e-5)
    assert got["cos/sq"] == pytest.approx(cos(g_task, g_sq), rel=1e-5)
    # unweighted, both cosines differ: the weights are what the test sees
    g_plain = grad((out.prediction - batch.label).abs().mean())
    assert cos(g_plain, grad((out.aux_predictions["text"] - batch.label).abs().mean())) != pytest.approx(
        got["cos/text"], rel=1e-3)


def test_objective_cosines_without_sample_weights_use_the_heads_own_weights() -> None:
    batch = make_batch()
    model = WithObjectives()
    out = model(batch)
    task = batch_task_loss(out, batch, "l1")
    got = objective_cosines(model, batch, out, task, "l1")
    head = batch_task_loss(ModelOutput(prediction=out.aux_predictions["text"]), batch, "l1")  # unweighted head
    g_task = torch.autograd.grad(task, [model.lin["text"]], retain_graph=True)[0]
    w = torch.tensor([0.5, 1.0, 1.0, 0.0])
    weighted = (w * (out.aux_predictions["text"] - batch.label).abs()).sum() / w.sum()
    g_head = torch.autograd.grad(weighted, [model.lin["text"]], retain_graph=True)[0]
    g_unw = torch.autograd.grad(head, [model.lin["text"]], retain_graph=True)[0]
    # the text head reaches only lin.text: the cosine is over that parameter alone
    assert got["cos/text"] == pytest.approx(flat_cosine([g_task], [g_head]), rel=1e-5)
    assert flat_cosine([g_task], [g_unw]) != pytest.approx(got["cos/text"], rel=1e-3)


def test_kappa_from_the_params_else_from_the_model_else_1_5() -> None:
    model = with_kappa(Additive([1.0, 1.0, 1.0]), 3.0)
    mon = GradMonitor()
    mon.on_fit_start(model, StepState(seed=0, task_loss="mse"))
    assert mon.kappa == 3.0 and mon.loss_name == "mse"
    explicit = GradMonitor(GradMonitorParams(kappa=2.0))
    assert explicit.kappa == 2.0
    explicit.on_fit_start(model, StepState(seed=0))
    assert explicit.kappa == 2.0  # an explicit κ wins over the model's
    plain = GradMonitor()
    plain.on_fit_start(Additive([1.0, 1.0, 1.0]), StepState(seed=0))
    assert plain.kappa == 1.5


def test_the_conflict_flag_is_strictly_above_kappa() -> None:
    model = Additive([3.0, 1.0, 1.0])
    batch = make_batch()
    out = model(batch)
    r_max = GradMonitor().measure(model, batch, out)["r_max"]
    assert r_max > 1.5
    at = GradMonitor(GradMonitorParams(kappa=r_max, cosines=False)).measure(model, batch, out)
    assert at["conflict"] == 0.0  # r_max == κ is not a conflict
    below = GradMonitor(GradMonitorParams(kappa=r_max * 0.999, cosines=False)).measure(model, batch, out)
    assert below["conflict"] == 1.0


def test_nothing_is_measured_without_features_or_gradients() -> None:
    model = Additive([1.0, 1.0, 1.0])
    batch = make_batch()
    mon = GradMonitor()
    with torch.no_grad():
        assert mon.measure(model, batch, model(batch)) == {}
    assert mon.measure(model, batch, ModelOutput(prediction=model(batch).prediction)) == {}


def test_no_active_modality_gives_r_max_zero_and_no_conflict() -> None:
    batch = make_batch()
    feats = {m: torch.randn(4, 2, requires_grad=True) for m in MODALITIES}
    pred = torch.randn(4, requires_grad=True)  # the loss reaches none of the features
    vals = GradMonitor(GradMonitorParams(cosines=False)).measure(nn.Linear(1, 1), batch,
                                                                  ModelOutput(prediction=pred, features=feats))
    assert vals["r_max"] == 0.0 and vals["conflict"] == 0.0 and "dominant" not in vals


def test_lines_are_written_every_n_steps_with_the_1_based_epoch() -> None:
    model = Additive([2.0, 1.0, 1.0])
    mon = GradMonitor(GradMonitorParams(every=2, cosines=False))
    st = StepState(seed=0, epoch=4)
    mon.on_fit_start(model, st)
    for step in range(4):
        st.step = step
        batch = make_batch(seed=step)
        out = model(batch)
        mon.extra_losses(model, batch, out)
        mon.after_backward(model, batch, out, st)
    assert [r["step"] for r in st.records] == [2, 4]
    assert {r["epoch"] for r in st.records} == {5}


def test_a_model_without_features_writes_no_line() -> None:
    model = Additive([1.0, 1.0, 1.0])
    mon = GradMonitor()
    st = StepState(seed=0, step=1)  # step 2: a multiple of every = 1 and of 2
    batch = make_batch()
    out = ModelOutput(prediction=model(batch).prediction)
    mon.extra_losses(model, batch, out)
    assert mon.after_backward(model, batch, out, st) == {} and st.records == []
    # after_backward without a measurement this step (e.g. an evaluation pass) neither fails nor writes
    assert GradMonitor().after_backward(model, batch, out, st) == {} and st.records == []
