"""The pure objectives (``accord.objectives``) against hand-computed values, written to kill the mutants mutmut found
alive in them (benchmarks/results/mutation.md): non-zero targets (a sign flip in ``X~ − X`` must show), a perfect
reconstruction scoring exactly 0, lengths that differ from the batch size, empty and masked inputs, and the error
messages that name the shapes."""

from __future__ import annotations

import math

import pytest
import torch

from accord.objectives.conflict import (
    conflict_scores,
    conflict_weights,
    pairwise_cosine_distance,
    weighted_reconstruction_per_sample,
)
from accord.objectives.decoupling import (
    cmd,
    misa_difference,
    private_preservation,
    reconstruction_error,
    soft_orthogonality,
)
from accord.objectives.energy import equilibrium_loss, trust_kl, trust_kl_per_sample
from accord.objectives.statistical import batch_std, statistical_loss
from accord.objectives.task import reduce_losses, reduce_per_sample, task_loss


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


def test_cross_entropy_task_loss_by_hand_and_reduce_losses_with_weights() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    per = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0))]
    assert task_loss(logits, torch.tensor([0, 1]), "ce").item() == pytest.approx(sum(per) / 2, rel=1e-6)
    w = torch.tensor([1.0, 3.0])
    assert task_loss(logits, torch.tensor([0, 1]), "ce", w).item() == pytest.approx((per[0] + 3 * per[1]) / 4,
                                                                                     rel=1e-6)
    out = reduce_losses({"per": torch.tensor([1.0, 5.0]), "batch": torch.tensor(7.0)}, w)
    assert out["per"].item() == pytest.approx(4.0) and out["batch"].item() == 7.0  # (1 + 15) / 4


def test_equilibrium_loss_averages_every_leading_axis() -> None:
    """``[..., M]`` energies: rows (1, 2, 6) -> 9, (3, 3, 3) -> 0, (0, 0, 3) -> (3 - 1)^2 = 4, (2, 4, 6) -> 4; the
    mean over the 2 x 2 leading axes is 17 / 4 (a sum over the wrong axis gives another value)."""
    e = torch.tensor([[[1.0, 2.0, 6.0], [3.0, 3.0, 3.0]], [[0.0, 0.0, 3.0], [2.0, 4.0, 6.0]]])
    assert equilibrium_loss(e).item() == pytest.approx(17 / 4)


def test_trust_kl_skips_rows_whose_teacher_is_all_zero() -> None:
    """A row whose teacher is 0 everywhere (no modality to trust) counts in neither the sum nor the row count,
    with or without a presence mask."""
    teacher = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    log_w = torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]]))
    row0 = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    for present in (None, torch.ones(2, 2, dtype=torch.bool)):
        per, rows = trust_kl_per_sample(teacher, log_w, present)
        torch.testing.assert_close(rows, torch.tensor([1.0, 0.0]))
        assert trust_kl(teacher, log_w, present).item() == pytest.approx(row0)


def test_soft_orthogonality_reads_only_the_valid_steps() -> None:
    """Step 0: H = (1, 0), P = (0, 1) -> orthogonal; the padded step 1 holds parallel noise that must not count."""
    shared = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    private = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    assert soft_orthogonality(shared, private, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_orthogonality(shared, private).item() > 0.5
    with pytest.raises(ValueError, match=r"mask \(1, 3\) does not match sequences \(1, 2, 2\)"):
        soft_orthogonality(shared, private, torch.ones(1, 3, dtype=torch.bool))


def test_weighted_moments_are_invariant_to_the_scale_of_the_weights() -> None:
    """CMD's weighted moments are normalised by the weights' sum, also when it is below 1 (0.1 per row): the same
    CMD as with weights 1 (MISA's DiffLoss is not: like the unweighted sum over rows, it counts a row of weight w as w
    copies); a weight vector of the wrong length is an error that names both sizes."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, generator=g), torch.rand(4, 3, generator=g)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(cmd(x, y, weight=0.1 * w), cmd(x, y, weight=w))
    with pytest.raises(ValueError, match=r"row weights \(3,\) do not match 4 rows"):
        cmd(x, y, weight=torch.ones(3))


def test_cmd_by_hand_for_batches_of_different_sizes() -> None:
    """x = (0, 2), y = (5): mean gap 4; central moments of x: k=2 -> 1, k=3 -> 0, k=4 -> 1, k=5 -> 0; of y: all 0.
    Each term is sqrt(gap^2 + 1e-12), so CMD_5 = 4 + 1 + 1e-6 + 1 + 1e-6 (a 6th moment or k = 0, 1 would show)."""
    x, y = torch.tensor([[0.0], [2.0]]), torch.tensor([[5.0]])
    assert cmd(x, y, moments=5).item() == pytest.approx(6.0 + 2e-6, abs=2e-7)
    assert cmd(x, y).item() == pytest.approx(6.0 + 2e-6, abs=2e-7)  # MISA's 5 moments by default
    assert cmd(x, torch.zeros(0, 1)).item() == 0.0  # an empty batch


def test_pairwise_cosine_distance_names_the_shape_it_got() -> None:
    with pytest.raises(ValueError, match=r"expected pooled features \[B, M, d\], got shape \(2, 3\)"):
        pairwise_cosine_distance(torch.zeros(2, 3))


def test_conflict_scores_of_short_vectors_by_hand() -> None:
    """Pooled vectors far shorter than 1: h_text = (0.1, 0), h_audio = (0.2, 0) (parallel: distance 0) and
    h_visual = (0, 0.05) (orthogonal to both: distance 1). C_text = C_audio = (0 + 1) / 2, C_visual = 1: the cosine
    normalises each vector, whatever its length."""
    h = torch.tensor([[[0.1, 0.0], [0.2, 0.0], [0.0, 0.05]]])
    torch.testing.assert_close(conflict_scores(h), torch.tensor([[0.5, 0.5, 1.0]]))
    torch.testing.assert_close(pairwise_cosine_distance(h)[0, 0, 1], torch.tensor(0.0))


def test_equilibrium_loss_rejects_an_unknown_form() -> None:
    with pytest.raises(ValueError, match="form must be 'one_sided' or 'two_sided', got 'one-sided'"):
        equilibrium_loss(torch.ones(3), form="one-sided")  # type: ignore[arg-type]


def test_soft_orthogonality_masks_both_sequences() -> None:
    """Valid step: H = P = (1, 0), parallel: |cos| = 1. The padded step holds H = (0, 5) and P = (5, 0): read from
    either side it would pull the cosine to 1/sqrt(26)."""
    shared = torch.tensor([[[1.0, 0.0], [0.0, 5.0]]])
    private = torch.tensor([[[1.0, 0.0], [5.0, 0.0]]])
    assert soft_orthogonality(shared, private, torch.tensor([[True, False]])).item() == pytest.approx(1.0)


def test_batch_statistics_edge_cases() -> None:
    """A constant batch has a standard deviation of exactly 0; SL refuses tensors of different lengths; the
    weighted mean divides by the weights' sum also when it is below 1; an unknown task loss is named."""
    assert float(batch_std(torch.full((5,), 3.0))) < 1e-9
    with pytest.raises(ValueError, match=r"statistical_loss expects two \[B\] tensors, got \(3,\) and \(4,\)"):
        statistical_loss(torch.zeros(3), torch.zeros(4))
    w = torch.tensor([0.25, 0.25, 0.0])
    assert reduce_per_sample(torch.tensor([2.0, 4.0, 100.0]), w).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"unknown task loss 'huber' \(expected l1, mse or ce\)"):
        task_loss(torch.zeros(2), torch.zeros(2), "huber")
