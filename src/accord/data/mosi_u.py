"""MOSI-U: CMU-MOSI with bc-LSTM utterance features (Poria et al., ACL 2017) and the real sentiment scores.

Source files (a folder ``mosi/``; see ``shared/data/README.md`` for provenance):

- ``bclstm/transcripts.csv``: all 2,199 segment ids; row k is "transcript index k".
- ``bclstm/text_{train,test}.csv``: column 0 is the transcript index of each row.
- ``bclstm/text__text_{s}0.csv`` (100-d text CNN), ``audio__audio_{s}0.csv`` (73-d openSMILE),
  ``video__video_{s}0.csv`` (100-d 3D-CNN): row-aligned with ``text_{s}.csv``; their last column is a binary
  label, which is dropped.
- ``label.csv``: ``id,text,label,mode`` with the real score in [-3, 3]; 4 segments have none and are dropped
  (their count and ids go to ``ds.meta["dropped_unlabelled"]``).

One vector per utterance, so T = 1 for every modality. The split is THEIR speaker-independent train/test split
(62 / 31 videos); validation is a seeded set of ``valid_videos`` training videos (a video id is the segment id
up to the last ``_``). Features are z-scored with training-split statistics
(:func:`accord.data.dataset.standardize`).

The CMU SDK standard folds are refused (:class:`~accord.core.errors.LeakageError`): the text and visual extractors
were trained with labels on the bc-LSTM training videos, which contain most of the standard test videos, so a
model evaluated on the standard folds would be scored on samples whose labels shaped its features. The exception is
``text_features="minilm"`` (MiniLM vectors of the real transcripts + bc-LSTM audio, no visual), which is
leakage-free on the standard folds (docs/data.md, docs/features.md).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from accord.core.errors import ConfigError, DataError, LeakageError
from accord.data.dataset import MultimodalDataset, SplitData, make_split
from accord.data.dataset import standardize as standardize_features
from accord.data.params import MosiUParams
from accord.data.registry import register_dataset

FEATURE_FILES: dict[str, str] = {
    "text": "text__text_{s}0.csv",
    "audio": "audio__audio_{s}0.csv",
    "visual": "video__video_{s}0.csv",
}
DIMS: dict[str, int] = {"text": 100, "audio": 73, "visual": 100}
SOURCES_HINT = (
    "get label.csv from github.com/jiangbing22/MMCPanda (data/mosi/label.csv at 3e568e4d) and bclstm/ from "
    "github.com/soujanyaporia/multimodal-sentiment-analysis (data/); shared/data/README.md lists the sources"
)


def video_of(segment_id: str) -> str:
    """The video id of a segment id (everything before the last ``_``)."""
    return segment_id.rsplit("_", 1)[0]


def default_paths() -> list[Path]:
    """Where MOSI-U is looked for when ``data.path`` is not given, in order: ``$ACCORD_DATA/mosi`` alone when
    ``ACCORD_DATA`` is set (an explicit setting is never passed over), else ``../shared/data/mosi`` from the
    working directory and from the repository."""
    env = os.environ.get("ACCORD_DATA")
    if env:
        return [Path(env) / "mosi"]
    out: list[Path] = []
    out.append(Path.cwd() / ".." / "shared" / "data" / "mosi")
    out.append(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mosi")
    seen: set[Path] = set()
    unique: list[Path] = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def find_mosi_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the MOSI folder (holding ``label.csv`` and ``bclstm/``) or raise a DataError naming what was
    tried."""
    tried = [Path(path)] if path else default_paths()
    for cand in tried:
        if (cand / "label.csv").is_file() or (cand / "bclstm").is_dir():
            return cand
        if (cand / "mosi" / "bclstm").is_dir():  # a data root holding mosi/
            return cand / "mosi"
    env = os.environ.get("ACCORD_DATA")
    if not path and env:
        raise DataError(f"ACCORD_DATA={env}: no MOSI-U data there (expected {Path(env) / 'mosi'} with label.csv and "
                        f"bclstm/); point ACCORD_DATA at the data folder or unset it to use ../shared/data; "
                        f"{SOURCES_HINT}")
    names = ", ".join(str(p) for p in tried)
    raise DataError(
        f"MOSI-U data folder not found (tried {names}); set data.path or ACCORD_DATA to a folder "
        f"with mosi/label.csv and mosi/bclstm/; {SOURCES_HINT}"
    )


def _need(file: Path) -> Path:
    if not file.is_file():
        raise DataError(
            f"{file}: missing; MOSI-U needs label.csv and the bclstm/ feature files ({SOURCES_HINT})"
        )
    return file


def _read_rows(file: Path) -> list[list[str]]:
    try:
        with _need(file).open(newline="", encoding="utf-8") as fh:
            return [row for row in csv.reader(fh) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{file}: cannot read as CSV ({err})") from None


def _read_matrix(file: Path, width: int) -> np.ndarray:
    """A numeric CSV with ``width`` columns per row, as float64."""
    rows = _read_rows(file)
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{file}: line {i + 1} has {len(row)} columns, expected {width}")
        try:
            out[i] = [float(v) for v in row]
        except ValueError:
            raise DataError(f"{file}: line {i + 1} has a non-numeric value") from None
    if not np.isfinite(out).all():
        raise DataError(f"{file}: contains {int((~np.isfinite(out)).sum())} NaN/Inf values")
    return out


def _transcript_ids(root: Path) -> list[str]:
    file = root / "bclstm" / "transcripts.csv"
    ids = [row[0] for row in _read_rows(file)]
    if len(set(ids)) != len(ids):
        raise DataError(f"{file}: segment ids are not unique")
    return ids


def _split_index(root: Path, split: str, n_transcripts: int) -> tuple[np.ndarray, np.ndarray]:
    """Transcript indices of the rows of ``text_{split}.csv`` (its column 0) and its text vectors."""
    file = root / "bclstm" / f"text_{split}.csv"
    mat = _read_matrix(file, 1 + DIMS["text"])
    idx = mat[:, 0]
    if len(idx) == 0 or not np.equal(np.round(idx), idx).all() or idx.min() < 0 or idx.max() >= n_transcripts:
        raise DataError(f"{file}: column 0 must be transcript indices in [0, {n_transcripts - 1}]")
    return idx.astype(np.int64), mat[:, 1:]


def parse_score(value: str, file: Path, line: int) -> float:
    """A CMU-MOSI/MOSEI sentiment score from a CSV cell: a finite number in [-3, 3], else a one-line DataError
    naming the file and line."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{file}: line {line}: label {value!r} is not a number") from None
    if not np.isfinite(score) or not -3.0 <= score <= 3.0:
        raise DataError(f"{file}: line {line}: label {score:g} outside [-3, 3]")
    return score


def _read_labels(root: Path) -> dict[str, tuple[float, str]]:
    """``label.csv`` as id -> (score, transcript)."""
    file = _need(root / "label.csv")
    out: dict[str, tuple[float, str]] = {}
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"id", "text", "label"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{file}: missing column(s) {sorted(missing)} (expected id,text,label,mode)")
            for line, row in enumerate(reader, start=2):
                out[row["id"]] = (parse_score(row["label"], file, line), row["text"] or "")
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{file}: cannot read as CSV ({err})") from None
    return out


def leakage_message(root: Path | None) -> str:
    """Why the standard folds are refused, with the overlap counted from the files when they are available."""
    overlap = "training videos, which contain most of the standard test videos"
    if root is not None:
        try:
            folds = json.loads(
                (root.parent / "folds" / "cmu_mosi_std_folds.json").read_text(encoding="utf-8")
            )
            ids = _transcript_ids(root)
            train_videos = {video_of(ids[i]) for i in _split_index(root, "train", len(ids))[0]}
            std_test = set(folds["test"])
            overlap = (
                f"{len(train_videos)} training videos, which contain {len(std_test & train_videos)} of the "
                f"{len(std_test)} standard test videos"
            )
        except (OSError, ValueError, KeyError, TypeError, DataError):
            pass  # keep the generic wording
    return (
        "data.params.split='standard' is refused for MOSI-U: the bc-LSTM text and visual extractors were "
        f"trained with labels on their {overlap}, so the CMU SDK standard folds leak test labels into the "
        "features (a text-only ridge reaches ~93% there); use split='bclstm' (their speaker-independent "
        "62/31-video split, validation carved from training videos), text_features='minilm' (MiniLM text of the "
        "real transcripts + bc-LSTM audio, no visual, on the standard folds) or standard-fold features such as "
        "the MMSA pickles"
    )


def _check_options(path: str | os.PathLike[str] | None, split: str, text_features: str) -> None:
    """ConfigError for a bad ``split`` / ``text_features``; LeakageError for the standard folds with bc-LSTM text."""
    if text_features not in ("bclstm", "minilm"):
        raise ConfigError(f"data.params.text_features: expected bclstm or minilm, got {text_features!r}")
    if split == "standard" and text_features == "bclstm":
        try:
            root: Path | None = find_mosi_dir(path)
        except DataError:
            root = None
        raise LeakageError(leakage_message(root))
    if split not in ("bclstm", "standard"):
        raise ConfigError(f"data.params.split: expected bclstm or standard, got {split!r}")


def _read_part(root: Path, part: str, idx: np.ndarray, text_ref: np.ndarray) -> dict[str, np.ndarray]:
    """The bc-LSTM feature matrices of ``part`` (train or test), checked row-aligned with ``text_{part}.csv`` (its
    transcript indices ``idx`` and text vectors ``text_ref``); the trailing label column is dropped."""
    mats: dict[str, np.ndarray] = {}
    for m, pattern in FEATURE_FILES.items():
        file = root / "bclstm" / pattern.format(s=part)
        mat = _read_matrix(file, DIMS[m] + 1)
        if mat.shape[0] != idx.shape[0]:
            raise DataError(
                f"{file}: has {mat.shape[0]} rows but text_{part}.csv has {idx.shape[0]} "
                "(the files must be row-aligned)"
            )
        mats[m] = mat
    # Row alignment: the same binary label column in all three files, the text vectors of text_{s}.csv.
    for m in ("audio", "visual"):
        if not np.array_equal(mats[m][:, -1], mats["text"][:, -1]):
            raise DataError(
                f"{root / 'bclstm' / FEATURE_FILES[m].format(s=part)}: its label column disagrees "
                f"with {FEATURE_FILES['text'].format(s=part)} (files not row-aligned)"
            )
    if np.abs(text_ref - mats["text"][:, :-1]).max() > 1e-4:
        raise DataError(
            f"{root / 'bclstm' / FEATURE_FILES['text'].format(s=part)}: text vectors differ from "
            f"text_{part}.csv (files not row-aligned)"
        )
    return {m: mats[m][:, :-1] for m in mats}


def _read_parts(root: Path, transcript_ids: list[str], scores: dict[str, tuple[float, str]]
                ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The labelled rows of the train and test files (``{"ids", "feats"}`` per part) and the ids dropped for having
    no score."""
    rows: dict[str, dict[str, Any]] = {}
    seen_idx: set[int] = set()
    for part in ("train", "test"):
        idx, text_ref = _split_index(root, part, len(transcript_ids))
        if seen_idx & set(idx.tolist()):
            raise DataError(
                f"{root / 'bclstm'}: a transcript index occurs in both text_train.csv and text_test.csv"
            )
        seen_idx |= set(idx.tolist())
        rows[part] = {"idx": idx, "feats": _read_part(root, part, idx, text_ref)}
    dropped: list[str] = []
    parts: dict[str, dict[str, Any]] = {}
    for part, info in rows.items():
        ids = [transcript_ids[i] for i in info["idx"].tolist()]
        keep = [k for k, sid in enumerate(ids) if sid in scores]
        dropped.extend(sid for sid in ids if sid not in scores)
        parts[part] = {
            "ids": [ids[k] for k in keep],
            "feats": {m: x[keep] for m, x in info["feats"].items()},
        }
    return parts, dropped


def _valid_videos(root: Path, parts: dict[str, dict[str, Any]], valid_videos: int, valid_seed: int
                  ) -> tuple[list[str], list[str], set[str]]:
    """The training videos, the seeded draw of ``valid_videos`` of them for validation, and the test videos."""
    train_videos = sorted({video_of(s) for s in parts["train"]["ids"]})
    test_videos = {video_of(s) for s in parts["test"]["ids"]}
    if set(train_videos) & test_videos:
        raise DataError(
            f"{root / 'bclstm'}: video(s) {sorted(set(train_videos) & test_videos)[:3]} occur in both "
            "the train and the test files (expected a speaker-independent split)"
        )
    if valid_videos >= len(train_videos):
        raise ConfigError(
            f"data.params.valid_videos: {valid_videos} must be below the {len(train_videos)} training videos"
        )
    if valid_videos < 1:
        raise ConfigError(f"data.params.valid_videos: expected at least 1, got {valid_videos}")
    rng = np.random.default_rng(valid_seed)
    chosen = sorted(str(v) for v in rng.permutation(np.array(train_videos))[:valid_videos])
    return train_videos, chosen, test_videos


def _bclstm_splits(parts: dict[str, dict[str, Any]], scores: dict[str, tuple[float, str]], chosen: list[str]
                   ) -> dict[str, SplitData]:
    """Train (training videos not in ``chosen``), valid (``chosen``) and test (their test file)."""
    in_valid = np.array([video_of(s) in set(chosen) for s in parts["train"]["ids"]])
    selections = {
        "train": ("train", ~in_valid),
        "valid": ("train", in_valid),
        "test": ("test", np.ones(len(parts["test"]["ids"]), dtype=bool)),
    }
    splits: dict[str, SplitData] = {}
    for name, (src, sel) in selections.items():
        ids = [s for s, keep in zip(parts[src]["ids"], sel.tolist(), strict=True) if keep]
        feats = {
            m: torch.from_numpy(x[sel].astype(np.float32)).unsqueeze(1)
            for m, x in parts[src]["feats"].items()
        }
        labels = torch.tensor([scores[s][0] for s in ids], dtype=torch.float32)
        splits[name] = make_split(feats, labels, ids=ids, raw_text=[scores[s][1] for s in ids])
    return splits


def load_mosi_u(
    path: str | os.PathLike[str] | None = None,
    split: Literal["bclstm", "standard"] = "bclstm",
    valid_videos: int = 10,
    valid_seed: int = 0,
    standardize: bool = True,
    text_features: Literal["bclstm", "minilm"] = "bclstm",
) -> MultimodalDataset:
    """Build MOSI-U (see the module docstring).

    ``path`` is the ``mosi`` folder; default: the first of :func:`default_paths` that exists.

    ``text_features="minilm"`` replaces the bc-LSTM text vectors by all-MiniLM-L6-v2 sentence vectors (384-d) of
    the real transcripts in ``label.csv`` (no labels involved, so no leakage; needs ``accord[media]``; cached on
    disk by :func:`accord.data.sentence_vectors.minilm_vectors`). Only then is ``split="standard"`` allowed: the CMU
    SDK folds from ``label.csv``'s ``mode`` column, with text = MiniLM, audio = the bc-LSTM openSMILE vectors (not
    trained with labels) and NO visual features (the bc-LSTM visual extractor saw the standard test labels; visual
    has length 0 for every sample).

    Raises:
        LeakageError: for ``split="standard"`` with bc-LSTM text.
        DataError: missing or malformed files.
        ConfigError: ``valid_videos`` not below the number of training videos.
    """
    _check_options(path, split, text_features)
    root = find_mosi_dir(path)
    transcript_ids = _transcript_ids(root)
    scores = _read_labels(root)
    parts, dropped = _read_parts(root, transcript_ids, scores)
    if text_features == "minilm":
        from accord.data.sentence_vectors import minilm_vectors

        for info in parts.values():
            info["feats"]["text"] = minilm_vectors([scores[s][1] for s in info["ids"]]).astype(np.float64)
    if split == "standard":
        return _standard_minilm(root, parts, scores, dropped, standardize)
    train_videos, chosen, test_videos = _valid_videos(root, parts, valid_videos, valid_seed)
    splits = _bclstm_splits(parts, scores, chosen)
    return _dataset(root, splits, standardize, {
        "split": "bclstm",
        "features": {
            "text": ("bc-LSTM text CNN, 100-d" if text_features == "bclstm"
                     else "all-MiniLM-L6-v2 sentence vector, 384-d"),
            "audio": "openSMILE, 73-d",
            "visual": "3D-CNN, 100-d",
        },
        "text_features": text_features,
        **_extractor_meta(text_features),
        "valid_seed": valid_seed,
        "valid_videos": chosen,
        "reference": (
            "References on this split (shared/data/README.md): ridge regression Non0_acc_2 text 77.9, audio 54.7, "
            "visual 53.3, all three 77.2; MMSA 2.2.1's models at best 77.1 (TFN, LMF), MulT 74.4. The feature "
            "extractors saw the validation videos' labels (they are training videos), so validation scores are "
            "optimistic; only test is clean."
        ),
        "videos": {
            "train": len(train_videos) - len(chosen),
            "valid": len(chosen),
            "test": len(test_videos),
        },
        "dropped_unlabelled": {"count": len(dropped), "ids": sorted(dropped)},
    })


def _dataset(root: Path, splits: dict[str, SplitData], standardize: bool, meta: dict[str, Any]) -> MultimodalDataset:
    """The validated ``mosi-u`` dataset of ``splits`` (scores in [-3, 3]), standardised with training statistics
    when ``standardize``; ``meta`` adds to the loader and directory."""
    ds = MultimodalDataset(name="mosi-u", splits=splits, metric_family="mosi", label_range=(-3.0, 3.0),
                           source=str(root), meta={"loader": "mosi-u", "dir": str(root), **meta})
    if standardize:
        standardize_features(ds)
    return ds.validate()


@register_dataset(
    "mosi-u",
    params=MosiUParams,
    needs_path=False,
    description="CMU-MOSI with bc-LSTM utterance features and real scores (path: the mosi folder; default "
    "$ACCORD_DATA/mosi or ../shared/data/mosi)",
)
def build_mosi_u(path: str | None, params: MosiUParams) -> MultimodalDataset:
    """Registry builder: :func:`load_mosi_u` with ``data.params``."""
    return load_mosi_u(
        path,
        split=params.split,
        valid_videos=params.valid_videos,
        valid_seed=params.valid_seed,
        standardize=params.standardize,
        text_features=params.text_features,
    )


def _extractor_meta(text_features: str) -> dict[str, Any]:
    """``meta.extractor`` for MiniLM text (so ``accord predict`` can feed clip transcripts to the model); the bc-LSTM
    audio/visual vectors cannot be reproduced from raw clips, so they are marked ``None`` (not produced)."""
    if text_features != "minilm":
        return {}
    from accord.data.sentence_vectors import settings as text_settings

    return {"extractor": {"version": 1, "level": "vector", "text": text_settings(), "audio": None, "visual": None}}


def _read_modes(root: Path) -> dict[str, str]:
    """``label.csv``'s ``mode`` column (the CMU SDK standard fold of each segment)."""
    file = _need(root / "label.csv")
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "mode" not in (reader.fieldnames or []):
            raise DataError(f"{file}: no 'mode' column; the standard folds need id,text,label,mode")
        modes = {row["id"]: (row["mode"] or "").strip() for row in reader}
    modes = {k: ("valid" if v == "dev" else v) for k, v in modes.items()}  # label.csv calls the valid fold 'dev'
    bad = sorted({m for m in modes.values() if m not in ("train", "valid", "test")})
    if bad:
        raise DataError(f"{file}: mode value(s) {bad} are not train/valid/test")
    return modes


def _standard_minilm(root: Path, parts: dict[str, dict[str, Any]], scores: dict[str, tuple[float, str]],
                     dropped: list[str], standardize: bool) -> MultimodalDataset:
    """The CMU SDK standard folds with MiniLM text and bc-LSTM audio; visual is absent (leakage, see docs)."""
    modes = _read_modes(root)
    by_id: dict[str, dict[str, np.ndarray]] = {}
    for info in parts.values():
        for k, sid in enumerate(info["ids"]):
            by_id[sid] = {m: info["feats"][m][k] for m in ("text", "audio")}
    splits = {}
    counts: dict[str, int] = {}
    for name in ("train", "valid", "test"):
        ids = [s for s in sorted(by_id) if modes.get(s) == name]
        if not ids:
            raise DataError(f"{root / 'label.csv'}: no segment in the standard {name} fold")
        n = len(ids)
        feats = {
            "text": torch.from_numpy(np.stack([by_id[s]["text"] for s in ids]).astype(np.float32)).unsqueeze(1),
            "audio": torch.from_numpy(np.stack([by_id[s]["audio"] for s in ids]).astype(np.float32)).unsqueeze(1),
            "visual": torch.zeros(n, 1, DIMS["visual"]),
        }
        lengths = {"text": torch.ones(n, dtype=torch.long), "audio": torch.ones(n, dtype=torch.long),
                   "visual": torch.zeros(n, dtype=torch.long)}
        labels = torch.tensor([scores[s][0] for s in ids], dtype=torch.float32)
        splits[name] = make_split(feats, labels, ids=ids, lengths=lengths, raw_text=[scores[s][1] for s in ids])
        counts[name] = len({video_of(s) for s in ids})
    return _dataset(root, splits, standardize, {
        "split": "standard",
        "features": {"text": "all-MiniLM-L6-v2 sentence vector, 384-d",
                     "audio": "openSMILE (bc-LSTM files), 73-d",
                     "visual": "absent: the bc-LSTM visual extractor saw the standard test labels"},
        "text_features": "minilm",
        **_extractor_meta("minilm"),
        "videos": counts,
        "leakage": "text MiniLM (no labels) and audio openSMILE (not trained) are leakage-free on the standard "
                   "folds; bc-LSTM text and visual are not, so visual is absent and bc-LSTM text refused",
        "dropped_unlabelled": {"count": len(dropped), "ids": sorted(dropped)},
    })
