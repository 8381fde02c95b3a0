"""The blocked attention path (:func:`accord.models.modules.attention.blocked_attention`): CPU attention with
narrow heads, with or without dropout, as explicit products over blocks of (batch x head) slices.

What must hold: hand-computed values (the softmax, the dropout scale, a masked key); the analytic backward equals
the numerical one (``gradcheck`` in float64, with and without a dropout mask and a padding bias); through
:class:`MultiheadAttention` it equals the explicit path for the same random stream, forward and backward, every
parameter included; a masked key gets exactly zero weight and gradient; scores far below the row maximum (the
``exp`` floor) change nothing visible; the block size changes nothing; and the path is taken exactly where
:func:`blocked_applies` says (CPU, float32/64, heads at most ``BLOCKED_MAX_HEAD_WIDTH`` wide, at least
``BLOCKED_MIN_SCORES`` scores, not under vmap).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.func import vmap

from accord.models.modules import attention
from accord.models.modules.attention import MultiheadAttention, _BlockedAttention, blocked_applies, blocked_attention
from test_attention_vmap import spy_attention_paths

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small test shapes take the blocked path (no score minimum)."""
    monkeypatch.setattr(attention, "BLOCKED_MIN_SCORES", 0)


def test_blocked_attention_by_hand() -> None:
    """One query, two keys (d = 1): scores 0 and ln 3 give weights 1/4 and 3/4; values 4 and 8 give 7. A dropout
    scale mask (0, 2), or the keep mask (0, 1) with scale 2, gives 3/4 * 2 * 8 = 12; masking the second key gives
    4."""
    q = torch.tensor([[[1.0]]])
    k = torch.tensor([[[0.0], [math.log(3.0)]]])
    v = torch.tensor([[[4.0], [8.0]]])
    out = _BlockedAttention.apply(q, k, v, None, None, None, 1.0)
    torch.testing.assert_close(out, torch.tensor([[[7.0]]]))
    dropped = _BlockedAttention.apply(q, k, v, None, None, torch.tensor([[[0.0, 2.0]]]), 1.0)
    torch.testing.assert_close(dropped, torch.tensor([[[12.0]]]))
    # the same as a 0/1 mask with its scale 2 applied per row
    scaled = _BlockedAttention.apply(q, k, v, None, None, torch.tensor([[[0.0, 1.0]]]), 2.0)
    torch.testing.assert_close(scaled, torch.tensor([[[12.0]]]))
    masked = blocked_attention(q[None], k[None], v[None], torch.tensor([True, False]).view(1, 1, 1, 2), 0.0)
    torch.testing.assert_close(masked, torch.tensor([[[[4.0]]]]))


@pytest.mark.parametrize(("dropout", "padded"), [(None, False), ("scale", False), ("keep", False), (None, True),
                                                 ("scale", True), ("keep", True)])
def test_blocked_backward_equals_the_numerical_gradient(dropout: str | None, padded: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``gradcheck`` (float64) of q, k and v through several blocks (``BLOCK_SCORES`` = two slices' scores and a
    shorter last block), with a dropout mask (the scale mask, or a 0/1 keep mask and its scale) and a padding bias
    (a key masked in some slices)."""
    monkeypatch.setattr(attention, "BLOCK_SCORES", 2 * 4 * 6)
    g = torch.Generator().manual_seed(0)
    n, tq, tk, d = 5, 4, 6, 3
    q, k, v = (torch.randn(n, t, d, generator=g, dtype=torch.float64, requires_grad=True) for t in (tq, tk, tk))
    keep = (torch.rand(n, tq, tk, generator=g) > 0.3).double()
    mask, mask_scale = {None: (None, 1.0), "scale": (keep / 0.7, 1.0), "keep": (keep, 1 / 0.7)}[dropout]
    bias = key_keep = None
    if padded:
        keys = torch.ones(n, 1, tk, dtype=torch.bool)
        keys[1, 0, 3:] = False
        keys[4, 0, :5] = False
        bias = torch.where(keys, 0.0, float("-inf")).double()
        key_keep = keys.double()
    assert torch.autograd.gradcheck(
        lambda a, b, c: _BlockedAttention.apply(a, b, c, bias, key_keep, mask, mask_scale), (q, k, v))


def _attn_pair(p: float, dim: int, heads: int) -> tuple[MultiheadAttention, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    attn = MultiheadAttention(dim, heads, dropout=p).train()
    q, kv = torch.randn(4, 9, dim, requires_grad=True), torch.randn(4, 11, dim, requires_grad=True)
    mask = torch.ones(4, 11, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2] = False  # no key at all: zero output
    mask[3, 1:] = False
    return attn, q, kv, mask


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return spy_attention_paths(monkeypatch, ("blocked_attention", "explicit_attention", "attention_with_dropout"))


@pytest.mark.parametrize("p", [0.0, 0.4])
@pytest.mark.parametrize(("dim", "heads"), [(10, 2), (32, 4)])
def test_blocked_path_equals_the_explicit_path_for_the_same_random_stream(
        p: float, dim: int, heads: int, every_size: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through :class:`MultiheadAttention` (heads 5 and 8 wide): the same outputs, input gradients and parameter
    gradients as ``explicit=True`` after the same ``torch.manual_seed`` (the same keep mask), a sample without keys
    outputs zeros, and the blocked path is what ran."""
    attn, q, kv, mask = _attn_pair(p, dim, heads)
    calls = _spy(monkeypatch)
    torch.manual_seed(1)
    fast, _ = attn(q, kv, mask)
    assert calls == ["blocked_attention"]
    torch.manual_seed(1)
    slow, _ = attn(q, kv, mask, explicit=True)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    assert torch.equal(fast[2], torch.zeros_like(fast[2]))
    g = torch.randn_like(fast)
    wrt = (q, kv, *attn.parameters())
    for a, b in zip(torch.autograd.grad(fast, wrt, g), torch.autograd.grad(slow, wrt, g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if p > 0:  # the mask is really drawn: another stream gives another output
        torch.manual_seed(2)
        assert not torch.allclose(attn(q, kv, mask)[0], fast)


def test_masked_keys_get_exactly_zero_weight_and_gradient(every_size: None) -> None:
    """Values at masked keys never reach the output (changing them changes nothing, bit for bit) and their
    gradient is exactly zero, also with dropout."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 7, 5, generator=g), torch.randn(2, 3, 6, 5, generator=g)
    v = torch.randn(2, 3, 6, 5, generator=g, requires_grad=True)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6]).view(2, 1, 1, 6)
    torch.manual_seed(0)
    out = blocked_attention(q, k, v, mask, 0.3)
    (grad_v,) = torch.autograd.grad(out, v, torch.randn_like(out))
    assert torch.equal(grad_v[0, :, 4:], torch.zeros_like(grad_v[0, :, 4:]))
    assert bool((grad_v[1] != 0).any())
    w = v.detach().clone()
    w[0, :, 4:] = 1e6
    torch.manual_seed(0)
    assert torch.equal(blocked_attention(q, k, w, mask, 0.3), out.detach())


def test_scores_far_below_the_row_maximum_change_nothing_visible(every_size: None) -> None:
    """Scores 100 to 1000 below a row's maximum (``exp`` of them is below float32's normal range; the blocked path
    raises them to the floor, 1.6e-38): the output and gradients equal the explicit softmax's, and a masked key
    still gets exactly zero weight."""
    g = torch.Generator().manual_seed(0)
    q = (torch.randn(2, 2, 5, 4, generator=g) * 30).requires_grad_()
    k = (torch.randn(2, 2, 8, 4, generator=g) * 30).requires_grad_()
    v = torch.randn(2, 2, 8, 4, generator=g, requires_grad=True)
    mask = torch.tensor([[True] * 8, [True] * 5 + [False] * 3]).view(2, 1, 1, 8)
    scores = ((q * 0.5) @ k.transpose(-1, -2)).detach()
    assert float((scores.amax(-1, keepdim=True) - scores).max()) > 200  # the floor is really reached
    fast = blocked_attention(q, k, v, mask, 0.0)
    slow = attention.explicit_attention(q, k, v, mask, None, 0.0)[0]
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    go = torch.randn_like(fast)
    grads = torch.autograd.grad(fast, (q, k, v), go)
    for a, b in zip(grads, torch.autograd.grad(slow, (q, k, v), go), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(grads[2][1, :, 5:], torch.zeros(2, 3, 4))


def test_exp_inputs_are_raised_to_the_floor_and_masked_keys_zeroed() -> None:
    """``_block_exp`` never hands ``exp`` an input below the floor (-86.3 in float32: ``exp`` takes a slow path below
    about -87): -1000 and -inf come out as ``exp(floor)``, a masked key as exactly 0."""
    floor = attention._exp_floor(torch.float32)
    assert floor == pytest.approx(math.log(torch.finfo(torch.float32).tiny) + 1.0) and -87 < floor < -86
    out = attention._block_exp(torch.tensor([[[-1000.0, float("-inf"), 0.0, -2.0]]]), floor, None, 0, 1)
    torch.testing.assert_close(out, torch.tensor([[[math.exp(floor), math.exp(floor), 1.0, math.exp(-2.0)]]]))
    keep = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])
    out = attention._block_exp(torch.tensor([[[-1000.0, float("-inf"), 0.0, -2.0]]]), floor, keep, 0, 1)
    assert out[0, 0, 1] == 0.0 and out[0, 0, 0] > 0


def test_the_block_size_changes_nothing(every_size: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """One slice per block, three per block (a shorter last one) and all in one block give the same output and
    gradients, bit for bit: each slice is computed on its own."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, t, 5, generator=g, requires_grad=True) for t in (6, 7, 7))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    go = torch.randn(2, 4, 6, 5, generator=g)
    results = []
    for block in (1, 3 * 6 * 7, 2**20):
        monkeypatch.setattr(attention, "BLOCK_SCORES", block)
        torch.manual_seed(0)
        out = blocked_attention(q, k, v, mask, 0.2)
        results.append((out, *torch.autograd.grad(out, (q, k, v), go)))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("chunk_words", [1, 3, 2**18])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 7, 3), (4, 4)])
def test_keep_masks_drawn_in_chunks_are_the_one_shot_draw(chunk_words: int, dtype: torch.dtype,
                                                         shape: tuple[int, ...],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``draw_keep`` draws its words a chunk at a time (one word, three: a chunk boundary inside the mask, its last
    chunk partial; or one chunk for all): the mask equals ``random_bits15(shape) >= threshold`` drawn at once, and
    the generator is left where that draw leaves it (the next draw agrees too). 105 values (not a multiple of 4)
    and 16 (a last chunk of one word, where three fit)."""
    monkeypatch.setattr(attention, "KEEP_CHUNK_WORDS", chunk_words)
    torch.manual_seed(3)
    want = attention.random_bits15(shape, torch.empty(0)) >= 9830
    after = torch.rand(4)
    torch.manual_seed(3)
    got = attention.draw_keep(shape, 9830, torch.empty(0), dtype)
    assert got.dtype == dtype and torch.equal(got, want.to(dtype)) and torch.equal(torch.rand(4), after)
    assert want.any() and not want.all()  # both kept and dropped values compared


def test_the_blocked_paths_keep_mask_is_bytes_of_the_scale_masks_pattern() -> None:
    """``keep_mask01`` (the blocked path's mask): uint8 0/1, kept exactly where :func:`dropout_scale_mask` of the
    same random stream is non-zero, with that mask's scale ``1 / (1 - p_eff)``; the same under vmap (one mask per
    instance, drawn the one-shot way there)."""
    like = torch.empty(0)
    torch.manual_seed(5)
    scale_mask = attention.dropout_scale_mask((3, 2, 40, 50), 0.3, like)
    torch.manual_seed(5)
    keep, scale = attention.keep_mask01((3, 2, 40, 50), 0.3, like)
    assert scale_mask is not None and keep is not None
    assert keep.dtype == torch.uint8 and scale == pytest.approx(1 / (1 - round(0.3 * 32768) / 32768))
    assert torch.equal(keep.bool(), scale_mask != 0) and torch.equal(scale_mask, keep * torch.tensor(scale))
    masks = vmap(lambda x: attention.keep_mask01((40, 50), 0.3, x)[0], randomness="different")(torch.ones(2, 1))
    assert masks.dtype == torch.uint8 and masks.shape == (2, 40, 50) and not torch.equal(masks[0], masks[1])


def test_blocked_path_refuses_a_mask_that_is_not_a_key_mask() -> None:
    q = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"key mask of shape \(2, 1, 4, 6\), expected \(2, 1, 1, 6\)"):
        blocked_attention(q, torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 5),
                          torch.ones(2, 1, 4, 6, dtype=torch.bool), 0.0)


def test_double_backward_through_the_blocked_path_is_refused_and_explicit_supports_it(every_size: None) -> None:
    """The blocked backward is once differentiable (as the flash kernels are); ``explicit=True`` is the path for
    second derivatives (CP's penalty)."""
    attn, q, kv, mask = _attn_pair(0.0, 10, 2)
    (gq,) = torch.autograd.grad(attn(q, kv, mask)[0].sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gq.square().sum().backward()
    (gq,) = torch.autograd.grad(attn(q, kv, mask, explicit=True)[0].sum(), q, create_graph=True)
    assert torch.autograd.grad(gq.square().sum(), kv)[0].abs().sum() > 0


def _qk(b: int, h: int, tq: int, tk: int, d: int, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty(b, h, tq, d, **kw), torch.empty(b, h, tk, d, **kw)


def test_blocked_applies_where_it_pays() -> None:
    """Heads at most 10 wide, at least 2^20 scores, CPU float32/64: yes. Wider heads, fewer scores, half
    precision, vmapped tensors: no."""
    n = attention.BLOCKED_MIN_SCORES
    assert attention.BLOCKED_MAX_HEAD_WIDTH == 10 and n == 2**20
    assert blocked_applies(*_qk(16, 4, 128, 128, 10))  # exactly 2^20 scores
    assert blocked_applies(*_qk(16, 4, 128, 128, 5, dtype=torch.float64))
    assert not blocked_applies(*_qk(16, 4, 128, 127, 10))  # one key fewer
    assert not blocked_applies(*_qk(16, 4, 128, 128, 11))
    assert not blocked_applies(*_qk(16, 4, 128, 128, 8, dtype=torch.bfloat16))
    seen: list[bool] = []

    def probe(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        seen.append(blocked_applies(q, k))
        return q.sum()

    q, k = _qk(16, 4, 128, 128, 8)
    vmap(probe)(q.expand(2, *q.shape), k.expand(2, *k.shape))
    assert seen == [False]


def test_default_mult_attention_takes_the_blocked_path_on_long_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default MulT heads are 8 wide (d = 32, 4 heads): its crossmodal attention over long sequences is blocked
    (without dropout), its memory transformer's 16-wide heads are not."""
    calls = _spy(monkeypatch)
    flash: list[str] = []
    sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: flash.append("sdpa") or sdpa(*a, **k))
    with torch.no_grad():
        MultiheadAttention(32, 4)(torch.randn(16, 128, 32), torch.randn(16, 128, 32))
        MultiheadAttention(64, 4)(torch.randn(16, 128, 64), torch.randn(16, 128, 64))
    assert calls == ["blocked_attention"] and flash == ["sdpa"]
