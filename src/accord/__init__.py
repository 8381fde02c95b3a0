"""Accord: multimodal sentiment analysis that shows modality imbalance and conflict instead of hiding them.

The Python API mirrors the CLI::

    import accord
    cfg = accord.load_config(method="late_fusion", dataset="conflictbench")
    summary = accord.train(cfg)
    model = accord.load(cfg.run_dir)

The API functions are bound eagerly: the subpackage ``accord.train`` (the trainer) shares its name with the
function ``accord.train``; importing the API here, after the subpackage has been loaded, makes ``accord.train`` the
function for good (the subpackage stays importable as ``accord.training.trainer`` etc. through ``sys.modules``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from accord.api import (  # noqa: E402
    evaluate,
    load,
    load_config,
    predictions,
    read_summary,
    report,
    robustness,
    train,
)

__all__ = ["evaluate", "load", "load_config", "predictions", "read_summary", "report", "robustness", "train"]
