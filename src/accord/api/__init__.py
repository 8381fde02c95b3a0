"""The Python API: every ``accord`` command is one function here, returning objects (dicts, dataclasses, paths);
the CLI (:mod:`accord.cli`) only parses arguments and prints.

    import accord
    summary = accord.train(accord.load_config(method="mult", dataset="mosi-u"))
    metrics = accord.evaluate("runs/mult_mosi-u", corrupt=["drop:audio:0.5"])

=======================  ==========================================================================================
command                  function
=======================  ==========================================================================================
``train``                :func:`train_run` (:func:`load_config` + :func:`train`)
``evaluate``             :func:`evaluate`
``benchmark``/``demo``   :func:`benchmark` / :func:`demo`
``ablate``/``sweep``     :func:`ablate` / :func:`sweep`
``robustness``           :func:`robustness`
``report``               :func:`report`
``probe``                :func:`probe`
``extract``/``predict``  :func:`extract` / :func:`predict_clip` (printed by :func:`format_prediction`);
                         :class:`Predictor` (a run loaded once: ``predict``, ``predict_batch``; ``accord serve``)
``attribute``            :func:`attribution` (Shapley attribution over the modalities of a split)
``list``                 :func:`registered`
``config show``          :func:`config_show`
``plot ...``             :func:`plot_gradients`, :func:`plot_conflict`
``data ...``             :func:`data_info`, :func:`data_build`, :func:`data_convert`, :func:`data_import`
``augment ...``          :func:`augment_fit`, :func:`augment_sample`
=======================  ==========================================================================================

The functions live in a few modules (:mod:`accord.api.runs`, :mod:`~accord.api.configs`,
:mod:`~accord.api.studies`, :mod:`~accord.api.datasets`, :mod:`~accord.api.media`, :mod:`~accord.api.qasa`), none
named like a function, so ``accord.api.<name>`` is always the function. Each is imported on first use (a module
``__getattr__``), so ``accord list`` and ``accord data info FOLDER`` import only the light
:mod:`~accord.api.datasets` and ``accord config show`` only the light :mod:`~accord.api.configs` (no torch), and
the other commands only the module of their function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from accord.api.configs import config_show, load_config
    from accord.api.datasets import data_build, data_convert, data_info, open_dataset, registered
    from accord.api.importing import data_import
    from accord.api.media import (
        Predictor,
        attribution,
        extract,
        format_prediction,
        media_extensions,
        predict_clip,
    )
    from accord.api.qasa import augment_fit, augment_sample
    from accord.api.runs import (
        TrainRun,
        evaluate,
        find_runs,
        load,
        plot_conflict,
        plot_gradients,
        predictions,
        probe,
        read_summary,
        report,
        robustness,
        seed_dirs,
        train,
        train_run,
    )
    from accord.api.studies import DEMO_METHODS, ablate, benchmark, demo, sweep

_HOME: dict[str, str] = {
    **dict.fromkeys(["data_build", "data_convert", "data_info", "open_dataset", "registered"], "datasets"),
    **dict.fromkeys(["Predictor", "attribution", "extract", "format_prediction", "media_extensions", "predict_clip"],
                   "media"),
    "data_import": "importing",
    **dict.fromkeys(["augment_fit", "augment_sample"], "qasa"),
    **dict.fromkeys(["config_show", "load_config"], "configs"),
    **dict.fromkeys(["TrainRun", "evaluate", "find_runs", "load", "plot_conflict", "plot_gradients", "predictions",
                     "probe", "read_summary", "report", "robustness", "seed_dirs", "train", "train_run"], "runs"),
    **dict.fromkeys(["DEMO_METHODS", "ablate", "benchmark", "demo", "sweep"], "studies"),
}
"""Each public name (:data:`__all__`) -> the module of :mod:`accord.api` that defines it."""

__all__ = [
    "DEMO_METHODS",
    "Predictor",
    "TrainRun",
    "ablate",
    "attribution",
    "augment_fit",
    "augment_sample",
    "benchmark",
    "config_show",
    "data_build",
    "data_convert",
    "data_import",
    "data_info",
    "demo",
    "evaluate",
    "extract",
    "find_runs",
    "format_prediction",
    "load",
    "load_config",
    "media_extensions",
    "open_dataset",
    "plot_conflict",
    "plot_gradients",
    "predict_clip",
    "predictions",
    "probe",
    "read_summary",
    "registered",
    "report",
    "robustness",
    "seed_dirs",
    "sweep",
    "train",
    "train_run",
]


def __getattr__(name: str) -> Any:
    """``accord.api.<name>``: imported from its module on first use (then bound here)."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
