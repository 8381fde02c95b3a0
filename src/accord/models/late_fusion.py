"""Late (decision-level) fusion: one full unimodal model per modality, predictions averaged with learned weights.

Each modality has its own :class:`~accord.models.modules.SequenceEncoder` and MLP head giving a unimodal
prediction ``y_m`` (a score, or class logits). The fused prediction is ``y = sum_m w_m y_m`` with
``w = softmax(a)`` over three learned logits ``a``; per sample, the weights of missing modalities
(``batch.present`` False) are set to zero and the rest renormalised. Every branch is trained by its own loss
(``aux_predictions["unimodal_<m>"]``, weight 1 in ``default_loss_weights``): the classic late-fusion baseline
(Snoek, Worring and Smeulders, "Early versus late fusion in semantic video analysis", ACM MM 2005).

``features[m]`` is branch ``m``'s pooled representation (the input of its head); ``diagnostics["fusion_weight"]``
is the per-sample weight vector ``[B, 3]`` (columns in ``MODALITIES`` order).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import MLPHead, build_encoder
from accord.models.params.late_fusion import LateFusionDeclaration


@register_model("late_fusion")
class LateFusion(LateFusionDeclaration, AccordModel):
    """Three unimodal branches; prediction = softmax-weighted average of their predictions."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, LateFusion.Params)
        self.encoders = nn.ModuleDict({m: build_encoder(dims[m], p) for m in MODALITIES})
        self.heads = nn.ModuleDict({
            m: MLPHead(p.hidden, out_dim, hidden=p.head_hidden, dropout=p.dropout) for m in MODALITIES
        })
        self.fusion_logits = nn.Parameter(torch.zeros(len(MODALITIES)))

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each branch's encoder and head (for balancing hooks, see accord.balance.modality)."""
        return {m: [*self.encoders[m].parameters(), *self.heads[m].parameters()] for m in MODALITIES}

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> pooled branch representation ``[B, hidden]``."""
        return {m: self.encoders[m](batch.features[m], batch.mask[m]).pooled for m in MODALITIES}

    def fusion_weights(self, present: Tensor) -> Tensor:
        """Per-sample weights ``[B, 3]``: ``softmax(a)`` with absent modalities zeroed and rows renormalised."""
        w = self.fusion_logits.softmax(dim=0).unsqueeze(0) * present.to(self.fusion_logits.dtype)
        return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def forward_head(self, feats: dict[str, Tensor], present: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``(fused [B, out_dim], unimodal predictions {m: [B, out_dim]}, weights [B, 3])``."""
        preds = {m: self.heads[m](feats[m]) for m in MODALITIES}
        w = self.fusion_weights(present)
        stacked = torch.stack([preds[m] for m in MODALITIES], dim=1)  # [B, 3, out_dim]
        return (w.unsqueeze(-1) * stacked).sum(dim=1), preds, w

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        fused, preds, w = self.forward_head(feats, batch.present)
        return ModelOutput(
            prediction=squeeze_head(fused, self.out_dim),
            aux_predictions={f"unimodal_{m}": squeeze_head(preds[m], self.out_dim) for m in MODALITIES},
            aux_weights={f"unimodal_{m}": batch.present[:, k].float() for k, m in enumerate(MODALITIES)},
            diagnostics={"fusion_weight": w.detach()},
            features=feats,
        )
