"""The parameters of every built-in trainer hook (pydantic only, no torch) and :data:`BUILTIN_HOOKS`, the built-in
hooks by name with their parameter models and loss terms: what a config is validated against without importing the
hooks (they import torch). Each hook module imports its parameters from here; ``tests/test_startup.py`` checks that
the table names exactly the built-in hooks of :data:`~accord.core.hooks.HOOKS`, each with the parameter model it
registers and its class's ``default_loss_weights``."""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import Field

from accord.core.hooks import HookParams

ResponseSource = Literal["auto", "heads", "shapley"]
Coefficient = Literal["paper", "continuous"]


class AGMParams(HookParams):
    """``train.hooks: [{name: agm, params: {alpha: 0.3}}]``."""

    alpha: float = Field(0.3, ge=0, description="α: modulation strength")
    response: ResponseSource = Field("shapley", description="mono-modal responses: zero padding (paper) or heads")
    start_epoch: int = Field(1, ge=1, description="first modulated epoch (1-based)")
    end_epoch: int | None = Field(None, ge=1, description="first epoch no longer modulated (None: never stop)")



class CPParams(HookParams):
    """``train.hooks: [{name: conflict_penalty, params: {...}}]`` (CP+SL sets these from its model params); the
    penalty's weight λ_cp is ``loss_weights.cp``."""

    kappa: float = Field(1.5, gt=0, description="conflict threshold κ on max_m r_m")
    penalty: bool = Field(True, description="add the penalty loss 'cp' on conflict steps")
    projection: bool = Field(True, description="project the dominant modality's task gradient off the SL gradient")
    project_on: Literal["always", "conflict"] = Field(
        "always", description="steps on which the projection is considered: always (paper) or conflict (old)")
    sl_loss: str = Field("sl", description="name of the SL loss in output.losses")



CP_LOSS_WEIGHTS: dict[str, float] = {"cp": 0.1}
"""The conflict penalty's loss term and its default weight (``ConflictPenalty.default_loss_weights``)."""


class GradMonitorParams(HookParams):
    """``train.hooks: [{name: grad_monitor, params: {...}}]``."""

    kappa: float | None = Field(None, gt=0, description="conflict threshold κ on max r_m (None: the model's "
                                                         "params.kappa if it has one, else 1.5)")
    every: int = Field(1, ge=1, description="write a step line every N steps")
    cosines: bool = Field(True, description="cosines between the task gradient and other objectives' gradients")
    write_steps: bool = Field(True, description="append per-step 'grad' lines to log.jsonl")



class OGMGEParams(HookParams):
    """``train.hooks: [{name: ogm_ge, params: {alpha: 0.3}}]``."""

    alpha: float = Field(0.3, ge=0, description="α: modulation strength")
    coefficient: Coefficient = Field("paper", description="paper: Eq. 10, 1 − tanh(α·ρ) when ρ > 1; continuous: "
                                                          "1 − tanh(α·relu(ρ − 1)) (the pre-issue-17 form)")
    gaussian: bool = Field(True, description="Generalization Enhancement: add N(0, std(g)^2) to encoder gradients")
    response: ResponseSource = Field("auto", description="mono-modal responses: unimodal heads or zero padding")
    start_epoch: int = Field(1, ge=1, description="first modulated epoch (1-based)")
    end_epoch: int | None = Field(None, ge=1, description="first epoch no longer modulated (None: never stop)")



class BuiltinHook(NamedTuple):
    """A built-in hook name: its class (``module:qualname``, imported only to run it), its parameter model and the
    loss terms it can emit with their default weights."""

    where: str
    params: type[HookParams]
    default_loss_weights: dict[str, float] = {}


BUILTIN_HOOKS: dict[str, BuiltinHook] = {
    "agm": BuiltinHook("accord.balance.agm:AGM", AGMParams),
    "conflict_penalty": BuiltinHook("accord.balance.cp:ConflictPenalty", CPParams, CP_LOSS_WEIGHTS),
    "grad_monitor": BuiltinHook("accord.balance.monitor:GradMonitor", GradMonitorParams),
    "ogm_ge": BuiltinHook("accord.balance.ogm_ge:OGMGE", OGMGEParams),
    "self_mm_ulgm": BuiltinHook("accord.balance.ulgm:ULGMHook", HookParams),
}
"""Every built-in hook (:mod:`accord.balance`); the registry imports the modules of ``where`` on its first look-up
once :mod:`accord.balance` is imported."""


def declared_hook(name: str) -> tuple[type[HookParams], dict[str, float]]:
    """The parameter model and the loss terms (default weights) of hook ``name``: a built-in's from
    :data:`BUILTIN_HOOKS` (no torch), any other's from the registry (an unknown name is a ConfigError)."""
    builtin = BUILTIN_HOOKS.get(name)
    if builtin is not None:
        return builtin.params, dict(builtin.default_loss_weights)
    from accord.core.hooks import HOOKS

    spec = HOOKS.get(name)
    return spec.params, dict(spec.cls.default_loss_weights)
