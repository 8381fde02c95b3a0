"""Modality balancing: the gradient-imbalance monitor, CP (conflict-aware penalty + projection), OGM-GE and AGM.

Every one is a trainer hook plugin (:mod:`accord.train.hooks`), switched on in a config with
``train.hooks: [{name: grad_monitor}, {name: ogm_ge, params: {alpha: 0.3}}]``; importing this package registers
them (``accord.train.trainer`` imports it, so any run can use them).
"""

from accord.balance import agm, cp, modality, monitor, ogm_ge  # noqa: F401  (registration side effects)
from accord.balance.agm import AGM
from accord.balance.cp import ConflictPenalty, conflict_penalty, project_conflicting
from accord.balance.modality import modality_parameters, modality_responses, shapley_responses
from accord.balance.monitor import GradMonitor, feature_grad_norms, imbalance_ratios, read_grad_log
from accord.balance.ogm_ge import OGMGE, ogm_coefficient

__all__ = [
    "AGM",
    "OGMGE",
    "ConflictPenalty",
    "GradMonitor",
    "conflict_penalty",
    "feature_grad_norms",
    "imbalance_ratios",
    "modality_parameters",
    "modality_responses",
    "ogm_coefficient",
    "project_conflicting",
    "read_grad_log",
    "shapley_responses",
]
