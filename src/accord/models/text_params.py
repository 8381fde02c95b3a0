"""The ``model.params.text_encoder`` section every model accepts (kept apart from the encoder itself, which imports
transformers lazily and the model blocks)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TextEncoderParams(BaseModel):
    """``model.params.text_encoder``: where a model's text branch comes from (:mod:`accord.models.modules.
    text_encoder`). Every model accepts it; ``source: features`` (the default) changes nothing."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["features", "pretrained"] = Field(
        "features", description="features: the dataset's text features; pretrained: a transformer on the tokens")
    path: str | None = Field(
        None, description="local Hugging Face folder of the transformer (None: the packaged all-MiniLM-L6-v2)")
    finetune: bool = Field(True, description="train the encoder (False: frozen, no gradient at all)")
    freeze_layers: int = Field(0, ge=0, description="freeze the embeddings and the lowest N transformer layers")
    pooling: Literal["cls", "mean"] = Field("mean", description="sentence vector: first token or masked mean")
    lr: float | None = Field(None, gt=0, description="the encoder's learning rate (None: train.lr)")
    weight_decay: float | None = Field(None, ge=0, description="the encoder's weight decay (None: train's)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")
    max_tokens: int = Field(50, ge=2, description="tokens per transcript when raw text is tokenized (MMSA: 50)")

    @property
    def pretrained(self) -> bool:
        return self.source == "pretrained"
