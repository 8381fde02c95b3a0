"""The gradient-imbalance monitor: a trainer hook plugin (``grad_monitor``) that works with any model filling
``ModelOutput.features``.

Each step, before the backward pass, it measures (METHODS.md §2, "gradient-norm conflict")

* ``g_m = ‖∂L_task/∂z_m‖``: the norm of the task loss's gradient with respect to modality ``m``'s representation
  at the fusion input ``z_m = output.features[m]`` (any shape ``[B, ...]``; the gradient w.r.t. activations,
  not parameters, so it is cheap). Rows of samples where ``m`` is missing (``batch.present`` False) are left out,
  and a modality missing from the whole batch (or not in the graph) gets ``g_m = 0`` and no ratio;
* ``r_m = g_m / mean_n g_n`` over the modalities present in the batch (the imbalance ratio; 1 = balanced);
* the conflict flag ``max_m r_m > κ``;
* optionally, the cosines between the task loss's parameter gradient and each other objective the model emits
  (unimodal heads ``aux_predictions``, model losses such as CP+SL's ``sl``), over the parameters both reach.

The task loss is the trainer's (``task.loss``, per-sample weights included), unweighted. Gradients are taken with
``torch.autograd.grad(..., retain_graph=True)`` and never ``create_graph``, so the monitor neither changes the
parameters' ``.grad`` nor draws random numbers: training with and without it gives the same result (tested).

**Logging.** Every ``every`` steps the monitor emits its own line ``{"type": "grad", "epoch", "step", "g/<m>",
"r/<m>", "r_max", "dominant", "conflict", "cos/<objective>", "loss/<term>"...}`` to the seed's ``log.jsonl`` (so
``train.log_every_steps`` need not be set), including the per-step values that other balancing hooks of this
package published with ``state.publish`` (CP's penalty and projection cosine, OGM-GE/AGM coefficients) when those
hooks run before it (a model's own hooks always do). The monitor hands the line to the trainer (``state.emit``),
which writes it. The same numbers are returned to the
trainer, which averages them per epoch into the epoch lines. ``accord plot gradients RUN_DIR`` draws them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from accord.balance.params import GradMonitorParams
from accord.core.hooks import StepState, TrainerHook, register_hook
from accord.core.types import MODALITIES, Batch, ModelOutput
from accord.objectives.task import reduce_losses, task_loss


def batch_task_loss(output: ModelOutput, batch: Batch, loss_name: str) -> Tensor:
    """The trainer's unweighted task loss of ``output.prediction`` (per-sample weights included)."""
    return task_loss(output.prediction, batch.label, loss_name, batch.extras.get("sample_weight"))


def _row_mask(batch: Batch, modality: str, like: Tensor) -> Tensor:
    """``[B, 1, ...]`` float mask of the samples where ``modality`` is present (all ones for unknown names)."""
    if modality in MODALITIES and batch.present.ndim == 2:
        rows = batch.present[:, MODALITIES.index(modality)]
    else:
        rows = torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
    return rows.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def feature_grad_norms(loss: Tensor, features: dict[str, Tensor], batch: Batch,
                       create_graph: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """``(g, grads, active)``: ``g_m = ‖∂loss/∂z_m‖`` over the samples where ``m`` is present, the raw gradients
    ``∂loss/∂z_m`` (all rows), and the modalities that count (in the graph and present in at least one sample).

    With ``create_graph`` the norms are differentiable (CP's penalty); they are computed as
    ``sqrt(Σ grad² + 1e-24)`` so their gradient is finite where a gradient is exactly zero.
    """
    names = [m for m, z in features.items() if z.requires_grad]
    grads_t = torch.autograd.grad(loss, [features[m] for m in names], retain_graph=True, create_graph=create_graph,
                                  allow_unused=True) if names else ()
    norms: dict[str, Tensor] = {m: loss.new_zeros(()) for m in features}
    grads: dict[str, Tensor] = {}
    active: list[str] = []
    for m, g in zip(names, grads_t, strict=True):
        if g is None:
            continue
        mask = _row_mask(batch, m, g)
        if float(mask.sum()) == 0:
            continue
        grads[m] = g
        norms[m] = ((g * mask).pow(2).sum() + 1e-24).sqrt()
        active.append(m)
    return norms, grads, active


def imbalance_ratios(norms: dict[str, Tensor], active: list[str]) -> dict[str, Tensor]:
    """``r_m = g_m / mean_{n active} g_n`` for active modalities, 0 for the others (never NaN: an all-zero
    gradient gives ratios 0). Differentiable when the norms are."""
    if not active:
        return {m: v.new_zeros(()) for m, v in norms.items()}
    mean = torch.stack([norms[m] for m in active]).mean()
    return {m: (norms[m] / mean.clamp_min(1e-30) if m in active else norms[m].new_zeros(())) for m in norms}


def flat_cosine(a: list[Tensor], b: list[Tensor]) -> float:
    """Cosine between two gradients given as matching lists of tensors (0 when either is zero)."""
    dot = sum(float((x * y).sum()) for x, y in zip(a, b, strict=True))
    na = sum(float(x.pow(2).sum()) for x in a) ** 0.5
    nb = sum(float(y.pow(2).sum()) for y in b) ** 0.5
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def objective_cosines(model: nn.Module, batch: Batch, output: ModelOutput, task: Tensor,
                      loss_name: str) -> dict[str, float]:
    """``cos(∇_θ L_task, ∇_θ L_o)`` for every other objective ``o`` the model emits (unimodal heads, model
    losses), over the parameters both gradients reach; keys ``cos/<o>``."""
    objectives: dict[str, Tensor] = {}
    sw = batch.extras.get("sample_weight")
    for name, aux in output.aux_predictions.items():
        aw = output.aux_weights.get(name)
        w = aw if sw is None else (sw if aw is None else sw * aw)
        objectives[name] = task_loss(aux, batch.label, loss_name, w)
    # a per-sample model loss [B] as the trainer reduces it (weighted mean), a batch-level one as it is
    objectives.update({k: v for k, v in reduce_losses(output.losses, sw).items() if v.requires_grad})
    if not objectives:
        return {}
    params = [p for p in model.parameters() if p.requires_grad]
    g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
    out: dict[str, float] = {}
    for name, loss in objectives.items():
        if not loss.requires_grad:
            continue
        g_o = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        pairs = [(a, b) for a, b in zip(g_task, g_o, strict=True) if a is not None and b is not None]
        if pairs:
            out[f"cos/{name}"] = flat_cosine([a for a, _ in pairs], [b for _, b in pairs])
    return out


@register_hook("grad_monitor", GradMonitorParams)
class GradMonitor(TrainerHook):
    """Per-step gradient norms ``g_m``, imbalance ratios ``r_m``, conflict flag and objective cosines."""

    name = "grad_monitor"

    def __init__(self, params: GradMonitorParams | None = None) -> None:
        self.p = params or GradMonitorParams()
        self.kappa = self.p.kappa or 1.5
        self.loss_name = "l1"
        self._values: dict[str, Any] = {}

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        self.loss_name = state.task_loss
        if self.p.kappa is None:
            self.kappa = float(getattr(getattr(model, "params", None), "kappa", 1.5))

    def measure(self, model: nn.Module, batch: Batch, output: ModelOutput) -> dict[str, Any]:
        """This step's values (see the module docstring); ``{}`` when the model fills no ``features``."""
        if not output.features or not torch.is_grad_enabled():
            return {}
        loss = batch_task_loss(output, batch, self.loss_name)
        norms, _, active = feature_grad_norms(loss, output.features, batch)
        ratios = imbalance_ratios(norms, active)
        vals: dict[str, Any] = {f"g/{m}": float(v) for m, v in norms.items()}
        vals.update({f"r/{m}": float(v) for m, v in ratios.items()})
        r_max = max((float(ratios[m]) for m in active), default=0.0)
        vals["r_max"] = r_max
        vals["conflict"] = float(r_max > self.kappa)
        if active:
            vals["dominant"] = max(active, key=lambda m: float(ratios[m]))
        if self.p.cosines:
            vals.update(objective_cosines(model, batch, output, loss, self.loss_name))
        return vals

    def extra_losses(self, model: nn.Module, batch: Batch, output: ModelOutput) -> dict[str, Tensor]:
        """Measure before backward (the gradients of the forward graph); adds no loss."""
        self._values = self.measure(model, batch, output)
        return {}

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput,
                       state: StepState) -> dict[str, float]:
        values, self._values = self._values, {}
        step = state.step + 1  # the trainer counts this step after the optimiser step
        if self.p.write_steps and values and step % self.p.every == 0:
            rec: dict[str, Any] = {"type": "grad", "epoch": state.epoch + 1, "step": step, **values, **state.shared}
            rec.update({f"loss/{k}": float(v) for k, v in state.loss_terms.items()})
            state.emit(rec)
        return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
