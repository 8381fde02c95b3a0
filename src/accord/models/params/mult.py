"""What a config needs of MulT (:class:`accord.models.mult.MulT`), without torch: its ``Params`` and
defaults (:class:`~accord.models.params.ModelDeclaration`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from accord.models.params import ModelDeclaration, ModelParams


class MulTDeclaration(ModelDeclaration):
    """``model.params`` and the defaults of :class:`accord.models.mult.MulT`."""

    class Params(ModelParams):
        hidden: int = Field(32, ge=2, description="d: width of every projected modality (memory width is 2d)")
        heads: int = Field(4, ge=1, description="attention heads (must divide hidden)")
        layers: int = Field(2, ge=1, description="layers per crossmodal transformer")
        mem_layers: int | None = Field(None, ge=1, description="memory transformer layers (None: max(layers, 3))")
        conv_kernel: int = Field(1, ge=1, description="odd kernel size of the input Conv1d projections")
        attn_dropout: float = Field(0.1, ge=0, lt=1, description="attention dropout of text-target blocks")
        attn_dropout_audio: float = Field(0.0, ge=0, lt=1, description="attention dropout, audio-target blocks")
        attn_dropout_visual: float = Field(0.0, ge=0, lt=1, description="attention dropout, visual-target")
        attn_dropout_mem: float | None = Field(
            0.0, ge=0, lt=1, description="attention dropout of the memory transformers (None: = attn_dropout)")
        relu_dropout: float = Field(0.1, ge=0, lt=1)
        res_dropout: float = Field(0.1, ge=0, lt=1)
        embed_dropout: float = Field(0.25, ge=0, lt=1, description="on embeddings and on the raw text input")
        out_dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the output head")
        pool: Literal["last", "mean"] = Field("last", description="pooling of each memory sequence")
        downsample_text: int = Field(1, ge=1, description="average every k projected text steps (1: off)")
        downsample_audio: int = Field(4, ge=1, description="average every k projected audio steps (1: off)")
        downsample_visual: int = Field(4, ge=1, description="average every k projected visual steps (1: off)")
        batch_streams: bool = Field(
            True, description="one step per modality (utterance-level data): run the six crossmodal and the three "
                              "memory transformers as one batched computation each (same model, fewer ops)")
