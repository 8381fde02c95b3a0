"""What a config needs of CPSL (:class:`accord.models.cpsl.CPSL`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from accord.core.hooks import HookRequest
from accord.models.params import ModelDeclaration, ModelParams
from accord.models.params.encoders import EncoderParams

Ablation = Literal["full", "no_cp", "no_sl", "no_projection", "backbone"]
CP_ABLATIONS = ("full", "no_sl", "no_projection")
"""The ablations that keep CP's penalty."""


class CPSLDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.cpsl.CPSL`."""

    default_loss_weights = {"unimodal_text": 0.5, "unimodal_audio": 0.5, "unimodal_visual": 0.5,
                            "sl": 0.1, "cp": 1.0}
    """λ_sl = 0.1 and λ_cp = 1.0 were chosen on MOSI-U validation MAE (benchmarks/results/cpsl_mosi_u.md)."""

    class Params(EncoderParams):
        fusion_heads: int = Field(4, ge=1, description="heads of the text-query cross-attention (divides hidden)")
        head_hidden: int = Field(64, ge=1, description="hidden width of the fused and unimodal heads")
        ablation: Ablation = Field("full", description="full, no_cp, no_sl, no_projection or backbone")
        kappa: float = Field(1.2, gt=0, description="κ: conflict when max_m r_m > κ")
        sl_correlation: bool = Field(False, description="add 1 − corr(ŷ, y) to SL")
        project_on: Literal["always", "conflict"] = Field(
            "always", description="steps on which CP considers the projection: always (paper) or conflict (old)")

    @classmethod
    def required_hooks(cls, params: ModelParams) -> list[HookRequest]:
        """CP's penalty and projection (the ``conflict_penalty`` hook) unless the ablation drops CP."""
        assert isinstance(params, CPSLDeclaration.Params)
        if params.ablation not in CP_ABLATIONS:
            return []
        return [HookRequest("conflict_penalty", {"kappa": params.kappa, "penalty": True,
                                                 "projection": params.ablation == "full",
                                                 "project_on": params.project_on})]
