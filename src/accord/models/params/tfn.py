"""What a config needs of TFN (:class:`accord.models.tfn.TFN`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from pydantic import Field

from accord.models.params import ModelDeclaration
from accord.models.params.encoders import EncoderParams


class TFNDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.tfn.TFN`."""

    class Params(EncoderParams):
        hidden: int = Field(32, ge=1, description="encoder width before the embedding layer")
        fusion_dim: int = Field(16, ge=1, description="d: embedding size per modality; fused size (d+1)^3")
        post_hidden: int = Field(64, ge=1, description="width of the post-fusion MLP")
        post_layers: int = Field(2, ge=0, description="hidden layers of the post-fusion MLP")
        fusion_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on the fused tensor")
