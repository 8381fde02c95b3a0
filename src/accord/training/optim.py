"""The optimiser and learning-rate schedule of a run (``train.lr``, ``weight_decay``, ``scheduler``,
``warmup_epochs``, ``optimizer_impl``)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from accord.config import TrainConfig

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


def make_optimizer_for(params: Any, t: TrainConfig, mode: Literal["min", "max"]
                       ) -> tuple[torch.optim.Optimizer, Scheduler | None]:
    """:func:`make_optimizer` for given parameters or parameter groups (seed-parallel training passes the stacked
    parameters, grouped as the model groups its own)."""
    fused, foreach = {"auto": (None, None), "fused": (True, None), "foreach": (None, True),
                      "loop": (None, False)}[t.optimizer_impl]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused, foreach=foreach)
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
