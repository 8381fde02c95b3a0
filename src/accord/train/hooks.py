"""The trainer's hook interface: how a method adds losses or edits gradients without its own training loop.

A hook may implement any of these methods (all optional; :class:`TrainerHook` provides no-ops):

* ``on_fit_start(model, state)`` once per seed, before the first step.
* ``extra_losses(model, batch, output) -> dict[str, Tensor]``: additional unweighted losses, built from the
  forward pass (e.g. a gradient penalty with ``create_graph=True``). They are weighted by ``loss_weights[name]``
  (default 1) and added to the total before backward.
* ``after_backward(model, batch, output, state) -> dict[str, float]``: called after ``loss.backward()`` and
  before gradient clipping and the optimiser step; may edit ``p.grad`` in place (OGM-GE, gradient projection).
  Returned numbers are logged (per step when ``train.log_every_steps`` > 0, and as epoch means).
* ``on_epoch_end(epoch, record)``: after each epoch's validation, with the epoch's log record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from accord.types import Batch, ModelOutput


@dataclass
class StepState:
    """What hooks see of the trainer: the seed, epoch, global step and the latest weighted loss terms."""

    seed: int
    epoch: int = 0
    step: int = 0
    loss_terms: dict[str, Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class TrainerHook:
    """No-op base class; subclass and override what you need."""

    name: str = "hook"

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        """Called once per seed before training starts."""

    def extra_losses(self, model: nn.Module, batch: Batch, output: ModelOutput) -> dict[str, Tensor]:
        """Additional named losses for this step (unweighted)."""
        return {}

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput, state: StepState) -> dict[str, float]:
        """Edit gradients in place after backward; return values to log."""
        return {}

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """Called after each epoch's validation with its log record."""
