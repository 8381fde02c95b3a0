"""Accord: multimodal sentiment analysis that shows modality imbalance and conflict instead of hiding them.

The Python API mirrors the CLI::

    import accord
    cfg = accord.load_config(method="late_fusion", dataset="conflictbench")
    summary = accord.train(cfg)
    model = accord.load(cfg.run_dir)

Every name of :mod:`accord.api` is reachable as ``accord.<name>`` (``accord.train``, ``accord.evaluate``,
``accord.load``, ``accord.load_config``, ...). They are bound lazily, on first use (a module ``__getattr__``), so
importing a light module such as ``accord.core.types`` does not import the trainer, the models or torch through the
API. No subpackage shares a name with an API function (the trainer is ``accord.training``, the metrics
``accord.evaluation``), so ``accord.train`` is the function whatever was imported before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from accord.api import (
        ablate,
        augment_fit,
        augment_sample,
        benchmark,
        config_show,
        data_build,
        data_convert,
        data_info,
        demo,
        evaluate,
        extract,
        load,
        load_config,
        plot_conflict,
        plot_gradients,
        predict_clip,
        predictions,
        read_summary,
        registered,
        report,
        robustness,
        sweep,
        train,
        train_run,
    )

__all__ = [
    "ablate",
    "augment_fit",
    "augment_sample",
    "benchmark",
    "config_show",
    "data_build",
    "data_convert",
    "data_info",
    "demo",
    "evaluate",
    "extract",
    "load",
    "load_config",
    "plot_conflict",
    "plot_gradients",
    "predict_clip",
    "predictions",
    "read_summary",
    "registered",
    "report",
    "robustness",
    "sweep",
    "train",
    "train_run",
]


def __getattr__(name: str) -> Any:
    """``accord.<name>``: the API function ``accord.api.<name>``, imported on first use."""
    if name in __all__:
        from accord import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'accord' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
