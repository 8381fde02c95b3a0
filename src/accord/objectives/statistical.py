"""The Statistical Loss (SL) of CP+SL (Dai, Liang and Mai, "A Conflict-Aware Penalty and Statistical Loss
Framework ...", arXiv 2605.28575; spec in METHODS.md §2): align the batch statistics of the predictions with the
labels' so a regressor cannot collapse towards the label mean (the regression-to-the-mean that hurts Acc7).

    L_SL = |mean(ŷ) − mean(y)| + |std(ŷ) − std(y)|  [+ (1 − corr(ŷ, y))]

Pure function, no model imports. The paper leaves the standard deviation's estimator open; we use the population
one (divide by B), computed as ``sqrt(var + eps) − sqrt(eps)`` so it is 0 for a constant batch and its gradient
stays finite there. Pearson correlation uses the same population moments; a batch with a constant prediction or
label has correlation 0 (so the optional term is 1, with zero gradient).

SL is a statistic over the batch (a scalar), so per-sample weights (QASA's ``sample_weight``) weight its moments:
``mean_w(x) = Σ_i w_i x_i / Σ_i w_i``, ``var_w(x) = mean_w((x − mean_w x)²)``, ``cov_w`` likewise; a sample of
weight 0 has no influence, weights 0/1 give SL of the selected rows, and ``weight=None`` is the unweighted SL.
"""

from __future__ import annotations

from torch import Tensor

from accord.objectives.task import reduce_per_sample

__all__ = ["batch_std", "pearson_corr", "statistical_loss"]


def batch_std(x: Tensor, eps: float = 1e-12, weight: Tensor | None = None) -> Tensor:
    """Population standard deviation of a ``[B]`` tensor, ``sqrt(var + eps) − sqrt(eps)`` (0 for a constant batch);
    with ``weight [B]`` the weighted one, ``var = mean_w((x − mean_w x)²)``."""
    var = reduce_per_sample((x - reduce_per_sample(x, weight)).pow(2), weight)
    return (var + eps).sqrt() - eps**0.5


def pearson_corr(a: Tensor, b: Tensor, eps: float = 1e-8, weight: Tensor | None = None) -> Tensor:
    """Pearson correlation of two ``[B]`` tensors (population moments, weighted by ``weight [B]`` when given); 0
    when either is constant."""
    da, db = a - reduce_per_sample(a, weight), b - reduce_per_sample(b, weight)
    cov = reduce_per_sample(da * db, weight)
    denom = (reduce_per_sample(da.pow(2), weight) * reduce_per_sample(db.pow(2), weight)).sqrt()
    return cov / (denom + eps)


def statistical_loss(prediction: Tensor, target: Tensor, correlation: bool = False,
                     weight: Tensor | None = None) -> Tensor:
    """L_SL of METHODS.md §2 over one batch: ``|mean(ŷ) − mean(y)| + |std(ŷ) − std(y)|`` (+ ``1 − corr`` when
    ``correlation``). ``prediction`` and ``target`` are ``[B]`` regression scores; returns a scalar. ``weight``
    (``[B]``, optional) weights every batch moment (``mean_w``, ``std_w``, ``corr_w``; see the module docstring).

    Raises:
        ValueError: shapes differ or are not 1-D (class logits have no such statistics).
    """
    if prediction.ndim != 1 or prediction.shape != target.shape:
        raise ValueError(f"statistical_loss expects two [B] tensors, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    y = target.to(prediction.dtype)
    loss = ((reduce_per_sample(prediction, weight) - reduce_per_sample(y, weight)).abs()
            + (batch_std(prediction, weight=weight) - batch_std(y, weight=weight)).abs())
    if correlation:
        loss = loss + (1.0 - pearson_corr(prediction, y, weight=weight))
    return loss
