"""LMF (Liu et al., ACL 2018): the low-rank fusion equals TFN's tensor fusion with the rank-r weight tensor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accord.core.types import MODALITIES
from accord.models import create_model, list_models
from accord.models.lmf import LMF
from accord.models.tfn import TFN
from test_models import TINY_DIMS, check_output, make_batch, repad, tiny_batch


def test_lmf_is_registered() -> None:
    assert "lmf" in list_models()


def test_low_rank_fusion_equals_tfn_tensor_with_decomposed_weight() -> None:
    """h = W . Z + b, with Z TFN's outer product of [z_m; 1] and W = sum_i w_i (x)_m W_m^(i) built explicitly."""
    torch.manual_seed(0)
    model = create_model("lmf", TINY_DIMS, 1, hidden=3, rank=3, fusion_dim=2)
    assert isinstance(model, LMF)
    with torch.no_grad():
        model.fusion_bias.copy_(torch.tensor([0.3, -0.7]))
    feats = {m: torch.randn(5, 3) for m in MODALITIES}
    feats["audio"][1] = 0.0  # a missing modality
    h = model.low_rank_fusion(feats)  # [5, 2]
    z = TFN.tensor_fusion(feats)  # [5, 4^3], (text, audio, visual) order
    assert z.shape == (5, 64)
    w = model.rank_weights[0]  # [r]
    ft, fa, fv = (model.factors[m] for m in MODALITIES)  # each [r, 4, d_h]
    full = torch.zeros(4, 4, 4, 2)
    for i in range(3):
        for k in range(2):
            full[..., k] += w[i] * torch.einsum("a,b,c->abc", ft[i, :, k], fa[i, :, k], fv[i, :, k])
    expected = z @ full.reshape(64, 2) + model.fusion_bias
    torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)
    # a rank-1 tensor with a single non-zero entry picks one coefficient of Z: sanity of the index order
    with torch.no_grad():
        for m in MODALITIES:
            model.factors[m].zero_()
        model.rank_weights.zero_()
        model.rank_weights[0, 0] = 2.0
        model.factors["text"][0, 1, 0] = 1.0   # z_text[1]
        model.factors["audio"][0, 3, 0] = 1.0  # the appended 1
        model.factors["visual"][0, 0, 0] = 1.0  # z_visual[0]
        model.fusion_bias.zero_()
    h = model.low_rank_fusion(feats)
    torch.testing.assert_close(h[:, 0], 2.0 * feats["text"][:, 1] * feats["visual"][:, 0])
    torch.testing.assert_close(h[:, 1], torch.zeros(5))


@pytest.mark.parametrize("out_dim", [1, 3])
def test_output_shapes(out_dim: int) -> None:
    torch.manual_seed(0)
    model = create_model("lmf", TINY_DIMS, out_dim)
    out = model(tiny_batch(8, out_dim))
    check_output(out, 8, out_dim)
    assert set(out.features) == set(MODALITIES) and out.features["text"].shape == (8, 32)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("lmf", TINY_DIMS, 1).train()
    lengths = {"text": [9, 4, 12, 7, 2, 10], "audio": [31, 17, 24, 9, 40, 3], "visual": [22, 40, 13, 31, 8, 27]}
    batch = make_batch(lengths, TINY_DIMS)
    F.mse_loss(model(batch).prediction, batch.label).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_missing_modality_is_zero_and_padding_is_ignored() -> None:
    torch.manual_seed(0)
    model = create_model("lmf", TINY_DIMS, 1).eval()
    lengths = {"text": [5, 2, 3, 4], "audio": [0, 3, 4, 2], "visual": [3, 1, 0, 2]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        out = model(batch)
        padded = model(repad(batch, extra=6, noise=True))
    check_output(out, 4, 1)
    assert out.features["audio"][0].abs().sum() == 0 and out.features["visual"][2].abs().sum() == 0
    assert out.features["audio"][1].abs().sum() > 0
    torch.testing.assert_close(padded.prediction, out.prediction, atol=1e-5, rtol=1e-5)


def test_modality_parameters_partition_the_modality_branches() -> None:
    model = create_model("lmf", TINY_DIMS, 1)
    groups = model.modality_parameters()
    assert set(groups) == set(MODALITIES)
    ids = [{id(p) for p in groups[m]} for m in MODALITIES]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    for m in MODALITIES:
        assert any(p is model.factors[m] for p in groups[m])
        assert {id(p) for p in model.encoders[m].parameters()} <= {id(p) for p in groups[m]}
