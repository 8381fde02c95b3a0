"""Raw media: offline feature extraction (``accord extract``) and scoring one clip with a trained run
(``accord predict``). Needs the optional extra ``pip install 'accord[media]'`` when a clip is actually read."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.api.runs import load
from accord.core import rundir
from accord.core.errors import CheckpointError, DataError
from accord.core.native_log import capture_native_output
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.data.tokens import tokenizer
from accord.evaluation.attribution import attribute, value_of
from accord.features import audio as audio_fx
from accord.features import text as text_fx
from accord.features import visual as visual_fx
from accord.features.extract import ClipFeatures, ExtractReport, Level, extract_clip, extract_folder, extractor_settings
from accord.features.media import AUDIO_EXTS, VIDEO_EXTS
from accord.features.predict import (
    attribution_result,
    check_settings,
    clip_batch,
    dataset_meta,
    format_prediction,
    model_rows,
    pool_batch,
    prediction_result,
    require_usable,
    stack_batches,
)
from accord.features.visual import DEFAULT_RETRY_SIDE
from accord.models.modules.text_encoder import encoder_folder
from accord.training.text_tokens import text_encoder_params
from accord.training.trainer import load_run

__all__ = ["Predictor", "extract", "format_prediction", "media_extensions", "predict_clip"]


def media_extensions() -> tuple[str, ...]:
    """The file extensions of the clips Accord reads (``accord extract``, ``accord predict``, uploads to ``accord
    serve``): the audio ones sorted, then the video ones sorted."""
    return (*sorted(AUDIO_EXTS), *sorted(VIDEO_EXTS))


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


TEXT_ONLY = "no clip given (text only)"
"""Why audio and visual are absent from a prediction made from text alone."""


class Predictor:
    """One trained run, loaded ONCE, that scores raw inputs: text alone, a clip (audio or video file), or both.

    At construction it reads the run's config and ``dataset.json``, the training dataset's ``meta`` (extractor
    settings, standardisation statistics), checks the extractor settings against the installed extractor and the
    model's input sizes (:func:`~accord.features.predict.check_settings`) and loads the checkpoint of ``seed``
    (default the first) on ``device``. :meth:`predict` and :meth:`predict_batch` may be called from several
    threads: media extraction and the model each run under their own lock. What MediaPipe/TFLite write to file
    descriptor 2 while a clip is read is discarded, or appended to ``native_log`` when given
    (:func:`accord.core.native_log.capture_native_output`: process-wide, so lines other threads write to stderr
    during a clip's extraction go there too). Transcripts are encoded without the per-sentence disk cache (a server
    must not write a cache entry per request).

    A run whose text branch is a pretrained transformer (``model.params.text_encoder.source: pretrained``) gets the
    transcripts' tokens from that encoder's tokenizer (loaded once, :func:`accord.data.tokens.tokenizer`), as the
    trainer tokenizes raw text. ``data.pool_time`` is applied as in training.

    Every prediction also carries the exact Shapley attribution of the prediction over the three modalities
    (:mod:`accord.evaluation.attribution`; all 8 coalitions in one forward of ``8·B`` rows, whose coalition ``N``
    rows give the prediction itself) and the flags ``disagree`` and ``conflict``
    (:func:`~accord.features.predict.attribution_result`).
    """

    def __init__(self, run_dir: str | os.PathLike[str], seed: int | None = None, device: str = "cpu",
                 native_log: str | os.PathLike[str] | None = None, compile: str = "off") -> None:
        t0 = time.perf_counter()
        self.run_dir = Path(run_dir)
        self.native_log = native_log
        cfg, info = load_run(self.run_dir)
        if not info:
            raise CheckpointError(f"{run_dir}/dataset.json: missing (needed for the model's input sizes)")
        self.config = cfg
        self.info = info
        self.dims = {m: int(info["dims"][m]) for m in MODALITIES}
        self.meta = dataset_meta(cfg.data.name, cfg.data.path, cfg.data.params)
        self.settings = check_settings(run_dir, self.meta, self.dims)
        self.model = load(self.run_dir, seed=seed, device=device, compile=compile)
        self.device = device
        self.method = cfg.model.name
        self.task = cfg.task.kind
        self.class_names: list[str] | None = info.get("class_names") or None
        self.pool_time = list(cfg.data.pool_time)
        # modalities absent from every training sample (dataset.json's "present"): said, but never "degraded"
        self.trained_without = [m for m, has in (info.get("present") or {}).items() if has is False]
        encoder = text_encoder_params(cfg.model.params)  # a pretrained text branch reads transcript tokens
        self._tokenize = None if encoder is None else tokenizer(encoder_folder(encoder.path), encoder.max_tokens)
        self.load_seconds = time.perf_counter() - t0
        self._model_lock = threading.Lock()
        self._media_lock = threading.Lock()

    # -------------------------------------------------------------------------------------------- inputs
    def _text_features(self, texts: Sequence[str]) -> list[ClipFeatures]:
        """Features of transcripts without a clip (audio and visual absent: :data:`TEXT_ONLY`), encoded as one
        batch with the run's text extractor."""
        t0 = time.perf_counter()
        with self._model_lock:  # the text encoder is a model too
            encoded = text_fx.encode(list(texts), cache=False, progress=False) if self.settings.get(
                "text") is not None else [
                (np.zeros((0, text_fx.DIM), np.float32), np.zeros(text_fx.DIM, np.float32)) for _ in texts]
        secs = (time.perf_counter() - t0) / max(1, len(texts))
        a_seq, a_vec = audio_fx.extract(None)
        v_seq, v_vec = visual_fx.extract(None)
        out = []
        for text, (t_seq, t_vec) in zip(texts, encoded, strict=True):
            missing = {"audio": TEXT_ONLY, "visual": TEXT_ONLY}
            if self.settings.get("text") is not None and len(t_seq) == 0:
                missing["text"] = "empty transcript"
            arrays = {"text_sequence": t_seq, "text_vector": t_vec, "audio_sequence": a_seq, "audio_vector": a_vec,
                      "visual_sequence": v_seq, "visual_vector": v_vec}
            out.append(ClipFeatures("text", "", text, arrays, missing, {"text": secs, "audio": 0.0, "visual": 0.0}))
        return out

    def _clip_features(self, clip: str | os.PathLike[str], text: str | None) -> ClipFeatures:
        """Features of one clip, extracted with the run's settings (the transcript: ``text``, else a sidecar
        ``.txt``/``.srt``, as :func:`~accord.features.extract.extract_clip` takes it). Audio and video are extracted
        under the media lock; the transcript is encoded separately under the model lock, so the text encoder (its
        tokenizer is not thread-safe) is never used by two threads at once."""
        transcript = text if text is not None else (text_fx.sidecar_transcript(clip) or "")
        with self._media_lock, capture_native_output(self.native_log):
            cf = extract_clip(clip, "", self.settings)
        if transcript.strip():
            (enc,) = self._text_features([transcript])
            for view in ("text_sequence", "text_vector"):
                cf.arrays[view] = enc.arrays[view]
            cf.missing.pop("text", None)
            if "text" in enc.missing:
                cf.missing["text"] = enc.missing["text"]
            cf.seconds["text"] = enc.seconds["text"]
        cf.text = transcript
        return cf

    # -------------------------------------------------------------------------------------------- scoring
    def _score(self, feats: list[ClipFeatures], clips: list[str | None], t0: float) -> list[dict[str, Any]]:
        """Results of ``feats`` (one per item), scored and attributed in ONE forward of ``8·B`` rows."""
        pairs = [clip_batch(cf, self.settings, self.dims, self.meta) for cf in feats]
        for k, ((one, absent), clip) in enumerate(zip(pairs, clips, strict=True)):
            require_usable(clip or ("text" if len(clips) == 1 else f"item {k} (text)"), one, absent)
        batch = pool_batch(stack_batches([b for b, _ in pairs]), self.pool_time)
        if self._tokenize is not None:  # the transcripts' tokens (an absent text: its tokens are never read)
            with self._model_lock:
                batch.text_tokens = self._tokenize([cf.text.strip() for cf in feats])
        b = batch.size
        outputs: list[ModelOutput] = []

        def value(rows: Batch) -> torch.Tensor:
            out = self.model(rows.to(self.device))
            outputs.append(out)
            return value_of(out, self.task).cpu()

        t1 = time.perf_counter()
        with self._model_lock, torch.inference_mode():
            att = attribute(value, batch)
        t_model = time.perf_counter() - t1
        results = []
        for i, ((_, absent), cf, clip) in enumerate(zip(pairs, feats, clips, strict=True)):
            row = model_rows(outputs[0], 7 * b + i)  # coalition N = the prediction with every modality it has
            res = prediction_result(cf, row, absent, clip=clip or "", run_dir=self.run_dir, method=self.method,
                                    task=self.task, class_names=self.class_names,
                                    trained_without=self.trained_without)
            if clip is None:
                res["clip"] = None
            res.update(attribution_result(att, i, row, present=batch.present[i], task=self.task,
                                          class_names=self.class_names))
            res["seconds"] = {"load_model": round(self.load_seconds, 3),
                              **{k: round(v, 3) for k, v in cf.seconds.items()},
                              "model": round(t_model / b, 4), "total": round(time.perf_counter() - t0, 3)}
            results.append(res)
        return results

    def predict(self, text: str | None = None, clip: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Score ``text`` alone, or ``clip`` (with ``text`` as its transcript, default a sidecar .txt/.srt): the
        JSON-ready dict of :func:`predict_clip` plus ``attribution``, ``base``, ``disagree`` and ``conflict``;
        ``clip`` is ``None`` for text alone (audio and visual absent, named in ``degraded``)."""
        return self.predict_batch([{"text": text, "clip": clip}])[0]

    def predict_batch(self, items: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
        """Score several inputs together: each a text, or a mapping with ``text`` and/or ``clip``. Texts are encoded
        as one batch and every item goes through the same forward; an item with nothing usable is a DataError
        naming it."""
        t0 = time.perf_counter()
        if not items:
            raise DataError("predict_batch: no items (expected at least one text or clip)")
        norm: list[tuple[str | None, str | None]] = []
        for k, item in enumerate(items):
            if isinstance(item, str):
                norm.append((item, None))
                continue
            text, clip = item.get("text"), item.get("clip")
            if text is None and clip is None:
                raise DataError(f"item {k}: expected a text and/or a clip, got neither")
            norm.append((None if text is None else str(text), None if clip is None else str(clip)))
        text_only = [k for k, (_, c) in enumerate(norm) if c is None]
        encoded = dict(zip(text_only, self._text_features([norm[k][0] or "" for k in text_only]), strict=True))
        feats = [encoded[k] if c is None else self._clip_features(c, t) for k, (t, c) in enumerate(norm)]
        return self._score(feats, [c for _, c in norm], t0)

    def warm_up(self) -> float:
        """One text prediction, so that the text encoder and the model are loaded before the first real request
        (``accord serve`` calls it at start-up); returns its seconds. A compiled model (``compile``) builds its graph
        here: its shapes are dynamic and the attribution's forward has ``8·B`` rows, never the 0 or 1 rows torch
        specialises, so requests of any batch size and text length reuse that graph (tested). A run without a text
        input has nothing to warm up with: its graph is built by the first request."""
        t0 = time.perf_counter()
        if self.settings.get("text") is not None:
            self.predict_batch(["warm up"])
        return time.perf_counter() - t0

    # -------------------------------------------------------------------------------------------- the model
    def describe(self) -> dict[str, Any]:
        """What is being served: run, method, task, class names, the training data (name, path and how it was made:
        its ``meta.import`` / ``meta.loader`` / ``meta.source``), the test metrics (mean ± std over seeds, from
        ``summary.json``) and the extractor settings used for raw inputs (the data's ``meta.extractor``)."""
        summary: dict[str, Any] = {}
        if (self.run_dir / rundir.SUMMARY).is_file():
            summary = rundir.read_summary(self.run_dir)
        made = {k: self.meta[k] for k in ("import", "loader", "source") if k in self.meta}
        return {
            "run": str(self.run_dir), "method": self.method, "task": self.task, "class_names": self.class_names,
            "dims": self.dims,
            "training_data": {"name": self.config.data.name, "path": self.config.data.path,
                              "dataset": self.info.get("name"), **made},
            "test_metrics": summary.get("test", {}),
            "seeds": summary.get("seeds"),
            "extractor": self.settings,
            "load_seconds": round(self.load_seconds, 3),
        }


def attribution(run_dir: str | os.PathLike[str], split: str = "test", batch_size: int = 64,
                write: bool = True) -> dict[str, Any]:
    """Exact Shapley attribution over the modalities of every sample of ``split`` (``accord attribute``), per
    seed's checkpoint: mean ``|φ_m|`` and mean ``φ_m`` per modality, the share of samples that have it, and the
    share where the modalities disagree (:func:`accord.evaluation.attribution.summarize`; for a classifier ``φ`` of
    the predicted class's probability), with the mean over seeds. ``write`` saves ``<run>/attribution_<split>.json``,
    which ``accord report`` shows."""
    from accord.core.io import write_json
    from accord.data.registry import build_dataset
    from accord.evaluation.attribution import summarize
    from accord.training.text_tokens import prepare_inputs

    run_dir = Path(run_dir)
    cfg, info = load_run(run_dir)
    ds = prepare_inputs(build_dataset(cfg.data.name, cfg.data.path, cfg.data.params), cfg.data, cfg.model.params)
    if info and ds.dims != info["dims"]:
        raise DataError(f"{cfg.data.name}: feature dims {ds.dims} differ from the run's {info['dims']}")
    if split not in ds.splits:
        raise DataError(f"--split {split!r}: the dataset has {', '.join(ds.splits)}")
    part = ds[split]
    task = cfg.task.kind
    per_seed: dict[str, dict[str, Any]] = {}
    for sd in rundir.seed_dirs(run_dir, with_checkpoint=True):
        model = load(run_dir, seed=rundir.seed_of(sd), device="cpu")
        phis: list[torch.Tensor] = []
        present: list[torch.Tensor] = []

        def value(rows: Batch, model: Any = model) -> torch.Tensor:
            return value_of(model(rows), task)

        with torch.inference_mode():
            for a in range(0, len(part), batch_size):
                batch = part.batch(torch.arange(a, min(a + batch_size, len(part))), task=task)
                att = attribute(value, batch)
                phi = att.phi
                if task == "classification":  # the predicted class's probability
                    cls = att.full.argmax(dim=-1)
                    phi = phi.gather(2, cls.view(-1, 1, 1).expand(-1, phi.shape[1], 1)).squeeze(2)
                phis.append(phi.reshape(batch.size, len(MODALITIES)))
                present.append(batch.present)
        per_seed[sd.name] = summarize(torch.cat(phis), torch.cat(present))
    if not per_seed:
        raise CheckpointError(f"{run_dir}: no seed folder with a selected checkpoint")
    seeds = list(per_seed.values())

    def mean(key: str, m: str | None = None) -> float:
        return float(np.mean([s[key] if m is None else s[key][m] for s in seeds]))

    result: dict[str, Any] = {
        "run": str(run_dir), "split": split, "method": cfg.model.name, "task": task, "per_seed": per_seed,
        **{key: {m: mean(key, m) for m in MODALITIES} for key in ("mean_abs_phi", "mean_phi", "present_share")},
        "disagree_share": mean("disagree_share"),
        "disagree_fraction": seeds[0]["disagree_fraction"], "n": seeds[0]["n"],
    }
    if write:
        file = run_dir / f"attribution_{split}.json"
        write_json(file, result)
        result["saved"] = str(file)
    return result


def predict_clip(clip: str | os.PathLike[str] | None, run_dir: str | os.PathLike[str], text: str | None = None,
                 seed: int | None = None, native_log: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score one clip with the run's model (``seed``'s checkpoint, default the first); a JSON-ready dict.

    A thin wrapper of :class:`Predictor` (``Predictor(run_dir, seed).predict(text, clip)``). The clip is extracted
    with the extractor settings of the run's training dataset (checked against the installed extractor and the
    model's input sizes) and standardised with its statistics; a modality the clip lacks or the extractor cannot
    produce is fed as absent and named in ``modalities`` / ``degraded``. Keys: ``clip``, ``run``, ``method``,
    ``transcript``, ``duration_s``, ``score`` (regression) or ``class`` and ``probabilities``, ``polarity``,
    ``modalities``, ``degraded``, ``diagnostics``, ``per_modality``, ``attribution``, ``base``, ``disagree``,
    ``conflict``, ``seconds`` (:func:`format_prediction` prints it). Without ``clip`` (``None``) ``text`` alone is
    scored. What MediaPipe/TFLite write to file descriptor 2 while the clip is read is discarded, or appended to
    ``native_log`` when given (errors that matter are raised as one-line Accord errors).
    """
    return Predictor(run_dir, seed=seed, native_log=native_log).predict(text=text, clip=clip)
