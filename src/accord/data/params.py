"""The ``data.params`` model of every built-in dataset (pydantic only, no torch), and :data:`BUILTIN_DATASETS`, the
built-in datasets by name: what a config is validated against without importing the loaders (they import torch).
Each loader imports its model from here; ``tests/test_startup.py`` checks that this table names exactly the
built-in datasets of :data:`~accord.data.registry.DATASETS`, each with its builder and the params model it
registers."""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import Field, PositiveInt, model_validator

from accord.core.types import MODALITIES
from accord.data.registry import DataParams

# ------------------------------------------------------------------------------------------- conflictbench
Mod = Literal["text", "audio", "visual"]
MODS: tuple[Mod, Mod, Mod] = ("text", "audio", "visual")
"""MODALITIES (same order) as literals, the key type of the per-modality params."""
assert MODS == MODALITIES


def _default_seq_len() -> dict[Mod, int]:
    return {"text": 12, "audio": 24, "visual": 16}


def _default_dims() -> dict[Mod, int]:
    return {"text": 32, "audio": 16, "visual": 24}


def _default_strength() -> dict[Mod, float]:
    return {"text": 1.5, "audio": 0.5, "visual": 0.4}


def _default_conflict_modalities() -> list[Mod]:
    return ["audio", "visual"]


class ConflictBenchParams(DataParams):
    n_train: int = Field(800, ge=1)
    n_valid: int = Field(200, ge=1)
    n_test: int = Field(200, ge=1)
    seq_len: dict[Mod, int] = Field(default_factory=_default_seq_len)
    dims: dict[Mod, int] = Field(default_factory=_default_dims)
    strength: dict[Mod, float] = Field(default_factory=_default_strength)
    noise: float = Field(1.0, ge=0)
    salient_share: float = Field(0.35, gt=0, le=1)
    """Share of real time steps that carry the sentiment signal (the rest is nuisance + noise)."""
    variable_length: bool = True
    """Real lengths drawn uniformly in [T/2, T] per sample and modality (unaligned sequences)."""
    conflict_rate: float = Field(0.2, ge=0, le=1)
    conflict_modalities: list[Mod] = Field(default_factory=_default_conflict_modalities)
    """Which modality is flipped in a conflicting sample: drawn uniformly from this list."""
    missing_rate: float = Field(0.0, ge=0, lt=1)
    """Per sample and modality, the probability that the modality is absent (never all three)."""
    label_noise: float = Field(0.0, ge=0)
    classes: Literal[2, 3] = 2
    neutral_band: float = Field(0.5, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ConflictBenchParams:
        for key in ("seq_len", "dims", "strength"):
            missing = [m for m in MODS if m not in getattr(self, key)]
            if missing:
                raise ValueError(f"{key} misses {missing[0]!r} (needs text, audio and visual)")
        for m in MODS:
            if self.seq_len[m] < 1 or self.dims[m] < 2:
                raise ValueError(f"seq_len/dims of {m} must be >= 1 / >= 2")
        if self.conflict_rate > 0 and not self.conflict_modalities:
            raise ValueError("conflict_rate > 0 needs at least one modality in conflict_modalities")
        return self



# ------------------------------------------------------------------------------------------------ mmsa
Family = Literal["auto", "mosi", "sims"]
NonFinite = Literal["error", "zero"]


class MMSAParams(DataParams):
    """``data.params`` of the ``mmsa`` dataset."""

    family: Family = "auto"
    """``auto`` (sims if labels are in [-1, 1] and ``regression_labels_T`` exists, else mosi), ``mosi`` or
    ``sims``."""
    nonfinite: NonFinite = "error"
    """``error``: NaN/Inf features are an error; ``zero``: replace them by 0 (as MMSA does)."""
    max_len: dict[Literal["text", "audio", "visual"], PositiveInt] | None = None
    """Optional per-modality truncation of the padded length."""



# ------------------------------------------------------------------------------------------- mosei-text
class MoseiTextParams(DataParams):
    """``data.params`` of the ``mosei-text`` dataset."""

    standardize: bool = True
    """Z-score the text vectors with training statistics."""
    max_rows: int | None = Field(None, ge=3)
    """Read only the first rows of label.csv (quick checks); None reads all."""



# ----------------------------------------------------------------------------------------------- mosi-u
class MosiUParams(DataParams):
    """``data.params`` of the ``mosi-u`` dataset."""

    split: Literal["bclstm", "standard"] = "bclstm"
    """``bclstm`` (their split); ``standard`` (CMU SDK folds) is refused with a LeakageError."""
    valid_videos: int = Field(10, ge=1)
    """Number of training videos held out for validation."""
    valid_seed: int = 0
    """Seed of the validation-video draw."""
    standardize: bool = True
    """Z-score features with training-split statistics."""
    text_features: Literal["bclstm", "minilm"] = "bclstm"
    """``minilm``: all-MiniLM-L6-v2 vectors of the real transcripts instead of the bc-LSTM text CNN (needs
    ``accord[media]``); allows ``split=standard`` (text MiniLM + audio openSMILE, no visual)."""



# ------------------------------------------------------------------------------------------------ saved
class SavedParams(DataParams):
    """``data.params`` of the ``saved`` dataset: none."""



class BuiltinDataset(NamedTuple):
    """A built-in dataset name: its builder (``module:qualname``, imported only to build the dataset) and its
    ``data.params`` model."""

    where: str
    params: type[DataParams]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "conflictbench": BuiltinDataset("accord.data.conflictbench:build_conflictbench", ConflictBenchParams),
    "mmsa": BuiltinDataset("accord.data.mmsa:build_mmsa", MMSAParams),
    "mosei-text": BuiltinDataset("accord.data.mosei_text:build_mosei_text", MoseiTextParams),
    "mosi-u": BuiltinDataset("accord.data.mosi_u:build_mosi_u", MosiUParams),
    "saved": BuiltinDataset("accord.data.safe:build_saved", SavedParams),
}
"""Every built-in dataset by name (one line per loader of :data:`~accord.data.registry.BUILTIN_LOADERS`)."""
