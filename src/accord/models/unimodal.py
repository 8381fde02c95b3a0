"""Unimodal baselines: one modality alone through a :class:`~accord.models.modules.SequenceEncoder` and an MLP.

Registered as ``unimodal`` (choose ``modality``) and as ``text``, ``audio`` and ``visual`` with the modality fixed.
They measure how much each modality carries on its own: the reference point for modality imbalance (on MOSI, text
alone is usually as good as naive fusion). With a pretrained text branch (``text_encoder.source: pretrained``)
text alone reads the transformer's sentence vector (an utterance model).
"""

from __future__ import annotations

from torch import Tensor

from accord.core.types import Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import MLPHead, build_encoder
from accord.models.params.unimodal import UnimodalDeclaration


@register_model("visual", fixed={"modality": "visual"})
@register_model("audio", fixed={"modality": "audio"})
@register_model("text", fixed={"modality": "text"})
@register_model("unimodal")
class Unimodal(UnimodalDeclaration, AccordModel):
    """Encode one modality (projection, light temporal layer, masked mean pooling) and predict with an MLP.

    Only the chosen modality's parameters exist; the other modalities in the batch are ignored. A sample whose
    modality is missing (length 0) pools to zeros, so its prediction is the head's response to a zero vector.
    """

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, Unimodal.Params)
        self.modality = p.modality
        self.encoder = build_encoder(dims[p.modality], p)
        self.head = MLPHead(p.hidden, out_dim, hidden=p.head_hidden, dropout=p.dropout)

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """``{modality: pooled [B, hidden]}``."""
        m = self.modality
        return {m: self.encoder(batch.features[m], batch.mask[m]).pooled}

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        return squeeze_head(self.head(feats[self.modality]), self.out_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        return ModelOutput(prediction=self.forward_head(feats), features=feats)
