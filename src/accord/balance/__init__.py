"""Trainer hooks: the gradient-imbalance monitor, CP (conflict-aware penalty + projection), OGM-GE, AGM and
Self-MM's label generation (ULGM).

Every one is a trainer hook (:mod:`accord.core.hooks`), switched on by name: in a config with
``train.hooks: [{name: grad_monitor}, {name: ogm_ge, params: {alpha: 0.3}}]``, or by a model that names the hook it
needs (``required_hooks``). Importing this package is light (no torch): it has :data:`~accord.core.hooks.HOOKS`
import the built-in hooks (:data:`accord.balance.params.BUILTIN_HOOKS`) on its first look-up, and binds the names
below on first use; the config loader and the trainer import it, so every run can use them. A config's hook
parameters are validated from :mod:`accord.balance.params`, without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from accord.core.hooks import HOOKS
from accord.core.lazy import lazy_attribute

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from accord.balance.agm import AGM
    from accord.balance.cp import ConflictPenalty, conflict_penalty, project_conflicting
    from accord.balance.modality import modality_parameters, modality_responses, shapley_responses
    from accord.balance.monitor import GradMonitor, feature_grad_norms, imbalance_ratios
    from accord.balance.ogm_ge import OGMGE, ogm_coefficient
    from accord.balance.ulgm import ULGMHook

#: Each name of :data:`__all__` -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AGM": "accord.balance.agm",
    "OGMGE": "accord.balance.ogm_ge",
    "ConflictPenalty": "accord.balance.cp",
    "GradMonitor": "accord.balance.monitor",
    "ULGMHook": "accord.balance.ulgm",
    "conflict_penalty": "accord.balance.cp",
    "feature_grad_norms": "accord.balance.monitor",
    "imbalance_ratios": "accord.balance.monitor",
    "modality_parameters": "accord.balance.modality",
    "modality_responses": "accord.balance.modality",
    "ogm_coefficient": "accord.balance.ogm_ge",
    "project_conflicting": "accord.balance.cp",
    "shapley_responses": "accord.balance.modality",
}

__all__ = [
    "AGM",
    "OGMGE",
    "ConflictPenalty",
    "GradMonitor",
    "ULGMHook",
    "conflict_penalty",
    "feature_grad_norms",
    "imbalance_ratios",
    "modality_parameters",
    "modality_responses",
    "ogm_coefficient",
    "project_conflicting",
    "shapley_responses",
]


def _register_builtins() -> None:
    """Import the built-in hooks' modules (each registers its hook)."""
    from accord.balance.params import BUILTIN_HOOKS

    for module in dict.fromkeys(h.where.partition(":")[0] for h in BUILTIN_HOOKS.values()):
        importlib.import_module(module)


HOOKS.add_builtins(_register_builtins)


def __getattr__(name: str) -> Any:
    """``accord.balance.<name>``: an exported name (imported on first use) or a submodule (``accord.balance.cp``)."""
    return lazy_attribute(__name__, _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
