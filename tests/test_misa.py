"""MISA (the decoupling baseline): CMD and difference losses by hand, self-reconstruction, the model contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accord.config import load_config
from accord.core.errors import ConfigError
from accord.core.types import MODALITIES
from accord.models import create_model
from accord.objectives.decoupling import cmd, misa_difference
from accord.objectives.task import reduce_losses
from test_models import TINY_DIMS, check_output, make_batch, repad

LENGTHS = {"text": [9, 4, 12, 7, 2, 10], "audio": [31, 17, 24, 9, 40, 3], "visual": [22, 40, 13, 31, 8, 27]}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_cmd_by_hand() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert cmd(x, x).item() == pytest.approx(0.0, abs=1e-5)
    # a shift changes only the mean: CMD = ||shift||
    assert cmd(x, x + torch.tensor([3.0, 4.0])).item() == pytest.approx(5.0, abs=1e-5)
    # same mean, different spread: the 2nd central moments are 1 vs 4 per dim -> ||(3, 3)|| = 3 sqrt 2 (odd ones 0)
    y = torch.tensor([[-1.0, 0.0], [3.0, 4.0]])
    mom4 = (1 - 16) ** 2 * 2  # 4th central moments 1 vs 16
    expected = (9 * 2) ** 0.5 + mom4**0.5
    assert cmd(x, y, moments=4).item() == pytest.approx(expected, abs=1e-4)
    empty = torch.zeros(0, 2)
    assert cmd(empty, x).item() == 0.0


def test_weighted_cmd_equals_cmd_of_the_selected_rows() -> None:
    """0/1 weights (EBMC's rows where both modalities are present) = CMD of those rows, without boolean indexing."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g) * 2 + 1
    keep = torch.tensor([True, False, True, True, False, True, True])
    for k in (1, 2, 5):
        torch.testing.assert_close(cmd(x, y, k, weight=keep.float()), cmd(x[keep], y[keep], k))
    torch.testing.assert_close(cmd(x, y, weight=torch.ones(7)), cmd(x, y))
    # by hand: rows 0 and 2 of x = (0, 1), (9, 9), (2, 3) vs y + 1: only the mean differs, CMD = |(1, 1)| = sqrt 2
    xs = torch.tensor([[0.0, 1.0], [9.0, 9.0], [2.0, 3.0]])
    w = torch.tensor([1.0, 0.0, 1.0])
    assert cmd(xs, xs + 1, weight=w).item() == pytest.approx(2**0.5, abs=1e-4)
    assert cmd(xs, xs.flip(0), weight=torch.zeros(3)).item() == 0.0  # no common row: 0, not NaN
    xr = xs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(cmd(xr, xs + 1, weight=w), [xr])
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0  # a weight-0 row gets no gradient


def test_misa_difference_by_hand() -> None:
    # MISA's difference loss penalises CORRELATION of feature dimensions across the batch
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, -2.0], [0.0, -2.0]])  # uncorrelated with a's column
    assert misa_difference(a, b).item() == pytest.approx(0.0, abs=1e-10)
    # a with itself: unit rows +-e1 -> A^T A = [[4, 0], [0, 0]] -> mean of the squared entries 16 / 4
    assert misa_difference(a, a).item() == pytest.approx(4.0, abs=1e-4)
    assert misa_difference(a, -b[[0, 2, 1, 3]]).item() == pytest.approx(4.0, abs=1e-4)  # anti-correlated too


def test_cmd_and_difference_take_pairs_along_leading_dimensions() -> None:
    """``[P, N, d]`` inputs are P independent pairs: each entry equals the function on that pair alone (weighted,
    unweighted, with a pair whose weights are all 0), gradients included; a weight of the wrong shape is refused."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 6, 4, generator=g), torch.randn(3, 6, 4, generator=g) * 1.5 + 0.5
    w = (torch.rand(3, 6, generator=g) > 0.3).float() * 2.0
    w[2] = 0.0
    xr = x.clone().requires_grad_(True)
    for k in (1, 2, 5):
        got = cmd(xr, y, k, weight=w)
        assert got.shape == (3,)
        torch.testing.assert_close(got, torch.stack([cmd(x[i], y[i], k, weight=w[i]) for i in range(3)]))
        torch.testing.assert_close(cmd(x, y, k), torch.stack([cmd(x[i], y[i], k) for i in range(3)]))
    assert float(cmd(x, y, weight=w)[2]) == 0.0
    (grad,) = torch.autograd.grad(cmd(xr, y, weight=w)[0], [xr])
    assert grad[1:].abs().sum() == 0 and grad[0].abs().sum() > 0  # pair 0's value reads pair 0 only
    d = misa_difference(x, y, weight=w)
    assert d.shape == (3,) and float(d[2]) == 0.0
    torch.testing.assert_close(d, torch.stack([misa_difference(x[i], y[i], weight=w[i]) for i in range(3)]))
    torch.testing.assert_close(misa_difference(x, y), torch.stack([misa_difference(x[i], y[i]) for i in range(3)]))
    with pytest.raises(ValueError, match="row weights"):
        cmd(x, y, weight=w[0])
    with pytest.raises(ValueError, match="row weights"):
        misa_difference(x, y, weight=w[:, :5])


def test_misa_contract_losses_and_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1).train()
    batch = make_batch(LENGTHS, TINY_DIMS)
    out = model(batch)
    check_output(out, 6, 1)
    assert set(out.losses) == {"sim", "diff", "recon"} and all(bool((v > 0).all()) for v in out.losses.values())
    # sim and diff are batch statistics (scalars); recon is per sample since issue 17, so sample weights reach it
    assert out.losses["sim"].ndim == out.losses["diff"].ndim == 0 and out.losses["recon"].shape == (6,)
    assert {f"conflict_{m}" for m in MODALITIES} <= set(out.diagnostics)
    w = model.default_loss_weights
    assert w == {"sim": 1.0, "diff": 0.3, "recon": 1.0}
    loss = F.mse_loss(out.prediction, batch.label) + sum(w[k] * v for k, v in reduce_losses(out.losses).items())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == [], f"no gradient for {missing}"


def test_misa_reconstructs_each_modality_from_itself() -> None:
    """The self-reconstruction loss of MISA reads H_m of the SAME modality (what CACR replaces)."""
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1)
    batch = make_batch(LENGTHS, TINY_DIMS)
    x, shared, private, mask = model.decoupling(batch.features, batch.mask)
    rec = model.recon["audio"](shared["audio"] + private["audio"])
    g = torch.autograd.grad(rec.square().sum(), [shared[m] for m in MODALITIES], allow_unused=True)
    assert g[1] is not None and g[1].abs().sum() > 0
    assert g[0] is None and g[2] is None


def test_misa_padding_missing_and_single_step() -> None:
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 3).eval()
    lengths = {"text": [5, 2, 1, 0], "audio": [7, 0, 3, 1], "visual": [3, 1, 2, 3]}
    batch = make_batch(lengths, TINY_DIMS, out_dim=3)
    with torch.no_grad():
        a, b = model(batch), model(repad(batch, extra=6, noise=True))
    check_output(a, 4, 3)
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)
    one = make_batch({m: [1, 1] for m in MODALITIES}, TINY_DIMS)
    check_output(create_model("misa", TINY_DIMS, 1)(one), 2, 1)


def test_misa_config_and_errors() -> None:
    cfg = load_config(method="misa", dataset="conflictbench")
    assert cfg.loss_weights == {"task": 1.0, "sim": 1.0, "diff": 0.3, "recon": 1.0}
    with pytest.raises(ConfigError, match=r"model\.params\.encoder_temporal"):
        create_model("misa", TINY_DIMS, 1, encoder_temporal="lstm")
    with pytest.raises(ConfigError, match=r"model\.params\.heads"):
        create_model("misa", TINY_DIMS, 1, hidden=15, heads=2)


# ------------------------------------------------- built from its params; Eq. 6-8 composed as the paper writes them
# (written after the mutation run over models/misa.py, benchmarks/results/mutation.md)
def test_misa_even_kernel_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.kernel_size: must be odd .*got 4"):
        create_model("misa", TINY_DIMS, 1, kernel_size=4)


def test_misa_blocks_are_built_from_the_params() -> None:
    model = create_model("misa", TINY_DIMS, 1, hidden=8, heads=2, kernel_size=5, encoder_temporal="transformer",
                         dropout=0.2, downsample_text=2, downsample_audio=3, downsample_visual=5)
    dec = model.decoupling
    assert dec.shared_mode == "common" and dec.activation == "sigmoid"  # one E_c, Linear + Sigmoid (Eq. 3)
    assert dec.downsample == {"text": 2, "audio": 3, "visual": 5}
    assert all(dec.proj[m].conv.kernel_size == (5,) for m in MODALITIES)
    assert dec.private["text"].temporal == "transformer" and dec.private["text"].mixer.attn.heads == 2
    assert dec.private["text"].drop.p == 0.2
    fusion = model.fusion  # one transformer over the six vectors: no positions, no embedding scale
    assert fusion.positions is False and fusion.embed_scale == 1.0
    assert all(layer.ffn[2].p == 0.2 and layer.drop.p == 0.2 and layer.ln_kv is None for layer in fusion.layers)
    kinds = [type(m).__name__ for m in model.head]  # Linear(6d, 3d) -> Dropout -> ReLU -> Linear(3d, out)
    assert kinds == ["Linear", "Dropout", "ReLU", "Linear"] and model.head[1].p == 0.2
    assert model.head[0].in_features == 48 and model.head[0].out_features == 24


def test_misa_similarity_and_difference_are_eq_6_and_7() -> None:
    """sim = mean over the 3 pairs of CMD_K (K = cmd_moments); diff = Σ_m D(h_p^m, h_c^m) + Σ_pairs D(h_p^a, h_p^b),
    every term added (a sign flip or a missing term changes the value)."""
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1, cmd_moments=2)
    g = torch.Generator().manual_seed(4)
    hc = {m: torch.rand(6, 32, generator=g) for m in MODALITIES}
    hp = {m: torch.rand(6, 32, generator=g) for m in MODALITIES}
    present = {m: torch.ones(6, dtype=torch.bool) for m in MODALITIES}
    sim, diff = model.similarity_and_difference(hc, hp, present, None)
    pairs = [("text", "audio"), ("text", "visual"), ("audio", "visual")]
    assert float(sim) == pytest.approx(sum(float(cmd(hc[a], hc[b], 2)) for a, b in pairs) / 3, rel=1e-5)
    assert float(sim) != pytest.approx(sum(float(cmd(hc[a], hc[b], 5)) for a, b in pairs) / 3, rel=1e-3)
    expected = (sum(float(misa_difference(hp[m], hc[m])) for m in MODALITIES)
                + sum(float(misa_difference(hp[a], hp[b])) for a, b in pairs))
    assert float(diff) == pytest.approx(expected, rel=1e-5)


def test_misa_reconstruction_error_averages_over_the_present_modalities_only() -> None:
    """Eq. 8 per sample: a row with one present modality has exactly that modality's error (not half of it)."""
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1)
    batch = make_batch({"text": [3, 2], "audio": [4, 0], "visual": [2, 0]}, TINY_DIMS)
    per = {}
    with torch.no_grad():
        x, shared, private, mask = model.decoupling(batch.features, batch.mask)
        present = {m: mask[m].any(dim=1) for m in MODALITIES}
        err = model.reconstruction_error(x, shared, private, mask, present)
        for m in MODALITIES:
            rec = model.recon[m](shared[m] + private[m])
            w = mask[m].unsqueeze(-1).float()
            per[m] = ((rec - x[m]) * w).pow(2).sum(dim=(1, 2)) / (w.sum(dim=(1, 2)) * rec.shape[-1]).clamp_min(1.0)
    assert float(err[0]) == pytest.approx(float(sum(per[m][0] for m in MODALITIES)) / 3, rel=1e-5)
    assert float(err[1]) == pytest.approx(float(per["text"][1]), rel=1e-5)


def test_misa_features_and_conflict_diagnostics_read_the_right_tokens() -> None:
    """``features[m]`` = [fused private token of m, fused shared token of m] (MISA's order t, v, a); the conflict
    score of a row with a missing modality compares the present ones only."""
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1).eval()
    batch = make_batch({"text": [3, 2], "audio": [4, 0], "visual": [2, 3]}, TINY_DIMS)
    fused: list[torch.Tensor] = []
    hook = model.fusion.register_forward_hook(lambda mod, args, out: fused.append(out))
    with torch.no_grad():
        out = model(batch)
    hook.remove()
    order = {"text": 0, "visual": 1, "audio": 2}
    for m in MODALITIES:
        torch.testing.assert_close(out.features[m], torch.cat([fused[0][:, order[m]], fused[0][:, 3 + order[m]]], -1))
    with torch.no_grad():
        _, shared, _, mask = model.decoupling(batch.features, batch.mask)
    hc = {m: (shared[m] * mask[m].unsqueeze(-1)).sum(1) / mask[m].sum(1, keepdim=True).clamp_min(1) for m in MODALITIES}
    d_tv = 1 - F.cosine_similarity(hc["text"][1], hc["visual"][1], dim=0)
    assert float(out.diagnostics["conflict_text"][1]) == pytest.approx(float(d_tv), rel=1e-4)  # audio absent
    assert float(out.diagnostics["conflict_audio"][1]) == 0.0


def test_misa_released_code_options_build_what_they_say() -> None:
    """The options the MMSA comparison sets to MISA's released code: encoder dropout apart from the head's, the
    fusion transformer's dropouts (attention included) and FFN width, and a LayerNorm per modality."""
    model = create_model("misa", TINY_DIMS, 1, hidden=8, heads=2, dropout=0.3, encoder_dropout=0.0,
                         fusion_dropout=0.1, ffn_mult=16, projection_norm=True)
    dec = model.decoupling
    assert dec.private["audio"].drop.p == 0.0 and dec.shared_encoder("text").drop.p == 0.0
    assert model.head[1].p == 0.3
    for layer in model.fusion.layers:
        assert layer.attn.dropout == 0.1 and layer.ffn[2].p == 0.1 and layer.drop.p == 0.1
        assert layer.ffn[0].out_features == 128 and layer.ffn[3].in_features == 128
    assert set(model.project_norm) == set(MODALITIES) and model.project_norm["visual"].normalized_shape == (8,)
    for key, bad in (("ffn_mult", 0), ("fusion_dropout", 1.0), ("encoder_dropout", -0.1)):
        with pytest.raises(ConfigError, match=rf"model\.params\.{key}"):
            create_model("misa", TINY_DIMS, 1, **{key: bad})
    plain = create_model("misa", TINY_DIMS, 1, hidden=8, heads=2, dropout=0.3)
    assert plain.project_norm is None and plain.decoupling.private["audio"].drop.p == 0.3
    assert all(layer.attn.dropout == 0.0 and layer.ffn[2].p == 0.3 for layer in plain.fusion.layers)


def test_misa_projection_norm_is_layernorm_of_relu_and_is_what_is_decoupled_and_rebuilt() -> None:
    """``projection_norm``: ``X_m = LayerNorm_m(ReLU(Conv(X_m)))`` (zero at padding) feeds the shared and private
    encoders AND is the self-reconstruction's target (the released code rebuilds ``utt_m_orig``)."""
    torch.manual_seed(0)
    model = create_model("misa", TINY_DIMS, 1, hidden=8, heads=2, projection_norm=True).eval()
    with torch.no_grad():
        for ln in model.project_norm.values():  # not the identity affine, so a missing LayerNorm shows
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    batch = make_batch(LENGTHS, TINY_DIMS)
    raw, mask = model.decoupling.project(batch.features, batch.mask)
    want = {m: F.layer_norm(raw[m].clamp_min(0.0), (8,), model.project_norm[m].weight, model.project_norm[m].bias)
            * mask[m].unsqueeze(-1).float() for m in MODALITIES}
    x, shared, private, _ = model.utterances(batch)
    for m in MODALITIES:
        torch.testing.assert_close(x[m], want[m])
        h = torch.sigmoid(model.decoupling.shared_encoder(m)(want[m], mask[m]).seq) * mask[m].unsqueeze(-1).float()
        torch.testing.assert_close(shared[m], h)
    present = {m: mask[m].any(dim=1) for m in MODALITIES}
    torch.testing.assert_close(model(batch).losses["recon"],
                               model.reconstruction_error(want, shared, private, mask, present))
