"""What a config needs to know of a model, without torch: its ``Params`` (pydantic), ``default_loss_weights``,
``text_pooling`` and ``required_hooks`` (:class:`ModelDeclaration`), and the built-in methods by name
(:data:`BUILTIN_MODELS`), so that ``accord config show`` and every config validation import pydantic and these
modules only.

A model class inherits its declaration: :class:`~accord.models.base.AccordModel` is a :class:`ModelDeclaration`,
so a method written in one file (``class Params`` and ``default_loss_weights`` in its model class,
docs/add_a_method.md) works unchanged (validating its config imports its module, hence torch). A built-in method
keeps its declaration in ``accord/models/params/<method>.py`` (``class TFNDeclaration(ModelDeclaration)``), which
its model class inherits first (``class TFN(TFNDeclaration, AccordModel)``), and names it in
:data:`BUILTIN_MODELS`; ``tests/test_startup.py`` checks that this table names exactly the registered built-in
models, each with the declaration its class inherits and the parameters it fixes.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accord.core.errors import ConfigError, config_error
from accord.core.hooks import HookRequest
from accord.models.text_params import TextEncoderParams


class ModelParams(BaseModel):
    """Base of every model's ``Params``: unknown keys are rejected. Every model has ``text_encoder`` (where its
    text branch comes from: the dataset's text features, or a pretrained transformer on the transcript's tokens,
    see :func:`accord.models.base.create_model`)."""

    model_config = ConfigDict(extra="forbid")

    text_encoder: TextEncoderParams = Field(default_factory=TextEncoderParams,
                                            description="text: precomputed features or a pretrained transformer")


class ModelDeclaration:
    """A model's defaults and needs as a config resolves them (no torch): ``Params``, ``default_loss_weights``,
    ``text_pooling`` and ``required_hooks``. :class:`~accord.models.base.AccordModel` inherits it.

    ``default_loss_weights`` names EVERY auxiliary prediction and loss the model can emit, with the weight each gets
    when the config's ``loss_weights`` does not name it (the main task loss is ``task``, weight 1). It is the one
    source of these defaults: the config loader resolves ``loss_weights`` from it (so an unknown name fails at
    load) and the trainer weights each term once; models return their losses unweighted, each a scalar (batch
    level) or per sample ``[B]`` (reduced by the trainer with the sample weights; see ``ModelOutput.losses``).
    """

    Params: ClassVar[type[ModelParams]] = ModelParams
    default_loss_weights: ClassVar[dict[str, float]] = {}
    text_pooling: ClassVar[Literal["cls", "mean"]] = "mean"
    """``text_encoder.pooling`` when the config does not set it: how the model's paper pools its transformer."""

    @classmethod
    def required_hooks(cls, params: ModelParams) -> list[HookRequest]:
        """Trainer hooks this method needs, by registered name (:mod:`accord.core.hooks`); none by default.

        The model names a hook and its parameters; the trainer builds it from the hook registry, runs it before
        the config's ``train.hooks`` and writes whatever it produces.
        """
        return []


class BuiltinModel(NamedTuple):
    """A built-in model name: its class (``module:qualname``, imported only to build the model), its declaration
    (``module:qualname``, torch-free) and the parameters the name fixes (``text`` = unimodal on text)."""

    where: str
    declaration: str
    fixed: dict[str, Any] = {}


def _builtin(module: str, cls: str, **fixed: Any) -> BuiltinModel:
    return BuiltinModel(f"accord.models.{module}:{cls}", f"accord.models.params.{module}:{cls}Declaration", fixed)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "audio": _builtin("unimodal", "Unimodal", modality="audio"),
    "cacr": _builtin("cacr", "CACR"),
    "cpsl": _builtin("cpsl", "CPSL"),
    "early_fusion": _builtin("early_fusion", "EarlyFusion"),
    "ebmc": _builtin("ebmc", "EBMC"),
    "late_fusion": _builtin("late_fusion", "LateFusion"),
    "lmf": _builtin("lmf", "LMF"),
    "misa": _builtin("misa", "MISA"),
    "mult": _builtin("mult", "MulT"),
    "self_mm": _builtin("self_mm", "SelfMM"),
    "text": _builtin("unimodal", "Unimodal", modality="text"),
    "tfn": _builtin("tfn", "TFN"),
    "unimodal": _builtin("unimodal", "Unimodal"),
    "visual": _builtin("unimodal", "Unimodal", modality="visual"),
}
"""Every built-in model name (aliases with fixed parameters included); the model registry imports the modules of
``where`` on its first look-up (:data:`accord.models.base.MODELS`)."""


class Declared(NamedTuple):
    """What :func:`declared` returns: the declaration of a model name, the parameters the name fixes and the dotted
    name of its model class (where ``config show`` says its defaults live)."""

    declaration: type[ModelDeclaration]
    fixed: dict[str, Any]
    owner: str


def _load(where: str) -> Any:
    module, _, qualname = where.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def declared(name: str) -> Declared:
    """The declaration of model ``name``: a built-in's from its torch-free module, any other's from the registry
    (its model class, whose module is imported). An unknown name is a one-line ConfigError listing the known."""
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None:
        return Declared(_load(builtin.declaration), dict(builtin.fixed), builtin.where.replace(":", "."))
    from accord.models.base import MODELS

    spec = MODELS.get(name)
    return Declared(spec.cls, dict(spec.fixed), f"{spec.cls.__module__}.{spec.cls.__qualname__}")


def validate_params(name: str, params: dict[str, Any]) -> ModelParams:
    """Validate ``params`` for model ``name``; raise a ConfigError naming the offending ``model.params`` key."""
    decl, fixed, _ = declared(name)
    clash = sorted(set(params) & set(fixed))
    if clash:
        raise ConfigError(f"model.params.{clash[0]}: fixed to {fixed[clash[0]]!r} by model {name!r}")
    te = params.get("text_encoder")
    if isinstance(te, dict) and "pooling" not in te:  # the method's own default (ModelDeclaration.text_pooling)
        params = {**params, "text_encoder": {**te, "pooling": decl.text_pooling}}
    try:
        return decl.Params(**{**params, **fixed})
    except ValidationError as err:
        raise config_error(err, where="model.params", owner=f"model {name!r}",
                           known=decl.Params.model_fields) from None
