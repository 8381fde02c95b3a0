"""Decoding any audio/video container through the ffmpeg binary that ``imageio-ffmpeg`` ships.

No system ffmpeg is needed. Every function raises a one-line :class:`MediaError` naming the file when the file
is missing, unreadable or corrupt; a missing stream (a video without an audio track, an audio file without
pictures) is not an error: :func:`probe` reports it and the decoders return ``None``.

The media packages are optional (``pip install 'accord[media]'``); they are imported inside functions, and
:func:`require` turns a missing one into one line saying what to install.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accord.core.errors import DataError
from accord.core.extras import INSTALL_HINT, MissingExtraError, require

AUDIO_EXTS = {".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus", ".wma"}
VIDEO_EXTS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
MEDIA_EXTS = AUDIO_EXTS | VIDEO_EXTS


class MediaError(DataError):
    """A media file cannot be decoded (missing, corrupt, unsupported)."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by ``imageio-ffmpeg``."""
    iio = require("imageio_ffmpeg", "decoding media")
    try:
        return str(iio.get_ffmpeg_exe())
    except RuntimeError as err:  # pragma: no cover - broken install
        raise MissingExtraError(
            f"imageio-ffmpeg has no usable ffmpeg binary ({err}); reinstall {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a file."""

    path: str
    duration: float
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


def _run(args: list[str], path: Path, timeout: float = 600.0) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path}: ffmpeg did not finish within {timeout:.0f} s") from None
    except OSError as err:
        raise MediaError(f"{path}: cannot run ffmpeg ({err})") from None


def _last_error(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown ffmpeg error"


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Streams and duration of ``path`` (parsed from ``ffmpeg -i``); corrupt or missing files raise MediaError."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: not found")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file (0 bytes); not a media file")
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)], p, timeout=60)
    text = proc.stderr.decode("utf-8", "replace")
    if "Invalid data found" in text or "Stream #" not in text:
        raise MediaError(f"{p}: cannot decode as audio/video ({_last_error(proc.stderr)})")
    dur = 0.0
    m = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if m:
        dur = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    has_audio = bool(re.search(r"Stream #\S+.*?: Audio:", text))
    video_lines = [ln for ln in text.splitlines() if re.search(r"Stream #\S+.*?: Video:", ln)]
    # cover art (attached pictures) is not a video track
    video_lines = [ln for ln in video_lines if "attached pic" not in ln]
    width = height = 0
    fps = 0.0
    if video_lines:
        sz = re.search(r",\s*(\d{2,5})x(\d{2,5})", video_lines[0])
        if sz:
            width, height = int(sz.group(1)), int(sz.group(2))
        fr = re.search(r"([\d.]+)\s*fps", video_lines[0])
        if fr:
            fps = float(fr.group(1))
    return MediaInfo(str(p), dur, has_audio, bool(video_lines), width, height, fps)


def decode_audio(path: str | os.PathLike[str], sample_rate: int = 16000,
                 info: MediaInfo | None = None) -> np.ndarray | None:
    """Mono float32 samples in [-1, 1] at ``sample_rate``; ``None`` when the file has no audio track."""
    p = Path(path)
    info = info or probe(p)
    if not info.has_audio:
        return None
    proc = _run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-vn", "-ac", "1", "-ar", str(sample_rate),
                 "-f", "f32le", "-"], p)
    if proc.returncode != 0:
        raise MediaError(f"{p}: cannot decode the audio track ({_last_error(proc.stderr)})")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def scaled_size(info: MediaInfo, max_side: int) -> tuple[int, int]:
    """``(width, height)`` of ``info``'s video frames decoded with the long side at most ``max_side`` (never enlarged;
    even numbers, as the encoder needs)."""
    scale = min(1.0, max_side / max(info.width, info.height, 1))
    return max(2, int(round(info.width * scale / 2)) * 2), max(2, int(round(info.height * scale / 2)) * 2)


def decode_frames(path: str | os.PathLike[str], fps: float = 5.0, max_side: int = 480,
                  info: MediaInfo | None = None) -> np.ndarray | None:
    """RGB uint8 frames ``[F, H, W, 3]`` sampled at ``fps`` (long side scaled down to ``max_side``); ``None``
    when the file has no video track."""
    p = Path(path)
    info = info or probe(p)
    if not info.has_video or info.width <= 0 or info.height <= 0:
        return None
    w, h = scaled_size(info, max_side)
    proc = _run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-an", "-vf", f"fps={fps:g},scale={w}:{h}",
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], p)
    if proc.returncode != 0:
        raise MediaError(f"{p}: cannot decode the video track ({_last_error(proc.stderr)})")
    frame = w * h * 3
    n = len(proc.stdout) // frame
    if n == 0:
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    return np.frombuffer(proc.stdout[: n * frame], dtype=np.uint8).reshape(n, h, w, 3)


def make_test_media(out: str | os.PathLike[str], kind: str, seconds: float = 2.0, **kw: Any) -> Path:
    """Write a small synthetic clip with the shipped ffmpeg (for tests and demos).

    ``kind``: ``tone`` (a sine wave, audio only), ``video_no_audio`` (``testsrc`` pattern, no audio track),
    ``video_tone`` (a colour video without a face, with a sine tone), ``silent_audio`` (``anullsrc``). Options:
    ``freq`` (Hz of the tone), ``size`` (``WxH`` of a video, default ``160x120``).
    """
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    freq = float(kw.get("freq", 220.0))
    size = str(kw.get("size", "160x120"))
    inputs: dict[str, list[str]] = {
        "tone": ["-f", "lavfi", "-i", f"sine=frequency={freq:g}:duration={seconds:g}"],
        "silent_audio": ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", f"{seconds:g}"],
        "video_no_audio": ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration={seconds:g}"],
        "video_tone": ["-f", "lavfi", "-i", f"color=c=blue:size={size}:rate=10:duration={seconds:g}",
                       "-f", "lavfi", "-i", f"sine=frequency={freq:g}:duration={seconds:g}", "-shortest"],
    }
    if kind not in inputs:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(inputs)}")
    codec = ["-pix_fmt", "yuv420p"] if kind.startswith("video") else []
    proc = _run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *inputs[kind], *codec, str(o)], o)
    if proc.returncode != 0:
        raise MediaError(f"{o}: ffmpeg could not write the test clip ({_last_error(proc.stderr)})")
    return o
