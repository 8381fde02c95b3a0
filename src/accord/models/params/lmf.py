"""What a config needs of LMF (:class:`accord.models.lmf.LMF`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from pydantic import Field

from accord.models.params import ModelDeclaration
from accord.models.params.encoders import EncoderParams


class LMFDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.lmf.LMF`."""

    class Params(EncoderParams):
        hidden: int = Field(32, ge=1, description="d_m: encoder width = size of each modality embedding z_m")
        rank: int = Field(4, ge=1, description="r: rank of the decomposed fusion weight tensor (paper: 4 on MOSI)")
        fusion_dim: int = Field(32, ge=1, description="d_h: size of the fused vector h")
        post_hidden: int = Field(64, ge=1, description="width of the post-fusion MLP")
        post_layers: int = Field(1, ge=0, description="hidden layers of the post-fusion MLP (0: linear)")
        fusion_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the fused vector h")
