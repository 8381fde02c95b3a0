"""CP: the Conflict-aware Penalty and the projection that keeps the dominant modality from interfering with SL
(Dai, Liang and Mai, arXiv 2605.28575; METHODS.md §2). A trainer hook (``conflict_penalty``); CP+SL's model names it
in ``required_hooks()``, and any model that fills ``output.features`` can switch it on from a config.

Per step, before backward (:meth:`ConflictPenalty.extra_losses`):

1. ``g_m = ‖∂L_task/∂z_m‖`` with ``create_graph=True`` (so it is differentiable), ``r_m = g_m / mean_n g_n``
   (see :mod:`accord.balance.monitor`); a conflict is detected when ``max_m r_m > κ``.
2. The penalty ``L_CP = Σ_m relu(r_m − κ)²`` (:func:`conflict_penalty`), returned UNWEIGHTED as the loss ``cp``
   (the trainer multiplies it by ``λ_cp = loss_weights.cp``, default 0.1; CP+SL's default 1.0) on conflict steps
   only (a constant 0 otherwise, so no second-order graph is built on balanced steps). Its gradient flows through
   ``g_m`` into the fusion/head parameters and the encoders (double backward).
3. The projection, decided on EVERY step by the cosine (METHODS.md §2), not only on conflict steps. The paper
   leaves open what "the gradient of the dominant modality's contribution" is; we use the task loss's parameter
   gradient that flows through the dominant modality's representation ``z_d`` (``d = argmax_m r_m``, defined on
   every step, whether or not ``max_m r_m > κ``), i.e. the vector-Jacobian product
   ``G_d = (∂z_d/∂θ)ᵀ ∂L_task/∂z_d``, and the SL gradient ``G_SL = ∂(λ_sl·L_SL)/∂θ`` (``output.losses["sl"]``
   times ``loss_weights.sl``), on the parameters both reach (the shared ones: the encoder and gain of ``d``).
   If ``cos(G_d, G_SL) < 0`` the conflicting component is removed PCGrad-style (Yu et al., NeurIPS 2020, Eq. 1):
   ``G_d ← G_d − (G_d·G_SL / ‖G_SL‖²) G_SL`` (:func:`project_conflicting`).
   After backward (:meth:`ConflictPenalty.after_backward`) the difference, times the task loss weight, is added
   to those parameters' ``.grad`` in place, so the total gradient is exactly the one with ``G_d`` projected.
   ``project_on: always`` (default) is the paper's rule; ``project_on: conflict`` (consider the projection only on
   conflict steps) is the pre-issue-17 behaviour, NOT the paper's, kept so the two can be compared.

Logged per step: ``cp/penalty`` (``Σ relu(r − κ)²``, before λ), ``cp/conflict``, ``cp/r_max``, ``cp/projected``
(0/1 on every step, so the share of projected steps is the mean of that column), and on steps where the projection
was considered ``cp/cos`` (the cosine before projection).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.balance.monitor import batch_task_loss, feature_grad_norms, flat_cosine, imbalance_ratios
from accord.balance.params import CP_LOSS_WEIGHTS, CPParams
from accord.core.hooks import StepState, TrainerHook, register_hook
from accord.core.types import Batch, ModelOutput
from accord.objectives.task import reduce_per_sample


def conflict_penalty(ratios: Tensor, kappa: float) -> Tensor:
    """``Σ_m relu(r_m − κ)²`` over a ``[K]`` tensor of imbalance ratios (differentiable; 0 when all r_m ≤ κ)."""
    return torch.relu(ratios - kappa).pow(2).sum()


def project_conflicting(g: list[Tensor], ref: list[Tensor]) -> tuple[list[Tensor], float]:
    """PCGrad projection of gradient ``g`` against ``ref`` (matching lists of tensors): when ``cos(g, ref) < 0``
    return ``g − (g·ref / ‖ref‖²) ref`` (the component of ``g`` along ``−ref`` removed, so the result is
    orthogonal to ``ref``), else ``g`` unchanged. Returns ``(projected, cosine before projection)``."""
    cos = flat_cosine(g, ref)
    if cos >= 0:
        return list(g), cos
    dot = sum(float((a * b).sum()) for a, b in zip(g, ref, strict=True))
    nn2 = sum(float(b.pow(2).sum()) for b in ref)
    return [a - (dot / nn2) * b for a, b in zip(g, ref, strict=True)], cos


@register_hook("conflict_penalty", CPParams)
class ConflictPenalty(TrainerHook):
    """CP's penalty (an extra loss ``cp``) and its projection (an in-place gradient edit)."""

    name = "conflict_penalty"
    edits_gradients = True
    default_loss_weights = CP_LOSS_WEIGHTS
    double_backward = True  # the penalty differentiates the feature-gradient norms (create_graph)

    def __init__(self, params: CPParams | None = None) -> None:
        self.p = params or CPParams()
        self.loss_name = "l1"
        self.task_weight = 1.0
        self.sl_weight = 1.0
        self._delta: list[tuple[nn.Parameter, Tensor]] = []
        self._log: dict[str, float] = {}

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        self.loss_name = state.task_loss
        self.task_weight = float(state.loss_weights.get("task", 1.0))
        self.sl_weight = float(state.loss_weights.get(self.p.sl_loss, 1.0))

    def extra_losses(self, model: nn.Module, batch: Batch, output: ModelOutput) -> dict[str, Tensor]:
        self._delta, self._log = [], {}
        zero = output.prediction.new_zeros(())
        if not output.features or not torch.is_grad_enabled():
            return {"cp": zero} if self.p.penalty else {}
        loss = batch_task_loss(output, batch, self.loss_name)
        norms, grads, active = feature_grad_norms(loss, output.features, batch, create_graph=self.p.penalty)
        ratios = imbalance_ratios(norms, active)
        r = torch.stack([ratios[m] for m in active]) if active else zero.unsqueeze(0)
        r_max = float(r.max().detach())
        conflict = r_max > self.p.kappa
        raw = conflict_penalty(r, self.p.kappa) if conflict else zero
        self._log = {"cp/penalty": float(raw.detach()), "cp/conflict": float(conflict), "cp/r_max": r_max,
                     "cp/projected": 0.0}
        sl = output.losses.get(self.p.sl_loss)
        if sl is not None:  # the SL term as the trainer reduces it (a per-sample loss: the weighted mean)
            sl = reduce_per_sample(sl, batch.extras.get("sample_weight"))
        if (self.p.projection and sl is not None and sl.requires_grad and active
                and (conflict or self.p.project_on == "always")):
            dom = max(active, key=lambda m: float(ratios[m].detach()))
            # project against the SL term as it enters the total loss (weighted by λ_sl = loss_weights.sl)
            self._prepare_projection(model, output.features[dom], grads[dom].detach(), self.sl_weight * sl)
        return {"cp": raw if conflict else zero} if self.p.penalty else {}

    def _prepare_projection(self, model: nn.Module, z_d: Tensor, gz_d: Tensor, sl: Tensor) -> None:
        """Compute ``G_d`` and ``G_SL`` on the shared parameters and store the in-place correction."""
        params = [p for p in model.parameters() if p.requires_grad]
        g_d = torch.autograd.grad(z_d, params, grad_outputs=gz_d, retain_graph=True, allow_unused=True)
        g_sl = torch.autograd.grad(sl, params, retain_graph=True, allow_unused=True)
        shared = [(p, a, b) for p, a, b in zip(params, g_d, g_sl, strict=True) if a is not None and b is not None]
        if not shared:
            return
        ga, gb = [a for _, a, _ in shared], [b for _, _, b in shared]
        projected, cos = project_conflicting(ga, gb)
        self._log["cp/cos"] = cos
        self._log["cp/projected"] = float(cos < 0)
        if cos < 0:
            self._delta = [(p, self.task_weight * (new - old).detach())
                           for (p, _, _), new, old in zip(shared, projected, ga, strict=True)]

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput,
                       state: StepState) -> dict[str, float]:
        with torch.no_grad():
            for p, d in self._delta:
                if p.grad is None:
                    p.grad = d.clone()
                else:
                    p.grad.add_(d)
        log = dict(self._log)
        state.publish(log)
        self._delta, self._log = [], {}
        return log
