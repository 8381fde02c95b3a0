"""The MMSA 2.x pickle loader and writer, on small files written in exactly MMSA's layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core.errors import ConfigError, DataError
from accord.core.types import MODALITIES
from accord.data import build_dataset
from accord.data.mmsa import load_mmsa_pickle, write_mmsa_pickle
from accord.data.safe import convert_mmsa, load_any, load_dataset_dir
from conftest import tiny_dataset

SIZES = {"train": 6, "valid": 3, "test": 3}


def mmsa_dict(
    dims: tuple[int, int, int],
    t: tuple[int, int, int] = (8, 10, 12),
    sims: bool = False,
    aligned: bool = False,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """A small dataset in the MMSA 2.x layout, built directly (not via write_mmsa_pickle)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    t_text, t_audio, t_vision = t
    for split, n in SIZES.items():
        text_len = rng.integers(2, t_text + 1, n)
        text_bert = np.zeros((n, 3, t_text), dtype=np.float32)
        text_bert[:, 0, :] = rng.integers(100, 30000, (n, t_text))
        text_bert[:, 1, :] = np.arange(t_text)[None, :] < text_len[:, None]
        hi = 1.0 if sims else 3.0
        y = np.round(rng.uniform(-hi, hi, n), 1).astype(np.float32)
        entry: dict[str, np.ndarray] = {
            "raw_text": np.array([f"{split} sentence {i} café" for i in range(n)], dtype=object),
            "audio": rng.normal(size=(n, t_audio, dims[1])).astype(np.float32),
            "vision": rng.normal(size=(n, t_vision, dims[2])).astype(np.float32),
            "id": np.array([f"vid{split}{i // 2}$_${i}" for i in range(n)], dtype=object),
            "text": rng.normal(size=(n, t_text, dims[0])).astype(np.float32),
            "text_bert": text_bert,
            "annotations": np.array(["Positive" if v > 0 else "Negative" for v in y], dtype=object),
            "classification_labels": (y > 0).astype(np.float32),
            "regression_labels": y,
        }
        if not aligned:
            entry["audio_lengths"] = rng.integers(1, t_audio + 1, n)
            entry["vision_lengths"] = rng.integers(1, t_vision + 1, n)
        if sims:
            for k in "TAV":
                entry[f"regression_labels_{k}"] = np.round(rng.uniform(-1, 1, n), 1).astype(np.float32)
        out[split] = entry
    return out


def dump(obj: object, path: Path) -> Path:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return path


@pytest.mark.parametrize(
    ("name", "dims", "sims", "family"),
    [
        ("mosi", (768, 5, 20), False, "mosi"),
        ("mosei", (768, 74, 35), False, "mosi"),
        ("sims", (768, 33, 709), True, "sims"),
    ],
)
def test_load_mmsa_layout(
    tmp_path: Path, name: str, dims: tuple[int, int, int], sims: bool, family: str
) -> None:
    raw = mmsa_dict(dims, sims=sims)
    path = dump(raw, tmp_path / "unaligned_50.pkl")
    ds = load_mmsa_pickle(path)
    assert ds.metric_family == family
    assert ds.label_range == ((-1.0, 1.0) if sims else (-3.0, 3.0))
    assert ds.name == f"{name}-unaligned_50"
    assert ds.dims == dict(zip(MODALITIES, dims, strict=True))
    for split, n in SIZES.items():
        part, r = ds[split], raw[split]
        assert len(part) == n
        assert part.seq_lens() == {"text": 8, "audio": 10, "visual": 12}
        assert torch.equal(
            part.lengths["text"], torch.from_numpy(r["text_bert"][:, 1].sum(1).astype(np.int64))
        )
        assert torch.equal(part.lengths["audio"], torch.from_numpy(r["audio_lengths"]).long())
        assert torch.equal(part.lengths["visual"], torch.from_numpy(r["vision_lengths"]).long())
        assert torch.equal(part.labels, torch.from_numpy(r["regression_labels"]))
        assert part.ids == list(r["id"])
        assert part.raw_text == list(r["raw_text"])
        assert part.raw_text[0].endswith("café")
        # Real steps are kept bit for bit; padding is zeroed (the data contract).
        for m, key in (("text", "text"), ("audio", "audio"), ("visual", "vision")):
            x = part.features[m]
            for i in range(n):
                k = int(part.lengths[m][i])
                assert torch.equal(x[i, :k], torch.from_numpy(r[key][i, :k]))
                assert bool((x[i, k:] == 0).all())
        if sims:
            assert set(part.unimodal_labels) == set(MODALITIES)
            for m, k in zip(MODALITIES, "TAV", strict=True):
                assert torch.equal(part.unimodal_labels[m], torch.from_numpy(r[f"regression_labels_{k}"]))
        else:
            assert part.unimodal_labels == {}
    assert ds.meta["aligned"] is False
    assert ds.meta["text_lengths"] == "text_bert attention mask"


def test_aligned_file_defaults_to_full_length(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 5, 20), t=(6, 6, 6), aligned=True)
    for part in raw.values():
        del part["text_bert"]
    ds = load_mmsa_pickle(dump(raw, tmp_path / "aligned_50.pkl"))
    for part in ds.splits.values():
        for m in MODALITIES:
            assert bool((part.lengths[m] == 6).all())
    assert ds.meta["aligned"] is True
    assert ds.meta["text_lengths"] == "full length"


def test_family_detection_and_override(tmp_path: Path) -> None:
    # Labels in [-1, 1] but no regression_labels_T: still the MOSI family.
    raw = mmsa_dict((768, 5, 20), sims=True)
    for part in raw.values():
        for k in "TAV":
            del part[f"regression_labels_{k}"]
    path = dump(raw, tmp_path / "small_labels.pkl")
    assert load_mmsa_pickle(path).metric_family == "mosi"
    assert load_mmsa_pickle(path, family="sims").metric_family == "sims"
    # MOSI-range labels forced into the SIMS family are out of range.
    mosi = dump(mmsa_dict((768, 5, 20)), tmp_path / "mosi.pkl")
    with pytest.raises(DataError, match="outside \\[-1, 1\\]"):
        load_mmsa_pickle(mosi, family="sims")


def test_nonfinite_policy(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 5, 20))
    raw["train"]["audio"][0, 0, :3] = -np.inf
    raw["valid"]["vision"][1, 0, 0] = np.nan
    path = dump(raw, tmp_path / "unaligned_50.pkl")
    with pytest.raises(DataError, match="3 non-finite values") as err:
        load_mmsa_pickle(path)
    assert "data.params.nonfinite=zero" in str(err.value)
    ds = load_mmsa_pickle(path, nonfinite="zero")
    assert float(ds["train"].features["audio"][0, 0, :3].abs().sum()) == 0.0
    assert ds.meta["nonfinite_replaced"] == {"train": {"audio": 3}, "valid": {"vision": 1}}
    via_registry = build_dataset("mmsa", str(path), {"nonfinite": "zero"})
    assert torch.equal(via_registry["train"].features["audio"], ds["train"].features["audio"])


def test_max_len_truncates(tmp_path: Path) -> None:
    path = dump(mmsa_dict((768, 5, 20)), tmp_path / "unaligned_50.pkl")
    full = load_mmsa_pickle(path)
    ds = build_dataset("mmsa", str(path), {"max_len": {"audio": 4, "text": 3}})
    for split in SIZES:
        assert ds[split].seq_lens() == {"text": 3, "audio": 4, "visual": 12}
        assert torch.equal(ds[split].lengths["audio"], full[split].lengths["audio"].clamp(max=4))
        assert torch.equal(ds[split].features["audio"], full[split].features["audio"][:, :4])
    with pytest.raises(ConfigError, match="data.params.max_len"):
        build_dataset("mmsa", str(path), {"max_len": {"audio": 0}})


def test_round_trip_dataset_pickle(tmp_path: Path) -> None:
    ds = tiny_dataset(n=7)
    path = write_mmsa_pickle(ds, tmp_path / "unaligned_50.pkl")
    back = load_mmsa_pickle(path)
    assert back.metric_family == "mosi"
    for split in SIZES:
        a, b = ds[split], back[split]
        for m in MODALITIES:
            assert torch.equal(a.features[m], b.features[m])
            assert torch.equal(a.lengths[m], b.lengths[m])
        assert torch.equal(a.labels, b.labels)
        assert a.ids == b.ids
    with path.open("rb") as fh:
        raw = pickle.load(fh)  # our own file, trusted: check the extra MMSA keys
    part = raw["train"]
    assert part["text_bert"].shape == (7, 3, 5)
    y = part["regression_labels"]
    assert np.array_equal(part["classification_labels"], np.sign(y).astype(np.int64) + 1)
    assert set(part["annotations"]) <= {"Negative", "Neutral", "Positive"}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_round_trip_sims_unimodal_and_aligned(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 33, 709), t=(5, 5, 5), sims=True, aligned=True)
    ds = load_mmsa_pickle(dump(raw, tmp_path / "in.pkl"))
    out = write_mmsa_pickle(ds, tmp_path / "aligned.pkl", aligned=True)
    back = load_mmsa_pickle(out)
    assert back.metric_family == "sims"
    for split in SIZES:
        for m in MODALITIES:
            assert torch.equal(ds[split].unimodal_labels[m], back[split].unimodal_labels[m])
            assert torch.equal(ds[split].features[m], back[split].features[m])
    # Unaligned data cannot be written in the aligned layout without losing lengths.
    with pytest.raises(DataError, match="aligned=True"):
        write_mmsa_pickle(tiny_dataset(), tmp_path / "bad.pkl", aligned=True)


def test_convert_to_safe_format(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 33, 709), sims=True)
    path = dump(raw, tmp_path / "unaligned_39.pkl")
    ds = convert_mmsa(path, tmp_path / "sims_safe")
    back = load_dataset_dir(tmp_path / "sims_safe")
    again = load_any(tmp_path / "sims_safe")
    assert back.metric_family == again.metric_family == "sims"
    assert back.label_range == (-1.0, 1.0)
    assert back.meta["family"] == "sims"
    for split in SIZES:
        for m in MODALITIES:
            assert torch.equal(ds[split].features[m], back[split].features[m])
            assert torch.equal(ds[split].lengths[m], back[split].lengths[m])
            assert torch.equal(ds[split].unimodal_labels[m], back[split].unimodal_labels[m])
        assert torch.equal(ds[split].labels, back[split].labels)
        assert back[split].ids == ds[split].ids
        assert back[split].raw_text == ds[split].raw_text
    assert load_any(path).metric_family == "sims"


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    # A hand-made pickle calling os.system: GLOBAL 'os system', a string argument, TUPLE1, REDUCE.
    marker = tmp_path / "ran"
    payload = b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(payload)
    with pytest.raises(DataError, match="refusing to unpickle os.system") as err:
        load_mmsa_pickle(bad)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    # The same hidden inside a valid-looking MMSA split (pickled by pickle.dump itself).
    raw = mmsa_dict((768, 5, 20))
    raw["train"]["annotations"] = _Evil()  # type: ignore[assignment]
    with pytest.raises(DataError, match="refusing to unpickle (os|posix|nt).system"):
        load_mmsa_pickle(dump(raw, tmp_path / "unaligned_50.pkl"))


def test_other_pickle_protocols_load(tmp_path: Path) -> None:
    raw = mmsa_dict((768, 5, 20))
    raw["train"]["audio"].flags.writeable = False  # protocol 5 stores it as bytes: it unpickles read-only
    for protocol in (2, 3, 5):
        path = tmp_path / f"p{protocol}.pkl"
        with path.open("wb") as fh:
            pickle.dump(raw, fh, protocol=protocol)
        ds = load_mmsa_pickle(path)
        assert torch.equal(ds["test"].labels, torch.from_numpy(raw["test"]["regression_labels"]))
