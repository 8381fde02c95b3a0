"""A catalogue of bad data inputs: each gives ONE line naming the problem (file / key), never a traceback."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.core.errors import AccordError, ConfigError, DataError
from accord.data import build_dataset
from accord.data.mmsa import load_mmsa_pickle
from accord.data.mosi_u import load_mosi_u
from accord.data.safe import MANIFEST, load_any, load_dataset_dir, save_dataset
from conftest import rewrite_npz, tiny_dataset

Raw = dict[str, Any]


def mmsa(n: tuple[int, int, int] = (4, 3, 3), t: tuple[int, int, int] = (6, 7, 8)) -> Raw:
    """A valid MOSI-shaped MMSA dict (768/5/20)."""
    rng = np.random.default_rng(0)
    out: Raw = {}
    for split, k in zip(("train", "valid", "test"), n, strict=True):
        tb = np.zeros((k, 3, t[0]), dtype=np.float32)
        tb[:, 1, :3] = 1
        out[split] = {
            "text": rng.normal(size=(k, t[0], 768)).astype(np.float32),
            "text_bert": tb,
            "audio": rng.normal(size=(k, t[1], 5)).astype(np.float32),
            "vision": rng.normal(size=(k, t[2], 20)).astype(np.float32),
            "audio_lengths": np.full(k, 2),
            "vision_lengths": np.full(k, 3),
            "regression_labels": np.linspace(-2, 2, k).astype(np.float32),
            "id": np.array([f"{split}{i}" for i in range(k)], dtype=object),
            "raw_text": np.array(["hello"] * k, dtype=object),
        }
    return out


def write(tmp: Path, obj: object, name: str = "unaligned_50.pkl") -> Path:
    path = tmp / name
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def edited(edit: Callable[[Raw], object]) -> Callable[[Path], Callable[[], object]]:
    """A case: mutate mmsa() with ``edit`` (its return value is ignored), write it and load it."""

    def make(tmp: Path) -> Callable[[], object]:
        raw = mmsa()
        edit(raw)
        path = write(tmp, raw)
        return lambda: load_mmsa_pickle(path)

    return make


def replaced(build: Callable[[Raw], object]) -> Callable[[Path], Callable[[], object]]:
    """A case: write ``build(mmsa())`` (a replacement object) and load it."""

    def make(tmp: Path) -> Callable[[], object]:
        path = write(tmp, build(mmsa()))
        return lambda: load_mmsa_pickle(path)

    return make


def saved(edit: Callable[[Path], None]) -> Callable[[Path], Callable[[], object]]:
    """A case: save a valid dataset directory, apply ``edit`` to it, load it."""

    def make(tmp: Path) -> Callable[[], object]:
        out = save_dataset(tiny_dataset(n=5), tmp / "ds")
        edit(out)
        return lambda: load_dataset_dir(out)

    return make


def _corrupt_npz(out: Path) -> None:
    """Truncate valid.npz and update its checksum, so the npz reader (not the checksum) must catch it."""
    file = out / "valid.npz"
    file.write_bytes(file.read_bytes()[:50])
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["splits"]["valid"]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    (out / MANIFEST).write_text(json.dumps(manifest))


def _set_manifest(out: Path, key: str, value: object) -> None:
    manifest = json.loads((out / MANIFEST).read_text())
    manifest[key] = value
    (out / MANIFEST).write_text(json.dumps(manifest))


def _set(split: str, key: str, value: Callable[[Raw], object]) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        raw[split][key] = value(raw[split])

    return edit


def _poke(split: str, key: str, index: tuple[int, ...], value: float) -> Callable[[Raw], None]:
    def edit(raw: Raw) -> None:
        raw[split][key][index] = value

    return edit


def _file(content: bytes, name: str = "unaligned_50.pkl") -> Callable[[Path], Callable[[], object]]:
    def make(tmp: Path) -> Callable[[], object]:
        path = tmp / name
        path.write_bytes(content)
        return lambda: load_any(path)

    return make


def _truncated(tmp: Path) -> Callable[[], object]:
    data = pickle.dumps(mmsa(), protocol=4)
    path = tmp / "unaligned_50.pkl"
    path.write_bytes(data[: len(data) // 2])
    return lambda: load_mmsa_pickle(path)


def _registry(params: dict[str, Any]) -> Callable[[Path], Callable[[], object]]:
    def make(tmp: Path) -> Callable[[], object]:
        path = write(tmp, mmsa())
        return lambda: build_dataset("mmsa", str(path), params)

    return make


CASES: list[tuple[str, Callable[[Path], Callable[[], object]], type[AccordError], list[str]]] = [
    # --- MMSA pickles ---
    (
        "missing key in split",
        edited(lambda r: r["valid"].pop("vision")),
        DataError,
        ["unaligned_50.pkl", "split 'valid': missing key 'vision'"],
    ),
    (
        "missing labels key",
        edited(lambda r: r["test"].pop("regression_labels")),
        DataError,
        ["split 'test'", "missing key 'regression_labels'"],
    ),
    ("missing split", edited(lambda r: r.pop("test")), DataError, ["missing split 'test'"]),
    (
        "split not a dict",
        edited(lambda r: r.update(train=[1, 2])),
        DataError,
        ["split 'train'", "expected a dict of arrays"],
    ),
    (
        "wrong ndim",
        edited(_set("train", "audio", lambda s: s["audio"][:, 0, :])),
        DataError,
        ["split 'train'", "key 'audio' must be 3-D", "(4, 5)"],
    ),
    (
        "labels 2-D",
        edited(_set("valid", "regression_labels", lambda s: np.zeros((3, 2), np.float32))),
        DataError,
        ["key 'regression_labels' must be 1-D"],
    ),
    (
        "rows differ audio vs labels",
        edited(_set("train", "audio", lambda s: s["audio"][:3])),
        DataError,
        ["key 'audio' has 3 rows but 'regression_labels' has 4"],
    ),
    (
        "ids rows differ",
        edited(_set("test", "id", lambda s: s["id"][:2])),
        DataError,
        ["key 'id' has 2 rows"],
    ),
    (
        "NaN in features",
        edited(_poke("valid", "text", (0, 0, 0), np.nan)),
        DataError,
        ["split 'valid'", "key 'text'", "1 non-finite"],
    ),
    (
        "Inf with nonfinite=error",
        edited(_poke("train", "audio", (1, 1, 1), -np.inf)),
        DataError,
        ["key 'audio'", "set data.params.nonfinite=zero"],
    ),
    (
        "NaN label",
        edited(_poke("train", "regression_labels", (0,), np.nan)),
        DataError,
        ["key 'regression_labels'", "NaN/Inf labels"],
    ),
    (
        "label out of range",
        edited(_poke("test", "regression_labels", (1,), 3.5)),
        DataError,
        ["split 'test'", "key 'regression_labels'", "3.5 outside [-3, 3]"],
    ),
    (
        "empty split",
        replaced(lambda r: {**r, "valid": {k: v[:0] for k, v in r["valid"].items()}}),
        DataError,
        ["split 'valid'", "is empty"],
    ),
    (
        "lengths beyond T",
        edited(_set("train", "audio_lengths", lambda s: np.full(4, 9))),
        DataError,
        ["key 'audio_lengths'", "length of 9 beyond the padded length T=7"],
    ),
    (
        "negative length",
        edited(_set("train", "vision_lengths", lambda s: np.full(4, -1))),
        DataError,
        ["key 'vision_lengths'", "negative length"],
    ),
    (
        "text_bert mask not 0/1",
        edited(_poke("train", "text_bert", (0, 1, 0), 5)),
        DataError,
        ["key 'text_bert'", "attention mask"],
    ),
    (
        "non-numeric features",
        edited(_set("train", "vision", lambda s: np.array(["a"] * 4, dtype=object))),
        DataError,
        ["split 'train'", "key 'vision' must be a numeric array"],
    ),
    (
        "dims differ between splits",
        edited(_set("test", "audio", lambda s: np.zeros((3, 7, 6), np.float32))),
        DataError,
        ["split 'test'", "key 'audio' has feature dim 6 but train has 5"],
    ),
    (
        "unimodal labels only in train",
        edited(_set("train", "regression_labels_T", lambda s: np.zeros(4))),
        DataError,
        ["split 'valid'", "missing key 'regression_labels_T'"],
    ),
    (
        "non-dict pickle",
        replaced(lambda r: [1, 2, 3]),
        DataError,
        ["top level is a list", "train, valid, test"],
    ),
    (
        "corrupt pickle",
        _file(b"\x80\x04this is not a pickle at all"),
        DataError,
        ["unaligned_50.pkl", "not a readable pickle"],
    ),
    ("truncated pickle", _truncated, DataError, ["unaligned_50.pkl", "truncated"]),
    ("text file, not a pickle", _file(b"id,text,label\n1,hi,0\n"), DataError, ["not a readable pickle"]),
    ("malicious pickle", _file(b"cos\nsystem\n(Vtrue\ntR."), DataError, ["refusing to unpickle os.system"]),
    (
        "nonexistent file",
        lambda tmp: lambda: load_mmsa_pickle(tmp / "nope" / "unaligned_50.pkl"),
        DataError,
        ["nope/unaligned_50.pkl", "file not found"],
    ),
    (
        "unrecognised path",
        _file(b"hello", name="data.txt"),
        DataError,
        ["data.txt", "expected an MMSA .pkl file or a dataset directory"],
    ),
    # --- data.params ---
    (
        "unknown data.params key",
        _registry({"bogus": 1}),
        ConfigError,
        ["data.params.bogus", "unknown key for dataset 'mmsa'", "family"],
    ),
    ("bad family value", _registry({"family": "mosei"}), ConfigError, ["data.params.family"]),
    (
        "unknown option to load_any",
        lambda tmp: lambda: load_any(write(tmp, mmsa()), bogus=1),
        ConfigError,
        ["data.params.bogus", "unknown key"],
    ),
    ("bad nonfinite value", _registry({"nonfinite": "drop"}), ConfigError, ["data.params.nonfinite"]),
    (
        "mmsa without a path",
        lambda tmp: lambda: build_dataset("mmsa", None),
        ConfigError,
        ["data.path", "needs a path"],
    ),
    # --- safe format ---
    (
        "checksum mismatch",
        saved(lambda out: (out / "train.npz").write_bytes(b"PK garbage")),
        DataError,
        ["train.npz: checksum mismatch (file changed or corrupt)"],
    ),
    ("corrupt npz", saved(_corrupt_npz), DataError, ["valid.npz: not a readable .npz"]),
    (
        "missing array in npz",
        saved(lambda out: rewrite_npz(out, "test", lambda a: a.pop("labels"))),
        DataError,
        ["test.npz: missing array 'labels'"],
    ),
    ("missing manifest", saved(lambda out: (out / MANIFEST).unlink()), DataError, ["manifest.json: missing"]),
    (
        "manifest not JSON",
        saved(lambda out: (out / MANIFEST).write_text("{not json")),
        DataError,
        ["manifest.json: not valid JSON"],
    ),
    (
        "wrong format",
        saved(lambda out: _set_manifest(out, "format", "something-else")),
        DataError,
        ["manifest.json", "key 'format'", "'accord-dataset'"],
    ),
    (
        "wrong version",
        saved(lambda out: _set_manifest(out, "version", 2)),
        DataError,
        ["manifest.json", "key 'version' is 2", "version 1"],
    ),
    (
        "missing npz",
        saved(lambda out: (out / "valid.npz").unlink()),
        DataError,
        ["valid.npz: missing", "split 'valid'"],
    ),
    (
        "missing dataset dir",
        lambda tmp: lambda: load_dataset_dir(tmp / "absent"),
        DataError,
        ["absent: dataset directory not found"],
    ),
    # --- MOSI-U ---
    (
        "mosi-u folder missing",
        lambda tmp: lambda: load_mosi_u(tmp / "no_mosi"),
        DataError,
        ["no_mosi", "not found", "ACCORD_DATA"],
    ),
    (
        "mosi-u feature file missing",
        lambda tmp: (
            (tmp / "mosi" / "bclstm").mkdir(parents=True),
            (tmp / "mosi" / "label.csv").write_text("id,text,label,mode\n"),
            lambda: load_mosi_u(tmp / "mosi"),
        )[-1],
        DataError,
        ["transcripts.csv: missing"],
    ),
]


@pytest.mark.parametrize(("case", "make", "exc", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(
    tmp_path: Path,
    case: str,
    make: Callable[[Path], Callable[[], object]],
    exc: type[AccordError],
    needles: list[str],
) -> None:
    action = make(tmp_path)
    with pytest.raises(exc) as err:
        action()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert "Traceback" not in msg


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 12


def test_valid_base_inputs_load(tmp_path: Path) -> None:
    """The catalogue's starting points are valid, so each case fails for its own edit only."""
    ds = load_mmsa_pickle(write(tmp_path, mmsa()))
    assert len(ds["train"]) == 4
    out = save_dataset(tiny_dataset(n=5), tmp_path / "ds")
    assert len(load_dataset_dir(out)["valid"]) == 5
    rewrite_npz(out, "valid", lambda a: None)
    assert len(load_dataset_dir(out)["valid"]) == 5
