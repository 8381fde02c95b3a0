"""The model contract, checked for every baseline, plus the shared building blocks (pooling, attention)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models import create_model, list_models
from accord.models.modules import (
    CrossmodalTransformer,
    Dropout,
    MultiheadAttention,
    SequenceEncoder,
    TemporalConv1d,
    downsample_mean,
    last_valid,
    masked_max,
    masked_mean,
    masked_std,
    shared_positions,
    sinusoidal_positions,
)
from accord.models.modules.attention import SMALL_DROPOUT_NUMEL, drop_threshold, random_bits15
from conftest import tiny_dataset

BASELINES = ["text", "audio", "visual", "early_fusion", "late_fusion", "tfn", "mult"]
UNIMODAL = {"text", "audio", "visual"}
TINY_DIMS = {"text": 6, "audio": 4, "visual": 5}
MOSI_DIMS = {"text": 768, "audio": 5, "visual": 20}
MOSI_T = {"text": 50, "audio": 375, "visual": 500}


class OpCount(TorchDispatchMode):
    """Counts the aten operations run inside it (``with OpCount() as count: ...; count.n``)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.n += 1
        return func(*args, **(kwargs or {}))


def training_ops(model: torch.nn.Module, batch: Batch) -> tuple[int, torch.Tensor]:
    """The aten operations of one forward + backward of ``model`` on ``batch``, and its prediction."""
    with OpCount() as count:
        prediction = model(batch).prediction
        prediction.sum().backward()
    return count.n, prediction.detach()


def make_batch(lengths: dict[str, list[int]], dims: dict[str, int], t: dict[str, int] | None = None,
               seed: int = 0, out_dim: int = 1, pad_noise: bool = False) -> Batch:
    """Random features, zero (or noise with ``pad_noise``) beyond ``lengths``; padded to ``t`` or the longest."""
    g = torch.Generator().manual_seed(seed)
    b = len(lengths["text"])
    feats, masks = {}, {}
    for m in MODALITIES:
        lens = torch.tensor(lengths[m])
        tm = (t or {}).get(m, max(int(lens.max()), 1))
        mask = torch.arange(tm).unsqueeze(0) < lens.unsqueeze(1)
        x = torch.randn(b, tm, dims[m], generator=g)
        fill = torch.randn(b, tm, dims[m], generator=g) * 5 if pad_noise else torch.zeros(b, tm, dims[m])
        feats[m] = torch.where(mask.unsqueeze(-1), x, fill)
        masks[m] = mask
    present = torch.stack([torch.tensor(lengths[m]) > 0 for m in MODALITIES], dim=1)
    label = torch.randint(0, out_dim, (b,), generator=g) if out_dim > 1 else torch.randn(b, generator=g)
    return Batch(features=feats, mask=masks, present=present, label=label)


def repad(batch: Batch, extra: int, noise: bool = False, seed: int = 1) -> Batch:
    """The same batch with ``extra`` more padded steps per modality (zeros, or noise when ``noise``)."""
    g = torch.Generator().manual_seed(seed)
    feats, masks = {}, {}
    for m in MODALITIES:
        x, mask = batch.features[m], batch.mask[m]
        b, _, d = x.shape
        tail = torch.randn(b, extra, d, generator=g) * 3 if noise else torch.zeros(b, extra, d)
        x = torch.cat([x, tail], dim=1)
        mask = torch.cat([mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)
        if noise:
            x = torch.where(mask.unsqueeze(-1), x, torch.randn(x.shape, generator=g) * 3)
        feats[m], masks[m] = x, mask
    return Batch(features=feats, mask=masks, present=batch.present.clone(), label=batch.label)


def tiny_batch(n: int = 8, out_dim: int = 1) -> Batch:
    split = tiny_dataset(n=n, dims=tuple(TINY_DIMS[m] for m in MODALITIES))["train"]
    task = "classification" if out_dim > 1 else "regression"
    if out_dim > 1:
        split.class_labels = torch.arange(n) % out_dim
    return split.batch(torch.arange(n), task=task)


def expected_modalities(name: str) -> set[str]:
    return {name} if name in UNIMODAL else set(MODALITIES)


def check_output(out: ModelOutput, b: int, out_dim: int) -> None:
    shape = (b,) if out_dim == 1 else (b, out_dim)
    assert isinstance(out, ModelOutput)
    assert out.prediction.shape == shape
    assert torch.isfinite(out.prediction).all()
    for key, aux in out.aux_predictions.items():
        assert aux.shape == shape, key
        assert torch.isfinite(aux).all(), key
    for key, value in out.diagnostics.items():
        assert value.shape[0] == b, key
        assert torch.isfinite(value).all(), key
    for key, value in out.features.items():
        assert value.ndim == 2 and value.shape[0] == b, key
        assert torch.isfinite(value).all(), key


def test_every_baseline_is_registered() -> None:
    assert set(BASELINES) <= set(list_models())
    assert "unimodal" in list_models()


@pytest.mark.parametrize("out_dim", [1, 3])
@pytest.mark.parametrize("name", BASELINES)
def test_output_shapes(name: str, out_dim: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, out_dim)
    batch = tiny_batch(8, out_dim)
    out = model(batch)
    check_output(out, 8, out_dim)
    assert set(out.features) == expected_modalities(name)


@pytest.mark.parametrize("name", BASELINES)
def test_single_step_inputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1)
    batch = make_batch({m: [1, 1, 1] for m in MODALITIES}, TINY_DIMS)
    assert all(batch.features[m].shape[1] == 1 for m in MODALITIES)
    check_output(model(batch), 3, 1)
    model.eval()
    with torch.no_grad():
        check_output(model(batch), 3, 1)


@pytest.mark.parametrize("name", BASELINES)
def test_long_unaligned_inputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, MOSI_DIMS, 1)
    lengths = {"text": [50, 3, 17, 1], "audio": [375, 120, 2, 64], "visual": [500, 1, 333, 250]}
    batch = make_batch(lengths, MOSI_DIMS, t=MOSI_T)
    out = model(batch)
    check_output(out, 4, 1)
    (out.prediction.sum() + sum(a.sum() for a in out.aux_predictions.values())).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("noise", [False, True], ids=["zero_padding", "noise_padding"])
@pytest.mark.parametrize("name", BASELINES)
def test_padding_invariance(name: str, noise: bool) -> None:
    """Extra steps beyond the lengths (zeros; or even garbage) never change anything the model returns."""
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1).eval()
    lengths = {"text": [5, 2, 1, 4], "audio": [7, 7, 3, 1], "visual": [3, 1, 2, 3]}
    batch = make_batch(lengths, TINY_DIMS)
    padded = repad(batch, extra=9, noise=noise)
    assert padded.features["visual"].shape[1] == 12
    with torch.no_grad():
        a, b = model(batch), model(padded)
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)
    for key in a.aux_predictions:
        torch.testing.assert_close(b.aux_predictions[key], a.aux_predictions[key], atol=1e-5, rtol=1e-5)
    for key in a.features:
        torch.testing.assert_close(b.features[key], a.features[key], atol=1e-5, rtol=1e-5)


def test_padding_invariance_test_can_fail() -> None:
    """The padding check detects a model that pools over padding (guards against a vacuous test)."""
    batch = make_batch({"text": [5, 2], "audio": [3, 3], "visual": [1, 2]}, TINY_DIMS)
    padded = repad(batch, extra=4)
    unmasked = [batch.features["text"].mean(dim=1), padded.features["text"].mean(dim=1)]
    assert not torch.allclose(*unmasked, atol=1e-5)
    masked = [masked_mean(b.features["text"], b.mask["text"]) for b in (batch, padded)]
    torch.testing.assert_close(*masked)


@pytest.mark.parametrize("name", BASELINES)
def test_missing_modality_gives_finite_outputs_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1)
    # audio missing for samples 0-1, visual for 2, text for 3; sample 4 complete
    lengths = {"text": [5, 2, 3, 0, 4], "audio": [0, 0, 4, 2, 6], "visual": [3, 1, 0, 2, 3]}
    batch = make_batch(lengths, TINY_DIMS)
    assert not batch.present[0, 1] and not batch.present[2, 2] and not batch.present[3, 0]
    out = model(batch)
    check_output(out, 5, 1)
    loss = out.prediction.square().mean() + sum(a.square().mean() for a in out.aux_predictions.values())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), pname
    # a modality missing for the whole batch (trimmed to one all-masked step)
    whole = make_batch({"text": [5, 2, 3], "audio": [0, 0, 0], "visual": [3, 1, 2]}, TINY_DIMS)
    assert whole.features["audio"].shape[1] == 1 and not whole.mask["audio"].any()
    model.eval()
    with torch.no_grad():
        check_output(model(whole), 3, 1)


@pytest.mark.parametrize("name", BASELINES)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1).train()
    # long enough that every attention has several keys even after MulT's temporal downsampling (with a single
    # key the softmax is constant and the query projection legitimately gets no gradient)
    lengths = {"text": [9, 4, 12, 7, 2, 10], "audio": [31, 17, 24, 9, 40, 3], "visual": [22, 40, 13, 31, 8, 27]}
    batch = make_batch(lengths, TINY_DIMS)
    out = model(batch)
    loss = F.mse_loss(out.prediction, batch.label)
    for aux in out.aux_predictions.values():
        loss = loss + F.mse_loss(aux, batch.label)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == [], f"no gradient for {missing}"


@pytest.mark.parametrize("name", sorted(UNIMODAL))
def test_unimodal_models_own_only_their_modality(name: str) -> None:
    model = create_model(name, MOSI_DIMS, 1)
    other = create_model(name, {m: d * 3 for m, d in MOSI_DIMS.items()} | {name: MOSI_DIMS[name]}, 1)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in other.parameters())
    assert model.params.modality == name  # type: ignore[attr-defined]
    # the prediction ignores the other modalities entirely
    model.eval()
    batch = make_batch({"text": [5, 2], "audio": [3, 1], "visual": [2, 2]}, MOSI_DIMS)
    changed = make_batch({"text": [5, 2], "audio": [3, 1], "visual": [2, 2]}, MOSI_DIMS, seed=7)
    changed.features[name] = batch.features[name]
    with torch.no_grad():
        torch.testing.assert_close(model(changed).prediction, model(batch).prediction)


@pytest.mark.parametrize("name", BASELINES)
def test_features_are_the_fusion_input(name: str) -> None:
    """``features`` holds the right modalities, requires grad, and the prediction depends on each of them."""
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1).eval()
    out = model(tiny_batch(6))
    assert set(out.features) == expected_modalities(name)
    feats = [out.features[m] for m in sorted(out.features)]
    assert all(f.requires_grad for f in feats)
    grads = torch.autograd.grad(out.prediction.sum(), feats)  # raises if a feature is not used
    for m, g in zip(sorted(out.features), grads, strict=True):
        assert g.abs().sum() > 0, m


@pytest.mark.parametrize("name", BASELINES)
def test_unknown_param_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.hiddne"):
        create_model(name, TINY_DIMS, 1, hiddne=8)


@pytest.mark.parametrize("name", BASELINES)
def test_wrong_type_param_is_a_config_error(name: str) -> None:
    key = "proj_dim" if name == "early_fusion" else "hidden" if name != "tfn" else "fusion_dim"
    with pytest.raises(ConfigError, match=rf"model\.params\.{key}"):
        create_model(name, TINY_DIMS, 1, **{key: "wide"})


def test_fixed_modality_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.modality"):
        create_model("text", TINY_DIMS, 1, modality="audio")
    model = create_model("unimodal", TINY_DIMS, 1, modality="visual")
    assert set(model(tiny_batch(4)).features) == {"visual"}
    with pytest.raises(ConfigError, match=r"model\.params\.modality"):
        create_model("unimodal", TINY_DIMS, 1, modality="smell")


def test_indivisible_heads_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.heads"):
        create_model("mult", TINY_DIMS, 1, hidden=30, heads=4)
    with pytest.raises(ConfigError, match=r"model\.params\.heads"):
        create_model("text", TINY_DIMS, 1, temporal="transformer", hidden=30, heads=4)


@pytest.mark.parametrize("params", [
    {"temporal": "transformer"}, {"temporal": "none", "pool": "max"}, {"projection": "conv", "pool": "last"},
])
def test_encoder_variants_respect_the_contract(params: dict[str, str]) -> None:
    torch.manual_seed(0)
    model = create_model("late_fusion", TINY_DIMS, 1, **params).eval()
    lengths = {"text": [5, 2, 0], "audio": [7, 0, 3], "visual": [3, 1, 2]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        a, b = model(batch), model(repad(batch, 6, noise=True))
    check_output(a, 3, 1)
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("params", [{"pool": "mean"}, {"downsample_audio": 1, "downsample_visual": 1},
                                    {"conv_kernel": 3, "downsample_text": 2, "attn_dropout_mem": None}])
def test_mult_variants_respect_the_contract(params: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = create_model("mult", TINY_DIMS, 1, **params).eval()
    lengths = {"text": [5, 2, 0, 1], "audio": [7, 0, 3, 2], "visual": [3, 1, 2, 0]}
    batch = make_batch(lengths, TINY_DIMS)
    with torch.no_grad():
        a, b = model(batch), model(repad(batch, 6))
    check_output(a, 4, 1)
    torch.testing.assert_close(b.prediction, a.prediction, atol=1e-5, rtol=1e-5)


def test_mult_each_crossmodal_block_queries_its_target_with_its_source() -> None:
    """MulT Eq. 3-4: block ``t_from_s`` takes the target's projected sequence as the query and the source's as
    keys/values (told apart here by their lengths, 3 / 5 / 7 steps): a swapped query, source or block name fails
    this test; and each target's pooled output depends on every modality."""
    torch.manual_seed(0)
    model = create_model("mult", TINY_DIMS, 1, downsample_audio=1, downsample_visual=1).eval()
    steps = {"text": 3, "audio": 5, "visual": 7}
    batch = make_batch({m: [steps[m]] * 2 for m in MODALITIES}, TINY_DIMS)
    seen: dict[str, tuple[int, int]] = {}
    hooks = [block.register_forward_hook(
        lambda mod, args, out, name=name: seen.__setitem__(name, (args[0].shape[1], args[2].shape[1])))
        for name, block in model.cross.items()]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    assert seen == {f"{t}_from_{s}": (steps[t], steps[s]) for t in MODALITIES for s in MODALITIES if s != t}
    # each target's pooled memory output depends on both sources, through its own two blocks only
    feats = {m: batch.features[m].clone().requires_grad_() for m in MODALITIES}
    probe = Batch(features=feats, mask=batch.mask, present=batch.present, label=batch.label)
    out = model.forward_features(probe)
    for t in MODALITIES:  # a random readout: the plain sum of a LayerNorm output has no gradient
        readout = (out[t] * torch.randn(out[t].shape, generator=torch.Generator().manual_seed(1))).sum()
        grads = torch.autograd.grad(readout, [feats[m] for m in MODALITIES], retain_graph=True)
        assert all(g.abs().sum() > 1e-4 for g in grads), t


def test_early_fusion_on_raw_statistics_still_exposes_differentiable_features() -> None:
    torch.manual_seed(0)
    model = create_model("early_fusion", TINY_DIMS, 1, proj_dim=0, stats="mean")
    batch = make_batch({"text": [5, 2], "audio": [0, 4], "visual": [3, 1]}, TINY_DIMS)
    out = model(batch)
    assert {m: f.shape[1] for m, f in out.features.items()} == TINY_DIMS
    torch.testing.assert_close(out.features["text"], masked_mean(batch.text, batch.mask["text"]))
    grads = torch.autograd.grad(out.prediction.sum(), [out.features[m] for m in MODALITIES])
    assert all(g.abs().sum() > 0 for g in grads)


def test_late_fusion_weights_drop_missing_modalities() -> None:
    torch.manual_seed(0)
    model = create_model("late_fusion", TINY_DIMS, 1).eval()
    assert model.default_loss_weights == {"unimodal_text": 1.0, "unimodal_audio": 1.0, "unimodal_visual": 1.0}
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.5, -0.2, 0.1]))
        batch = make_batch({"text": [5, 2, 3], "audio": [0, 4, 2], "visual": [3, 0, 2]}, TINY_DIMS)
        out = model(batch)
    assert set(out.aux_predictions) == {"unimodal_text", "unimodal_audio", "unimodal_visual"}
    w = out.diagnostics["fusion_weight"]
    torch.testing.assert_close(w.sum(dim=1), torch.ones(3))
    assert w[0, 1] == 0 and w[1, 2] == 0 and (w[2] > 0).all()
    soft = torch.tensor([0.5, -0.2, 0.1]).softmax(0)
    torch.testing.assert_close(w[2], soft)
    stacked = torch.stack([out.aux_predictions[f"unimodal_{m}"] for m in MODALITIES], dim=1)
    torch.testing.assert_close(out.prediction, (w * stacked).sum(dim=1))
    expected0 = (soft[0] * stacked[0, 0] + soft[2] * stacked[0, 2]) / (soft[0] + soft[2])
    torch.testing.assert_close(out.prediction[0], expected0)


def test_tfn_fuses_the_outer_product_and_zeroes_missing_modalities() -> None:
    torch.manual_seed(0)
    model = create_model("tfn", TINY_DIMS, 1).eval()
    d = model.params.fusion_dim  # type: ignore[attr-defined]
    batch = make_batch({"text": [5, 2], "audio": [0, 4], "visual": [3, 1]}, TINY_DIMS)
    with torch.no_grad():
        feats = model.forward_features(batch)
        fused = model.tensor_fusion(feats)
    assert fused.shape == (2, (d + 1) ** 3)
    assert feats["audio"][0].abs().sum() == 0 and feats["audio"][1].abs().sum() > 0
    z = {m: torch.cat([feats[m][1], torch.ones(1)]) for m in MODALITIES}
    i, j, k = 3, 7, d  # an arbitrary entry, and one with the appended 1 (bimodal term)
    cube = fused[1].view(d + 1, d + 1, d + 1)
    torch.testing.assert_close(cube[i, j, k], z["text"][i] * z["audio"][j] * z["visual"][k])
    torch.testing.assert_close(cube[d, d, d], torch.tensor(1.0))


@pytest.mark.parametrize("name", BASELINES)
def test_models_follow_the_input_dtype(name: str) -> None:
    """No hard-coded dtype/device: a float64 model on float64 inputs runs and stays float64."""
    torch.manual_seed(0)
    model = create_model(name, TINY_DIMS, 1).double().eval()
    batch = make_batch({"text": [5, 2], "audio": [0, 4], "visual": [3, 1]}, TINY_DIMS)
    batch.features = {m: v.double() for m, v in batch.features.items()}
    with torch.no_grad():
        out = model(batch)
    assert out.prediction.dtype == torch.float64
    assert torch.isfinite(out.prediction).all()


# ------------------------------------------------------------------------------------- building blocks


def test_masked_mean_matches_a_hand_computation() -> None:
    x = torch.tensor([[[1.0, 10.0], [3.0, 20.0], [100.0, 100.0]],
                      [[2.0, -4.0], [7.0, 7.0], [7.0, 7.0]],
                      [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    expected = torch.tensor([[2.0, 15.0], [2.0, -4.0], [0.0, 0.0]])
    torch.testing.assert_close(masked_mean(x, mask), expected)
    torch.testing.assert_close(masked_max(x, mask), torch.tensor([[3.0, 20.0], [2.0, -4.0], [0.0, 0.0]]))
    torch.testing.assert_close(last_valid(x, mask), torch.tensor([[3.0, 20.0], [2.0, -4.0], [0.0, 0.0]]))
    std = masked_std(x, mask, eps=0.0)
    torch.testing.assert_close(std, torch.tensor([[1.0, 5.0], [0.0, 0.0], [0.0, 0.0]]))


def test_masked_std_has_finite_gradients_at_zero_variance() -> None:
    x = torch.zeros(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    masked_std(x, mask).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_downsample_mean_averages_valid_steps_per_window() -> None:
    x = torch.arange(1.0, 8.0).view(1, 7, 1)  # 1..7
    mask = torch.tensor([[True] * 5 + [False] * 2])
    y, m = downsample_mean(x, mask, 2)
    torch.testing.assert_close(y.view(-1), torch.tensor([1.5, 3.5, 5.0, 0.0]))
    assert m.tolist() == [[True, True, True, False]]
    same, same_mask = downsample_mean(x, mask, 1)
    assert same is x and same_mask is mask


def test_one_step_pooling_is_the_step_times_its_mask_in_few_ops() -> None:
    """On one step (utterance-level data) masked_mean and downsample_mean (stride > 1) are the step times its mask:
    the values and gradients of the general formulas (checked against a second, padded step, which takes them), a
    masked row gives zeros, and at most three ops run (select, cast, multiply)."""
    x = torch.tensor([[[1.0, -2.0]], [[3.0, 4.0]], [[5.0, 6.0]]], requires_grad=True)
    mask = torch.tensor([[True], [False], [True]])
    padded = torch.cat([x, torch.full((3, 1, 2), 9.0)], dim=1)  # a second, masked step: the general path
    padded_mask = torch.cat([mask, torch.zeros(3, 1, dtype=torch.bool)], dim=1)
    want = torch.tensor([[1.0, -2.0], [0.0, 0.0], [5.0, 6.0]])
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with OpCount() as count:
        got = masked_mean(x, mask)
    assert count.n <= 3
    torch.testing.assert_close(got, want)
    general = masked_mean(padded, padded_mask)
    torch.testing.assert_close(general, want)
    g_got, = torch.autograd.grad((got * weights).sum(), x)
    g_general, = torch.autograd.grad((general * weights).sum(), x)
    torch.testing.assert_close(g_got, g_general)
    with OpCount() as count:
        down, down_mask = downsample_mean(x, mask, 4)
    assert count.n <= 3 and down_mask is mask
    torch.testing.assert_close(down, want.unsqueeze(1))
    general_down, general_mask = downsample_mean(padded, padded_mask, 4)
    torch.testing.assert_close(general_down, down)
    assert torch.equal(general_mask, mask)
    g_down, = torch.autograd.grad((down.squeeze(1) * weights).sum(), x)
    torch.testing.assert_close(g_down, g_general)


@pytest.mark.parametrize("numel", [200_000, SMALL_DROPOUT_NUMEL])
def test_fast_dropout_matches_the_dropout_distribution(numel: int) -> None:
    """Random bits above SMALL_DROPOUT_NUMEL elements, torch's F.dropout at and below it: both drop p_eff of the
    entries and scale the rest by 1 / (1 - p_eff), reproducibly under the global seed."""
    drop = Dropout(0.3)
    x = torch.ones(numel)
    assert drop.eval()(x) is x
    drop.train()
    torch.manual_seed(0)
    a = drop(x)
    torch.manual_seed(0)
    torch.testing.assert_close(drop(x), a)  # reproducible under the global seed
    assert not torch.equal(drop(x), a)  # and fresh on every call
    many = torch.cat([a, *(drop(x) for _ in range(200_000 // numel))])
    assert abs(float((many == 0).float().mean()) - 0.3) < 0.005
    assert abs(float(many.mean()) - 1.0) < 0.01
    values = many.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.7, rel=1e-4)
    kept = (a != 0).view(-1, 4).float().mean(dim=0)  # the 4 slices of each random word are unbiased
    assert (kept - 0.7).abs().max() < 0.01 + 0.05 * (numel < 10_000)
    threshold, p_eff = drop_threshold(0.3)
    torch.manual_seed(0)
    if numel <= SMALL_DROPOUT_NUMEL:  # which draws: torch's own dropout ...
        expected = F.dropout(x, p_eff, training=True)
    else:  # ... or the random bits
        expected = (random_bits15(x.shape, x) >= threshold).float() / (1 - p_eff)
    assert torch.equal(a, expected)


def test_sinusoidal_positions_layout() -> None:
    pe = sinusoidal_positions(4, 6)
    assert pe.shape == (4, 6)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(pe[2, 0], torch.sin(torch.tensor(2.0)))
    assert sinusoidal_positions(3, 5)[:, -1].abs().sum() == 0  # odd dim: trailing zero channel
    assert sinusoidal_positions(4, 6) is not pe  # a new tensor each call (a module may keep it as a buffer)
    shared = shared_positions(4, 6)
    assert shared_positions(4, 6) is shared  # cached: one table per length, width, device and dtype
    torch.testing.assert_close(shared, pe, atol=0.0, rtol=0.0)
    assert shared_positions(4, 6, dtype=torch.float64).dtype == torch.float64
    torch.testing.assert_close(shared_positions(4, 6, dtype=torch.float64), pe.double())


def test_attention_ignores_masked_keys_and_zeroes_empty_rows() -> None:
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2).eval()
    q, kv = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False], [False] * 6])
    out, _ = attn(q, kv, mask)
    ref, _ = attn(q[1:2], kv[1:2, :2])  # the same row with the padded keys removed
    torch.testing.assert_close(out[1:2], ref, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(out).all() and out[2].abs().sum() == 0
    explicit, weights = attn(q, kv, mask, return_weights=True)
    torch.testing.assert_close(explicit, out, atol=1e-6, rtol=1e-5)
    assert weights is not None and weights[1, :, :, 2:].abs().sum() == 0
    kv.requires_grad_(True)
    attn.train()
    attn(q, kv, mask)[0].sum().backward()
    assert kv.grad is not None and torch.isfinite(kv.grad).all() and kv.grad[2].abs().sum() == 0


def test_crossmodal_transformer_forward_last_equals_pooling_the_full_output() -> None:
    torch.manual_seed(0)
    cross = CrossmodalTransformer(8, 2, layers=2).eval()
    selfattn = CrossmodalTransformer(8, 2, layers=2, self_attention=True).eval()
    x, src = torch.randn(3, 5, 8), torch.randn(3, 7, 8)
    x_mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    s_mask = torch.tensor([[True] * 7, [False] * 7, [True] * 3 + [False] * 4])
    for block, source, source_mask in ((cross, src, s_mask), (selfattn, None, None)):
        full = block(x, x_mask, source, source_mask)
        assert full[1, 2:].abs().sum() == 0  # padded target steps are zeroed
        torch.testing.assert_close(block.forward_last(x, x_mask, source, source_mask), last_valid(full, x_mask))


def test_sequence_encoder_pools_zeros_for_a_missing_modality() -> None:
    enc = SequenceEncoder(4, 8, projection="conv", temporal="conv").eval()
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, True, False, False], [False] * 5])
    out = enc(x, mask)
    assert out.seq.shape == (2, 5, 8) and out.pooled.shape == (2, 8)
    assert out.pooled[1].abs().sum() == 0 and out.seq[0, 3:].abs().sum() == 0
    assert out.pooled[0].abs().sum() > 0


@pytest.mark.parametrize(("projection", "temporal", "pool_mode"),
                         [("conv", "conv", "mean"), ("linear", "conv", "max"), ("conv", "none", "last"),
                          ("linear", "none", "mean")])
def test_sequence_encoder_one_step_path_equals_the_general_path(projection: str, temporal: str,
                                                                pool_mode: str) -> None:
    """At T = 1 the encoder takes its one-step path (every layer position-wise, masked once at the end). The same
    encoder on a copy padded to two steps (the second masked, so the general path runs and its convolutions read
    the same zeros) gives the same sequence, pooled vector and parameter gradients, with a missing modality's row
    zero in both, and no gradient reaching the parameters from that row."""
    torch.manual_seed(0)
    enc = SequenceEncoder(4, 8, projection=projection, temporal=temporal, pool=pool_mode, dropout=0.0)  # type: ignore[arg-type]
    x = torch.randn(3, 1, 4) + 3.0
    mask = torch.tensor([[True], [False], [True]])  # row 1: the modality is missing (its features are not zero)
    x2 = torch.cat([x, torch.randn(3, 1, 4)], dim=1)
    mask2 = torch.cat([mask, torch.zeros(3, 1, dtype=torch.bool)], dim=1)
    one, two = enc(x, mask), enc(x2, mask2)
    torch.testing.assert_close(one.seq, two.seq[:, :1])
    torch.testing.assert_close(one.pooled, two.pooled)
    assert bool((one.pooled[1] == 0).all()) and bool((one.pooled[0] != 0).any())
    weight = torch.arange(8.0) - 3.0
    params = list(enc.parameters())
    g_one = torch.autograd.grad((one.pooled * weight).sum(), params)
    g_two = torch.autograd.grad((two.pooled * weight).sum(), params)
    for a, b in zip(g_one, g_two, strict=True):
        torch.testing.assert_close(a, b)
    only_missing = torch.autograd.grad((enc(x[1:2], mask[1:2]).pooled * weight).sum(), params, allow_unused=True)
    assert all(g is None or bool((g == 0).all()) for g in only_missing)


@pytest.mark.parametrize(("kernel", "steps"), [(1, 7), (3, 1), (5, 1)])
def test_temporal_conv_linear_fast_path_equals_the_convolution(kernel: int, steps: int) -> None:
    """A kernel-1 convolution, or any kernel over one step, runs as F.linear by the centre tap: the same outputs
    and the same weight and bias gradients (zero on the unused taps) as ``nn.Conv1d``; a masked step stays zero."""
    torch.manual_seed(0)
    layer = TemporalConv1d(4, 3, kernel)
    x = torch.randn(5, steps, 4)
    mask = torch.ones(5, steps, dtype=torch.bool)
    mask[1] = False  # a missing modality
    m = mask.unsqueeze(-1).float()
    want = F.conv1d((x * m).transpose(1, 2), layer.conv.weight, layer.conv.bias,
                                      padding=kernel // 2).transpose(1, 2) * m
    got = layer(x, mask)
    assert torch.allclose(got, want, atol=1e-6) and bool((got[1] == 0).all())
    g_w, g_b = torch.autograd.grad((want * torch.arange(3.0)).sum(), [layer.conv.weight, layer.conv.bias])
    f_w, f_b = torch.autograd.grad((got * torch.arange(3.0)).sum(), [layer.conv.weight, layer.conv.bias])
    assert torch.allclose(f_w, g_w, atol=1e-6) and torch.allclose(f_b, g_b, atol=1e-6)
    if kernel > 1:
        assert bool((f_w[:, :, kernel // 2] != 0).any()) and bool((f_w[:, :, 0] == 0).all())
