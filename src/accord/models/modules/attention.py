"""Attention building blocks: sinusoidal positions, masked multi-head attention and the crossmodal transformer.

The crossmodal transformer follows MulT (Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language
Sequences", ACL 2019, Sec. 3.2, Eq. 3-4): the query comes from a target modality ``beta``, keys/values from a
source modality ``alpha``; every layer is pre-LN,

    Z^[i]   = CM(LN(Z^[i-1]), LN(X_alpha)) + LN(Z^[i-1])        (the paper's Eq. 4; we use the plain residual
    Z^[i]   = f(LN(Z^[i]))  + Z^[i]                               ``Z + CM(...)`` as in MulT's released code)

with ``f`` a position-wise feed-forward network. A self-attention transformer is the special case where source =
target. Padding is handled with key padding masks everywhere, so sequences of different (unaligned) lengths can be
mixed; a sample whose source has no valid step at all (a missing modality) gets a zero attention output instead of
NaN (one key is unmasked to keep the softmax defined and the result is zeroed).

Which attention path runs (:meth:`MultiheadAttention.forward`):

- **fused** (no attention dropout: ``eval()`` or ``dropout = 0``):
  :func:`torch.nn.functional.scaled_dot_product_attention`, on CPU
  ``aten::_scaled_dot_product_flash_attention_for_cpu`` and its backward. No ``[B, H, Tq, Tk]`` tensor is made;
  the key padding mask goes in as ``[B, 1, 1, Tk]``.
- **blocked** (CPU, float32/64, heads at most :data:`BLOCKED_MAX_HEAD_WIDTH` wide, at least
  :data:`BLOCKED_MIN_SCORES` scores ``B * H * Tq * Tk``; with or without dropout, training or not):
  :func:`blocked_attention`, explicit products over blocks of (batch x head) slices whose scores stay in cache,
  recomputed in the backward as the flash kernels do, each product taken with the narrow head width as its short
  side (:class:`_BlockedAttention`). It runs before the paths below wherever it applies: at such widths it is
  faster than both flash paths and the explicit one (:data:`BLOCKED_MAX_HEAD_WIDTH`). Same keep mask as the
  explicit path. Not while ``torch.compile`` traces (the flash paths there).
- **fused with dropout** (training with ``dropout > 0`` on CPU, more than :data:`CPU_DROPOUT_EXPLICIT_MAX_SCORES`
  scores): torch 2.13's CPU flash kernel refuses
  ``dropout_p > 0`` (``F.scaled_dot_product_attention`` then runs ``_scaled_dot_product_attention_math``: explicit
  scores, softmax, a ``bernoulli_`` mask and their gradients, all ``[B, H, Tq, Tk]``, three to four times the fused
  cost on long sequences). :func:`attention_with_dropout` keeps the flash kernel and stays exact: one pass with the
  dropped entries masked gives the softmax over the kept keys and its logsumexp, a second pass the full logsumexp,
  and their ratio rescales the first (:class:`_DropoutAttention`). About twice the no-dropout cost; the one
  ``[B, H, Tq, Tk]`` tensor is the float mask the kernel reads. On other devices ``F.scaled_dot_product_attention``
  with ``dropout_p`` (CUDA's kernels drop out inside).
- **one key** (``Tk = 1``, utterance-level data): the softmax over one key is exactly 1, so the output is ``v``
  times the dropout mask; computed without matmuls or a flash call (each flash call costs about 0.1 ms at T = 1)
  and without the query and key projections, whose gradient on the full formula is exactly zero: the explicit
  path's values, value gradients and random draws. The query projection (and a pre-LN layer's query LayerNorm in
  cross-modal attention) then gets no gradient (``None``) instead of zeros, so an optimiser leaves it alone for
  that step (zero gradients would still let Adam's momentum and AdamW's weight decay move it); on data that is
  T = 1 throughout (MOSI-U) it never reaches the output either way.
- **explicit** (``q @ k^T``, softmax, dropout, ``@ v``): when the weights are wanted (``return_weights=True``), when
  asked (``explicit=True``), for attention with dropout on CPU of at most :data:`CPU_DROPOUT_EXPLICIT_MAX_SCORES`
  scores ``B * H * Tq * Tk`` that the blocked path does not take (there the two flash passes above cost more than
  the explicit products; same keep mask), and under :func:`torch.func.vmap` (seed-parallel training) for short sequences
  (``Tq * Tk <= VMAP_EXPLICIT_MAX_SCORES``): the flash ops have no batching rule, so torch loops them over the
  vmapped instances, while the matmuls batch; longer sequences take the fused paths under vmap too, looped, which
  is still faster than the explicit path there (:data:`VMAP_EXPLICIT_MAX_SCORES`). It is the only path that supports
  **double backward**: torch 2.13 has no derivative for the flash backward. CPSL's cross-attention, which CP's
  penalty differentiates twice, asks for it; MulT under CP does not need it (its features are taken after the
  attention, so the second-order graph stops at the head).

Dropout everywhere (:class:`Dropout`, the attention weights on every path) uses the same cheap random bits
(:func:`random_bits15`, four 15-bit values per 64-bit word) and the same probability ``p_eff = round(p * 2^15) /
2^15`` with inverted scaling ``1 / (1 - p_eff)``; the explicit and fused paths draw the same mask for the same
generator state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed sinusoidal position embeddings ``[length, dim]`` (Vaswani et al., 2017, Sec. 3.5), a new tensor.

    Layout as in fairseq/MulT: the first ``dim // 2`` channels are ``sin(pos * w_i)``, the next ``dim // 2`` are
    ``cos(pos * w_i)`` with ``w_i = 10000^(-i / (dim/2 - 1))``; an odd ``dim`` gets a trailing zero channel.
    Positions count from 0 at the first step, so padding appended at the end never shifts a real step's embedding.
    """
    half = dim // 2
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    if half == 0:
        return torch.zeros(length, dim, device=device, dtype=dtype)
    scale = math.log(10000.0) / max(half - 1, 1)
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -scale)
    ang = pos * freq.unsqueeze(0)
    emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(dtype)


def shared_positions(length: int, dim: int, device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """:func:`sinusoidal_positions` for a forward pass: one table per ``(length, dim, device, dtype)``, cached and
    SHARED between calls (a model asks for the same table in every layer of every step), so it must never be
    modified in place or kept as a buffer (take :func:`sinusoidal_positions` for that). While ``torch.compile``
    traces, the table is computed in the graph (the length may be symbolic there)."""
    if torch.compiler.is_compiling():
        return sinusoidal_positions(length, dim, device, dtype)
    return _cached_positions(length, dim, None if device is None else torch.device(device), dtype)


@functools.lru_cache(maxsize=64)
def _cached_positions(length: int, dim: int, device: torch.device | None, dtype: torch.dtype) -> Tensor:
    return sinusoidal_positions(length, dim, device, dtype)


def is_batched(t: Tensor) -> bool:
    """Whether ``t`` is a vmapped tensor (seed-parallel training runs the model under :func:`torch.func.vmap`):
    shortcuts that read a tensor's values in Python (``if mask.all()``) take their general path there."""
    return bool(torch._C._functorch.is_batchedtensor(t))


def values_unreadable(t: Tensor) -> bool:
    """Whether a shortcut may NOT read ``t``'s values in Python: under vmap (:func:`is_batched`) or while
    ``torch.compile`` traces the model (``train.compile``: reading a value would break the graph there). The general
    path gives the same values; eager runs keep the shortcut."""
    return is_batched(t) or torch.compiler.is_compiling()


@functools.lru_cache(maxsize=256)
def _cached_scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def scalar_operand(value: float, dtype: torch.dtype, device: torch.device) -> Tensor | float:
    """``value`` as the second operand of an elementwise op on a tensor of ``dtype``: a cached one-element tensor of
    that dtype (eager), or the number itself while ``torch.compile`` traces. With a Python number the op first wraps
    it in a tensor and converts it (three more small ops on CPU, about 5 µs); the values are the same either way."""
    if torch.compiler.is_compiling():
        return value
    return _cached_scalar(value, dtype, device)


def random_bits15(shape: Sequence[int], like: Tensor) -> Tensor:
    """An int16 tensor of ``shape`` on ``like``'s device, i.i.d. uniform in ``[0, 2^15)``.

    Four values are cut from each 64-bit word of one in-place ``random_()`` on int64 (it fills bits 0-62
    uniformly; ``& 0x7FFF`` keeps 15 bits of every 16), so the generator runs once per 4 values: about a fifth of
    the cost of ``torch.rand`` / ``bernoulli_`` on CPU. Under :func:`torch.func.vmap` with
    ``randomness="different"`` the words are drawn per vmapped instance when ``like`` is batched
    (``like.new_empty``); when it is not (an input shared by every instance), in-place randomness is refused there
    and an out-of-place ``torch.randint`` draws them instead, still per instance. While ``torch.compile`` traces
    (``train.compile``), ``torch.randint`` draws them too (the int64 -> int16 view breaks the graph, and a compiled
    graph draws from its own generator anyway).
    """
    if not torch.compiler.is_compiling():
        n = math.prod(shape)
        try:
            words = like.new_empty(((n + 3) // 4,), dtype=torch.int64).random_()
            low15 = scalar_operand(0x7FFF, torch.int16, like.device)
            return words.view(torch.int16)[:n].view(tuple(shape)).bitwise_and_(low15)
        except RuntimeError:  # vmap(randomness="different"): in-place randomness on an unbatched tensor
            pass
    return torch.randint(0, 32768, tuple(shape), dtype=torch.int16, device=like.device)


def drop_threshold(p: float) -> tuple[int, float]:
    """``(threshold, p_eff)`` for :func:`random_bits15`: a value is dropped when it is below ``threshold =
    round(p * 2^15)``, i.e. with probability ``p_eff = threshold / 2^15`` (within ``2^-16`` of ``p``)."""
    threshold = min(max(round(p * 32768), 0), 32768)
    return threshold, threshold / 32768


SMALL_DROPOUT_NUMEL = 4096
"""Dropout on at most this many elements runs as torch's ``F.dropout`` (one fused op forward, one backward): there
the per-op overhead of the random-bits path (about nine small ops) costs more than ``bernoulli_``'s slower draws.
Forward + backward, one thread, this CPU: [16, 1, 32] 49 µs vs 127 µs with random bits, [16, 1, 50] 61 vs 105,
[64, 1, 128] (8192 elements) even, [64, 1, 1000] 862 vs 324. Utterance-level data (T = 1) is mostly below it."""


def uses_torch_dropout(numel: int, like: Tensor) -> bool:
    """Whether dropout over ``numel`` elements of a tensor like ``like`` runs as torch's ``F.dropout``: at most
    :data:`SMALL_DROPOUT_NUMEL` elements unless ``like`` is vmapped (seed-parallel training: the random bits draw
    every seed's mask in one call there; with torch's dropout the MulT group's MOSI-U epoch took 4.0 s against
    3.8 s, ``benchmarks/seed_parallel.py``), and always while
    ``torch.compile`` traces (a compiled graph draws from its own generator anyway, and a size test would make it
    guard on the batch's size and be rebuilt when a batch crosses it)."""
    if torch.compiler.is_compiling():  # first: no guard on the size
        return True
    return numel <= SMALL_DROPOUT_NUMEL and not is_batched(like)


def dropout_scale_mask(shape: Sequence[int], p: float, like: Tensor) -> Tensor | None:
    """Inverted-dropout multiplier of ``shape`` in ``like``'s dtype: ``1 / (1 - p_eff)`` where kept, 0 where dropped
    (``p_eff`` of :func:`drop_threshold`, so ``E[mask] = 1`` exactly up to the dtype's rounding of the scale).
    None when ``p_eff == 0``. Multiplying by it is ONE pass over the activations forward and one backward (the
    mask is what autograd saves), where ``torch.where(keep, x * scale, 0)`` took two each way, and ``F.dropout``'s
    ``bernoulli_`` costs about four times these random bits on CPU. A mask of at most :data:`SMALL_DROPOUT_NUMEL`
    elements is ``F.dropout`` of ones (same values, fewer ops)."""
    threshold, p_eff = drop_threshold(p)
    if threshold == 0:
        return None
    if threshold >= 32768:
        return like.new_zeros(tuple(shape))
    if uses_torch_dropout(math.prod(shape), like):
        return F.dropout(torch.ones(tuple(shape), dtype=like.dtype, device=like.device), p_eff, training=True)
    return _keep01(shape, threshold, like).mul_(scalar_operand(1.0 / (1.0 - p_eff), like.dtype, like.device))


def _keep01(shape: Sequence[int], threshold: int, like: Tensor) -> Tensor:
    """The 0/1 keep mask of :func:`random_bits15` (kept where the bits are at least ``threshold``) in ``like``'s dtype,
    written by the comparison itself (:func:`draw_keep`)."""
    return draw_keep(shape, threshold, like, like.dtype)


def in_transform() -> bool:
    """Whether the code runs under a :mod:`torch.func` transform (vmap: seed-parallel training) or while
    ``torch.compile`` traces: in-place randomness and ``out=`` are refused or traced differently there."""
    return torch._C._functorch.maybe_current_level() is not None or torch.compiler.is_compiling()


KEEP_CHUNK_WORDS = 2**18
"""Random 64-bit words :func:`draw_keep` draws at a time on CPU (2 MiB, four mask values each)."""


def draw_keep(shape: Sequence[int], threshold: int, like: Tensor, dtype: torch.dtype) -> Tensor:
    """The keep mask of :func:`random_bits15` of ``shape`` on ``like``'s device, in ``dtype`` (bool, or 0/1 in a
    float dtype): kept (1) where the bits are at least ``threshold``. The values, and the generator's state after,
    are those of ``random_bits15(shape, like) >= threshold``, which is what runs under a transform
    (:func:`in_transform`: vmap draws per instance there) and off the CPU.

    On CPU the words are drawn :data:`KEEP_CHUNK_WORDS` at a time into one reused buffer and each chunk is compared
    into the mask while in cache. Drawing them all at once wrote a buffer of 2 bytes per mask value: above glibc's
    32 MiB mmap threshold that is a fresh mapping every step, whose every page the kernel zeroes on first touch. The
    stream is the same: CPU ``random_`` fills a tensor serially in element order (``tests/test_attention_blocked.py``).
    """
    limit = scalar_operand(threshold, torch.int16, like.device)
    if in_transform() or like.device.type != "cpu":
        return random_bits15(shape, like).ge(limit).to(dtype)
    out = torch.empty(tuple(shape), dtype=dtype, device=like.device)
    flat, n = out.view(-1), out.numel()
    low15 = scalar_operand(0x7FFF, torch.int16, like.device)
    words = like.new_empty(min(KEEP_CHUNK_WORDS, max(1, (n + 3) // 4)), dtype=torch.int64)  # (an empty mask: none)
    step = 4 * words.numel()
    for s in range(0, n, step):
        m = min(step, n - s)
        bits = words[:(m + 3) // 4].random_().view(torch.int16)[:m]
        torch.ge(bits.bitwise_and_(low15), limit, out=flat[s:s + m])
    return out


def keep_mask01(shape: Sequence[int], p: float, like: Tensor) -> tuple[Tensor | None, float]:
    """``(mask, scale)`` whose product is :func:`dropout_scale_mask` ``(shape, p, like)`` drawn from the same random
    stream: the 0/1 keep mask as bytes (``uint8``) and ``1 / (1 - p_eff)``, so a kernel can apply the scale to a
    smaller tensor than the mask. Where :func:`dropout_scale_mask` uses torch's dropout (small masks) or drops
    everything, its own mask (in ``like``'s dtype) and scale 1; ``(None, 1.0)`` when ``p_eff`` is 0.

    Bytes, not ``like``'s dtype: the comparison writes them in one pass (:func:`draw_keep`), where a float mask
    adds a conversion into a buffer four times the size, saved for the backward (for MMSA-sized MulT's
    [16, 10, 474, 474] scores, 144 MB against 36 MB). ``benchmarks/mfu.py``'s ``float_masks`` mode runs the
    float masks beside these (``benchmarks/results/mfu_masks.json``: MMSA-sized MulT 5696 -> 4816 ms per training
    step, two threads, on a machine where fresh pages are dear)."""
    threshold, p_eff = drop_threshold(p)
    if threshold == 0:
        return None, 1.0
    if threshold >= 32768 or uses_torch_dropout(math.prod(shape), like):
        return dropout_scale_mask(shape, p, like), 1.0
    return draw_keep(shape, threshold, like, torch.bool).view(torch.uint8), 1.0 / (1.0 - p_eff)


class Dropout(nn.Dropout):
    """Inverted dropout: ``x * dropout_scale_mask(...)`` (:func:`dropout_scale_mask`); otherwise the same as
    :class:`torch.nn.Dropout`. The drop probability is ``p_eff = round(p * 2^15) / 2^15`` (within ``2^-16`` of
    ``p``) and kept values are scaled by ``1 / (1 - p_eff)``, so the expectation is preserved. A tensor of at most
    :data:`SMALL_DROPOUT_NUMEL` elements goes through torch's ``F.dropout`` with ``p_eff`` instead (fewer ops). Works
    under :func:`torch.func.vmap` (``randomness="different"`` draws each instance's own mask, see
    :func:`random_bits15`)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return dropout(x, self.p)


def dropout(x: Tensor, p: float) -> Tensor:
    """What :class:`Dropout` does in training: ``x`` times :func:`dropout_scale_mask`, or torch's ``F.dropout`` with
    ``p_eff`` on a tensor of at most :data:`SMALL_DROPOUT_NUMEL` elements (:func:`uses_torch_dropout`); ``x`` itself
    when ``p_eff`` is 0."""
    if uses_torch_dropout(x.numel(), x):
        threshold, p_eff = drop_threshold(p)
        return x if threshold == 0 else F.dropout(x, p_eff, training=True)
    mask = dropout_scale_mask(x.shape, p, x)
    return x if mask is None else x * mask


GELU_ATEN_MAX_NUMEL = 16384
"""Exact GELU on a CPU tensor of at most this many elements runs ATen's own kernel, not oneDNN's (:class:`GELU`).
torch sends every contiguous fp32 CPU tensor to oneDNN, whose per-call cost dominates small ones. Forward + backward,
one thread, oneDNN vs ATen (``benchmarks/results/step_costs.json``, ``python benchmarks/step_costs.py --parts
gelu``): [16, 1, 32] 24.5 vs 5.2 µs, [64, 1, 128] 33.3 vs 18.1, [32, 4, 128] 54.4 vs 34.3; [64, 4, 128] (32,768
elements) 67.1 vs 67.0; [32, 50, 128] 324 vs 458, where oneDNN keeps them."""


class GELU(nn.GELU):
    """:class:`torch.nn.GELU` that runs small CPU tensors (at most :data:`GELU_ATEN_MAX_NUMEL` elements) through
    ATen's kernel instead of oneDNN's, by computing on a transposed view (torch sends only contiguous tensors to
    oneDNN; ATen's elementwise kernel walks the view in memory order, and the result is transposed back to the input's
    layout). The same function: the two kernels' ``erf`` round differently, by at most about 1e-6 (tested). On
    utterance-level data (T = 1) the activations are ``[B, 1, d]``: see ``benchmarks/results/step_costs.json`` for the
    training steps of LMF and Self-MM on MOSI-U with either kernel. Larger tensors, CUDA, the tanh approximation and
    ``torch.compile`` (which generates its own kernel) use ``F.gelu`` as it is."""

    def forward(self, x: Tensor) -> Tensor:
        if (self.approximate == "none" and x.dim() >= 2 and x.shape[0] > 1 and x.shape[-1] > 1
                and x.numel() <= GELU_ATEN_MAX_NUMEL and x.device.type == "cpu"
                and not torch.compiler.is_compiling()):
            return F.gelu(x.transpose(0, -1)).transpose(0, -1)
        return F.gelu(x, approximate=self.approximate)


class SinusoidalPositionalEmbedding(nn.Module):
    """Module wrapper of :func:`sinusoidal_positions`: ``forward(x [B, T, D]) -> [1, T, D]`` on ``x``'s device."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return shared_positions(x.shape[1], self.dim, device=x.device, dtype=x.dtype).unsqueeze(0)


def safe_key_mask(key_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Make a ``[B, Tk]`` key mask (True = attend) safe for softmax.

    Returns ``(mask, has_key)``: rows with no valid key get their first key unmasked (so the softmax is defined)
    and ``has_key [B]`` says which rows really had one; multiply the attention output by it to zero the others.
    """
    has_key = key_mask.any(dim=1)
    if not values_unreadable(has_key) and bool(has_key.all()):
        return key_mask, has_key
    mask = key_mask.clone()
    mask[:, 0] |= ~has_key
    return mask, has_key


VMAP_EXPLICIT_MAX_SCORES = 128 * 128
"""Under vmap, attention whose ``Tq * Tk`` is at most this runs on the explicit path, longer on the fused kernels
(looped over the vmapped instances by torch). Measured on MulT, 3 seeds vmapped, one thread: default MulT (at most
125 x 125 per head) 2.4 s/step explicit vs 2.6 s fused; full resolution (50 to 500 steps) 27.6 s vs 11.6 s."""
CPU_DROPOUT_EXPLICIT_MAX_SCORES = 2**23
"""Attention WITH dropout on CPU (training) runs on the explicit path when it has at most this many scores
``B * H * Tq * Tk`` (8.4 M; the explicit path holds two or three tensors of that size for the backward, 32 MB each
in fp32, where the fused dropout path holds one) and on :func:`attention_with_dropout` above it. The two-pass flash
kernel costs more than the explicit matrix products there: forward + backward, drop 0.1, a key padding mask, one
thread, ms fused vs explicit (``benchmarks/results/step_costs.json``, ``python benchmarks/step_costs.py --parts
attention``): [16, 2, 6, 6] x 64 0.63 vs 0.33; [16, 10, 50, 50] x 5 10.6 vs 5.1; [32, 6, 50, 500] x 5 93 vs 52;
[16, 10, 200, 200] x 5 (6.4 M scores) 122 vs 74; [16, 2, 400, 400] x 64 136 vs 81; [16, 10, 375, 375] x 5 (22.5 M)
436 vs 485. Between them the crossover moves from run to run: [16, 10, 250, 250] x 5 (10 M) was 191 vs 124 in
that file and 202 vs 241 in an earlier ad hoc run, so the cap stays below it. The two paths draw the same keep mask
from the same random stream (:func:`dropout_scale_mask`), so the choice changes only the float rounding. Without
dropout the fused kernel was as fast or faster at every size measured (ad hoc), and is always used."""
_FLASH_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
"""dtypes of the CPU flash kernel (:func:`attention_with_dropout` needs it)."""


def _neg_big(dtype: torch.dtype) -> float:
    """A finite "minus infinity" for additive masks: exp() of it (plus any score) is exactly 0, and a row whose
    every entry carries it still has a finite logsumexp (an all ``-inf`` row would give NaN)."""
    return -0.5 * torch.finfo(dtype).max


class _DropoutAttention(torch.autograd.Function):
    """Attention with post-softmax dropout, exact, on the fused CPU flash kernel (two passes, no score tensors).

    Wanted: ``O_i = sum_j D_ij softmax_j(s_i + b_i)_j v_j / (1 - p)`` (``D`` the keep mask, ``b`` the key padding
    bias), what ``F.dropout(softmax(.)) @ v`` computes. The flash kernel takes one additive mask, which enters the
    normaliser and the numerator alike; so it runs twice: pass A with ``b`` plus a big negative on dropped entries
    gives ``(O^A, lse^A)`` (the softmax over the kept keys), pass B with ``b`` alone gives ``lse^B`` (the full
    normaliser), and ``O = O^A * exp(lse^A - lse^B) / (1 - p)``. A row with every key dropped gets ``O = 0``
    (its ``lse^A`` is finite and tiny, see :func:`_neg_big`), as the explicit formula gives.

    Backward, with ``G_A = G * exp(lse^A - lse^B) / (1 - p)``: the score gradient is
    ``P^A (G_A v^T) - (G . O) P^B``, which is pass A's flash backward with ``out = 0`` (no ``Delta`` term) plus
    pass B's with ``grad_out = e_0``, ``out = (G . O) e_0`` and ``v = 0`` (only its ``Delta`` term). Cost: about
    twice the no-dropout attention, against three to four times for the explicit path on long sequences.
    Once differentiable (the flash backward has no derivative in torch 2.13): double backward needs the explicit
    path. Works under :func:`torch.func.vmap` (generated rule; torch loops the flash kernels over the instances).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(q: Tensor, k: Tensor, v: Tensor, drop_bias: Tensor, pad_bias: Tensor | None,
                inv_keep: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        o_a, lse_a = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=drop_bias)
        _, lse_b = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=pad_bias)
        ratio = torch.exp(lse_a - lse_b).mul_(inv_keep).to(o_a.dtype)
        return o_a * ratio.unsqueeze(-1), o_a, lse_a, lse_b, ratio

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        q, k, v, drop_bias, pad_bias, _ = inputs
        out, o_a, lse_a, lse_b, ratio = output
        ctx.save_for_backward(q, k, v, drop_bias, pad_bias, out, lse_a, lse_b, ratio)
        ctx.mark_non_differentiable(o_a, lse_a, lse_b, ratio)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        q, k, v, drop_bias, pad_bias, out, lse_a, lse_b, ratio = ctx.saved_tensors
        bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        grad = grad.contiguous()
        zeros = torch.zeros_like(grad)
        dq, dk, dv = bwd(grad * ratio.unsqueeze(-1), q, k, v, zeros, lse_a, 0.0, False, attn_mask=drop_bias)
        e0 = torch.zeros_like(grad)
        e0[..., 0] = 1.0
        out_b = torch.zeros_like(grad)
        out_b[..., 0] = (grad * out).sum(dim=-1)
        dq_b, dk_b, _ = bwd(e0, q, k, torch.zeros_like(v), out_b, lse_b, 0.0, False,
                            attn_mask=pad_bias)
        return dq + dq_b, dk + dk_b, dv, None, None, None


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, p: float) -> Tensor:
    """``softmax(q k^T / sqrt(d) + mask) @ v`` with inverted attention dropout ``p`` on the weights, on the fused
    kernel (:class:`_DropoutAttention`). ``q [B, H, Tq, d]``, ``k, v [B, H, Tk, d]``, ``attn_mask`` boolean
    (True = attend) broadcastable to ``[B, H, Tq, Tk]`` with at least one True per row, or None. The keep mask is
    drawn with :func:`random_bits15` (``p_eff`` of :func:`drop_threshold`); the only ``[B, H, Tq, Tk]`` tensor is
    the additive float mask the kernel reads (and autograd keeps)."""
    threshold, p_eff = drop_threshold(p)
    if threshold == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    if threshold >= 32768:
        return torch.zeros_like(q)
    b, h, tq, _ = q.shape
    neg = _neg_big(q.dtype)
    pad_bias = None if attn_mask is None else torch.where(attn_mask, 0.0, float("-inf")).to(q.dtype)
    # 0 where kept, `neg` where dropped, plus the padding's -inf (a little faster than one torch.where)
    shape = (b, h, tq, k.shape[-2])
    # the explicit path's draws (dropout_scale_mask): F.dropout's on a small mask, random bits on a larger one
    scale = dropout_scale_mask(shape, p, q) if uses_torch_dropout(math.prod(shape), q) else None
    dropped = (random_bits15(shape, q).lt(scalar_operand(threshold, torch.int16, q.device)) if scale is None
               else scale.eq(0))
    drop_bias = dropped.to(q.dtype).mul_(neg)
    if pad_bias is not None:
        drop_bias = drop_bias.add_(pad_bias)
    return _DropoutAttention.apply(q, k, v, drop_bias, pad_bias, 1.0 / (1.0 - p_eff))[0]


BLOCKED_MAX_HEAD_WIDTH = 10
"""On CPU, attention whose heads are at most this wide (and that has at least :data:`BLOCKED_MIN_SCORES` scores)
runs on :func:`blocked_attention`, with or without dropout, in training and inference: at such widths the flash
kernels' blocks spend their time on products with a 5- to 10-wide side, which the blocked path takes with the
narrow side first. Forward + backward, a key padding mask, one thread, ms, blocked vs the path it replaces
(``benchmarks/results/step_costs.json`` ``blocked``, ``python benchmarks/step_costs.py --parts blocked``):
MMSA-sized MulT's [16, 10, 375, 500] x 5 with dropout 0.2 199 vs 394 (two-pass flash), 193 vs 593 with scores
spread as a trained model's; [16, 10, 500, 375] x 5 without dropout 100 vs 153 (flash); [16, 10, 500, 500] x 10
with dropout 0.3 275 vs 572; default MulT's [32, 4, 375, 500] x 8 without dropout 84 vs 109. At width 16 the flash
kernel is ahead ([16, 4, 200, 200] x 16 without dropout 12.7 vs 9.3)."""
BLOCKED_MIN_SCORES = 2**20
"""Below this many scores ``B * H * Tq * Tk`` the other paths are kept. There the blocked path loses with dropout
([32, 8, 20, 20] x 8: 1.11 vs 0.86 ms explicit) and wins without (0.96 vs 1.33 flash; ``step_costs.json``); the
gain is small, and the threshold leaves short sequences (ConflictBench, the demo, the committed tables made on
them) on the paths, and so the rounding, that made them."""
BLOCK_SCORES = 2**20
"""Scores per block of :class:`_BlockedAttention` and per thread (4 MB in fp32 for each of torch's intra-op threads,
which share a block's elementwise ops: each thread's part of a block stays in this CPU's cache through the
softmax, the dropout and both products). The block size changes no value (each slice is computed on its own)."""


class _BlockedAttention(torch.autograd.Function):
    """``O = (softmax(q k^T / sqrt(d) + b) * M * c) v`` (``M`` a dropout mask with scale ``c``: 0/1 and ``1 / (1 -
    p)``, or the inverted-dropout multiplier and 1; or none) with explicit products over blocks of (batch x head)
    slices, recomputing the scores in the backward (as the flash kernels do) instead of saving them; ``q [N, Tq,
    d]``, ``k, v [N, Tk, d]``, ``b [N, 1, Tk]`` (0 or ``-inf``, every row with a finite entry) and ``key_keep`` (its
    0/1 form) or None, ``M [N, Tq, Tk]`` (float, or uint8 0/1) or None.

    Forward per block: ``S = q k^T / sqrt(d) + b``, ``E = exp(S - max)``, ``z`` its row sums (``lse = max + log z``
    kept per row), ``O^T = v^T (E * M)^T`` times ``c / z`` per row (the normalisation on the ``[d, Tq]`` product,
    not the ``[Tq, Tk]`` block). Backward with ``G = dL/dO`` and ``delta_i = G_i . O_i`` (``= sum_j P_ij dP_ij``
    for ``dP = (c G v^T) * M``): ``P = exp(S - lse)``, ``dS = P * (dP - delta)``, ``dq^T = k^T dS^T / sqrt(d)``,
    ``dk^T = q^T dS / sqrt(d)``, ``dv^T = (c G)^T (P * M)``. Every product is taken with the head width as its FIRST
    (short) dimension (:data:`BLOCKED_MAX_HEAD_WIDTH`), so outputs and gradients come back as transposed views.
    Once differentiable: double backward needs the explicit path.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, key_keep: Tensor | None,
                mask: Tensor | None, mask_scale: float) -> Tensor:
        n, tq, d = q.shape
        step = max(1, BLOCK_SCORES * torch.get_num_threads() // (tq * k.shape[1]))
        alpha, floor = 1.0 / math.sqrt(d), _exp_floor(q.dtype)
        out_t = q.new_empty(n, d, tq)
        lse = q.new_empty(n, tq, 1)
        k_t, v_t = k.transpose(1, 2), v.transpose(1, 2)
        for s in range(0, n, step):
            e = min(n, s + step)
            scores = _block_scores(q[s:e], k_t[s:e], bias, s, e, alpha)
            top = scores.amax(dim=-1, keepdim=True)
            p = _block_exp(scores.sub_(top), floor, key_keep, s, e)
            z = p.sum(dim=-1, keepdim=True)
            torch.add(top, z.log(), out=lse[s:e])
            if mask is not None:
                p.mul_(mask[s:e])
            torch.bmm(v_t[s:e], p.transpose(1, 2), out=out_t[s:e])
            out_t[s:e].mul_(z.reciprocal_().mul_(mask_scale).transpose(1, 2))
        out = out_t.transpose(1, 2)
        ctx.save_for_backward(q, k, v, bias, key_keep, mask, out, lse)
        ctx.step, ctx.floor, ctx.mask_scale = step, floor, mask_scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, bias, key_keep, mask, out, lse = ctx.saved_tensors
        n, tq, d = q.shape
        alpha = 1.0 / math.sqrt(d)
        dq_t, dk_t, dv_t = q.new_empty(n, d, tq), k.new_empty(n, d, k.shape[1]), v.new_empty(n, d, v.shape[1])
        delta = (grad * out).sum(dim=-1, keepdim=True)
        scaled = grad if ctx.mask_scale == 1.0 else grad * ctx.mask_scale
        k_t, v_t, q_t, scaled_t = k.transpose(1, 2), v.transpose(1, 2), q.transpose(1, 2), scaled.transpose(1, 2)
        for s in range(0, n, ctx.step):
            e = min(n, s + ctx.step)
            p = _block_exp(_block_scores(q[s:e], k_t[s:e], bias, s, e, alpha).sub_(lse[s:e]), ctx.floor, key_keep,
                           s, e)
            d_s = torch.bmm(scaled[s:e], v_t[s:e])
            if mask is not None:
                d_s.mul_(mask[s:e])
            d_s.sub_(delta[s:e]).mul_(p)
            torch.bmm(k_t[s:e], d_s.transpose(1, 2), out=dq_t[s:e])
            torch.bmm(q_t[s:e], d_s, out=dk_t[s:e])
            if mask is not None:
                p.mul_(mask[s:e])
            torch.bmm(scaled_t[s:e], p, out=dv_t[s:e])
        return (dq_t.transpose(1, 2).mul_(alpha), dk_t.transpose(1, 2).mul_(alpha), dv_t.transpose(1, 2), None, None,
                None, None)


def _block_scores(q: Tensor, k_t: Tensor, bias: Tensor | None, s: int, e: int, alpha: float) -> Tensor:
    """The scores ``q k^T * alpha (+ bias)`` of slices ``s:e`` (``q``, ``k_t`` already cut to them)."""
    if bias is None:
        return torch.bmm(q, k_t).mul_(alpha)
    return torch.baddbmm(bias[s:e], q, k_t, alpha=alpha)


def _exp_floor(dtype: torch.dtype) -> float:
    """The least exponent :func:`_block_exp` passes to ``exp``: 1 above the log of the dtype's smallest normal
    number (-86.3 in float32)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def _block_exp(shifted: Tensor, floor: float, key_keep: Tensor | None, s: int, e: int) -> Tensor:
    """``exp`` of a block's shifted scores (every entry <= 0), in place, with entries below ``floor`` raised to it
    and masked keys (``key_keep`` 0) set to exactly 0. On this CPU ``exp`` of a vector with any input below about
    -87 (float32) takes a slow path, and a masked key's ``-inf`` is such an input: with scores spread as a trained
    model's, [16, 10, 375, 500] x 5 with dropout took 707 ms without the floor against 193 with it
    (``step_costs.json`` ``blocked``, ``train_blocked_no_exp_floor_ms``). A weight so raised is ``exp(floor)``
    (1.6e-38 in float32) instead of a smaller one, relative to a row sum of at least 1: below the dtype's rounding."""
    p = shifted.clamp_(min=floor).exp_()
    return p if key_keep is None else p.mul_(key_keep[s:e])


def blocked_applies(q: Tensor, k: Tensor) -> bool:
    """Whether :class:`MultiheadAttention` runs ``q [B, H, Tq, d]`` against ``k [B, H, Tk, d]`` on
    :func:`blocked_attention`: on CPU, in float32/64, not vmapped nor traced by ``torch.compile``, heads at most
    :data:`BLOCKED_MAX_HEAD_WIDTH` wide, at least :data:`BLOCKED_MIN_SCORES` scores."""
    return (q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64) and not values_unreadable(q)
            and q.shape[-1] <= BLOCKED_MAX_HEAD_WIDTH
            and score_count(q, k) >= BLOCKED_MIN_SCORES)


def score_count(q: Tensor, k: Tensor) -> int:
    """``B * H * Tq * Tk``: the scores of ``q [..., Tq, d]`` against ``k [..., Tk, d]``."""
    return q.numel() // q.shape[-1] * k.shape[-2]


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, p: float) -> Tensor:
    """``dropout(softmax(q k^T / sqrt(d) + mask)) @ v`` on :class:`_BlockedAttention`: ``q [B, H, Tq, d]``, ``k, v
    [B, H, Tk, d]``, ``attn_mask`` a boolean key mask ``[B, 1, 1, Tk]`` (True = attend, at least one True per row) or
    None. The keep mask is :func:`dropout_scale_mask`'s (as :func:`keep_mask01`: 0/1, its scale applied per row),
    drawn exactly as the explicit path draws it, so both paths give the same function of the same random stream (up
    to float rounding). No ``[B, H, Tq, Tk]`` tensor is saved beyond that mask."""
    b, h, tq, d = q.shape
    tk = k.shape[-2]
    bias = key_keep = None
    if attn_mask is not None:
        if attn_mask.shape != (b, 1, 1, tk):
            raise ValueError(f"blocked_attention: key mask of shape {tuple(attn_mask.shape)}, expected "
                             f"{(b, 1, 1, tk)}")
        key_keep = attn_mask.to(q.dtype).expand(b, h, 1, tk).reshape(b * h, 1, tk)
        bias = torch.where(attn_mask, 0.0, float("-inf")).to(q.dtype).expand(b, h, 1, tk).reshape(b * h, 1, tk)
    mask, mask_scale = keep_mask01((b, h, tq, tk), p, q) if p > 0.0 else (None, 1.0)
    out = _BlockedAttention.apply(q.reshape(b * h, tq, d), k.reshape(b * h, tk, d), v.reshape(b * h, tk, d), bias,
                                  key_keep, None if mask is None else mask.view(b * h, tq, tk), mask_scale)
    return out.view(b, h, tq, d)


def one_key_attention(v: Tensor, tq: int, p: float) -> Tensor:
    """Attention over ONE key (utterance-level data, T = 1) for ``tq`` queries: the softmax over one key is exactly
    1, so the output is ``v [B, H, 1, d]`` times the dropout mask ``[B, H, tq, 1]`` (the mask the explicit path draws
    for its weights, with the same random draws), ``[B, H, tq, d]``. Neither the queries nor the keys are read:
    their gradient on the full formula is exactly zero."""
    b, h = v.shape[0], v.shape[1]
    drop = dropout_scale_mask((b, h, tq, 1), p, v) if p > 0.0 else None
    return v.expand(b, h, tq, v.shape[-1]) if drop is None else drop * v


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, has_key: Tensor | None,
                       p: float) -> tuple[Tensor, Tensor]:
    """``dropout(softmax(q k^T / sqrt(d) + mask)) @ v`` with the scores made explicitly; returns the output and the
    weights before dropout (zero for a sample without any key, ``has_key`` False). Twice differentiable."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if attn_mask is not None:
        scores = scores + torch.where(attn_mask, 0.0, float("-inf")).to(scores.dtype)
    weights = scores.softmax(dim=-1)
    if has_key is not None:
        weights = weights * has_key.to(weights.dtype)[:, None, None, None]
    drop = dropout_scale_mask(weights.shape, p, weights) if p > 0.0 else None
    return (weights if drop is None else weights * drop) @ v, weights


class MultiheadAttention(nn.Module):
    """Multi-head attention with a key padding mask that never produces NaN.

    ``forward(query [B, Tq, D], key_value [B, Tk, D_kv], key_mask [B, Tk] | None)`` returns ``[B, Tq, D]`` (and the
    attention weights ``[B, H, Tq, Tk]`` when ``return_weights`` is True, computed with an explicit softmax).
    ``key_mask`` is True at real steps. Rows whose keys are all masked output zeros. Which kernel runs is in the
    module docstring; ``explicit=True`` (or ``return_weights``) forces the explicit softmax, which is the path that
    supports double backward.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, kv_dim: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(kv_dim or dim, 2 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor | None = None,
                return_weights: bool = False, explicit: bool = False) -> tuple[Tensor, Tensor | None]:
        tq = query.shape[1]
        has_key: Tensor | None = None
        attn_mask: Tensor | None = None
        if key_mask is not None and (values_unreadable(key_mask) or not bool(key_mask.all())):
            safe, has_key = safe_key_mask(key_mask)
            attn_mask = safe[:, None, None, :]
        p = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if key_value.shape[1] == 1 and not (return_weights or explicit):
            # one key: no query projection (see one_key_attention); the key/value projection stays one product, so
            # values (and their rounding) are the full formula's
            v = self._split(self.kv_proj(key_value)[..., self.dim:])
            return self._output(one_key_attention(v, tq, p), has_key), None
        q = self._split(self.q_proj(query))
        k, v = (self._split(t) for t in self.kv_proj(key_value).chunk(2, dim=-1))
        # under vmap (seed-parallel training) the flash ops have no batching rule (torch loops them over the
        # seeds) while the explicit matmuls batch: explicit for short sequences, fused (looped) for long ones
        cpu_dropout = p > 0.0 and q.device.type == "cpu"
        if return_weights or explicit or (is_batched(q) and tq * k.shape[-2] <= VMAP_EXPLICIT_MAX_SCORES):
            out, weights = explicit_attention(q, k, v, attn_mask, has_key, p)
        elif blocked_applies(q, k):
            out = blocked_attention(q, k, v, attn_mask, p)
        elif cpu_dropout and score_count(q, k) <= CPU_DROPOUT_EXPLICIT_MAX_SCORES:
            out = explicit_attention(q, k, v, attn_mask, has_key, p)[0]  # B * H * Tq * Tk: cheaper explicit
        elif cpu_dropout and q.dtype in _FLASH_DTYPES:
            out = attention_with_dropout(q, k, v, attn_mask, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self._output(out, has_key), weights

    def _output(self, out: Tensor, has_key: Tensor | None) -> Tensor:
        """The heads' ``[B, H, Tq, d]`` merged and projected, zero for a sample without any key."""
        b, _, tq, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(b, tq, self.dim))
        return out if has_key is None else out * has_key.to(out.dtype)[:, None, None]


class FeedForward(nn.Sequential):
    """Position-wise ``Linear(d, mult*d) -> ReLU -> Dropout -> Linear(mult*d, d)``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, mult * dim), nn.ReLU(), Dropout(dropout), nn.Linear(mult * dim, dim))


class CrossmodalTransformerLayer(nn.Module):
    """One pre-LN transformer layer whose query is ``x`` and whose keys/values are ``source`` (or ``x`` itself).

    ``x = x + Drop(Attn(LN_q(x), LN_kv(source), source_mask)); x = x + Drop(FFN(LN_f(x)))``. MulT shares one
    LayerNorm between query and source; we give the source its own (it is a different modality, with its own
    statistics). With ``source=None`` this is a standard pre-LN self-attention layer masked by ``x_mask``; build
    such a layer with ``self_attention=True`` (it then has no source LayerNorm and rejects a source).
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, ffn_mult: int = 4, source_dim: int | None = None,
                 self_attention: bool = False) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(dim)
        # a self-attention layer has no separate source, hence no source LayerNorm (no unused parameters)
        self.ln_kv = None if self_attention else nn.LayerNorm(source_dim or dim)
        self.attn = MultiheadAttention(dim, heads, dropout=attn_dropout, kv_dim=source_dim)
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_mult, relu_dropout)
        self.drop = Dropout(res_dropout)

    def forward(self, x: Tensor, x_mask: Tensor | None = None, source: Tensor | None = None,
                source_mask: Tensor | None = None, query_index: Tensor | None = None) -> Tensor:
        """``x [B, Tq, D]`` -> ``[B, Tq, D]``; with ``query_index [B]`` only the output at step
        ``query_index[b]`` of each sample is computed (``[B, 1, D]``; exactly that row of the full output, since
        a row depends only on its own query, and much cheaper in self-attention over a long sequence)."""
        # a source of one step: the attention's one-key path reads only the query's length, not its values (so the
        # query LayerNorm, whose output would not reach the result, is not computed)
        h = x if source is not None and source.shape[1] == 1 else self.ln_q(x)
        if source is None:
            kv, kv_mask = h, x_mask
        else:
            if self.ln_kv is None:
                raise ValueError("this layer was built with self_attention=True; it takes no source")
            kv, kv_mask = self.ln_kv(source), source_mask
        if query_index is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            x, h = x[rows, query_index].unsqueeze(1), h[rows, query_index].unsqueeze(1)
        x = x + self.drop(self.attn(h, kv, kv_mask)[0])
        return x + self.drop(self.ffn(self.ln_ffn(x)))


class CrossmodalTransformer(nn.Module):
    """A stack of :class:`CrossmodalTransformerLayer` (MulT's ``TransformerEncoder``), target ``x`` <- ``source``.

    Inputs are scaled by ``sqrt(dim)``, given sinusoidal positions and embedding dropout (both for the target and
    the source, as in MulT), passed through ``layers`` layers and a final LayerNorm. Padded target steps are zero
    in the output. Built with ``self_attention=True`` and called without ``source`` it is a self-attention
    transformer (MulT's memory transformer).

    ``forward(x [B, Tq, D], x_mask [B, Tq], source [B, Tk, D_s] | None, source_mask [B, Tk] | None)``
    returns ``[B, Tq, D]``.
    """

    def __init__(self, dim: int, heads: int, layers: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0, embed_dropout: float = 0.0, source_dim: int | None = None,
                 positions: bool = True, scale_embedding: bool = True, self_attention: bool = False,
                 ffn_mult: int = 4) -> None:
        super().__init__()
        self.dim, self.positions = dim, positions
        self.source_dim = source_dim or dim
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.embed_drop = Dropout(embed_dropout)
        self.layers = nn.ModuleList(
            CrossmodalTransformerLayer(dim, heads, attn_dropout, relu_dropout, res_dropout, ffn_mult=ffn_mult,
                                       source_dim=source_dim, self_attention=self_attention)
            for _ in range(layers)
        )
        self.ln_out = nn.LayerNorm(dim)

    def _embed(self, x: Tensor) -> Tensor:
        x = self.embed_scale * x
        if self.positions:
            x = x + shared_positions(x.shape[1], x.shape[2], device=x.device, dtype=x.dtype).unsqueeze(0)
        return self.embed_drop(x)

    def forward(self, x: Tensor, x_mask: Tensor, source: Tensor | None = None,
                source_mask: Tensor | None = None) -> Tensor:
        h = self._embed(x)
        src = None if source is None else self._embed(source)
        for layer in self.layers:
            h = layer(h, x_mask, src, source_mask)
        return self.ln_out(h) * x_mask.unsqueeze(-1).to(h.dtype)

    def forward_last(self, x: Tensor, x_mask: Tensor, source: Tensor | None = None,
                     source_mask: Tensor | None = None) -> Tensor:
        """The output at each sample's last valid step, ``[B, D]`` (zeros where ``x_mask`` is all False).

        Equal to ``last_valid(self(x, x_mask, source, source_mask), x_mask)`` but the final layer is evaluated
        for that one query only, which saves most of a layer on long sequences.
        """
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        idx = torch.where(x_mask, steps, torch.zeros_like(steps)).amax(dim=1)
        h = self._embed(x)
        if len(self.layers) == 0:
            h = h[torch.arange(x.shape[0], device=x.device), idx]
            return self.ln_out(h) * x_mask.any(dim=1, keepdim=True).to(h.dtype)
        src = None if source is None else self._embed(source)
        for layer in self.layers[:-1]:
            h = layer(h, x_mask, src, source_mask)
        h = self.layers[-1](h, x_mask, src, source_mask, query_index=idx).squeeze(1)
        return self.ln_out(h) * x_mask.any(dim=1, keepdim=True).to(h.dtype)
