"""What a config needs of CACR (:class:`accord.models.cacr.CACR`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from accord.models.params import ModelDeclaration, ModelParams

Ablation = Literal["full", "no_crm", "no_caw", "gating", "no_fsr", "no_orth", "no_private"]
CRMForm = Literal["paper", "narrow", "drop"]


class CACRDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.cacr.CACR`."""

    default_loss_weights: ClassVar[dict[str, float]] = {
        "shared": 0.5, "private": 0.5, "rec": 0.1, "orth": 0.1, "preserve": 0.1,
        "anchor_text": 1 / 3, "anchor_audio": 1 / 3, "anchor_visual": 1 / 3,
    }
    """alpha (``shared``), beta (``private``), lambda_rec (``rec``), lambda_o (``orth``), lambda_p (``preserve``);
    the paper does not report its values (ours: benchmarks/results/cacr_ablation_mosi_u.md). ``anchor_<m>`` only
    exist with ``shared_anchor`` (not in the paper; mean over the modalities)."""

    class Params(ModelParams):
        hidden: int = Field(32, ge=2, description="d: width of projected, shared, private and fused sequences")
        heads: int = Field(4, ge=1, description="attention heads (must divide hidden)")
        layers: int = Field(2, ge=1, description="layers of each fusion transformer (private and shared)")
        kernel_size: int = Field(3, ge=1, description="odd kernel of the temporal projection convolutions")
        encoder_temporal: Literal["none", "conv", "transformer"] = Field(
            "conv", description="temporal layer inside the shared/private encoders")
        encoder_kernel: int = Field(3, ge=1, description="odd kernel of the encoders' temporal convolution")
        shared_encoder: Literal["common", "separate"] = Field(
            "separate", description="one shared encoder E_s^m per modality (METHODS.md 1.1: 'per modality, two "
            "encoders'), or one common to all modalities (as MISA)")
        decoder_kernel: int = Field(3, ge=1, description="odd kernel of the CRM conv decoders D_nm")
        fsr_kernel: int = Field(3, ge=1, description="odd kernel of the FSR extractors of P'_A, P'_V")
        omega_min: float = Field(0.1, ge=0.0, le=1.0, description="floor of the reconstruction weight w")
        tau: float = Field(0.5, gt=0.0, description="decay rate of w = w_min + (1 - w_min) exp(-C / tau)")
        detach_target: bool = Field(True, description="stop the gradient of the reconstruction target X_m")
        dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in encoders, FSR and transformers")
        attn_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="attention dropout (0 keeps the fast kernel)")
        head_hidden: int = Field(64, ge=1, description="hidden width of the three regressors")
        downsample_text: int = Field(1, ge=1, description="average every k projected text steps (1: off)")
        downsample_audio: int = Field(4, ge=1, description="average every k projected audio steps (1: off)")
        downsample_visual: int = Field(4, ge=1, description="average every k projected visual steps (1: off)")
        decoders: Literal["pair", "target"] = Field(
            "pair", description="one decoder D_nm per (source, target) pair (paper), or one D_m per target")
        crm: CRMForm = Field("drop", description="what of P_m the CRM decoders read: all of it (paper, literal), "
                             "a narrow projection, or P_m dropped per sample in training (drop, closes the shortcut)")
        private_width: int = Field(4, ge=1, description="channels of P_m the decoders read under crm=narrow")
        private_drop: float = Field(0.5, ge=0.0, lt=1.0, description="probability of dropping P_m under crm=drop")
        shared_anchor: bool = Field(False, description="NOT in seed 003 (off in every paper configuration): one "
                                    "regressor shared by all modalities also reads each pooled h_m")
        ablation: Ablation = Field("full", description="which component of seed 003's ablation table to remove")
