"""Trainer hooks: the gradient-imbalance monitor, CP (conflict-aware penalty + projection), OGM-GE, AGM and
Self-MM's label generation (ULGM).

Every one is a trainer hook (:mod:`accord.core.hooks`), switched on by name: in a config with
``train.hooks: [{name: grad_monitor}, {name: ogm_ge, params: {alpha: 0.3}}]``, or by a model that names the hook it
needs (``required_hooks``). Importing this package registers them all; the config loader and the trainer import it,
so every run can use them.
"""

from accord.balance import agm, cp, modality, monitor, ogm_ge, ulgm  # noqa: F401  (registration side effects)
from accord.balance.agm import AGM
from accord.balance.cp import ConflictPenalty, conflict_penalty, project_conflicting
from accord.balance.modality import modality_parameters, modality_responses, shapley_responses
from accord.balance.monitor import GradMonitor, feature_grad_norms, imbalance_ratios
from accord.balance.ogm_ge import OGMGE, ogm_coefficient
from accord.balance.ulgm import ULGMHook

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
