"""The evaluation-time corruption as a config names it: :class:`CorruptionSpec` and its string form
``kind:modality:level[:seed]`` (:func:`parse_corruption`). Pydantic only, no torch, so a config is validated
without importing torch; the corruptions themselves are :mod:`accord.data.corrupt`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from accord.core.errors import ConfigError, config_error
from accord.core.types import MODALITIES

CorruptionKind = Literal["drop", "temporal_drop", "noise"]
CorruptionModality = Literal["text", "audio", "visual", "all"]


class CorruptionSpec(BaseModel):
    """One corruption: ``kind`` applied to ``modality`` at ``level`` with ``seed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: CorruptionKind
    modality: CorruptionModality
    level: float
    """Share of samples (``drop``), per-step probability (``temporal_drop``), both in [0, 1]; noise std as a
    multiple of the per-column std (``noise``, >= 0)."""
    seed: int = 0

    @model_validator(mode="after")
    def _check_level(self) -> CorruptionSpec:
        if not math.isfinite(self.level):
            raise ValueError(f"level must be a finite number, got {self.level}")
        if self.kind in ("drop", "temporal_drop") and not 0.0 <= self.level <= 1.0:
            raise ValueError(f"level of {self.kind} must be in [0, 1], got {self.level:g}")
        if self.kind == "noise" and self.level < 0.0:
            raise ValueError(f"level of noise must be >= 0, got {self.level:g}")
        return self

    def __str__(self) -> str:
        return f"{self.kind}:{self.modality}:{self.level:g}:{self.seed}"


def _spec_error(source: str, err: ValidationError) -> ConfigError:
    """The one-line ConfigError of a corruption that fails validation, naming the corruption text."""
    return config_error(err, source=f"corruption {source!r}")


def parse_corruption(spec: str | Mapping[str, Any] | CorruptionSpec) -> CorruptionSpec:
    """Parse ``"kind:modality:level[:seed]"`` (or a mapping) into a :class:`CorruptionSpec`.

    Raises:
        ConfigError: one line naming the text and what was expected.
    """
    if isinstance(spec, CorruptionSpec):
        return spec
    if isinstance(spec, Mapping):
        try:
            return CorruptionSpec(**spec)
        except ValidationError as err:
            raise _spec_error(str(dict(spec)), err) from None
    if not isinstance(spec, str):
        raise ConfigError(f"corruption {spec!r}: expected a string 'kind:modality:level[:seed]'")
    parts = spec.strip().split(":")
    expected = "expected 'kind:modality:level[:seed]' such as 'drop:audio:0.5'"
    if len(parts) not in (3, 4):
        raise ConfigError(f"corruption {spec!r}: {expected}")
    kind, modality, level_text = parts[0].strip(), parts[1].strip(), parts[2].strip()
    if kind not in ("drop", "temporal_drop", "noise"):
        raise ConfigError(
            f"corruption {spec!r}: unknown kind {kind!r}; expected drop, temporal_drop or noise"
        )
    if modality not in (*MODALITIES, "all"):
        raise ConfigError(
            f"corruption {spec!r}: unknown modality {modality!r}; expected text, audio, visual or all"
        )
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"corruption {spec!r}: level {level_text!r} is not a number; {expected}") from None
    seed = 0
    if len(parts) == 4:
        try:
            seed = int(parts[3].strip())
        except ValueError:
            raise ConfigError(
                f"corruption {spec!r}: seed {parts[3]!r} is not an integer; {expected}"
            ) from None
    try:
        return CorruptionSpec(kind=kind, modality=modality, level=level, seed=seed)
    except ValidationError as err:
        raise _spec_error(spec, err) from None
