"""The Statistical Loss (SL) of CP+SL (Dai, Liang and Mai, "A Conflict-Aware Penalty and Statistical Loss
Framework ...", arXiv 2605.28575; spec in METHODS.md §2): align the batch statistics of the predictions with the
labels' so a regressor cannot collapse towards the label mean (the regression-to-the-mean that hurts Acc7).

    L_SL = |mean(ŷ) − mean(y)| + |std(ŷ) − std(y)|  [+ (1 − corr(ŷ, y))]

Pure function, no model imports. The paper leaves the standard deviation's estimator open; we use the population
one (divide by B), computed as ``sqrt(var + eps) − sqrt(eps)`` so it is 0 for a constant batch and its gradient
stays finite there. Pearson correlation uses the same population moments; a batch with a constant prediction or
label has correlation 0 (so the optional term is 1, with zero gradient).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["batch_std", "pearson_corr", "statistical_loss", "std_ratio"]


def batch_std(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Population standard deviation of a ``[B]`` tensor, ``sqrt(var + eps) − sqrt(eps)`` (0 for a constant batch)."""
    var = (x - x.mean()).pow(2).mean()
    return (var + eps).sqrt() - eps**0.5


def pearson_corr(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of two ``[B]`` tensors (population moments); 0 when either is constant."""
    da, db = a - a.mean(), b - b.mean()
    cov = (da * db).mean()
    denom = (da.pow(2).mean() * db.pow(2).mean()).sqrt()
    return cov / (denom + eps)


def statistical_loss(prediction: Tensor, target: Tensor, correlation: bool = False) -> Tensor:
    """L_SL of METHODS.md §2 over one batch: ``|mean(ŷ) − mean(y)| + |std(ŷ) − std(y)|`` (+ ``1 − corr`` when
    ``correlation``). ``prediction`` and ``target`` are ``[B]`` regression scores; returns a scalar.

    Raises:
        ValueError: shapes differ or are not 1-D (class logits have no such statistics).
    """
    if prediction.ndim != 1 or prediction.shape != target.shape:
        raise ValueError(f"statistical_loss expects two [B] tensors, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    y = target.to(prediction.dtype)
    loss = (prediction.mean() - y.mean()).abs() + (batch_std(prediction) - batch_std(y)).abs()
    if correlation:
        loss = loss + (1.0 - pearson_corr(prediction, y))
    return loss


def std_ratio(prediction: Tensor, target: Tensor) -> Tensor:
    """``std(ŷ) / std(y)`` (population): 1 means the predictions spread like the labels, < 1 a collapse to the mean."""
    return prediction.float().std(unbiased=False) / target.float().std(unbiased=False).clamp_min(1e-12)

