"""Audio features with openSMILE's eGeMAPS v02 (the extended Geneva minimalistic acoustic parameter set).

- ``sequence``: the 25 low-level descriptors (pitch, jitter, shimmer, loudness, HNR, formants, spectral slope,
  MFCC 1-4, ...) per 10 ms frame, averaged over blocks of ``pool`` frames (default 10 → one step per 100 ms),
- ``vector``: the 88 eGeMAPS functionals of the whole clip.

The signal is decoded to 16 kHz mono through the shipped ffmpeg (:mod:`accord.features.media`), so any container
works. A clip without an audio track, or one shorter than ``MIN_SECONDS``, has no audio features (length 0).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from accord.core.extras import require

SAMPLE_RATE = 16000
LLD_DIM = 25
FUNC_DIM = 88
MIN_SECONDS = 0.25


def settings(pool: int = 10) -> dict[str, Any]:
    """The audio extractor's settings (stored in dataset manifests and checked at prediction time)."""
    return {"name": "egemaps", "feature_set": "eGeMAPSv02", "sample_rate": SAMPLE_RATE, "pool": int(pool),
            "sequence_dim": LLD_DIM, "vector_dim": FUNC_DIM}


@lru_cache(maxsize=1)
def _smiles() -> tuple[Any, Any]:
    opensmile = require("opensmile", "openSMILE audio features")
    lld = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                          feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    func = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)
    return lld, func


def extract(signal: np.ndarray | None, pool: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(sequence [T, 25], vector [88])`` of a 16 kHz mono signal; no/too short signal → ``([0, 25], zeros)``."""
    empty = (np.zeros((0, LLD_DIM), np.float32), np.zeros(FUNC_DIM, np.float32))
    if signal is None or len(signal) < MIN_SECONDS * SAMPLE_RATE:
        return empty
    lld, func = _smiles()
    frames = lld.process_signal(signal, SAMPLE_RATE).to_numpy(dtype=np.float64)
    vec = func.process_signal(signal, SAMPLE_RATE).to_numpy(dtype=np.float64).reshape(-1)
    if pool > 1 and len(frames):
        n = int(np.ceil(len(frames) / pool))
        frames = np.stack([frames[i * pool:(i + 1) * pool].mean(axis=0) for i in range(n)])
    frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
    vec = np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)
    return frames.astype(np.float32), vec.astype(np.float32)
