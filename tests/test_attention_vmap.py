"""Attention and dropout under :func:`torch.func.vmap` (seed-parallel training runs models as
``vmap(functional_call(model), randomness="different")``) and the fused dropout attention's exactness.

What must hold: a vmapped stack of seeds' MulT models gives each seed's own output in eval mode and each seed's own
gradients with dropout off; in train mode with every dropout on, each vmapped instance draws its own masks (the
same weights give different outputs) and the same ``torch.manual_seed`` gives the same outputs and gradients; the
fused two-pass dropout attention equals the explicit softmax-dropout formula for the same keep mask, forward and
backward, also under vmap and ``torch.func.grad``.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, stack_module_state, vmap

from accord.core.types import Batch
from accord.models import create_model
from accord.models.base import AccordModel
from accord.models.modules import attention
from accord.models.modules.attention import (
    Dropout,
    MultiheadAttention,
    _DropoutAttention,
    attention_with_dropout,
    random_bits15,
)
from test_models import make_batch

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 6, "audio": 4, "visual": 5}
SMALL = {"hidden": 8, "heads": 2, "layers": 1, "mem_layers": 1, "downsample_audio": 2, "downsample_visual": 2}
NO_DROPOUT = {"attn_dropout": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0, "embed_dropout": 0.0,
              "out_dropout": 0.0}
DROPOUT = {"attn_dropout": 0.3, "attn_dropout_audio": 0.2, "attn_dropout_visual": 0.1, "attn_dropout_mem": 0.2,
           "relu_dropout": 0.1, "res_dropout": 0.1, "embed_dropout": 0.2, "out_dropout": 0.1}
LENGTHS = {"text": [9, 4, 12, 1, 7], "audio": [31, 17, 0, 9, 3], "visual": [22, 1, 13, 31, 8]}


def seed_models(params: dict[str, Any], seeds: tuple[int, ...] = (0, 1, 2)) -> list[AccordModel]:
    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(create_model("mult", DIMS, 1, **SMALL, **params))
    return models


def tree_of(batch: Batch) -> dict[str, Any]:
    return {"features": batch.features, "mask": batch.mask, "present": batch.present, "label": batch.label}


def vmapped(models: list[AccordModel], train: bool, stacked_batch: bool
            ) -> tuple[Any, dict[str, Tensor], dict[str, Tensor]]:
    """``(fn(params, buffers, tree) -> [S, B] predictions, stacked params, stacked buffers)``."""
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta").train(train)

    def one(p: dict[str, Tensor], b: dict[str, Tensor], tree: dict[str, Any]) -> Tensor:
        return functional_call(template, (p, b), (Batch(**tree),)).prediction

    fn = vmap(one, in_dims=(0, 0, 0 if stacked_batch else None), randomness="different")
    return fn, params, buffers


def stack_tree(tree: dict[str, Any], n: int) -> dict[str, Any]:
    return {k: ({m: torch.stack([t] * n) for m, t in v.items()} if isinstance(v, dict) else torch.stack([v] * n))
            for k, v in tree.items()}


# under vmap, short attention runs on the explicit path and long attention on the fused kernels (looped by torch);
# the tiny sequences here are "short", so the tests also run with every attention on the fused kernels
PATHS = {"explicit": attention.VMAP_EXPLICIT_MAX_SCORES, "fused": 0}


@pytest.mark.parametrize("stacked_batch", [False, True])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_vmapped_mult_equals_each_seed_alone_in_eval_mode(stacked_batch: bool, path: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "VMAP_EXPLICIT_MAX_SCORES", PATHS[path])
    models = seed_models(DROPOUT)  # dropout configured, but eval mode switches it off
    batch = make_batch(LENGTHS, DIMS)
    fn, params, buffers = vmapped(models, train=False, stacked_batch=stacked_batch)
    tree = stack_tree(tree_of(batch), 3) if stacked_batch else tree_of(batch)
    with torch.no_grad():
        out = fn(params, buffers, tree)
        for s, model in enumerate(models):
            torch.testing.assert_close(out[s], model.eval()(batch).prediction, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_vmapped_mult_gradients_equal_each_seeds_own_without_dropout(path: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "VMAP_EXPLICIT_MAX_SCORES", PATHS[path])
    models = seed_models(NO_DROPOUT)
    batch = make_batch(LENGTHS, DIMS)
    fn, params, buffers = vmapped(models, train=True, stacked_batch=True)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    out = fn(params, buffers, stack_tree(tree_of(batch), 3))
    F.mse_loss(out, batch.label.expand_as(out), reduction="sum").backward()  # autograd over the vmap outputs
    for s, model in enumerate(models):
        model.train().zero_grad()
        F.mse_loss(model(batch).prediction, batch.label, reduction="sum").backward()
        for name, p in model.named_parameters():
            assert p.grad is not None
            got = params[name].grad
            assert got is not None
            torch.testing.assert_close(got[s], p.grad, atol=1e-5, rtol=1e-4, msg=f"{name}, seed {s}")


@pytest.mark.parametrize("path", sorted(PATHS))
def test_vmapped_mult_dropout_differs_per_instance_and_is_seeded(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "VMAP_EXPLICIT_MAX_SCORES", PATHS[path])
    model = seed_models(DROPOUT, seeds=(0,))[0]
    models = [model, copy.deepcopy(model), copy.deepcopy(model)]  # the same weights thrice
    batch = make_batch(LENGTHS, DIMS)
    fn, params, buffers = vmapped(models, train=True, stacked_batch=False)

    def loss(p: dict[str, Tensor]) -> Tensor:
        return fn(p, buffers, tree_of(batch)).pow(2).sum()

    torch.manual_seed(0)
    out = fn(params, buffers, tree_of(batch))
    torch.manual_seed(0)
    again = fn(params, buffers, tree_of(batch))
    torch.testing.assert_close(out, again, atol=0.0, rtol=0.0)  # deterministic under the global seed
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not torch.allclose(out[a], out[b]), "vmapped instances drew the same dropout masks"
    with torch.no_grad():
        assert not torch.allclose(out[0], model.eval()(batch).prediction)  # dropout acts
    torch.manual_seed(1)
    g1 = grad(loss)(params)
    torch.manual_seed(1)
    g2 = grad(loss)(params)
    for name in g1:  # torch.func.grad through the dropout paths: finite, seeded
        assert torch.isfinite(g1[name]).all(), name
        torch.testing.assert_close(g1[name], g2[name], atol=0.0, rtol=0.0)


@pytest.mark.parametrize("width", [50, 100])  # unbatched input: 3,200 elements F.dropout, 6,400 random bits
def test_dropout_on_an_input_shared_by_every_vmapped_instance_still_differs(width: int) -> None:
    drop = Dropout(0.5).train()
    shared = torch.ones(64, width)  # not batched: in-place randomness is refused there, randint draws per instance
    torch.manual_seed(0)
    out = vmap(lambda s: drop(shared) + s, randomness="different")(torch.zeros(3, 1, 1))
    torch.manual_seed(0)
    again = vmap(lambda s: drop(shared) + s, randomness="different")(torch.zeros(3, 1, 1))
    assert torch.equal(out, again)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    assert set(out.unique().tolist()) == {0.0, 32768 / 16384}


def explicit_reference(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, attn_mask: Tensor | None, p: float) -> Tensor:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return (scores.softmax(dim=-1) * keep / (1 - p)) @ v


def fixed_dropout_inputs(seed: int = 0) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, h, tq, tk, d = 3, 2, 5, 7, 4
    q, k, v = (torch.randn(b, h, t, d, generator=g) for t in (tq, tk, tk))
    attn_mask = (torch.arange(tk) < torch.tensor([7, 3, 1])[:, None])[:, None, None, :]
    keep = torch.rand(b, h, tq, tk, generator=g) >= 0.5
    keep[1, 0, :2] = False  # rows whose every key is dropped give 0
    return q, k, v, attn_mask, keep


def fused(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor, keep: Tensor, p: float) -> Tensor:
    pad = torch.where(attn_mask, 0.0, float("-inf"))
    drop = torch.where(keep, pad, -0.5 * torch.finfo(q.dtype).max)
    return _DropoutAttention.apply(q, k, v, drop, pad, 1 / (1 - p))[0]


def test_fused_dropout_attention_equals_the_explicit_formula() -> None:
    q, k, v, attn_mask, keep = fixed_dropout_inputs()
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    got, ref = fused(q, k, v, attn_mask, keep, 0.5), explicit_reference(q, k, v, keep, attn_mask, 0.5)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    assert got[1, 0, :2].abs().sum() == 0
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_dropout_attention_under_vmap_and_func_grad() -> None:
    inputs = [fixed_dropout_inputs(s) for s in range(3)]
    q, k, v, attn_mask, keep = (torch.stack(t) for t in zip(*inputs, strict=True))

    def loss(fn: Any, q_: Tensor, k_: Tensor, v_: Tensor, m_: Tensor, keep_: Tensor) -> Tensor:
        return fn(q_, k_, v_, m_, keep_).pow(2).sum()

    def fused_fn(q_: Tensor, k_: Tensor, v_: Tensor, m_: Tensor, keep_: Tensor) -> Tensor:
        return fused(q_, k_, v_, m_, keep_, 0.5)

    def ref_fn(q_: Tensor, k_: Tensor, v_: Tensor, m_: Tensor, keep_: Tensor) -> Tensor:
        return explicit_reference(q_, k_, v_, keep_, m_, 0.5)

    out = vmap(fused_fn)(q, k, v, attn_mask, keep)
    ref = torch.stack([ref_fn(*(t[s] for t in (q, k, v, attn_mask, keep))) for s in range(3)])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    grads = vmap(grad(lambda *a: loss(fused_fn, *a), argnums=(0, 1, 2)))(q, k, v, attn_mask, keep)
    refs = vmap(grad(lambda *a: loss(ref_fn, *a), argnums=(0, 1, 2)))(q, k, v, attn_mask, keep)
    for a, b in zip(grads, refs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # the public entry point draws its own masks under vmap: per instance, finite, and F.sdpa's fused kernel
    # (no dropout) runs under vmap forward and backward too
    qs = q.clone().requires_grad_(True)
    torch.manual_seed(0)
    drawn = vmap(lambda a, b_, c, m: attention_with_dropout(a, b_, c, m, 0.5), randomness="different")(
        qs, k, k, attn_mask)
    plain = vmap(lambda a, b_, c, m: F.scaled_dot_product_attention(a, b_, c, attn_mask=m))(qs, k, k, attn_mask)
    (drawn.sum() + plain.sum()).backward()
    assert qs.grad is not None and torch.isfinite(qs.grad).all() and torch.isfinite(drawn).all()


def test_attention_paths_agree_for_the_same_random_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused dropout path draws its keep mask exactly as the explicit path does (same shape, same bits)."""
    monkeypatch.setattr(attention, "CPU_DROPOUT_EXPLICIT_MAX_SCORES", 0)  # these small tiles: fused, not explicit
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2, dropout=0.4).train()
    q, kv = torch.randn(4, 5, 8, requires_grad=True), torch.randn(4, 7, 8, requires_grad=True)
    mask = torch.tensor([[True] * 7, [True, True] + [False] * 5, [False] * 7, [True] + [False] * 6])
    torch.manual_seed(1)
    fast, _ = attn(q, kv, mask)
    torch.manual_seed(1)
    slow, _ = attn(q, kv, mask, explicit=True)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(fast, (q, kv), g), torch.autograd.grad(slow, (q, kv), g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    bits = random_bits15((1000, 64), torch.empty(0))
    assert bits.dtype == torch.int16 and int(bits.min()) >= 0 and int(bits.max()) < 32768


def spy_attention_paths(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> list[str]:
    """Wrap the attention functions ``names`` of :mod:`accord.models.modules.attention` so that each call appends
    its name to the returned list (and still runs)."""
    calls: list[str] = []
    for name in names:
        monkeypatch.setattr(attention, name, (lambda f, n: lambda *a, **k: calls.append(n) or f(*a, **k))(
            getattr(attention, name), name))
    return calls


@pytest.mark.parametrize(("p", "cap", "path"), [(0.4, None, "explicit"), (0.4, 4 * 2 * 5 * 7 - 1, "fused_dropout"),
                                              (0.4, 4 * 2 * 5 * 7, "explicit"), (0.0, None, "sdpa")])
def test_cpu_attention_path_follows_dropout_and_the_score_count(p: float, cap: int | None, path: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With dropout on CPU, attention of at most ``CPU_DROPOUT_EXPLICIT_MAX_SCORES`` scores ``B * H * Tq * Tk`` runs
    explicitly (no flash call), above it on the two-pass flash kernel; without dropout always on the fused kernel.
    The explicit run returns no weights unless asked, and equals the forced explicit path bit for bit."""
    if cap is not None:
        monkeypatch.setattr(attention, "CPU_DROPOUT_EXPLICIT_MAX_SCORES", cap)
    calls = spy_attention_paths(monkeypatch, ("explicit_attention", "attention_with_dropout"))
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2, dropout=p).train()
    q, kv = torch.randn(4, 5, 8), torch.randn(4, 7, 8)  # 4 * 2 * 5 * 7 scores
    torch.manual_seed(1)
    out, weights = attn(q, kv, None)
    assert weights is None
    assert calls == {"explicit": ["explicit_attention"], "fused_dropout": ["attention_with_dropout"], "sdpa": []}[path]
    torch.manual_seed(1)
    forced, _ = attn(q, kv, None, explicit=True)
    if path == "explicit":
        assert torch.equal(out, forced)
    else:
        torch.testing.assert_close(out, forced, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_one_key_shortcut_equals_the_explicit_path(p: float) -> None:
    """With one key (T = 1) the output is v times the dropout mask: exactly the explicit path's values, random
    draws and value gradients. The query and key projections are skipped: on the full formula their gradients are
    exactly zero (the key half of the key/value projection keeps its zero gradient, the query projection and the
    query itself get none); a missing key (masked) gives zeros."""
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2, dropout=p).train()
    q, kv = torch.randn(6, 3, 8, requires_grad=True), torch.randn(6, 1, 8, requires_grad=True)
    mask = torch.tensor([[True], [False], [True], [True], [True], [True]])
    grads, outs, q_grads = [], [], []
    for explicit in (False, True):
        torch.manual_seed(1)
        out, _ = attn(q, kv, mask, explicit=explicit)
        attn.zero_grad()
        q.grad = kv.grad = None
        (out * torch.arange(8.0)).sum().backward()
        outs.append(out.detach())
        grads.append([attn.kv_proj.weight.grad.clone(), attn.kv_proj.bias.grad.clone(),  # type: ignore[union-attr]
                      attn.out_proj.weight.grad.clone(), kv.grad.clone()])  # type: ignore[union-attr]
        q_grads.append((attn.q_proj.weight.grad, q.grad))
    assert torch.equal(outs[0], outs[1]) and bool((outs[0][1] == 0).all())
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert q_grads[0] == (None, None)  # the shortcut never reads the query
    assert bool((q_grads[1][0] == 0).all()) and bool((q_grads[1][1] == 0).all())  # the formula: exactly zero
    assert bool((grads[0][0][:8] == 0).all()) and bool((grads[0][0][8:] != 0).any())  # keys: zero; values: not
    if p > 0:  # some heads/steps dropped, the others scaled by 1 / (1 - p)
        v = attn.kv_proj(kv)[..., 8:].detach()
        assert not torch.allclose(outs[0][0], attn.out_proj(v[0].expand(3, 8)).detach())


def test_a_crossmodal_layer_over_a_one_step_source_is_the_pre_ln_formula() -> None:
    """``x + Attn(LN_q(x), LN_kv(s)) + FFN(...)`` with a one-step source, computed without the query LayerNorm (the
    one-key attention does not read the query): the same output and source gradients as the formula on the explicit
    path; the query LayerNorm is not even computed."""
    torch.manual_seed(0)
    layer = attention.CrossmodalTransformerLayer(8, 2, attn_dropout=0.3, source_dim=6).train()
    x, src = torch.randn(5, 3, 8), torch.randn(5, 1, 6, requires_grad=True)
    mask = torch.tensor([[True], [True], [False], [True], [True]])
    torch.manual_seed(1)
    got = layer(x, None, src, mask)
    torch.manual_seed(1)
    h = x + layer.drop(layer.attn(layer.ln_q(x), layer.ln_kv(src), mask, explicit=True)[0])
    want = h + layer.drop(layer.ffn(layer.ln_ffn(h)))
    assert torch.equal(got, want)
    g = torch.randn_like(got)
    (g_got,) = torch.autograd.grad(got, src, g)
    (g_want,) = torch.autograd.grad(want, src, g)
    torch.testing.assert_close(g_got, g_want, atol=1e-6, rtol=1e-6)
    calls: list[int] = []
    layer.ln_q.register_forward_hook(lambda *_: calls.append(1))
    layer(x, None, src, mask)
    assert not calls  # not computed for a one-step source ...
    layer(x, None, torch.randn(5, 2, 6), torch.ones(5, 2, dtype=torch.bool))
    assert calls == [1]  # ... and computed for a longer one


def _reference_gelu(x: Tensor, aten: bool) -> tuple[Tensor, Tensor]:
    """GELU of ``x`` and its gradient for an all-ones upstream gradient, by ATen's own kernel (oneDNN switched off)
    or by torch's default dispatch (oneDNN for a contiguous fp32 CPU tensor)."""
    x = x.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():  # the flags context also sets oneDNN's TF32 switch, and warns about Intel GPUs
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=not aten):
            y = F.gelu(x)
            y.backward(torch.ones_like(y))
    assert x.grad is not None
    return y.detach(), x.grad


@pytest.mark.parametrize("shape, aten", [((16, 1, 32), True), ((64, 1, 128), True), ((32, 4, 128), True),
                                         ((32, 8, 128), False), ((1, 1, 64), False), ((7,), False)])
def test_gelu_runs_small_cpu_tensors_through_aten_and_keeps_the_function(shape: tuple[int, ...], aten: bool) -> None:
    """attention.GELU: at most GELU_ATEN_MAX_NUMEL elements (with two dimensions of more than one element to
    transpose) ATen's kernel, bit for bit, else torch's default; values, gradients and the layout are those of
    exact GELU either way (the two kernels differ by float rounding only)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3)) * 3
    assert (math.prod(shape) <= attention.GELU_ATEN_MAX_NUMEL) == aten or shape[0] == 1 or len(shape) == 1
    xg = x.clone().requires_grad_(True)
    y = attention.GELU()(xg)
    y.backward(torch.ones_like(y))
    assert xg.grad is not None
    want_y, want_g = _reference_gelu(x, aten)
    assert torch.equal(y, want_y) and torch.equal(xg.grad, want_g)
    assert y.shape == x.shape and y.stride() == x.stride()
    other_y, other_g = _reference_gelu(x, not aten)  # the other kernel: the same function up to rounding
    torch.testing.assert_close(y, other_y, rtol=1e-5, atol=3e-6)
    torch.testing.assert_close(xg.grad, other_g, rtol=1e-5, atol=3e-6)
    tanh = attention.GELU(approximate="tanh")
    assert torch.equal(tanh(x), F.gelu(x, approximate="tanh"))


def test_gelu_kernels_differ_so_the_routing_is_observable() -> None:
    """The two kernels do round differently on this machine (otherwise the test above could not tell the paths
    apart), and the encoders' temporal layer uses attention.GELU."""
    from accord.models.modules import build_encoder
    from accord.models.modules.encoders import SequenceEncoder
    from accord.models.params.encoders import EncoderParams

    x = torch.randn(64, 1, 128, generator=torch.Generator().manual_seed(0)) * 3
    assert not torch.equal(_reference_gelu(x, True)[0], _reference_gelu(x, False)[0])
    enc = build_encoder(5, EncoderParams(hidden=8))
    assert isinstance(enc, SequenceEncoder) and isinstance(enc.act, attention.GELU)
