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

from collections.abc import Sequence
from typing import NamedTuple, cast

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
        without masking (the caller masks)."""
        w, b = self.centre_tap()
        return F.linear(x, w, b)

    def centre_tap(self) -> tuple[Tensor, Tensor | None]:
        """``(W [out, in], b)``: the kernel's centre tap and the bias, what the convolution is on one step. A kernel
        of 1 is taken as a view (its gradient is the weight's, no copy); the centre tap of a longer kernel is a
        select, whose backward writes into zeros of the whole kernel."""
        k = self.conv.kernel_size[0]
        return (self.conv.weight.squeeze(-1) if k == 1 else self.conv.weight[:, :, k // 2]), self.conv.bias

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
        h = self.drop(self.project_step(x))
        if self.mixer is not None:
            assert isinstance(self.mixer, TemporalConv1d)
            h = h + self.drop(self.act(self.mixer.pointwise(h)))
        h = h * m
        return EncodedSequence(h, mask, h.squeeze(1))

    def project_step(self, x: Tensor) -> Tensor:
        """The input projection where it is position-wise on ``x [..., D_m]`` (any leading shape; a convolution by
        its centre tap: one step), without masking."""
        return self.proj.pointwise(x) if isinstance(self.proj, TemporalConv1d) else self.proj(x)


def build_encoder(in_dim: int, p: EncoderParams, hidden: int | None = None) -> SequenceEncoder:
    """A :class:`SequenceEncoder` for ``in_dim`` inputs configured by ``p`` (width ``hidden`` or ``p.hidden``)."""
    width = hidden or p.hidden
    if p.temporal == "transformer" and width % p.heads:
        raise ConfigError(f"model.params.heads: {p.heads} does not divide the encoder width {width}")
    if p.kernel_size % 2 == 0:
        raise ConfigError(f"model.params.kernel_size: must be odd ('same' padding), got {p.kernel_size}")
    return SequenceEncoder(in_dim, width, projection=p.projection, temporal=p.temporal,
                           kernel_size=p.kernel_size, heads=p.heads, dropout=p.dropout, pool=p.pool)


def encode_pooled(encoders: nn.ModuleDict, batch: Batch, grouped: bool = True) -> dict[str, Tensor]:
    """Modality -> pooled encoding ``[B, d]`` of ``batch`` by ``encoders[m]``, zero where the modality is missing.

    ``grouped`` (a model's ``batch_modalities``): where :func:`one_step_encoders` can, the three encoders run as one
    batched computation (utterance-level data); the same values, other dropout draws."""
    stacked = encode_pooled_stacked(encoders, batch) if grouped else None
    if stacked is not None:
        return dict(zip(MODALITIES, stacked.unbind(0), strict=True))
    feats: dict[str, Tensor] = {}
    for k, m in enumerate(MODALITIES):
        pooled = encoders[m](batch.features[m], batch.mask[m]).pooled
        feats[m] = pooled * batch.present[:, k].to(pooled.dtype).unsqueeze(1)
    return feats


def encode_pooled_stacked(encoders: nn.ModuleDict, batch: Batch) -> Tensor | None:
    """:func:`encode_pooled` as ONE ``[3, B, d]`` tensor (modalities in :data:`MODALITIES` order) computed by
    :func:`one_step_encoders`, or None where that cannot run (the caller takes the per-encoder path)."""
    encs = [encoders[m] for m in MODALITIES]
    xs = [batch.features[m] for m in MODALITIES]
    if not all(isinstance(e, SequenceEncoder) for e in encs):
        return None
    h = one_step_encoders(cast(list[SequenceEncoder], encs), xs)
    if h is None:
        return None
    keep = torch.stack([batch.mask[m][:, 0] for m in MODALITIES]) & batch.present.t()  # [3, B] bool
    return h * keep.unsqueeze(2)  # (a bool factor: the same values as a 0/1 float one, two conversions fewer)


def one_step_encoders(encoders: Sequence[SequenceEncoder], xs: Sequence[Tensor]) -> Tensor | None:
    """:meth:`SequenceEncoder.one_step` of G encoders on their one-step inputs ``xs[g] [B, 1, D_g]`` as one batched
    computation: ``[G, B, d]`` before masking, or None where the encoders cannot be grouped (an input of more than
    one step, a transformer layer, or encoders that differ in width, temporal layer, dropout, activation or mode).

    Each input is projected by its own layer (the input widths differ) and the projections are stacked; the
    dropouts, the centre taps of the temporal convolutions (one ``baddbmm`` on the stacked taps) and the activation
    then run once for all. The same function of the same parameters as the encoders one by one (equal outputs and
    gradients without dropout, to float rounding); with dropout one draw covers every encoder, so the masks differ
    from the per-encoder path's. On MOSI-U an LMF training step runs 223 aten operations instead of 332
    (``benchmarks/results/step_costs.json``, its ``encoders`` part)."""
    first = encoders[0]
    if not _groupable(encoders, xs):
        return None
    h = torch.stack([e.project_step(x.squeeze(1)) for e, x in zip(encoders, xs, strict=True)])
    h = first.drop(h)
    if first.mixer is not None:
        taps = [cast(TemporalConv1d, e.mixer).centre_tap() for e in encoders]
        weight = torch.stack([w for w, _ in taps])
        bias = torch.stack([cast(Tensor, b) for _, b in taps])
        h = h + first.drop(first.act(torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))))
    return h


def _groupable(encoders: Sequence[SequenceEncoder], xs: Sequence[Tensor]) -> bool:
    """Whether :func:`one_step_encoders` may run ``encoders`` on ``xs`` as one computation: one-step inputs of one
    batch size, and encoders alike in everything :func:`_group_signature` reads (checked on every call: a few
    microseconds, as its submodules are read from ``_modules`` directly rather than through ``nn.Module``'s
    attribute fallback)."""
    if len(encoders) != len(xs):
        return False
    b = xs[0].shape[0]
    if any(x.dim() != 3 or x.shape[1] != 1 or x.shape[0] != b for x in xs):
        return False
    first = _group_signature(encoders[0])
    return first[0] in ("none", "conv") and first[-1] is True and all(_group_signature(e) == first
                                                                      for e in encoders[1:])


def _group_signature(e: SequenceEncoder) -> tuple[object, ...]:
    """What encoders run as one group must share: temporal layer, width, dropout, mode, activation, and (last)
    whether a temporal convolution has its bias (False stops the grouping)."""
    mods = e._modules
    drop, act, mixer = cast(Dropout, mods["drop"]), cast(GELU, mods["act"]), mods.get("mixer")
    with_bias = not isinstance(mixer, TemporalConv1d) or mixer.conv.bias is not None
    return e.temporal, e.dim, drop.p, e.training, act.approximate, with_bias
