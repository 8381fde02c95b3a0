"""The hyper-parameters of the shared sequence encoder (:class:`EncoderParams`, for a model's ``Params`` to inherit)
without torch; the encoder itself is :mod:`accord.models.modules.encoders`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from accord.models.params import ModelParams

Projection = Literal["linear", "conv"]
Temporal = Literal["none", "conv", "transformer"]
PoolMode = Literal["mean", "max", "last"]


class EncoderParams(ModelParams):
    """:class:`~accord.models.modules.encoders.SequenceEncoder` hyper-parameters, for a model's ``Params`` to
    inherit (see :func:`~accord.models.modules.encoders.build_encoder`)."""

    hidden: int = Field(64, ge=1, description="encoder width d")
    projection: Projection = Field("linear", description="input projection: position-wise linear or 1-D conv")
    temporal: Temporal = Field("conv", description="temporal layer after the projection")
    kernel_size: int = Field(3, ge=1, description="odd kernel size of the convolutions")
    heads: int = Field(4, ge=1, description="heads of the temporal transformer layer (must divide hidden)")
    pool: PoolMode = Field("mean", description="masked pooling over time")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    batch_modalities: bool = Field(
        True, description="one step per modality (utterance-level data): run the three modality encoders (and a "
                          "model's per-modality layers of one shape) as one batched computation (same model, fewer "
                          "ops, other dropout draws)")
