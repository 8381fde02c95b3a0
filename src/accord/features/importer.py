"""A user's corpus table (and optionally a folder of clips) -> a safe-format dataset, or k of them (the driver
behind ``accord data import``).

The table is read, mapped, labelled and split by :mod:`accord.data.table`; here the rows become features:

- text: the packaged MiniLM encoder (:func:`accord.features.text.encode`) at ``level`` ``vector`` (one step) or
  ``sequence`` (word pieces), as ``accord extract`` does; with a context column the encoded text is
  ``"<context> [SEP] <utterance>"`` (the utterance alone where the context is empty); the utterance is kept as
  ``raw_text``. Encoding goes through the encoder's per-sentence cache (:mod:`accord.data.sentence_vectors`:
  length-sorted batches behind a progress bar, each sentence cached under ``$ACCORD_CACHE`` keyed by the sentence
  and the encoder's settings), so a re-run, or a run that was interrupted, encodes only what it has not encoded
  before.
- media (``--media DIR``): each row's clip (the media column, relative to DIR, or the file in DIR whose stem is the
  row's id) is extracted with :func:`accord.features.extract.extract_each` (the per-clip cache in ``OUT/clips``,
  resumable; MediaPipe/TFLite's native logging in ``OUT/extract.log``, as ``accord extract``); a clip
  that fails or is not found is reported and that row's audio and visual are absent.
- a modality the import has no source for (audio and visual of a text-only table) is ABSENT in every sample
  (length 0, one zero step of width 1) and ``meta.extractor`` names it ``None``, so ``accord predict`` knows the
  model cannot use it.

Features are standardised with training statistics (:func:`accord.data.dataset.standardize`, ``meta.standardize``)
exactly as ``accord extract`` does. The manifest's ``meta`` records the loader (``accord data import``), the
extractor settings and ``meta.import``: how the table was read, the column mapping, task, classes, label range, the
split rule (or folds), the rows read/kept/dropped and the context handling.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from accord.core.errors import DataError
from accord.core.types import MODALITIES
from accord.data.dataset import SPLITS, MetricFamily, MultimodalDataset, make_split, standardize
from accord.data.folds import FOLDS_FILE, write_folds_index
from accord.data.safe import save_dataset
from accord.data.table import (
    ImportRow,
    LabelRule,
    ParsedRows,
    Table,
    assign_folds,
    assign_splits,
    fold_splits,
    parse_rows,
    read_columns_yaml,
    read_folds_file,
    read_table,
    resolve_columns,
)
from accord.features import text as text_fx
from accord.features.extract import (
    LOG_NAME,
    ClipFeatures,
    Level,
    expected_dims,
    extract_each,
    extractor_settings,
)
from accord.features.media import MEDIA_EXTS

__all__ = ["CONTEXT_TEMPLATE", "ImportOptions", "ImportReport", "encode_texts", "import_table"]

LOADER = "accord data import"
#: How a context and its utterance are joined for the text encoder.
CONTEXT_TEMPLATE = "{context} [SEP] {text}"
#: Clip cache names: ids made of these characters are used as they are, others are hashed.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,120}")


@dataclass
class ImportOptions:
    """What ``accord data import`` was asked to do (the CLI's options; see ``accord data import --help``)."""

    table: Path
    out: Path
    media: Path | None = None
    format: str | None = None
    encoding: str | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    columns_file: Path | None = None
    rule: LabelRule = field(default_factory=LabelRule)
    split: tuple[float, float, float] | None = None
    folds: int | None = None
    folds_file: Path | None = None
    group_by: str | None = None
    seed: int = 0
    valid_share: float = 0.15
    level: Level = "vector"
    name: str | None = None
    fps: float = 5.0
    audio_pool: int = 10


@dataclass
class ImportReport:
    """What :func:`import_table` wrote: the dataset folder(s) with each one's summary (``MultimodalDataset.summary()``:
    per split ``n``, ``missing`` per modality, ``classes``; the datasets themselves are not kept in memory), the
    ``meta.import`` record, the folds index (k folds) and the clips that failed or were not found."""

    out: Path
    summaries: dict[Path, dict[str, Any]]
    record: dict[str, Any]
    folds_index: Path | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """The short summary ``accord data import`` prints: rows, n per split, class counts, absent modalities."""
        rec = self.record
        rows = rec["rows"]
        enc = f"{rec['format']}, {rec['encoding']}" + (f", delimiter {rec['delimiter']!r}" if rec["delimiter"] else "")
        dropped = "; ".join(f"{why}: {d['count']} (lines {', '.join(map(str, d['lines'][:5]))}"
                            f"{', ...' if d['count'] > 5 else ''})" for why, d in rows["dropped"].items())
        lines = [f"read {rec['table']} ({enc}): {rows['read']} rows, {rows['kept']} kept"
                 + (f", dropped {dropped}" if dropped else "")]
        for folder, summary in self.summaries.items():
            lines.extend(_folder_lines(folder, summary))
        if rec["split"].get("groups_across_splits"):
            across = rec["split"]["groups_across_splits"]
            lines.append(f"note: {across['count']} group(s) of column {rec['columns']['group']!r} are in more than one "
                         f"split (e.g. {across['example']}); --split ... --group-by keeps groups together")
        if self.failed:
            lines.append(f"{len(self.failed)} clip(s) failed or not found (audio/visual absent): "
                         + "; ".join(f"{i}: {why}" for i, why in list(self.failed.items())[:3])
                         + ("; ..." if len(self.failed) > 3 else ""))
        task = " --set task.kind=classification" if rec["task"] == "classification" else ""
        if self.folds_index is not None:
            lines.append(f"wrote {self.folds_index}; benchmark it: accord benchmark --methods text,late_fusion "
                         f"--folds {self.out} --seeds 2" + task)
        else:
            lines.append(f"train on it: accord train --method late_fusion --dataset saved --set data.path={self.out}"
                         + task)
        return lines


def _folder_lines(folder: Path, summary: dict[str, Any]) -> list[str]:
    """The summary lines of one written dataset folder: n per split, class counts, absent modalities."""
    lines = [f"wrote {folder}: " + ", ".join(f"{s} {summary[s]['n']}" for s in SPLITS)]
    if "classes" in summary["train"]:
        lines.append("  classes: " + "; ".join(
            f"{s} " + ", ".join(f"{c} {n}" for c, n in summary[s]["classes"].items()) for s in SPLITS))
    absent = ["{} {}".format(s, ", ".join(f"{m} {k}/{summary[s]['n']}" for m, k in summary[s]["missing"].items()
                                          if k)) for s in SPLITS if any(summary[s]["missing"].values())]
    if absent:
        lines.append("  absent: " + "; ".join(absent))
    return lines


# ----------------------------------------------------------------------------------------------------- text
def encode_texts(texts: list[str], level: Level, progress: bool = False) -> list[np.ndarray]:
    """``[T, 384]`` MiniLM features of each text at ``level`` (vector: T = 1; sequence: word pieces; an empty text:
    T = 0), through the encoder's per-sentence cache; ``progress``: the encoder's progress bar for a long call."""
    show = None if progress else False
    empty = np.zeros((0, text_fx.DIM), np.float32)
    if level == "vector":
        vecs = text_fx.encode_vectors(texts, progress=show)
        return [vecs[i:i + 1].astype(np.float32) if t.strip() else empty for i, t in enumerate(texts)]
    return [seq.astype(np.float32, copy=False) if len(seq) else empty
            for seq, _ in text_fx.encode(texts, progress=show)]


def _encoded_text(row: ImportRow, with_context: bool) -> str:
    return CONTEXT_TEMPLATE.format(context=row.context, text=row.text) if with_context and row.context else row.text


# ---------------------------------------------------------------------------------------------------- media
def _cache_id(row_id: str) -> str:
    """The clip cache's file stem of a row id: the id itself when it is a safe file name, else a hash."""
    if _SAFE_ID.fullmatch(row_id) and row_id not in (".", ".."):
        return row_id
    return "id-" + hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:16]


def _clip_index(folder: Path) -> dict[str, list[Path]]:
    """File stem -> the media files of that stem directly inside ``folder``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: --media: not a folder; expected the folder of the table's clips")
    index: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in MEDIA_EXTS:
            index.setdefault(p.stem, []).append(p)
    return index


def _find_clip(row: ImportRow, folder: Path, index: dict[str, list[Path]], by_column: bool) -> Path | str:
    """The clip of ``row``, or why none was found."""
    if by_column:
        if not row.media:
            return "empty media column"
        p = Path(row.media)
        p = p if p.is_absolute() else folder / p
        return p if p.is_file() else f"{p}: not found"
    found = index.get(row.id, [])
    if len(found) > 1:
        return f"{len(found)} clips named {row.id!r} ({', '.join(p.name for p in found)}); name one in a media column"
    return found[0] if found else f"no clip {row.id}.* in {folder}"


def _sidecar_texts(rows: list[ImportRow], folder: Path, cols: dict[str, str | None]) -> None:
    """Each row's text from the ``.txt``/``.srt`` beside its clip (empty where there is none)."""
    index = _clip_index(folder)
    for row in rows:
        clip = _find_clip(row, folder, index, cols.get("media") is not None)
        if isinstance(clip, Path):
            row.text = text_fx.sidecar_transcript(clip) or ""


def _media_views(rows: list[ImportRow], opts: ImportOptions, settings: dict[str, Any], cols: dict[str, str | None],
                 progress: bool) -> tuple[dict[str, list[np.ndarray]], dict[str, str], dict[str, dict[str, str]]]:
    """Audio and visual ``[T, D]`` of every row from its clip (absent where a clip is missing, fails or lacks the
    modality), the rows whose clip failed or was not found (id -> why) and the modalities clips lack."""
    assert opts.media is not None
    index = _clip_index(opts.media)
    clips = {row.id: _find_clip(row, opts.media, index, cols.get("media") is not None) for row in rows}
    why: dict[str, str] = {rid: clip for rid, clip in clips.items() if isinstance(clip, str)}
    items = [(_cache_id(row.id), clip, row.text) for row in rows if isinstance(clip := clips[row.id], Path)]
    ids = {_cache_id(row.id): row.id for row in rows}
    feats: dict[str, ClipFeatures] = {}
    with closing(extract_each(items, settings, opts.out / "clips", opts.out / LOG_NAME, progress)) as each:
        for cache_id, cf, _, reason in each:
            if cf is None:
                why[ids[cache_id]] = reason
            else:
                feats[ids[cache_id]] = cf
    failed = {row.id: why[row.id] for row in rows if row.id in why}  # in the table's order
    if len(failed) == len(rows):
        first = next(iter(failed.items()))
        raise DataError(f"{opts.media}: no row's clip could be used (e.g. id {first[0]!r}: {first[1]}); clips are "
                        "found by the media column (a path relative to --media) or as <id>.<ext> in the folder")
    views, missing = _clip_views(rows, feats, expected_dims(settings), opts.level)
    return views, failed, missing


def _clip_views(rows: list[ImportRow], feats: dict[str, ClipFeatures], dims: dict[str, int | None], level: Level
                ) -> tuple[dict[str, list[np.ndarray]], dict[str, dict[str, str]]]:
    """Audio and visual ``[T, D]`` of every row at ``level`` from its clip's features (absent, ``T = 0``, for a row
    without), and the modalities each row's clip lacks."""
    views: dict[str, list[np.ndarray]] = {m: [] for m in ("audio", "visual")}
    missing: dict[str, dict[str, str]] = {}
    for row in rows:
        cf = feats.get(row.id)
        for m in ("audio", "visual"):
            views[m].append(np.zeros((0, dims[m] or 1), np.float32) if cf is None else cf.view(m, level))
        lack = {} if cf is None else {m: r for m, r in cf.missing.items() if m != "text"}
        if lack:
            missing[row.id] = lack
    return views, missing


# ----------------------------------------------------------------------------------------------------- build
def _pad(views: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, T_max, D]`` zero-padded features (T_max at least 1) and ``[N]`` lengths of per-row ``[T, D]`` views."""
    t_max = max(1, max((v.shape[0] for v in views), default=0))
    arr = np.zeros((len(views), t_max, views[0].shape[1]), np.float32)
    for i, v in enumerate(views):
        arr[i, : v.shape[0]] = v
    return torch.from_numpy(arr), torch.tensor([v.shape[0] for v in views], dtype=torch.long)


def _build(rows: list[ImportRow], splits: list[str], views: dict[str, list[np.ndarray]], class_names: list[str],
           label_range: tuple[float, float], name: str, source: str, meta: dict[str, Any]) -> MultimodalDataset:
    """The dataset of ``rows`` (row ``i`` in split ``splits[i]``), standardised with training statistics."""
    parts = {}
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        if not idx:  # its rows were dropped: neither a text nor a usable clip
            raise DataError(f"{source}: split {split!r} has no row with a usable modality (its rows have an empty "
                            "text and no usable clip); give those rows a text or a clip")
        feats: dict[str, torch.Tensor] = {}
        lens: dict[str, torch.Tensor] = {}
        for m in MODALITIES:
            feats[m], lens[m] = _pad([views[m][i] for i in idx])
        labels = torch.tensor([rows[i].label for i in idx], dtype=torch.float32)
        classes = (torch.tensor([int(rows[i].class_index or 0) for i in idx], dtype=torch.long)
                   if class_names else None)
        parts[split] = make_split(feats, labels, ids=[rows[i].id for i in idx], lengths=lens,
                                  raw_text=[rows[i].text for i in idx], class_labels=classes)
    family: MetricFamily = "sims" if not class_names and label_range[0] >= -1 and label_range[1] <= 1 else "mosi"
    ds = MultimodalDataset(name=name, splits=parts, metric_family=family, label_range=label_range,
                           class_names=list(class_names), source=source, meta=copy.deepcopy(meta))
    standardize(ds)
    return ds.validate()


def _columns(opts: ImportOptions) -> dict[str, str | None]:
    """The column mapping asked for: the YAML file's, then the options (which win); ``--group-by`` is the group
    column."""
    given = read_columns_yaml(opts.columns_file) if opts.columns_file is not None else {}
    given.update({k: v for k, v in opts.columns.items() if v is not None})
    if opts.group_by is not None:
        if given.get("group") not in (None, opts.group_by):
            raise DataError(f"--group-by {opts.group_by!r} and the group column {given['group']!r} differ; give one")
        given["group"] = opts.group_by
    return given


def _check_rules(opts: ImportOptions, given: dict[str, str | None]) -> None:
    """At most one split rule; an explicit split column does not go with drawn splits or folds."""
    rules = [n for n, v in (("--split", opts.split), ("--folds", opts.folds), ("--folds-file", opts.folds_file))
             if v is not None]
    if len(rules) > 1:
        raise DataError(f"{' and '.join(rules)}: give one way to split (a split column, --split, --folds or "
                        "--folds-file)")
    if rules and given.get("split") is not None:
        raise DataError(f"--split-col {given['split']!r} and {rules[0]}: give one way to split")


def _prepare_out(out: Path, folds: bool) -> None:
    """Refuse an output folder of the other kind (a dataset folder for folds, a folds folder for one dataset)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; --out names the folder to write")
    if folds and (out / "manifest.json").is_file():
        raise DataError(f"{out}: is a dataset folder (manifest.json); write the folds into another --out")
    if not folds and (out / FOLDS_FILE).is_file():
        raise DataError(f"{out}: holds k folds ({FOLDS_FILE}); write the dataset into another --out")


def import_table(opts: ImportOptions, progress: bool = True) -> ImportReport:
    """Read, map, label and split ``opts.table``, encode its texts (and extract its clips), and write the dataset
    (or ``OUT/fold_<i>/`` and ``OUT/folds.json`` for k folds); see the module's docstring."""
    table: Table = read_table(opts.table, opts.format, opts.encoding)
    given = _columns(opts)
    _check_rules(opts, given)
    k_folds = opts.folds is not None or opts.folds_file is not None
    _prepare_out(opts.out, k_folds)
    cols = resolve_columns(table, given, required=("label",) if opts.media is not None else ("label", "text"))
    parsed: ParsedRows = parse_rows(table, cols, opts.rule, text_required=opts.media is None)
    record = _record(opts, table, cols, given, parsed, k_folds)
    fold_rows = _split_rows(opts, parsed, table, cols, record)
    settings = extractor_settings(opts.level, opts.fps, opts.audio_pool)
    rows, views, failed = _features(opts, parsed.rows, cols, settings, record, progress)
    rows, views, fold_rows = _drop_unusable(rows, views, fold_rows, record)
    meta = _meta(opts, settings, cols, record)
    name = opts.name or opts.table.stem
    label_range = _label_range(opts.rule, parsed)
    if fold_rows is None:
        ds = _build(rows, [str(r.split) for r in rows], views, parsed.class_names, label_range, name,
                    str(opts.table), meta)
        save_dataset(ds, opts.out, keep=("clips", LOG_NAME))
        return ImportReport(opts.out, {opts.out: ds.summary()}, record, failed=failed)
    summaries: dict[Path, dict[str, Any]] = {}
    names = []
    for i, splits in enumerate(fold_rows):
        fold_meta = {**meta, "fold": {"index": i, "k": len(fold_rows)}}
        ds = _build(rows, splits, views, parsed.class_names, label_range, f"{name}_fold{i}", str(opts.table),
                    fold_meta)
        folder = save_dataset(ds, opts.out / f"fold_{i}")
        summaries[folder] = ds.summary()
        del ds
        names.append(folder.name)
    _remove_stale_folds(opts.out, len(names))
    index = write_folds_index(opts.out, names, {"loader": LOADER, "name": name, "task": opts.rule.task,
                                                "import": record})
    return ImportReport(opts.out, summaries, record, folds_index=index, failed=failed)


def _record(opts: ImportOptions, table: Table, cols: dict[str, str | None], given: dict[str, str | None],
            parsed: ParsedRows, k_folds: bool) -> dict[str, Any]:
    """The ``meta.import`` record of the table, its columns, task, labels, rows and context (the split rule, the
    text and the media are added as they are applied)."""
    record: dict[str, Any] = {**table.record(), "columns": cols, "task": opts.rule.task,
                              "classes": parsed.class_names or None,
                              "label_range": list(_label_range(opts.rule, parsed)), "rows": parsed.record(),
                              "ids": "column" if cols["id"] else "row numbers (row1, row2, ...)",
                              "context": ({"column": cols["context"], "template": CONTEXT_TEMPLATE,
                                           "raw_text": "the utterance alone"} if cols["context"] else None)}
    if cols["split"] is not None and not given.get("split") and (opts.split or k_folds):
        record["split_column_ignored"] = cols["split"]
    return record


def _drop_unusable(rows: list[ImportRow], views: dict[str, list[np.ndarray]], fold_rows: list[list[str]] | None,
                   record: dict[str, Any]
                   ) -> tuple[list[ImportRow], dict[str, list[np.ndarray]], list[list[str]] | None]:
    """The rows with at least one usable modality (the others counted in ``record`` with their lines)."""
    keep = [i for i in range(len(rows)) if any(len(views[m][i]) for m in MODALITIES)]
    if len(keep) == len(rows):
        return rows, views, fold_rows
    kept = set(keep)
    lines = [rows[i].line for i in range(len(rows)) if i not in kept]
    record["rows"]["dropped"]["no usable modality (empty text, clip failed)"] = {"count": len(lines),
                                                                                 "lines": lines[:20]}
    record["rows"]["kept"] = len(keep)
    return ([rows[i] for i in keep], {m: [v[i] for i in keep] for m, v in views.items()},
            [[f[i] for i in keep] for f in fold_rows] if fold_rows is not None else None)


def _meta(opts: ImportOptions, settings: dict[str, Any], cols: dict[str, str | None], record: dict[str, Any]
          ) -> dict[str, Any]:
    """The dataset's ``meta``: loader, extractor settings, task, the import record (and why audio/visual are
    absent from a text-only import, and the context template)."""
    meta: dict[str, Any] = {"loader": LOADER, "extractor": settings, "task": opts.rule.task, "import": record}
    if opts.media is None:  # what `accord predict` names as the reason a clip's audio/visual is not used
        meta["features"] = {"text": "MiniLM", "audio": "absent: imported from a text-only table",
                            "visual": "absent: imported from a text-only table"}
    if cols["context"] is not None:
        meta["text_input"] = CONTEXT_TEMPLATE
    return meta


def _split_rows(opts: ImportOptions, parsed: ParsedRows, table: Table, cols: dict[str, str | None],
                record: dict[str, Any]) -> list[list[str]] | None:
    """The split rule applied (recorded in ``record["split"]``): ``None`` for one dataset (each row's ``split`` is
    set), else every fold's split per row, all computed before any feature so that a bad rule fails fast."""
    fold: list[int] | None = None
    if opts.folds_file is not None:
        fold, values = read_folds_file(opts.folds_file, [r.id for r in parsed.rows])
        record["split"] = {"rule": "folds_file", "folds_file": str(opts.folds_file), "fold_values": values,
                           "valid_share": opts.valid_share, "seed": opts.seed, "group_by": cols["group"]}
    elif opts.folds is not None:
        fold = assign_folds(parsed, opts.folds, opts.seed)
        record["split"] = {"rule": "folds", "k": opts.folds, "seed": opts.seed, "group_by": cols["group"],
                           "valid_share": opts.valid_share}
    else:
        record["split"] = assign_splits(parsed, table, cols, opts.split, opts.seed)
        return None
    return [fold_splits(parsed, fold, i, opts.valid_share, opts.seed) for i in range(max(fold) + 1)]


def _features(opts: ImportOptions, rows: list[ImportRow], cols: dict[str, str | None], settings: dict[str, Any],
              record: dict[str, Any], progress: bool
              ) -> tuple[list[ImportRow], dict[str, list[np.ndarray]], dict[str, str]]:
    """Every row's ``[T, D]`` view per modality (text encoded; clips extracted with ``--media``, else audio and
    visual absent and ``settings`` naming them ``None``), the clips that failed, and the text/media record."""
    if opts.media is not None and not opts.media.is_dir():  # before the (long) text encoding
        raise DataError(f"{opts.media}: --media: not a folder; expected the folder of the table's clips")
    if opts.media is not None and cols["text"] is None:  # transcripts from sidecar files, as `accord extract`
        _sidecar_texts(rows, opts.media, cols)
        record["text"] = "a sidecar .txt/.srt beside each clip (no text column)"
    views: dict[str, list[np.ndarray]] = {}
    views["text"] = encode_texts([_encoded_text(r, cols["context"] is not None) for r in rows], opts.level,
                                 progress)
    failed: dict[str, str] = {}
    if opts.media is not None:
        media_views, failed, missing = _media_views(rows, opts, settings, cols, progress)
        views.update(media_views)
        record["media"] = {"dir": str(opts.media), "found_by": "column " + repr(cols["media"]) if cols["media"]
                           else "id = file stem", "clips_used": len(rows) - len(failed), "failed": failed,
                           "missing": missing}
        return rows, views, failed
    settings["audio"] = settings["visual"] = None
    for m in ("audio", "visual"):
        views[m] = [np.zeros((0, 1), np.float32) for _ in rows]
    record["media"] = None
    if cols["media"] is not None:
        record["media_column_ignored"] = f"{cols['media']} (no --media DIR)"
    return rows, views, failed


def _label_range(rule: LabelRule, parsed: ParsedRows) -> tuple[float, float]:
    """Regression: the rule's range; classification: ``[0, K-1]`` (the labels hold the class index, so a regression
    run on them stops at the trainer's label check, which names task.kind=classification)."""
    if rule.task == "classification":
        return 0.0, float(len(parsed.class_names) - 1)
    return rule.label_range


def _remove_stale_folds(out: Path, k: int) -> None:
    """Delete ``OUT/fold_<i>`` dataset folders (with a manifest) of an earlier import with more folds than ``k``."""
    import shutil

    for p in out.glob("fold_*"):
        suffix = p.name.removeprefix("fold_")
        if suffix.isdigit() and int(suffix) >= k and (p / "manifest.json").is_file():
            shutil.rmtree(p)


Task = Literal["regression", "classification"]


def options_from_strings(table: str | os.PathLike[str], out: str | os.PathLike[str], **kw: Any) -> ImportOptions:
    """:class:`ImportOptions` from the CLI's strings (``label_range`` ``"LO,HI"``, ``classes`` ``"a,b"``, ``split``
    ``"0.7,0.15,0.15"``) or already-parsed values."""
    from accord.data.table import parse_classes, parse_label_range, parse_ratios

    lr = kw.pop("label_range", None)
    classes = kw.pop("classes", None)
    split = kw.pop("split", None)
    task: Task = kw.pop("task", "regression")
    rule = LabelRule(task, parse_label_range(lr) if isinstance(lr, str) else tuple(lr) if lr else (-3.0, 3.0),
                     parse_classes(classes) if isinstance(classes, str) else list(classes) if classes else None)
    ratios = parse_ratios(split) if isinstance(split, str) else tuple(split) if split else None
    paths = {k: Path(v) if v is not None else None for k, v in kw.items()
             if k in ("media", "columns_file", "folds_file")}
    rest = {k: v for k, v in kw.items() if k not in paths}
    return ImportOptions(Path(table), Path(out), rule=rule, split=ratios, **paths, **rest)  # type: ignore[arg-type]
