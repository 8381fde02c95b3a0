"""Exact Shapley attribution over the three modalities (accord.evaluation.attribution, issue 18).

φ_m = Σ_{S ⊆ N\\{m}} |S|!(n−|S|−1)!/n! · (v(S∪{m}) − v(S)), n = 3: checked by hand on toy games, by the axioms
(efficiency, symmetry, dummy) and on real registered models, where v(N) − v(∅) comes from separate forwards.
"""

from __future__ import annotations

import pytest
import torch

from accord.core.types import MODALITIES, Batch
from accord.evaluation.attribution import (
    COALITIONS,
    attribute,
    coalition_batch,
    disagreement,
    shapley_from_values,
    shapley_weight,
    summarize,
    value_of,
)
from accord.models.base import create_model
from test_models import TINY_DIMS, make_batch

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = {"text": [3, 2, 0, 1, 2], "audio": [2, 0, 3, 1, 1], "visual": [1, 2, 2, 0, 3]}
"""Five samples: all present, no audio, no text, no visual, all present (B = 5)."""


def _scalar_batch(xt: float, xa: float, xv: float) -> Batch:
    """One sample whose modality m carries the scalar x_m (vector level: T = 1, D = 1)."""
    feats = {m: torch.tensor([[[x]]]) for m, x in zip(MODALITIES, (xt, xa, xv), strict=True)}
    masks = {m: torch.ones(1, 1, dtype=torch.bool) for m in MODALITIES}
    return Batch(features=feats, mask=masks, present=torch.ones(1, 3, dtype=torch.bool), label=torch.zeros(1))


def _toy(alpha: float, beta: float, gamma: float, delta: float, eps: float, kappa: float):  # type: ignore[no-untyped-def]
    """v = κ + α·t + β·a + γ·t·a + δ·v + ε·t·a·v, with x_m zeroed where the modality is absent."""

    def value(batch: Batch) -> torch.Tensor:
        x = {m: batch.features[m][:, 0, 0] * batch.present[:, k].float() for k, m in enumerate(MODALITIES)}
        return (kappa + alpha * x["text"] + beta * x["audio"] + gamma * x["text"] * x["audio"]
                + delta * x["visual"] + eps * x["text"] * x["audio"] * x["visual"])

    return value


def test_shapley_weights_for_three_players() -> None:
    assert [shapley_weight(s) for s in range(3)] == pytest.approx([1 / 3, 1 / 6, 1 / 3])
    # every coalition's weight, summed over the coalitions without m, is 1 (2 of size 1)
    assert shapley_weight(0) + 2 * shapley_weight(1) + shapley_weight(2) == pytest.approx(1.0)
    assert COALITIONS[0] == (False, False, False) and COALITIONS[7] == (True, True, True)
    assert COALITIONS[1] == (True, False, False) and COALITIONS[6] == (False, True, True)  # bit k = MODALITIES[k]


def test_hand_computed_phi_with_interaction_terms() -> None:
    # x = (t 2, a 3, v -1); α 1, β -0.5, γ 0.25, δ 2, ε 0.3, κ 0.5:
    # the pair term γ·t·a = 1.5 splits 0.75 / 0.75 between text and audio, the triple ε·t·a·v = -1.8 splits -0.6
    # three ways; φ_t = 2 + 0.75 - 0.6 = 2.15, φ_a = -1.5 + 0.75 - 0.6 = -1.35, φ_v = -2 - 0.6 = -2.6; base = κ.
    att = attribute(_toy(1.0, -0.5, 0.25, 2.0, 0.3, 0.5), _scalar_batch(2.0, 3.0, -1.0))
    assert att.phi[0].tolist() == pytest.approx([2.15, -1.35, -2.6], abs=1e-6)
    assert float(att.base[0]) == pytest.approx(0.5)
    assert float(att.full[0]) == pytest.approx(0.5 + 2 - 1.5 + 1.5 - 2 - 1.8)
    assert float(att.phi[0].sum()) == pytest.approx(float(att.full[0] - att.base[0]), abs=1e-6)


def test_hand_computed_phi_of_a_rule_game_weights_sizes_differently() -> None:
    # v(S) = 1 when text ∈ S and |S| ≥ 2: text is pivotal for {a} and {v} (weight 1/6 each) and for {a, v}
    # (weight 1/3): φ_t = 2/3; audio is pivotal only for {t} (1/6): φ_a = 1/6, likewise φ_v = 1/6.
    values = torch.tensor([1.0 if (c & 1) and bin(c).count("1") >= 2 else 0.0 for c in range(8)]).view(8, 1)
    phi = shapley_from_values(values)
    assert phi[0].tolist() == pytest.approx([2 / 3, 1 / 6, 1 / 6])


def test_symmetry_and_dummy_axioms() -> None:
    # v = (x_t + x_a)^2 with x_t = x_a: text and audio are symmetric; visual never enters: a dummy (φ = 0)
    def value(batch: Batch) -> torch.Tensor:
        x = {m: batch.features[m][:, 0, 0] * batch.present[:, k].float() for k, m in enumerate(MODALITIES)}
        return (x["text"] + x["audio"]) ** 2

    att = attribute(value, _scalar_batch(1.5, 1.5, 7.0))
    phi = att.phi[0].tolist()
    assert phi[0] == pytest.approx(phi[1]) and phi[2] == 0.0
    assert phi[0] == pytest.approx(4.5)  # (1.5 + 1.5)^2 / 2
    with pytest.raises(ValueError, match="8 coalitions"):
        shapley_from_values(torch.zeros(4, 1))


def test_coalition_batch_marks_modalities_absent_like_predict() -> None:
    batch = make_batch(LENGTHS, TINY_DIMS)
    batch.text_tokens = torch.ones(5, 3, 4, dtype=torch.long)
    big = coalition_batch(batch)
    assert big.size == 40 and big.text_tokens is not None and big.text_tokens.shape == (40, 3, 4)
    for c, keep in enumerate(COALITIONS):
        rows = slice(c * 5, (c + 1) * 5)
        for k, m in enumerate(MODALITIES):
            want = batch.present[:, k] & keep[k]
            assert torch.equal(big.present[rows, k], want)
            # an absent modality: mask all False (length 0) and zero features; a kept one unchanged
            assert torch.equal(big.mask[m][rows], batch.mask[m] & want.unsqueeze(1))
            assert torch.equal(big.features[m][rows][~want], torch.zeros_like(batch.features[m][~want]))
            assert torch.equal(big.features[m][rows][want], batch.features[m][want])


def _separate(model: torch.nn.Module, batch: Batch, keep: tuple[bool, ...], task: str) -> torch.Tensor:
    """v(S) of every sample from its own forward on a batch with only coalition ``keep`` (as predict marks it)."""
    feats, masks = {}, {}
    present = batch.present & torch.tensor(keep).unsqueeze(0)
    for k, m in enumerate(MODALITIES):
        masks[m] = batch.mask[m] & present[:, k:k + 1]
        feats[m] = batch.features[m] * masks[m].unsqueeze(-1)
    with torch.no_grad():
        return value_of(model(Batch(features=feats, mask=masks, present=present, label=batch.label)), task)


@pytest.mark.parametrize(("method", "out_dim"), [("late_fusion", 1), ("mult", 1), ("ebmc", 1), ("cacr", 1),
                                                 ("misa", 1), ("tfn", 1), ("ebmc", 3), ("mult", 3)])
def test_efficiency_on_real_models(method: str, out_dim: int) -> None:
    torch.manual_seed(0)
    model = create_model(method, TINY_DIMS, out_dim).eval()
    task = "classification" if out_dim > 1 else "regression"
    batch = make_batch(LENGTHS, TINY_DIMS, out_dim=out_dim)
    with torch.no_grad():
        att = attribute(lambda b: value_of(model(b), task), batch)
    full = _separate(model, batch, (True, True, True), task)
    base = _separate(model, batch, (False, False, False), task)
    assert torch.allclose(att.full, full, atol=1e-5) and torch.allclose(att.base, base, atol=1e-5)
    assert torch.allclose(att.phi.sum(dim=1), full - base, atol=1e-5)  # Σ_m φ_m = v(N) − v(∅)
    # a modality absent from the input is a dummy: exactly 0 (sample 1 has no audio, 2 no text, 3 no visual)
    assert torch.all(att.phi[1, 1] == 0) and torch.all(att.phi[2, 0] == 0) and torch.all(att.phi[3, 2] == 0)
    assert bool(att.phi[0].abs().sum() > 0)
    if task == "classification":  # probabilities: φ sums to 0 over classes (both v(N) and v(∅) sum to 1)
        assert torch.allclose(att.phi.sum(dim=2), torch.zeros(5, 3), atol=1e-5)


@pytest.mark.parametrize("method", ["cacr", "mult", "late_fusion"])
def test_one_batched_forward_equals_eight_separate_calls(method: str) -> None:
    torch.manual_seed(1)
    model = create_model(method, TINY_DIMS, 1).eval()
    batch = make_batch(LENGTHS, TINY_DIMS)
    calls: list[int] = []

    def value(b: Batch) -> torch.Tensor:
        calls.append(b.size)
        return value_of(model(b), "regression")

    with torch.no_grad():
        one = attribute(value, batch)
        assert calls == [40]  # 8 coalitions x 5 samples in ONE forward
        eight = attribute(value, batch, batched=False)
    assert calls[1:] == [5] * 8
    assert torch.allclose(one.phi, eight.phi, atol=1e-6) and torch.allclose(one.base, eight.base, atol=1e-6)
    for c, keep in enumerate(COALITIONS):  # each coalition's value (S ∩ P) is that of a separate forward
        assert torch.allclose(one.values[c], _separate(model, batch, keep, "regression"), atol=1e-5)


def test_disagreement_threshold_is_a_tenth_of_the_total() -> None:
    phi = torch.tensor([[1.0, -0.5, 0.05],    # τ = 0.155: +1 and −0.5 → disagree
                        [1.0, -0.1, 0.2],     # τ = 0.13: −0.1 is within τ → no
                        [0.0, 0.0, 0.0],      # nothing → no
                        [-0.3, 0.3, 0.0]])    # τ = 0.06 → disagree
    assert disagreement(phi).tolist() == [True, False, False, True]
    # fraction 0.4: row 0's τ = 0.62 and −0.5 is not below −0.62; row 3's τ = 0.24 < 0.3
    assert disagreement(phi, fraction=0.4).tolist() == [False, False, False, True]


def test_summarize_means_and_shares() -> None:
    phi = torch.tensor([[1.0, -0.5, 0.0], [0.2, 0.0, 0.3]])
    present = torch.tensor([[True, True, False], [True, False, True]])
    s = summarize(phi, present)
    assert s["n"] == 2 and s["disagree_share"] == 0.5
    assert s["mean_abs_phi"] == pytest.approx({"text": 0.6, "audio": 0.25, "visual": 0.15})
    assert s["mean_phi"] == pytest.approx({"text": 0.6, "audio": -0.25, "visual": 0.15})
    assert s["present_share"] == {"text": 1.0, "audio": 0.5, "visual": 0.5}
