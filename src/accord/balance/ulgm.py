"""Self-MM's ULGM step as a trainer hook (``self_mm_ulgm``), named by
:meth:`accord.models.self_mm.SelfMM.required_hooks`.

After every backward (before the optimiser step, as in Self-MM's released code) the hook calls the model's
``ulgm_step(batch, output, epoch)``, which regenerates the batch's unimodal labels and stores its representations
(Eqs. 6-12 of Yu et al., AAAI 2021; the equations live with the model). After each epoch it hands the generated
labels (``model.generated_labels()``) to the trainer, which saves them as ``seed_<s>/ulgm_labels.npz``.

The hook knows the model only by these two methods (duck typing), so this floor never imports the model.
"""

from __future__ import annotations

from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from torch import nn

from accord.core.errors import ConfigError
from accord.core.hooks import StepState, TrainerHook, register_hook
from accord.core.types import Batch, ModelOutput


@runtime_checkable
class LabelGenerating(Protocol):
    """A model with ULGM's per-step label update and its memory as arrays."""

    def ulgm_step(self, batch: Batch, output: ModelOutput, epoch: int) -> dict[str, float]: ...

    def generated_labels(self) -> dict[str, np.ndarray]: ...


@register_hook("self_mm_ulgm")
class ULGMHook(TrainerHook):
    """Calls ``model.ulgm_step`` after every backward; saves the generated labels after each epoch."""

    name = "self_mm_ulgm"

    def __init__(self, params: Any = None) -> None:
        self.model: LabelGenerating | None = None

    def on_fit_start(self, model: nn.Module, state: StepState) -> None:
        if not isinstance(model, LabelGenerating):
            raise ConfigError(f"train.hooks: self_mm_ulgm needs a model with ulgm_step (Self-MM), not "
                              f"{type(model).__name__}")
        self.model = model

    def after_backward(self, model: nn.Module, batch: Batch, output: ModelOutput, state: StepState) -> dict[str, float]:
        self.model = cast(LabelGenerating, model)  # checked once, in on_fit_start (a protocol check costs per step)
        return self.model.ulgm_step(batch, output, state.epoch + 1)

    def artifacts(self) -> dict[str, dict[str, np.ndarray]]:
        if self.model is None:
            return {}
        labels = self.model.generated_labels()
        return {"ulgm_labels": labels} if len(labels.get("id", ())) else {}
