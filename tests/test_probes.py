"""Mechanism probes (``accord probe``, :mod:`accord.studies.probes`): each measure against a hand-made case where
its answer is known, and the command end to end on tiny trained runs (written to ``probe_<split>.json`` and shown
by ``accord report``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accord.cli import app
from accord.config import load_config
from accord.core.errors import DataError
from accord.core.types import MODALITIES
from accord.evaluation.report import build_report
from accord.models.base import create_model
from accord.studies.probes import auroc, cacr_dependence, label_ceiling, probe_run, spearman
from accord.training.trainer import Trainer
from conftest import tiny_dataset

TINY = ["data.params.n_train=64", "data.params.n_valid=32", "data.params.n_test=64", "train.batch_size=16",
        "train.epochs=2", "train.num_threads=1"]


def test_auroc_hand_computed() -> None:
    score = np.array([0.9, 0.4, 0.5, 0.1, 0.4])
    pos = np.array([True, True, False, False, False])
    neg = ~pos
    # pairs (pos, neg): 0.9 beats 0.5, 0.1, 0.4; 0.4 loses to 0.5, beats 0.1, ties 0.4 -> (3 + 1 + 0.5) / 6
    assert auroc(score, pos, neg) == pytest.approx(4.5 / 6)
    assert np.isnan(auroc(score, pos, np.zeros(5, dtype=bool)))


def _cacr(**params: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("cacr", {"text": 6, "audio": 4, "visual": 5}, 1, hidden=8, heads=2, dropout=0.0,
                        downsample_audio=1, downsample_visual=1, **params).eval()


def test_cacr_dependence_is_zero_when_decoders_ignore_the_shared_features() -> None:
    """The decoders' first conv reads ``[H_n ; P_m]``: with the H_n input channels zeroed, permuting H_n cannot
    change l_m (the shortcut, exactly); with them intact it does."""
    ds = tiny_dataset(n=16)
    batch = ds["test"].batch(torch.arange(16))
    model = _cacr()
    gen = torch.Generator().manual_seed(0)
    live = cacr_dependence(model, batch, gen)
    assert all(live[f"rec_perm_{m}"] != pytest.approx(live[f"rec_{m}"], rel=1e-4) for m in MODALITIES)
    with torch.no_grad():
        for conv1, _ in model.crm.decoders.values():
            conv1.conv.weight[:, :8].zero_()  # the H_n channels come first in the concatenation
    dead = cacr_dependence(model, batch, torch.Generator().manual_seed(0))
    for m in MODALITIES:
        assert dead[f"rec_perm_{m}"] == pytest.approx(dead[f"rec_{m}"], rel=1e-6)


def test_cacr_dependence_permutes_within_the_batch_with_the_masks() -> None:
    """A permutation that is the identity (batch of one) leaves l_m unchanged: the probe compares like with like."""
    ds = tiny_dataset(n=4)
    batch = ds["test"].batch(torch.arange(1))
    out = cacr_dependence(_cacr(), batch, torch.Generator().manual_seed(0))
    for m in MODALITIES:
        assert out[f"rec_perm_{m}"] == pytest.approx(out[f"rec_{m}"], rel=1e-6)


def test_label_ceiling_matches_the_formula_for_a_label_driven_target() -> None:
    """Target ``x = y * u + e`` at one step, fitted on [1, y, |y|]: with the labels permuted the error grows by the
    label's share; a label-free target gives a ceiling near 0."""
    n = 400
    g = torch.Generator().manual_seed(1)
    y = torch.randn(n, generator=g)
    u = torch.tensor([1.0, 0.0])
    x_lab = (y[:, None] * u + 0.1 * torch.randn(n, 2, generator=g)).unsqueeze(1)
    x_free = torch.randn(n, 1, 2, generator=g)
    mask = {m: torch.ones(n, 1, dtype=torch.bool) for m in MODALITIES}
    high = label_ceiling({m: x_lab for m in MODALITIES}, mask, y, torch.Generator().manual_seed(0))
    low = label_ceiling({m: x_free for m in MODALITIES}, mask, y, torch.Generator().manual_seed(0))
    # residual ~0.1 per step; permuted: sqrt(0.01*2 + 2 var(y)) / sqrt(0.02) - 1 >> 1
    assert high["ceiling_text"] > 5.0
    assert abs(low["ceiling_text"]) < 0.05
    assert high["ceiling"] == pytest.approx(high["ceiling_text"])  # the mean over modalities
    # a modality absent from the whole split (MOSI's visual) has no ceiling and is left out of the mean
    no_visual = {**mask, "visual": torch.zeros(n, 1, dtype=torch.bool)}
    mixed = label_ceiling({"text": x_lab, "audio": x_free, "visual": x_lab}, no_visual, y,
                          torch.Generator().manual_seed(0))
    assert math.isnan(mixed["ceiling_visual"])
    assert mixed["ceiling"] == pytest.approx((mixed["ceiling_text"] + mixed["ceiling_audio"]) / 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny trained runs on ConflictBench: CACR, EBMC, CP+SL and Self-MM (2 epochs, 1 seed)."""
    root = tmp_path_factory.mktemp("probes")
    for method in ("cacr", "ebmc", "cpsl", "self_mm"):
        cfg = load_config(method=method, dataset="conflictbench", overrides=[*TINY, f"output.dir={root}",
                                                                             f"name={method}"])
        Trainer(cfg, progress=False).fit()
    return root


def test_probe_cacr_run_measures_dependence_ceiling_and_auroc(runs: Path) -> None:
    res = probe_run(runs / "cacr")
    seed = res["per_seed"]["seed_0"]
    for key in ("hn_rise", "ceiling", "auroc_planted", *(f"hn_rise_{m}" for m in MODALITIES)):
        assert np.isfinite(seed[key]), key
    assert 0.0 <= seed["auroc_planted"] <= 1.0
    saved = json.loads((runs / "cacr" / "probe_test.json").read_text())
    assert saved["per_seed"] == res["per_seed"] and saved["probes"] == ["cacr"]
    assert "Mechanism probes (cacr" in build_report(runs / "cacr")


def test_probe_ebmc_trust_falls_to_zero_for_a_dropped_modality(runs: Path) -> None:
    seed = probe_run(runs / "ebmc", write=False)["per_seed"]["seed_0"]
    for m in MODALITIES:
        assert seed[f"trust_dropped_{m}"] == pytest.approx(0.0, abs=1e-6)  # absent -> exactly 0 trust
        assert seed[f"trust_{m}"] > 0.0
    assert sum(seed[f"trust_{m}"] for m in MODALITIES) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= seed["shared_cos"] <= 1.0


def test_probe_cp_reads_the_projected_share_from_the_log(runs: Path) -> None:
    seed = probe_run(runs / "cpsl", write=False)["per_seed"]["seed_0"]
    log = [json.loads(line) for line in (runs / "cpsl" / "seed_0" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r.get("type") == "epoch"]
    assert seed["projected_share"] == pytest.approx(np.mean([e["cp/projected"] for e in epochs]))
    assert 0.0 <= seed["projected_share"] <= 1.0


def test_probe_self_mm_reads_the_label_drift(runs: Path) -> None:
    seed = probe_run(runs / "self_mm", write=False)["per_seed"]["seed_0"]
    epochs = [json.loads(line) for line in (runs / "self_mm" / "seed_0" / "log.jsonl").read_text().splitlines()]
    drifts = [e["ulgm_drift_audio"] for e in epochs if e.get("type") == "epoch" and "ulgm_drift_audio" in e]
    assert drifts, "Self-MM logs its label drift per epoch"
    assert seed["drift_audio"] == pytest.approx(drifts[-1]) and seed["drift_max_audio"] == pytest.approx(max(drifts))


def test_probe_cli_and_errors(runs: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["probe", str(runs / "cacr"), "--no-save"])
    assert out.exit_code == 0, out.output
    assert "hn_rise" in out.output and "auroc_planted" in out.output
    cfg = load_config(method="late_fusion", dataset="conflictbench", overrides=[
        *TINY, "train.epochs=1", f"output.dir={tmp_path}", "name=lf"])
    Trainer(cfg, progress=False).fit()
    with pytest.raises(DataError, match="no mechanism probe for method 'late_fusion'"):
        probe_run(tmp_path / "lf")
    bad = CliRunner().invoke(app, ["probe", str(tmp_path / "lf")])
    assert bad.exit_code != 0 and "no mechanism probe" in bad.output


def test_spearman_hand_computed() -> None:
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([8.0, 6.0, 4.0, 2.0])) == pytest.approx(-1.0)
    # ranks (0,1,2,3) vs (1,0,3,2): 1 - 6 * 4 / (4 * 15) = 0.6
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def test_probe_qasa_correlates_the_weights_the_run_used(tmp_path: Path) -> None:
    """QASA with consistency weights: the probe reads q_con of the generated rows the run trained on."""
    cfg = load_config(method="early_fusion", dataset="conflictbench", overrides=[
        "data.params.n_train=48", "data.params.n_valid=24", "data.params.n_test=24", "train.epochs=1",
        "train.batch_size=16", "augment.generator.hidden=16", "augment.generator.blocks=1",
        "augment.generator.train_steps=10", "augment.generator.diffusion_steps=20",
        "augment.generator.sample_steps=4", "augment.source=fit", "augment.per_sample=2",
        "augment.weighting=consistency", f"output.dir={tmp_path}", "name=q"])
    Trainer(cfg, progress=False).fit()
    res = probe_run(tmp_path / "q", write=False)
    assert res["probes"] == ["qasa"]
    seed = res["per_seed"]["seed_0"]
    assert seed["generated_rows"] == 96.0  # 48 real rows x 2 variants
    assert -1.0 <= seed["weight_error_corr"] <= 1.0


CLEAN = ["data.params.noise=0.3", "data.params.salient_share=1.0",
         "data.params.strength={text: 1.5, audio: 1.5, visual: 1.5}"]


def test_cacr_drop_crm_reads_h_n_where_the_literal_one_does_not(tmp_path: Path) -> None:
    """METHODS.md §1.3, the shortcut and its fix, on ConflictBench data where most of X_m is the shared sentiment
    signal (the `clean` setting of cacr_conflictbench.md): after training, permuting the other modalities' shared
    features H_n raises l_m by >= 20% with P_m dropped from the decoder input (`crm: drop`, the default) and by far
    less with the literal decoder input [H_n ; P_m] (`crm: paper`), which rebuilds X_m from P_m."""
    rise = {}
    for crm in ("drop", "paper"):
        cfg = load_config(method="cacr", dataset="conflictbench", overrides=[
            *CLEAN, "data.params.n_train=400", "data.params.n_valid=100", "data.params.n_test=200",
            "train.epochs=8", "train.num_threads=1", f"model.params.crm={crm}", f"output.dir={tmp_path}",
            f"name={crm}"])
        Trainer(cfg, progress=False).fit()
        seed = probe_run(tmp_path / crm)["per_seed"]["seed_0"]
        assert seed["ceiling"] > 0.4, seed  # the data let H_n explain X_m
        rise[crm] = seed["hn_rise"]
    assert rise["drop"] >= 0.2, rise
    assert rise["paper"] < 0.5 * rise["drop"], rise
