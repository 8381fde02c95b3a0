"""Transcript tokens for a pretrained text branch: the dataset's stored tokens (MMSA ``text_bert``) checked against
the encoder's vocabulary, or its raw transcripts tokenized once with the encoder's own tokenizer (cached on disk).

The training floor does this because it is where the model's config (which encoder) meets the dataset (which
tokens or transcripts): data knows no model, and a model reads ``Batch.text_tokens`` only.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from accord.config import DataConfig
from accord.core.errors import DataError
from accord.data.dataset import MultimodalDataset
from accord.data.pool_time import pool_time
from accord.data.tokens import check_vocab, tokenize_texts
from accord.models.modules.text_encoder import TextEncoderParams, encoder_folder


def text_encoder_params(model_params: dict[str, Any]) -> TextEncoderParams | None:
    """The model's ``text_encoder`` section when its source is ``pretrained`` (else ``None``)."""
    raw = model_params.get("text_encoder")
    if not raw:
        return None
    p = TextEncoderParams.model_validate(raw)  # a dict, or the section itself
    return p if p.pretrained else None


def prepare_text_tokens(ds: MultimodalDataset, model_params: dict[str, Any]) -> MultimodalDataset:
    """``ds`` with ``text_tokens`` in every split for a model whose text branch is a pretrained encoder.

    A split that has tokens keeps them after :func:`~accord.data.tokens.check_vocab` against the encoder's
    vocabulary; a split without is tokenized from its ``raw_text`` with the encoder's tokenizer (``max_tokens``,
    cached). A split with neither tokens nor transcripts is a one-line DataError. Returns a new dataset object (the
    given one, possibly cached and shared by other runs, is not changed); ``ds`` itself for any other model.
    """
    p = text_encoder_params(model_params)
    if p is None:
        return ds
    folder = encoder_folder(p.path)
    vocab = int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    splits = {}
    for name, part in ds.splits.items():
        where = f"{ds.source} [{name}]"
        if part.text_tokens is not None:
            check_vocab(part.text_tokens, vocab, where, str(folder))
            splits[name] = part
            continue
        if not any(t.strip() for t in part.raw_text):
            raise DataError(f"{where}: the pretrained text encoder needs transcript tokens or raw text, and this "
                            f"split has neither (no text_bert, raw_text empty)")
        splits[name] = dataclasses.replace(part, text_tokens=tokenize_texts(part.raw_text, folder, p.max_tokens))
    return dataclasses.replace(ds, splits=splits)


def prepare_inputs(ds: MultimodalDataset, data: DataConfig, model_params: dict[str, Any]) -> MultimodalDataset:
    """What a run's model reads, from the built dataset ``ds``: ``data.pool_time`` applied
    (:func:`~accord.data.pool_time.pool_time`), then :func:`prepare_text_tokens`. Training, evaluation and the
    robustness curves all go through here, so a run is evaluated on the inputs it was trained on."""
    return prepare_text_tokens(pool_time(ds, data.pool_time), model_params)
