"""What a config needs of LateFusion (:class:`accord.models.late_fusion.LateFusion`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from accord.models.params import ModelDeclaration
from accord.models.params.encoders import EncoderParams


class LateFusionDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.late_fusion.LateFusion`."""

    default_loss_weights = {"unimodal_text": 1.0, "unimodal_audio": 1.0, "unimodal_visual": 1.0}

    class Params(EncoderParams):
        head_hidden: int = 64
