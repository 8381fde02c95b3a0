"""The pure objectives (``accord.objectives``) against hand-computed values, written to kill the mutants mutmut found
alive in them (benchmarks/results/mutation.md): non-zero targets (a sign flip in ``X~ − X`` must show), a perfect
reconstruction scoring exactly 0, lengths that differ from the batch size, empty and masked inputs, and the error
messages that name the shapes."""

from __future__ import annotations

import math

import pytest
import torch

from accord.objectives.conflict import conflict_weights, weighted_reconstruction_per_sample
from accord.objectives.decoupling import misa_difference, private_preservation, reconstruction_error
from accord.objectives.energy import trust_kl, trust_kl_per_sample


def test_reconstruction_error_of_a_non_zero_target_by_hand() -> None:
    """``||X~ − X||_F / sqrt(length)`` with X ≠ 0: sample 0 has two valid steps (diffs (1, 2) and (2, 0)): sqrt(9/2);
    sample 1 one valid step (diff (0, 3)): 3."""
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0]], [[5.0, 5.0], [7.0, 7.0]]])
    rec = torch.tensor([[[2.0, 3.0], [4.0, 2.0]], [[5.0, 8.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    torch.testing.assert_close(reconstruction_error(rec, target, mask), torch.tensor([math.sqrt(4.5), 3.0]))
    # private preservation: mean_t ||P~_t − P_t||^2 = (5 + 4) / 2 and 9 / 1
    torch.testing.assert_close(private_preservation(rec, target, mask), torch.tensor([4.5, 9.0]))


def test_reconstruction_error_without_a_mask_uses_the_sequence_length_per_sample() -> None:
    """No mask: every one of T = 2 steps counts, for each of B = 3 samples (B ≠ T, so a length vector of the wrong
    size cannot pass)."""
    rec = torch.ones(3, 2, 4)
    target = torch.zeros(3, 2, 4)
    torch.testing.assert_close(reconstruction_error(rec, target), torch.full((3,), 2.0))  # sqrt(8 / 2)
    torch.testing.assert_close(private_preservation(rec, target), torch.full((3,), 4.0))  # 8 / 2


def test_a_perfect_reconstruction_scores_exactly_zero_with_a_finite_gradient() -> None:
    x = torch.randn(2, 3, 4)
    rec = x.clone().requires_grad_()
    err = reconstruction_error(rec, x)
    assert float(err.detach().abs().max()) < 1e-9
    err.sum().backward()
    assert rec.grad is not None and torch.isfinite(rec.grad).all()


def test_private_preservation_of_a_single_step_divides_by_one() -> None:
    assert private_preservation(torch.full((1, 1, 2), 3.0), torch.ones(1, 1, 2)).item() == pytest.approx(8.0)


def _diff_by_hand(a: torch.Tensor, b: torch.Tensor) -> float:
    """MISA's DiffLoss in plain Python: centre the rows over the batch, scale each to unit norm, mean of (A^T B)^2."""
    def prep(x: torch.Tensor) -> list[list[float]]:
        rows = x.tolist()
        mean = [sum(c) / len(rows) for c in zip(*rows, strict=True)]
        centred = [[v - m for v, m in zip(r, mean, strict=True)] for r in rows]
        return [[v / (math.sqrt(sum(u * u for u in r)) + 1e-6) for v in r] for r in centred]
    pa, pb = prep(a), prep(b)
    d_a, d_b = len(pa[0]), len(pb[0])
    prod = [[sum(pa[i][j] * pb[i][k] for i in range(len(pa))) for k in range(d_b)] for j in range(d_a)]
    return sum(v * v for row in prod for v in row) / (d_a * d_b)


def test_misa_difference_by_hand_with_non_zero_means() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 1.0], [6.0, 0.0]])
    b = torch.tensor([[2.0, 5.0, 1.0], [0.0, 1.0, 4.0], [1.0, 1.0, 1.0]])
    assert misa_difference(a, b).item() == pytest.approx(_diff_by_hand(a, b), rel=1e-5)
    # 0/1 weights select rows (weighted centring, A^T diag(w) B)
    w = torch.tensor([1.0, 1.0, 0.0])
    assert misa_difference(a, b, weight=w).item() == pytest.approx(_diff_by_hand(a[:2], b[:2]), rel=1e-5)


def test_misa_difference_of_an_empty_batch_is_a_finite_zero() -> None:
    a = torch.zeros(0, 3, requires_grad=True)
    b = torch.zeros(0, 3, requires_grad=True)
    out = misa_difference(a, b)
    assert out.item() == 0.0 and math.isfinite(out.item())
    out.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_trust_kl_by_hand_with_an_absent_modality_and_a_mean_over_valid_rows() -> None:
    """Row 0: t = (0.5, 0.5), w = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3). Row 1 marks modality 1 absent, so only
    m = 0 counts: 0.5 (ln 0.5 − ln 0.5) = 0. Row 2: nothing present, left out of the mean (2 valid rows)."""
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    log_w = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]]))
    present = torch.tensor([[True, True], [True, False], [False, False]])
    row0 = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    per, rows = trust_kl_per_sample(teacher, log_w, present)
    torch.testing.assert_close(per, torch.tensor([row0, 0.0, 0.0]))
    torch.testing.assert_close(rows, torch.tensor([1.0, 1.0, 0.0]))
    assert trust_kl(teacher, log_w, present).item() == pytest.approx(row0 / 2)
    # without the mask the absent entries would count: the mask is what removes them
    assert trust_kl(teacher, log_w).item() != pytest.approx(row0 / 2)


def test_conflict_weights_accept_a_floor_of_one() -> None:
    """``omega_min = 1`` is the valid edge case "no down-weighting at all" (w ≡ 1), not an error."""
    torch.testing.assert_close(conflict_weights(torch.tensor([0.0, 1.0, 2.0]), 1.0, 0.5), torch.ones(3))
    with pytest.raises(ValueError, match="omega_min must be in"):
        conflict_weights(torch.zeros(1), 1.5, 0.5)


def test_weighted_reconstruction_names_both_shapes_on_a_mismatch() -> None:
    with pytest.raises(ValueError, match=r"errors \(2, 3\) and weights \(2, 2\) differ in shape"):
        weighted_reconstruction_per_sample(torch.zeros(2, 3), torch.zeros(2, 2))
