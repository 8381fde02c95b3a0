"""Per-modality sequence encoders: project ``[B, T, D_m]`` features to ``d`` channels and pool them over time.

:class:`SequenceEncoder` is the shared unimodal encoder of the baselines (unimodal, late fusion, TFN) and a
building block for later methods (CACR's decoupling encoders, EBMC's branches). It is deliberately light, so it
runs on CPU at T = 500:

1. projection to ``d``: a position-wise ``Linear`` or a 1-D convolution over time (no input LayerNorm: features
   are expected to be standardised by the data pipeline);
2. an optional temporal layer: a residual 1-D convolution (``x + Drop(GELU(Conv(x)))``) or one pre-LN
   self-attention transformer layer with sinusoidal positions;
3. masked pooling (mean by default).

Padding is zeroed after every step that could make it non-zero, so a sample's result does not depend on how much
padding follows it, and a missing modality (length 0) pools to zeros.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch
from accord.models.modules.attention import GELU, CrossmodalTransformerLayer, Dropout, shared_positions
from accord.models.modules.pooling import PoolMode, pool
from accord.models.params.encoders import EncoderParams, Projection, Temporal


class EncodedSequence(NamedTuple):
    """What :class:`SequenceEncoder` returns: ``seq [B, T, d]`` (zero at padding), its ``mask`` and ``pooled``."""

    seq: Tensor
    mask: Tensor
    pooled: Tensor


class TemporalConv1d(nn.Module):
    """A 1-D convolution over time on ``[B, T, C_in]`` (channels last), ``same`` padding, output zeroed at padding.

    Zero padding on both sides means a sample's valid outputs only see its own valid steps and zeros, so extra
    trailing padding never changes them. A kernel of 1, or any kernel over a single step (utterance-level data,
    T = 1: the other taps read only the zero padding), is a position-wise linear map by the centre tap; it runs as
    one ``F.linear`` on ``[B, T, C]`` (same values and gradients, no transposes, and several times cheaper than the
    convolution kernels at T = 1).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        if self.conv.kernel_size[0] == 1 or x.shape[1] == 1:
            return self.pointwise(x * m) * m
        if torch.compiler.is_compiling():
            return self.taps(x * m) * m
        return self.conv((x * m).transpose(1, 2)).transpose(1, 2) * m

    def pointwise(self, x: Tensor) -> Tensor:
        """The convolution where it is position-wise (a kernel of 1, or one step): ``F.linear`` by the centre tap,
        without masking (the caller masks). A kernel of 1 is taken as a view (its gradient is the weight's, no
        copy); the centre tap of a longer kernel is a select, whose backward writes into zeros of the whole kernel."""
        k = self.conv.kernel_size[0]
        w = self.conv.weight.squeeze(-1) if k == 1 else self.conv.weight[:, :, k // 2]
        return F.linear(x, w, self.conv.bias)

    def taps(self, x: Tensor) -> Tensor:
        """The same convolution as one ``F.linear`` per kernel tap over shifted steps, ``out[t] = b + Σ_j W_j ·
        x[t + j - k//2]`` (zero outside). Used while ``torch.compile`` traces: inductor's lowering of the
        convolution's backward fixes the sequence length (a new graph for every new length of dynamic padding),
        matrix products keep it symbolic. Equal to the convolution up to float rounding."""
        k, t = self.conv.kernel_size[0], x.shape[1]
        xp = F.pad(x, (0, 0, k // 2, k // 2))
        w = self.conv.weight
        out = F.linear(xp[:, :t], w[:, :, 0], self.conv.bias)
        for j in range(1, k):
            out = out + F.linear(xp[:, j:j + t], w[:, :, j])
        return out


class SequenceEncoder(nn.Module):
    """Project one modality to ``dim`` channels, optionally mix over time, and pool.

    Args:
        in_dim: input feature size ``D_m``.
        dim: output channels ``d``.
        projection: ``"linear"`` (position-wise) or ``"conv"`` (1-D conv of ``kernel_size`` over time).
        temporal: ``"none"``, ``"conv"`` (residual conv block) or ``"transformer"`` (one self-attention layer).
        kernel_size: odd kernel size of the convolutions.
        heads: attention heads of the transformer layer (must divide ``dim``).
        dropout: dropout after the projection and inside the temporal layer.
        pool: ``"mean"``, ``"max"`` or ``"last"`` (see :mod:`accord.models.modules.pooling`).

    ``forward(x [B, T, D_m], mask [B, T]) -> EncodedSequence(seq [B, T, d], mask, pooled [B, d])``.
    """

    def __init__(self, in_dim: int, dim: int, projection: Projection = "linear", temporal: Temporal = "conv",
                 kernel_size: int = 3, heads: int = 4, dropout: float = 0.1, pool: PoolMode = "mean") -> None:
        super().__init__()
        self.dim, self.temporal, self.pool_mode = dim, temporal, pool
        self.proj: nn.Module = (
            TemporalConv1d(in_dim, dim, kernel_size) if projection == "conv" else nn.Linear(in_dim, dim)
        )
        self.projection = projection
        self.drop = Dropout(dropout)
        self.act = GELU()
        self.mixer: nn.Module | None = None
        if temporal == "conv":
            self.mixer = TemporalConv1d(dim, dim, kernel_size)
        elif temporal == "transformer":
            self.mixer = CrossmodalTransformerLayer(dim, heads, attn_dropout=0.0, relu_dropout=dropout,
                                                    res_dropout=dropout, self_attention=True)
        elif temporal != "none":
            raise ValueError(f"unknown temporal layer {temporal!r}; expected 'none', 'conv' or 'transformer'")

    def forward(self, x: Tensor, mask: Tensor) -> EncodedSequence:
        m = mask.unsqueeze(-1).to(x.dtype)
        if x.shape[1] == 1 and self.temporal != "transformer":
            return self.one_step(x, mask, m)
        h = self.proj(x, mask) if self.projection == "conv" else self.proj(x * m) * m
        h = self.drop(h)
        if self.temporal == "conv":
            assert self.mixer is not None
            h = h + self.drop(self.act(self.mixer(h, mask)))
        elif self.temporal == "transformer":
            assert self.mixer is not None
            h = h + shared_positions(h.shape[1], h.shape[2], device=h.device, dtype=h.dtype).unsqueeze(0)
            h = self.mixer(h, mask) * m
        h = h * m
        return EncodedSequence(h, mask, pool(h, mask, self.pool_mode))

    def one_step(self, x: Tensor, mask: Tensor, m: Tensor) -> EncodedSequence:
        """:meth:`forward` on one step (utterance-level data, T = 1), in fewer operations: every layer is then
        position-wise, so only the result is masked (a valid row never reads a masked one, and a masked row's
        result, and its gradient, is the zero of that one mask), and pooling one step is that step (zero where it is
        masked, as every pooling gives there). The same values as the general path; a per-operation cost is most of
        a T = 1 step."""
        h = self.drop(self.proj.pointwise(x) if isinstance(self.proj, TemporalConv1d) else self.proj(x))
        if self.mixer is not None:
            assert isinstance(self.mixer, TemporalConv1d)
            h = h + self.drop(self.act(self.mixer.pointwise(h)))
        h = h * m
        return EncodedSequence(h, mask, h.squeeze(1))


def build_encoder(in_dim: int, p: EncoderParams, hidden: int | None = None) -> SequenceEncoder:
    """A :class:`SequenceEncoder` for ``in_dim`` inputs configured by ``p`` (width ``hidden`` or ``p.hidden``)."""
    width = hidden or p.hidden
    if p.temporal == "transformer" and width % p.heads:
        raise ConfigError(f"model.params.heads: {p.heads} does not divide the encoder width {width}")
    if p.kernel_size % 2 == 0:
        raise ConfigError(f"model.params.kernel_size: must be odd ('same' padding), got {p.kernel_size}")
    return SequenceEncoder(in_dim, width, projection=p.projection, temporal=p.temporal,
                           kernel_size=p.kernel_size, heads=p.heads, dropout=p.dropout, pool=p.pool)


def encode_pooled(encoders: nn.ModuleDict, batch: Batch) -> dict[str, Tensor]:
    """Modality -> pooled encoding ``[B, d]`` of ``batch`` by ``encoders[m]``, zero where the modality is missing."""
    feats: dict[str, Tensor] = {}
    for k, m in enumerate(MODALITIES):
        pooled = encoders[m](batch.features[m], batch.mask[m]).pooled
        feats[m] = pooled * batch.present[:, k].to(pooled.dtype).unsqueeze(1)
    return feats
