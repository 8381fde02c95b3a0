"""Accord: multimodal sentiment analysis that shows modality imbalance and conflict instead of hiding them.

The Python API mirrors the CLI::

    import accord
    cfg = accord.load_config(method="late_fusion", dataset="conflictbench")
    summary = accord.train(cfg)
    model = accord.load(cfg.run_dir)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"train", "evaluate", "load", "predictions", "read_summary", "load_config"}


def __getattr__(name: str) -> Any:
    """Import the API lazily so that ``import accord`` stays cheap."""
    if name in _API:
        from accord import api

        return getattr(api, name)
    raise AttributeError(f"module 'accord' has no attribute {name!r}")
