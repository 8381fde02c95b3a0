"""Data: the in-memory contract, loaders (MMSA pickle, MOSI-U, ConflictBench, safe format) and corruptions.

Importing this package is light (no torch): the names below are bound on first use (a module ``__getattr__``),
and the built-in loaders register with :data:`DATASETS` on its first look-up
(:data:`accord.data.registry.BUILTIN_LOADERS`). ``accord data info`` of a safe-format folder reads it with numpy
only (:mod:`accord.data.safe_files`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from accord.core.lazy import lazy_attribute

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from accord.data.dataset import SPLITS, MultimodalDataset, SplitData, make_split, standardize
    from accord.data.registry import DATASETS, build_dataset, register_dataset

#: Each name of :data:`__all__` -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "DATASETS": "accord.data.registry",
    "SPLITS": "accord.data.dataset",
    "MultimodalDataset": "accord.data.dataset",
    "SplitData": "accord.data.dataset",
    "build_dataset": "accord.data.registry",
    "make_split": "accord.data.dataset",
    "register_dataset": "accord.data.registry",
    "standardize": "accord.data.dataset",
}

__all__ = [
    "DATASETS",
    "SPLITS",
    "MultimodalDataset",
    "SplitData",
    "build_dataset",
    "make_split",
    "register_dataset",
    "standardize",
]


def __getattr__(name: str) -> Any:
    """``accord.data.<name>``: an exported name (imported on first use) or a submodule (``accord.data.mmsa``)."""
    return lazy_attribute(__name__, _EXPORTS, globals(), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
