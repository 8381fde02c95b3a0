"""The three modality encoders as one batched computation on one-step data (``one_step_encoders``,
``encode_pooled(grouped=True)``) and the ``batch_modalities`` switch of TFN, LMF and Self-MM: the same function of
the same parameters as the encoders one by one (outputs and gradients equal to float rounding without dropout),
both dropouts of every encoder drawn independently per modality, and the per-encoder path wherever the encoders
cannot be grouped."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from accord.core.types import MODALITIES
from accord.models import create_model
from accord.models.modules import SequenceEncoder, encode_pooled, one_step_encoders
from accord.models.self_mm import SelfMM
from test_models import TINY_DIMS, make_batch, training_ops

IN_DIMS = [6, 4, 5]


def _encoders(seed: int = 0, dims: list[int] | None = None, **kw: Any) -> list[SequenceEncoder]:
    torch.manual_seed(seed)
    return [SequenceEncoder(d, 8, **kw) for d in (dims or IN_DIMS)]


def _inputs(b: int = 5, seed: int = 1, t: int = 1) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, d, generator=g, requires_grad=True) for d in IN_DIMS]


def _alone(encoders: list[SequenceEncoder], xs: list[Tensor]) -> Tensor:
    """Each encoder alone on its input followed by two padded steps: the general path (convolutions over time,
    masked pooling), an independent reference for the one-step shortcut."""
    mask = torch.tensor([True, False, False]).expand(xs[0].shape[0], 3)
    return torch.stack([e(torch.cat([x, torch.zeros(x.shape[0], 2, x.shape[2])], dim=1), mask).pooled
                        for e, x in zip(encoders, xs, strict=True)])


@pytest.mark.parametrize(("projection", "temporal"), [("linear", "conv"), ("conv", "conv"), ("linear", "none"),
                                                      ("conv", "none")])
def test_one_step_encoders_equal_each_encoder_alone(projection: str, temporal: str) -> None:
    """Values and gradients (inputs and every parameter) as each encoder computes them alone: the projection by
    its own layer (the input widths differ), the temporal convolution by its own centre tap and bias."""
    encoders = [e.train() for e in _encoders(projection=projection, temporal=temporal, dropout=0.0)]
    for e in encoders:  # non-zero conv taps off the centre would show if a wrong tap were read
        for p in e.parameters():
            p.data.uniform_(-0.5, 0.5)
    xs = _inputs()
    got = one_step_encoders(encoders, xs)
    assert got is not None
    want = _alone(encoders, xs)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    weights = torch.randn(3, 5, 8)
    params = [p for e in encoders for p in e.parameters()]
    grads_got = torch.autograd.grad((got * weights).sum(), xs + params)
    grads_want = torch.autograd.grad((want * weights).sum(), xs + params)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_grouped_encode_pooled_zeroes_masked_and_missing_modalities() -> None:
    """The batch's masks and ``present``: a missing modality (length 0, or marked absent) pools to zeros, as one by
    one."""
    torch.manual_seed(0)
    model = create_model("tfn", TINY_DIMS, 1).eval()
    batch = make_batch({"text": [1, 0, 1, 1], "audio": [1, 1, 0, 1], "visual": [0, 1, 1, 1]}, TINY_DIMS)
    batch.present[3, 0] = False  # marked missing with its step still valid (as modality dropout can leave it)
    batch.mask["audio"][3, 0] = False  # and a masked step of a modality marked present: zero as well
    grouped = encode_pooled(model.encoders, batch, grouped=True)
    alone = encode_pooled(model.encoders, batch, grouped=False)
    for k, m in enumerate(MODALITIES):
        torch.testing.assert_close(grouped[m], alone[m], rtol=1e-6, atol=1e-6)
        missing = ~(batch.present[:, k] & batch.mask[m][:, 0])
        assert missing.any() and bool((grouped[m][missing] == 0).all()) and bool(grouped[m][~missing].abs().sum() > 0)


def test_both_dropouts_are_drawn_per_modality() -> None:
    """Identical encoders on identical inputs: each modality gets its own masks at about the rate p; p = 1 at both
    sites leaves nothing (the projection's dropout and the temporal branch's dropout both act)."""
    encoders = _encoders(dims=[6, 6, 6], dropout=0.5, temporal="none")
    for e in encoders[1:]:
        e.load_state_dict(encoders[0].state_dict())
    x = torch.randn(400, 1, 6)
    torch.manual_seed(3)
    h = one_step_encoders([e.train() for e in encoders], [x, x, x])
    assert h is not None
    assert not torch.equal(h[0], h[1]) and not torch.equal(h[1], h[2]) and not torch.equal(h[0], h[2])
    for g in range(3):
        assert abs(float((h[g] == 0).float().mean()) - 0.5) < 0.03
    full = _encoders(dims=[6, 6, 6], dropout=1.0, temporal="conv")
    h = one_step_encoders([e.train() for e in full], [x, x, x])
    assert h is not None and bool((h == 0).all())
    assert bool(torch.stack([e.mixer.conv.bias for e in full]).abs().sum() > 0)  # type: ignore[union-attr]


def _why_not(case: str) -> tuple[list[SequenceEncoder], list[Tensor]]:
    encoders, xs = _encoders(dropout=0.1), _inputs()
    if case == "two steps":
        xs = _inputs(t=2)
    elif case == "transformer":
        encoders = _encoders(dropout=0.1, temporal="transformer", heads=2)
    elif case == "width":
        encoders[2] = SequenceEncoder(IN_DIMS[2], 4, dropout=0.1)
    elif case == "dropout":
        encoders[1].drop.p = 0.2
    elif case == "mode":
        encoders[0].eval()
    elif case == "activation":
        encoders[2].act.approximate = "tanh"
    elif case == "temporal":
        encoders[1] = SequenceEncoder(IN_DIMS[1], 8, dropout=0.1, temporal="none")
    elif case == "batch size":
        xs[1] = xs[1][:2]
    elif case == "no tap bias":  # a convolution without its bias: the grouped taps read every bias
        mixer = encoders[2].mixer
        assert mixer is not None
        mixer.conv.register_parameter("bias", None)
    return encoders, xs


@pytest.mark.parametrize("case", ["two steps", "transformer", "width", "dropout", "mode", "activation", "temporal",
                                  "batch size", "no tap bias"])
def test_encoders_that_differ_are_not_grouped(case: str) -> None:
    encoders, xs = _why_not(case)
    assert one_step_encoders(encoders, xs) is None


def test_misa_takes_the_per_modality_path_on_sequences() -> None:
    grouped, alone = _pair("misa", projection_norm=True)
    batch = make_batch({"text": [3, 2, 1], "audio": [2, 1, 2], "visual": [1, 3, 2]}, TINY_DIMS)
    assert grouped.one_step_utterances(batch) is None
    assert torch.equal(grouped.eval()(batch).prediction, alone.eval()(batch).prediction)


def test_misa_one_step_dropout_reaches_the_shared_and_private_encoders() -> None:
    """Encoder dropout that drops everything (the projection and its bias) leaves sigmoid(0) = 1/2 everywhere, in both
    paths: the grouped shared and private encoders apply their dropouts."""
    batch = make_batch({m: [1, 1, 1] for m in MODALITIES}, TINY_DIMS)
    for model in _pair("misa", dropout=0.0):
        dec = model.decoupling
        encoders = [dec.shared_common, *dec.private.values()]
        for e in encoders:
            e.drop.p = 1.0
        model.train()
        one = model.one_step_utterances(batch)
        _, shared, private = one[:3] if one is not None else (None, *_alone_decoupled(model, batch))
        torch.testing.assert_close(shared, torch.full_like(shared, 0.5))
        torch.testing.assert_close(private, torch.full_like(private, 0.5))


def _alone_decoupled(model: Any, batch: Any) -> tuple[Tensor, Tensor]:
    _, shared, private, _ = model.utterances(batch)
    return (torch.stack([shared[m][:, 0] for m in MODALITIES]), torch.stack([private[m][:, 0] for m in MODALITIES]))


def test_encode_pooled_falls_back_to_one_by_one_on_sequences() -> None:
    torch.manual_seed(0)
    model = create_model("lmf", TINY_DIMS, 1).eval()
    batch = make_batch({"text": [3, 2, 1], "audio": [2, 1, 2], "visual": [1, 3, 2]}, TINY_DIMS)
    grouped = encode_pooled(model.encoders, batch, grouped=True)
    alone = encode_pooled(model.encoders, batch, grouped=False)
    assert all(torch.equal(grouped[m], alone[m]) for m in MODALITIES)


def _pair(name: str, **params: Any) -> tuple[Any, Any]:
    torch.manual_seed(0)
    grouped = create_model(name, TINY_DIMS, 1, **params)
    alone = create_model(name, TINY_DIMS, 1, batch_modalities=False, **params)
    alone.load_state_dict(grouped.state_dict())
    return grouped, alone


def _with_labels(model: Any, batch: Any) -> None:
    """Self-MM: a memory whose generated labels depart from y_m, so the unimodal losses are not zero."""
    if isinstance(model, SelfMM):
        batch.ids = [f"s{i}" for i in range(batch.size)]
        model.memory.rows(batch.ids, batch.label)
        for m in MODALITIES:
            model.memory.labels[m] += torch.linspace(-1.0, 1.0, batch.size)


NO_DROPOUT: dict[str, dict[str, Any]] = {
    "tfn": {"dropout": 0.0, "fusion_dropout": 0.0},
    "lmf": {"dropout": 0.0, "fusion_dropout": 0.0},
    "self_mm": {"dropout": 0.0, "post_fusion_dropout": 0.0, "post_unimodal_dropout": 0.0},
    "misa": {"dropout": 0.0},
    "misa_norm": {"dropout": 0.0, "projection_norm": True},  # MISA with the released code's projection norms
}
MODELS = ["tfn", "lmf", "self_mm", "misa", "misa_norm"]


@pytest.mark.parametrize("name", MODELS)
def test_batch_modalities_is_the_same_model(name: str) -> None:
    """On one-step data with missing modalities: the grouped model's prediction, features, diagnostics, losses and
    every gradient equal the per-encoder model's to float rounding."""
    grouped, alone = _pair(name.split("_norm")[0], **NO_DROPOUT[name])
    batch = make_batch({"text": [1, 1, 0, 1, 1], "audio": [1, 0, 1, 1, 1], "visual": [1, 1, 1, 0, 1]}, TINY_DIMS)
    outs = []
    for model in (grouped, alone):
        model.train()
        _with_labels(model, batch)
        out = model(batch)
        loss = (out.prediction * torch.linspace(-1, 1, batch.size)).sum() + sum(v.sum() for v in out.losses.values())
        loss.backward()
        outs.append(out)
    a, b = outs
    torch.testing.assert_close(a.prediction, b.prediction, rtol=1e-6, atol=1e-6)
    assert a.features.keys() == b.features.keys() and a.losses.keys() == b.losses.keys()
    assert a.diagnostics.keys() == b.diagnostics.keys()
    for part in ("features", "losses", "diagnostics"):
        for k in getattr(a, part):
            torch.testing.assert_close(getattr(a, part)[k], getattr(b, part)[k], rtol=1e-6, atol=1e-6, msg=k)
    if name == "self_mm":
        assert all(bool(a.losses[f"uni_{m}"].abs().sum() > 0) for m in MODALITIES)
    for (n, p), q in zip(grouped.named_parameters(), alone.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, n
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_self_mm_unimodal_heads_are_grouped_on_sequences_too() -> None:
    """Self-MM's unimodal heads take pooled vectors: the grouped heads equal the per-task ones at any length."""
    grouped, alone = _pair("self_mm", **NO_DROPOUT["self_mm"])
    batch = make_batch({"text": [3, 2, 1], "audio": [2, 1, 2], "visual": [1, 3, 2]}, TINY_DIMS)
    feats = alone.eval().forward_features(batch)
    reps_g, preds_g, uni_reps_g, uni_g = grouped.eval().task_outputs(feats)
    reps_a, preds_a, uni_reps_a, uni_a = alone.task_outputs(feats)
    for t in reps_a:
        torch.testing.assert_close(reps_g[t], reps_a[t], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(preds_g[t], preds_a[t], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(uni_g, uni_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(uni_g, torch.stack([preds_g[m] for m in MODALITIES]))
    torch.testing.assert_close(uni_reps_g, uni_reps_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(uni_reps_g, torch.stack([reps_g[m] for m in MODALITIES]))


def test_self_mm_grouped_heads_apply_the_unimodal_dropout() -> None:
    """A unimodal dropout that drops everything leaves each unimodal F_s* = ReLU(b_1^s) (the fusion task keeps its
    input), in the grouped heads as in the per-task ones."""
    batch = make_batch({m: [1, 1, 1] for m in MODALITIES}, TINY_DIMS)
    for model in _pair("self_mm", dropout=0.0, post_fusion_dropout=0.0):
        for m in MODALITIES:
            model.drop[m].p = 1.0
        out = model.train()(batch)
        for k, m in enumerate(MODALITIES):
            want = torch.relu(model.layer1[m].bias).expand(3, -1)
            torch.testing.assert_close(out.diagnostics["repr_unimodal"][:, k], want)
        fused = out.diagnostics["repr_fusion"]
        assert not torch.allclose(fused, torch.relu(model.layer1["fusion"].bias).expand_as(fused))


@pytest.mark.parametrize("name", ["tfn", "lmf", "self_mm", "misa"])
def test_batch_modalities_draws_other_masks_and_runs_fewer_ops(name: str) -> None:
    batch = make_batch({m: [1, 1, 1, 1] for m in MODALITIES}, TINY_DIMS)
    counts, predictions = [], []
    for model in _pair(name, dropout=0.3):
        torch.manual_seed(5)
        model.train()
        _with_labels(model, batch)
        n, prediction = training_ops(model, batch)
        counts.append(n)
        predictions.append(prediction)
    assert counts[0] < 0.85 * counts[1], counts
    assert not torch.allclose(predictions[0], predictions[1])
