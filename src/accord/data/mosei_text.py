"""MOSEI-text: CMU-MOSEI transcripts and sentiment scores on the standard folds, text only.

Source: one CSV ``label.csv`` with columns ``video_id,clip_id,text,label,mode`` (``shared/data/README.md``: a
redistribution of MOSEI's ``Data_*_modified.csv``; 22,788 segments, ``mode`` = the CMU SDK standard fold of the
segment's video: 16,274 / 1,861 / 4,653). The sample id is ``<video_id>_<clip_id>``.

Text is the all-MiniLM-L6-v2 sentence vector of each transcript (384-d, T = 1; cached in ``$ACCORD_CACHE``) and the
raw transcript (so a pretrained text branch tokenizes it: ``model.params.text_encoder.source=pretrained``). Audio
and visual are ABSENT (no features exist here): every sample has them missing, so the dataset trains text-only
models; a model trained on it is evaluated on MOSI with ``accord evaluate RUN --on mosi-u --on-set
split=standard`` (:mod:`accord.data.transfer`). The text vectors are z-scored with training statistics.

Every row is checked: the five columns, a finite label in [-3, 3], a known fold (``dev`` is read as ``valid``), a
non-empty transcript, a unique id; an error names the file, the line and what was expected.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from accord.core.errors import DataError
from accord.data.dataset import MultimodalDataset, make_split
from accord.data.dataset import standardize as standardize_features
from accord.data.mosi_u import default_paths as mosi_paths
from accord.data.mosi_u import parse_score
from accord.data.params import MoseiTextParams
from accord.data.registry import register_dataset

COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
TEXT_DIM = 384
SOURCES_HINT = ("get label.csv from github.com/ailiwood/mme_0621 (data/mosei/label.csv at 585fd9c9); "
                "shared/data/README.md lists the source")


def find_mosei_file(path: str | None) -> Path:
    """``label.csv`` of MOSEI: ``path`` (the file or its folder), else ``mosei/`` beside the MOSI folder candidates
    (``$ACCORD_DATA/mosei`` or ``../shared/data/mosei``); a DataError names what was tried."""
    tried = [Path(path)] if path else [p.parent / "mosei" for p in mosi_paths()]
    for cand in tried:
        file = cand if cand.suffix == ".csv" else cand / "label.csv"
        if file.is_file():
            return file
    raise DataError(f"MOSEI label.csv not found (tried {', '.join(str(p) for p in tried)}); set data.path to the "
                    f"file or its folder; {SOURCES_HINT}")


def read_mosei_rows(file: Path, max_rows: int | None = None) -> dict[str, list[tuple[str, str, float]]]:
    """``{fold: [(id, transcript, score), ...]}`` of ``label.csv`` in file order, every row validated."""
    folds: dict[str, list[tuple[str, str, float]]] = {"train": [], "valid": [], "test": []}
    seen: dict[str, int] = {}
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{file}: missing column(s) {missing} (expected {','.join(COLUMNS)})")
            for line, row in enumerate(reader, start=2):
                if max_rows is not None and line - 2 >= max_rows:
                    break
                sid = f"{row['video_id']}_{row['clip_id']}"
                if sid in seen:
                    raise DataError(f"{file}: line {line}: id {sid!r} repeats line {seen[sid]}")
                seen[sid] = line
                score = parse_score(row["label"], file, line)
                mode = (row["mode"] or "").strip()
                mode = "valid" if mode == "dev" else mode
                if mode not in folds:
                    raise DataError(f"{file}: line {line}: mode {row['mode']!r} is not train/valid/test")
                text = (row["text"] or "").strip()
                if not text:
                    raise DataError(f"{file}: line {line}: empty transcript for {sid}")
                folds[mode].append((sid, text, score))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{file}: cannot read as CSV ({err})") from None
    for name, rows in folds.items():
        if not rows:
            raise DataError(f"{file}: no row in the {name} fold")
    return folds


def load_mosei_text(path: str | None = None, standardize: bool = True, max_rows: int | None = None
                    ) -> MultimodalDataset:
    """The validated ``mosei-text`` dataset (module docstring); ``max_rows`` reads only the file's first rows (for
    quick checks; every fold must still have one)."""
    from accord.data.sentence_vectors import minilm_vectors
    from accord.data.sentence_vectors import settings as text_settings

    file = find_mosei_file(path)
    folds = read_mosei_rows(file, max_rows)
    splits = {}
    for name, rows in folds.items():
        ids, texts, scores = (list(col) for col in zip(*rows, strict=True))
        n = len(ids)
        text = torch.from_numpy(minilm_vectors(texts)).float().unsqueeze(1)
        feats = {"text": text, "audio": torch.zeros(n, 1, 1), "visual": torch.zeros(n, 1, 1)}
        lengths = {"text": torch.ones(n, dtype=torch.long), "audio": torch.zeros(n, dtype=torch.long),
                   "visual": torch.zeros(n, dtype=torch.long)}
        splits[name] = make_split(feats, torch.tensor(scores, dtype=torch.float32), ids=ids, lengths=lengths,
                                  raw_text=texts)
    ds = MultimodalDataset(name="mosei-text", splits=splits, metric_family="mosi", label_range=(-3.0, 3.0),
                           source=str(file), meta={
                               "loader": "mosei-text", "file": str(file), "split": "standard",
                               "features": {"text": "all-MiniLM-L6-v2 sentence vector, 384-d",
                                            "audio": "absent", "visual": "absent"},
                               "extractor": {"version": 1, "level": "vector", "text": text_settings(),
                                             "audio": None, "visual": None},
                               "counts": {k: len(v) for k, v in folds.items()}})
    if standardize:
        standardize_features(ds)
    return ds.validate()


@register_dataset(
    "mosei-text",
    params=MoseiTextParams,
    needs_path=False,
    description="CMU-MOSEI transcripts + scores on the standard folds, text only (path: label.csv or its folder; "
    "default $ACCORD_DATA/mosei or ../shared/data/mosei)",
)
def build_mosei_text(path: str | None, params: MoseiTextParams) -> MultimodalDataset:
    """Registry builder: :func:`load_mosei_text` with ``data.params``."""
    return load_mosei_text(path, standardize=params.standardize, max_rows=params.max_rows)
