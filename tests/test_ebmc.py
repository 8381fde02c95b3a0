"""EBMC (METHODS.md §3): its pure objectives on hand cases, the model contract, masking of absent modalities, the
ablation switches, and that distillation teaches the trust network to distrust a zeroed modality.

The corruption requirements of issue #5 (level 0 is the identity, level 1 removes everything) are covered by
``tests/test_corrupt.py::test_level_zero_is_identity`` and ``::test_level_one_removes_everything``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch
from accord.models import create_model
from accord.models.ebmc import EBMC
from accord.models.modules import masked_mean
from accord.objectives.decoupling import cmd
from accord.objectives.energy import equilibrium_loss, trust_kl, trust_teacher
from test_models import TINY_DIMS, check_output, make_batch, repad

SMALL = {"hidden": 8, "heads": 2, "head_hidden": 16, "downsample_audio": 1, "downsample_visual": 1}


# --- L_eq --------------------------------------------------------------------------------------------------------
def test_equilibrium_loss_is_zero_at_equal_energies() -> None:
    assert equilibrium_loss(torch.tensor([0.7, 0.7, 0.7])).item() == 0.0
    assert equilibrium_loss(torch.full((4, 3), 2.5)).item() == 0.0


def test_equilibrium_loss_is_one_sided_with_a_stopped_mean() -> None:
    """METHODS §3: L_eq = Σ_m relu(E_m − sg(mean_n E_n))². E = (1, 2, 6): mean 3, L = 0 + 0 + 3² = 9,
    ∂L/∂E = 2 relu(E − 3) = (0, 0, 6) (the mean is detached: no −(2/3)·3 = −2 leaking to every modality)."""
    e = torch.tensor([1.0, 2.0, 6.0], requires_grad=True)
    loss = equilibrium_loss(e)
    assert loss.item() == pytest.approx(9.0)
    (grad,) = torch.autograd.grad(loss, [e])
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 6.0]))
    assert float(grad[0]) == 0.0 and float(grad[1]) == 0.0  # below the mean: exactly zero
    # batched rows are averaged: row 2 = (3, 3, 3) gives 0, so L = 9 / 2 and the gradient halves
    rows = torch.tensor([[1.0, 2.0, 6.0], [3.0, 3.0, 3.0]], requires_grad=True)
    loss = equilibrium_loss(rows)
    assert loss.item() == pytest.approx(4.5)
    (grad,) = torch.autograd.grad(loss, [rows])
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]))


def test_two_sided_equilibrium_loss_hand_value_and_gradient_pushes_energies_together() -> None:
    """The old form (``form="two_sided"``): Σ_m (E_m − mean)², gradient 2 (E_m − mean) on both sides."""
    e = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = equilibrium_loss(e, form="two_sided")
    assert loss.item() == pytest.approx(2.0)  # (1-2)^2 + 0 + (3-2)^2
    loss.backward()
    assert e.grad is not None
    torch.testing.assert_close(e.grad, torch.tensor([-2.0, 0.0, 2.0]))  # 2 (E_m - mean)
    stepped = e.detach() - 0.1 * e.grad
    assert float(stepped.max() - stepped.min()) < 2.0  # one gradient step narrows the spread
    assert equilibrium_loss(stepped, form="two_sided").item() < loss.item()
    assert equilibrium_loss(torch.tensor([1.0, 2.0, 6.0]), form="two_sided").item() == pytest.approx(14.0)


def test_equilibrium_loss_ignores_absent_modalities() -> None:
    e = torch.tensor([[1.0, 3.0, 100.0], [5.0, 5.0, 5.0]])
    present = torch.tensor([[True, True, False], [True, False, False]])
    # row 0: mean 2 over the two present -> relu(1-2)^2 + relu(3-2)^2 = 0 + 1 (one-sided; two-sided 1 + 1);
    # row 1: one modality -> 0; mean over rows = 0.5 (two-sided 1.0)
    assert equilibrium_loss(e, present).item() == pytest.approx(0.5)
    assert equilibrium_loss(e, present, form="two_sided").item() == pytest.approx(1.0)


# --- trust teacher and KL ----------------------------------------------------------------------------------------
def test_trust_teacher_equals_softmax_of_negative_error_over_temperature() -> None:
    err = torch.tensor([[0.5, 1.0, 2.0]])
    t = trust_teacher(err, temperature=0.5)
    z = [math.exp(-1.0), math.exp(-2.0), math.exp(-4.0)]
    expected = torch.tensor([[v / sum(z) for v in z]])
    torch.testing.assert_close(t, expected)
    # an absent modality gets exactly 0 and the others renormalise
    t2 = trust_teacher(err, 0.5, torch.tensor([[True, False, True]]))
    z2 = [math.exp(-1.0), math.exp(-4.0)]
    torch.testing.assert_close(t2, torch.tensor([[z2[0] / sum(z2), 0.0, z2[1] / sum(z2)]]))
    assert trust_teacher(err, 0.5, torch.tensor([[False, False, False]])).sum().item() == 0.0
    with pytest.raises(ValueError, match="temperature"):
        trust_teacher(err, 0.0)


def test_trust_kl_hand_case_and_zero_when_equal() -> None:
    t = torch.tensor([[0.5, 0.5, 0.0]])
    present = torch.tensor([[True, True, False]])
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]]).masked_fill(~present, -1e9)
    log_w = logits.log_softmax(dim=-1)  # w = [0.25, 0.75, 0]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert trust_kl(t, log_w, present).item() == pytest.approx(expected, rel=1e-5)
    assert trust_kl(t, t.clamp_min(1e-30).log(), present).item() == pytest.approx(0.0, abs=1e-6)
    # finite gradient although w_audio... w_visual = 0
    logits.requires_grad_(True)
    trust_kl(t, logits.log_softmax(dim=-1), present).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# --- the model ---------------------------------------------------------------------------------------------------
def small_model(out_dim: int = 1, **params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("ebmc", TINY_DIMS, out_dim, **{**SMALL, **params})


@pytest.mark.parametrize("out_dim", [1, 3])
def test_contract_losses_and_masked_trust(out_dim: int) -> None:
    model = small_model(out_dim)
    lengths = {"text": [5, 2, 3, 0, 4], "audio": [0, 0, 4, 2, 6], "visual": [3, 1, 0, 2, 3]}
    batch = make_batch(lengths, TINY_DIMS, out_dim=out_dim)
    out = model(batch)
    check_output(out, 5, out_dim)
    assert set(out.losses) == {"eq", "trust", "orth", "sim"}
    assert set(out.losses) <= set(model.default_loss_weights) and model.default_loss_weights["sim"] == 0.1
    assert set(out.aux_predictions) == {f"unimodal_{m}" for m in MODALITIES}
    for k, m in enumerate(MODALITIES):
        torch.testing.assert_close(out.aux_weights[f"unimodal_{m}"], batch.present[:, k].float())
    w = torch.stack([out.diagnostics[f"trust_{m}"] for m in MODALITIES], dim=1)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5))
    assert float(w[~batch.present].max()) < 1e-6  # absent modalities get (near-)zero trust
    teacher = torch.stack([out.diagnostics[f"teacher_{m}"] for m in MODALITIES], dim=1)
    assert float(teacher[~batch.present].max()) == 0.0
    total = out.prediction.float().square().mean() + sum(v.mean() for v in out.losses.values())  # [B] or scalar
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_padding_invariance() -> None:
    model = small_model().eval()
    batch = make_batch({"text": [5, 2, 1, 4], "audio": [7, 7, 3, 1], "visual": [3, 1, 2, 3]}, TINY_DIMS)
    with torch.no_grad():
        a, b = model(batch), model(repad(batch, extra=6, noise=True))
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)
    for key in a.diagnostics:
        torch.testing.assert_close(b.diagnostics[key], a.diagnostics[key], atol=1e-5, rtol=1e-5)


def test_energies_are_the_unimodal_l1_errors_and_eq_matches_them() -> None:
    model = small_model().eval()
    batch = make_batch({"text": [3, 2, 4, 1], "audio": [2, 2, 2, 2], "visual": [1, 3, 2, 2]}, TINY_DIMS)
    with torch.no_grad():
        out = model(batch)
    for m in MODALITIES:
        torch.testing.assert_close(out.diagnostics[f"energy_{m}"], (out.aux_predictions[f"unimodal_{m}"]
                                                                     - batch.label).abs())
    e_bar = torch.stack([out.diagnostics[f"energy_{m}"].mean() for m in MODALITIES])
    one_sided = float((torch.relu(e_bar - e_bar.mean()) ** 2).sum())
    assert out.losses["eq"].item() == pytest.approx(one_sided, rel=1e-5)
    assert one_sided < float(((e_bar - e_bar.mean()) ** 2).sum())  # not the two-sided value
    with torch.no_grad():
        two = small_model(eq_form="two_sided").eval()(batch)
    assert two.losses["eq"].item() == pytest.approx(float(((e_bar - e_bar.mean()) ** 2).sum()), rel=1e-5)


def test_eq_loss_pushes_only_modalities_above_the_mean_energy() -> None:
    """∂L_eq/∂Ē_m = 2 relu(Ē_m − mean Ē): the strongest modality's (lowest energy) unimodal head gets NO gradient
    from L_eq, the weakest the largest; under the two-sided form the strongest head is pushed too."""
    batch = make_batch({"text": [2] * 6, "audio": [2] * 6, "visual": [2] * 6}, TINY_DIMS)
    for form in ("one_sided", "two_sided"):
        model = small_model(eq_form=form).eval()
        out = model(batch)
        e_bar = torch.stack([out.diagnostics[f"energy_{m}"].mean() for m in MODALITIES])
        strong, weak = MODALITIES[int(e_bar.argmin())], MODALITIES[int(e_bar.argmax())]
        heads = {m: list(model.unimodal_heads[m].parameters()) for m in (strong, weak)}
        grads = torch.autograd.grad(out.losses["eq"], heads[strong] + heads[weak], allow_unused=True)
        norm = [sum(float(g.abs().sum()) for g in part if g is not None) for part in (grads[:len(heads[strong])],
                                                                                        grads[len(heads[strong]):])]
        assert norm[1] > 0
        if form == "one_sided":
            assert norm[0] == 0.0
        else:
            assert norm[0] > 0


def test_ablation_switches() -> None:
    batch = make_batch({"text": [2, 3, 1], "audio": [2, 0, 2], "visual": [1, 1, 2]}, TINY_DIMS)
    out = small_model(ablation="no_energy")(batch)
    assert out.losses["eq"].item() == 0.0 and out.losses["trust"].mean().item() > 0.0
    out = small_model(ablation="no_sim")(batch)
    assert out.losses["sim"].item() == 0.0 and out.losses["orth"].mean().item() > 0.0
    assert out.losses["trust"].mean().item() > 0
    assert small_model()(batch).losses["sim"].item() > 0.0
    out = small_model(ablation="no_trust")(batch)
    assert float(out.losses["trust"].detach().abs().sum()) == 0.0  # no trust network: nothing to distil
    w = torch.stack([out.diagnostics[f"trust_{m}"] for m in MODALITIES], dim=1)
    torch.testing.assert_close(w, batch.present.float() / batch.present.float().sum(dim=1, keepdim=True))
    model = small_model(ablation="trust_without_distillation")
    out = model(batch)
    assert out.losses["trust"].mean().item() == 0.0
    out.prediction.square().mean().backward()  # the trust net still learns, through the task loss only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trust_net.parameters())
    full, no_enh = small_model(), small_model(ablation="no_enhance")
    assert full.enhance is not None and no_enh.enhance is None
    assert sum(p.numel() for p in no_enh.parameters()) < sum(p.numel() for p in full.parameters())


# --- shared-space term ----------------------------------------------------------------------------------------
def test_shared_similarity_by_hand() -> None:
    """L_sim = mean over the 3 pairs of CMD(h_m, h_n) over the rows where both are present."""
    model = small_model()
    assert isinstance(model, EBMC)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    pres = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    assert model.shared_similarity({m: x for m in MODALITIES}, pres).item() == pytest.approx(0.0, abs=1e-4)
    junk = {m: x.clone() for m in MODALITIES}
    junk["audio"][2], junk["visual"][1] = 100.0, -50.0  # rows where the modality is absent take no part
    assert model.shared_similarity(junk, pres).item() == pytest.approx(0.0, abs=1e-4)
    # audio shifted by 0.5: pairs (t, a) and (a, v) differ only in the mean, by |0.5·1_8| = 0.5·sqrt 8 = 1.414214;
    # (t, v) is 0; the mean over the 3 pairs is 2/3 · 1.414214 = 0.942809
    shifted = {**junk, "audio": junk["audio"] + 0.5}
    assert model.shared_similarity(shifted, pres).item() == pytest.approx(0.942809, abs=1e-4)


def test_sim_loss_is_cmd_of_the_pooled_shared_features_and_trains_the_shared_encoder() -> None:
    batch = make_batch({"text": [5, 2, 3, 0, 4], "audio": [0, 3, 4, 2, 6], "visual": [3, 1, 0, 2, 3]}, TINY_DIMS)
    model = small_model().eval()
    assert isinstance(model, EBMC)
    out = model(batch)
    with torch.no_grad():  # MISA's form, boolean-indexed rows: h_m = masked mean of the shared sequence H_m
        dec = model.decoupling(batch.features, batch.mask)
        h = {m: masked_mean(dec.shared[m], dec.mask[m]) for m in MODALITIES}
        pres = {m: batch.present[:, k] for k, m in enumerate(MODALITIES)}
        expected = sum(float(cmd(h[a][pres[a] & pres[b]], h[b][pres[a] & pres[b]], 5))
                       for a, b in [("text", "audio"), ("text", "visual"), ("audio", "visual")]) / 3
    assert out.losses["sim"].item() == pytest.approx(expected, rel=1e-5) and expected > 0
    shared_enc = model.decoupling.shared_encoder("text")
    enc_params = [*shared_enc.parameters(), *model.decoupling.proj["audio"].parameters()]
    grads = torch.autograd.grad(out.losses["sim"], enc_params, allow_unused=True)
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    heads = [*model.unimodal_heads.parameters(), *model.fusion_head.parameters()]
    assert all(g is None for g in torch.autograd.grad(out.losses["sim"], heads, allow_unused=True))
    # no_sim drops exactly λ_sim · ∂L_sim/∂θ from the total gradient (same initialisation, no dropout)
    lam = EBMC.default_loss_weights

    def total_grad(m: torch.nn.Module) -> list[torch.Tensor]:
        o = m(batch)
        loss = o.prediction.abs().mean() + sum(lam[k] * v.mean() for k, v in o.losses.items())
        return [g for g in torch.autograd.grad(loss, list(m.decoupling.shared_encoder("text").parameters()))]

    ablated = small_model(ablation="no_sim").eval()
    full_g, ablated_g = total_grad(model), total_grad(ablated)
    sim_g = torch.autograd.grad(model(batch).losses["sim"], list(shared_enc.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(full_g, ablated_g, strict=True))
    for a, b, s in zip(full_g, ablated_g, sim_g, strict=True):
        torch.testing.assert_close(a - b, lam["sim"] * s, atol=1e-6, rtol=1e-4)


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model.params.heads"):
        create_model("ebmc", TINY_DIMS, 1, hidden=6, heads=4)
    with pytest.raises(ConfigError, match="model.params.ablation"):
        create_model("ebmc", TINY_DIMS, 1, ablation="no_everything")
    with pytest.raises(ConfigError, match="model.params.temperature"):
        create_model("ebmc", TINY_DIMS, 1, temperature=0.0)


def _controlled_batch(g: torch.Generator, n: int, zero_audio: torch.Tensor) -> Batch:
    """T = 1; the label is a linear function of audio only; text and visual are noise. ``zero_audio`` [n] zeroes
    the audio features of those samples while ``present`` stays True (a silent failure, not a flagged one)."""
    feats = {m: torch.randn(n, 1, TINY_DIMS[m], generator=g) for m in MODALITIES}
    label = feats["audio"][:, 0, :].sum(dim=1)
    feats["audio"] = feats["audio"] * (~zero_audio).float().view(n, 1, 1)
    mask = {m: torch.ones(n, 1, dtype=torch.bool) for m in MODALITIES}
    return Batch(features=feats, mask=mask, present=torch.ones(n, 3, dtype=torch.bool), label=label)


def test_distillation_teaches_low_trust_for_a_zeroed_modality() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only add overhead on a shared CPU
    try:
        _train_and_check_trust()
    finally:
        torch.set_num_threads(threads)


def _train_and_check_trust() -> None:
    torch.manual_seed(0)
    model = create_model("ebmc", TINY_DIMS, 1, **{**SMALL, "dropout": 0.0, "temperature": 0.25})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        zero = torch.rand(64, generator=g) < 0.5
        batch = _controlled_batch(g, 64, zero)
        out = model(batch)
        loss = F.l1_loss(out.prediction, batch.label) + out.losses["trust"].mean()
        for m in MODALITIES:
            loss = loss + F.l1_loss(out.aux_predictions[f"unimodal_{m}"], batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    zero = torch.arange(200) % 2 == 0
    batch = _controlled_batch(torch.Generator().manual_seed(1), 200, zero)
    with torch.no_grad():
        out = model(batch)
    trust_audio = out.diagnostics["trust_audio"]
    intact, zeroed = float(trust_audio[~zero].mean()), float(trust_audio[zero].mean())
    assert intact > 0.6  # audio is the only informative modality
    assert zeroed < 0.5 * intact  # ... and the trust for it drops when it is zeroed
    # flagged missing (present False): masked to ~0 whatever the network says
    flagged = Batch(features=batch.features, mask=batch.mask,
                    present=torch.tensor([[True, False, True]]).expand(200, 3).clone(), label=batch.label)
    with torch.no_grad():
        assert float(model(flagged).diagnostics["trust_audio"].max()) < 1e-6


def test_modality_parameters_are_each_modalitys_own_and_the_enhancement_of_audio_and_visual() -> None:
    """What OGM-GE / AGM modulate on EBMC: private encoder, projection, unimodal head, and A/V's enhancement; the
    shared encoder, trust network and fusion belong to no modality."""
    for ablation in ("full", "no_enhance"):
        model = create_model("ebmc", TINY_DIMS, 1, ablation=ablation, **SMALL)
        assert isinstance(model, EBMC)
        groups = model.modality_parameters()
        for m in MODALITIES:
            want = [*model.decoupling.proj[m].parameters(), *model.decoupling.private[m].parameters(),
                    *model.unimodal_proj[m].parameters(), *model.unimodal_heads[m].parameters()]
            if ablation == "full" and m != "text":
                want += list(model.enhance[m].parameters())  # type: ignore[index]
            assert [id(p) for p in groups[m]] == [id(p) for p in want], (ablation, m)
        ids = [{id(p) for p in groups[m]} for m in MODALITIES]
        assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])


def test_text_guides_the_enhancement_of_audio_and_visual_only() -> None:
    """Step 3 (METHODS §3): audio's and visual's shared features attend to text's, so z_A and z_V depend on the text
    features (its real steps only), z_T does not depend on audio or visual; ``no_enhance`` removes the dependence."""
    lengths = {"text": [5, 2, 4], "audio": [3, 4, 2], "visual": [2, 3, 3]}
    for ablation, guided in (("full", True), ("no_enhance", False)):
        torch.manual_seed(0)
        model = create_model("ebmc", TINY_DIMS, 1, ablation=ablation, **SMALL).eval()
        assert isinstance(model, EBMC)
        batch = make_batch(lengths, TINY_DIMS)
        feats = {m: x.clone().requires_grad_(True) for m, x in batch.features.items()}
        z, _, _ = model.unimodal(Batch(**{**batch.__dict__, "features": feats}))
        for m in ("audio", "visual"):
            (g,) = torch.autograd.grad(z[m].sum(), feats["text"], retain_graph=True, allow_unused=True)
            if not guided:
                assert g is None or float(g.abs().max()) == 0.0, m
                continue
            assert g is not None
            real = batch.mask["text"].unsqueeze(-1).expand_as(g)
            assert bool((g[real] != 0).all(dim=-1).any()), m
            assert float(g[~real].abs().max()) == 0.0  # text's padding is never read
        (ga, gv) = torch.autograd.grad(z["text"].sum(), [feats["audio"], feats["visual"]], allow_unused=True)
        assert all(g is None or float(g.abs().max()) == 0.0 for g in (ga, gv))


def test_every_param_reaches_its_module() -> None:
    """A config value that silently does nothing is a wrong result: each EBMC param is where the code uses it."""
    model = create_model("ebmc", TINY_DIMS, 1, hidden=8, heads=4, head_hidden=16, kernel_size=5, encoder_kernel=3,
                         encoder_temporal="transformer", shared_encoder="separate", dropout=0.3, downsample_text=2,
                         downsample_audio=3, downsample_visual=5)
    assert isinstance(model, EBMC)
    dec = model.decoupling
    assert dec.downsample == {"text": 2, "audio": 3, "visual": 5}
    assert dec.shared_mode == "separate" and dec.shared_common is None and dec.shared_separate is not None
    assert all(dec.proj[m].conv.kernel_size == (5,) for m in MODALITIES)
    enc = dec.private["text"]
    assert enc.temporal == "transformer" and enc.mixer.attn.heads == 4 and enc.drop.p == 0.3
    for m in ("audio", "visual"):
        layer = model.enhance[m]  # type: ignore[index]
        assert layer.attn.heads == 4 and layer.drop.p == 0.3 and layer.ffn[2].p == 0.3
    conv = create_model("ebmc", TINY_DIMS, 1, hidden=8, heads=2, encoder_kernel=5, **{
        k: v for k, v in SMALL.items() if k not in ("hidden", "heads")})
    assert conv.decoupling.private["audio"].mixer.conv.kernel_size == (5,)  # type: ignore[union-attr]


def test_classification_energies_are_free_energies_and_eq_counts_present_modalities_only() -> None:
    model = small_model(out_dim=3).eval()
    assert isinstance(model, EBMC)
    logits = {m: torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]) * (k + 1) for k, m in enumerate(MODALITIES)}
    label = torch.tensor([1, 2])
    err, energy = model.errors_and_energies(logits, label)
    for k, m in enumerate(MODALITIES):
        torch.testing.assert_close(err[:, k], F.cross_entropy(logits[m], label, reduction="none"))
        torch.testing.assert_close(energy[:, k], -torch.logsumexp(logits[m], dim=-1))
    # visual present in one sample only, audio in none: L_eq over text and visual (a count of 1 still counts)
    reg = small_model().eval()
    batch = make_batch({"text": [2, 3, 1], "audio": [0, 0, 0], "visual": [0, 2, 0]}, TINY_DIMS)
    with torch.no_grad():
        out = reg(batch)
    e_text = out.diagnostics["energy_text"].mean()
    e_vis = out.diagnostics["energy_visual"][1]
    mean = (e_text + e_vis) / 2
    want = float(torch.relu(e_text - mean) ** 2 + torch.relu(e_vis - mean) ** 2)
    assert out.losses["eq"].item() == pytest.approx(want, rel=1e-5)
    assert out.features is not None and set(out.features) == set(MODALITIES)  # z_m at the fusion input
    with torch.no_grad():
        z, _, _ = reg.unimodal(batch)
    for m in MODALITIES:
        torch.testing.assert_close(out.features[m], z[m])


def test_shared_term_moments_eq_weight_scale_and_head_widths() -> None:
    """``cmd_moments`` reaches the CMD term; Ē_m is a weighted MEAN, so scaling every sample weight leaves L_eq
    unchanged (also when the weights sum to less than 1); ``head_hidden`` sizes every MLP."""
    batch = make_batch({"text": [2, 3], "audio": [2, 2], "visual": [1, 2]}, TINY_DIMS)
    model = small_model(cmd_moments=2).eval()
    assert isinstance(model, EBMC)
    with torch.no_grad():
        out = model(batch)
        z, _, _ = model.unimodal(batch)
        dec = model.decoupling(batch.features, batch.mask)
    pooled = {m: masked_mean(dec.shared[m], dec.mask[m]) for m in MODALITIES}
    pairs = [("text", "audio"), ("text", "visual"), ("audio", "visual")]
    want = torch.stack([cmd(pooled[a], pooled[b], 2) for a, b in pairs]).mean()
    assert out.losses["sim"].item() == pytest.approx(float(want), rel=1e-5)
    eqs = []
    for w in (1.0, 0.25):
        weighted = Batch(**{**batch.__dict__, "extras": {"sample_weight": torch.full((2,), w)}})
        with torch.no_grad():
            eqs.append(model(weighted).losses["eq"].item())
    assert eqs[1] == pytest.approx(eqs[0], rel=1e-5)
    wide = create_model("ebmc", TINY_DIMS, 1, **{**SMALL, "head_hidden": 12})
    assert isinstance(wide, EBMC)
    heads = [wide.fusion_head, wide.trust_net, *wide.unimodal_heads.values()]
    assert all(h.net[0].out_features == 12 for h in heads)  # type: ignore[union-attr]


def test_shared_term_weights_each_row_by_its_sample_weight_once() -> None:
    """L_sim's row weight for a pair (m, n) is present_m * present_n * w_i: a row of sample weight 0.5 counts as
    half a row in every moment (the weight squared would count it as a quarter)."""
    batch = make_batch({"text": [2, 3, 1], "audio": [2, 2, 2], "visual": [1, 2, 0]}, TINY_DIMS)
    sw = torch.tensor([0.5, 1.0, 2.0])
    model = small_model(cmd_moments=3).eval()
    assert isinstance(model, EBMC)
    weighted = Batch(**{**batch.__dict__, "extras": {"sample_weight": sw}})
    with torch.no_grad():
        got = model(weighted).losses["sim"]
        dec = model.decoupling(batch.features, batch.mask)
    pooled = {m: masked_mean(dec.shared[m], dec.mask[m]) for m in MODALITIES}
    present = {m: (batch.mask[m].sum(dim=1) > 0).float() for m in MODALITIES}
    pairs = [("text", "audio"), ("text", "visual"), ("audio", "visual")]

    def sim(power: int) -> float:
        return float(torch.stack([cmd(pooled[a], pooled[b], 3, weight=present[a] * present[b] * sw**power)
                                  for a, b in pairs]).mean())

    assert got.item() == pytest.approx(sim(1), rel=1e-5)
    assert got.item() != pytest.approx(sim(2), rel=1e-3)
