"""The metric registry: every metric a table, a selection rule or a sweep may name, with its direction, unit and
decimals (:func:`register_metric`, :func:`metric_spec`). No numpy or torch, so a config's selection metric is checked
without them; the metrics themselves are computed in :mod:`accord.evaluation.metrics`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from accord.core.errors import ConfigError

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: whether lower (``min``) or higher (``max``) is better, its unit (``%`` for accuracies and
    F1 scores, ``""`` for raw numbers) and the decimals it is shown with."""

    name: str
    direction: Direction
    unit: Literal["%", ""] = ""
    digits: int = 3
    description: str = ""

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "min" else a > b

    def format(self, value: float) -> str:
        """``value`` with this metric's decimals (no unit sign: tables say "in %" once)."""
        return f"{value:.{self.digits}f}"


METRICS: dict[str, MetricSpec] = {}
"""Every metric a table, a selection rule or a sweep may name, by name (:func:`register_metric` adds one)."""

PER_CLASS_PREFIX: Final = "F1_"
"""``F1_<class name>``: classification's per-class F1 (the class names come from the dataset)."""


def register_metric(name: str, direction: Direction, unit: Literal["%", ""] = "", digits: int | None = None,
                    description: str = "") -> MetricSpec:
    """Declare metric ``name`` (a study's own column, say); re-declaring it identically is a no-op, differently an
    error. Percent metrics default to 1 decimal, others to 3."""
    spec = MetricSpec(name, direction, unit, (1 if unit == "%" else 3) if digits is None else digits, description)
    old = METRICS.get(name)
    if old is not None and old != spec:
        raise ValueError(f"metric {name!r} is registered twice, differently ({old} vs {spec})")
    METRICS[name] = spec
    return spec


for _name, _what in [("Has0_acc_2", "binary accuracy, y >= 0 vs y < 0"), ("Has0_F1", "weighted F1 of Has0"),
                     ("Non0_acc_2", "binary accuracy on non-zero labels"), ("Non0_F1", "weighted F1 of Non0"),
                     ("Mult_acc_2", "2-class accuracy (CH-SIMS)"), ("Mult_acc_3", "3-class accuracy (CH-SIMS)"),
                     ("Mult_acc_5", "5-class accuracy"), ("Mult_acc_7", "7-class accuracy (MOSI/MOSEI)"),
                     ("F1", "weighted binary F1 (CH-SIMS)"), ("Acc", "classification accuracy"),
                     ("F1_weighted", "support-weighted F1"), ("F1_macro", "unweighted mean of per-class F1")]:
    register_metric(_name, "max", "%", description=_what)
register_metric("MAE", "min", description="mean absolute error of the scores")
register_metric("Corr", "max", description="Pearson correlation of predictions and labels")


def metric_spec(name: str) -> MetricSpec:
    """The registered spec of ``name`` (``F1_<class>`` is a per-class F1); an unknown name is a ConfigError."""
    spec = METRICS.get(name)
    if spec is not None:
        return spec
    if name.startswith(PER_CLASS_PREFIX) and len(name) > len(PER_CLASS_PREFIX):
        return MetricSpec(name, "max", "%", 1, "per-class F1")
    raise ConfigError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))} or F1_<class> "
                      f"(a study declares its own columns with accord.evaluation.metrics.register_metric)")
