"""What a config needs of Unimodal (:class:`accord.models.unimodal.Unimodal`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import Literal

from accord.models.params import ModelDeclaration
from accord.models.params.encoders import EncoderParams


class UnimodalDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.unimodal.Unimodal`."""

    class Params(EncoderParams):
        modality: Literal["text", "audio", "visual"] = "text"
        head_hidden: int = 64
