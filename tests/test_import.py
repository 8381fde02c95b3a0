"""``accord data import`` (issue 18): a user's corpus table -> a safe-format dataset without writing Python.

The table logic (:mod:`accord.data.table`) is checked by hand on small files in several encodings and formats; the
assembly (:mod:`accord.features.importer`) runs with a deterministic stand-in for MiniLM (``fake_minilm``), so these
tests need neither the text extra nor its cost; the one media test needs the media extra and skips without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from accord.cli import app
from accord.core.errors import DataError
from accord.data.folds import read_folds, read_folds_index
from accord.data.safe import load_dataset_dir
from accord.data.table import (
    LabelRule,
    assign_folds,
    assign_splits,
    fold_splits,
    parse_ratios,
    parse_rows,
    read_table,
    resolve_columns,
)
from accord.features.importer import ImportOptions, encode_texts, import_table

runner = CliRunner()

# "Utterance;Sentiment;Speaker" in cp1252: é is 0xE9, ’ is 0x92 (undefined in latin-1's printable range, so the
# file is not UTF-8); the second data row has a quoted field with the delimiter and a line break inside.
CP1252_CSV = ("Utterance;Sentiment;Speaker\r\n"
              "C’est très bien;2;Ann\r\n"
              "\"Pas mal; mais\r\nun peu long\";-0,5;Bob\r\n"
              "Déçu;-3;Ann\r\n").encode("cp1252")


def fake_encode(texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic stand-in for MiniLM: a word per sequence step, a vector from the text's hash."""
    out = []
    for t in texts:
        seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        words = t.split()
        out.append((rng.standard_normal((len(words), 384)).astype(np.float32),
                    rng.standard_normal(384).astype(np.float32) if words else np.zeros(384, np.float32)))
    return out


@pytest.fixture
def fake_minilm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """MiniLM replaced by :func:`fake_encode` (the calls of both views are recorded) and ``$ACCORD_CACHE`` in
    ``tmp_path``."""
    from accord.features import text as text_fx

    calls: list[list[str]] = []

    def encode(texts: list[str], **kw: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        calls.append(list(texts))
        return fake_encode(texts)

    def encode_vectors(texts: list[str], **kw: Any) -> np.ndarray:
        return np.stack([v for _, v in encode(texts)]) if texts else np.zeros((0, 384), np.float32)

    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(text_fx, "encode", encode)
    monkeypatch.setattr(text_fx, "encode_vectors", encode_vectors)
    return calls


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def corpus(n: int = 24, groups: int = 8, labels: Any = None) -> str:
    """A CSV id,text,label,speaker,split of ``n`` rows, ``groups`` speakers, labels -2.5..2.5 (or ``labels(i)``)."""
    lines = ["id,text,label,speaker,split"]
    for i in range(n):
        y = labels(i) if labels else round(-2.5 + 5 * i / (n - 1), 2)
        split = ("train", "dev", "TEST")[i % 3]
        lines.append(f"u{i},sentence number {i} is {'good' if i % 2 else 'bad'},{y},s{i % groups},{split}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ reading
def test_cp1252_csv_with_other_column_names(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "raw.csv", CP1252_CSV))
    assert (t.format, t.encoding, t.delimiter) == ("csv", "cp1252", ";")
    assert t.columns == ["Utterance", "Sentiment", "Speaker"]
    assert [r["Utterance"] for r in t.rows] == ["C’est très bien", "Pas mal; mais\r\nun peu long", "Déçu"]
    assert t.lines == [2, 3, 5]  # the quoted line break makes row 2 two lines long
    assert t.sha256 == hashlib.sha256(CP1252_CSV).hexdigest()
    cols = resolve_columns(t, {"text": "utterance", "label": "SENTIMENT", "group": "speaker"})
    assert cols == {"id": None, "text": "Utterance", "label": "Sentiment", "split": None, "group": "Speaker",
                    "context": None, "media": None}
    parsed = parse_rows(t, cols, LabelRule())
    assert [(r.id, r.text, r.label, r.group) for r in parsed.rows] == [
        ("row1", "C’est très bien", 2.0, "Ann"), ("row2", "Pas mal; mais un peu long", -0.5, "Bob"),
        ("row3", "Déçu", -3.0, "Ann")]


def test_tsv_jsonl_and_byte_order_marks(tmp_path: Path) -> None:
    tsv = read_table(write(tmp_path / "d.tab", 'id\ttext\tlabel\na\tshe said "no"\t1\n\nb\tx, y; z\t-1\n'))
    assert (tsv.format, tsv.delimiter, tsv.lines) == ("tsv", "\t", [2, 4])
    assert [r["text"] for r in tsv.rows] == ['she said "no"', "x, y; z"]  # TSV: quotes are text
    js = read_table(write(tmp_path / "d.ndjson", '{"id": "a", "Label": 1.5, "text": "hé"}\n\n'
                                                  '{"id": 7, "label": null, "extra": true}\n'))
    assert (js.format, js.encoding, js.lines) == ("jsonl", "utf-8", [1, 3])
    assert js.columns == ["id", "Label", "text", "extra"]  # keys matched case-insensitively: 'label' is 'Label'
    assert js.rows == [{"id": "a", "Label": "1.5", "text": "hé", "extra": ""},
                       {"id": "7", "Label": "", "text": "", "extra": "true"}]
    u16 = read_table(write(tmp_path / "d16.csv", "id,text,label\nx,café,0\n".encode("utf-16")))
    assert (u16.encoding, u16.columns, u16.rows[0]["text"]) == ("utf-16", ["id", "text", "label"], "café")
    sig = read_table(write(tmp_path / "sig.csv", "id;text;label\nx;ok;1\n".encode("utf-8-sig")))
    assert (sig.encoding, sig.delimiter, sig.columns[0]) == ("utf-8-sig", ";", "id")
    forced = read_table(write(tmp_path / "f.txt", "id\ttext\tlabel\nq\tw\t1\n"), fmt="tsv", encoding="latin-1")
    assert (forced.format, forced.encoding, forced.rows[0]["text"]) == ("tsv", "latin-1", "w")
    # a byte that is not cp1252 (0x81) falls back to latin-1
    assert read_table(write(tmp_path / "l1.csv", b"id,text,label\nx,a\x81b,1\n")).encoding == "latin-1"


def one_line_error(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(DataError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_decode_failure_names_the_byte_offset(tmp_path: Path) -> None:
    f = write(tmp_path / "raw.csv", CP1252_CSV)
    offset = CP1252_CSV.index(b"\x92")  # the first byte that is not UTF-8
    msg = one_line_error(read_table, f, encoding="utf-8")
    assert msg.startswith(f"{f}: byte offset {offset}: cannot decode byte(s) b'\\x92' as utf-8"), msg
    assert "--encoding" in one_line_error(read_table, f, encoding="no-such-codec")


def _import(table: Path, tmp_path: Path, **kw: Any) -> Any:
    return import_table(ImportOptions(table, tmp_path / kw.pop("out", "out"), **kw), progress=False)


@pytest.mark.parametrize(("content", "kw", "expected"), [
    ("id,text,label,split\na,x,1,train\n", {"columns": {"label": "score"}},
     "no column 'score' (given for label); the file has 'id', 'text', 'label', 'split'"),
    ("id,text,split\na,x,train\n", {}, "no label column 'label'; the file has 'id', 'text', 'split'; name it with "
                                       "--label-col"),
    ("id,text,label,split\na,x,1,train\na,y,2,test\n", {}, "line 3: id 'a' (column 'id') was already used on line 2"),
    ("id,text,label,split\na,x,1,train\nb, ,2,test\n", {}, "line 3: empty text (column 'text') and text is the only "
                                                          "modality"),
    ("id,text,label,split\na,x,good,train\n", {}, "line 2: label 'good' (column 'label') is not a number"),
    ("id,text,label,split\na,x,1,train\nb,y,4,test\n", {}, "line 3: label 4 (column 'label') is outside the label "
                                                          "range [-3, 3]; give the corpus's scale with --label-range"),
    ("id,text,label,split\na,x,neg,train\nb,y,meh,test\n",
     {"rule": LabelRule("classification", classes=["neg", "pos"])},
     "line 3: label 'meh' (column 'label') is not one of --classes neg,pos"),
    ("id,text,label,split\na,x,1,train\nb,y,2,holdout\n", {}, "line 3: split 'holdout' (column 'split') is not one "
                                                             "of train, valid, test"),
    ("id,text,label,split\na,x,1,train\nb,y,2,test\n", {}, "split 'valid' is empty (column 'split' names no row "
                                                          "valid)"),
    ("id,text,label\na,x,1\n", {}, "no split column 'split'"),
    ("id,text,label,split\na,x,1\n", {}, "line 2: 3 fields but the header has 4"),
    ("id,text,label\na,x,1\nb,y,2\nc,z,0\n", {"split": (0.8, 0.1, 0.1)}, "split 'test' is empty (3 rows in 3 "
                                                                         "groups)"),
])
def test_each_bad_input_is_one_line_naming_file_and_line(tmp_path: Path, content: str, kw: dict[str, Any],
                                                          expected: str, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "t.csv", content)
    msg = one_line_error(_import, f, tmp_path, **kw)
    assert msg.startswith(str(f)) and expected in msg, msg
    assert not (tmp_path / "out").exists()  # nothing written


def test_bad_options_and_files_are_one_line(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "t.csv", corpus())
    assert "--split: the shares must each lie in (0, 1) and sum to 1" in one_line_error(parse_ratios, "0.7,0.2,0.2")
    yml = write(tmp_path / "cols.yaml", "text: text\nlabels: label\n")
    assert one_line_error(_import, f, tmp_path, columns_file=yml) == \
        f"{yml}: key 'labels': unknown; the keys are id, text, label, split, group, context, media"
    assert "cannot tell the table format from the extension '.txt'" in one_line_error(
        _import, write(tmp_path / "t.txt", "a"), tmp_path)
    js = write(tmp_path / "t.jsonl", '{"id": "a", "text": "x", "label": 1}\n[1, 2]\n')
    assert one_line_error(_import, js, tmp_path) == f"{js}: line 2: expected a JSON object, got a list"
    assert "--split and --folds: give one way to split" in one_line_error(_import, f, tmp_path, split=(.6, .2, .2),
                                                                          folds=3)
    assert "--folds 30: only 8 groups to deal into 30 folds" in one_line_error(_import, f, tmp_path, folds=30,
                                                                              group_by="speaker")


# ------------------------------------------------------------------------------------------ labels, splits
def test_class_order(tmp_path: Path) -> None:
    def classes(values: list[str], rule: LabelRule) -> tuple[list[str], list[int | None]]:
        body = "".join(f"r{i},t,{v}\n" for i, v in enumerate(values))
        t = read_table(write(tmp_path / "c.csv", "id,text,label\n" + body))
        parsed = parse_rows(t, resolve_columns(t, {}), rule)
        return parsed.class_names, [r.class_index for r in parsed.rows]

    cls = LabelRule("classification")
    assert classes(["pos", "neg", "neu", "neg"], cls) == (["neg", "neu", "pos"], [2, 0, 1, 0])  # names sorted
    assert classes(["10", "2", "2.0", "-1"], cls) == (["-1", "2", "10"], [2, 1, 1, 0])  # integers numerically
    fixed = LabelRule("classification", classes=["pos", "neu", "neg"])
    assert classes(["pos", "neg", "neu"], fixed) == (["pos", "neu", "neg"], [0, 2, 1])  # --classes: the position
    # integer classes match numerically, names case-insensitively where that is unambiguous
    assert classes(["1.0", "0"], LabelRule("classification", classes=["0", "1"])) == (["0", "1"], [1, 0])
    assert classes(["True", "false"], LabelRule("classification", classes=["false", "true"])) == (
        ["false", "true"], [1, 0])
    with pytest.raises(DataError, match=r"line 2: label 'pos' \(column 'label'\) is not one of --classes Pos,POS"):
        classes(["pos"], LabelRule("classification", classes=["Pos", "POS"]))  # two case-insensitive matches
    with pytest.raises(DataError, match="holds one class only"):
        classes(["a", "a"], cls)


def test_group_aware_splits_are_reproducible_per_seed(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "t.csv", corpus(60, 12)))
    cols = resolve_columns(t, {"group": "speaker"})

    def draw(seed: int) -> dict[str, str]:
        parsed = parse_rows(t, cols, LabelRule())
        rule = assign_splits(parsed, t, cols, (0.6, 0.2, 0.2), seed)
        assert rule == {"rule": "ratios", "ratios": [0.6, 0.2, 0.2], "seed": seed, "group_by": "speaker"}
        by_group: dict[str, set[str]] = {}
        for r in parsed.rows:
            by_group.setdefault(r.group, set()).add(str(r.split))
        assert all(len(s) == 1 for s in by_group.values())  # a speaker's rows are in one split
        sizes = [sum(r.split == s for r in parsed.rows) for s in ("train", "valid", "test")]
        # 12 speakers of 5 rows; a group goes where its middle row falls of the bounds 36, 48, 60: the groups with
        # middles 2.5 .. 32.5 (7) train, 37.5 .. 47.5 (3) valid, 52.5 and 57.5 (2) test, whatever the order
        assert sizes == [35, 15, 10]
        return {r.id: str(r.split) for r in parsed.rows}

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    # the split column (aliases, any case) is used when no shares are given
    parsed = parse_rows(t, cols, LabelRule())
    # speaker k has rows k + 12 j, whose split (row % 3) is k % 3: one split per speaker, nothing to note; with 2
    # speakers of 10 rows, s0 has rows 0, 2, 4 (train, test, valid) and s1 rows 1, 3, 5 (valid, train, test)
    assert assign_splits(parsed, t, cols, None, 0) == {"rule": "column", "column": "split"}
    mixed = read_table(write(tmp_path / "m.csv", corpus(10, 2)))  # speaker s0: rows 0 (train), 2 (test), ...
    mcols = resolve_columns(mixed, {"group": "speaker"})
    assert assign_splits(parse_rows(mixed, mcols, LabelRule()), mixed, mcols, None, 0)["groups_across_splits"] == {
        "count": 2, "example": "'s0' in test, train, valid"}
    assert [r.split for r in parsed.rows[:4]] == ["train", "valid", "test", "train"]


def test_folds_partition_ids_and_keep_groups(tmp_path: Path) -> None:
    # groups of 3, 2, 2 and 1 rows into 2 folds, largest first to the emptier fold: {3, 1} and {2, 2}
    body = "".join(f"r{i},t{i},1,{g}\n" for i, g in enumerate("aaabbccd"))
    t = read_table(write(tmp_path / "f.csv", "id,text,label,group\n" + body))
    parsed = parse_rows(t, resolve_columns(t, {}), LabelRule())
    for seed in (0, 1, 2):
        fold = assign_folds(parsed, 2, seed)
        assert fold[0] == fold[1] == fold[2] == fold[7] and fold[3] == fold[4] == fold[5] == fold[6] != fold[0]
    t = read_table(write(tmp_path / "g.csv", corpus(40, 10)))
    parsed = parse_rows(t, resolve_columns(t, {"group": "speaker"}), LabelRule())
    fold = assign_folds(parsed, 5, seed=1)
    assert sorted(set(fold)) == [0, 1, 2, 3, 4] and fold == assign_folds(parsed, 5, seed=1)
    tests: list[str] = []
    for i in range(5):
        splits = fold_splits(parsed, fold, i, 0.25, seed=1)
        tests += [r.id for r, s in zip(parsed.rows, splits, strict=True) if s == "test"]
        assert {s for s, f in zip(splits, fold, strict=True) if f == i} == {"test"}
        split_of_group: dict[str, set[str]] = {}
        for r, s in zip(parsed.rows, splits, strict=True):
            split_of_group.setdefault(r.group, set()).add(s)
        assert all(len(v) == 1 for v in split_of_group.values())  # valid is drawn by group too
        assert {"train", "valid", "test"} == set(splits)
    assert sorted(tests) == sorted(r.id for r in parsed.rows)  # every id in exactly one test fold


# ------------------------------------------------------------------------------------------------ assembly
def test_text_only_import_absent_modalities_and_meta(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "raw.csv", CP1252_CSV + "".join(
        f"mot {i} {'bon' if i % 2 else 'mauvais'};{(i % 5) - 2};P{i % 4}\r\n" for i in range(21)
    ).encode("cp1252"))
    rep = _import(f, tmp_path, columns={"text": "Utterance", "label": "Sentiment", "group": "Speaker"},
                  split=(0.5, 0.25, 0.25), seed=7, name="mine")
    ds = load_dataset_dir(tmp_path / "out")
    assert ds.name == "mine" and ds.class_names == [] and ds.label_range == (-3.0, 3.0)
    n = sum(len(ds.splits[s]) for s in ("train", "valid", "test"))
    assert n == 24
    for part in ds.splits.values():
        assert part.lengths["audio"].tolist() == [0] * len(part) and part.lengths["visual"].tolist() == [0] * len(part)
        assert part.lengths["text"].tolist() == [1] * len(part) and part.dims() == {"text": 384, "audio": 1,
                                                                                    "visual": 1}
        assert float(part.features["audio"].abs().sum()) == 0.0
    assert "C’est très bien" in ds.splits["train"].raw_text + ds.splits["valid"].raw_text + ds.splits["test"].raw_text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    meta = manifest["meta"]
    assert meta["loader"] == "accord data import" and meta["task"] == "regression"
    assert meta["extractor"]["audio"] is None and meta["extractor"]["visual"] is None
    assert meta["features"]["audio"] == "absent: imported from a text-only table"  # what `accord predict` says
    assert meta["extractor"]["text"]["name"] == "minilm" and meta["extractor"]["level"] == "vector"
    assert set(meta["standardize"]) == {"text", "audio", "visual"}
    imp = meta["import"]
    assert imp["table"] == str(f) and imp["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert (imp["format"], imp["encoding"], imp["delimiter"]) == ("csv", "cp1252", ";")
    assert imp["columns"] == {"id": None, "text": "Utterance", "label": "Sentiment", "split": None,
                              "group": "Speaker", "context": None, "media": None}
    assert imp["task"] == "regression" and imp["classes"] is None and imp["label_range"] == [-3.0, 3.0]
    assert imp["split"] == {"rule": "ratios", "ratios": [0.5, 0.25, 0.25], "seed": 7, "group_by": "Speaker"}
    assert imp["rows"] == {"read": 24, "kept": 24, "dropped": {}} and imp["context"] is None and imp["media"] is None
    assert rep.record == imp and list(rep.summaries) == [tmp_path / "out"]
    lines = rep.summary_lines()
    assert lines[0] == f"read {f} (csv, cp1252, delimiter ';'): 24 rows, 24 kept"
    assert "absent: train audio" in lines[2]
    # standardised with training statistics: train's text columns have mean 0
    train = ds.splits["train"].features["text"][:, 0]
    assert float(train.mean(0).abs().max()) < 1e-5


def test_context_is_encoded_before_the_utterance_and_rows_without_label_dropped(
        tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    rows = "".join(f"r{i},utt {i},ctx {i},{(i % 3) - 1},{('train', 'valid', 'test')[i % 3]}\n" for i in range(6))
    f = write(tmp_path / "c.csv", "id,text,context,label,split\n" + rows + "r9,no label,ctx,,train\n"
              "r10,alone,,1,train\n")
    rep = _import(f, tmp_path, level="sequence")
    encoded = sorted(t for call in fake_minilm for t in call)
    assert encoded == sorted([f"ctx {i} [SEP] utt {i}" for i in range(6)] + ["alone"])
    ds = load_dataset_dir(tmp_path / "out")
    assert ds.splits["train"].raw_text == ["utt 0", "utt 3", "alone"]
    assert ds.splits["train"].lengths["text"].tolist() == [5, 5, 1]  # sequence level: a step per (fake) word piece
    assert rep.record["context"] == {"column": "context", "template": "{context} [SEP] {text}",
                                     "raw_text": "the utterance alone"}
    assert rep.record["rows"]["dropped"] == {"no label": {"count": 1, "lines": [8]}}
    assert ds.meta["text_input"] == "{context} [SEP] {text}"


def test_classification_folds_write_one_dataset_per_fold(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "s.jsonl", "".join(json.dumps({"id": f"s{i}", "text": f"line {i}", "context": f"c{i}",
                                                        "label": ["sarcastic", "plain"][i % 2], "show": f"show{i % 6}"})
                                            + "\n" for i in range(30)))
    rep = _import(f, tmp_path, folds=3, group_by="show", rule=LabelRule("classification", classes=["plain",
                                                                                                    "sarcastic"]))
    folders = read_folds(tmp_path / "out")
    assert [p.name for p in folders] == ["fold_0", "fold_1", "fold_2"] and rep.folds_index is not None
    index = read_folds_index(tmp_path / "out")
    assert index["meta"]["import"]["split"] == {"rule": "folds", "k": 3, "seed": 0, "group_by": "show",
                                                "valid_share": 0.15}
    tests: list[str] = []
    for i, folder in enumerate(folders):
        ds = load_dataset_dir(folder)
        assert ds.class_names == ["plain", "sarcastic"] and ds.label_range == (0.0, 1.0)
        assert ds.meta["fold"] == {"index": i, "k": 3}
        for part in ds.splits.values():
            assert part.class_labels is not None
            assert part.class_labels.tolist() == [int(j[1:]) % 2 ^ 1 for j in part.ids]  # sarcastic = 1
        tests += ds.splits["test"].ids
    assert sorted(tests) == sorted(f"s{i}" for i in range(30))
    assert any("benchmark it: accord benchmark --methods text,late_fusion --folds" in ln for ln in rep.summary_lines())


def test_folds_file_and_output_kinds(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "t.csv", corpus(12, 12))
    folds = write(tmp_path / "folds.csv", "id,fold\n" + "".join(f"u{i},{i % 2 + 1}\n" for i in range(12)))
    _import(f, tmp_path, folds_file=folds)
    for i, folder in enumerate(read_folds(tmp_path / "out")):
        ids = load_dataset_dir(folder).splits["test"].ids
        assert sorted(ids) == sorted(f"u{j}" for j in range(12) if j % 2 == i)  # fold value 1 -> fold_0
    assert "holds k folds" in one_line_error(_import, f, tmp_path)  # a single dataset into a folds folder
    bad = write(tmp_path / "bad.csv", "id,fold\nu1,1\nzz,2\n")
    assert one_line_error(_import, f, tmp_path, out="o2", folds_file=bad) == \
        f"{bad}: line 3: id 'zz' is not a row of the imported table (or its row was dropped)"


def test_text_views_per_level(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    texts = ["b c", "a", "", "a"]
    vec = encode_texts(texts, "vector")
    want = fake_encode(texts)
    assert [v.shape for v in vec] == [(1, 384), (1, 384), (0, 384), (1, 384)]  # an empty text: absent (T = 0)
    assert np.array_equal(vec[0][0], want[0][1]) and np.array_equal(vec[3], vec[1])
    seq = encode_texts(texts, "sequence")
    assert [v.shape for v in seq] == [(2, 384), (1, 384), (0, 384), (1, 384)]  # a step per (fake) word piece
    assert np.array_equal(seq[0], want[0][0])


# ------------------------------------------------------------------------------------------------- the CLI
def test_cli_import_then_train_a_text_only_classification_import(tmp_path: Path,
                                                                  fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "d.tsv", "Id\tUtterance\tEmotion\tSpeaker\n" + "".join(
        f"d{i}\twords {i} here\t{['neg', 'neu', 'pos'][i % 3]}\tsp{i % 7}\n" for i in range(42)))
    res = runner.invoke(app, ["data", "import", str(f), "--out", str(tmp_path / "dlg"), "--text-col", "utterance",
                              "--label-col", "emotion", "--task", "classification", "--split", "0.6,0.2,0.2",
                              "--group-by", "speaker", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "  classes: train neg " in res.output and "--set task.kind=classification" in res.output
    res = runner.invoke(app, ["train", "--method", "late_fusion", "--dataset", "saved",
                              "--set", f"data.path={tmp_path / 'dlg'}", "--set", "task.kind=classification",
                              "--set", "train.epochs=1", "--set", f"output.dir={tmp_path / 'runs'}"])
    assert res.exit_code == 0, res.output
    assert "| test |" in res.output and "F1_neu" in res.output
    res = runner.invoke(app, ["data", "import", str(f), "--out", str(tmp_path / "x"), "--label-col", "nope"])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        f"error: {f}: no column 'nope' (given for label); the file has 'Id', 'Utterance', 'Emotion', 'Speaker'"]


def test_cli_01_labels_imported_as_regression_stop_at_the_trainers_label_check(
        tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    f = write(tmp_path / "b.csv", corpus(18, 18, labels=lambda i: i % 2))
    res = runner.invoke(app, ["data", "import", str(f), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--method", "text", "--dataset", "saved", "--set", f"data.path={tmp_path / 'b'}",
                              "--set", "train.epochs=1", "--set", f"output.dir={tmp_path / 'runs'}"])
    err = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(err) == 1, res.output
    assert "only two values (0 and 1)" in err[0] and "task.kind=classification" in err[0]


# ----------------------------------------------------------------------------------- media (optional extra)
MEDIA = ("imageio_ffmpeg", "opensmile", "mediapipe")
MISSING = [m for m in MEDIA if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"media extra not installed (missing {', '.join(MISSING)}): "
                                           "pip install 'accord[media]'")
def test_media_import_marks_a_missing_clip_absent(tmp_path: Path, fake_minilm: list[list[str]]) -> None:
    from accord.features.media import make_test_media

    clips = tmp_path / "clips"
    make_test_media(clips / "a.wav", "tone", seconds=1.0, freq=220)
    make_test_media(clips / "sub" / "b.wav", "tone", seconds=1.0, freq=330)
    f = write(tmp_path / "m.csv", "id,text,label,split,media\na,one,1,train,a.wav\nb,two,-1,valid,sub/b.wav\n"
                                  "c,three,0,test,gone.wav\n")
    rep = _import(f, tmp_path, media=clips)
    ds = load_dataset_dir(tmp_path / "out")
    assert ds.splits["train"].lengths["audio"].tolist() == [1] and ds.dims["audio"] == 88
    assert ds.splits["test"].lengths["audio"].tolist() == [0] and ds.splits["test"].lengths["visual"].tolist() == [0]
    assert ds.splits["test"].lengths["text"].tolist() == [1]
    assert list(rep.failed) == ["c"] and "gone.wav: not found" in rep.failed["c"]
    assert sorted(p.name for p in (tmp_path / "out" / "clips").iterdir()) == ["a.npz", "b.npz"]
    assert ds.meta["extractor"]["audio"]["name"] == "egemaps"
    assert (tmp_path / "out" / "extract.log").is_file()  # native logging captured, as accord extract's; kept by save
    _import(f, tmp_path, media=clips)  # again: the clip cache is kept and reused
    assert sorted(p.name for p in (tmp_path / "out" / "clips").iterdir()) == ["a.npz", "b.npz"]
    # no text column: transcripts from a sidecar .txt beside the clip; a row whose clip is missing has nothing left
    (clips / "a.txt").write_text("from the sidecar")
    bare = write(tmp_path / "bare.csv", "id,label,split,media\na,1,train,a.wav\nb,-1,valid,sub/b.wav\nc,0,test,a.wav\n"
                                       "d,0,test,gone.wav\n")
    rep = _import(bare, tmp_path, out="bare", media=clips)
    ds = load_dataset_dir(tmp_path / "bare")
    assert ds.splits["train"].raw_text == ["from the sidecar"] and ds.splits["valid"].raw_text == [""]
    assert ds.splits["valid"].lengths["text"].tolist() == [0] and ds.splits["valid"].lengths["audio"].tolist() == [1]
    assert rep.record["rows"]["dropped"] == {"no usable modality (empty text, clip failed)": {"count": 1,
                                                                                               "lines": [5]}}
    by_id = write(tmp_path / "by_id.csv", "id,label,split\na,1,train\nb,-1,valid\nc,0,test\n")
    assert one_line_error(_import, by_id, tmp_path, out="by_id", media=clips) == (
        f"{by_id}: split 'valid' has no row with a usable modality (its rows have an empty text and no usable clip); "
        "give those rows a text or a clip")


def test_save_dataset_carries_kept_entries_only(tmp_path: Path) -> None:
    from accord.data.safe import save_dataset
    from conftest import tiny_dataset

    out = tmp_path / "ds"
    (out / "clips").mkdir(parents=True)
    (out / "clips" / "a.npz").write_bytes(b"cache")
    save_dataset(tiny_dataset(), out, keep=("clips",))  # a folder holding only the cache is not foreign content
    assert (out / "clips" / "a.npz").read_bytes() == b"cache" and (out / "manifest.json").is_file()
    save_dataset(tiny_dataset(seed=1), out, keep=("clips",))  # replaced again: the cache is carried over
    assert (out / "clips" / "a.npz").read_bytes() == b"cache"
    save_dataset(tiny_dataset(), out)  # without keep the new folder has no cache
    assert not (out / "clips").exists()
    other = tmp_path / "other"
    (other / "clips").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="is not empty and has no manifest.json"):
        save_dataset(tiny_dataset(), other, keep=("clips",))
