"""What a config needs of SelfMM (:class:`accord.models.self_mm.SelfMM`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from accord.core.hooks import HookRequest
from accord.core.types import MODALITIES
from accord.models.params import ModelDeclaration, ModelParams
from accord.models.params.encoders import EncoderParams

Distance = Literal["squared", "l2"]


class SelfMMDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.self_mm.SelfMM`."""

    text_pooling = "cls"  # of [CLS], as the paper reads BERT (Yu et al., 2021; MMSA's BertTextEncoder output [:, 0])

    default_loss_weights: ClassVar[dict[str, float]] = {f"uni_{m}": 1.0 for m in MODALITIES}

    class Params(EncoderParams):
        hidden: int = Field(32, ge=1, description="encoder width: size of each F_s")
        post_fusion_dim: int = Field(64, ge=1, description="size of F_m* (post-fusion layers; MMSA: 128)")
        post_unimodal_dim: int = Field(32, ge=1, description="size of each F_s* (MMSA: text 32, audio 16, visual 32)")
        post_fusion_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before the post-fusion layer")
        post_unimodal_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before each unimodal layer")
        update_start_epoch: int = Field(2, ge=2, description="first (1-based) epoch that updates the labels "
                                                           "(paper: 2)")
        label_bound: float = Field(3.0, gt=0.0, description="H: generated labels are clipped to [-H, H] (MOSI: 3)")
        distance: Distance = Field("l2", description="Eq. 7 distance: l2 (released code) or squared (paper)")

    @classmethod
    def required_hooks(cls, params: ModelParams) -> list[HookRequest]:
        """ULGM's memory update after every training step (the ``self_mm_ulgm`` hook, :mod:`accord.balance.ulgm`)."""
        return [HookRequest("self_mm_ulgm")]
