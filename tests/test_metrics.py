"""Evaluation metrics against values derived by hand (the derivation is in the comments)."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch

from accord.core.errors import ConfigError, DataError
from accord.evaluation.metrics import (
    METRIC_ORDER,
    classification_metrics,
    compute_metrics,
    default_metric,
    metric_mode,
    metric_spec,
    register_metric,
    regression_metrics,
)

# ------------------------------------------------------------------------------------------- MOSI / MOSEI
# idx:          0     1     2     3     4     5
MOSI_PRED = [0.5, -0.3, 0.4, 2.6, -2.6, 0.0]
MOSI_TRUE = [0.0, 0.0, -1.0, 3.0, -2.4, 1.0]


def test_mosi_keys_follow_metric_order() -> None:
    out = regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    assert list(out) == METRIC_ORDER["mosi"]


def test_mosi_has0_counts_zero_labels_as_positive() -> None:
    # label >= 0: [T, T, F, T, F, T]; pred >= 0: [T, F, T, T, F, T]
    # agree at 0, 3, 4, 5 -> 4/6 = 66.667 %
    # positive class: true {0,1,3,5}, pred {0,2,3,5}: TP 3, FP 1, FN 1 -> F1 0.75, support 4
    # negative class: true {2,4},     pred {1,4}:     TP 1, FP 1, FN 1 -> F1 0.5,  support 2
    # weighted F1 = (4 * 0.75 + 2 * 0.5) / 6 = 4/6 = 66.667 %
    out = regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    assert out["Has0_acc_2"] == pytest.approx(100 * 4 / 6)
    assert out["Has0_F1"] == pytest.approx(100 * 4 / 6)


def test_mosi_non0_drops_zero_labels() -> None:
    # labels 0 at idx 0, 1 are dropped; remaining label [-1, 3, -2.4, 1], pred [0.4, 2.6, -2.6, 0.0]
    # label > 0: [F, T, F, T]; pred > 0: [T, T, F, F] (0.0 is not > 0) -> agree at 2 of 4 = 50 %
    # positive: true {3,5}, pred {2,3}: TP 1, FP 1, FN 1 -> 0.5; negative: true {2,4}, pred {4,5} -> 0.5
    # weighted F1 = 0.5 -> 50 %; differs from Has0 (66.667 %) because the zero labels are gone
    out = regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    assert out["Non0_acc_2"] == pytest.approx(50.0)
    assert out["Non0_F1"] == pytest.approx(50.0)
    assert out["Non0_acc_2"] != pytest.approx(out["Has0_acc_2"])


def test_mosi_multiclass_rounding_and_clipping() -> None:
    # acc7: clip to [-3, 3], round half to even
    #   pred  [0.5, -0.3, 0.4, 2.6, -2.6, 0.0] -> [0, -0, 0, 3, -3, 0]
    #   label [0,    0,  -1,   3,  -2.4,  1  ] -> [0,  0, -1, 3, -2, 1]
    #   agree at 0, 1, 3 (2.6 rounds to 3 = label 3.0) -> 3/6 = 50 %
    # acc5: clip to [-2, 2] first
    #   pred  -> [0.5, -0.3, 0.4, 2, -2, 0] -> [0, -0, 0, 2, -2, 0]
    #   label -> [0, 0, -1, 2, -2, 1]       -> [0,  0, -1, 2, -2, 1]
    #   agree at 0, 1, 3, 4 (-2.6 and -2.4 both clip to -2) -> 4/6 = 66.667 %
    out = regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    assert out["Mult_acc_7"] == pytest.approx(50.0)
    assert out["Mult_acc_5"] == pytest.approx(100 * 4 / 6)


def test_mosi_round_half_to_even_like_mmsa() -> None:
    # np.round(2.5) = 2 (half to even), so pred 2.5 matches label 2.0 but not label 3.0
    out = regression_metrics(np.array([2.5, 2.5, 0.5, -1.5, -0.5]), np.array([2.0, 3.0, 0.0, -2.0, 0.0]))
    # rounded pred [2, 2, 0, -2, -0] vs label [2, 3, 0, -2, 0] -> 4/5 = 80 %
    assert out["Mult_acc_7"] == pytest.approx(80.0)


def test_mosi_mae_is_unclipped() -> None:
    # |0.5-0| + |-0.3-0| + |0.4+1| + |2.6-3| + |-2.6+2.4| + |0-1| = 0.5 + 0.3 + 1.4 + 0.4 + 0.2 + 1.0 = 3.8
    # MAE = 3.8 / 6 = 0.63333
    out = regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    assert out["MAE"] == pytest.approx(3.8 / 6)
    # a prediction of 5.0 against 3.0 costs 2.0, not 0 after clipping
    assert regression_metrics([5.0, 0.0], [3.0, 0.0])["MAE"] == pytest.approx(1.0)


def test_corr_hand_value() -> None:
    # pred  [-2, -1, 0, 1, 2] (mean 0),  label [-1, -2, 1, 0, 2] (mean 0)
    # sum(dp*dy) = 2 + 2 + 0 + 0 + 4 = 8; sum(dp^2) = 10; sum(dy^2) = 1 + 4 + 1 + 0 + 4 = 10
    # r = 8 / sqrt(10 * 10) = 0.8
    out = regression_metrics(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.array([-1.0, -2.0, 1.0, 0.0, 2.0]))
    assert out["Corr"] == pytest.approx(0.8)


def test_corr_zero_variance_is_zero_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant_pred = regression_metrics(np.full(5, 0.5), np.array([-1.0, -2.0, 1.0, 0.0, 2.0]))
        constant_label = regression_metrics(np.array([-1.0, -2.0, 1.0, 0.0, 2.0]), np.full(5, 1.0))
    assert constant_pred["Corr"] == 0.0
    assert constant_label["Corr"] == 0.0


def test_non0_is_nan_when_every_label_is_zero() -> None:
    out = regression_metrics(np.array([0.3, -0.2, 0.0, 1.0, -1.0]), np.zeros(5))
    assert math.isnan(out["Non0_acc_2"])
    assert math.isnan(out["Non0_F1"])
    # Has0 is still defined: label >= 0 everywhere, pred >= 0 at 0, 2, 3 -> 3/5 = 60 %
    assert out["Has0_acc_2"] == pytest.approx(60.0)


def test_weighted_f1_hand_case() -> None:
    # label >= 0: [T, T, T, T, F]; pred >= 0: [T, T, T, F, F]; accuracy 4/5 = 80 %
    # positive: TP 3, FP 0, FN 1 -> P 1, R 3/4 -> F1 6/7, support 4
    # negative: TP 1, FP 1, FN 0 -> P 1/2, R 1 -> F1 2/3, support 1
    # weighted = (4 * 6/7 + 1 * 2/3) / 5 = 86/105 = 0.819048
    out = regression_metrics(np.array([1.0, 2.0, 0.5, -0.5, -1.0]), np.array([1.0, 1.0, 2.0, 1.0, -1.0]))
    assert out["Has0_acc_2"] == pytest.approx(80.0)
    assert out["Has0_F1"] == pytest.approx(100 * 86 / 105)


def test_single_class_batch_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = regression_metrics(np.array([1.0, 2.0, 0.5, 1.5, 2.0]), np.array([1.0, 2.0, 1.0, 0.5, 3.0]))
    # all labels and predictions positive: one class, predicted perfectly
    assert out["Has0_F1"] == pytest.approx(100.0)
    assert out["Non0_F1"] == pytest.approx(100.0)


def test_torch_input_with_grad_and_column_shape() -> None:
    pred = torch.tensor(MOSI_PRED, dtype=torch.float64, requires_grad=True).unsqueeze(1)  # [N, 1]
    out = regression_metrics(pred, torch.tensor(MOSI_TRUE))
    assert out["MAE"] == pytest.approx(3.8 / 6)


# ------------------------------------------------------------------------------------------- CH-SIMS
#            0     1     2     3     4     5      6     7
SIMS_PRED = [0.0, 0.1, -0.7, -0.1, 1.4, -0.65, 0.7, -1.5]
SIMS_TRUE = [0.2, 0.0, -0.8, -0.4, 0.8, -0.6, 0.8, -1.0]
# after clipping pred[4] = 1.0, pred[7] = -1.0
# acc2 classes ([-1,0] -> 0, (0,1] -> 1):
#   pred  [0, 1, 0, 0, 1, 0, 1, 0]   (0.0 -> 0; 0.1 -> 1)
#   label [1, 0, 0, 0, 1, 0, 1, 0]   -> miss 0, 1 -> 6/8 = 75 %
# acc3 classes ([-1,-0.1] -> 0, (-0.1,0.1] -> 1, (0.1,1] -> 2):
#   pred  [1, 1, 0, 0, 2, 0, 2, 0]   (0.1 -> 1 since bins are (lo, hi]; -0.1 -> 0)
#   label [2, 1, 0, 0, 2, 0, 2, 0]   -> miss 0 -> 7/8 = 87.5 %
# acc5 classes ([-1,-0.7] 0, (-0.7,-0.1] 1, (-0.1,0.1] 2, (0.1,0.7] 3, (0.7,1] 4):
#   pred  [2, 2, 0, 1, 4, 1, 3, 0]   (-0.7 -> 0; -0.1 -> 1; 0.7 -> 3)
#   label [3, 2, 0, 1, 4, 1, 4, 0]   -> miss 0, 6 -> 6/8 = 75 %
# F1 on acc2 classes: class 1 true {0,4,6}, pred {1,4,6}: TP 2, FP 1, FN 1 -> 2/3, support 3
#                     class 0 true {1,2,3,5,7}, pred {0,2,3,5,7}: TP 4, FP 1, FN 1 -> 4/5, support 5
#                     weighted = (3 * 2/3 + 5 * 4/5) / 8 = 6/8 = 75 %
# MAE on clipped values: 0.2 + 0.1 + 0.1 + 0.3 + 0.2 + 0.05 + 0.1 + 0.0 = 1.05 -> 1.05 / 8 = 0.13125
SIMS_EXPECTED = {"Mult_acc_2": 75.0, "Mult_acc_3": 87.5, "Mult_acc_5": 75.0, "F1": 75.0, "MAE": 0.13125}


def test_sims_bins_at_edges_float64() -> None:
    out = regression_metrics(np.array(SIMS_PRED), np.array(SIMS_TRUE), family="sims")
    assert list(out) == METRIC_ORDER["sims"]
    for key, value in SIMS_EXPECTED.items():
        assert out[key] == pytest.approx(value), key


def test_sims_bins_at_edges_float32_tensors() -> None:
    # float32(0.1) > 0.1 and float32(-0.7) > -0.7 in float64; the edges must be compared in float32 (as MMSA
    # does with float32 arrays) so the edge values fall in the same bins as above
    out = regression_metrics(torch.tensor(SIMS_PRED), torch.tensor(SIMS_TRUE), family="sims")
    for key, value in SIMS_EXPECTED.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key


def test_sims_mae_and_corr_use_clipped_values() -> None:
    # pred [-2, -1, 0, 1, 2] clips to [-1, -1, 0, 1, 1]; label [-1, -0.5, 0, 0.5, 1]
    # MAE = (0 + 0.5 + 0 + 0.5 + 0) / 5 = 0.2
    # Corr: sum(dp*dy) = 1 + 0.5 + 0 + 0.5 + 1 = 3; sum(dp^2) = 4; sum(dy^2) = 2.5 -> 3 / sqrt(10) = 0.948683
    # (unclipped the correlation would be exactly 1.0)
    out = regression_metrics(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.array([-1.0, -0.5, 0.0, 0.5, 1.0]),
                             family="sims")
    assert out["MAE"] == pytest.approx(0.2)
    assert out["Corr"] == pytest.approx(3 / math.sqrt(10))


# ------------------------------------------------------------------------------------------- classification
# y    = [0, 0, 0, 1, 1, 2];  pred = [0, 0, 1, 1, 2, 2]; hits at 0, 1, 3, 5 -> Acc 4/6 = 66.667 %
# neg: true {0,1,2}, pred {0,1}: TP 2, FP 0, FN 1 -> P 1, R 2/3 -> F1 0.8, support 3
# neu: true {3,4},   pred {2,3}: TP 1, FP 1, FN 1 -> F1 0.5, support 2
# pos: true {5},     pred {4,5}: TP 1, FP 1, FN 0 -> P 1/2, R 1 -> F1 2/3, support 1
# macro = (0.8 + 0.5 + 2/3) / 3 = 0.655556; weighted = (3*0.8 + 2*0.5 + 1*2/3) / 6 = 0.677778
CLS_TRUE = [0, 0, 0, 1, 1, 2]
CLS_PRED = [0, 0, 1, 1, 2, 2]
CLS_NAMES = ["neg", "neu", "pos"]
CLS_EXPECTED = {
    "Acc": 100 * 4 / 6,
    "F1_weighted": 100 * (3 * 0.8 + 2 * 0.5 + 2 / 3) / 6,
    "F1_macro": 100 * (0.8 + 0.5 + 2 / 3) / 3,
    "F1_neg": 80.0,
    "F1_neu": 50.0,
    "F1_pos": 100 * 2 / 3,
}


def _check(out: dict[str, float], expected: dict[str, float]) -> None:
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key


def test_classification_from_indices() -> None:
    _check(classification_metrics(np.array(CLS_PRED), np.array(CLS_TRUE), CLS_NAMES), CLS_EXPECTED)


def test_classification_from_logits() -> None:
    # each row's arg-max is CLS_PRED; the other entries are deliberately not ordered like the one-hot
    logits = torch.tensor([[2.0, 1.9, -3.0], [0.5, 0.1, 0.4], [0.0, 0.2, 0.1],
                           [-1.0, 3.0, 2.9], [0.3, 0.2, 0.4], [-5.0, -6.0, -4.0]])
    _check(classification_metrics(logits, torch.tensor(CLS_TRUE), CLS_NAMES), CLS_EXPECTED)


def test_classification_absent_class_scores_zero_and_counts_in_macro() -> None:
    # a 4th class "other" never occurs: F1 0 (zero_division=0); macro = (0.8 + 0.5 + 2/3 + 0) / 4 = 0.491667
    # the weighted F1 is unchanged (support 0)
    out = classification_metrics(np.array(CLS_PRED), np.array(CLS_TRUE), [*CLS_NAMES, "other"])
    assert out["F1_other"] == 0.0
    assert out["F1_macro"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 4)
    assert out["F1_weighted"] == pytest.approx(CLS_EXPECTED["F1_weighted"])


def test_compute_metrics_dispatch() -> None:
    reg = compute_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE), task="regression")
    assert reg == regression_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE))
    sims = compute_metrics(np.array(SIMS_PRED), np.array(SIMS_TRUE), task="regression", family="sims")
    assert sims["Mult_acc_3"] == pytest.approx(87.5)
    cls = compute_metrics(np.array(CLS_PRED), np.array(CLS_TRUE), "classification", class_names=CLS_NAMES)
    _check(cls, CLS_EXPECTED)
    unnamed = compute_metrics(np.eye(3)[CLS_PRED], np.array(CLS_TRUE), task="classification")
    assert unnamed["F1_0"] == pytest.approx(80.0)
    with pytest.raises(ConfigError, match="unknown task 'ranking'"):
        compute_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE), task="ranking")
    with pytest.raises(ConfigError, match="unknown regression family 'iemocap'"):
        compute_metrics(np.array(MOSI_PRED), np.array(MOSI_TRUE), task="regression", family="iemocap")
    with pytest.raises(ConfigError, match="class_names is required"):
        compute_metrics(np.array(CLS_PRED), np.array(CLS_TRUE), task="classification")


# ------------------------------------------------------------------------------------------- errors
def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("metrics: ")
    return msg


def test_length_mismatch_raises() -> None:
    with pytest.raises(DataError) as err:
        regression_metrics(np.zeros(5), np.zeros(4))
    assert "5 predictions for 4 labels" in _one_line(err)
    with pytest.raises(DataError) as err:
        classification_metrics(np.zeros((5, 3)), np.zeros(4, dtype=np.int64), CLS_NAMES)
    assert "5 predictions for 4 labels" in _one_line(err)


def test_empty_input_raises() -> None:
    with pytest.raises(DataError) as err:
        regression_metrics(np.zeros(0), np.zeros(0))
    assert "empty input" in _one_line(err)
    with pytest.raises(DataError) as err:
        classification_metrics(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), CLS_NAMES)
    assert "empty input" in _one_line(err)


def test_nan_predictions_raise() -> None:
    pred = np.array([0.1, np.nan, 0.3, np.inf, -0.2])
    with pytest.raises(DataError) as err:
        regression_metrics(pred, np.zeros(5))
    assert "predictions contain 2 NaN/Inf values" in _one_line(err)
    with pytest.raises(DataError) as err:
        regression_metrics(np.zeros(5), pred)
    assert "labels contain 2 NaN/Inf values" in _one_line(err)
    logits = np.zeros((5, 3))
    logits[1, 2] = np.nan
    with pytest.raises(DataError) as err:
        classification_metrics(logits, np.zeros(5, dtype=np.int64), CLS_NAMES)
    assert "predictions contain 1 NaN/Inf values" in _one_line(err)


def test_bad_shapes_and_classes_raise() -> None:
    with pytest.raises(DataError) as err:
        regression_metrics(np.zeros((5, 2)), np.zeros(5))
    assert "must be 1-D" in _one_line(err)
    with pytest.raises(DataError) as err:
        classification_metrics(np.zeros((6, 2)), np.array(CLS_TRUE), CLS_NAMES)
    assert "2 columns for 3 class names" in _one_line(err)
    with pytest.raises(DataError) as err:
        classification_metrics(np.array([0, 1, 3, 0, 0, 0]), np.array(CLS_TRUE), CLS_NAMES)
    assert "1 class indices outside [0, 3)" in _one_line(err)


# ------------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize(("name", "mode", "unit", "digits"), [
    ("MAE", "min", "", 3), ("Corr", "max", "", 3), ("Has0_acc_2", "max", "%", 1), ("Non0_F1", "max", "%", 1),
    ("F1_weighted", "max", "%", 1), ("Mult_acc_7", "max", "%", 1), ("Acc", "max", "%", 1),
    ("Mult_acc_3", "max", "%", 1), ("F1", "max", "%", 1), ("F1_negative", "max", "%", 1),
])
def test_metric_registry_declares_direction_and_unit(name: str, mode: str, unit: str, digits: int) -> None:
    spec = metric_spec(name)
    assert (metric_mode(name), spec.unit, spec.digits) == (mode, unit, digits)
    assert spec.better(2.0, 1.0) == (mode == "max") and spec.format(0.12345) == f"{0.12345:.{digits}f}"


def test_every_computed_metric_is_registered_and_unknown_names_fail() -> None:
    y = np.array([-2.0, -0.4, 0.0, 0.6, 1.4, 2.9])
    p = y + 0.3
    names = {*regression_metrics(p, y, "mosi"), *regression_metrics(p / 3, y / 3, "sims"),
             *classification_metrics(np.array(CLS_PRED), np.array(CLS_TRUE), CLS_NAMES)}
    for family, order in METRIC_ORDER.items():
        names |= set(order)
        assert all(metric_spec(m).name == m for m in order), family
    assert all(metric_spec(m) for m in names)
    for guess in ("valid/MAE", "loss", "RMSE", "mae", "F1_"):  # no direction is guessed from a name any more
        with pytest.raises(ConfigError, match=f"unknown metric '{re.escape(guess)}'"):
            metric_mode(guess)


def test_a_study_registers_its_own_metric_once() -> None:
    spec = register_metric("test_only_auroc", "max", description="a study's column")
    assert spec.digits == 3 and register_metric("test_only_auroc", "max", description="a study's column") == spec
    with pytest.raises(ValueError, match="registered twice, differently"):
        register_metric("test_only_auroc", "min")
    assert register_metric("test_only_share", "max", "%").digits == 1


def test_default_metric() -> None:
    assert default_metric("regression", "mosi") == "MAE"
    assert default_metric("regression", "sims") == "MAE"
    assert default_metric("classification", "mosi") == "F1_weighted"
    with pytest.raises(ConfigError):
        default_metric("ranking", "mosi")


def test_f1_is_bit_identical_to_scikit_learn() -> None:
    """The metrics compute F1 without importing scikit-learn; on random labels (binary and 4 classes, with classes
    that never occur and single-class batches) every value equals sklearn's to the last bit."""
    from sklearn.metrics import f1_score

    from accord.evaluation.metrics import f1_per_class

    rng = np.random.default_rng(0)
    for trial in range(120):
        k = 2 if trial % 2 else 4
        n = int(rng.integers(1, 40))
        true = rng.integers(0, k if trial % 5 else 1, n)  # every 5th: one class only
        pred = rng.integers(0, max(1, k - trial % 3), n)
        labels = list(range(k))
        ours, support = f1_per_class(true, pred, labels)
        assert ours.tolist() == f1_score(true, pred, labels=labels, average=None, zero_division=0).tolist()
        assert support.tolist() == [float(np.sum(true == c)) for c in labels]
        got = classification_metrics(pred, true, [f"c{c}" for c in labels])
        assert got["F1_weighted"] == 100.0 * float(f1_score(true, pred, labels=labels, average="weighted",
                                                            zero_division=0))
        assert got["F1_macro"] == 100.0 * float(f1_score(true, pred, labels=labels, average="macro",
                                                         zero_division=0))
