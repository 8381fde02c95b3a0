"""The model contract and the model registry (timm style: ``@register_model`` / ``create_model``).

A model maps a :class:`~accord.core.types.Batch` to a :class:`~accord.core.types.ModelOutput`; it never runs its own
training loop. Hyper-parameters live in a nested pydantic ``Params`` class (``extra="forbid"``), so an unknown or
mistyped key in ``model.params`` is a one-line :class:`~accord.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from torch import nn

from accord.core.registry import Registry
from accord.core.types import Batch, ModelOutput
from accord.models.params import (  # noqa: F401  (ModelParams and validate_params are part of this module's API)
    BUILTIN_MODELS,
    ModelDeclaration,
    ModelParams,
    validate_params,
)


class AccordModel(ModelDeclaration, nn.Module):
    """Base class of all Accord models.

    Subclasses set ``Params`` and implement ``forward(batch) -> ModelOutput``. ``dims`` maps each modality to its
    input feature size; ``out_dim`` is 1 for regression and the number of classes for classification (the head
    then returns logits ``[B, C]`` instead of scores ``[B]``).

    What a config resolves of a model (``Params``, ``default_loss_weights``, ``text_pooling``, ``required_hooks``)
    is its :class:`~accord.models.params.ModelDeclaration`, which this class inherits: a model sets them in its
    class, or (the built-in methods) inherits them from its torch-free declaration in
    ``accord/models/params/<method>.py``.
    """

    text_input_form: ClassVar[Literal["sequence", "pooled"]] = "sequence"
    """What the model reads as text when its text branch is a pretrained transformer: its token states
    (``sequence``: models that attend over time, MulT, CACR, ...) or its sentence vector (``pooled``: utterance
    models, whose paper feeds one vector per utterance)."""
    not_vectorisable: ClassVar[str | None] = None
    """Why the seeds of this model cannot train as one vmapped model (``train.seed_parallel``), or None when they
    can: a forward that keeps Python-side state across steps (Self-MM's label memory), or whose shapes depend on
    tensor values (boolean indexing; weight rows by 0/1 instead, as MISA's losses do)."""

    eager_methods: ClassVar[tuple[str, ...]] = ()
    """Methods that run eagerly while ``torch.compile`` traces the model (a deliberate graph break, e.g. one that reads
    Python-side state a graph would guard on): :func:`~accord.training.trainer.compile_model` wraps them with
    ``torch.compiler.disable`` on the instance it compiles; uncompiled, they are plain methods (importing the compiler
    stack, which ``torch.compiler.disable`` does, costs about a second)."""

    def __init__(self, dims: dict[str, int], out_dim: int, params: ModelParams) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.out_dim = out_dim
        self.params = params

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def parameter_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups of the trainable parameters: one per submodule that has its own optimiser
        settings (a pretrained text encoder's ``lr`` / ``weight_decay``, MMSA's ``learning_rate_bert``; found by
        its ``optimizer_settings()`` method), then ``main`` with everything else at ``lr`` / ``weight_decay``.
        Groups are named (``name``) and empty ones are left out; with no such submodule this is one group of
        ``model.parameters()`` in order."""
        groups: list[dict[str, Any]] = []
        taken: set[int] = set()
        for name, module in self.named_modules():
            settings = getattr(module, "optimizer_settings", None)
            if not callable(settings) or module is self:
                continue
            own = [q for q in module.parameters() if q.requires_grad and id(q) not in taken]
            taken.update(id(q) for q in own)
            if own:
                groups.append({"name": name, "params": own, "lr": lr, "weight_decay": weight_decay, **settings()})
        rest = [q for q in self.parameters() if q.requires_grad and id(q) not in taken]
        if rest:
            groups.insert(0, {"name": "main", "params": rest, "lr": lr, "weight_decay": weight_decay})
        return groups


def squeeze_head(y: Any, out_dim: int) -> Any:
    """``[B, 1] -> [B]`` for regression heads; class logits ``[B, C]`` are returned unchanged."""
    return y.squeeze(-1) if out_dim == 1 else y


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class plus fixed parameters (e.g. ``text`` = unimodal with modality=text)."""

    cls: type[AccordModel]
    fixed: dict[str, Any] = field(default_factory=dict)


def _register_builtins() -> None:
    """Import the built-in models' modules (each registers its model names)."""
    for module in dict.fromkeys(b.where.partition(":")[0] for b in BUILTIN_MODELS.values()):
        importlib.import_module(module)


MODELS: Registry[ModelSpec] = Registry("model", builtins=_register_builtins)
"""Every registered model; the built-in ones (:data:`accord.models.params.BUILTIN_MODELS`) are imported on the
first look-up."""
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


def model_class(name: str) -> type[AccordModel]:
    """The class registered as model ``name`` (an unknown name is a one-line ConfigError)."""
    return MODELS.get(name).cls


def create_model(name: str, dims: dict[str, int], out_dim: int = 1, **params: Any) -> AccordModel:
    """Build the registered model ``name`` for input ``dims`` and ``out_dim`` outputs.

    With ``text_encoder.source: pretrained`` the model gets a pretrained transformer as ``model.text_input``
    (:class:`~accord.models.modules.text_encoder.PretrainedTextEncoder`) and a forward pre-hook that, before every
    forward, replaces the batch's text features by the transformer's output on ``batch.text_tokens``: its token
    states or its sentence vector (the model's :attr:`AccordModel.text_input_form`), zero where text is absent. The
    model itself is unchanged: it is built for text features of the transformer's width, and the gradient flows
    through its text branch into the transformer (fine-tuning end to end).
    """
    spec = MODELS.get(name)
    p = validate_params(name, params)
    if not p.text_encoder.pretrained:
        return spec.cls(dims, out_dim, p)
    from accord.models.modules.text_encoder import PretrainedTextEncoder

    encoder = PretrainedTextEncoder(p.text_encoder)
    model = spec.cls({**dims, "text": encoder.dim}, out_dim, p)
    model.text_input = encoder
    model.register_forward_pre_hook(_pretrained_text)
    return model


def _pretrained_text(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of a model with a pretrained text branch: the batch with the transformer's text."""
    from accord.models.modules.text_encoder import text_tokens

    batch = args[0]
    encoder: nn.Module = getattr(model, "text_input")  # noqa: B009 (a submodule set by create_model)
    out = encoder(text_tokens(batch.text_tokens, type(model).__name__))
    present = batch.present[:, 0]
    if getattr(model, "text_input_form", "sequence") == "pooled":
        feats, mask = out.pooled.unsqueeze(1), present.unsqueeze(1)
    else:
        feats, mask = out.seq, out.mask & present.unsqueeze(1)
    feats = feats * mask.unsqueeze(-1).to(feats.dtype)
    text = dataclasses.replace(batch, features={**batch.features, "text": feats},
                               mask={**batch.mask, "text": mask})
    return (text, *args[1:])


def list_models() -> list[str]:
    """Names of every registered model."""
    return MODELS.names()
