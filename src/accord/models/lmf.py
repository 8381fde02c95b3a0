"""LMF: Low-rank Multimodal Fusion.

Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency, "Efficient Low-rank Multimodal Fusion with Modality-Specific
Factors", ACL 2018.

LMF computes the same kind of fusion as TFN (:mod:`accord.models.tfn`) without ever building the tensor. TFN maps
the outer product ``Z = [z_1; 1] (x) [z_2; 1] (x) [z_3; 1]`` linearly to the fused vector, ``h = W . Z + b``
(paper Eq. 1, the tensor fusion layer with a weight tensor ``W in R^{(d_1+1) x (d_2+1) x (d_3+1) x d_h}``). LMF
restricts ``W`` to rank ``r`` with modality-specific factors ``W_m^(i) in R^{(d_m+1) x d_h}`` (paper Sec. 3.2):

    W = sum_{i=1}^r  W_1^(i) (x) W_2^(i) (x) W_3^(i)      (outer product over the input axes, per output unit)

and, because contracting a rank-1 tensor with the rank-1 ``Z`` factorises, computes (paper Sec. 3.3, the low-rank
fusion equation ``h = Lambda_m [ sum_i W_m^(i) . z_m ]`` read per rank, as in the released code)

    h = ( sum_{i=1}^r  w_i * prod_m ( [z_m; 1] W_m^(i) ) ) + b      (prod_m: element-wise over the d_h units)

in ``O(r * d_h * sum_m d_m)`` instead of ``O(d_h * prod_m d_m)``. ``w in R^r`` (the released code's
``fusion_weights``) and ``b`` are learned; ``w_i`` only rescales the rank-``i`` term, so the fused ``h`` still
equals ``W . Z + b`` with ``W = sum_i w_i (x)_m W_m^(i)`` (checked numerically against TFN's tensor in
``tests/test_lmf.py``).

Here ``z_m`` is the pooled output of the shared :class:`~accord.models.modules.SequenceEncoder` (the paper uses an
LSTM for language and MLPs for audio/visual means), zero for a missing modality (as in TFN: only the interactions
of the present modalities remain, via the appended 1). The released code predicts directly from ``h`` (``d_h`` =
output size); here ``h`` is dropped out and passed to an MLP head (``post_layers = 0``: one linear layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.models.base import AccordModel, ModelParams, register_model, squeeze_head
from accord.models.modules import Dropout, MLPHead, build_encoder, encode_pooled
from accord.models.params.lmf import LMFDeclaration


@register_model("lmf")
class LMF(LMFDeclaration, AccordModel):
    """Low-rank Multimodal Fusion (Liu et al., ACL 2018): rank-``r`` modality-specific factors of TFN's tensor."""

    text_input_form = "pooled"  # an utterance model: a pretrained text branch gives it the sentence vector

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__(dims, out_dim, params)
        p = self.params
        assert isinstance(p, LMF.Params)
        self.encoders = nn.ModuleDict({m: build_encoder(dims[m], p) for m in MODALITIES})
        # W_m^(i) for i = 1..r, stacked: [r, d_m + 1, d_h]
        self.factors = nn.ParameterDict({m: nn.Parameter(torch.empty(p.rank, p.hidden + 1, p.fusion_dim))
                                         for m in MODALITIES})
        self.rank_weights = nn.Parameter(torch.empty(1, p.rank))  # w_i
        self.fusion_bias = nn.Parameter(torch.zeros(p.fusion_dim))  # b
        for w in self.factors.values():
            nn.init.xavier_normal_(w)
        nn.init.xavier_normal_(self.rank_weights)
        self.fusion_drop = Dropout(p.fusion_dropout)
        self.head = MLPHead(p.fusion_dim, out_dim, hidden=p.post_hidden, hidden_layers=p.post_layers,
                            dropout=p.dropout)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each modality's encoder and its fusion factors ``W_m^(i)`` (for balancing hooks)."""
        return {m: [*self.encoders[m].parameters(), self.factors[m]] for m in MODALITIES}

    def forward_features(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> ``z_m [B, d_m]`` (zero for a missing modality)."""
        p = self.params
        assert isinstance(p, LMF.Params)
        return encode_pooled(self.encoders, batch, grouped=p.batch_modalities)

    def low_rank_fusion(self, feats: dict[str, Tensor]) -> Tensor:
        """``h [B, d_h] = sum_i w_i prod_m ([z_m; 1] W_m^(i)) + b`` (the low-rank fusion equation, Sec. 3.3)."""
        prod: Tensor | None = None
        for m in MODALITIES:
            w = self.factors[m]  # [r, d_m + 1, d_h]; its last row multiplies the appended 1
            z = feats[m]
            proj = torch.baddbmm(w[:, -1:], z.expand(w.shape[0], *z.shape), w[:, :-1])  # [r, B, d_h]
            prod = proj if prod is None else prod * proj
        assert prod is not None
        b, d_h = prod.shape[1], prod.shape[2]
        return (self.rank_weights @ prod.flatten(1)).view(b, d_h) + self.fusion_bias

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        return squeeze_head(self.head(self.fusion_drop(self.low_rank_fusion(feats))), self.out_dim)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.forward_features(batch)
        return ModelOutput(prediction=self.forward_head(feats), features=feats)
