"""CACR (seed 003): CAW against hand computations, cross-reconstruction independence, orthogonality, gradients,
ablation switches, the decoupling block, resampling, and the ablate / plot commands end to end (tiny data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from accord.cli import app
from accord.config import load_config
from accord.core.errors import ConfigError
from accord.core.types import MODALITIES
from accord.models import create_model, list_models
from accord.models.cacr import CACR
from accord.models.modules import Decoupling, masked_resample
from accord.objectives.conflict import (
    conflict_scores,
    conflict_weights,
    normalize_weights,
    weighted_reconstruction_loss,
)
from accord.objectives.decoupling import private_preservation, reconstruction_error, soft_orthogonality
from accord.objectives.task import reduce_losses
from test_models import MOSI_DIMS, MOSI_T, TINY_DIMS, check_output, make_batch, repad

ABLATIONS = ["full", "no_crm", "no_caw", "gating", "no_fsr", "no_orth", "no_private"]
LENGTHS = {"text": [9, 4, 12, 7, 2, 10], "audio": [31, 17, 24, 9, 40, 3], "visual": [22, 40, 13, 31, 8, 27]}
SMALL = {"hidden": 16, "heads": 2, "head_hidden": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def total_loss(model: CACR, batch, out) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The trainer's total loss with MSE as the task loss (an L1 gradient can be exactly 0 for a bias when half
    the residuals are positive), plus the weighted model losses (per-sample ones reduced as the trainer does)."""
    w = model.default_loss_weights
    loss = F.mse_loss(out.prediction, batch.label)
    for name, aux in out.aux_predictions.items():
        loss = loss + w[name] * F.mse_loss(aux, batch.label)
    for name, value in reduce_losses(out.losses).items():
        loss = loss + w[name] * value
    return loss


# ------------------------------------------------------------------------------------------ CAW (pure functions)


def test_caw_matches_a_hand_computation() -> None:
    # sample 0: h_t = (1, 0), h_a = (0, 1), h_v = (1, 1); sample 1: h_a = -h_t = -h_v
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
                      [[2.0, 0.0], [-1.0, 0.0], [3.0, 0.0]]])
    c = conflict_scores(h)
    d45 = 1 - 1 / math.sqrt(2)  # 1 - cos 45°
    expected_c = torch.tensor([[(1 + d45) / 2, (1 + d45) / 2, d45], [1.0, 2.0, 1.0]])
    torch.testing.assert_close(c, expected_c)
    omega = conflict_weights(c, omega_min=0.2, tau=0.5)
    expected_w = 0.2 + 0.8 * torch.exp(-expected_c / 0.5)
    torch.testing.assert_close(omega, expected_w)
    assert omega[0, 0].item() == pytest.approx(0.2 + 0.8 * math.exp(-(1 + d45)), abs=1e-6)  # 0.41958
    assert omega[0, 0].item() == pytest.approx(0.41958, abs=1e-5)
    w_hat = normalize_weights(omega)
    torch.testing.assert_close(w_hat.sum(dim=1), torch.tensor([3.0, 3.0]))
    assert w_hat[0, 0].item() == pytest.approx(3 * 0.41958 / (2 * 0.41958 + 0.64536), abs=1e-4)
    errors = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    loss = weighted_reconstruction_loss(errors, w_hat)
    assert loss.item() == pytest.approx(((w_hat[0] * errors[0]).sum() + 1.5).item() / 2, abs=1e-6)


def test_caw_leaves_missing_modalities_out() -> None:
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    present = torch.tensor([[True, True, False]])
    c = conflict_scores(h, present)
    torch.testing.assert_close(c, torch.tensor([[1.0, 1.0, 0.0]]))  # visual is neither partner nor scored
    w_hat = normalize_weights(conflict_weights(c, 0.1, 1.0), present)
    assert w_hat[0, 2] == 0
    assert w_hat[0, :2].sum().item() == pytest.approx(2.0)
    alone = conflict_scores(h, torch.tensor([[True, False, False]]))  # no partner: no conflict
    torch.testing.assert_close(alone, torch.zeros(1, 3))


def test_caw_is_inert_with_two_present_modalities() -> None:
    """With two modalities C_text = C_audio (each is the other's only partner), so the normalised weights are 1:
    the full model's L_rec equals ``no_caw``'s (the fine-tuned MOSI benchmark, visual absent); with three it does
    not."""
    two = {"text": [5, 3, 4], "audio": [6, 2, 5], "visual": [0, 0, 0]}
    three = {**two, "visual": [4, 3, 2]}
    outs = {}
    for ablation in ("full", "no_caw"):
        torch.manual_seed(0)
        model = create_model("cacr", TINY_DIMS, 1, ablation=ablation, **SMALL).eval()
        with torch.no_grad():
            outs[ablation] = [model(make_batch(lens, TINY_DIMS, seed=3)) for lens in (two, three)]
    full, none = outs["full"], outs["no_caw"]
    # CAW weights L_rec only (the forward's prediction never reads w), so training differs through rec alone
    torch.testing.assert_close(full[1].prediction, none[1].prediction, rtol=0, atol=0)
    torch.testing.assert_close(full[0].diagnostics["conflict_text"], full[0].diagnostics["conflict_audio"])
    torch.testing.assert_close(full[0].losses["rec"], none[0].losses["rec"])
    assert not torch.allclose(full[1].losses["rec"], none[1].losses["rec"])


@pytest.mark.parametrize("omega_min,tau", [(0.1, 0.5), (0.0, 1.0), (0.5, 0.2)])
def test_omega_is_bounded_and_decreasing_in_conflict(omega_min: float, tau: float) -> None:
    c = torch.linspace(0, 2, 201, dtype=torch.float64)
    w = conflict_weights(c, omega_min, tau)
    assert w[0].item() == pytest.approx(1.0)
    assert (w >= omega_min).all() and (w <= 1).all()
    assert (w[1:] < w[:-1]).all()  # strictly decreasing
    with pytest.raises(ValueError, match="tau"):
        conflict_weights(c, 0.1, 0.0)
    with pytest.raises(ValueError, match="omega_min"):
        conflict_weights(c, 1.5, 1.0)


def test_model_omega_diagnostics_follow_caw_of_the_conflict() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, omega_min=0.3, tau=0.7, **SMALL).eval()
    batch = make_batch(LENGTHS, TINY_DIMS)
    with torch.no_grad():
        out = model(batch)
    c = torch.stack([out.diagnostics[f"conflict_{m}"] for m in MODALITIES], dim=1)
    w = torch.stack([out.diagnostics[f"omega_{m}"] for m in MODALITIES], dim=1)
    assert ((c >= 0) & (c <= 2)).all() and c.std() > 0
    assert ((w >= 0.3) & (w <= 1.0)).all()
    torch.testing.assert_close(w, 0.3 + 0.7 * torch.exp(-c / 0.7))
    # L_rec(i) = sum_m w^_m l_m with the saved per-sample errors (per sample since issue 17: the trainer takes
    # the sample-weighted mean over the batch)
    err = torch.stack([out.diagnostics[f"rec_error_{m}"] for m in MODALITIES], dim=1)
    expected = (w / w.sum(dim=1, keepdim=True) * 3 * err).sum(dim=1)
    torch.testing.assert_close(out.losses["rec"], expected)


# ------------------------------------------------------------------------------ losses of decoupled learning


def test_soft_orthogonality_values() -> None:
    h = torch.zeros(3, 2, 4)
    p = torch.zeros(3, 2, 4)
    h[0, :, 0], p[0, :, 1] = 1.0, 2.0  # orthogonal
    h[1, :, 0], p[1, :, 0] = 1.0, -3.0  # anti-parallel
    h[2, :, 0], p[2, :, :2] = 1.0, 1.0  # 45 degrees
    mask = torch.ones(3, 2, dtype=torch.bool)
    torch.testing.assert_close(soft_orthogonality(h, p, mask), torch.tensor([0.0, 1.0, 1 / math.sqrt(2)]))
    # padding is excluded: garbage at a padded step changes nothing
    h2, p2 = h.clone(), p.clone()
    h2[0, 1], p2[0, 1] = torch.tensor([5.0, 5, 5, 5]), torch.tensor([5.0, 5, 5, 5])
    mask2 = torch.tensor([[True, False], [True, True], [True, True]])
    assert soft_orthogonality(h2, p2, mask2)[0] == 0
    assert soft_orthogonality(h2, p2)[0] > 0.5  # (and without the mask it is not)


def test_orthogonality_loss_is_zero_for_orthogonal_shared_and_private() -> None:
    shared = {m: torch.zeros(2, 3, 4) for m in MODALITIES}
    private = {m: torch.zeros(2, 3, 4) for m in MODALITIES}
    for k, m in enumerate(MODALITIES):
        shared[m][..., k] = torch.randn(2, 3)
        private[m][..., 3] = torch.randn(2, 3)
    mask = {m: torch.ones(2, 3, dtype=torch.bool) for m in MODALITIES}
    assert Decoupling.orthogonality(shared, private, mask).item() == 0.0
    private["audio"][..., 1] = shared["audio"][..., 1] * 10  # now audio's P is nearly parallel to its H
    assert Decoupling.orthogonality(shared, private, mask).item() > 0.9


def test_reconstruction_error_and_private_preservation_by_hand() -> None:
    rec = torch.tensor([[[3.0, 4.0], [1.0, 1.0]], [[0.0, 0.0], [9.0, 9.0]]])
    target = torch.zeros(2, 2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    torch.testing.assert_close(reconstruction_error(rec, target, mask), torch.tensor([math.sqrt(27 / 2), 0.0]))
    torch.testing.assert_close(private_preservation(rec, target, mask), torch.tensor([27 / 2, 0.0]))
    one = reconstruction_error(torch.tensor([[[3.0, 4.0]]]), torch.zeros(1, 1, 2))
    assert one.item() == pytest.approx(5.0)  # the plain L2 norm at T = 1
    x = torch.zeros(1, 1, 2, requires_grad=True)
    reconstruction_error(x, torch.zeros(1, 1, 2)).sum().backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------- cross-reconstruction (CRM)


def test_reconstruction_of_m_does_not_read_h_m() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL)
    batch = make_batch(LENGTHS, TINY_DIMS)
    _, shared, private, mask = model.decoupling(batch.features, batch.mask)
    shared = {m: v.detach().requires_grad_() for m, v in shared.items()}
    private = {m: v.detach().requires_grad_() for m, v in private.items()}
    recon = model.cross_reconstruct(shared, private, mask)
    for k, m in enumerate(MODALITIES):
        inputs = [shared[n] for n in MODALITIES] + [private[n] for n in MODALITIES]
        grads = torch.autograd.grad(recon[m].square().sum(), inputs, allow_unused=True, retain_graph=True)
        g_shared, g_private = grads[:3], grads[3:]
        assert g_shared[k] is None or g_shared[k].abs().sum() == 0, f"X~_{m} depends on H_{m}"
        for j, n in enumerate(MODALITIES):
            if n != m:
                assert g_shared[j] is not None and g_shared[j].abs().sum() > 0, f"X~_{m} ignores H_{n}"
                assert g_private[j] is None or g_private[j].abs().sum() == 0, f"X~_{m} reads P_{n}"
        assert g_private[k] is not None and g_private[k].abs().sum() > 0, f"X~_{m} ignores P_{m}"


def test_crm_forms_decide_what_of_p_m_the_decoders_read() -> None:
    """``paper``: all of P_m; ``narrow``: a ``private_width``-channel linear map of P_m (the decoders' first conv
    reads d + width channels); ``drop``: in training each sample's P_m is zeroed with probability p and the kept
    ones scaled by 1 / (1 - p) (dropout's convention), in evaluation P_m unchanged."""
    p = torch.randn(400, 3, 16)
    paper = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="paper")
    assert paper.crm.private_input("audio", p) is p
    narrow = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="narrow", private_width=3)
    lin = narrow.crm.narrow["audio"]
    assert torch.allclose(narrow.crm.private_input("audio", p), p @ lin.weight.T + lin.bias)
    for conv1, _ in narrow.crm.decoders.values():
        assert conv1.conv.weight.shape[1] == 16 + 3
    drop = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="drop", private_drop=0.25).train()
    torch.manual_seed(0)
    out = drop.crm.private_input("audio", p)
    zeroed = (out == 0).flatten(1).all(dim=1)
    kept = ~zeroed
    assert torch.allclose(out[kept], p[kept] / 0.75)
    assert 0.18 < float(zeroed.float().mean()) < 0.32  # 400 draws of p = 0.25
    assert drop.eval().crm.private_input("audio", p) is p


def test_crm_variants_in_a_forward_pass() -> None:
    """Every CRM variant runs the whole model: ``narrow`` per modality, decoders shared per target
    (``decoders: target``), and ``drop`` at rate 0 is the literal form, drawing no random numbers."""
    batch = make_batch(LENGTHS, TINY_DIMS)
    for params in ({"crm": "narrow", "private_width": 3}, {"decoders": "target"}):
        torch.manual_seed(0)
        model = create_model("cacr", TINY_DIMS, 1, **SMALL, **params)
        out = model(batch)
        assert torch.isfinite(out.prediction).all() and out.losses["rec"].shape == (6,), params
    keys = set(create_model("cacr", TINY_DIMS, 1, **SMALL, decoders="target").crm.decoders)
    assert keys == {"to_text", "to_audio", "to_visual"}
    torch.manual_seed(0)
    paper = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="paper").train()
    drop0 = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="drop", private_drop=0.0).train()
    drop0.load_state_dict(paper.state_dict())
    torch.manual_seed(5)
    a = paper(batch)
    torch.manual_seed(5)
    b = drop0(batch)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)


def test_shared_mask_is_the_mask_of_the_sources() -> None:
    """``shared_mask`` (the probe's permuted H_n) replaces the sources' validity masks only."""
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL).eval()
    batch = make_batch(LENGTHS, TINY_DIMS)
    _, shared, private, mask = model.decoupling(batch.features, batch.mask)
    with torch.no_grad():
        same = model.crm(shared, private, mask, shared_mask=mask)
        base = model.crm(shared, private, mask)
        short = {m: v & (torch.arange(v.shape[1]) < 1).unsqueeze(0) for m, v in mask.items()}  # one step each
        other = model.crm(shared, private, mask, shared_mask=short)
    for m in MODALITIES:
        torch.testing.assert_close(same[m], base[m])
        assert not torch.allclose(other[m], base[m])
        assert float(other[m][~mask[m]].abs().max()) == 0.0  # the targets' padding stays zero


def test_detach_target_decides_whether_l_rec_trains_the_target_projection() -> None:
    """``detach_target``: L_rec's target X_m is a constant, so the projection of X_m gets L_rec's gradient only
    through the reconstruction; without it also through the target. The two gradients differ."""
    batch = make_batch(LENGTHS, TINY_DIMS)
    grads = {}
    for detach in (True, False):
        torch.manual_seed(0)
        model = create_model("cacr", TINY_DIMS, 1, **SMALL, detach_target=detach).eval()
        out = model(batch)
        w = model.decoupling.proj["audio"].conv.weight
        grads[detach] = torch.autograd.grad(out.losses["rec"].sum(), w)[0]
    assert not torch.allclose(grads[True], grads[False])


def test_rec_weights_are_normalised_over_the_present_modalities() -> None:
    """L_rec(i) = Σ_m ŵ_m l_m with ŵ_m = w_m / Σ_{n present} w_n · |present|, by hand from the diagnostics."""
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL).eval()
    lengths = {"text": [9, 4, 12], "audio": [31, 0, 24], "visual": [0, 40, 13]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        out = model(batch)
    w = torch.stack([out.diagnostics[f"omega_{m}"] for m in MODALITIES], dim=1)
    err = torch.stack([out.diagnostics[f"rec_error_{m}"] for m in MODALITIES], dim=1)
    pres = batch.present.float()
    w_hat = w * pres / (w * pres).sum(1, keepdim=True) * pres.sum(1, keepdim=True)
    torch.testing.assert_close(out.losses["rec"], (w_hat * err).sum(1))


def test_crm_drop_trains_the_decoders_from_h_n_alone_on_dropped_rows() -> None:
    """Under ``crm=drop`` a dropped row's reconstruction gets no gradient into P_m but still into every H_n."""
    torch.manual_seed(3)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL, crm="drop", private_drop=0.5, dropout=0.0).train()
    batch = make_batch(LENGTHS, TINY_DIMS)
    _, shared, private, mask = model.decoupling(batch.features, batch.mask)
    shared = {m: v.detach().requires_grad_() for m, v in shared.items()}
    private = {m: v.detach().requires_grad_() for m, v in private.items()}
    torch.manual_seed(1)
    recon = model.cross_reconstruct(shared, private, mask)
    g_p = torch.autograd.grad(recon["text"].square().sum(), private["text"], retain_graph=True)[0]
    dropped = g_p.flatten(1).abs().sum(dim=1) == 0
    assert bool(dropped.any()) and bool((~dropped).any())
    g_h = torch.autograd.grad(recon["text"].square().sum(), shared["audio"])[0]
    assert bool((g_h[dropped].flatten(1).abs().sum(dim=1) > 0).all())


def test_cross_reconstruction_handles_unaligned_lengths_and_padding() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL).eval()
    batch = make_batch(LENGTHS, TINY_DIMS)
    with torch.no_grad():
        _, shared, private, mask = model.decoupling(batch.features, batch.mask)
        recon = model.cross_reconstruct(shared, private, mask)
    for m in MODALITIES:
        assert recon[m].shape == shared[m].shape
        assert (recon[m][~mask[m]] == 0).all()


def test_masked_resample_by_hand() -> None:
    x = torch.tensor([[[1.0], [3.0], [99.0]]])  # 2 valid steps, then garbage padding
    x_mask = torch.tensor([[True, True, False]])
    target = torch.tensor([[True, True, True, True, False]])
    out = masked_resample(x, x_mask, target)
    # source positions (t + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1
    torch.testing.assert_close(out.view(-1), torch.tensor([1.0, 1.5, 2.5, 3.0, 0.0]))
    torch.testing.assert_close(masked_resample(x, x_mask, x_mask), x * x_mask.unsqueeze(-1))  # identity
    empty = masked_resample(x, torch.zeros(1, 3, dtype=torch.bool), target)
    assert (empty == 0).all()  # a missing source gives zeros
    one = masked_resample(torch.tensor([[[2.0, -1.0]]]), torch.ones(1, 1, dtype=torch.bool), target)
    torch.testing.assert_close(one[0, :4], torch.tensor([[2.0, -1.0]] * 4))  # one step broadcasts


# --------------------------------------------------------------------------------------------- FSR and fusion


def test_fsr_language_is_the_only_query() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL).eval()
    batch = make_batch(LENGTHS, TINY_DIMS)
    _, _, private, mask = model.decoupling(batch.features, batch.mask)
    private = {m: v.detach().requires_grad_() for m, v in private.items()}
    refined = model.fsr(private, mask)
    g = torch.autograd.grad(refined["text"].square().sum(), [private[m] for m in MODALITIES], retain_graph=True)
    assert all(gi.abs().sum() > 0 for gi in g)  # text is refined with audio and visual cues
    for m in ("audio", "visual"):
        g = torch.autograd.grad(refined[m].square().sum(), [private[n] for n in MODALITIES], allow_unused=True,
                                retain_graph=True)
        others = [gi for n, gi in zip(MODALITIES, g, strict=True) if n != m]
        assert all(gi is None or gi.abs().sum() == 0 for gi in others), f"{m} queried another modality"


# ----------------------------------------------------------------------------------------- the model contract


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_gradients_reach_every_parameter(ablation: str) -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, ablation=ablation, **SMALL).train()
    batch = make_batch(LENGTHS, TINY_DIMS)
    out = model(batch)
    check_output(out, 6, 1)
    total_loss(model, batch, out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == [], f"no gradient for {missing}"


@pytest.mark.parametrize("out_dim", [1, 3])
def test_single_step_and_classification(out_dim: int) -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, out_dim, **SMALL)
    batch = make_batch({m: [1, 1, 1, 1] for m in MODALITIES}, TINY_DIMS, out_dim=out_dim)  # T = 1 (MOSI-U)
    out = model(batch)
    check_output(out, 4, out_dim)
    assert set(out.aux_predictions) == {"shared", "private"}
    assert set(out.losses) == {"rec", "orth", "preserve"}
    assert set(out.features) == set(MODALITIES)
    assert {f"{k}_{m}" for k in ("conflict", "omega", "rec_error") for m in MODALITIES} <= set(out.diagnostics)


def test_long_unaligned_mosi_shaped_sequences_and_missing_modalities() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", MOSI_DIMS, 1, **SMALL)
    lengths = {"text": [50, 3, 17, 0], "audio": [375, 120, 0, 64], "visual": [500, 1, 333, 250]}
    batch = make_batch(lengths, MOSI_DIMS, t=MOSI_T)
    out = model(batch)
    check_output(out, 4, 1)
    assert out.diagnostics["omega_audio"][2] > 0 and out.diagnostics["conflict_audio"][2] == 0  # audio missing
    total_loss(model, batch, out).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("noise", [False, True], ids=["zero_padding", "noise_padding"])
def test_padding_invariance(noise: bool) -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, **SMALL).eval()
    lengths = {"text": [5, 2, 1, 4], "audio": [7, 7, 3, 1], "visual": [3, 1, 2, 3]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        a, b = model(batch), model(repad(batch, extra=9, noise=noise))
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)
    for key in a.diagnostics:
        torch.testing.assert_close(b.diagnostics[key], a.diagnostics[key], atol=1e-5, rtol=1e-5)
    for key in a.losses:
        torch.testing.assert_close(b.losses[key], a.losses[key], atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------- ablation switches


def _names(model: torch.nn.Module) -> set[str]:
    return {n.split(".")[0] for n, _ in model.named_parameters()}


def test_each_ablation_removes_its_component() -> None:
    torch.manual_seed(0)
    batch = make_batch(LENGTHS, TINY_DIMS)
    models = {a: create_model("cacr", TINY_DIMS, 1, ablation=a, **SMALL).eval() for a in ABLATIONS}
    with torch.no_grad():
        outs = {a: m(batch) for a, m in models.items()}
    full = outs["full"]
    assert {"crm", "fsr"} <= _names(models["full"]) and "gate" not in _names(models["full"])
    assert all(bool((full.losses[k] > 0).all()) for k in ("rec", "orth", "preserve"))  # per sample [B]
    # w/o CRM: no decoders, no reconstruction, no re-decoupled private features to preserve, w = 1
    assert "crm" not in _names(models["no_crm"])
    assert outs["no_crm"].losses["rec"] == 0 and outs["no_crm"].losses["preserve"] == 0
    assert not any(k.startswith("rec_error") for k in outs["no_crm"].diagnostics)
    # w/o CAW: w = 1 exactly, L_rec is the plain sum of the errors
    o = outs["no_caw"]
    assert all((o.diagnostics[f"omega_{m}"] == 1).all() for m in MODALITIES)
    err = torch.stack([o.diagnostics[f"rec_error_{m}"] for m in MODALITIES], dim=1)
    torch.testing.assert_close(o.losses["rec"], err.sum(dim=1))  # per sample since issue 17 (was its batch mean)
    # gating: the weight comes from a learned gate, not from the conflict score
    g = models["gating"]
    assert "gate" in _names(g)
    with torch.no_grad():
        for lin in g.gate.values():
            lin.weight.zero_()
            lin.bias.fill_(2.0)
        o = g(batch)
    p = g.params
    expected = p.omega_min + (1 - p.omega_min) * torch.sigmoid(torch.tensor(2.0))
    for m in MODALITIES:
        torch.testing.assert_close(o.diagnostics[f"omega_{m}"], expected.expand(6))
    # w/o FSR: no refinement module; w/o L_o, w/o L_p: the loss is a constant 0 without gradient
    assert "fsr" not in _names(models["no_fsr"])
    assert sum(p.numel() for p in models["no_fsr"].parameters()) < sum(
        p.numel() for p in models["full"].parameters())
    assert outs["no_orth"].losses["orth"] == 0 and (outs["no_orth"].losses["rec"] > 0).all()
    assert outs["no_private"].losses["preserve"] == 0 and (outs["no_private"].losses["orth"] > 0).all()
    train = create_model("cacr", TINY_DIMS, 1, ablation="no_orth", **SMALL)(batch)
    assert not train.losses["orth"].requires_grad and train.losses["rec"].requires_grad


def test_no_crm_feeds_plain_shared_features_to_the_shared_branch() -> None:
    """w/o CRM the shared branch reads H itself; with CRM it reads the re-decoupled reconstruction H~."""
    torch.manual_seed(0)
    batch = make_batch(LENGTHS, TINY_DIMS)
    for ablation, uses_h in (("no_crm", True), ("full", False)):
        model = create_model("cacr", TINY_DIMS, 1, ablation=ablation, **SMALL).eval()
        seen: list[torch.Tensor] = []
        handle = model.shared_fusion.register_forward_pre_hook(lambda mod, args, seen=seen: seen.append(args[0][0]))
        with torch.no_grad():
            model(batch)
            _, shared, _, _ = model.decoupling(batch.features, batch.mask)
        handle.remove()
        assert torch.equal(seen[0], shared["text"]) is uses_h, ablation


def test_bad_params_are_config_errors() -> None:
    assert {"cacr", "misa"} <= set(list_models())
    with pytest.raises(ConfigError, match=r"model\.params\.ablation"):
        create_model("cacr", TINY_DIMS, 1, ablation="no_everything")
    with pytest.raises(ConfigError, match=r"model\.params\.heads"):
        create_model("cacr", TINY_DIMS, 1, hidden=30, heads=4)
    with pytest.raises(ConfigError, match=r"model\.params\.decoder_kernel"):
        create_model("cacr", TINY_DIMS, 1, decoder_kernel=2)
    with pytest.raises(ConfigError, match=r"model\.params\.tau"):
        create_model("cacr", TINY_DIMS, 1, tau=0)


def test_config_loss_weights_are_the_paper_lambdas_for_every_ablation() -> None:
    names = {"shared", "private", "rec", "orth", "preserve"}
    lambdas = {"shared": 0.5, "private": 0.5, "rec": 0.1, "orth": 0.1, "preserve": 0.1}
    anchors = {f"anchor_{m}" for m in MODALITIES}
    for ablation in ABLATIONS:  # the resolved config names every term, with the same weights in every ablation
        cfg = load_config(method="cacr", dataset="conflictbench", overrides=[f"model.params.ablation={ablation}"])
        assert set(cfg.loss_weights) == {"task", *names, *anchors}
        assert {k: cfg.loss_weights[k] for k in names} == lambdas and cfg.loss_weights["task"] == 1.0
    assert names <= set(CACR.default_loss_weights)
    assert list(CACR.ablation_table) == ABLATIONS  # the paper's row order


def test_shared_anchor_option_emits_one_prediction_per_modality() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, shared_anchor=True, **SMALL)
    batch = make_batch({"text": [5, 2, 3], "audio": [0, 4, 2], "visual": [3, 1, 2]}, TINY_DIMS)
    out = model(batch)
    assert {f"anchor_{m}" for m in MODALITIES} <= set(out.aux_predictions)
    assert out.aux_weights["anchor_audio"].tolist() == [0.0, 1.0, 1.0]
    assert "anchor_text" not in create_model("cacr", TINY_DIMS, 1, **SMALL)(batch).aux_predictions


def test_shared_anchor_predictions_are_the_anchor_head_on_each_pooled_h_m() -> None:
    torch.manual_seed(0)
    model = create_model("cacr", TINY_DIMS, 1, shared_anchor=True, **SMALL).eval()
    batch = make_batch({"text": [5, 2, 3], "audio": [0, 4, 2], "visual": [3, 1, 2]}, TINY_DIMS)
    with torch.no_grad():
        out = model(batch)
        _, shared, _, mask = model.decoupling(batch.features, batch.mask)
    for m in MODALITIES:
        h = (shared[m] * mask[m].unsqueeze(-1)).sum(1) / mask[m].sum(1, keepdim=True).clamp_min(1)
        with torch.no_grad():
            torch.testing.assert_close(out.aux_predictions[f"anchor_{m}"], model.anchor_head(h).squeeze(-1))
        assert out.aux_weights[f"anchor_{m}"].dtype == torch.float32


def test_fusion_transformer_input_is_scaled_positioned_and_tagged_per_segment() -> None:
    """Each segment k enters the fusion transformer as (sqrt(d)·x + PE(t) + e_k) ⊙ mask, the positions counted
    within the segment, e_k the learned modality embedding ([segments, d], small at initialisation)."""
    from accord.models.cacr import ConcatTransformer
    from accord.models.modules.attention import sinusoidal_positions

    torch.manual_seed(0)
    fusion = ConcatTransformer(8, 2, 1, segments=2, dropout=0.0).eval()
    assert fusion.modality_embedding.shape == (2, 8) and float(fusion.modality_embedding.detach().abs().max()) < 0.2
    seen = {}

    def capture(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen["x"] = x
        return x

    fusion.transformer.forward = capture  # type: ignore[method-assign]
    a, b = torch.randn(2, 3, 8), torch.randn(2, 2, 8)
    ma, mb = torch.tensor([[True, True, False], [True, True, True]]), torch.tensor([[True, False], [True, True]])
    out = fusion([a, b], [ma, mb])
    pe = {t: sinusoidal_positions(t, 8) for t in (3, 2)}
    want = torch.cat([(math.sqrt(8) * a + pe[3] + fusion.modality_embedding[0]) * ma.unsqueeze(-1),
                      (math.sqrt(8) * b + pe[2] + fusion.modality_embedding[1]) * mb.unsqueeze(-1)], dim=1)
    torch.testing.assert_close(seen["x"], want)
    assert [o.shape[1] for o in out] == [3, 2]
    tr = fusion.transformer
    assert tr.positions is False and tr.embed_scale == 1.0  # positions and scale added here, once


def test_fsr_is_the_residual_refinement_of_the_paper_by_hand() -> None:
    """P'_m = P_m + GELU(Conv(P_m)) for audio and visual, P'_L = P_L + Attn(LN(P_L), LN([P'_A; P'_V])) (eval: no
    dropout), zero at padding."""
    from accord.models.cacr import SentimentRefinement

    torch.manual_seed(0)
    fsr = SentimentRefinement(8, 2).eval()
    mask = {"text": torch.tensor([[True, True, False]]), "audio": torch.tensor([[True, False]]),
            "visual": torch.tensor([[True, True]])}
    private = {m: torch.randn(1, v.shape[1], 8) * v.unsqueeze(-1) for m, v in mask.items()}
    with torch.no_grad():
        out = fsr(private, mask)
        want = {}
        for m in ("audio", "visual"):
            want[m] = (private[m] + F.gelu(fsr.extract[m](private[m], mask[m]))) * mask[m].unsqueeze(-1)
        kv = torch.cat([want["audio"], want["visual"]], dim=1)
        att = fsr.attn(fsr.ln_q(private["text"]), fsr.ln_kv(kv), torch.cat([mask["audio"], mask["visual"]], 1))[0]
        want["text"] = (private["text"] + att) * mask["text"].unsqueeze(-1)
    for m in MODALITIES:
        torch.testing.assert_close(out[m], want[m])


def test_every_param_reaches_its_module() -> None:
    model = create_model("cacr", TINY_DIMS, 1, hidden=8, heads=4, head_hidden=8, layers=1, decoder_kernel=5,
                         fsr_kernel=5, kernel_size=5, attn_dropout=0.2, dropout=0.3, downsample_audio=2)
    assert isinstance(model, CACR)
    assert all(c1.conv.kernel_size == (5,) and c2.conv.kernel_size == (5,)
               for c1, c2 in model.crm.decoders.values())  # type: ignore[union-attr]
    assert model.fsr.extract["audio"].conv.kernel_size == (5,)  # type: ignore[union-attr]
    assert model.fsr.attn.dropout == 0.2 and model.fsr.drop.p == 0.3  # type: ignore[union-attr]
    for fusion in (model.private_fusion, model.shared_fusion):
        layer = fusion.transformer.layers[0]
        assert layer.attn.dropout == 0.2 and layer.drop.p == 0.3 and layer.ffn[2].p == 0.3
        assert fusion.transformer.embed_drop.p == 0.3 and fusion.transformer.layers[0].ln_kv is None
    assert model.decoupling.downsample["audio"] == 2
    assert all(proj.conv.kernel_size == (5,) for proj in model.decoupling.proj.values())
    assert "text_to_audio" in model.crm.decoders  # type: ignore[operator]  # decoders: pair (the default)
    assert model.private_fusion.modality_embedding.shape == (3, 8)  # one embedding per modality
    # shared_encoder: one E_s^m per modality by default (METHODS.md 1.1 "per modality, two encoders")
    assert model.decoupling.shared_mode == "separate"
    assert model.decoupling.shared_encoder("text") is not model.decoupling.shared_encoder("audio")
    for head in (model.head, model.shared_head, model.private_head):
        assert head.net[0].out_features == 8 and head.net[2].p == 0.3
    other = create_model("cacr", TINY_DIMS, 1, hidden=8, heads=2, head_hidden=8, layers=1, shared_anchor=True,
                         encoder_temporal="transformer", shared_encoder="common", encoder_kernel=5,
                         downsample_text=2, downsample_audio=3, downsample_visual=5, decoders="target",
                         private_width=3, crm="narrow", private_drop=0.25, dropout=0.3)
    assert isinstance(other, CACR)
    dec = other.decoupling
    assert dec.downsample == {"text": 2, "audio": 3, "visual": 5} and dec.shared_mode == "common"
    assert dec.shared_encoder("text") is dec.shared_encoder("visual")
    assert dec.private["text"].temporal == "transformer" and dec.private["text"].mixer.attn.heads == 2
    assert all(proj.conv.kernel_size == (3,) for proj in dec.proj.values())  # kernel_size: its default
    assert set(other.crm.decoders) == {"to_text", "to_audio", "to_visual"}  # type: ignore[union-attr]
    assert other.crm.narrow["text"].out_features == 3 and other.crm.private_drop == 0.25  # type: ignore[union-attr]
    assert other.anchor_head.net[0].out_features == 8 and other.anchor_head.net[2].p == 0.3  # type: ignore[union-attr]
    conv = create_model("cacr", TINY_DIMS, 1, **{**SMALL, "encoder_kernel": 5})
    assert conv.decoupling.private["audio"].mixer.conv.kernel_size == (5,)


# ------------------------------------------------------------------------------------------- decoupling block


def test_decoupling_block_shares_one_encoder_and_masks_padding() -> None:
    torch.manual_seed(0)
    block = Decoupling(TINY_DIMS, 8, activation="sigmoid", downsample={"audio": 2})
    assert block.shared_encoder("text") is block.shared_encoder("audio")
    separate = Decoupling(TINY_DIMS, 8, shared_encoder="separate")
    assert separate.shared_encoder("text") is not separate.shared_encoder("audio")
    batch = make_batch({"text": [5, 2], "audio": [7, 0], "visual": [3, 1]}, TINY_DIMS)
    block.eval()
    out = block(batch.features, batch.mask)
    assert out.shared["audio"].shape == (2, 4, 8) and out.mask["audio"].tolist()[0] == [True] * 4
    for m in MODALITIES:
        assert (out.shared[m][~out.mask[m]] == 0).all() and (out.private[m][~out.mask[m]] == 0).all()
        valid = out.shared[m][out.mask[m]]
        assert ((valid > 0) & (valid < 1)).all()  # sigmoid outputs at valid steps
    again, _ = block.decouple(out.projected, out.mask)
    torch.testing.assert_close(again["text"], out.shared["text"])  # decouple() reuses the same encoders


# ----------------------------------------------------------------------------------- ablate and plot, end to end


runner = CliRunner()
TINY_CB = ["--set", "data.params.n_train=96", "--set", "data.params.n_valid=48", "--set", "data.params.n_test=48",
           "--set", "train.epochs=1", "--set", "train.batch_size=32", "--set", "model.params.hidden=16",
           "--set", "model.params.head_hidden=16", "--set", "train.num_threads=1"]


def test_ablate_and_plot_conflict_end_to_end(tmp_path: Path) -> None:
    table = tmp_path / "ablation.md"
    res = runner.invoke(app, ["ablate", "--method", "cacr", "--dataset", "conflictbench", "--seeds", "1",
                              "--only", "full,no_caw", "--out", str(tmp_path / "abl"), "--table", str(table),
                              *TINY_CB])
    assert res.exit_code == 0, res.output
    md = table.read_text()
    assert "| CACR (Full) | `full` |" in md and "| w/o CAW | `no_caw` |" in md
    assert "48.69" in md and "83.84" in md  # the paper's numbers beside ours
    assert "acc_conflicting" in md and "Produced by `accord ablate --method cacr" in md
    # the trivial-baseline row (train mean, from the run's summary) heads every table
    from accord.evaluation.baselines import CONSTANT_ROW

    const = json.loads((tmp_path / "abl" / "cacr_full" / "summary.json").read_text())["constant_predictor"]
    # paper layout, all metrics (test), validation and the planted-conflict table
    assert md.count(f"| {CONSTANT_ROW} |") == 4 and "## Dataset" in md and "| test | 48 |" in md
    assert f"{const['test']['MAE']['mean']:.3f} ± 0.000" in md
    run = tmp_path / "abl" / "cacr_full"
    with np.load(run / "seed_0" / "diagnostics.npz") as z:
        for m in MODALITIES:
            assert z[f"test/conflict_{m}"].shape == (48,) and z[f"test/omega_{m}"].shape == (48,)
        assert "test/extra_conflict" in z.files
    png = tmp_path / "c.png"
    res = runner.invoke(app, ["plot", "conflict", str(run), "--by", "extra_conflict_modality", "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["plot", "conflict", str(run), "--by", "nonexistent"])
    assert res.exit_code == 2 and "--by nonexistent" in res.output and "extra_conflict" in res.output
    res = runner.invoke(app, ["ablate", "--method", "cacr", "--only", "no_everything", "--seeds", "1", *TINY_CB])
    assert res.exit_code == 2 and "no_everything" in res.output
    res = runner.invoke(app, ["ablate", "--method", "tfn", "--seeds", "1"])
    assert res.exit_code == 2 and "declares no ablation table" in res.output
