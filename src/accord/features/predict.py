"""The pure parts of ``accord predict`` (one raw clip → features → a trained model's score, polarity and per-modality
diagnostics); :func:`accord.api.predict_clip` composes them with the run it loads.

The run's training dataset must record its extractor settings (``meta.extractor``: written by ``accord extract``
and by MOSI-U with ``text_features=minilm``); the clip is extracted with exactly those settings, standardised
with the training statistics (``meta.standardize``) and checked against the run's feature dims. A modality the
model was trained on but the extractor cannot produce (e.g. bc-LSTM audio/visual vectors), or that the clip lacks
(no audio track, no face, empty transcript), is fed as absent (``present = False``, length 0) and named in the
output, so a degraded prediction is never silent.

Here: the training dataset's ``meta`` (:func:`dataset_meta`), the extractor check (:func:`check_settings`), the
one-clip batch (:func:`clip_batch`), the result dict (:func:`prediction_result`) and its text
(:func:`format_prediction`). Nothing here loads a run or a model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.errors import CheckpointError, DataError
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.data.pool_time import time_mean
from accord.evaluation.attribution import DISAGREE_FRACTION, Attribution, disagreement
from accord.features.extract import ClipFeatures, expected_dims

CONFLICT_THRESHOLD = 1.0
"""A conflict score ``C_m = mean_n (1 − cos(h_m, h_n))`` above 1 means modality ``m``'s representation points, on
average, away from the others' (mean cosine below 0): the prediction's ``conflict`` flag (CACR, MISA)."""


def dataset_meta(name: str, path: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """The ``meta`` of the dataset a run was trained on, from its ``data`` config (``name``, ``path``, ``params``):
    the manifest of a saved dataset, else the rebuilt dataset's."""
    import json

    from accord.data.registry import build_dataset

    if name == "saved" and path:
        manifest = Path(path) / "manifest.json"
        if not manifest.is_file():
            raise CheckpointError(f"{manifest}: missing; the run's training dataset is needed for its extractor "
                                  "settings and standardisation statistics")
        return dict(json.loads(manifest.read_text(encoding="utf-8")).get("meta") or {})
    return dict(build_dataset(name, path, params).meta)


def check_settings(run_dir: str | os.PathLike[str], meta: dict[str, Any], dims: dict[str, int]) -> dict[str, Any]:
    """The extractor settings of the run, validated against the installed extractor and the model's dims.

    Settings recorded before the face retry existed (no ``visual.face_retry``) are still valid: the installed
    extractor reproduces them exactly, with the retry off, so a clip is scored with the rule its training data was
    extracted with."""
    from accord.features import audio as audio_fx
    from accord.features import text as text_fx
    from accord.features import visual as visual_fx

    ex = meta.get("extractor")
    if not isinstance(ex, dict):
        raise CheckpointError(
            f"{run_dir}: its training dataset has no extractor settings (meta.extractor), so raw text or clips "
            "cannot be turned into the features it was trained on; train on a dataset made by `accord data import` "
            "(text from a CSV) or `accord extract` (clips), or on mosi-u with --set data.params.text_features=minilm"
        )
    current = {"text": text_fx.settings(),
               "audio": audio_fx.settings(ex["audio"]["pool"]) if ex.get("audio") else None,
               "visual": (visual_fx.settings(ex["visual"]["fps"], ex["visual"]["max_side"],
                                             visual_fx.retry_side(ex["visual"]))
                          if ex.get("visual") else None)}
    for m in MODALITIES:
        if ex.get(m) is not None and ex[m] != current[m]:
            raise CheckpointError(f"{run_dir}: {m} extractor settings {ex[m]} differ from the installed extractor's "
                                  f"{current[m]}; re-extract the training data or use a matching accord version")
    want = expected_dims(ex)
    for m in MODALITIES:
        if want[m] is not None and int(dims[m]) != want[m]:
            raise CheckpointError(f"{run_dir}: the model expects {dims[m]}-d {m} features but the extractor "
                                  f"({ex['level']} level) gives {want[m]}-d")
    return ex


def clip_batch(cf: ClipFeatures, ex: dict[str, Any], dims: dict[str, int], meta: dict[str, Any]
               ) -> tuple[Batch, dict[str, str]]:
    """A one-sample batch of the clip, standardised like the training data; plus why each unused modality is out."""
    stats = meta.get("standardize") or {}
    feats: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    present = torch.zeros(1, len(MODALITIES), dtype=torch.bool)
    absent: dict[str, str] = {}
    for k, m in enumerate(MODALITIES):
        x: np.ndarray
        if ex.get(m) is None:
            absent[m] = ("not used: the model was trained on features the extractor cannot compute from a clip "
                         f"({meta.get('features', {}).get(m, 'unknown source')})")
            x = np.zeros((0, dims[m]), np.float32)
        elif m in cf.missing:
            absent[m] = f"missing: {cf.missing[m]}"
            x = np.zeros((0, dims[m]), np.float32)
        else:
            x = cf.view(m, ex["level"]).astype(np.float32)
            if m in stats:
                x = (x - np.asarray(stats[m]["mean"], np.float32)) / np.asarray(stats[m]["std"], np.float32)
        t = max(1, x.shape[0])
        arr = np.zeros((1, t, dims[m]), np.float32)
        arr[0, : x.shape[0]] = x
        feats[m] = torch.from_numpy(arr)
        masks[m] = torch.arange(t).unsqueeze(0) < x.shape[0]
        present[0, k] = x.shape[0] > 0
    batch = Batch(features=feats, mask=masks, present=present, label=torch.zeros(1), ids=[cf.clip_id])
    return batch, absent


def require_usable(clip: str | os.PathLike[str], batch: Batch, absent: dict[str, str]) -> None:
    """A DataError naming the clip when no modality of ``batch`` is present (and why each is absent)."""
    if not bool(batch.present.any()):
        raise DataError(f"{clip}: no modality the model can use ({'; '.join(f'{m}: {r}' for m, r in absent.items())})")


def output_diagnostics(out: ModelOutput) -> dict[str, Any]:
    """The one sample's diagnostics of a model output, rounded: a number, or a list for a vector per sample."""
    diag: dict[str, Any] = {}
    for key, val in (out.diagnostics or {}).items():
        if isinstance(val, torch.Tensor) and val.ndim >= 1 and val.shape[0] == 1:
            v = val[0].detach().float()
            diag[key] = round(float(v), 4) if v.ndim == 0 else [round(float(a), 4) for a in v.reshape(-1)]
    return diag


def _verdict(pred: torch.Tensor, task: str, class_names: list[str] | None) -> dict[str, Any]:
    """``class``, ``probabilities`` and ``polarity`` (classification) or ``score`` and ``polarity`` (regression)."""
    if task == "classification":
        probs = torch.softmax(pred[0], dim=-1)
        idx = int(probs.argmax())
        names = class_names or [str(i) for i in range(len(probs))]
        return {"class": names[idx], "probabilities": dict(zip(names, probs.tolist(), strict=True)),
                "polarity": names[idx]}
    score = float(pred.reshape(-1)[0])
    return {"score": round(score, 4),
            "polarity": "positive" if score > 0 else ("negative" if score < 0 else "neutral")}


def prediction_result(cf: ClipFeatures, out: ModelOutput, absent: dict[str, str], *, clip: str | os.PathLike[str],
                      run_dir: str | os.PathLike[str], method: str, task: str,
                      class_names: list[str] | None = None,
                      trained_without: Collection[str] = ()) -> dict[str, Any]:
    """The JSON-ready result of scoring one clip (see :func:`format_prediction`), without its ``seconds``: the
    clip and run, the score or class and polarity, which modalities were used (or why not), and the model's
    per-sample diagnostics, also grouped per modality. ``degraded`` names the absent modalities the model was
    trained WITH; one absent from all its training data (``trained_without``, e.g. audio and visual of a model
    trained on a text-only import) is said in ``modalities`` but degrades nothing."""
    result: dict[str, Any] = {"clip": str(clip), "run": str(run_dir), "method": method,
                              "transcript": cf.text, "duration_s": round(cf.duration, 3)}
    result.update(_verdict(out.prediction.detach().float(), task, class_names))
    result["modalities"] = {m: absent.get(m, "used") for m in MODALITIES}
    for m in trained_without:
        if m in absent:
            result["modalities"][m] = "not used: absent from all of the model's training data"
    result["degraded"] = sorted(m for m in absent if m not in trained_without)
    diag = output_diagnostics(out)
    result["diagnostics"] = diag
    result["per_modality"] = {m: {k.rsplit("_", 1)[0]: v for k, v in diag.items() if k.endswith(f"_{m}")}
                              for m in MODALITIES}
    return result


def model_rows(out: ModelOutput, i: int) -> ModelOutput:
    """Row ``i`` of a batched model output as a one-sample output: its prediction, auxiliary predictions and
    diagnostics (per-sample tensors only)."""
    n = int(out.prediction.shape[0])

    def take(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v[i:i + 1] for k, v in d.items()
                if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == n}

    return ModelOutput(prediction=out.prediction[i:i + 1], aux_predictions=take(out.aux_predictions),
                       diagnostics=take(out.diagnostics))


def stack_batches(batches: list[Batch]) -> Batch:
    """One batch of several (one-sample) batches: each modality zero-padded to the longest, masks likewise."""
    if len(batches) == 1:
        return batches[0]
    feats: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        t = max(int(b.features[m].shape[1]) for b in batches)
        feats[m] = torch.cat([torch.nn.functional.pad(b.features[m], (0, 0, 0, t - b.features[m].shape[1]))
                              for b in batches])
        masks[m] = torch.cat([torch.nn.functional.pad(b.mask[m], (0, t - b.mask[m].shape[1])) for b in batches])
    return Batch(features=feats, mask=masks, present=torch.cat([b.present for b in batches]),
                 label=torch.cat([b.label for b in batches]), ids=[i for b in batches for i in b.ids])


def pool_batch(batch: Batch, modalities: Sequence[str]) -> Batch:
    """``data.pool_time`` at prediction time: each listed modality replaced by its masked time mean ``[B, 1, D]``
    (as :func:`accord.data.pool_time.pool_split` does to the training data); a missing one stays missing."""
    if not modalities:
        return batch
    feats, masks = dict(batch.features), dict(batch.mask)
    for m in modalities:
        feats[m] = time_mean(batch.features[m], batch.mask[m])
        masks[m] = batch.mask[m].any(dim=1, keepdim=True)
    return dataclasses.replace(batch, features=feats, mask=masks)


def conflict_result(row: ModelOutput, present: torch.Tensor, task: str,
                    class_names: list[str] | None = None) -> dict[str, Any] | None:
    """The ``conflict`` diagnostic of one prediction (``row``: a one-sample output; ``present [3]``), or ``None``
    when the method has none.

    * ``conflict_scores`` (CACR, MISA: diagnostics ``conflict_<m>`` = ``C_m = mean_n (1 − cos(h_m, h_n))`` of the
      shared representations): flag when the largest ``C_m`` of a present modality exceeds
      :data:`CONFLICT_THRESHOLD` (= 1, a mean cosine below 0).
    * ``unimodal_heads`` (late fusion, EBMC, Self-MM and any model with ``unimodal_<m>`` predictions): flag when two
      present modalities' own heads point opposite ways: scores of opposite sign (regression) or different
      classes (classification); never with fewer than two present modalities.
    """
    pres = [m for k, m in enumerate(MODALITIES) if bool(present[k])]
    diag = row.diagnostics
    if all(f"conflict_{m}" in diag for m in MODALITIES):
        scores = {m: round(float(diag[f"conflict_{m}"].reshape(-1)[0]), 4) for m in pres}
        top = max(scores.values(), default=0.0)
        return {"flag": top > CONFLICT_THRESHOLD, "by": "conflict_scores", "score": top,
                "threshold": CONFLICT_THRESHOLD, "scores": scores}
    heads = {m: row.aux_predictions.get(f"unimodal_{m}", diag.get(f"unimodal_{m}")) for m in MODALITIES}
    if any(h is None for h in heads.values()):
        return None
    heads = {m: heads[m] for m in pres}
    if len(pres) < 2:
        return {"flag": False, "by": "unimodal_heads", "unimodal": {}}
    if task == "classification":
        names = class_names or []
        idx = {m: int(h[0].argmax()) for m, h in heads.items() if h is not None}
        return {"flag": len(set(idx.values())) > 1, "by": "unimodal_heads",
                "unimodal": {m: names[c] if c < len(names) else str(c) for m, c in idx.items()}}
    vals = {m: round(float(h.reshape(-1)[0]), 4) for m, h in heads.items() if h is not None}
    return {"flag": max(vals.values()) > 0 > min(vals.values()), "by": "unimodal_heads", "unimodal": vals}


def attribution_result(att: Attribution, i: int, row: ModelOutput, present: torch.Tensor, task: str,
                       class_names: list[str] | None = None) -> dict[str, Any]:
    """Sample ``i``'s attribution keys of a prediction result: ``attribution`` {modality: φ_m} (the Shapley value
    of :mod:`accord.evaluation.attribution`; for a classifier the predicted class's probability), ``base`` = v(∅),
    ``disagree`` (:func:`~accord.evaluation.attribution.disagreement`, τ = 0.1·Σ|φ|), ``conflict`` (bool, or
    ``None`` when the method has no conflict diagnostic) with ``conflict_detail`` (:func:`conflict_result`); a
    classifier's ``attribution_per_class`` and ``base_probabilities`` too. ``score − base = Σ_m φ_m``."""
    out: dict[str, Any] = {}
    phi = att.phi[i].float()
    if task == "classification":
        names = class_names or [str(c) for c in range(phi.shape[-1])]
        c = int(att.full[i].argmax())
        main, base = phi[:, c], float(att.base[i, c])
        out["attribution"] = {m: round(float(main[k]), 6) for k, m in enumerate(MODALITIES)}
        out["attribution_per_class"] = {m: {n: round(float(phi[k, j]), 6) for j, n in enumerate(names)}
                                        for k, m in enumerate(MODALITIES)}
        out["base"] = round(base, 6)
        out["base_probabilities"] = {n: round(float(att.base[i, j]), 6) for j, n in enumerate(names)}
    else:
        main = phi.reshape(len(MODALITIES))
        out["attribution"] = {m: round(float(main[k]), 6) for k, m in enumerate(MODALITIES)}
        out["base"] = round(float(att.base[i]), 6)
    out["disagree"] = bool(disagreement(main.unsqueeze(0), DISAGREE_FRACTION)[0])
    detail = conflict_result(row, present, task, class_names)
    out["conflict"] = None if detail is None else bool(detail["flag"])
    out["conflict_detail"] = detail
    return out


def format_prediction(res: dict[str, Any]) -> str:
    """Human-readable lines of a prediction (:func:`accord.api.predict_clip`)."""
    where = res["clip"] if res["clip"] is not None else "(text only)"
    head = (f"{where}: score {res['score']:+.3f} ({res['polarity']})" if "score" in res
            else f"{where}: {res['class']}")
    lines = [head + f"  [model {res['method']} from {res['run']}]"]
    lines.append(f"  transcript: {res['transcript']!r}" if res["transcript"] else "  transcript: (none)")
    for m in MODALITIES:
        status = res["modalities"][m]
        extra = ", ".join(f"{k} {v}" for k, v in res["per_modality"][m].items())
        lines.append(f"  {m:<7} {status}" + (f"  ({extra})" if extra else ""))
    other = {k: v for k, v in res["diagnostics"].items() if not any(k.endswith(f"_{m}") for m in MODALITIES)}
    if other:
        lines.append("  diagnostics: " + ", ".join(f"{k} {v}" for k, v in other.items()))
    if "attribution" in res:
        flags = [f for f in ("disagree", "conflict") if res.get(f)]
        lines.append("  attribution (Shapley): " + ", ".join(f"{m} {v:+.3f}" for m, v in res["attribution"].items())
                     + f"  (base {res['base']:+.3f})" + (f"  [{', '.join(flags)}]" if flags else ""))
    if res["degraded"]:
        lines.append(f"  DEGRADED: prediction made without {', '.join(res['degraded'])}")
    lines.append(f"  time: {res['seconds']['total']:.2f} s")
    return "\n".join(lines)
