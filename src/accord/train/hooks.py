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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from accord.errors import ConfigError
from accord.registry import Registry
from accord.types import Batch, ModelOutput


@dataclass
class StepState:
    """What hooks see of the trainer: the seed, epoch, global step and the latest weighted loss terms.

    ``extra`` holds ``task_kind``, ``task_loss`` (l1/mse/ce), ``loss_weights`` and ``run_dir`` (the seed folder),
    so a hook can rebuild the task loss (``accord.objectives.task_loss``) or write its own files; and ``rank`` and
    ``world_size`` (torchrun). Only rank 0 writes files: on the other ranks ``run_dir`` is None. Under torchrun a
    hook's ``after_backward`` sees this rank's slice of the batch and its LOCAL gradient; the trainer averages
    gradients over ranks after the hooks (accord.train.distributed).
    """

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


class HookParams(BaseModel):
    """Base of a hook plugin's parameters (``train.hooks[i].params``): unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class HookSpec:
    """A registered hook plugin: its factory and parameter model."""

    factory: Callable[[Any], TrainerHook]
    params: type[HookParams]


HOOKS: Registry[HookSpec] = Registry("trainer hook")


def register_hook(name: str, params: type[HookParams] = HookParams) -> Callable[[Any], Any]:
    """Register a hook plugin so configs can switch it on: ``train.hooks: [{name: NAME, params: {...}}]``.

    Decorates a class (or function) taking the validated params and returning a :class:`TrainerHook`; any fusion
    model can then use it without code changes (e.g. a gradient monitor, OGM-GE).
    """

    def deco(factory: Any) -> Any:
        HOOKS.register(name)(HookSpec(factory, params))
        return factory

    return deco


def build_hook(name: str, params: dict[str, Any] | None = None, index: int = 0) -> TrainerHook:
    """Instantiate the registered hook ``name``; a bad parameter is a ConfigError naming its key."""
    spec = HOOKS.get(name)
    try:
        p = spec.params(**(params or {}))
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            raise ConfigError(f"train.hooks.{index}.params.{key}: unknown key for hook {name!r}") from None
        raise ConfigError(f"train.hooks.{index}.params.{key}: {e['msg']} (got {e.get('input')!r})") from None
    return spec.factory(p)
