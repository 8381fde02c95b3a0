"""``accord serve RUN_DIR``: a trained run behind HTTP (FastAPI, run by uvicorn). The face's other half: like
:mod:`accord.cli` it sits on top and calls only :mod:`accord.api` (and the core's errors); see docs/serving.md.

The run is loaded ONCE at start-up (:class:`accord.api.Predictor`); each request is parsed and checked here, then
scored in a worker thread (the predictor's locks make the model and the media extraction thread-safe), so the event
loop keeps answering ``/health`` while a clip is extracted.

Endpoints: ``POST /predict`` (JSON ``{"text": ...}``, or multipart with a ``text`` field and/or an uploaded audio or
video ``file``), ``POST /predict/batch`` (a JSON list of texts or ``{"text": ...}`` items), ``GET /health``,
``GET /model``; OpenAPI docs at ``/docs``. A bad request is answered 4xx with ``{"error": "<one line>"}`` naming
the field and what was expected; the server stays up. Uploads are size-checked while they arrive, sniffed for a
known audio/video container, written to a temporary file (removed afterwards) and extracted with the run's
settings.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accord import api
from accord.core.errors import AccordError, CheckpointError, ConfigError
from accord.core.extras import MissingExtraError

SERVE_HINT = "pip install 'accord[serve]'"
try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
except ImportError as _err:  # pragma: no cover - CI installs the serve extra
    raise MissingExtraError(f"accord serve needs the optional package 'fastapi' ({_err}); install it with "
                            f"{SERVE_HINT}") from None

__all__ = ["MAX_TEXT_CHARS", "RequestError", "create_app", "run_server", "sniff_media"]

MAX_TEXT_CHARS = 5000
"""Longest accepted text (characters); the text encoder reads at most its first 128 word pieces anyway."""

MAX_JSON_BYTES = 1 << 20
"""Largest JSON body of ``POST /predict`` (bytes); a batch may be ``max_batch`` times that."""



class RequestError(Exception):
    """A bad request: its HTTP status and one line naming the field and what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


# ------------------------------------------------------------------------------------------------ uploads


def _wav_data_size(head: bytes) -> int | None:
    """The ``data`` chunk size of a RIFF/WAVE header (``None`` when the chunk is not within ``head``)."""
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"data":
            return size
        pos += 8 + size + (size & 1)
    return None


def sniff_media(data: bytes) -> str | None:
    """The container of an upload from its first bytes (``wav``, ``mp3``, ``flac``, ``ogg``, ``mp4``, ``matroska``,
    ``avi``, ``flv``, ``mpeg``, ``asf``, ``aac``), or ``None`` when it is none of them."""
    head = data[:64]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    return None


def check_upload(name: str, data: bytes) -> str:
    """The upload's extension after the checks a request can fail without decoding it: a name with a media
    extension, not empty, a known container, a WAV with samples."""
    ext = Path(name).suffix.lower()
    exts = api.media_extensions()  # those accord extract reads
    if ext not in exts:
        raise RequestError(415, f"file: {name!r} is not an audio or video file (expected one of "
                                f"{', '.join(exts)})")
    if not data:
        raise RequestError(400, f"file: {name!r} is an empty upload (0 bytes)")
    kind = sniff_media(data)
    if kind is None:
        raise RequestError(415, f"file: {name!r} has a {ext} name but its content is not a known audio or video "
                                "container")
    if kind == "wav" and _wav_data_size(data[:4096]) == 0:
        raise RequestError(422, f"file: {name!r} is a zero-length audio (its WAV data chunk holds no samples)")
    return ext


# ------------------------------------------------------------------------------------------------ requests


def _text(value: Any, where: str, max_chars: int) -> str:
    """A request's text: a non-empty string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise RequestError(422, f"{where}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RequestError(422, f"{where}: empty text (expected a transcript with words)")
    if len(value) > max_chars:
        raise RequestError(413, f"{where}: {len(value)} characters, the limit is {max_chars}")
    return value


def _json(body: bytes) -> Any:
    """A JSON body, or a 400 naming what is wrong with it (not UTF-8, not JSON)."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"body: not UTF-8 text (byte {err.start})") from None
    if not raw.strip():
        raise RequestError(400, "body: empty (expected JSON)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise RequestError(400, f"body: malformed JSON ({err.msg} at line {err.lineno} column {err.colno})") from None


def _item(value: Any, where: str, max_chars: int) -> str:
    """``{"text": str}`` (no other field) or a plain string -> the text."""
    if isinstance(value, str):
        return _text(value, where, max_chars)
    if not isinstance(value, dict):
        raise RequestError(422, f"{where}: expected an object {{\"text\": ...}} or a string, got "
                                f"{type(value).__name__}")
    unknown = sorted(set(value) - {"text"})
    if unknown:
        raise RequestError(422, f"{where}: unknown field {unknown[0]!r} (expected only \"text\"; upload a clip "
                                "as multipart to POST /predict)")
    if "text" not in value:
        raise RequestError(422, f"{where}: missing \"text\" (expected {{\"text\": \"...\"}})")
    return _text(value["text"], f"{where}.text", max_chars)


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or received)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"{what}: {int(declared)} bytes, the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"{what}: more than {limit} bytes, the limit is {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - starlette re-reads a received body from here (request.form())
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# ------------------------------------------------------------------------------------------------ the app

PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object", "additionalProperties": False, "required": ["text"],
                                        "properties": {"text": {"type": "string", "maxLength": MAX_TEXT_CHARS}}},
                             "example": {"text": "it was really good"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "text": {"type": "string", "description": "transcript of the clip (optional)"},
            "file": {"type": "string", "format": "binary", "description": "an audio or video file"}}}},
    },
}
BATCH_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": "array", "items": {"anyOf": [
        {"type": "string"},
        {"type": "object", "additionalProperties": False, "required": ["text"],
         "properties": {"text": {"type": "string"}}}]}},
        "example": ["it was really good", {"text": "a total waste of time"}]}},
}


def create_app(predictor: api.Predictor, max_upload_mb: float = 50.0, max_batch: int = 64,
               max_text_chars: int = MAX_TEXT_CHARS) -> FastAPI:
    """The FastAPI app serving ``predictor`` (loaded once by the caller) with these limits."""
    if max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb: expected a positive size, got {max_upload_mb:g}")
    if max_batch < 1:
        raise ConfigError(f"--max-batch: expected at least 1, got {max_batch}")
    upload_limit = int(max_upload_mb * 1024 * 1024)
    batch_limit = max(MAX_JSON_BYTES, max_batch * max_text_chars * 4 + 65536)
    info = predictor.describe()
    started = time.time()
    counts = {"requests": 0, "errors": 0}
    count_lock = threading.Lock()

    app = FastAPI(title="Accord", version="1",
                  description=f"Multimodal sentiment of run `{info['run']}` ({info['method']}, {info['task']}).")
    app.state.predictor = predictor

    def error(status: int, message: str) -> JSONResponse:
        with count_lock:
            counts["errors"] += 1
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"{request.url.path}: no such route (routes: POST /predict, POST /predict/batch, "
                              "GET /health, GET /model, GET /docs)")
        if exc.status_code == 405:
            return error(405, f"{request.method} {request.url.path}: method not allowed")
        return error(exc.status_code, f"{request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    async def score(call: Callable[[], Any]) -> Any:
        """Run a prediction in a worker thread; an AccordError of the input is a 422, a missing extra a 501."""
        with count_lock:
            counts["requests"] += 1
        try:
            return await run_in_threadpool(call)
        except MissingExtraError as err:
            raise RequestError(501, str(err)) from None
        except AccordError as err:
            raise RequestError(422, str(err)) from None
        except Exception as err:  # noqa: BLE001 - one failing request must not stop the server
            raise RequestError(500, f"internal error: {type(err).__name__}: {err}") from None

    @app.get("/health", summary="Liveness: the model is loaded and the server answers")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "run": info["run"], "method": info["method"],
                "uptime_s": round(time.time() - started, 1), **counts}

    @app.get("/model", summary="What is served: method, task, classes, training data, test metrics, extractor")
    async def model() -> dict[str, Any]:
        return {**info, "limits": {"max_upload_mb": max_upload_mb, "max_batch": max_batch,
                                   "max_text_chars": max_text_chars, "media_extensions": list(api.media_extensions())}}

    @app.post("/predict", summary="Score a text, or an uploaded clip (with an optional transcript)",
              openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        kind = _media_type(request)
        if kind == "application/json":
            data = _json(await _body(request, MAX_JSON_BYTES, "body"))
            if not isinstance(data, dict):
                raise RequestError(422, f"body: expected a JSON object {{\"text\": ...}}, got {type(data).__name__}")
            text = _item(data, "body", max_text_chars)
            res = await score(lambda: predictor.predict(text=text))
        elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            res = await _predict_upload(request)
        else:
            raise RequestError(415, f"content-type: {kind or 'none'!r} not supported (expected application/json, "
                                    "multipart/form-data or a url-encoded form)")
        res["seconds"]["request"] = round(time.perf_counter() - t0, 4)
        return dict(res)

    async def _predict_upload(request: Request) -> dict[str, Any]:
        await _body(request, upload_limit, "upload")
        form = await request.form(max_files=2, max_fields=4)
        try:
            unknown = sorted(set(form.keys()) - {"text", "file"})
            if unknown:
                raise RequestError(422, f"form field {unknown[0]!r}: unknown (expected \"text\" and/or \"file\")")
            for key in ("text", "file"):
                if len(form.getlist(key)) > 1:
                    raise RequestError(422, f"form field {key!r}: given {len(form.getlist(key))} times, expected once")
            text: str | None = None
            raw_text = form.get("text")
            if raw_text is not None:
                if not isinstance(raw_text, str):
                    raise RequestError(422, "form field 'text': expected a string, got a file")
                text = _text(raw_text, "form field 'text'", max_text_chars)
            upload = form.get("file")
            if upload is None:
                if text is None:
                    raise RequestError(422, "request: expected a \"text\" field and/or an uploaded \"file\", got "
                                            "neither")
                return dict(await score(lambda: predictor.predict(text=text)))
            if not isinstance(upload, UploadFile):
                raise RequestError(422, "form field 'file': expected an uploaded file, got a plain string")
            name = upload.filename or "upload"
            data = await upload.read()
            ext = check_upload(name, data)
            fd, tmp = tempfile.mkstemp(prefix="accord-upload-", suffix=ext)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                res = await score(lambda: predictor.predict(text=text, clip=tmp))
            except RequestError as err:  # name the upload, not the temporary file
                raise RequestError(err.status, err.message.replace(tmp, f"file {name!r}")) from None
            finally:
                Path(tmp).unlink(missing_ok=True)
            res["clip"] = name
            return dict(res)
        finally:
            await form.close()

    @app.post("/predict/batch", summary="Score a list of texts in one forward",
              openapi_extra={"requestBody": BATCH_BODY})
    async def predict_batch(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        kind = _media_type(request)
        if kind != "application/json":
            raise RequestError(415, f"content-type: {kind or 'none'!r} not supported (expected application/json: a "
                                    "list of texts)")
        data = _json(await _body(request, batch_limit, "body"))
        if not isinstance(data, list):
            raise RequestError(422, f"body: expected a JSON list of texts or {{\"text\": ...}} items, got "
                                    f"{type(data).__name__}")
        if not data:
            raise RequestError(422, "body: empty batch (expected at least one item)")
        if len(data) > max_batch:
            raise RequestError(413, f"body: {len(data)} items, the limit is {max_batch} (--max-batch)")
        texts = [_item(v, f"item {k}", max_text_chars) for k, v in enumerate(data)]
        results = await score(lambda: predictor.predict_batch(texts))
        return {"n": len(results), "results": results, "seconds": round(time.perf_counter() - t0, 4)}

    return app


def run_server(run_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
               max_upload_mb: float = 50.0, max_batch: int = 64, seed: int | None = None,
               log: Callable[[str], None] | None = None, compile: str = "off") -> None:
    """Load ``run_dir`` once and serve it with uvicorn on ``host:port`` until stopped (Ctrl-C / SIGTERM);
    ``compile`` (``inductor``, ``eager``): the model under ``torch.compile``, its graphs built by the warm-up."""
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - CI installs the serve extra
        raise MissingExtraError(f"accord serve needs the optional package 'uvicorn' ({err}); install it with "
                                f"{SERVE_HINT}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"--port: expected 1..65535, got {port}")
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: not a run directory")
    predictor = api.Predictor(run_dir, seed=seed, compile=compile)
    app = create_app(predictor, max_upload_mb=max_upload_mb, max_batch=max_batch)
    warm = predictor.warm_up()
    if log:
        warmed = "text encoder and compiled model" if compile != "off" else "text encoder"
        log(f"serving {run_dir} ({predictor.method}, {predictor.task}; loaded in {predictor.load_seconds:.1f} s, "
            f"{warmed} warmed up in {warm:.1f} s) at http://{host}:{port} (docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
