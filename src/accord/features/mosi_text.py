"""MiniLM sentence vectors of many transcripts, cached on disk (used by MOSI-U's ``text_features=minilm``).

The cache lives in ``$ACCORD_CACHE`` (default ``~/.cache/accord``) under ``minilm/<hash>.npy``, keyed by a SHA-256
of the extractor settings and the exact list of transcripts, and is written atomically. A damaged cache file is
recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from accord.io import atomic_write_bytes


def cache_dir() -> Path:
    """``$ACCORD_CACHE`` or ``~/.cache/accord``."""
    env = os.environ.get("ACCORD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "accord"


def minilm_vectors(texts: list[str]) -> np.ndarray:
    """``[N, 384]`` float32 sentence vectors of ``texts`` (zeros for an empty text), cached on disk."""
    from accord.features import text as text_fx

    key = hashlib.sha256((json.dumps(text_fx.settings(), sort_keys=True) + "\0" + "\n".join(texts))
                         .encode("utf-8")).hexdigest()[:24]
    file = cache_dir() / "minilm" / f"{key}.npy"
    if file.is_file():
        try:
            arr = np.load(file, allow_pickle=False)
            if arr.shape == (len(texts), text_fx.DIM):
                return arr
        except (OSError, ValueError):
            pass
    vecs = np.stack([v for _, v in text_fx.encode(texts)]) if texts else np.zeros((0, text_fx.DIM), np.float32)
    buf = io.BytesIO()
    np.save(buf, vecs.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(file, buf.getvalue())
    return vecs.astype(np.float32)
