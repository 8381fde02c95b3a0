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

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`, whose fused CPU kernel is several
times faster than an explicit softmax; note that attention dropout > 0 makes PyTorch fall back to the slow explicit
path, so keep it at 0 on long sequences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed sinusoidal position embeddings ``[length, dim]`` (Vaswani et al., 2017, Sec. 3.5).

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


def bernoulli_keep_mask(x: Tensor, p: float) -> tuple[Tensor, float]:
    """A boolean keep-mask shaped like ``x`` with each entry dropped with probability ``p_eff``; returns
    ``(keep, p_eff)`` where ``p_eff = round(p * 2^15) / 2^15`` (within 2e-5 of ``p``).

    Each element uses 15 random bits cut from 64-bit random words (``random_()`` on int64 fills bits 0-62
    uniformly), so the generator runs once per 4 elements instead of once per element: the mask costs about a
    fifth of ``torch.rand_like`` / ``bernoulli_`` on CPU, where dropout on long ``[B, T, 4d]`` activations is a
    large share of a transformer step.
    """
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
    bits = words.view(torch.int16)[:n].view(x.shape) & 0x7FFF
    threshold = round(p * 32768)
    return bits >= threshold, threshold / 32768


class Dropout(nn.Dropout):
    """Inverted dropout with a cheap mask (:func:`bernoulli_keep_mask`); otherwise the same as
    :class:`torch.nn.Dropout` (the drop probability is rounded to a multiple of ``2^-15``, and the kept values are
    scaled by ``1 / (1 - p_eff)`` so the expectation is exactly preserved)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        keep, p_eff = bernoulli_keep_mask(x, self.p)
        if p_eff == 0.0:
            return x
        return torch.where(keep, x * (1.0 / (1.0 - p_eff)), torch.zeros((), dtype=x.dtype, device=x.device))


class SinusoidalPositionalEmbedding(nn.Module):
    """Module wrapper of :func:`sinusoidal_positions`: ``forward(x [B, T, D]) -> [1, T, D]`` on ``x``'s device."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return sinusoidal_positions(x.shape[1], self.dim, device=x.device, dtype=x.dtype).unsqueeze(0)


def safe_key_mask(key_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Make a ``[B, Tk]`` key mask (True = attend) safe for softmax.

    Returns ``(mask, has_key)``: rows with no valid key get their first key unmasked (so the softmax is defined)
    and ``has_key [B]`` says which rows really had one; multiply the attention output by it to zero the others.
    """
    has_key = key_mask.any(dim=1)
    if bool(has_key.all()):
        return key_mask, has_key
    mask = key_mask.clone()
    mask[:, 0] |= ~has_key
    return mask, has_key


class MultiheadAttention(nn.Module):
    """Multi-head attention with a key padding mask that never produces NaN.

    ``forward(query [B, Tq, D], key_value [B, Tk, D_kv], key_mask [B, Tk] | None)`` returns ``[B, Tq, D]`` (and the
    attention weights ``[B, H, Tq, Tk]`` when ``return_weights`` is True, computed with an explicit softmax).
    ``key_mask`` is True at real steps. Rows whose keys are all masked output zeros.
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
                return_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        b, tq, _ = query.shape
        q = self._split(self.q_proj(query))
        k, v = (self._split(t) for t in self.kv_proj(key_value).chunk(2, dim=-1))
        has_key: Tensor | None = None
        attn_mask: Tensor | None = None
        if key_mask is not None and not bool(key_mask.all()):
            safe, has_key = safe_key_mask(key_mask)
            attn_mask = safe[:, None, None, :]
        p = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if return_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            if has_key is not None:
                weights = weights * has_key.to(weights.dtype)[:, None, None, None]
            out = F.dropout(weights, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(b, tq, self.dim))
        if has_key is not None:
            out = out * has_key.to(out.dtype)[:, None, None]
        return out, weights


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
        h = self.ln_q(x)
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
                 positions: bool = True, scale_embedding: bool = True, self_attention: bool = False) -> None:
        super().__init__()
        self.dim, self.positions = dim, positions
        self.source_dim = source_dim or dim
        self.embed_scale = math.sqrt(dim) if scale_embedding else 1.0
        self.embed_drop = Dropout(embed_dropout)
        self.layers = nn.ModuleList(
            CrossmodalTransformerLayer(dim, heads, attn_dropout, relu_dropout, res_dropout, source_dim=source_dim,
                                       self_attention=self_attention)
            for _ in range(layers)
        )
        self.ln_out = nn.LayerNorm(dim)

    def _embed(self, x: Tensor) -> Tensor:
        x = self.embed_scale * x
        if self.positions:
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], device=x.device, dtype=x.dtype).unsqueeze(0)
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
