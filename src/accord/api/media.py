"""Raw media: offline feature extraction (``accord extract``) and scoring one clip with a trained run
(``accord predict``). Needs the optional extra ``pip install 'accord[media]'`` when a clip is actually read."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from accord.api.runs import load
from accord.core.errors import CheckpointError
from accord.core.native_log import capture_native_output
from accord.core.types import MODALITIES
from accord.features.extract import ExtractReport, Level, extract_clip, extract_folder, extractor_settings
from accord.features.predict import (
    check_settings,
    clip_batch,
    dataset_meta,
    format_prediction,
    prediction_result,
    require_usable,
)
from accord.features.visual import DEFAULT_RETRY_SIDE
from accord.training.trainer import load_run

__all__ = ["extract", "format_prediction", "predict_clip"]


def extract(source: str | os.PathLike[str], out: str | os.PathLike[str], csv_path: str | os.PathLike[str] | None = None,
            text: str | None = None, level: Level = "vector", fps: float = 5.0, audio_pool: int = 10,
            on_clip: Callable[[str, str], None] | None = None, progress: bool = True, max_side: int = 480,
            face_retry_side: int = DEFAULT_RETRY_SIDE) -> ExtractReport:
    """Offline features (MiniLM text, eGeMAPS audio, face geometry) of a clip or a folder of clips into
    ``out/clips`` (resumable), and a safe-format dataset ``out/dataset`` when a CSV ``id,text,label,split`` labels
    clips in train, valid and test. ``on_clip(id, status)`` is called per clip. Frames are scaled to ``max_side``
    for face landmarks; a clip without a face there is searched again at ``face_retry_side`` in tiles (0: no
    retry). Native (MediaPipe/TFLite) logging goes to ``out/extract.log``."""
    settings = extractor_settings(level, fps, audio_pool, max_side, face_retry_side)
    return extract_folder(source, out, csv_path=str(csv_path) if csv_path else None, text=text, settings=settings,
                          progress=progress, on_clip=on_clip)


def predict_clip(clip: str | os.PathLike[str], run_dir: str | os.PathLike[str], text: str | None = None,
                 seed: int | None = None, native_log: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score one clip with the run's model (``seed``'s checkpoint, default the first); a JSON-ready dict.

    The clip is extracted with the extractor settings of the run's training dataset (checked against the installed
    extractor and the model's input sizes) and standardised with its statistics; a modality the clip lacks or the
    extractor cannot produce is fed as absent and named in ``modalities`` / ``degraded``. What MediaPipe/TFLite write
    to file descriptor 2 while the clip is read is discarded, or appended to ``native_log`` when given (errors that
    matter are raised as one-line Accord errors). Keys: ``clip``, ``run``,
    ``method``, ``transcript``, ``duration_s``, ``score`` (regression) or ``class`` and ``probabilities``,
    ``polarity``, ``modalities``, ``degraded``, ``diagnostics``, ``per_modality``, ``seconds``
    (:func:`format_prediction` prints it).
    """
    t0 = time.perf_counter()
    cfg, info = load_run(Path(run_dir))
    if not info:
        raise CheckpointError(f"{run_dir}/dataset.json: missing (needed for the model's input sizes)")
    dims = {m: int(info["dims"][m]) for m in MODALITIES}
    meta = dataset_meta(cfg.data.name, cfg.data.path, cfg.data.params)
    ex = check_settings(run_dir, meta, dims)
    model = load(Path(run_dir), seed=seed, device="cpu")
    t_load = time.perf_counter() - t0
    with capture_native_output(native_log):
        cf = extract_clip(clip, text, ex)
    batch, absent = clip_batch(cf, ex, dims, meta)
    require_usable(clip, batch, absent)
    t1 = time.perf_counter()
    with torch.inference_mode():
        out = model(batch)
    result = prediction_result(cf, out, absent, clip=clip, run_dir=run_dir, method=cfg.model.name,
                               task=cfg.task.kind, class_names=info.get("class_names"))
    result["seconds"] = {"load_model": round(t_load, 3), **{k: round(v, 3) for k, v in cf.seconds.items()},
                         "model": round(time.perf_counter() - t1, 4), "total": round(time.perf_counter() - t0, 3)}
    return result
