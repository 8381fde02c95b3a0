"""What a config needs of MISA (:class:`accord.models.misa.MISA`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from accord.models.params import ModelDeclaration, ModelParams


class MISADeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.misa.MISA`."""

    default_loss_weights: ClassVar[dict[str, float]] = {"sim": 1.0, "diff": 0.3, "recon": 1.0}

    class Params(ModelParams):
        hidden: int = Field(32, ge=2, description="d: width of the utterance, shared and private representations")
        heads: int = Field(2, ge=1, description="heads of the fusion transformer (MISA: 2; must divide hidden)")
        layers: int = Field(1, ge=1, description="fusion transformer layers (MISA: 1)")
        kernel_size: int = Field(3, ge=1, description="odd kernel of the temporal projection convolutions")
        encoder_temporal: Literal["none", "conv", "transformer"] = Field(
            "none", description="temporal layer in the encoders (MISA: none, i.e. Linear + Sigmoid)")
        cmd_moments: int = Field(5, ge=1, description="moments of the CMD similarity loss")
        dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in encoders, transformer and head")
        projection_norm: bool = Field(
            False, description="ReLU + LayerNorm after each modality's projection (MISA's released code: project_m "
                               "= Linear, ReLU, LayerNorm); the self-reconstruction then targets the normalised "
                               "projection")
        encoder_dropout: float | None = Field(
            None, ge=0.0, lt=1.0, description="dropout inside the shared and private encoders (None: dropout; "
                                              "MISA's released code: none there)")
        fusion_dropout: float | None = Field(
            None, ge=0.0, lt=1.0, description="dropout on the fusion transformer's attention weights, FFN and "
                                              "residual branches (MISA's code: nn.TransformerEncoderLayer's 0.1 on "
                                              "all three); None: dropout on the FFN and residual branches only")
        ffn_mult: int = Field(4, ge=1, description="FFN width of the fusion transformer in multiples of hidden "
                                                   "(MISA's code: nn.TransformerEncoderLayer's 2048, i.e. 16 at "
                                                   "hidden 128)")
        downsample_text: int = Field(1, ge=1)
        downsample_audio: int = Field(4, ge=1)
        downsample_visual: int = Field(4, ge=1)
        batch_modalities: bool = Field(
            True, description="one step per modality (utterance-level data): the three modalities' projection norms, "
                              "shared and private encoders and reconstructions as batched computations (same "
                              "model, fewer ops, other dropout draws)")
