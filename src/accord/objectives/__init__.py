"""Objectives: pure loss functions (no model imports)."""

from accord.objectives.task import task_loss

__all__ = ["task_loss"]
