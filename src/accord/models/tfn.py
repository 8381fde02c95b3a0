"""TFN: the Tensor Fusion Network.

Zadeh, Chen, Poria, Cambria, Morency, "Tensor Fusion Network for Multimodal Sentiment Analysis", EMNLP 2017.

Each modality is embedded to ``z_m in R^d`` (here: a :class:`~accord.models.modules.SequenceEncoder`, then
``ReLU(Linear(., d))``; the paper uses an LSTM for language and MLPs for audio/visual means). The tensor fusion
layer (paper Eq. 1) appends a constant 1 to each embedding and takes the 3-way outer product

    z^m = [z^l; 1] (x) [z^v; 1] (x) [z^a; 1]   in R^{(d+1)^3},

which holds the unimodal, bimodal and trimodal interactions at once. It is flattened, dropped out and passed to
the sentiment inference MLP. A missing modality's embedding is set to zero, so only the interactions of the
present modalities remain. ``d`` is small by default (16 -> 4913 fused features) for speed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import Dropout, MLPHead, build_encoder, encode_pooled
from accord.models.params.tfn import TFNDeclaration


@register_model("tfn")
class TFN(TFNDeclaration, AccordModel):
    """Tensor Fusion Network (Zadeh et al., EMNLP 2017): outer product of ``[z_m; 1]`` over the modalities."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, TFN.Params)
        self.encoders = nn.ModuleDict({m: build_encoder(dims[m], p) for m in MODALITIES})
        self.embed = nn.ModuleDict({m: nn.Linear(p.hidden, p.fusion_dim) for m in MODALITIES})
        self.fusion_drop = Dropout(p.fusion_dropout)
        self.head = MLPHead((p.fusion_dim + 1) ** 3, out_dim, hidden=p.post_hidden, hidden_layers=p.post_layers,
                            dropout=p.dropout)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each modality's encoder and embedding layer (for balancing hooks, see accord.balance.modality)."""
        return {m: [*self.encoders[m].parameters(), *self.embed[m].parameters()] for m in MODALITIES}

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> ``z_m [B, d]`` (zero for a missing modality)."""
        p = self.params
        assert isinstance(p, TFN.Params)
        # ReLU(W·0 + b) of a missing modality: masked below
        pooled = encode_pooled(self.encoders, batch, grouped=p.batch_modalities)
        return {m: torch.relu(self.embed[m](pooled[m])) * batch.present[:, k].to(pooled[m].dtype).unsqueeze(1)
                for k, m in enumerate(MODALITIES)}

    @staticmethod
    def tensor_fusion(feats: dict[str, Tensor]) -> Tensor:
        """``[B, (d+1)^3]``: flattened outer product of ``[z_text; 1]``, ``[z_audio; 1]``, ``[z_visual; 1]``."""
        zs = [torch.cat([feats[m], torch.ones_like(feats[m][:, :1])], dim=1) for m in MODALITIES]
        if torch.compiler.is_compiling():  # einsum's path search reads the batch size: a graph per batch size
            return (zs[0][:, :, None, None] * zs[1][:, None, :, None] * zs[2][:, None, None, :]).flatten(1)
        return torch.einsum("bi,bj,bk->bijk", *zs).flatten(1)

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        return squeeze_head(self.head(self.fusion_drop(self.tensor_fusion(feats))), self.out_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        return ModelOutput(prediction=self.forward_head(feats), features=feats)
