"""Robustness suite (curves, relative/effective robustness) and training-time modality dropout."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from accord.api import evaluate, robustness
from accord.augment.modality_dropout import modality_dropout
from accord.config import load_config
from accord.core.errors import ConfigError
from accord.evaluation.robustness import Curve, area_under, effective_robustness, parse_levels
from accord.studies.robustness import run_robustness
from accord.training.trainer import Trainer

TINY = ["data.params.n_train=96", "data.params.n_valid=48", "data.params.n_test=48",
        "train.batch_size=16", "train.epochs=2"]


def test_area_under_by_hand() -> None:
    # ((80+60)/2 * 0.5 + (60+50)/2 * 0.5) / 1 = (35 + 27.5) = 62.5
    assert area_under([0, 0.5, 1.0], [80, 60, 50]) == pytest.approx(62.5)
    # uneven spacing: ((1+1)/2*0.2 + (1+0)/2*0.8) / 1.0 = 0.2 + 0.4 = 0.6
    assert area_under([0, 0.2, 1.0], [1, 1, 0]) == pytest.approx(0.6)
    assert area_under([0], [70]) == 70
    with pytest.raises(ValueError, match="levels must increase"):
        area_under([0, 0.5, 0.5], [1, 2, 3])


def test_effective_robustness_by_hand() -> None:
    run = Curve("m", "drop", "text", "Acc", [0, 1], [80, 70], [0, 0])   # RR 75, loses 5
    ref = Curve("lf", "drop", "text", "Acc", [0, 1], [78, 58], [0, 0])  # RR 68, loses 10
    assert effective_robustness(run, ref) == pytest.approx(5.0)
    assert effective_robustness(ref, run) == pytest.approx(-5.0)


def test_parse_levels() -> None:
    assert parse_levels("0,0.25,1") == [0.0, 0.25, 1.0]
    for bad, msg in (("0.1,0.2", "must start at 0"), ("0,0.5,0.2", "must increase"), ("0,x", "numbers")):
        with pytest.raises(ConfigError, match=msg):
            parse_levels(bad)


def _batch(n: int = 400):
    from accord.data import build_dataset

    ds = build_dataset("conflictbench", params={"n_train": n, "n_valid": 8, "n_test": 8, "missing_rate": 0.3})
    return ds["train"].batch(torch.arange(n))


def test_modality_dropout_rates_and_guarantees() -> None:
    b = _batch()
    same = modality_dropout(b, {}, torch.Generator().manual_seed(0))
    assert same is b
    out = modality_dropout(b, {"audio": 0.5, "visual": 0.5, "text": 0.5}, torch.Generator().manual_seed(0))
    removed = b.present & ~out.present
    assert not bool((out.present & ~b.present).any())        # never adds a modality back
    assert bool(out.present.any(dim=1).all())                 # every sample keeps at least one modality
    only_audio = modality_dropout(b, {"audio": 0.5}, torch.Generator().manual_seed(1))
    # rows that only had audio left keep it; the rest lose it with probability 0.5
    eligible = b.present[:, 1] & (b.present[:, 0] | b.present[:, 2])
    share = (b.present[:, 1] & ~only_audio.present[:, 1]).sum() / eligible.sum()
    assert 0.42 < float(share) < 0.58
    assert torch.equal(only_audio.present[:, [0, 2]], b.present[:, [0, 2]])
    # by hand: one uniform draw per sample for audio only (a rate of 0 draws nothing), below the rate = removed
    draw = torch.rand(b.size, generator=torch.Generator().manual_seed(1)) < 0.5
    assert torch.equal(b.present[:, 1] & ~only_audio.present[:, 1], eligible & draw)
    rows = removed[:, 1]
    assert float(out.features["audio"][rows].abs().sum()) == 0.0 and not bool(out.mask["audio"][rows].any())
    kept = b.present[:, 1] & ~rows
    assert torch.equal(out.features["audio"][kept], b.features["audio"][kept])
    again = modality_dropout(b, {"audio": 0.5, "visual": 0.5, "text": 0.5}, torch.Generator().manual_seed(0))
    assert torch.equal(again.present, out.present)
    tok = dataclasses.replace(b, text_tokens=torch.ones(b.size, 3, 2, dtype=torch.long))
    kept_tok = modality_dropout(tok, {"audio": 0.5}, torch.Generator().manual_seed(1))
    assert kept_tok.text_tokens is tok.text_tokens  # a fine-tuned text branch still gets its tokens
    assert kept_tok.ids == tok.ids and kept_tok.label is tok.label and kept_tok.extras is tok.extras


def test_training_with_modality_dropout_is_seeded(tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> dict:
        cfg = load_config(method="late_fusion", dataset="conflictbench",
                          overrides=[*TINY, f"output.dir={tmp_path}", f"name={name}", *extra])
        return Trainer(cfg, progress=False).fit()["test"]

    a = run("a", "train.modality_dropout={audio: 0.5}")
    b = run("b", "train.modality_dropout={audio: 0.5}")
    c = run("c")
    assert a == b and a != c
    with pytest.raises(ConfigError, match="rate of audio must be in"):
        load_config(method="late_fusion", overrides=["train.modality_dropout={audio: 1.5}"])


def test_robustness_run_and_benchmark_folder(tmp_path: Path) -> None:
    for method in ("late_fusion", "text"):
        cfg = load_config(method=method, dataset="conflictbench",
                          overrides=[*TINY, f"output.dir={tmp_path / 'bench'}", f"name={method}", "train.seeds=[0, 1]"])
        Trainer(cfg, progress=False).fit()
    res = run_robustness([tmp_path / "bench"], modalities=["text", "audio"], corruptions=["drop"],
                         levels=[0, 0.5, 1.0])
    assert {Path(r).name for r in res["runs"]} == {"late_fusion", "text"}
    rows = {(r["run"], r["modality"]): r for r in res["rows"]}
    clean = evaluate(tmp_path / "bench" / "text", write=False)["mean_std"]["Non0_acc_2"]["mean"]
    assert rows[("text", "text")]["clean"] == pytest.approx(clean)
    # the text-only model ignores audio: dropping audio changes nothing
    assert rows[("text", "audio")]["relative_robustness"] == pytest.approx(clean)
    assert math.isnan(rows[("late_fusion", "text")]["effective_robustness"])
    assert not math.isnan(rows[("text", "text")]["effective_robustness"])
    for f in ("robustness.md", "robustness.json", "robustness.png"):
        assert (tmp_path / "bench" / f).is_file()
    assert (tmp_path / "bench" / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "bench" / "robustness.json").read_text())
    assert saved["reference"] == "late_fusion" and len(saved["curves"]) == 4
    # the API's robustness is the same study: same rows and curves
    via_api = robustness([tmp_path / "bench"], modalities=["text", "audio"], corruptions=["drop"],
                         levels=[0, 0.5, 1.0], out=tmp_path / "api")
    assert via_api["rows"] == res["rows"] and via_api["curves"] == res["curves"]
    assert (tmp_path / "api" / "robustness.md").read_text() == (tmp_path / "bench" / "robustness.md").read_text()


def _known_labels_dataset(folder: Path) -> Path:
    """A tiny ConflictBench with hand-set labels: train 8 × +1, 4 × +2 and 4 × −2 (mean 8 / 16 = 0.5); test
    [2, 1, 0.5, −1, −2, −0.5, 0, 3] (7 non-zero, 4 of them positive)."""
    from accord.data import build_dataset
    from accord.data.safe import save_dataset

    ds = build_dataset("conflictbench", params={"n_train": 16, "n_valid": 8, "n_test": 8})
    ds.splits["train"].labels = torch.tensor([1.0] * 8 + [2.0] * 4 + [-2.0] * 4)
    ds.splits["test"].labels = torch.tensor([2.0, 1.0, 0.5, -1.0, -2.0, -0.5, 0.0, 3.0])
    return save_dataset(ds, folder)


def test_robustness_has_the_constant_predictor_row_by_hand(tmp_path: Path) -> None:
    from accord.evaluation.baselines import CONSTANT_ROW

    folder = _known_labels_dataset(tmp_path / "known")
    for method in ("late_fusion", "text"):
        cfg = load_config(method=method, dataset="saved",
                          overrides=["data.name=saved", f"data.path={folder}", "train.batch_size=8", "train.epochs=1",
                                     "train.seeds=[0]", f"output.dir={tmp_path / 'bench'}", f"name={method}"])
        Trainer(cfg, progress=False).fit()
    # the train mean 0.5 is positive: Non0_acc_2 = 4/7 = 57.14...% at every level; MAE = (1.5 + 0.5 + 0 + 1.5 +
    # 2.5 + 1.0 + 0.5 + 2.5) / 8 = 1.25
    acc, mae = 100 * 4 / 7, 1.25
    res = run_robustness([tmp_path / "bench"], modalities=["text", "all"], corruptions=["drop"], levels=[0, 0.5, 1.0])
    assert res["constant_predictor"] == [{"name": CONSTANT_ROW, "metric": "Non0_acc_2", "value": pytest.approx(acc)}]
    first, *others = res["rows"]
    assert (first["run"], first["kind"], first["modality"]) == (CONSTANT_ROW, "any", "any")  # one row for both runs
    assert first["clean"] == first["relative_robustness"] == pytest.approx(acc)
    assert [first[f"level_{lv:g}"] for lv in (0, 0.5, 1.0)] == pytest.approx([acc] * 3)
    assert math.isnan(first["effective_robustness"]) and len(others) == 4
    assert all(r["run"] != CONSTANT_ROW for r in others)
    table = (tmp_path / "bench" / "robustness.md").read_text().splitlines()
    at = next(i for i, line in enumerate(table) if line.startswith("|:---")) + 1
    assert table[at] == f"| {CONSTANT_ROW} | any | any | 57.1 ± 0.0 | 57.1 ± 0.0 | 57.1 ± 0.0 | 57.1 | – |"
    assert sum(CONSTANT_ROW in line for line in table) == 1
    saved = json.loads((tmp_path / "bench" / "robustness.json").read_text())
    assert saved["rows"][0]["run"] == CONSTANT_ROW and saved["constant_predictor"][0]["value"] == pytest.approx(acc)
    on_mae = run_robustness([tmp_path / "bench" / "text"], modalities=["audio"], corruptions=["noise"],
                            levels=[0, 1.0], metric="MAE", out=tmp_path / "mae")
    assert on_mae["rows"][0]["relative_robustness"] == pytest.approx(mae)
    assert f"| {CONSTANT_ROW} | any | any | 1.250 ± 0.000 | 1.250 ± 0.000 | 1.250 | – |" in on_mae["markdown"]


def test_constant_lines_one_per_dataset() -> None:
    from accord.evaluation.baselines import CONSTANT_ROW
    from accord.evaluation.robustness import ConstantLine
    from accord.studies.robustness import constant_lines

    assert constant_lines([("mosi-u", "Non0_acc_2", 39.6)] * 3) == [ConstantLine(CONSTANT_ROW, "Non0_acc_2", 39.6)]
    assert constant_lines([("a", "Acc", 50.0), ("b", "Acc", 40.0), ("a", "Acc", 50.0)]) == [
        ConstantLine(f"{CONSTANT_ROW}, a", "Acc", 50.0), ConstantLine(f"{CONSTANT_ROW}, b", "Acc", 40.0)]
    assert [c.name for c in constant_lines([("a", "Acc", 50.0), ("a", "F1", 30.0)])] == [
        f"{CONSTANT_ROW}, a, Acc", f"{CONSTANT_ROW}, a, F1"]
