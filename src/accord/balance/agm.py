"""AGM: Adaptive Gradient Modulation (Li, Li, Hu, Lei, Li, Zhou, "Boosting Multi-modal Model Performance with
Adaptive Gradient Modulation", ICCV 2023), adapted to regression, as a trainer hook plugin (``agm``).

Per step, after backward:

1. Mono-modal responses from zero padding (paper Sec. 3.2): the fused output with every subset of modalities
   replaced by zeros gives each modality's Shapley value; the mono-modal output is ``φ_m + f(∅)/K``
   (:func:`accord.balance.modality.shapley_responses`; for regression scaled by ``K`` to the label's range).
2. A score per modality = the task loss of its response against the label (the released code: cross-entropy of
   the mono-modal logits; regression: the task loss, L1 by default; lower is better), over the samples where the
   modality is present.
3. Ratios (released code): ``ρ_m = exp((mean_n s_n − s_m) · K/(K−1))`` for the current batch, and the same from
   running means of the scores over all previous steps of the run (``ρ̄_m``; 1 on the first step).
4. The coefficient ``c_m = exp(α · min(ρ̄_m − ρ_m, 7))``: a modality doing relatively better than it usually does
   is slowed (c < 1), one doing worse is sped up.
5. Each modality's branch gradient is multiplied by ``c_m``. The paper scales the gradient that flows through the
   mono-modal outputs (a backward hook on ``φ_m``, so the Shapley-decomposed outputs of all 2^K forward passes
   carry gradient); a hook plugin cannot change the model's forward, so we scale the gradients of the parameters
   the modality owns (:func:`accord.balance.modality.modality_parameters`). For additive late fusion
   (``f = Σ_m w_m h_m(x_m)``) both are the same up to the zero-input terms ``h_m(0)`` and the shared fusion
   weights; for other fusions it is an approximation.

The running means restart with each seed (and are not restored by ``--resume``). Modulation runs for epochs
``start_epoch <= epoch < end_epoch`` (1-based). Logged: ``agm/s_<m>``, ``agm/c_<m>``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from accord.balance.modality import modality_responses, present_rows, require_modality_parameters
from accord.balance.params import AGMParams
from accord.core.hooks import StepState, TrainerHook, register_hook
from accord.core.types import Batch, ModelOutput
from accord.objectives.task import task_loss


def agm_ratios(scores: dict[str, float]) -> dict[str, float]:
    """``ρ_m = exp((mean_n s_n − s_m) · K/(K−1))`` (AGM's released code; 1 for a single modality)."""
    k = len(scores)
    if k < 2:
        return {m: 1.0 for m in scores}
    mean = sum(scores.values()) / k
    return {m: math.exp((mean - s) * k / (k - 1)) for m, s in scores.items()}


def agm_coefficient(running_ratio: float, ratio: float, alpha: float) -> float:
    """``c = exp(α · min(ρ̄ − ρ, 7))``."""
    return math.exp(alpha * min(running_ratio - ratio, 7.0))


@register_hook("agm", AGMParams)
class AGM(TrainerHook):
    """Rescale each modality's branch gradients by AGM's adaptive coefficient."""

    name = "agm"
    edits_gradients = True

    def __init__(self, params: AGMParams | None = None) -> None:
        self.p = params or AGMParams()
        self.task_kind, self.loss_name = "regression", "l1"
        self.groups: dict[str, list[nn.Parameter]] = {}
        self.running: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        self.task_kind = state.task_kind
        self.loss_name = state.task_loss
        self.groups = require_modality_parameters(model, self.name)
        self.running, self.counts = {}, {}

    def active(self, epoch: int) -> bool:
        e = epoch + 1
        return e >= self.p.start_epoch and (self.p.end_epoch is None or e < self.p.end_epoch)

    def scores(self, model: nn.Module, batch: Batch, output: ModelOutput) -> dict[str, float]:
        """Task loss of each present modality's mono-modal response (lower is better)."""
        resp = modality_responses(model, batch, output, self.p.response, self.task_kind)
        out: dict[str, float] = {}
        for m, r in resp.items():
            rows = present_rows(batch, m)
            if bool(rows.any()):
                out[m] = float(task_loss(r[rows], batch.label[rows], self.loss_name))
        return out

    def coefficients(self, scores: dict[str, float]) -> dict[str, float]:
        """This step's ``c_m`` from the batch scores and the running means; then update the running means."""
        ratios = agm_ratios(scores)
        if all(m in self.running for m in scores):
            running_ratios = agm_ratios({m: self.running[m] for m in scores})
        else:  # first step (or a modality seen for the first time): no history yet
            running_ratios = {m: 1.0 for m in scores}
        coeffs = {m: agm_coefficient(running_ratios[m], ratios[m], self.p.alpha) for m in scores}
        for m, s in scores.items():
            self.counts[m] = self.counts.get(m, 0) + 1
            prev = self.running.get(m, s)
            self.running[m] = prev + (s - prev) / self.counts[m]
        return coeffs

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput,
                       state: StepState) -> dict[str, float]:
        scores = self.scores(model, batch, output)
        coeffs = self.coefficients(scores)  # running means advance on every step, as in the released code
        if not self.active(state.epoch):
            return {}
        with torch.no_grad():
            for m, params in self.groups.items():
                c = coeffs.get(m, 1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(c)
        log = {**{f"agm/s_{m}": v for m, v in scores.items()}, **{f"agm/c_{m}": v for m, v in coeffs.items()}}
        state.publish(log)
        return log
