"""What a config needs of EarlyFusion (:class:`accord.models.early_fusion.EarlyFusion`), without torch: its
``Params`` and defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from accord.models.params import ModelDeclaration, ModelParams


class EarlyFusionDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.early_fusion.EarlyFusion`."""

    class Params(ModelParams):
        stats: Literal["mean", "mean_std"] = Field("mean_std", description="summary statistics per modality")
        proj_dim: int = Field(32, ge=0, description="per-modality projection width (0: concatenate raw)")
        hidden: int = Field(128, ge=1, description="MLP hidden width")
        hidden_layers: int = Field(2, ge=0, description="MLP hidden layers")
        dropout: float = Field(0.1, ge=0.0, lt=1.0)
