"""Data: the in-memory contract, loaders (MMSA pickle, MOSI-U, ConflictBench, safe format) and corruptions."""

# Registration side effects: each loader module registers its builder.
from accord.data import conflictbench, mmsa, mosei_text, mosi_u, safe  # noqa: F401
from accord.data.dataset import SPLITS, MultimodalDataset, SplitData, make_split, standardize
from accord.data.registry import DATASETS, build_dataset, register_dataset

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
