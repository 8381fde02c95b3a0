"""The trainer's hook protocol and the hook registry: how a method adds losses or edits gradients without a
training loop of its own.

A hook implements any of these methods (all optional; :class:`TrainerHook` provides no-ops). The trainer calls each
of them once per event:

* ``on_fit_start(model, state)`` once per seed, before the first step.
* ``extra_losses(model, batch, output) -> dict[str, Tensor]`` once per training step, after the forward pass:
  additional UNWEIGHTED losses built from it (e.g. a gradient penalty with ``create_graph=True``). The trainer
  weights each by ``loss_weights[name]`` and adds it to the total before backward. Every name a hook can emit is
  declared in its class's ``default_loss_weights`` (the weight it gets unless the model or the config says
  otherwise), so an unknown ``loss_weights`` key fails when the config is loaded.
* ``after_backward(model, batch, output, state) -> dict[str, float]`` once per step, after ``loss.backward()`` and
  before gradient clipping and the optimiser step; may edit ``p.grad`` in place (OGM-GE, gradient projection).
  Returned numbers are logged (per step when ``train.log_every_steps`` > 0, and as epoch means).
* ``on_epoch_end(epoch, record)`` after each epoch's validation, with the epoch's log record.
* ``artifacts() -> dict[str, dict[str, ndarray]]`` after each epoch: arrays the trainer saves as
  ``<seed dir>/<name>.npz`` (hooks never write files themselves; only the trainer does, and only on rank 0).

A hook hands the trainer log lines with :meth:`StepState.emit` (the trainer appends them to the seed's
``log.jsonl``) and shares this step's values with the other hooks through :meth:`StepState.publish`.

Hooks are switched on by name: from a config (``train.hooks: [{name: grad_monitor}]``), or by a model that needs
one, through :meth:`accord.models.base.AccordModel.required_hooks`, which returns :class:`HookRequest` values
(a name and parameters; the model never imports the hook). :data:`HOOKS` maps the names to the classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from accord.core.errors import config_error
from accord.core.registry import Registry

if TYPE_CHECKING:  # the protocol's types; importing this module (a config's hook names) imports no torch
    import numpy as np
    from torch import Tensor, nn

    from accord.core.types import Batch, ModelOutput


@dataclass
class StepState:
    """What hooks see of the trainer.

    ``seed``, ``epoch`` (0-based), ``step`` (optimiser steps done before this one), ``loss_terms`` (this step's
    weighted terms, detached, set before ``after_backward``), the task (``task_kind``: regression/classification,
    ``task_loss``: l1/mse/ce), the resolved ``loss_weights``, and ``rank``/``world_size`` under torchrun (a hook's
    ``after_backward`` then sees this rank's slice of the batch and its LOCAL gradient; the trainer averages
    gradients over ranks after the hooks).
    """

    seed: int
    epoch: int = 0
    step: int = 0
    loss_terms: dict[str, Tensor] = field(default_factory=dict)
    task_kind: str = "regression"
    task_loss: str = "l1"
    loss_weights: dict[str, float] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    shared: dict[str, float] = field(default_factory=dict)
    """This step's values published by hooks (:meth:`publish`); cleared by the trainer after every step."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """Log lines hooks emitted this step (:meth:`emit`); the trainer appends them to ``log.jsonl`` and clears it."""

    def publish(self, values: dict[str, float]) -> None:
        """Share ``values`` with the hooks that run after this one in the same step (e.g. for the monitor's line)."""
        self.shared.update(values)

    def emit(self, record: dict[str, Any]) -> None:
        """Hand the trainer one log line (a dict with a ``"type"``) for the seed's ``log.jsonl``."""
        self.records.append(record)


class TrainerHook:
    """No-op base class; subclass and override what you need."""

    name: ClassVar[str] = "hook"
    default_loss_weights: ClassVar[dict[str, float]] = {}
    """Every extra loss this hook can emit, with the weight it gets unless the model or the config names it."""
    double_backward: ClassVar[bool] = False
    """True when the hook differentiates a gradient (``create_graph``): such a run cannot use ``train.compile``
    (compiled graphs do not support double backward)."""
    edits_gradients: ClassVar[bool] = False
    """True when :meth:`after_backward` changes ``.grad`` from what this batch alone gave: such a hook cannot run
    with ``train.accumulate_batches`` > 1 (it would edit a window's running sum)."""

    def __init__(self, params: HookParams | None = None) -> None:
        """Registered hooks are built as ``cls(validated params)``."""

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

    def artifacts(self) -> dict[str, dict[str, np.ndarray]]:
        """Arrays to save after each epoch, as ``{file stem: {array name: array}}`` (none by default)."""
        return {}


class HookParams(BaseModel):
    """Base of a hook's parameters (``train.hooks[i].params``): unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class HookRequest:
    """A hook named by a model (or a config): its registered name and parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HookSpec:
    """A registered hook: its class and parameter model."""

    cls: type[TrainerHook]
    params: type[HookParams]


HOOKS: Registry[HookSpec] = Registry("trainer hook")
"""Every registered hook (importing :mod:`accord.balance` registers the built-in ones)."""

H = TypeVar("H", bound=type[TrainerHook])


def register_hook(name: str, params: type[HookParams] = HookParams) -> Callable[[H], H]:
    """Class decorator: register a hook under ``name`` so configs and models can switch it on by that name.

    The class is built with its validated params (``cls(params)``); any model can then use it without code changes
    (e.g. a gradient monitor, OGM-GE).
    """

    def deco(cls: H) -> H:
        HOOKS.register(name)(HookSpec(cls, params))
        return cls

    return deco


def hook_params(request: HookRequest, where: str) -> HookParams:
    """The validated parameters of ``request``; a bad one is a ConfigError naming ``<where>.params.<key>``."""
    return parse_hook_params(request, HOOKS.get(request.name).params, where)


def parse_hook_params(request: HookRequest, model: type[HookParams], where: str) -> HookParams:
    """``request.params`` validated by the hook's parameter model ``model``; a bad one is a ConfigError naming
    ``<where>.params.<key>``."""
    try:
        return model(**request.params)
    except ValidationError as err:
        raise config_error(err, where=f"{where}.params", owner=f"hook {request.name!r}") from None


def build_hook(request: HookRequest, where: str = "train.hooks") -> TrainerHook:
    """A fresh instance of the registered hook ``request.name`` with its validated parameters."""
    return HOOKS.get(request.name).cls(hook_params(request, where))


def hook_loss_weights(name: str) -> dict[str, float]:
    """The extra losses hook ``name`` can emit, with their default weights."""
    return dict(HOOKS.get(name).cls.default_loss_weights)
