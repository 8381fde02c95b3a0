"""MulT: the Multimodal Transformer for unaligned multimodal language sequences.

Tsai, Bai, Liang, Kolter, Morency, Salakhutdinov, "Multimodal Transformer for Unaligned Multimodal Language
Sequences", ACL 2019.

Pipeline (paper Sec. 3, Fig. 2):

1. temporal convolutions (Eq. 1): ``X^_m = Conv1D(X_m, k_m) in R^{T_m x d}`` for m in {L, A, V} (bias-free,
   kernel 1 by default as in the released code), plus scaled sinusoidal positions (Eq. 2) inside each transformer;
2. six crossmodal transformers (Eq. 3-4) ``L<-A, L<-V, A<-L, A<-V, V<-L, V<-A``: the query is the target
   modality, keys/values the source, ``layers`` pre-LN layers each;
3. per target, the two crossmodal outputs are concatenated (``[T_beta, 2d]``) and passed through a self-attention
   "memory" transformer (Eq. 5; ``max(layers, 3)`` layers as in the released code);
4. each memory sequence is pooled (the last valid step, as in the paper, or the masked mean), the three are
   concatenated ``[6d]`` and a residual MLP predicts the output.

Unaligned lengths: every attention uses a key padding mask of its source, the pooling uses the target's mask,
so padding never reaches the prediction. A missing source modality contributes zero attention output (no NaN); a
missing target modality pools to zeros.

Choices that differ from the released code (all switchable, defaults picked for CPU speed):

- key padding masks everywhere (the original attends over padding) and the last *valid* step instead of the last
  padded one; positions count every step from 0 (the original derives them from non-zero first channels);
- source and query get separate pre-LayerNorms (the original shares one);
- smaller model: ``d = 32``, 4 heads, 2 crossmodal layers (the original uses 30 / 5 / 5 on MOSI);
- ``downsample_audio = downsample_visual = 4``: after the projection, audio and visual sequences are averaged over
  non-overlapping windows of 4 steps (masked; 375 -> 94 and 500 -> 125 steps on MOSI). Attention cost is
  quadratic in length, so this makes a MOSI epoch about 4x cheaper on CPU; set both to 1 for the exact
  full-resolution MulT;
- ``attn_dropout_mem = 0`` (the original applies ``attn_dropout`` in the memory transformers; attention dropout
  runs the fused kernel twice, see :mod:`accord.models.modules.attention`, which is costly on the long
  audio/visual memories).

On utterance-level data (every modality one step after the projections) ``batch_streams`` (default on) runs the
six crossmodal transformers as one batched computation and the three memory transformers as another
(:func:`~accord.models.modules.grouped.one_step_transformers`): per-op overhead dominates there, and a MOSI-U
training step runs 2,163 aten operations instead of 3,979 (``benchmarks/results/step_costs.json``, ``streams``).

With ``pool = "last"`` the final memory layer is evaluated for the last valid query only
(:meth:`CrossmodalTransformer.forward_last`), an exact shortcut. ``features[m]`` is target ``m``'s pooled memory
output ``[B, 2d]``: the input of the final concatenation head (MulT's fusion of the three target streams).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import (
    CrossmodalTransformer,
    Dropout,
    ResidualMLPHead,
    TemporalConv1d,
    downsample_mean,
    pool,
)
from accord.models.modules.grouped import one_step_transformers
from accord.models.params.mult import MulTDeclaration


@register_model("mult")
class MulT(MulTDeclaration, AccordModel):
    """Multimodal Transformer (Tsai et al., ACL 2019): six crossmodal transformers + memory transformers."""

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, MulT.Params)
        if p.hidden % p.heads:
            raise ConfigError(f"model.params.heads: {p.heads} does not divide hidden={p.hidden} (nor 2*hidden)")
        if p.conv_kernel % 2 == 0:
            raise ConfigError(f"model.params.conv_kernel: must be odd ('same' padding), got {p.conv_kernel}")
        d = p.hidden
        attn_drop = {"text": p.attn_dropout, "audio": p.attn_dropout_audio, "visual": p.attn_dropout_visual}
        self.proj = nn.ModuleDict({m: TemporalConv1d(dims[m], d, p.conv_kernel, bias=False) for m in MODALITIES})
        self.cross = nn.ModuleDict({
            f"{t}_from_{s}": CrossmodalTransformer(d, p.heads, p.layers, attn_dropout=attn_drop[t],
                                                   relu_dropout=p.relu_dropout, res_dropout=p.res_dropout,
                                                   embed_dropout=p.embed_dropout)
            for t in MODALITIES for s in MODALITIES if s != t
        })
        mem_layers = p.mem_layers or max(p.layers, 3)  # as MulT's get_network(..., layers=3)
        mem_drop = p.attn_dropout if p.attn_dropout_mem is None else p.attn_dropout_mem
        self.memory = nn.ModuleDict({
            t: CrossmodalTransformer(2 * d, p.heads, mem_layers, attn_dropout=mem_drop, self_attention=True,
                                     relu_dropout=p.relu_dropout, res_dropout=p.res_dropout,
                                     embed_dropout=p.embed_dropout)
            for t in MODALITIES
        })
        self.text_drop = Dropout(p.embed_dropout)
        self.head = ResidualMLPHead(3 * 2 * d, out_dim, dropout=p.out_dropout)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each modality's input projection: the only block that sees one modality alone (the crossmodal and
        memory transformers mix modalities). For balancing hooks, see accord.balance.modality."""
        return {m: list(self.proj[m].parameters()) for m in MODALITIES}

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Target modality -> pooled memory-transformer output ``[B, 2d]``."""
        p = self.params
        assert isinstance(p, MulT.Params)
        stride = {"text": p.downsample_text, "audio": p.downsample_audio, "visual": p.downsample_visual}
        proj: dict[str, Tensor] = {}
        mask: dict[str, Tensor] = {}
        for m in MODALITIES:
            x = batch.features[m]
            if m == "text":  # MulT drops out the raw text features before projecting them
                x = self.text_drop(x)
            proj[m], mask[m] = downsample_mean(self.proj[m](x, batch.mask[m]), batch.mask[m], stride[m])
        if p.batch_streams and all(proj[m].shape[1] == 1 for m in MODALITIES):
            return self._one_step_features(proj, mask)
        feats: dict[str, Tensor] = {}
        for t in MODALITIES:
            h = torch.cat([
                self.cross[f"{t}_from_{s}"](proj[t], mask[t], proj[s], mask[s]) for s in MODALITIES if s != t
            ], dim=-1)
            if p.pool == "last":
                memory = cast(CrossmodalTransformer, self.memory[t])  # a ModuleDict item is typed as Module
                feats[t] = memory.forward_last(h, mask[t])
            else:
                feats[t] = pool(self.memory[t](h, mask[t]), mask[t], p.pool)
        return feats

    def _one_step_features(self, proj: dict[str, Tensor], mask: dict[str, Tensor]) -> dict[str, Tensor]:
        """:meth:`forward_features` when every modality has one step (``batch_streams``): the six crossmodal
        transformers run as one batched computation, then the three memory transformers as another
        (:func:`~accord.models.modules.grouped.one_step_transformers`). The same function of the same parameters;
        without dropout the same outputs and gradients to float rounding (tested)."""
        p = self.params
        assert isinstance(p, MulT.Params)
        pairs = [(t, s) for t in MODALITIES for s in MODALITIES if s != t]  # target-major: (t, s1), (t, s2), ...
        cross = one_step_transformers(
            [cast(CrossmodalTransformer, self.cross[f"{t}_from_{s}"]) for t, s in pairs],
            torch.stack([proj[t][:, 0] for t, _ in pairs]), torch.stack([mask[t][:, 0] for t, _ in pairs]),
            torch.stack([proj[s][:, 0] for _, s in pairs]), torch.stack([mask[s][:, 0] for _, s in pairs]))
        memory = one_step_transformers(
            [cast(CrossmodalTransformer, self.memory[t]) for t in MODALITIES],
            torch.cat([cross[0::2], cross[1::2]], dim=-1), torch.stack([mask[t][:, 0] for t in MODALITIES]))
        if p.pool == "last":
            return {t: memory[i] for i, t in enumerate(MODALITIES)}
        return {t: pool(memory[i].unsqueeze(1), mask[t], p.pool) for i, t in enumerate(MODALITIES)}

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        return squeeze_head(self.head(torch.cat([feats[m] for m in MODALITIES], dim=-1)), self.out_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        return ModelOutput(prediction=self.forward_head(feats), features=feats)

