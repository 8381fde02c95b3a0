"""A user's corpus table (CSV, TSV, JSON lines) read into labelled rows with splits or folds, for
``accord data import`` (:mod:`accord.features.importer` turns the rows into a dataset).

Pure table logic, no model and no features:

- :func:`read_table`: the format (by extension or given), the encoding (a BOM: utf-8-sig, utf-16, utf-32; else
  strict UTF-8, else cp1252, else latin-1; or the one given, whose decode failure names the byte offset), the CSV
  delimiter (comma, semicolon or tab: the one the header line holds most of) and every row with its line number.
- :func:`resolve_columns`: which column plays which role (``id``, ``text``, ``label``, ``split``, ``group``,
  ``context``, ``media``): given by options or a small YAML (:func:`read_columns_yaml`), else the canonical name,
  matched case-insensitively. A missing column is one line listing the columns the file has.
- :func:`parse_rows`: ids (from the row numbers when there is no id column; unique), texts, groups, and labels
  (:class:`LabelRule`: regression within a range, or classes in a fixed order). A row without a label is dropped
  and counted; every other bad value is one line naming the file, the line and the fix.
- :func:`assign_splits` (a split column with aliases, or seeded group-aware ratios) and :func:`assign_folds`
  (seeded group-aware k folds, or a folds file; each fold's valid share drawn from the other folds' groups).

Every error is a one-line :class:`~accord.core.errors.DataError` naming the file and the line or key.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from accord.core.errors import DataError

__all__ = ["EXTENSIONS", "ROLES", "SPLIT_ALIASES", "ImportRow", "LabelRule", "ParsedRows", "Table", "assign_folds",
           "assign_splits", "decode", "fold_splits", "parse_classes", "parse_label_range", "parse_ratios", "parse_rows",
           "read_columns_yaml", "read_folds_file", "read_table", "resolve_columns", "table_format"]

TableFormat = Literal["csv", "tsv", "jsonl"]
#: File extensions of each table format.
EXTENSIONS: dict[str, TableFormat] = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                                      ".ndjson": "jsonl"}
#: The roles a column can play, in the order they are listed.
ROLES: tuple[str, ...] = ("id", "text", "label", "split", "group", "context", "media")
#: Split names a split column may hold (case-insensitive) -> the split.
SPLIT_ALIASES: dict[str, str] = {"train": "train", "training": "train", "valid": "valid", "dev": "valid",
                                 "val": "valid", "validation": "valid", "test": "test", "testing": "test"}
_SPLITS = ("train", "valid", "test")
#: BOMs, longest first (UTF-32 LE starts with UTF-16 LE's BOM).
_BOMS: tuple[tuple[bytes, str], ...] = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                                        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                                        (codecs.BOM_UTF16_BE, "utf-16"))


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class Table:
    """A table as read: its header, its rows as strings with their line numbers, and how it was read."""

    path: Path
    format: TableFormat
    encoding: str
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    sha256: str
    delimiter: str | None = None

    def record(self) -> dict[str, Any]:
        """How the table was read, for the dataset's ``meta.import``."""
        return {"table": str(self.path), "sha256": self.sha256, "format": self.format, "encoding": self.encoding,
                "delimiter": self.delimiter, "columns_in_file": list(self.columns)}


def table_format(path: Path, fmt: str | None) -> TableFormat:
    """``fmt`` when given (csv, tsv, jsonl), else the format of ``path``'s extension."""
    if fmt is not None:
        if fmt not in ("csv", "tsv", "jsonl"):
            raise DataError(f"--format: expected csv, tsv or jsonl, got {fmt!r}")
        return fmt  # type: ignore[return-value]
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise DataError(f"{path}: cannot tell the table format from the extension {ext or '(none)'!r}; expected "
                        f"{', '.join(EXTENSIONS)}, or give --format csv|tsv|jsonl")
    return EXTENSIONS[ext]


def decode(raw: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    """``(text, encoding used)`` of the bytes of ``path``: ``encoding`` when given (strict; a failure names the byte
    offset), else a BOM's, else strict UTF-8, else cp1252, else latin-1 (which decodes any byte)."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataError(f"--encoding: unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1, utf-16)"
                            ) from None
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: byte offset {err.start}: cannot decode byte(s) {raw[err.start:err.end]!r} as "
                            f"{encoding} ({err.reason}); give the file's encoding with --encoding (e.g. cp1252, "
                            "latin-1, utf-16) or leave it out to detect it") from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name), name
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: byte offset {err.start}: starts with a {name} byte-order mark but cannot be "
                                f"decoded as {name} ({err.reason}); give the encoding with --encoding") from None
    for name in ("utf-8", "cp1252"):
        try:
            return raw.decode(name), name
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


def _delimiter(text: str) -> str:
    """The CSV delimiter: of comma, semicolon and tab, the one the header line holds most of (comma on a tie)."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts.values())
    return next(d for d in (",", ";", "\t") if counts[d] == best) if best else ","


def _header(names: list[str], path: Path) -> list[str]:
    """The stripped column names; an empty or repeated name is an error naming it."""
    cols = [n.strip() for n in names]
    if not cols or all(not c for c in cols):
        raise DataError(f"{path}: line 1: no header; expected column names on the first line")
    seen: dict[str, int] = {}
    for i, c in enumerate(cols):
        if not c:
            raise DataError(f"{path}: line 1: column {i + 1} has no name; every column needs a header")
        if c.lower() in seen:
            raise DataError(f"{path}: line 1: column {c!r} appears twice (columns are matched case-insensitively)")
        seen[c.lower()] = i
    return cols


def _read_delimited(text: str, path: Path, fmt: TableFormat) -> tuple[list[str], list[dict[str, str]], list[int],
                                                                         str]:
    """Header, rows and their first line numbers of a CSV (delimiter sniffed) or TSV (tab, no quoting)."""
    delim = "\t" if fmt == "tsv" else _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True,
                        quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
    try:
        header = _header(next(reader, []), path)
        rows: list[dict[str, str]] = []
        lines: list[int] = []
        start = reader.line_num + 1
        for rec in reader:
            line = start
            start = reader.line_num + 1
            if not rec or all(not v.strip() for v in rec):
                continue
            if len(rec) != len(header):
                raise DataError(f"{path}: line {line}: {len(rec)} fields but the header has {len(header)} "
                                f"({'; '.join(header)}); quote a field that holds the delimiter {delim!r}")
            rows.append(dict(zip(header, rec, strict=True)))
            lines.append(line)
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: not valid {fmt.upper()} ({err})") from None
    return header, rows, lines, delim


def _cell(value: Any, path: Path, line: int, key: str) -> str:
    """A JSON value as the string a CSV cell would hold (null -> empty); a list or object is an error."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise DataError(f"{path}: line {line}: key {key!r} holds a {type(value).__name__}; expected a string or a number")


def _read_jsonl(text: str, path: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """Keys (in order of first appearance), rows and line numbers of JSON lines (one object a line)."""
    columns: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {line}: expected a JSON object, got a {type(obj).__name__}")
        row: dict[str, str] = {}
        for key, value in obj.items():
            name = columns.setdefault(key.strip().lower(), key.strip())
            row[name] = _cell(value, path, line, key)
        rows.append(row)
        lines.append(line)
    if not columns:
        raise DataError(f"{path}: no JSON object in the file; expected one object per line")
    cols = list(columns.values())
    return cols, [{c: r.get(c, "") for c in cols} for r in rows], lines


def read_table(path: str | os.PathLike[str], fmt: str | None = None, encoding: str | None = None) -> Table:
    """Read a CSV, TSV or JSON-lines table (see the module's docstring); an empty table is an error."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: not found; expected a table file (.csv, .tsv, .jsonl)")
    kind = table_format(p, fmt)
    raw = p.read_bytes()
    text, used = decode(raw, p, encoding)
    text = text.lstrip("\ufeff")
    delim: str | None = None
    if kind == "jsonl":
        cols, rows, lines = _read_jsonl(text, p)
    else:
        cols, rows, lines, delim = _read_delimited(text, p, kind)
    if not rows:
        raise DataError(f"{p}: no data rows (only a header); expected one row per sample")
    return Table(p, kind, used, cols, rows, lines, hashlib.sha256(raw).hexdigest(), delim)


# ----------------------------------------------------------------------------------------------- columns
def read_columns_yaml(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """The column mapping of a YAML file ``{role: column}`` (roles: :data:`ROLES`); an unknown role is an error
    naming it."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: not found; expected a YAML mapping of roles to column names") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{p}: not valid YAML ({' '.join(str(err).split())[:160]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected a mapping of roles to column names ({', '.join(ROLES)}), got "
                        f"{type(data).__name__}")
    out: dict[str, str | None] = {}
    for key, value in data.items():
        if key not in ROLES:
            raise DataError(f"{p}: key {key!r}: unknown; the keys are {', '.join(ROLES)}")
        if value is not None and not isinstance(value, str | int):
            raise DataError(f"{p}: key {key!r}: expected a column name, got {value!r}")
        out[str(key)] = None if value is None else str(value)
    return out


def _find(columns: list[str], name: str) -> str | None:
    """The column named ``name`` (exactly, else case-insensitively), or None."""
    if name in columns:
        return name
    return next((c for c in columns if c.lower() == name.strip().lower()), None)


def resolve_columns(table: Table, given: dict[str, str | None], required: tuple[str, ...] = ("label",)
                    ) -> dict[str, str | None]:
    """Role -> column of ``table`` (None: the role is not played). A role named in ``given`` must exist; the others
    default to their canonical name when the table has it; a role in ``required`` must be played."""
    out: dict[str, str | None] = {}
    listing = ", ".join(repr(c) for c in table.columns)
    for role in ROLES:  # the columns named first: a typo in one is the error to show
        name = given.get(role)
        if name is not None:
            found = _find(table.columns, name)
            if found is None:
                raise DataError(f"{table.path}: no column {name!r} (given for {role}); the file has {listing}")
            out[role] = found
    for role in ROLES:
        if role not in out:
            out[role] = _find(table.columns, role)
        if out[role] is None and role in required:
            raise DataError(f"{table.path}: no {role} column {role!r}; the file has {listing}; name it with "
                            f"--{role}-col COLUMN (or the {role!r} key of --columns)")
    out = {role: out[role] for role in ROLES}
    used = [c for c in out.values() if c is not None]
    twice = [c for c, n in Counter(used).items() if n > 1]
    if twice:
        roles = [r for r, c in out.items() if c == twice[0]]
        raise DataError(f"{table.path}: column {twice[0]!r} is given for both {' and '.join(roles)}; one column "
                        "plays one role")
    return out


# ------------------------------------------------------------------------------------------------ labels
def parse_label_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` as two floats with LO < HI."""
    parts = [p.strip() for p in text.split(",")]
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise DataError(f"--label-range: expected LO,HI (e.g. -3,3), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DataError(f"--label-range: expected finite LO < HI, got {text!r}")
    return lo, hi


def parse_classes(text: str | None) -> list[str] | None:
    """``"a,b,c"`` as class names (index = position); repeated or empty names are errors."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or any(not n for n in names):
        raise DataError(f"--classes: expected at least two comma-separated class names, got {text!r}")
    if len(set(names)) != len(names):
        raise DataError(f"--classes: names a class twice: {text!r}")
    return names


@dataclass
class LabelRule:
    """How labels are read: ``regression`` (numbers within ``label_range``) or ``classification`` (``classes`` in
    a fixed order, else found in the table: integers sorted numerically, names sorted)."""

    task: Literal["regression", "classification"] = "regression"
    label_range: tuple[float, float] = (-3.0, 3.0)
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise DataError(f"--task: expected regression or classification, got {self.task!r}")
        if self.classes is not None and self.task != "classification":
            raise DataError("--classes: applies to --task classification only")


def _number(raw: str) -> float | None:
    """``raw`` as a float (a decimal comma, ``1,5``, accepted), or None."""
    for text in (raw, raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else ""):
        try:
            value = float(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else None
    return None


def _class_order(values: list[str]) -> list[str]:
    """The classes found: integers (``"1"``, ``"2.0"``) sorted numerically as ``"1"``, ``"2"``; else names sorted."""
    nums = [_number(v) for v in values]
    if all(n is not None and float(n).is_integer() for n in nums):
        return [str(int(n)) for n in sorted({float(n) for n in nums if n is not None})]
    return sorted(set(values))


def _class_key(value: str, integer_classes: bool) -> str:
    """A label as its class name: an integer label (``"2.0"``) as ``"2"`` when the classes are integers."""
    if integer_classes:
        n = _number(value)
        if n is not None and float(n).is_integer():
            return str(int(n))
    return value


# -------------------------------------------------------------------------------------------------- rows
@dataclass
class ImportRow:
    """One kept row of the table: its line, id, texts, label (and class index), group and media path."""

    line: int
    id: str
    text: str
    label: float
    class_index: int | None = None
    group: str = ""
    context: str = ""
    media: str = ""
    split: str | None = None


@dataclass
class ParsedRows:
    """The kept rows, the class names (classification), and the rows read and dropped (reason -> lines)."""

    rows: list[ImportRow]
    class_names: list[str]
    read: int
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """Rows read, kept and dropped (count and first lines per reason), for ``meta.import``."""
        return {"read": self.read, "kept": len(self.rows),
                "dropped": {why: {"count": len(lines), "lines": lines[:20]} for why, lines in self.dropped.items()}}


def parse_rows(table: Table, cols: dict[str, str | None], rule: LabelRule, text_required: bool = True
               ) -> ParsedRows:
    """The labelled rows of ``table`` under the column mapping ``cols`` and the label ``rule``.

    A row with an empty label is dropped (counted under ``no label``). Errors (one line naming file and line): an
    empty or repeated id, an empty text where ``text_required`` (text is the only modality), a label that is not a
    number or outside the range (regression) or not among ``rule.classes`` (classification).
    """
    path = table.path
    label_col = cols["label"]
    assert label_col is not None
    dropped: dict[str, list[int]] = {}
    seen: dict[str, int] = {}
    rows: list[ImportRow] = []
    labels_raw: list[str] = []

    def get(role: str, row: dict[str, str]) -> str:
        col = cols.get(role)
        return row.get(col, "") if col is not None else ""

    for k, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        rid = get("id", row).strip() if cols.get("id") else f"row{k + 1}"
        if not rid:
            raise DataError(f"{path}: line {line}: empty id (column {cols['id']!r}); every row needs a unique id")
        raw = get("label", row).strip()
        if not raw:
            dropped.setdefault("no label", []).append(line)
            continue
        if rid in seen:
            raise DataError(f"{path}: line {line}: id {rid!r} (column {cols['id']!r}) was already used on line "
                            f"{seen[rid]}; ids must be unique")
        seen[rid] = line
        text = " ".join(get("text", row).split())
        if text_required and not text:
            where = f"column {cols['text']!r}" if cols.get("text") else "no text column"
            raise DataError(f"{path}: line {line}: empty text ({where}) and text is the only modality (no --media); "
                            "give the row a text or remove it")
        rows.append(ImportRow(line, rid, text, 0.0, group=get("group", row).strip(),
                              context=" ".join(get("context", row).split()), media=get("media", row).strip()))
        labels_raw.append(raw)
    if not rows:
        raise DataError(f"{path}: no row has a label (column {label_col!r} is empty on every row)")
    names = _apply_labels(rows, labels_raw, rule, path, label_col)
    return ParsedRows(rows, names, len(table.rows), dropped)


def _apply_labels(rows: list[ImportRow], raw: list[str], rule: LabelRule, path: Path, col: str) -> list[str]:
    """Set every row's label (and class index); returns the class names (``[]`` for regression)."""
    if rule.task == "regression":
        lo, hi = rule.label_range
        for r, v in zip(rows, raw, strict=True):
            value = _number(v)
            if value is None:
                raise DataError(f"{path}: line {r.line}: label {v!r} (column {col!r}) is not a number; a regression "
                                "label is a score (for class names use --task classification)")
            if not lo <= value <= hi:
                raise DataError(f"{path}: line {r.line}: label {value:g} (column {col!r}) is outside the label range "
                                f"[{lo:g}, {hi:g}]; give the corpus's scale with --label-range LO,HI")
            r.label = value
        return []
    names = rule.classes if rule.classes is not None else _class_order(raw)
    integer_classes = all(n.lstrip("-").isdigit() for n in names)
    index = {n: i for i, n in enumerate(names)}
    folded: dict[str, list[str]] = {}
    for n in names:
        folded.setdefault(n.lower(), []).append(n)
    for r, v in zip(rows, raw, strict=True):
        key = _class_key(v, integer_classes)
        if key not in index and len(folded.get(key.lower(), [])) == 1:  # 'True' for the class 'true'
            key = folded[key.lower()][0]
        if key not in index:
            raise DataError(f"{path}: line {r.line}: label {v!r} (column {col!r}) is not one of --classes "
                            f"{','.join(names)}; add it to --classes or fix the row")
        r.class_index = index[key]
        r.label = float(index[key])
    if len(names) < 2:
        raise DataError(f"{path}: column {col!r} holds one class only ({names[0]!r}); classification needs at "
                        "least two")
    return list(names)


# ------------------------------------------------------------------------------------------------ splits
def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"``: three shares of train, valid and test, each in (0, 1), summing to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise DataError(f"--split: expected three shares TRAIN,VALID,TEST (e.g. 0.7,0.15,0.15), got {text!r}")
    if any(not (0 < p < 1) for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise DataError(f"--split: the shares must each lie in (0, 1) and sum to 1, got {text!r} "
                        f"(sum {sum(parts):g})")
    return parts[0], parts[1], parts[2]


def _groups(rows: list[ImportRow]) -> dict[str, list[int]]:
    """Group key -> row positions (a row with an empty group is a group of its own), in order of first row."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(f"g:{r.group}" if r.group else f"r:{r.id}", []).append(i)
    return out


def _shuffled(keys: list[str], seed: int) -> list[str]:
    """``keys`` sorted, then permuted by ``seed`` (numpy's PCG64: the same order on every machine)."""
    ordered = sorted(keys)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[i] for i in perm]


def _cut(groups: dict[str, list[int]], order: list[str], shares: tuple[float, ...]) -> list[list[str]]:
    """Consecutive groups of ``order`` into ``len(shares)`` parts by rows: a group goes to the part its middle row
    falls in (cumulative shares of the row count)."""
    total = sum(len(groups[g]) for g in order)
    bounds = np.cumsum(shares) * total
    parts: list[list[str]] = [[] for _ in shares]
    done = 0
    for g in order:
        size = len(groups[g])
        mid = done + size / 2
        k = int(np.searchsorted(bounds, mid, side="right"))
        parts[min(k, len(shares) - 1)].append(g)
        done += size
    return parts


def _empty_split_error(where: str, split: str, n_rows: int, n_groups: int, fix: str) -> DataError:
    return DataError(f"{where}: split {split!r} is empty ({n_rows} rows in {n_groups} groups); {fix}")


def assign_splits(parsed: ParsedRows, table: Table, cols: dict[str, str | None],
                  ratios: tuple[float, float, float] | None, seed: int) -> dict[str, Any]:
    """Set every row's split: by ``ratios`` (group-aware, seeded) when given, else from the split column (aliases
    :data:`SPLIT_ALIASES`, case-insensitive). Returns the split rule for ``meta.import``; an empty split is an
    error naming it and the fix."""
    rows = parsed.rows
    if ratios is not None:
        groups = _groups(rows)
        parts = _cut(groups, _shuffled(list(groups), seed), ratios)
        for split, part in zip(_SPLITS, parts, strict=True):
            if not part:
                raise _empty_split_error(f"{table.path}: --split {','.join(f'{r:g}' for r in ratios)}", split,
                                         len(rows), len(groups), "give more rows or groups, or larger shares")
            for g in part:
                for i in groups[g]:
                    rows[i].split = split
        return {"rule": "ratios", "ratios": list(ratios), "seed": seed, "group_by": cols.get("group")}
    col = cols.get("split")
    if col is None:
        raise DataError(f"{table.path}: no split column 'split' (the file has "
                        f"{', '.join(repr(c) for c in table.columns)}); name it with --split-col, or draw splits "
                        "with --split 0.7,0.15,0.15 or folds with --folds K")
    by_line = dict(zip(table.lines, table.rows, strict=True))
    for r in rows:
        raw = by_line[r.line].get(col, "").strip()
        found = SPLIT_ALIASES.get(raw.lower())
        if found is None:
            raise DataError(f"{table.path}: line {r.line}: split {raw!r} (column {col!r}) is not one of train, valid, "
                            "test (or training, dev, val, validation, testing)")
        r.split = found
    rule: dict[str, Any] = {"rule": "column", "column": col}
    if cols.get("group"):
        spans: dict[str, set[str]] = {}
        for r in rows:
            if r.group:
                spans.setdefault(r.group, set()).add(str(r.split))
        across = {g: sorted(s) for g, s in spans.items() if len(s) > 1}
        if across:  # recorded and printed: the split column mixes a group (speaker, video) across splits
            g = next(iter(across))
            rule["groups_across_splits"] = {"count": len(across), "example": f"{g!r} in {', '.join(across[g])}"}
    for split in _SPLITS:
        if not any(r.split == split for r in rows):
            raise DataError(f"{table.path}: split {split!r} is empty (column {col!r} names no row {split}); label "
                            "some rows with it, or draw splits with --split 0.7,0.15,0.15")
    return rule


def assign_folds(parsed: ParsedRows, k: int, seed: int) -> list[int]:
    """Fold index per row: groups (shuffled by ``seed``) dealt to the fold with the fewest rows so far, largest
    groups first, so folds are balanced and a group is never split."""
    groups = _groups(parsed.rows)
    if k < 2:
        raise DataError(f"--folds: expected at least 2 folds, got {k}")
    if len(groups) < k:
        raise DataError(f"--folds {k}: only {len(groups)} groups to deal into {k} folds; use fewer folds")
    order = _shuffled(list(groups), seed)
    rank = {g: i for i, g in enumerate(order)}
    sizes = [0] * k
    fold = [0] * len(parsed.rows)
    for g in sorted(order, key=lambda g: (-len(groups[g]), rank[g])):
        f = min(range(k), key=lambda j: (sizes[j], j))
        sizes[f] += len(groups[g])
        for i in groups[g]:
            fold[i] = f
    return fold


def read_folds_file(path: str | os.PathLike[str], ids: list[str], fmt: str | None = None,
                    encoding: str | None = None) -> tuple[list[int], list[str]]:
    """Fold index per id from a table ``id,fold`` (its fold values sorted: integers numerically), and the fold
    values in order. An id missing from the file, or one the table does not have, is an error naming it."""
    table = read_table(path, fmt, encoding)
    id_col, fold_col = _find(table.columns, "id"), _find(table.columns, "fold")
    if id_col is None or fold_col is None:
        raise DataError(f"{table.path}: a folds file needs columns 'id' and 'fold'; the file has "
                        f"{', '.join(repr(c) for c in table.columns)}")
    known = set(ids)
    of: dict[str, str] = {}
    for row, line in zip(table.rows, table.lines, strict=True):
        rid, value = row[id_col].strip(), row[fold_col].strip()
        if rid not in known:
            raise DataError(f"{table.path}: line {line}: id {rid!r} is not a row of the imported table (or its row "
                            "was dropped)")
        if not value:
            raise DataError(f"{table.path}: line {line}: empty fold for id {rid!r}")
        if rid in of:
            raise DataError(f"{table.path}: line {line}: id {rid!r} is listed twice")
        of[rid] = value
    missing = [i for i in ids if i not in of]
    if missing:
        raise DataError(f"{table.path}: {len(missing)} id(s) of the table have no fold, e.g. {missing[0]!r}; list "
                        "every id")
    values = _class_order(list(of.values()))
    integer = all(v.lstrip("-").isdigit() for v in values)
    pos = {v: i for i, v in enumerate(values)}
    if len(values) < 2:
        raise DataError(f"{table.path}: every id is in fold {values[0]!r}; a k-fold split needs at least 2 folds")
    return [pos[_class_key(of[i], integer)] for i in ids], values


def fold_splits(parsed: ParsedRows, fold: list[int], i: int, valid_share: float, seed: int) -> list[str]:
    """The split of every row in fold dataset ``i``: test = fold ``i``; valid = a seeded, group-aware
    ``valid_share`` of the other folds' rows; train = the rest. An empty split is an error naming it."""
    if not 0 < valid_share < 1:
        raise DataError(f"--valid-share: expected a share in (0, 1), got {valid_share:g}")
    rows = parsed.rows
    rest = [j for j in range(len(rows)) if fold[j] != i]
    groups: dict[str, list[int]] = {}
    for j in rest:
        r = rows[j]
        groups.setdefault(f"g:{r.group}" if r.group else f"r:{r.id}", []).append(j)
    valid, train = _cut(groups, _shuffled(list(groups), seed + 1000 * (i + 1)), (valid_share, 1 - valid_share))
    out = ["test" if f == i else "train" for f in fold]
    for g in valid:
        for j in groups[g]:
            out[j] = "valid"
    for split, part in (("valid", valid), ("train", train)):
        if not part:
            raise _empty_split_error(f"fold {i}", split, len(rest), len(groups),
                                     "use fewer folds or a different --valid-share, or give more rows or groups")
    return out
