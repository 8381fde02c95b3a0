"""Transcripts of clips, and their text features (the MiniLM encoder of :mod:`accord.data.sentence_vectors`).

No speech recogniser is shipped: the transcript comes from ``--text``, a sidecar ``.txt``/``.srt`` or the CSV.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from accord.data.sentence_vectors import DIM, MAX_TOKENS, MODEL_NAME, encode, encode_vectors, model_dir, settings

__all__ = ["DIM", "MAX_TOKENS", "MODEL_NAME", "encode", "encode_vectors", "model_dir", "read_transcript", "settings",
           "sidecar_transcript"]

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
