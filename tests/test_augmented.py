"""QASA's augmented training split (``augment/augmented.py``): what the generated rows hand the quality scorer,
the real rows' flags and scores, the weights' range check, and inputs that are never modified.

Written after the mutation run over ``augment/augmented.py`` (benchmarks/results/mutation.md); the end-to-end
flows (generator, scorer, folders, digests) are tested in ``test_qasa.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from accord.augment.augmented import augment_split, concat_splits, generated_rows, generated_weights
from accord.augment.params import ScorerParams
from accord.augment.quality import fit_scorer, group_folds
from accord.core.errors import DataError
from accord.data.dataset import SplitData
from conftest import tiny_dataset


class StubGenerator:
    """Generates audio = real audio + 100 (so a generated row is told from its source)."""

    modalities = ["audio"]

    def generate(self, real: SplitData, source: Tensor, seed: int = 0) -> dict[str, Tensor]:
        return {"audio": real.features["audio"][source] + 100.0}


class StubScorer:
    """Records the ``source`` it is given and scores each row by its source index (so the scores show it)."""

    def __init__(self) -> None:
        self.sources: list[Tensor | None] = []

    def score_split(self, split: SplitData, source: Tensor | None = None) -> dict[str, Tensor]:
        self.sources.append(source)
        q = torch.full((len(split),), 0.5) if source is None else source.float() / 10
        return {"quality": q, "q_fid": q, "q_con": torch.ones(len(split))}


def _real(n: int = 4) -> SplitData:
    real = tiny_dataset(n=n, seed=0)["train"]
    real.extras = {"own": torch.arange(n)}
    return real


def test_generated_rows_are_scored_against_their_own_source_rows() -> None:
    """K = 2 copies per real row, variant-major; the scorer gets each row's source index (so fidelity leaves the
    source row out of the reference set, METHODS.md §4)."""
    real, scorer = _real(), StubScorer()
    gen = generated_rows(real, StubGenerator(), scorer, k=2)  # type: ignore[arg-type]
    source = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert len(scorer.sources) == 1 and torch.equal(scorer.sources[0], source)  # type: ignore[arg-type]
    assert torch.equal(gen.extras["quality"], source.float() / 10)
    assert gen.ids == [f"{real.ids[s]}#g{v}" for s, v in zip(source.tolist(), [0] * 4 + [1] * 4, strict=True)]
    assert gen.extras["generated"].dtype == torch.long and gen.extras["generated"].tolist() == [1] * 8
    assert torch.equal(gen.features["audio"], real.features["audio"][source] + 100.0)
    assert torch.equal(gen.features["text"], real.features["text"][source])


def test_the_real_rows_are_weight_1_generated_0_variant_minus_1_and_carry_their_given_scores() -> None:
    real = _real()
    gen = generated_rows(real, StubGenerator(), StubScorer(), k=1)  # type: ignore[arg-type]
    real_q = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)  # cast to the generated scores' dtype
    aug = augment_split(real, gen, "fidelity", real_scores={"quality": real_q})
    ex = aug.extras
    assert ex["generated"].dtype == torch.long and ex["generated"].tolist() == [0] * 4 + [1] * 4
    assert ex["variant"].dtype == torch.long and ex["variant"].tolist() == [-1] * 4 + [0] * 4
    assert ex["source_index"].tolist() == [0, 1, 2, 3] * 2
    assert ex["sample_weight"].tolist() == pytest.approx([1.0] * 4 + [0.0, 0.1, 0.2, 0.3])  # q_fid of the rows
    assert ex["quality"].dtype == torch.float32
    assert ex["quality"][:4].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])  # given for the real rows
    assert all(math.isnan(v) for v in ex["q_fid"][:4].tolist())  # not given: NaN, never a made-up score
    assert ex["own"].tolist() == [0, 1, 2, 3] * 2
    # the inputs are left as they were (the function copies their extras before adding keys)
    assert set(real.extras) == {"own"} and "sample_weight" not in gen.extras


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, math.inf])
def test_generated_weights_outside_0_1_are_a_one_line_error(bad: float) -> None:
    rows = _real()
    rows.extras["quality"] = torch.tensor([0.5, bad, 0.2, 1.0])
    with pytest.raises(DataError, match=r"^generated rows: score 'quality' must be finite and in \[0, 1\]$"):
        generated_weights(rows, "quality")
    rows.extras["quality"] = torch.tensor([0.0, 1.0, 0.2, 1.0])  # the ends of the range are fine
    assert generated_weights(rows, "quality").tolist() == pytest.approx([0.0, 1.0, 0.2, 1.0])


def test_a_weighting_without_its_score_names_the_score() -> None:
    with pytest.raises(DataError, match=r"^augment\.weighting: 'consistency' needs the score 'q_con', but the "
                                        r"generated rows carry none \(they were not scored\)$"):
        generated_weights(_real(), "consistency")


def test_one_part_concatenates_to_itself() -> None:
    real = _real(3)
    one = concat_splits([real])
    assert one.ids == real.ids and torch.equal(one.labels, real.labels) and torch.equal(one.extras["own"],
                                                                                         real.extras["own"])
    for m in ("text", "audio", "visual"):
        assert torch.equal(one.features[m], real.features[m])


def test_the_consistency_regressor_falls_back_to_the_mean_for_a_fold_without_two_training_rows() -> None:
    """q_con's cross-fitting (METHODS.md §4): a fold whose complement holds fewer than 2 rows of the modality gets
    the constant model of that complement (zero coefficients, intercept = its mean label, never a held-out label),
    not a ridge fit on one row."""
    train = tiny_dataset(n=4, seed=0)["train"]
    fold_of = group_folds(list(train.ids), 2, seed=0)  # one group ("train"): rows dealt 2 / 2
    absent = int((fold_of == 0).nonzero()[0])  # visual missing in one row of fold 0: fold 0 keeps 1 present row
    train.lengths["visual"][absent] = 0
    train.features["visual"][absent] = 0
    scorer = fit_scorer(train, ScorerParams(folds=2, k=1, alphas=[1.0]), ["visual"], seed=0)
    coef = scorer.t["visual/coef"]  # one row per fold, then the full-data fit
    present = train.lengths["visual"] > 0
    assert coef.shape[0] == 3
    assert torch.equal(coef[1, :-1], torch.zeros(coef.shape[1] - 1, dtype=torch.float64))  # fold 1's complement: 1 row
    complement = present & (fold_of != 1)  # the one present row outside fold 1
    assert int(complement.sum()) == 1
    assert float(coef[1, -1]) == pytest.approx(float(train.labels[complement].double().mean()))
    assert float(coef[1, -1]) != pytest.approx(float(train.labels[present].double().mean()))  # not the held-out rows
    # fold 0's complement (the 2 present rows of fold 1) gets a ridge fit: its intercept is not the fallback's
    assert float(coef[0, -1]) != pytest.approx(float(coef[1, -1]))


def test_a_fold_with_no_training_rows_of_the_modality_gets_the_scale_centre() -> None:
    """Every present row of the modality in one fold: that fold's complement has none, so its constant model
    predicts 0 (the centre of the sentiment scale), finite, never a held-out label."""
    train = tiny_dataset(n=6, seed=0)["train"]
    fold_of = group_folds(list(train.ids), 2, seed=0)
    for i in (fold_of == 1).nonzero().flatten().tolist():  # the modality present only in fold 0's three rows
        train.lengths["visual"][i] = 0
        train.features["visual"][i] = 0
    scorer = fit_scorer(train, ScorerParams(folds=2, k=1, alphas=[1.0]), ["visual"], seed=0)
    coef = scorer.t["visual/coef"]
    assert bool(torch.isfinite(coef).all())
    assert coef[0].abs().sum().item() == 0.0  # fold 0: no training row of visual -> intercept 0, no weights
