"""Raw clips → features → a dataset in Accord's safe format (the driver behind ``accord extract``).

For every clip (an audio or video file), :func:`extract_clip` computes both views of every modality (text:
MiniLM token sequence and sentence vector; audio: eGeMAPS low-level descriptors and functionals; visual: face
geometry per frame and its statistics) and :func:`extract_folder` caches them per clip in
``<out>/clips/<id>.npz`` (atomic writes; a clip whose cache matches the extractor settings is skipped, so an
interrupted run resumes). A clip that fails (corrupt file, undecodable stream) is reported in
``<out>/failed.json`` and the others continue. With a CSV ``id,text,label,split`` that covers train, valid and
test, the labelled clips are assembled into a dataset (``manifest.json`` + ``<split>.npz``) at ``<out>/dataset``,
standardised with training statistics, with the extractor settings in the manifest's ``meta.extractor`` so that
``accord predict`` can check a model's inputs.

A missing modality is not an error: no audio track, no face in any frame, or an empty transcript give length 0
for that modality and the reason in ``missing``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from accord.core.errors import AccordError, DataError
from accord.core.io import atomic_write_bytes, npz_bytes, write_json
from accord.core.native_log import capture_native_output, terminal_stderr
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MultimodalDataset, make_split, standardize
from accord.features import audio as audio_fx
from accord.features import text as text_fx
from accord.features import visual as visual_fx
from accord.features.media import MEDIA_EXTS, MediaInfo, decode_audio, decode_frames, probe, scaled_size

Level = Literal["vector", "sequence"]
CACHE_VERSION = 1
LOG_NAME = "extract.log"


def extractor_settings(level: Level = "vector", fps: float = 5.0, audio_pool: int = 10,
                       max_side: int = 480, face_retry_side: int = visual_fx.DEFAULT_RETRY_SIDE) -> dict[str, Any]:
    """Everything that determines the feature dims and meaning; stored in ``meta.extractor`` of a dataset.

    ``max_side``: long side (pixels) frames are scaled down to for face landmarks; ``face_retry_side``: when no
    sampled frame has a face, the clip is decoded again with this long side (never enlarged: a 720p clip at full
    resolution with the default 1920) and searched in tiles (:func:`accord.features.visual.extract_tiled`); 0
    switches the retry off (the settings are then those of extractors before the retry)."""
    if level not in ("vector", "sequence"):
        raise DataError(f"level: expected 'vector' or 'sequence', got {level!r}")
    if fps <= 0:
        raise DataError(f"fps: expected a positive frame rate, got {fps:g}")
    if max_side < 16:
        raise DataError(f"max_side: expected a long side of at least 16 pixels, got {max_side}")
    if face_retry_side < 0:
        raise DataError(f"face_retry_side: expected 0 (no retry) or a long side in pixels, got {face_retry_side}")
    return {"version": CACHE_VERSION, "level": level, "text": text_fx.settings(),
            "audio": audio_fx.settings(audio_pool), "visual": visual_fx.settings(fps, max_side, face_retry_side)}


def expected_dims(settings: dict[str, Any]) -> dict[str, int | None]:
    """Feature dim per modality that the extractor produces with ``settings`` (None: not produced)."""
    key = "vector_dim" if settings["level"] == "vector" else "sequence_dim"
    out: dict[str, int | None] = {}
    for m in MODALITIES:
        s = settings.get(m)
        if s is None:
            out[m] = None
        elif m == "text":
            out[m] = int(s["dim"])
        else:
            out[m] = int(s[key])
    return out


def _cache_key(settings: dict[str, Any], text: str) -> str:
    blob = json.dumps({k: settings[k] for k in ("version", "text", "audio", "visual")}, sort_keys=True) + "\0" + text
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass
class ClipFeatures:
    """Both views of every modality of one clip, and why a modality is missing."""

    clip_id: str
    path: str
    text: str
    arrays: dict[str, np.ndarray]
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    """How a modality was found: ``details["visual"]`` = frame size of the first pass, ``face_found_at``
    (``"first pass"``, ``"retry"`` or None), and for a retry its frame size, grid, tile and probed frames."""

    def view(self, modality: str, level: Level) -> np.ndarray:
        """``[T, D]`` features of ``modality`` at ``level`` (T = 0 when missing; T = 1 for vectors)."""
        if modality in self.missing:
            seq = self.arrays[f"{modality}_sequence"]
            dim = seq.shape[1] if level == "sequence" else self.arrays[f"{modality}_vector"].shape[0]
            return np.zeros((0, dim), np.float32)
        if level == "sequence":
            return self.arrays[f"{modality}_sequence"]
        return self.arrays[f"{modality}_vector"][None, :]

    def to_npz_bytes(self, key: str) -> bytes:
        info = {"clip_id": self.clip_id, "path": self.path, "text": self.text, "missing": self.missing,
                "seconds": self.seconds, "duration": self.duration, "key": key, "details": self.details}
        return npz_bytes({"info": np.array(json.dumps(info), dtype=np.str_), **self.arrays})

    @classmethod
    def from_npz(cls, file: Path) -> tuple[ClipFeatures, str]:
        with np.load(file, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            arrays = {k: z[k] for k in z.files if k != "info"}
        return cls(info["clip_id"], info["path"], info["text"], arrays, info["missing"], info["seconds"],
                   float(info["duration"]), dict(info.get("details") or {})), str(info["key"])


def extract_clip(path: str | os.PathLike[str], text: str | None, settings: dict[str, Any],
                 clip_id: str | None = None) -> ClipFeatures:
    """Features of one clip. Corrupt/undecodable files raise a one-line MediaError naming the file."""
    p = Path(path)
    info = probe(p)
    transcript = text if text is not None else (text_fx.sidecar_transcript(p) or "")
    missing: dict[str, str] = {}
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    (t_seq, t_vec), = text_fx.encode([transcript], cache=False, progress=False)  # the clip cache keeps it
    secs["text"] = time.perf_counter() - t0
    if len(t_seq) == 0:
        missing["text"] = "empty transcript (no speech recogniser is shipped: give --text, a sidecar .txt/.srt "\
            "or the CSV's text column)"
    t0 = time.perf_counter()
    a_seq, a_vec = audio_fx.extract(None)
    if settings.get("audio") is None:
        missing["audio"] = "not extracted (no audio settings)"
    else:
        signal = decode_audio(p, audio_fx.SAMPLE_RATE, info=info)
        a_seq, a_vec = audio_fx.extract(signal, settings["audio"]["pool"])
        if signal is None:
            missing["audio"] = "no audio track"
        elif len(a_seq) == 0:
            missing["audio"] = f"audio shorter than {audio_fx.MIN_SECONDS} s"
    secs["audio"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    v_seq, v_vec = visual_fx.extract(None)
    details: dict[str, Any] = {}
    vs = settings.get("visual")
    if vs is None:
        missing["visual"] = "not extracted (no visual settings)"
    else:
        v_seq, v_vec, vis, why = _visual(p, info, vs)
        if why:
            missing["visual"] = why
        if vis:
            details["visual"] = vis
    secs["visual"] = time.perf_counter() - t0
    arrays = {"text_sequence": t_seq, "text_vector": t_vec, "audio_sequence": a_seq, "audio_vector": a_vec,
              "visual_sequence": v_seq, "visual_vector": v_vec}
    return ClipFeatures(clip_id or p.stem, str(p), transcript, arrays, missing, secs, info.duration, details)


def _visual(p: Path, info: MediaInfo, vs: dict[str, Any]
            ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str | None]:
    """Face features of a clip with the visual settings ``vs``: frames at ``max_side``, and when none has a face,
    the tiled retry at the retry's size (:func:`accord.features.visual.extract_tiled`). Returns the sequence, the
    vector, what was found where (``details["visual"]``) and why the modality is missing (None: present)."""
    frames = decode_frames(p, vs["fps"], vs["max_side"], info=info)
    v_seq, v_vec = visual_fx.extract(frames)
    if frames is None:
        return v_seq, v_vec, {}, "no video track"
    w, h = scaled_size(info, vs["max_side"])
    vis: dict[str, Any] = {"size": f"{w}x{h}", "face_found_at": "first pass" if len(v_seq) else None}
    if len(v_seq):
        return v_seq, v_vec, vis, None
    why = f"no face found in {len(frames)} sampled frames at {w}x{h}"
    side = visual_fx.retry_side(vs)
    if not side or len(frames) == 0:
        return v_seq, v_vec, vis, why
    rw, rh = scaled_size(info, side)
    big = frames if (rw, rh) == (w, h) else decode_frames(p, vs["fps"], side, info=info)
    retry = vs["face_retry"]
    v_seq, v_vec, found = visual_fx.extract_tiled(big, tuple(retry["grids"]), int(retry["probe_frames"]))
    vis.update({"retry_size": f"{rw}x{rh}", **found})
    if found["grid"] is not None:
        vis["face_found_at"] = "retry"
        return v_seq, v_vec, vis, None
    grids = max(retry["grids"])
    return v_seq, v_vec, vis, (f"{why}, nor by the retry at {rw}x{rh} (tiles up to {grids}x{grids} in "
                               f"{found['probed_frames']} frames)")


def list_clips(source: str | os.PathLike[str]) -> list[Path]:
    """One media file, or every media file (by extension) directly inside a folder, sorted."""
    src = Path(source)
    if src.is_file():
        return [src]
    if src.is_dir():
        clips = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTS)
        if not clips:
            raise DataError(f"{src}: no media files ({', '.join(sorted(MEDIA_EXTS))})")
        return clips
    raise DataError(f"{src}: not found; expected a media file or a folder of clips")


def read_csv(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``id,text[,label][,split]`` rows as id -> {text, label (float or None), split (str or None)}."""
    file = Path(path)
    out: dict[str, dict[str, Any]] = {}
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if "id" not in cols:
                raise DataError(f"{file}: needs an 'id' column (columns: id,text,label,split)")
            for line, row in enumerate(reader, start=2):
                label: float | None = None
                raw = (row.get("label") or "").strip()
                if raw:
                    try:
                        label = float(raw)
                    except ValueError:
                        raise DataError(f"{file}: line {line}: label {raw!r} is not a number; for class labels "
                                        "use accord data import TABLE --media DIR --task classification") from None
                split = (row.get("split") or row.get("mode") or "").strip() or None
                if split is not None and split not in SPLITS:
                    raise DataError(f"{file}: line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
                out[row["id"]] = {"text": row.get("text"), "label": label, "split": split}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{file}: cannot read as CSV ({err})") from None
    return out


@dataclass
class ExtractReport:
    """What :func:`extract_folder` did."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: dict[str, dict[str, str]] = field(default_factory=dict)
    dataset: MultimodalDataset | None = None
    note: str = ""
    visual: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per clip with a video track: the frame size, where the face was found (``first pass``, ``retry``, None)."""
    log: Path | None = None
    """The native log (MediaPipe/TFLite/absl output) of the run: ``<out>/extract.log``."""

    @property
    def retried(self) -> list[str]:
        """The clips whose face only the retry found."""
        return [c for c, v in self.visual.items() if v.get("face_found_at") == "retry"]


def _cached(file: Path, key: str) -> ClipFeatures | None:
    """The cached features in ``file`` when they were computed with ``key`` (settings + transcript), else None; a
    damaged cache entry counts as absent (it is recomputed)."""
    if not file.is_file():
        return None
    try:
        cached, old_key = ClipFeatures.from_npz(file)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return cached if old_key == key else None


def _extract_cached(clip: Path, cid: str, transcript: str, settings: dict[str, Any], cache: Path
                    ) -> tuple[ClipFeatures, bool]:
    """Features of one clip from ``cache/<id>.npz`` when valid (``True``: skipped), else extracted and cached."""
    key = _cache_key(settings, transcript)
    file = cache / f"{cid}.npz"
    cached = _cached(file, key)
    if cached is not None:
        return cached, True
    cf = extract_clip(clip, transcript, settings, clip_id=cid)
    atomic_write_bytes(file, cf.to_npz_bytes(key))
    return cf, False


def _transcript(clip: Path, text: str | None, row: dict[str, Any]) -> str:
    """``--text``, else the CSV's ``text``, else a sidecar ``.txt``/``.srt``, else empty."""
    transcript = text if text is not None else row.get("text")
    if transcript is None:
        transcript = text_fx.sidecar_transcript(clip) or ""
    return str(transcript)


@contextmanager
def _progress_bar(total: int, show: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar of ``total`` steps on the terminal's stderr (:func:`accord.core.native_log.terminal_stderr`:
    the original fd 2, also while native logs are captured) while the block runs (none when not ``show``); yields
    ``advance``. Python's ``sys.stderr`` is not redirected by the bar (it goes on to the native log), except around
    :func:`_to_terminal` blocks."""
    if not show:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(file=terminal_stderr()), transient=False, redirect_stdout=False,
                    redirect_stderr=False)
    prog.start()
    task = prog.add_task("extracting", total=total)
    _bars.append(prog)
    try:
        yield lambda: prog.advance(task)
    finally:
        _bars.pop()
        prog.stop()


_bars: list[Any] = []  # the running progress bar (printing above it keeps it intact)


@contextmanager
def _to_terminal() -> Iterator[None]:
    """``sys.stderr`` on the terminal for the block (above a running progress bar): what a caller's ``on_clip``
    prints (a failed clip) is seen, not buried in the native log."""
    import sys

    if _bars:
        from rich.file_proxy import FileProxy

        stream: Any = FileProxy(_bars[-1].console, terminal_stderr())
    else:
        stream = terminal_stderr()
    before = sys.stderr
    sys.stderr = stream
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
        sys.stderr = before


def extract_each(items: list[tuple[str, Path, str]], settings: dict[str, Any], cache: Path, log: Path,
                 progress: bool) -> Generator[tuple[str, ClipFeatures | None, bool, str], None, None]:
    """Extract (or take from ``cache``) each ``(id, clip, transcript)`` of ``items``, behind a progress bar, with
    everything written to file descriptor 2 (MediaPipe/TFLite/absl C++ logging, Python warnings) appended to ``log``
    (:func:`accord.core.native_log.capture_native_output`); yields ``(id, features or None, skipped, why it
    failed or "")``. One clip that fails does not stop the others. What the caller prints inside
    :func:`_to_terminal` while consuming the items is seen above the bar (``accord extract`` and ``accord data
    import``)."""
    cache.mkdir(parents=True, exist_ok=True)
    with capture_native_output(log), _progress_bar(len(items), progress) as advance:
        for cid, clip, transcript in items:
            cf: ClipFeatures | None = None
            skipped, why = False, ""
            try:
                cf, skipped = _extract_cached(clip, cid, transcript, settings, cache)
            except AccordError as err:
                why = str(err)
            except Exception as err:  # noqa: BLE001 - one bad clip must not stop the others
                why = f"{clip}: {type(err).__name__}: {err}"
            yield cid, cf, skipped, why
            advance()


def _extract_all(clips: list[Path], rows: dict[str, dict[str, Any]], text: str | None, settings: dict[str, Any],
                 report: ExtractReport, progress: bool, on_clip: Callable[[str, str], None] | None
                 ) -> dict[str, ClipFeatures]:
    """Extract (or take from the cache) every clip (:func:`extract_each`), recording done/skipped/failed/missing
    in ``report``."""
    assert report.log is not None
    feats: dict[str, ClipFeatures] = {}
    items = [(clip.stem, clip, _transcript(clip, text, rows.get(clip.stem, {}))) for clip in clips]
    with closing(extract_each(items, settings, report.out / "clips", report.log, progress)) as each:
        for cid, cf, skipped, why in each:
            if cf is None:
                report.failed[cid] = why
                status = f"failed: {why}"
            else:
                feats[cid] = cf
                (report.skipped if skipped else report.done).append(cid)
                status = "skipped" if skipped else "done"
                if cf.missing:
                    report.missing[cid] = cf.missing
                if "visual" in cf.details:
                    report.visual[cid] = cf.details["visual"]
            if on_clip:
                with _to_terminal():
                    on_clip(cid, status)
    return feats


def extract_folder(source: str | os.PathLike[str], out: str | os.PathLike[str], csv_path: str | None = None,
                   text: str | None = None, settings: dict[str, Any] | None = None,
                   progress: bool = True, on_clip: Callable[[str, str], None] | None = None) -> ExtractReport:
    """Extract every clip of ``source`` into ``out/clips`` (resumable), then build the dataset if labelled.

    While clips are extracted, everything written to file descriptor 2 (MediaPipe/TFLite/absl C++ logging, Python
    warnings) goes to ``out/extract.log`` (:func:`accord.core.native_log.capture_native_output`); the progress bar
    and ``on_clip``'s output stay on the terminal. ``text`` applies to a single clip only. Transcripts otherwise
    come from the CSV's ``text`` column, then a sidecar ``.txt``/``.srt``. ``on_clip(id, status)`` is called per
    clip (status ``done``/``skipped``/``failed: ...``).
    """
    settings = settings or extractor_settings()
    clips = list_clips(source)
    if text is not None and len(clips) > 1:
        raise DataError(f"{source}: --text applies to a single clip, but the folder has {len(clips)}")
    rows = read_csv(csv_path) if csv_path else {}
    outp = Path(out)
    if outp.exists() and not outp.is_dir():
        raise DataError(f"{outp}: exists and is not a directory")
    cache = outp / "clips"
    report = ExtractReport(outp, log=outp / LOG_NAME)
    feats = _extract_all(clips, rows, text, settings, report, progress, on_clip)
    write_json(outp / "failed.json", report.failed)
    write_json(outp / "extraction.json", {"settings": settings, "done": report.done, "skipped": report.skipped,
                                         "failed": report.failed, "missing": report.missing,
                                         "visual": report.visual})
    labelled = {cid: rows[cid] for cid in feats if cid in rows and rows[cid]["label"] is not None
                and rows[cid]["split"] is not None}
    present_splits = {r["split"] for r in labelled.values()}
    if set(SPLITS) <= present_splits:
        ds = build_dataset_from_clips({c: feats[c] for c in labelled}, labelled, settings, source=str(outp))
        from accord.data.safe import save_dataset

        save_dataset(ds, outp / "dataset")
        report.dataset = ds
    else:
        report.note = (f"no dataset written: a dataset needs labelled clips in train, valid and test (a CSV with "
                       f"id,text,label,split); found splits {sorted(present_splits) or 'none'}. Per-clip features "
                       f"are in {cache}. For class labels, other column names or encodings, or splits made for you: "
                       f"accord data import TABLE --media {source} (docs/your_data.md)")
    return report


def build_dataset_from_clips(feats: dict[str, ClipFeatures], rows: dict[str, dict[str, Any]],
                             settings: dict[str, Any], source: str = "<extracted>",
                             name: str = "extracted") -> MultimodalDataset:
    """Pad the chosen view of each clip into splits, standardise with training statistics, record settings."""
    level: Level = settings["level"]
    splits = {}
    dropped: list[str] = []
    for split in SPLITS:
        ids = [c for c in sorted(feats) if rows[c]["split"] == split]
        keep = [c for c in ids if len(feats[c].missing) < len(MODALITIES)]
        dropped.extend(c for c in ids if c not in keep)
        if not keep:
            raise DataError(f"{source}: split {split!r} has no clip with any usable modality")
        feat_t: dict[str, torch.Tensor] = {}
        lens_t: dict[str, torch.Tensor] = {}
        for m in MODALITIES:
            views = [feats[c].view(m, level) for c in keep]
            t_max = max(1, max(v.shape[0] for v in views))
            dim = views[0].shape[1]
            arr = np.zeros((len(keep), t_max, dim), np.float32)
            for i, v in enumerate(views):
                arr[i, : v.shape[0]] = v
            feat_t[m] = torch.from_numpy(arr)
            lens_t[m] = torch.tensor([v.shape[0] for v in views], dtype=torch.long)
        labels = torch.tensor([float(rows[c]["label"]) for c in keep], dtype=torch.float32)
        splits[split] = make_split(feat_t, labels, ids=keep, lengths=lens_t, raw_text=[feats[c].text for c in keep])
    ds = MultimodalDataset(name=name, splits=splits, source=source,
                           meta={"loader": "accord extract", "extractor": settings, "dropped_no_modality": dropped,
                                 "missing": {c: f.missing for c, f in feats.items() if f.missing}})
    standardize(ds)
    return ds.validate()
