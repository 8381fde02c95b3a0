"""What a config needs of EBMC (:class:`accord.models.ebmc.EBMC`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from accord.models.params import ModelDeclaration, ModelParams

Ablation = Literal["full", "no_enhance", "no_energy", "no_trust", "trust_without_distillation", "no_sim"]
EqForm = Literal["one_sided", "two_sided"]
"""The forms of :func:`accord.objectives.energy.equilibrium_loss` (its ``EqForm``)."""


class EBMCDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.ebmc.EBMC`."""

    default_loss_weights = {"unimodal_text": 1.0, "unimodal_audio": 1.0, "unimodal_visual": 1.0,
                            "eq": 0.1, "trust": 0.1, "orth": 0.1, "sim": 0.1}

    class Params(ModelParams):
        hidden: int = Field(32, ge=2, description="d: width of the shared/private sequences and of z_m")
        heads: int = Field(4, ge=1, description="attention heads of the enhancement layers (must divide hidden)")
        kernel_size: int = Field(3, ge=1, description="odd kernel of the temporal projection convolutions")
        encoder_temporal: Literal["none", "conv", "transformer"] = Field(
            "conv", description="temporal layer inside the shared/private encoders")
        encoder_kernel: int = Field(3, ge=1, description="odd kernel of the encoders' temporal convolution")
        shared_encoder: Literal["common", "separate"] = Field("common", description="shared encoder E_s mode")
        dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in encoders, enhancement and heads")
        head_hidden: int = Field(64, ge=1, description="hidden width of the unimodal, fusion and trust MLPs")
        temperature: float = Field(0.5, gt=0.0, description="T of the trust teacher softmax(-err/T)")
        downsample_text: int = Field(1, ge=1, description="average every k projected text steps (1: off)")
        downsample_audio: int = Field(4, ge=1, description="average every k projected audio steps (1: off)")
        downsample_visual: int = Field(4, ge=1, description="average every k projected visual steps (1: off)")
        ablation: Ablation = Field("full", description="which EBMC component to remove")
        eq_form: EqForm = Field("one_sided", description="L_eq: one_sided Σ relu(E_m − sg(mean))² (METHODS §3) or "
                                                          "two_sided Σ (E_m − mean)² (the old form)")
        cmd_moments: int = Field(5, ge=1, description="moments of the shared-space CMD term (MISA: 5)")
