"""Early (feature-level) fusion: concatenate per-modality summary statistics of the raw inputs, then an MLP.

Each modality's raw sequence ``[B, T_m, D_m]`` is summarised by its masked mean over valid steps (and, with
``stats = "mean_std"``, its masked standard deviation), so unaligned lengths need no alignment; the summaries are
concatenated and an MLP predicts. This is the classic feature-concatenation baseline (early fusion in the sense of
Snoek, Worring and Smeulders, "Early versus late fusion in semantic video analysis", ACM MM 2005; cf. the EF
baselines of Zadeh et al., EMNLP 2017, Sec. 5), with time handled by pooling rather than word alignment.

By default the MLP's first layer is factorised per modality: each summary goes through its own ``Linear`` to
``proj_dim`` channels before the concatenation (no non-linearity in between), which gives every modality a
same-size representation ``z_m`` at the fusion input (``features[m]``; comparable gradient norms across
modalities) and keeps a 1536-d text summary from dwarfing a 10-d audio one in parameter count. ``proj_dim = 0``
concatenates the raw summaries directly; ``features[m]`` is then the raw summary, marked as requiring grad so
a gradient monitor can still differentiate with respect to it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import Dropout, MLPHead, masked_mean, masked_std
from accord.models.params.early_fusion import EarlyFusionDeclaration


@register_model("early_fusion")
class EarlyFusion(EarlyFusionDeclaration, AccordModel):
    """Concatenate masked mean (and std) of each modality's raw features; predict with an MLP."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, EarlyFusion.Params)
        k = 2 if p.stats == "mean_std" else 1
        self.proj: nn.ModuleDict | None = None
        if p.proj_dim > 0:
            self.proj = nn.ModuleDict({m: nn.Linear(k * dims[m], p.proj_dim) for m in MODALITIES})
            fused = 3 * p.proj_dim
        else:
            fused = sum(k * dims[m] for m in MODALITIES)
        self.drop = Dropout(p.dropout)
        self.head = MLPHead(fused, out_dim, hidden=p.hidden, hidden_layers=p.hidden_layers, dropout=p.dropout)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each modality's projection (none with ``proj_dim = 0``); for balancing hooks, see accord.balance."""
        return {m: [] if self.proj is None else list(self.proj[m].parameters()) for m in MODALITIES}

    def summarise(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> ``[B, k * D_m]`` masked statistics of the raw input (zeros for a missing modality)."""
        p = self.params
        assert isinstance(p, EarlyFusion.Params)
        out: dict[str, Tensor] = {}
        for m in MODALITIES:
            x, mask = batch.features[m], batch.mask[m]
            parts = [masked_mean(x, mask)]
            if p.stats == "mean_std":
                parts.append(masked_std(x, mask))
            out[m] = torch.cat(parts, dim=-1)
        return out

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> the representation the fusion MLP consumes (``[B, proj_dim]``, or the raw summary)."""
        stats = self.summarise(batch)
        if self.proj is None:
            if torch.is_grad_enabled():
                stats = {m: s if s.requires_grad else s.requires_grad_() for m, s in stats.items()}
            return stats
        return {m: self.proj[m](s) for m, s in stats.items()}

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        fused = torch.cat([feats[m] for m in MODALITIES], dim=-1)
        return squeeze_head(self.head(self.drop(fused)), self.out_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        return ModelOutput(prediction=self.forward_head(feats), features=feats)
