"""QASA (accord.augment): forward noising, a toy conditional denoiser, the quality scorer, the augmented training
split and its loss weights, data.train_fraction, config and CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from accord.augment.augmented import (
    augment_split,
    augmented_train_split,
    build_sampled_dataset,
    concat_splits,
    feature_std,
    fit_generator_dir,
    generated_rows,
    noise_rows,
)
from accord.augment.diffusion import (
    betas_from_alpha_bar,
    cosine_alpha_bar,
    ddim_timesteps,
    fit_generator,
    load_generator,
    q_sample,
    summary_vector,
)
from accord.augment.params import AugmentConfig, GeneratorParams, ScorerParams
from accord.augment.quality import (
    fit_scorer,
    group_folds,
    knn_distance,
    load_scorer,
    ridge_fit,
    ridge_predict,
    saturate,
    survival,
)
from accord.cli import app
from accord.config import load_config
from accord.core.errors import CheckpointError, ConfigError, DataError
from accord.data.dataset import MultimodalDataset, SplitData, make_split
from accord.data.safe import load_dataset_dir, save_dataset
from accord.data.subset import apply_train_fraction, group_of, keep_fraction
from accord.training.trainer import Trainer
from conftest import tiny_dataset


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: these small models run several times slower with two threads on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_GEN = GeneratorParams(hidden=16, blocks=1, train_steps=20, batch_size=16, sample_steps=5, diffusion_steps=20)


# ------------------------------------------------------------------------------------------------ forward process
def test_cosine_schedule_matches_the_formula() -> None:
    steps, s = 100, 0.008
    abar = cosine_alpha_bar(steps, s)

    def f(t: float) -> float:
        return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2

    for t in (1, 10, 50, 90):  # ᾱ_t is stored at index t - 1; β is clipped only at the very last steps
        assert float(abar[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-9)
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < float(abar[-1]) < 1e-5
    assert float(betas_from_alpha_bar(abar).max()) == pytest.approx(0.999)


def test_q_sample_is_the_closed_form_at_given_t() -> None:
    abar = torch.tensor([0.9, 0.5, 0.04], dtype=torch.float64)
    x0 = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)
    noise = torch.tensor([[0.5, 0.5], [-1.0, 2.0]], dtype=torch.float64)
    xt = q_sample(x0, torch.tensor([1, 2]), noise, abar)
    # row 0 at t index 1: sqrt(.5)·x0 + sqrt(.5)·ε ; row 1 at t index 2: 0.2·x0 + sqrt(.96)·ε
    expected = torch.tensor([[math.sqrt(0.5) * 1.5, math.sqrt(0.5) * -1.5],
                             [0.2 * 3.0 - math.sqrt(0.96), 0.2 * 0.5 + 2 * math.sqrt(0.96)]], dtype=torch.float64)
    assert torch.allclose(xt, expected, atol=1e-12)


def test_closed_form_is_the_marginal_of_the_step_by_step_chain() -> None:
    """Running q(x_t | x_{t-1}) = N(sqrt(1 - β_t)·x_{t-1}, β_t) t times gives mean sqrt(ᾱ_t)·x0, var 1 - ᾱ_t."""
    abar = cosine_alpha_bar(50)
    betas = betas_from_alpha_bar(abar)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000,), 1.7, dtype=torch.float64)
    x = x0.clone()
    for t in range(30):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    t_idx = torch.full((len(x0),), 29)
    closed = q_sample(x0, t_idx, torch.randn(x0.shape, generator=g, dtype=torch.float64), abar)
    assert float(x.mean()) == pytest.approx(float(abar[29].sqrt()) * 1.7, abs=0.01)
    assert float(x.var()) == pytest.approx(float(1 - abar[29]), abs=0.01)
    assert float(closed.mean()) == pytest.approx(float(x.mean()), abs=0.015)
    assert float(closed.var()) == pytest.approx(float(x.var()), abs=0.015)


def test_ddim_timesteps_skip_the_clipped_last_step() -> None:
    assert ddim_timesteps(100, 25) == list(range(96, -1, -4))
    assert ddim_timesteps(10, 50) == list(range(9, -1, -1))


# ------------------------------------------------------------------------------------------------ toy denoiser
def _ring(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D ring of radius 2; label +1 on the upper half, -1 on the lower half."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, generator=g) * 2 * math.pi
    x = 2 * torch.stack([theta.cos(), theta.sin()], dim=1) + 0.05 * torch.randn(n, 2, generator=g)
    return x, torch.where(x[:, 1] >= 0, 1.0, -1.0)


def _toy_split(x: torch.Tensor, y: torch.Tensor) -> SplitData:
    n = len(y)
    feats = {"text": torch.zeros(n, 1, 1), "audio": x.unsqueeze(1), "visual": torch.zeros(n, 1, 1)}
    return make_split(feats, y, ids=[f"v{i // 10}_{i}" for i in range(n)])


def test_toy_denoiser_samples_closer_to_the_data_than_noise() -> None:
    torch.manual_seed(0)
    x, y = _ring(1024, seed=0)
    train = _toy_split(x, y)
    params = GeneratorParams(hidden=64, blocks=2, train_steps=300, batch_size=128, lr=3e-3, dropout=0.0,
                             cond_drop=0.0, ema=0.0, diffusion_steps=50, sample_steps=50, modalities=["audio"])
    gen = fit_generator(train, params, label_range=(-1.0, 1.0), seed=0)
    cond_split = _toy_split(*_ring(600, seed=1))
    s = gen.generate(cond_split, seed=3)["audio"][:, 0]
    noise = torch.randn(600, 2, generator=torch.Generator().manual_seed(4)) * train.features["audio"].std()
    ring_err_gen = float((s.norm(dim=1) - 2).abs().mean())
    ring_err_noise = float((noise.norm(dim=1) - 2).abs().mean())
    assert ring_err_gen < 0.25 * ring_err_noise, (ring_err_gen, ring_err_noise)  # measured 0.06 vs 0.76
    # conditioned on the label: the half of the ring matches the sign of y
    agree = float(((s[:, 1] >= 0) == (cond_split.labels > 0)).float().mean())
    assert agree > 0.9, agree  # measured 0.995
    # the same seed gives the same samples; the global RNG is not consumed by fitting
    assert torch.equal(gen.generate(cond_split, seed=3)["audio"][:, 0], s)


def test_generator_saves_and_loads(tmp_path: Path) -> None:
    ds = tiny_dataset()
    gen = fit_generator(ds["train"], TINY_GEN, seed=0)
    state = torch.get_rng_state()
    gen2 = fit_generator(ds["train"], TINY_GEN, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # fitting leaves the global RNG alone
    gen.save(tmp_path / "g")
    back = load_generator(tmp_path / "g")
    a, b, c = (g.generate(ds["train"], seed=5) for g in (gen, back, gen2))
    for m in ("audio", "visual"):
        assert torch.equal(a[m], b[m]) and torch.equal(a[m], c[m])
        # sequences keep each real row's length: zero after it
        mask = torch.arange(a[m].shape[1]).unsqueeze(0) < ds["train"].lengths[m].unsqueeze(1)
        assert bool((a[m][~mask] == 0).all()) and bool(a[m][mask].abs().sum() > 0)
    assert json.loads((tmp_path / "g" / "generator.json").read_text())["params"]["hidden"] == 16
    (tmp_path / "g" / "generator.safetensors").write_bytes(b"junk")
    with pytest.raises(Exception, match="generator.safetensors: not a readable safetensors file"):
        load_generator(tmp_path / "g")


# ------------------------------------------------------------------------------------------------ quality scorer
def test_survival_and_saturation_by_hand() -> None:
    ref = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    s = survival(ref, torch.tensor([0.5, 2.0, 2.5, 9.0]))
    assert s.tolist() == [1.0, 0.75, 0.5, 0.0]  # share of reference values >= each query
    assert saturate(s, 0.5).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert saturate(torch.tensor([0.25]), 0.5).tolist() == [0.5]


def _linear_split(n: int, seed: int) -> SplitData:
    """Audio carries the label (y = 2·audio[0]); visual is a sequence; videos of 8 rows."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, 1, 6, generator=g)
    y = (2 * audio[:, 0, 0]).clamp(-3, 3)
    feats = {"text": torch.randn(n, 3, 4, generator=g), "audio": audio, "visual": torch.randn(n, 5, 3, generator=g)}
    return make_split(feats, y, ids=[f"vid{i // 8}_{i}" for i in range(n)])


def test_knn_distance_by_hand() -> None:
    ref = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    q = torch.tensor([[0.0], [2.0]])
    torch.testing.assert_close(knn_distance(q, ref, 2), torch.tensor([0.5, 1.0], dtype=torch.float64))
    # row 0 leaves reference row 0 out (its own source), row 1 leaves nothing out (-1)
    ex = torch.tensor([0, -1])
    torch.testing.assert_close(knn_distance(q, ref, 2, ex), torch.tensor([2.0, 1.0], dtype=torch.float64))
    # k larger than the reference: all rows (without exclusion), all but one (with)
    torch.testing.assert_close(knn_distance(q, ref, 10), torch.tensor([2.75, 2.25], dtype=torch.float64))
    torch.testing.assert_close(knn_distance(q, ref, 10, ex), torch.tensor([11 / 3, 4 / 3], dtype=torch.float64))
    # batching changes nothing
    torch.testing.assert_close(knn_distance(q, ref, 2, ex, batch_size=1), knn_distance(q, ref, 2, ex))
    empty = knn_distance(torch.zeros(0, 1), ref, 2)
    assert empty.shape == (0,) and empty.dtype == torch.float64
    with pytest.raises(DataError, match=r"^fidelity needs at least 2 real rows, got 1$"):
        knn_distance(q, ref[:1], 2, ex)
    with pytest.raises(DataError, match=r"^fidelity needs at least 1 real rows, got 0$"):
        knn_distance(q, ref[:0], 2)
    assert knn_distance(q, ref[:1], 2).tolist() == [0.0, 2.0]  # one row, no exclusion: k = 1


def test_ridge_fit_is_the_closed_form_with_an_unpenalised_intercept() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64) + torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64) + 4.0
    for alpha in (0.7, torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)):
        pen = torch.as_tensor(alpha, dtype=torch.float64).expand(3)
        xm, ym = x.mean(0), y.mean()
        w = torch.linalg.solve((x - xm).T @ (x - xm) + torch.diag(pen), (x - xm).T @ (y - ym))
        fit = ridge_fit(x, y, alpha)
        torch.testing.assert_close(fit, torch.cat([w, (ym - xm @ w).reshape(1)]))
        torch.testing.assert_close(ridge_predict(x, fit), x @ w + (ym - xm @ w))
    exact = ridge_fit(x, 2 * x[:, 0] - x[:, 2] + 3, 0.0)  # no penalty, noiseless: the true coefficients
    torch.testing.assert_close(exact, torch.tensor([2.0, 0.0, -1.0, 3.0], dtype=torch.float64))


def test_group_folds_deal_whole_groups_round_robin() -> None:
    ids = [f"v{g}_{i}" for g in range(4) for i in range(3)]  # 4 videos of 3 rows
    folds = group_folds(ids, 3, seed=0)
    assert folds.dtype == torch.long
    per_group = {g: set(folds[3 * g:3 * g + 3].tolist()) for g in range(4)}
    assert all(len(v) == 1 for v in per_group.values())  # a video is never split
    counts = sorted(sum(1 for v in per_group.values() if f in v) for f in range(3))
    assert counts == [1, 1, 2]  # 4 groups dealt round-robin into 3 folds
    assert torch.equal(group_folds(ids, 3, seed=0), folds)  # seeded
    assert len({tuple(group_folds(ids, 3, seed=s).tolist()) for s in range(8)}) > 1  # the seed matters
    two = group_folds(ids[:6], 5, seed=1)  # exactly two groups: one fold each, never split
    assert sorted({tuple(two[:3].tolist()), tuple(two[3:].tolist())}) == [(0, 0, 0), (1, 1, 1)]
    one = group_folds([f"solo{i}" for i in range(5)], 2, seed=0)  # one group: rows dealt instead
    assert sorted(one.tolist()) == [0, 0, 0, 1, 1]


def _summary(sc, split: SplitData, m: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """A modality's summary vector, normalised with the statistics the scorer stored."""
    return (summary_vector(split.features[m], split.lengths[m]).double() - sc.t[f"{m}/s_mean"]) / sc.t[f"{m}/s_std"]


def _hand_q_fid(sc, m: str, d: torch.Tensor, tau: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """min(1, S(d) / τ) with S(d) the share of the calibration distances that are >= d."""
    ref = sc.t[f"{m}/real_dist"]
    return ((1.0 - torch.searchsorted(ref, d).double() / len(ref)) / tau).clamp(0, 1)


def _hand_q_con(sc, m: str, ts: torch.Tensor, s: torch.Tensor, y: torch.Tensor,  # type: ignore[no-untyped-def]
                w: torch.Tensor) -> torch.Tensor:
    """exp(-relu(|y - f(t, m)| - |y - f(t, 0)|) / scale) with each row's ridge weights ``w [n, P + 1]``."""
    base = (ts * w[:, :ts.shape[1]]).sum(1) + w[:, -1]
    pred = base + (s * w[:, ts.shape[1]:-1]).sum(1)
    return torch.exp(-((y - pred).abs() - (y - base).abs()).clamp_min(0) / sc.t[f"{m}/scale"])


def test_scores_of_training_rows_follow_the_equations() -> None:
    """Training rows scored with their own source: the fidelity distance is exactly the stored leave-one-out
    calibration distance, and consistency is exp(-relu(|y - f(t, m)| - |y - f(t, 0)|) / scale) with the fold model
    that never saw the row; the combined scores are geometric means (features shifted off zero on purpose)."""
    train = _linear_split(48, seed=3)
    train = SplitData(**{**train.__dict__, "features": {**train.features, "audio": train.features["audio"] + 5.0,
                                                        "text": train.features["text"] * 3 - 2}})
    params = ScorerParams(tau=0.5, k=3)
    sc = fit_scorer(train, params, ["audio", "visual"])
    n = len(train)
    got = sc.score_split(train, source=torch.arange(n))
    assert torch.equal(sc.score_split(train)["q_fid_audio"],
                       sc.score_split(train, source=torch.full((n,), -1))["q_fid_audio"])  # None = no source
    ts = _summary(sc, train, "text")
    y = train.labels.double()
    logs = {"fid": torch.zeros(n, dtype=torch.float64), "con": torch.zeros(n, dtype=torch.float64)}
    for m in ("audio", "visual"):
        s = _summary(sc, train, m)
        d = knn_distance(s, s, 3, torch.arange(n))
        assert torch.equal(d.sort().values, sc.t[f"{m}/real_dist"])
        q_fid = _hand_q_fid(sc, m, d, 0.5)
        torch.testing.assert_close(got[f"q_fid_{m}"], q_fid.float())
        q_con = _hand_q_con(sc, m, ts, s, y, sc.t[f"{m}/coef"][sc.t["fold_of"]])  # each row's out-of-fold model
        torch.testing.assert_close(got[f"q_con_{m}"], q_con.float())
        logs["fid"] += q_fid.clamp_min(1e-12).log()
        logs["con"] += q_con.clamp_min(1e-12).log()
    torch.testing.assert_close(got["q_fid"], (logs["fid"] / 2).exp().float())
    torch.testing.assert_close(got["q_con"], (logs["con"] / 2).exp().float())
    torch.testing.assert_close(got["quality"], ((logs["fid"] + logs["con"]) / 2).exp().float())
    # no source: every neighbour and the full-data model (the last row of coef)
    free = sc.score_split(train)
    s = _summary(sc, train, "audio")
    torch.testing.assert_close(free["q_fid_audio"], _hand_q_fid(sc, "audio", knn_distance(s, sc.t["audio/ref"], 3),
                                                                0.5).float())
    q_con = _hand_q_con(sc, "audio", ts, s, y, sc.t["audio/coef"][-1].expand(n, -1))
    torch.testing.assert_close(free["q_con_audio"], q_con.float())


def test_consistency_models_are_cross_fitted_over_group_folds_with_the_penalty_of_least_out_of_fold_error() -> None:
    """coef[f] is the ridge fit on every fold but f (the rows of f never train the model that scores them), the last
    row the fit on all rows; the penalties (text, modality) are the pair of ``alphas`` with the least out-of-fold
    MAE, which is also the consistency scale."""
    train = _linear_split(48, seed=5)
    params = ScorerParams(folds=3, alphas=[0.1, 10.0])
    sc = fit_scorer(train, params, ["audio"], seed=2)
    folds = group_folds(list(train.ids), 3, 2)
    assert torch.equal(sc.t["fold_of"], folds)
    ts = _summary(sc, train, "text")
    x = torch.cat([ts, sc.t["audio/ref"]], dim=1)
    y = train.labels.double()
    best = None
    for a_t in (0.1, 10.0):
        for a_m in (0.1, 10.0):
            pen = torch.cat([torch.full((ts.shape[1],), a_t), torch.full((6,), a_m)]).double()
            coefs = [ridge_fit(x[folds != f], y[folds != f], pen) for f in range(3)]
            oof = torch.zeros(48, dtype=torch.float64)
            for f in range(3):
                oof[folds == f] = ridge_predict(x[folds == f], coefs[f])
            mae = float((oof - y).abs().mean())
            if best is None or mae < best[0]:
                best = (mae, (a_t, a_m), torch.stack([*coefs, ridge_fit(x, y, pen)]))
    assert best is not None
    torch.testing.assert_close(sc.t["audio/coef"], best[2])
    assert sc.info["alpha"]["audio"] == {"text": best[1][0], "audio": best[1][1], "oof_mae": round(best[0], 4)}
    assert float(sc.t["audio/scale"]) == pytest.approx(best[0])


def test_a_modality_missing_in_training_rows_is_neither_scored_nor_a_neighbour() -> None:
    train = _linear_split(40, seed=4)
    lengths = dict(train.lengths)
    lengths["visual"] = torch.where(torch.arange(40) % 5 == 0, 0, lengths["visual"])  # rows 0, 5, ... lack visual
    train = SplitData(**{**train.__dict__, "lengths": lengths})
    sc = fit_scorer(train, ScorerParams(tau=0.5, k=3), ["audio", "visual"])
    assert sc.t["visual/ref_rows"].tolist() == [i for i in range(40) if i % 5]
    got = sc.score_split(train, source=torch.arange(40))
    missing = torch.arange(40) % 5 == 0
    assert bool((got["q_fid_visual"][missing] == 1).all()) and bool((got["q_con_visual"][missing] == 1).all())
    # the combined score of a row without visual is audio's alone
    torch.testing.assert_close(got["q_fid"][missing], got["q_fid_audio"][missing])
    torch.testing.assert_close(got["q_con"][missing], got["q_con_audio"][missing])
    # a generated row whose source (training row 0) lacks visual, with training row 2's visual (reference row 1)
    s_rows = torch.tensor([0, 1])
    gen = SplitData(**{**train.subset(s_rows).__dict__,
                       "lengths": {**train.subset(s_rows).lengths, "visual": train.lengths["visual"][[2, 1]]},
                       "features": {**train.subset(s_rows).features, "visual": train.features["visual"][[2, 1]]}})
    both = sc.score_split(gen, source=s_rows)
    no_src = sc.score_split(gen)
    # row 0's source (training row 0) has no visual reference row: nothing to leave out, as without a source
    assert float(both["q_fid_visual"][0]) == float(no_src["q_fid_visual"][0])
    # a row scored on one modality only: its combined consistency is that modality's, also below 1
    flipped = SplitData(**{**train.__dict__, "labels": -train.labels})
    con = sc.score_split(flipped, source=torch.arange(40))
    low = missing & (con["q_con_audio"] < 0.9)
    assert bool(low.any())
    torch.testing.assert_close(con["q_con"][low], con["q_con_audio"][low])


def test_scorer_needs_three_rows_and_stores_the_column_statistics() -> None:
    train = _linear_split(12, seed=7)
    with pytest.raises(DataError, match=r"^training split: the quality scorer needs at least 3 rows, got 2$"):
        fit_scorer(train.subset(torch.arange(2)), ScorerParams(k=1, folds=2), ["audio"])
    three = fit_scorer(train.subset(torch.arange(3)), ScorerParams(k=1, folds=2), ["audio"])  # the minimum
    assert three.t["audio/ref"].shape[0] == 3
    lengths = dict(train.lengths)
    lengths["visual"] = torch.where(torch.arange(12) < 2, lengths["visual"], 0)  # visual in 2 rows only
    sparse = SplitData(**{**train.__dict__, "lengths": lengths})
    with pytest.raises(DataError, match=r"^training split: modality 'visual' has 2 non-missing rows; the scorer "
                                        r"needs 3$"):
        fit_scorer(sparse, ScorerParams(k=1, folds=2), ["visual"])
    lengths["visual"] = torch.where(torch.arange(12) < 3, train.lengths["visual"], 0)
    ok = fit_scorer(SplitData(**{**train.__dict__, "lengths": lengths}), ScorerParams(k=1, folds=2), ["visual"])
    assert ok.t["visual/ref_rows"].tolist() == [0, 1, 2]
    sc = fit_scorer(train, ScorerParams(k=2, folds=2), ["visual"])
    for key, m in (("visual", "visual"), ("text", "text")):
        v = summary_vector(train.features[m], train.lengths[m]).double()
        torch.testing.assert_close(sc.t[f"{key}/s_mean"].flatten(), v.mean(0))
        torch.testing.assert_close(sc.t[f"{key}/s_std"].flatten(), v.std(0, unbiased=False))


def test_a_source_index_of_0_is_the_first_training_row() -> None:
    """Source 0 leaves training row 0 out of the neighbours and uses the fold model that never saw it."""
    base = _linear_split(40, seed=6)
    audio = base.features["audio"].clone()
    audio[0] += 6.0  # an outlier: its own row is its only close neighbour
    train = SplitData(**{**base.__dict__, "features": {**base.features, "audio": audio},
                         "ids": [f"r{i}_0" for i in range(40)]})  # one row per group: rows 0 and 1 in other folds
    sc = fit_scorer(train, ScorerParams(tau=0.5, k=1, folds=4), ["audio"], seed=0)
    fold_of = sc.t["fold_of"]
    assert int(fold_of[0]) != int(fold_of[1])
    first = train.subset(torch.tensor([0]))
    own = sc.score_split(first, source=torch.tensor([0]))
    free = sc.score_split(first)
    assert float(own["q_fid_audio"][0]) < float(free["q_fid_audio"][0])  # without itself, row 0 is atypical
    s = _summary(sc, first, "audio")
    d = knn_distance(s, sc.t["audio/ref"], 1, torch.tensor([0]))
    torch.testing.assert_close(own["q_fid_audio"], _hand_q_fid(sc, "audio", d, 0.5).float())
    w = sc.t["audio/coef"][fold_of[:1]]  # the model of row 0's fold
    q_con = _hand_q_con(sc, "audio", _summary(sc, first, "text"), s, first.labels.double(), w)
    torch.testing.assert_close(own["q_con_audio"], q_con.float())


def test_scores_are_in_range_and_track_realness_and_agreement() -> None:
    train = _linear_split(160, seed=0)
    sc = fit_scorer(train, ScorerParams(tau=0.5), ["audio", "visual"])
    real = sc.score_split(train, source=torch.arange(len(train)))
    for k, v in real.items():
        assert v.shape == (160,) and bool((v >= 0).all()) and bool((v <= 1).all()), k
    # real rows against their own leave-one-out calibration: q_fid = min(1, U/τ) with U ~ uniform, mean 1 - τ/2
    assert float(real["q_fid_audio"].mean()) == pytest.approx(0.75, abs=0.06)
    assert torch.allclose(real["quality"], real["q_fid"] * real["q_con"])
    assert torch.allclose(real["q_fid"], (real["q_fid_audio"] * real["q_fid_visual"]).sqrt(), atol=1e-6)
    # real audio supports its label (it determines it): consistent
    assert float(real["q_con_audio"].mean()) > 0.9
    # far-off features lose fidelity; a contradicted label loses consistency through the informative modality only
    far = SplitData(**{**train.__dict__, "features": {**train.features, "audio": train.features["audio"] * 8}})
    assert float(sc.score_split(far)["q_fid_audio"].max()) == 0.0
    flipped = SplitData(**{**train.__dict__, "labels": -train.labels})
    con = sc.score_split(flipped, source=torch.arange(len(train)))
    strong = train.labels.abs() > 1.5
    assert float(con["q_con_audio"][strong].mean()) < 0.05
    assert float(con["q_con_visual"].mean()) > 0.9  # visual carries no label information: nothing to contradict


def test_scorer_saves_and_loads(tmp_path: Path) -> None:
    train = _linear_split(64, seed=1)
    sc = fit_scorer(train, ScorerParams(), ["audio"])
    sc.save(tmp_path)
    back = load_scorer(tmp_path)
    a, b = sc.score_split(train), back.score_split(train)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert back.info == sc.info and back.params == sc.params and back.modalities == ["audio"]
    nested = tmp_path / "a" / "b"
    sc.save(nested)  # parents are made
    cfg = json.loads((tmp_path / "scorer.json").read_text())
    assert cfg["format"] == "accord-qasa-scorer" and cfg["version"] == 1 and cfg["modalities"] == ["audio"]
    assert cfg["params"] == json.loads(ScorerParams().model_dump_json())
    for bad in ({**cfg, "format": "other"}, {**cfg, "version": 2}, [cfg]):
        (nested / "scorer.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=r"b/scorer\.json: expected format 'accord-qasa-scorer' version 1$"):
            load_scorer(nested)
    (nested / "scorer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"b/scorer\.json: not valid JSON"):
        load_scorer(nested)
    (nested / "scorer.json").unlink()
    with pytest.raises(CheckpointError, match=r"b/scorer\.json: missing; expected a generator folder written by "
                                              r"`accord augment fit`$"):
        load_scorer(nested)
    weights = tmp_path / "scorer.safetensors"
    full = weights.read_bytes()
    weights.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"/scorer\.safetensors: not a readable safetensors file \(\S"):
        load_scorer(tmp_path)
    tensors = {k: v for k, v in st_load(full).items() if k != "audio/coef"}
    weights.write_bytes(st_save(tensors))
    with pytest.raises(CheckpointError, match=r"/scorer\.safetensors: missing tensor 'audio/coef'$"):
        load_scorer(tmp_path)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"/scorer\.safetensors: missing \(the scorer's reference data\)$"):
        load_scorer(tmp_path)


# ------------------------------------------------------------------------------------------------ augmented split
def _aug_fixture() -> tuple[MultimodalDataset, SplitData]:
    ds = tiny_dataset(n=12)
    gen = fit_generator(ds["train"], TINY_GEN, seed=0)
    sc = fit_scorer(ds["train"], ScorerParams(), TINY_GEN.modalities)
    return ds, generated_rows(ds["train"], gen, sc, k=2, seed=1)


def test_augmented_split_rows_weights_and_flags() -> None:
    ds, gen = _aug_fixture()
    real = ds["train"]
    assert len(gen) == 24 and gen.extras["source_index"].tolist() == list(range(12)) * 2
    src = gen.extras["source_index"]
    assert torch.equal(gen.features["text"], real.features["text"][src])  # text and label kept from the real row
    assert torch.equal(gen.labels, real.labels[src]) and not torch.equal(gen.features["audio"],
                                                                         real.features["audio"][src])
    assert gen.ids[13] == f"{real.ids[1]}#g1" and group_of(gen.ids[13]) == group_of(real.ids[1])
    for weighting, key in (("quality", "quality"), ("fidelity", "q_fid"), ("consistency", "q_con")):
        aug = augment_split(real, gen, weighting)
        assert len(aug) == 36
        w, flag = aug.extras["sample_weight"], aug.extras["generated"]
        assert w[:12].tolist() == [1.0] * 12 and flag.tolist() == [0] * 12 + [1] * 24
        assert torch.equal(w[12:], gen.extras[key]) and bool(((w >= 0) & (w <= 1)).all())
    uni = augment_split(real, gen, "uniform")
    assert uni.extras["sample_weight"].tolist() == [1.0] * 36
    assert bool(torch.isnan(uni.extras["quality"][:12]).all())  # real rows not scored here
    b = uni.batch(torch.tensor([0, 20]))
    assert b.extras["generated"].tolist() == [0, 1]


def test_concat_splits_rows_labels_and_errors() -> None:
    a, b = tiny_dataset(n=4, seed=0)["train"], tiny_dataset(n=3, seed=1)["train"]
    a.raw_text, b.raw_text = [f"a{i}" for i in range(4)], [f"b{i}" for i in range(3)]
    a.extras, b.extras = {"w": torch.ones(4)}, {"w": torch.zeros(3)}
    a.class_labels, b.class_labels = torch.zeros(4, dtype=torch.long), torch.ones(3, dtype=torch.long)
    a.unimodal_labels, b.unimodal_labels = {"text": torch.ones(4)}, {"text": -torch.ones(3)}
    both = concat_splits([a, b])
    assert len(both) == 7 and both.ids == [*a.ids, *b.ids] and both.raw_text == [*a.raw_text, *b.raw_text]
    for m in ("text", "audio", "visual"):
        assert torch.equal(both.features[m], torch.cat([a.features[m], b.features[m]]))
        assert torch.equal(both.lengths[m], torch.cat([a.lengths[m], b.lengths[m]]))
    assert torch.equal(both.labels, torch.cat([a.labels, b.labels]))
    assert both.class_labels is not None and both.class_labels.tolist() == [0] * 4 + [1] * 3
    assert both.unimodal_labels["text"].tolist() == [1.0] * 4 + [-1.0] * 3
    assert both.extras["w"].tolist() == [1.0] * 4 + [0.0] * 3
    assert both.text_tokens is None  # neither part has tokens
    a.text_tokens = torch.ones(4, 3, 5, dtype=torch.long)
    b.text_tokens = 2 * torch.ones(3, 3, 2, dtype=torch.long)
    tok = concat_splits([a, b]).text_tokens  # a pretrained text branch reads the generated rows' real transcripts
    assert tok is not None and tok.shape == (7, 3, 5) and tok[4:, :, :2].eq(2).all() and tok[4:, :, 2:].eq(0).all()
    b.text_tokens = None
    assert concat_splits([a, b]).text_tokens is None
    a.text_tokens = None
    b.class_labels, b.raw_text = None, []
    partial = concat_splits([a, b])
    assert partial.class_labels is None and partial.raw_text == []  # a label kind not every part has is dropped
    b.extras = {"v": torch.zeros(3)}
    with pytest.raises(DataError, match="extras"):
        concat_splits([a, b])
    b.extras = {"w": torch.zeros(3)}
    c = tiny_dataset(n=3, dims=(6, 4, 7))["train"]
    c.extras = {"w": torch.zeros(3)}
    with pytest.raises(DataError, match="shaped"):
        concat_splits([a, c])


def test_noise_rows_same_budget_and_level() -> None:
    real = _linear_split(400, seed=2)
    rows = noise_rows(real, k=3, level=0.5, modalities=["audio"], seed=0)
    assert len(rows) == 1200 and torch.equal(rows.features["visual"], real.features["visual"].repeat(3, 1, 1))
    diff = rows.features["audio"] - real.features["audio"].repeat(3, 1, 1)
    ratio = diff.std(dim=(0, 1)) / real.features["audio"].std(dim=(0, 1), unbiased=False)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5), atol=0.05)


def test_feature_std_and_noise_rows_by_hand() -> None:
    x = torch.tensor([[[1.0, 5.0], [3.0, 5.0]], [[5.0, 5.0], [99.0, 99.0]]])  # row 1's second step is padding
    real = make_split({"text": torch.zeros(2, 1, 2), "audio": x, "visual": torch.zeros(2, 1, 2)},
                      torch.tensor([0.5, -0.5]), ids=["a_0", "b_0"],
                      lengths={"text": torch.tensor([1, 1]), "audio": torch.tensor([2, 1]),
                               "visual": torch.tensor([1, 1])})
    # real steps 1, 3, 5 (mean 3, population std sqrt(8/3)) and 5, 5, 5 (constant: std 1)
    torch.testing.assert_close(feature_std(real, "audio"), torch.tensor([math.sqrt(8 / 3), 1.0]))
    small = dataclasses.replace(real, features={**real.features, "audio": x * 0.25})  # std below 1 is kept
    torch.testing.assert_close(feature_std(small, "audio"), torch.tensor([0.25 * math.sqrt(8 / 3), 1.0]))
    rows = noise_rows(real, k=2, level=0.5, modalities=["audio"], seed=7)
    eps = torch.randn(4, 2, 2, generator=torch.Generator().manual_seed(7))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]).unsqueeze(-1)
    want = (x.repeat(2, 1, 1) + 0.5 * torch.tensor([math.sqrt(8 / 3), 1.0]) * eps) * mask
    torch.testing.assert_close(rows.features["audio"], want)
    assert rows.extras["generated"].tolist() == [1, 1, 1, 1] and rows.extras["generated"].dtype == torch.long
    assert rows.extras["source_index"].tolist() == [0, 1, 0, 1] and rows.extras["variant"].tolist() == [0, 0, 1, 1]
    assert torch.equal(rows.features["visual"], real.features["visual"].repeat(2, 1, 1))


def test_the_seed_reaches_the_scorer_folds_and_the_sampling() -> None:
    ds = tiny_dataset(n=12)
    aug = AugmentConfig(source="fit", per_sample=2, generator=TINY_GEN, seed=3)
    generator, scorer = fit_generator_dir(ds, aug, None)
    assert scorer.info["seed"] == 3
    assert torch.equal(scorer.t["fold_of"], group_folds(list(ds["train"].ids), aug.scorer.folds, 3))
    built = build_sampled_dataset(ds, generator, scorer, 2, seed=5)["train"]
    gen = built.extras["generated"] == 1
    for seed in (5, 6):
        rows = generated_rows(ds["train"], generator, scorer, 2, seed=seed)
        same = torch.equal(built.features["audio"][gen], rows.features["audio"])
        assert same == (seed == 5)


def test_a_generator_folder_gives_the_weighting_asked_for_and_must_match_the_training_split(tmp_path: Path) -> None:
    ds = tiny_dataset(n=12)
    aug = AugmentConfig(source="fit", per_sample=2, generator=TINY_GEN, weighting="quality")
    fitted = augmented_train_split(aug, ds, save_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "augment.json").read_text()) == aug.model_dump(mode="json")
    assert (tmp_path / "run" / "samples" / "manifest.json").is_file()
    folder = tmp_path / "gen"
    fit_generator_dir(ds, aug, folder)
    for weighting, key in (("quality", "quality"), ("fidelity", "q_fid"), ("consistency", "q_con")):
        split = augmented_train_split(aug.model_copy(update={"source": str(folder), "weighting": weighting}), ds)
        gen = split.extras["generated"] == 1
        assert int(gen.sum()) == 24
        torch.testing.assert_close(split.extras["sample_weight"][gen], split.extras[key][gen].float())
        assert bool((split.extras["sample_weight"][~gen] == 1).all())
    uniform = augmented_train_split(aug.model_copy(update={"source": str(folder), "weighting": "uniform"}), ds)
    assert bool((uniform.extras["sample_weight"] == 1).all())
    assert torch.equal(fitted.extras["sample_weight"][12:], fitted.extras["quality"][12:].float())
    assert augmented_train_split(AugmentConfig(), ds) is ds["train"]  # source none: the real rows only
    noise = augmented_train_split(AugmentConfig(source="noise", per_sample=2, seed=3), ds)
    want = noise_rows(ds["train"], 2, 0.5, AugmentConfig().generator.modalities, 3)
    assert torch.equal(noise.features["audio"][12:], want.features["audio"])
    assert bool((noise.extras["sample_weight"] == 1).all())
    unsaved = augmented_train_split(aug, ds)  # fit without a folder to save to
    assert len(unsaved) == 36
    other = tiny_dataset(n=13)  # other training ids: the folder was fitted on another split
    with pytest.raises(ConfigError, match=r"augment\.source: .*gen was fitted on a different training split than "
                                          r"this run's \(13 rows"):
        augmented_train_split(aug.model_copy(update={"source": str(folder)}), other)


def test_generated_sample_of_weight_zero_changes_nothing(tmp_path: Path) -> None:
    """Real rows + generated rows of weight 0 give the same loss AND gradients as the real rows alone."""
    ds, gen = _aug_fixture()
    gen.extras["q_fid"] = torch.zeros(len(gen))
    aug = augment_split(ds["train"], gen, "fidelity")
    cfg = load_config(method="early_fusion", overrides=[f"output.dir={tmp_path}", "name=w0"])
    tr = Trainer(cfg, dataset=ds, progress=False)
    model = tr.build_model().eval()
    mixed = aug.batch(torch.arange(36))
    real_only = aug.batch(torch.arange(12))
    grads = []
    for batch in (mixed, real_only):
        model.zero_grad()
        terms = tr.loss_terms(model, batch, model(batch))
        terms["total"].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        assert float(terms["task"].detach()) > 0
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-7)
    with torch.no_grad():
        loss = {name: float(tr.loss_terms(model, b, model(b))["task"])
                for name, b in (("mixed", mixed), ("real", real_only),
                                ("uniform", augment_split(ds["train"], gen, "uniform").batch(torch.arange(36))))}
    assert loss["mixed"] == pytest.approx(loss["real"], rel=1e-6)
    assert loss["uniform"] != pytest.approx(loss["real"], rel=1e-3)  # with weight 1 the generated rows count


# ------------------------------------------------------------------------------------------------ trainer + config
CB = ["data.params.n_train=48", "data.params.n_valid=24", "data.params.n_test=24", "train.epochs=1",
      "train.batch_size=16", "augment.generator.hidden=16", "augment.generator.blocks=1",
      "augment.generator.train_steps=10", "augment.generator.diffusion_steps=20", "augment.generator.sample_steps=4"]


def test_trainer_with_augment_fit_then_sample_folder(tmp_path: Path) -> None:
    cfg = load_config(method="early_fusion", dataset="conflictbench",
                      overrides=[*CB, f"output.dir={tmp_path}", "name=fit", "augment.source=fit",
                                 "augment.per_sample=2"])
    tr = Trainer(cfg, progress=False)
    tr.fit()
    split = tr.augmented_train_split()
    assert len(split) == 3 * 48 and int(split.extras["generated"].sum()) == 96
    assert torch.equal(split.extras["sample_weight"][48:], split.extras["quality"][48:])
    samples = tmp_path / "fit" / "augment" / "samples"
    assert (samples / "manifest.json").is_file() and (tmp_path / "fit" / "augment" / "generator" /
                                                      "scorer.json").is_file()
    assert len(tr.dataset["valid"]) == 24  # validation and test are never augmented
    # the saved sample folder as the source: same rows, other weighting, fewer variants
    cfg2 = load_config(method="early_fusion", dataset="conflictbench",
                       overrides=[*CB, f"output.dir={tmp_path}", "name=from_dir", f"augment.source={samples}",
                                  "augment.per_sample=1", "augment.weighting=consistency"])
    split2 = Trainer(cfg2, progress=False).augmented_train_split()
    assert len(split2) == 96 and torch.equal(split2.extras["sample_weight"][48:], split.extras["q_con"][48:96])
    cfg3 = load_config(method="early_fusion", dataset="conflictbench",
                       overrides=[*CB, f"output.dir={tmp_path}", "name=x", f"augment.source={samples}",
                                  "augment.per_sample=3"])
    with pytest.raises(ConfigError, match="augment.per_sample: 3 requested but .* holds 2"):
        Trainer(cfg3, progress=False).augmented_train_split()
    cfg_all = load_config(method="early_fusion", dataset="conflictbench",  # exactly the variants the folder holds
                          overrides=[*CB, f"output.dir={tmp_path}", "name=all", f"augment.source={samples}",
                                     "augment.per_sample=2", "augment.weighting=quality"])
    split_all = Trainer(cfg_all, progress=False).augmented_train_split()
    assert len(split_all) == 3 * 48 and torch.equal(split_all.extras["sample_weight"], split.extras["sample_weight"])
    no_gen = load_dataset_dir(samples)  # a sample folder whose generated rows were removed: holds 0 per real row
    no_gen.splits["train"] = no_gen.splits["train"].subset(
        (no_gen.splits["train"].extras["generated"] == 0).nonzero().flatten())
    save_dataset(no_gen, tmp_path / "no_generated")
    cfg_none = load_config(method="early_fusion", dataset="conflictbench",
                           overrides=[*CB, f"output.dir={tmp_path}", "name=none",
                                      f"augment.source={tmp_path / 'no_generated'}", "augment.per_sample=1"])
    with pytest.raises(ConfigError, match=r"augment.per_sample: 1 requested but .*no_generated holds 0 generated rows"):
        Trainer(cfg_none, progress=False).augmented_train_split()
    half = tmp_path / "generator_only"  # a folder with generator.json but no scorer.json is neither kind of source
    shutil.copytree(tmp_path / "fit" / "augment" / "generator", half)
    (half / "scorer.json").unlink()
    cfg_half = load_config(method="early_fusion", dataset="conflictbench",
                           overrides=[*CB, f"output.dir={tmp_path}", "name=half", f"augment.source={half}"])
    with pytest.raises(ConfigError, match=r"generator_only is not none, fit, noise, a generator folder"):
        Trainer(cfg_half, progress=False).augmented_train_split()
    cfg4 = load_config(method="early_fusion", dataset="conflictbench",
                       overrides=[*CB, f"output.dir={tmp_path}", "name=y", f"augment.source={samples}",
                                  "data.params.n_train=40"])
    with pytest.raises(ConfigError, match="not this run's training split"):
        Trainer(cfg4, progress=False).augmented_train_split()


def test_augment_config_is_typed_and_off_by_default(tmp_path: Path) -> None:
    cfg = load_config(method="early_fusion", dataset="conflictbench")
    assert cfg.augment == AugmentConfig() and not cfg.augment.enabled
    with pytest.raises(ConfigError, match="augment.generator.bogus"):
        load_config(method="early_fusion", overrides=["augment.generator.bogus=1"])
    with pytest.raises(ConfigError, match="augment.weighting"):
        load_config(method="early_fusion", overrides=["augment.weighting=best"])
    with pytest.raises(ConfigError, match="augment.generator.modalities"):
        load_config(method="early_fusion", overrides=["augment.generator.modalities=[text]"])
    bad = load_config(method="early_fusion", overrides=[*CB, f"output.dir={tmp_path}", f"augment.source={tmp_path}"])
    with pytest.raises(ConfigError, match="is not none, fit, noise, a generator folder"):
        Trainer(bad, progress=False).augmented_train_split()
    noise = load_config(method="early_fusion", dataset="conflictbench",
                        overrides=[*CB, f"output.dir={tmp_path}", "augment.source=noise", "augment.per_sample=3"])
    split = Trainer(noise, progress=False).augmented_train_split()
    assert len(split) == 4 * 48 and split.extras["sample_weight"].tolist() == [1.0] * 192


# ------------------------------------------------------------------------------------------------ train_fraction
def _grouped(n_groups: int = 10, per: int = 4) -> MultimodalDataset:
    ds = tiny_dataset(n=n_groups * per)
    ds.splits["train"].ids = [f"video{g}_{i}" for g in range(n_groups) for i in range(per)]
    return ds


def test_train_fraction_keeps_whole_groups() -> None:
    ds = _grouped()
    cut = apply_train_fraction(ds, 0.5, seed=3)
    groups = [group_of(i) for i in cut["train"].ids]
    assert len(set(groups)) == 5 and len(cut["train"]) == 20
    assert all(groups.count(g) == 4 for g in set(groups))  # no group split
    assert cut["valid"] is ds["valid"] and cut["test"] is ds["test"] and len(ds["train"]) == 40
    again = apply_train_fraction(ds, 0.5, seed=3)
    assert again["train"].ids == cut["train"].ids  # seeded
    assert apply_train_fraction(cut, 0.5, seed=3) is cut  # idempotent
    other = {group_of(i) for i in apply_train_fraction(ds, 0.5, seed=4)["train"].ids}
    assert other != set(groups)
    assert len({group_of(i) for i in apply_train_fraction(ds, 0.01)["train"].ids}) == 1  # at least one group
    assert apply_train_fraction(ds, 1.0) is ds
    one = tiny_dataset(n=10)
    one.splits["train"].ids = [f"cb_train_{i}" for i in range(10)]
    one.splits["train"].ids = ["cb_x" for _ in range(10)]
    with pytest.raises(ConfigError, match="train_fraction_by=sample"):
        keep_fraction(one["train"], 0.5)
    assert len(keep_fraction(one["train"], 0.5, by="sample")) == 5


def test_train_fraction_in_the_trainer(tmp_path: Path) -> None:
    cfg = load_config(method="early_fusion", dataset="conflictbench",
                      overrides=[*CB, f"output.dir={tmp_path}", "data.train_fraction=0.25",
                                 "data.train_fraction_by=sample"])
    tr = Trainer(cfg, progress=False)
    assert len(tr.dataset["train"]) == 12 and len(tr.dataset["valid"]) == 24
    with pytest.raises(ConfigError, match="data.train_fraction"):
        load_config(overrides=["data.train_fraction=0"])


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_augment_fit_and_sample(tmp_path: Path) -> None:
    runner = CliRunner()
    sets = [a for s in CB if s.startswith(("data.", "augment.")) for a in ("--set", s)]
    res = runner.invoke(app, ["augment", "fit", "conflictbench", "--out", str(tmp_path / "g"), *sets])
    assert res.exit_code == 0, res.output
    assert {"generator.json", "generator.safetensors", "scorer.json", "scorer.safetensors"} <= {
        p.name for p in (tmp_path / "g").iterdir()}
    res = runner.invoke(app, ["augment", "sample", str(tmp_path / "g"), "--per-sample", "2",
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output

    saved = load_dataset_dir(tmp_path / "s")
    assert len(saved["train"]) == 144 and len(saved["valid"]) == 24
    assert {"quality", "q_fid", "q_con", "q_fid_audio", "q_con_visual", "sample_weight"} <= set(saved["train"].extras)
    res = runner.invoke(app, ["augment", "sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "s2")])
    assert res.exit_code == 2 and "generator.json: missing" in res.output


def test_api_augment_fit_and_sample(tmp_path: Path) -> None:
    """The QASA flows are API functions (they compose config, data and accord.augment)."""
    from accord import api
    from accord.api.qasa import config_for_target, dataset_for

    sets = [s for s in CB if s.startswith(("data.", "augment."))]
    cfg = config_for_target("conflictbench", sets)
    assert cfg.data.name == "conflictbench" and len(dataset_for(cfg.data)["train"]) == 48
    assert len(dataset_for(cfg.data.model_dump(mode="json"))["train"]) == 48
    folder, generator, scorer = api.augment_fit("conflictbench", sets, tmp_path / "g")
    assert folder == tmp_path / "g" and (folder / "generator.json").is_file()
    assert generator.info["n_train"] == 48 and "alpha" in scorer.info
    ds = api.augment_sample(folder, tmp_path / "s", per_sample=1, seed=3)
    assert ds.meta["qasa"]["real_rows"] == 48 and ds.meta["qasa"]["generated_rows"] == 48
    assert (tmp_path / "s" / "manifest.json").is_file()
    with pytest.raises(ConfigError, match="--per-sample"):
        api.augment_sample(folder, tmp_path / "s0", per_sample=0)
    with pytest.raises(ConfigError, match="not a run directory"):
        config_for_target(str(tmp_path / "nothing"), [])
