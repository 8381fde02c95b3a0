"""The model contract and the model registry (timm style: ``@register_model`` / ``create_model``).

A model maps a :class:`~accord.core.types.Batch` to a :class:`~accord.core.types.ModelOutput`; it never runs its own
training loop. Hyper-parameters live in a nested pydantic ``Params`` class (``extra="forbid"``), so an unknown or
mistyped key in ``model.params`` is a one-line :class:`~accord.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from accord.core.errors import ConfigError, config_error
from accord.core.hooks import HookRequest
from accord.core.registry import Registry
from accord.core.types import Batch, ModelOutput


class ModelParams(BaseModel):
    """Base of every model's ``Params``: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class AccordModel(nn.Module):
    """Base class of all Accord models.

    Subclasses set ``Params`` and implement ``forward(batch) -> ModelOutput``. ``dims`` maps each modality to its
    input feature size; ``out_dim`` is 1 for regression and the number of classes for classification (the head
    then returns logits ``[B, C]`` instead of scores ``[B]``).

    ``default_loss_weights`` names EVERY auxiliary prediction and loss the model can emit, with the weight each gets
    when the config's ``loss_weights`` does not name it (the main task loss is ``task``, weight 1). It is the one
    source of these defaults: the config loader resolves ``loss_weights`` from it (so an unknown name fails at
    load) and the trainer weights each term once; models return their losses unweighted.
    """

    Params: ClassVar[type[ModelParams]] = ModelParams
    default_loss_weights: ClassVar[dict[str, float]] = {}

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.out_dim = out_dim
        self.params = params

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def required_hooks(cls, params: ModelParams) -> list[HookRequest]:
        """Trainer hooks this method needs, by registered name (:mod:`accord.core.hooks`); none by default.

        The model names a hook and its parameters; the trainer builds it from the hook registry, runs it before
        the config's ``train.hooks`` and writes whatever it produces.
        """
        return []


def squeeze_head(y: Any, out_dim: int) -> Any:
    """``[B, 1] -> [B]`` for regression heads; class logits ``[B, C]`` are returned unchanged."""
    return y.squeeze(-1) if out_dim == 1 else y


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class plus fixed parameters (e.g. ``text`` = unimodal with modality=text)."""

    cls: type[AccordModel]
    fixed: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelSpec] = Registry("model")
M = TypeVar("M", bound=type[AccordModel])


def register_model(name: str, *, fixed: dict[str, Any] | None = None) -> Callable[[M], M]:
    """Class decorator registering a model under ``name``; ``fixed`` pins some of its ``Params``.

    Stack it to register one class under several names::

        @register_model("text", fixed={"modality": "text"})
        @register_model("unimodal")
        class Unimodal(AccordModel): ...
    """

    def deco(cls: M) -> M:
        MODELS.register(name)(ModelSpec(cls, dict(fixed or {})))
        return cls

    return deco


def validate_params(name: str, params: dict[str, Any]) -> ModelParams:
    """Validate ``params`` for model ``name``; raise a ConfigError naming the offending ``model.params`` key."""
    spec = MODELS.get(name)
    clash = sorted(set(params) & set(spec.fixed))
    if clash:
        raise ConfigError(f"model.params.{clash[0]}: fixed to {spec.fixed[clash[0]]!r} by model {name!r}")
    try:
        return spec.cls.Params(**{**params, **spec.fixed})
    except ValidationError as err:
        raise config_error(err, where="model.params", owner=f"model {name!r}",
                           known=spec.cls.Params.model_fields) from None


def create_model(name: str, dims: dict[str, int], out_dim: int = 1, **params: Any) -> AccordModel:
    """Build the registered model ``name`` for input ``dims`` and ``out_dim`` outputs."""
    spec = MODELS.get(name)
    return spec.cls(dims, out_dim, validate_params(name, params))


def list_models() -> list[str]:
    """Names of every registered model."""
    return MODELS.names()
