"""Transcript tokens for pretrained text encoders: tokenize with a local Hugging Face tokenizer, cached; vocab check.

:func:`tokenize_texts` turns transcripts into ``[N, 3, L]`` long tensors in MMSA's ``text_bert`` layout (row 0 the
token ids, row 1 the attention mask, row 2 the segment ids, all 0 here), right-padded with the tokenizer's pad id,
``L`` the longest tokenized text (at most ``max_tokens``). The tokenizer is read from a local folder only
(``local_files_only=True``, ``HF_HUB_OFFLINE=1``): nothing is ever fetched from a hub.

Results are cached in ``$ACCORD_CACHE`` (default ``~/.cache/accord``) under ``tokens/<sha256>.npy``, keyed by
``max_tokens``, the contents of the tokenizer's files and the exact texts, written atomically; a damaged cache
file is recomputed.

:func:`check_vocab` refuses tokens whose ids do not fit an encoder's vocabulary (tokens made with another
tokenizer), in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from accord.core.errors import DataError
from accord.core.extras import require
from accord.core.io import read_npy, write_npy
from accord.data.sentence_vectors import cache_dir  # the one $ACCORD_CACHE rule

#: Files that make a folder a tokenizer folder (one of them must exist).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
#: Files whose contents key the cache (whichever exist).
KEY_FILES = (*TOKENIZER_FILES, "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
             "added_tokens.json")


def _check_folder(folder: Path) -> None:
    """A one-line DataError unless ``folder`` is a directory holding a tokenizer file."""
    expected = "a Hugging Face tokenizer folder with tokenizer.json or vocab.txt (e.g. from save_pretrained)"
    if not folder.is_dir():
        raise DataError(f"{folder}: tokenizer folder not found; expected {expected}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"{folder}: holds no tokenizer; expected {expected}")


def _cache_key(folder: Path, texts: list[str], max_tokens: int) -> str:
    """SHA-256 of ``max_tokens``, the contents of the tokenizer's key files and the exact texts."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": "text_bert", "max_tokens": max_tokens}).encode("utf-8"))
    for name in KEY_FILES:
        file = folder / name
        if file.is_file():
            h.update(f"\0{name}\0".encode())
            h.update(hashlib.sha256(file.read_bytes()).digest())
    h.update(b"\0texts\0")
    h.update(json.dumps(texts, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _load_tokenizer(folder: Path) -> Any:
    """The tokenizer in ``folder``, loaded offline (a one-line DataError when transformers cannot read it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = require("transformers", "pretrained text encoders")
    transformers.utils.logging.set_verbosity_error()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise DataError(f"{folder}: cannot load the tokenizer ({type(err).__name__}: {detail})") from None


def _encode(tokenizer: Any, texts: list[str], max_tokens: int) -> np.ndarray:
    """``[N, 3, L]`` int64 tokens of ``texts``, right-padded with the tokenizer's pad id, segments 0."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=False)["input_ids"] if texts else []
    for i, row in enumerate(ids):
        if not row:
            raise DataError(f"text {i} ({texts[i][:40]!r}) tokenizes to no token; every sample needs one")
    width = max([len(row) for row in ids], default=1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.zeros((len(ids), 3, width), dtype=np.int64)
    out[:, 0, :] = pad
    for i, row in enumerate(ids):
        out[i, 0, : len(row)] = row
        out[i, 1, : len(row)] = 1
    return out


def _read_cache(file: Path, n: int) -> np.ndarray | None:
    """The cached tokens of ``n`` texts in ``file``, or None when absent or damaged."""
    arr = read_npy(file)
    ok = arr is not None and arr.ndim == 3 and arr.shape[0] == n and arr.shape[1] == 3 and arr.dtype == np.int64
    return arr if ok else None


def tokenize_texts(texts: list[str], tokenizer_dir: str | os.PathLike[str], max_tokens: int = 50) -> Tensor:
    """Long ``[N, 3, L]`` tokens of ``texts`` (ids, attention mask, segment ids 0) from the local tokenizer in
    ``tokenizer_dir``, truncated to ``max_tokens`` (special tokens included), cached on disk.

    Raises:
        DataError: the folder does not exist or holds no tokenizer, or a text tokenizes to nothing.
        MissingExtraError: transformers is not installed.
    """
    if max_tokens < 1:
        raise DataError(f"max_tokens must be at least 1, got {max_tokens}")
    folder = Path(tokenizer_dir).expanduser()
    _check_folder(folder)
    file = cache_dir() / "tokens" / f"{_cache_key(folder, texts, max_tokens)}.npy"
    cached = _read_cache(file, len(texts))
    if cached is not None:
        return torch.from_numpy(cached)
    arr = _encode(_load_tokenizer(folder), texts, max_tokens)
    write_npy(file, arr)
    return torch.from_numpy(arr)


def tokenizer(tokenizer_dir: str | os.PathLike[str], max_tokens: int = 50) -> Callable[[list[str]], Tensor]:
    """The local tokenizer in ``tokenizer_dir``, loaded once, as texts → long ``[N, 3, L]`` tokens exactly as
    :func:`tokenize_texts` makes them, without its disk cache (for prediction: each request's texts differ)."""
    if max_tokens < 1:
        raise DataError(f"max_tokens must be at least 1, got {max_tokens}")
    folder = Path(tokenizer_dir).expanduser()
    _check_folder(folder)
    tok = _load_tokenizer(folder)
    return lambda texts: torch.from_numpy(_encode(tok, list(texts), max_tokens))


def check_vocab(tokens: Tensor, vocab_size: int, where: str, encoder: str) -> None:
    """A one-line :class:`DataError` when a token id of ``tokens`` (``[N, 3, L]``, row 0) is ``>= vocab_size``:
    the tokens were made with another tokenizer than the encoder ``encoder``'s."""
    if tokens.numel() == 0:
        return
    top = int(tokens[:, 0].max().item())
    if top >= vocab_size:
        raise DataError(
            f"{where}: text token ids reach {top} but the text encoder {encoder} has a vocabulary of {vocab_size} "
            f"(ids 0..{vocab_size - 1}); use the encoder the tokens were made with, or tokenize the raw text "
            "with this encoder's tokenizer (accord.data.tokens.tokenize_texts)"
        )
