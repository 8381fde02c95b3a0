"""The optimiser and learning-rate schedule of a run (``train.lr``, ``weight_decay``, ``scheduler``,
``warmup_epochs``, ``optimizer_impl``)."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

import torch
from torch import nn

from accord.config import TrainConfig
from accord.models.modules.attention import scalar_operand

Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def make_optimizer(model: nn.Module, t: TrainConfig, mode: Literal["min", "max"]
                   ) -> tuple[torch.optim.Optimizer, Scheduler | None]:
    """AdamW over the trainable parameters and the configured schedule (stepped once per epoch).

    An Accord model gives its parameter groups (:meth:`AccordModel.parameter_groups`: a pretrained text encoder's
    own learning rate and weight decay); the schedule scales every group's learning rate by the same factor.

    ``plateau`` halves the learning rate when the selection metric (``mode``: whether lower or higher is better)
    has not improved for a third of the early-stopping patience; ``cosine`` decays it to 0 over the epochs after
    a linear warm-up of ``warmup_epochs`` (warm-up alone when the scheduler is ``none``).
    """
    groups = getattr(model, "parameter_groups", None)
    params: Any = groups(t.lr, t.weight_decay) if callable(groups) else \
        [p for p in model.parameters() if p.requires_grad]
    return make_optimizer_for(params, t, mode)


class FusedAdamW(torch.optim.AdamW):
    """torch's AdamW with ``fused=True``, stepped by calling its fused kernel directly once every parameter with a
    gradient has its state: the same kernel with the same arguments, so the same parameters and state bit for bit.

    What it leaves out is per-step Python and dispatch overhead that a small model's step is made of (utterance-level
    data): ``_init_group``'s checks per parameter, the grouping by device and dtype, the profiler label and, the
    largest part, the step counters' increment, which torch does as ``_foreach_add_(steps, 1)``: on CPU a Python
    integer there costs about 4 µs per parameter (2.3 ms for MulT's 579 tensors, one thread), a one-element tensor
    about 0.7 µs. Anything the lean step does not cover goes through torch's own ``step``: a closure, gradient
    scaling (``GradScaler`` sets ``grad_scale`` / ``found_inf``), step hooks, amsgrad, maximize, capturable or
    differentiable groups, tensor hyper-parameters, parameters of several devices or dtypes, complex or sparse ones,
    and any step where a parameter has its first gradient (torch creates its state).
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, fused=True, **kwargs)
        self._packed: dict[int, tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]] = {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's, forgetting the packed step counters (the loaded state has its own step tensors)."""
        super().load_state_dict(state_dict)
        self._packed.clear()

    def _increment(self, index: int, params: list[torch.Tensor], steps: list[torch.Tensor]) -> None:
        """Add 1 to the step counters ``steps`` of group ``index``'s ``params``.

        The counters are packed: the first lean step of a group stacks them into one tensor and puts its elements
        (0-d views) into the state as each parameter's ``step``, so every later step increments them all with ONE
        op while the parameter set is the same (torch's ``_foreach_add_`` on CPU costs about 2 µs per tensor). The
        values are torch's; a changed parameter set, a state torch replaced or a loaded state packs again."""
        packed = self._packed.get(index)
        if (packed is None or len(packed[0]) != len(params) or not all(map(operator.is_, packed[0], params))
                or not all(map(operator.is_, packed[1], steps))):
            if any(s.dim() != 0 for s in steps):
                torch._foreach_add_(steps, scalar_operand(1.0, steps[0].dtype, steps[0].device))
                return
            buf = torch.stack(steps)
            views = list(buf.unbind(0))
            for p, v in zip(params, views, strict=True):
                self.state[p]["step"] = v
            steps[:] = views
            self._packed[index] = packed = (list(params), views, buf)
        packed[2].add_(scalar_operand(1.0, packed[2].dtype, packed[2].device))

    def _lean(self) -> list[tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                                  list[torch.Tensor], list[torch.Tensor]]] | None:
        """Per group: (group, params, grads, exp_avgs, exp_avg_sqs, steps) of the parameters with a gradient, or
        None when this step must be torch's own."""
        from torch.optim import optimizer as torch_optimizer

        if (getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None
                or self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks
                or not all(map(_lean_group, self.param_groups))):
            return None
        out = []
        kinds: set[tuple[torch.device, torch.dtype]] = set()
        for group in self.param_groups:
            params, grads, avgs, sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if not state or p.grad.is_sparse or p.is_complex():
                    return None
                kinds.add((p.device, p.dtype))
                params.append(p)
                grads.append(p.grad)
                avgs.append(state["exp_avg"])
                sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            out.append((group, params, grads, avgs, sqs, steps))
        return out if len(kinds) <= 1 else None

    def step(self, closure: Any = None) -> Any:
        """One AdamW step (see the class): the fused kernel called directly, or torch's ``step``."""
        lean = None if closure is not None else self._lean()
        if lean is None:
            return super().step(closure)
        with torch.no_grad():
            for index, (group, params, grads, avgs, sqs, steps) in enumerate(lean):
                if not params:
                    continue
                self._increment(index, params, steps)
                beta1, beta2 = group["betas"]
                torch._fused_adamw_(params, grads, avgs, sqs, [], steps, amsgrad=False, lr=group["lr"],
                                    beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                    maximize=False, grad_scale=None, found_inf=None)
        return None


def _lean_group(group: dict[str, Any]) -> bool:
    """Whether :class:`FusedAdamW`'s direct kernel call covers ``group``'s options: plain fused AdamW with number
    hyper-parameters."""
    return not (group["amsgrad"] or group["maximize"] or group["capturable"] or group["differentiable"]
                or not group["fused"] or not group.get("decoupled_weight_decay", True)
                or any(isinstance(group[k], torch.Tensor) for k in ("lr", "weight_decay", "eps"))
                or any(isinstance(b, torch.Tensor) for b in group["betas"]))


def make_optimizer_for(params: Any, t: TrainConfig, mode: Literal["min", "max"]
                       ) -> tuple[torch.optim.Optimizer, Scheduler | None]:
    """:func:`make_optimizer` for given parameters or parameter groups (seed-parallel training passes the stacked
    parameters, grouped as the model groups its own)."""
    fused, foreach = {"auto": (None, None), "fused": (True, None), "foreach": (None, True),
                      "loop": (None, False)}[t.optimizer_impl]
    opt = (FusedAdamW(params, lr=t.lr, weight_decay=t.weight_decay) if fused else
           torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused, foreach=foreach))
    if t.scheduler == "plateau":
        return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5,
                                                               patience=max(1, t.early_stopping.patience // 3))
    if t.scheduler == "cosine" or t.warmup_epochs:
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(t.warmup_epochs, t.epochs,
                                                                     t.scheduler == "cosine"))
    return opt, None


def lr_factor(warm: int, total: int, cosine: bool) -> Any:
    """The LambdaLR factor of epoch ``e``: ``(e + 1) / (warm + 1)`` while warming up, then 1 or the cosine decay
    ``0.5 · (1 + cos(π · progress))``."""

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        if not cosine:
            return 1.0
        progress = (epoch - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def step_scheduler(sched: Scheduler | None, score: float) -> None:
    """Advance the schedule after an epoch (plateau reads the epoch's validation score)."""
    if sched is None:
        return
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(score)
    else:
        sched.step()
