"""OGM-GE: On-the-fly Gradient Modulation with Generalization Enhancement (Peng, Wei, Deng, Wang, Hu,
"Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022), adapted to regression and to three
modalities, as a trainer hook plugin (``ogm_ge``) any fusion model can switch on.

Per step, after backward:

1. A score per modality from its mono-modal response ``ŷ_m`` (:func:`accord.balance.modality.modality_responses`:
   the model's unimodal heads, or AGM's zero-padding Shapley responses). The paper scores a classifier by the
   summed softmax probability of the true class; for regression we use ``s_m = mean_i exp(−|ŷ_m,i − y_i|)``, the
   same "probability-like agreement with the label" in (0, 1] (for classification: the paper's mean softmax
   probability of the true class).
2. The discrepancy ratio (paper Eq. 9) ``ρ_m = s_m / mean_{n≠m} s_n`` (with two modalities exactly ``s_a/s_v``).
3. The coefficient (paper Eq. 10, as in the released code): ``k_m = 1 − tanh(α · ρ_m)`` if ``ρ_m > 1`` (the
   dominant modality), ``k_m = 1`` otherwise. It jumps from 1 to ``1 − tanh(α)`` as ρ crosses 1 (at α = 0.3: to
   0.709). ``coefficient: continuous`` selects ``1 − tanh(α · relu(ρ_m − 1))`` instead (not the paper's; the
   form Accord used before issue 17, kept so its results can be compared). With three modalities every modality
   whose score beats the mean of the others is slowed (with two, only the dominant one can be).
4. The gradients of each modality's encoder parameters (:func:`accord.balance.modality.modality_parameters`) are
   scaled: ``g ← k_m · g`` (paper Eq. 11), plus the Generalization Enhancement ``+ N(0, std(g)²)`` (paper
   Sec. 3.3; the released code adds this noise to every modality's encoder, with the std of each gradient
   tensor). The released code modulates conv weights only; we modulate every parameter the modality owns.
   Noise is drawn from a generator seeded by (seed, step), so a run is reproducible and the global random stream
   (dropout, shuffling) is untouched.

Modulation runs for epochs ``start_epoch <= epoch < end_epoch`` (1-based like the logs; paper: ``modulation_starts``
/ ``modulation_ends``). Logged: ``ogm/s_<m>``, ``ogm/k_<m>``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.balance.modality import modality_responses, present_rows, require_modality_parameters
from accord.balance.params import Coefficient, OGMGEParams
from accord.core.hooks import StepState, TrainerHook, register_hook
from accord.core.types import Batch, ModelOutput


def regression_score(response: Tensor, label: Tensor) -> float:
    """``mean_i exp(−|ŷ_i − y_i|)``: OGM-GE's per-modality score adapted to regression (1 = perfect)."""
    return float(torch.exp(-(response.float() - label.float()).abs()).mean())


def classification_score(logits: Tensor, label: Tensor) -> float:
    """Mean softmax probability of the true class (OGM-GE's score, averaged instead of summed)."""
    probs = logits.float().softmax(dim=-1)
    return float(probs.gather(1, label.long().view(-1, 1)).mean())


def discrepancy_ratios(scores: dict[str, float]) -> dict[str, float]:
    """``ρ_m = s_m / mean_{n≠m} s_n`` (OGM-GE Eq. 9 generalised to K modalities; 1 for a single modality)."""
    out = {}
    for m, s in scores.items():
        others = [v for n, v in scores.items() if n != m]
        mean = sum(others) / len(others) if others else s
        out[m] = s / mean if mean > 0 else 1.0
    return out




def ogm_coefficient(ratio: float, alpha: float, form: Coefficient = "paper") -> float:
    """OGM-GE Eq. 10: ``k = 1 − tanh(α · ρ)`` for the dominant modality (``ρ > 1``), else ``k = 1``.

    ``form="continuous"``: ``k = 1 − tanh(α · relu(ρ − 1))`` (no jump at ρ = 1; not the paper's)."""
    if form == "continuous":
        return 1.0 - math.tanh(alpha * max(ratio - 1.0, 0.0))
    return 1.0 - math.tanh(alpha * ratio) if ratio > 1.0 else 1.0


@register_hook("ogm_ge", OGMGEParams)
class OGMGE(TrainerHook):
    """Slow down the leading modality's encoder by ``k_m``, add gradient noise (GE)."""

    name = "ogm_ge"
    edits_gradients = True

    def __init__(self, params: OGMGEParams | None = None) -> None:
        self.p = params or OGMGEParams()
        self.task_kind = "regression"
        self.groups: dict[str, list[nn.Parameter]] = {}

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        self.task_kind = state.task_kind
        self.groups = require_modality_parameters(model, self.name)

    def active(self, epoch: int) -> bool:
        """Whether 0-based ``epoch`` is modulated."""
        e = epoch + 1
        return e >= self.p.start_epoch and (self.p.end_epoch is None or e < self.p.end_epoch)

    def coefficients(self, model: nn.Module, batch: Batch, output: ModelOutput) -> tuple[dict[str, float],
                                                                                       dict[str, float]]:
        """``(scores s_m, coefficients k_m)`` of this batch over the modalities present in it."""
        resp = modality_responses(model, batch, output, self.p.response, self.task_kind)
        scores: dict[str, float] = {}
        for m, r in resp.items():
            rows = present_rows(batch, m)
            if not bool(rows.any()):
                continue
            y = batch.label[rows]
            scores[m] = (classification_score(r[rows], y) if self.task_kind == "classification"
                         else regression_score(r[rows], y))
        ratios = discrepancy_ratios(scores)
        return scores, {m: ogm_coefficient(ratios[m], self.p.alpha, self.p.coefficient) for m in scores}

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput,
                       state: StepState) -> dict[str, float]:
        if not self.active(state.epoch):
            return {}
        scores, coeffs = self.coefficients(model, batch, output)
        gen = torch.Generator().manual_seed(state.seed * 1_000_003 + state.step)
        with torch.no_grad():
            for m, params in self.groups.items():
                k = coeffs.get(m, 1.0)
                for p in params:
                    if p.grad is None:
                        continue
                    g = p.grad
                    std = float(g.std()) if g.numel() > 1 else 0.0
                    g.mul_(k)
                    if self.p.gaussian and std > 0:
                        noise = torch.randn(g.shape, generator=gen, dtype=g.dtype) * std
                        g.add_(noise.to(g.device))
        log = {**{f"ogm/s_{m}": v for m, v in scores.items()}, **{f"ogm/k_{m}": v for m, v in coeffs.items()}}
        state.publish(log)
        return log
