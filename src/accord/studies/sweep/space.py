"""The search space of a sweep: one dimension per dotted config key, loaded from a space file (or the built-in
default), turned into optuna suggestions and ``--set`` overrides."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from accord.config import packaged_configs, parse_yaml, read_yaml
from accord.core.errors import ConfigError, config_error

if TYPE_CHECKING:
    import optuna

SPACE_FOLDER = "sweeps"
"""Per-method search spaces ship in the package: ``accord/configs/sweeps/<method>.yaml``."""

SCALAR = bool | int | float | str


class ParamSpec(BaseModel):
    """One dimension of the search space, keyed by a dotted config key (``train.lr``, ``model.params.dropout``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            self._check_categorical()
        else:
            self._check_range()
        return self

    def _check_categorical(self) -> None:
        if not self.choices:
            raise ValueError("categorical needs a non-empty 'choices' list")
        if self.low is not None or self.high is not None or self.log or self.step is not None:
            raise ValueError("categorical takes only 'choices' (no low/high/log/step)")
        for c in self.choices:
            if not (c is None or isinstance(c, SCALAR)):
                raise ValueError(f"choice {c!r} is not a number, string, boolean or null")

    def _check_range(self) -> None:
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high (not 'choices')")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"needs low < high (got low {self.low}, high {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log scale and step cannot be combined")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"int needs integer bounds (got {self.low}, {self.high})")

    def describe(self) -> str:
        """Short human-readable form, e.g. ``float [0.0001, 0.01] log`` or ``categorical {16, 32, 64}``."""
        if self.type == "categorical":
            return "categorical {" + ", ".join(str(c) for c in self.choices or []) + "}"
        low, high = (int(self.low), int(self.high)) if self.type == "int" else (self.low, self.high)  # type: ignore
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.type} [{low:g}, {high:g}]{extra}"


class SweepSpace(BaseModel):
    """The contents of a space file: ``params: {dotted.key: {type, low, high, log, step, choices}}``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamSpec]
    description: str | None = None

    @model_validator(mode="after")
    def _nonempty(self) -> SweepSpace:
        if not self.params:
            raise ValueError("params: no parameters to search")
        for key in self.params:
            parts = key.split(".")
            if not all(parts) or key.strip() != key:
                raise ValueError(f"params: {key!r} is not a dotted config key such as train.lr")
        return self


DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
}
"""Used for a method without ``configs/sweeps/<method>.yaml``: learning rate, weight decay and batch size."""


def space_error(err: ValidationError, source: str) -> ConfigError:
    """The one-line ConfigError of a bad space file (:func:`~accord.core.errors.config_error`'s format). An unknown
    key is reported before anything else (a typo explains the rest), with the keys its owner knows."""
    extra = [e for e in err.errors() if e["type"] == "extra_forbidden"]
    if not extra:
        return config_error(err, source=source)
    e = extra[0]
    details: list[InitErrorDetails] = [{"type": "extra_forbidden", "loc": e["loc"], "input": e["input"]}]
    first = ValidationError.from_exception_data(err.title, details)
    if len(e["loc"]) == 3:  # params.<key>.<field>
        return config_error(first, owner="a search-space parameter", known=ParamSpec.model_fields, source=source)
    return config_error(first, owner="a space file", known=SweepSpace.model_fields, source=source)


def load_space(method: str, path: str | Path | None = None) -> tuple[SweepSpace, str]:
    """The search space of ``method``: ``path``, else ``configs/sweeps/<method>.yaml``, else :data:`DEFAULT_SPACE`.

    Returns the validated space and where it came from. An unknown or bad key is a one-line ConfigError naming
    the file and the key.
    """
    if path is None:
        node = packaged_configs() / SPACE_FOLDER / f"{method}.yaml"
        if not node.is_file():
            return SweepSpace(params={k: ParamSpec(**v) for k, v in DEFAULT_SPACE.items()}), "built-in default"
        source = f"accord/configs/{SPACE_FOLDER}/{method}.yaml"
        raw = parse_yaml(node.read_text(encoding="utf-8"), source)
    else:
        source = str(path)
        with contextlib.suppress(ValueError):
            source = str(Path(path).resolve().relative_to(Path.cwd()))
        raw = read_yaml(path)
    try:
        return SweepSpace(**raw), source
    except ValidationError as err:
        raise space_error(err, source) from None


def yaml_literal(value: Any) -> str:
    """``value`` as the YAML text of a ``--set key=value`` override that reads back as the same value.

    (``str(1e-05)`` would read back as a string under YAML 1.1; ``yaml.safe_dump`` writes ``1.0e-05``.)
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def param_overrides(params: dict[str, Any]) -> list[str]:
    """``--set`` overrides for a dict of dotted keys -> values."""
    return [f"{k}={yaml_literal(v)}" for k, v in params.items()]


def suggest(trial: optuna.Trial, space: SweepSpace) -> dict[str, Any]:
    """Ask ``trial`` for a value of every dimension of ``space``."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, p.choices)  # type: ignore[arg-type]
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1),  # type: ignore
                                         log=p.log)
        else:
            out[key] = trial.suggest_float(key, float(p.low), float(p.high), step=p.step, log=p.log)  # type: ignore
    return out


def space_probe(space: SweepSpace) -> dict[str, Any]:
    """One point of ``space`` (low ends and first choices), used to check every key against the config schema."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = p.choices[0]  # type: ignore[index]
        elif p.type == "int":
            out[key] = int(p.low)  # type: ignore[arg-type]
        else:
            out[key] = float(p.low)  # type: ignore[arg-type]
    return out
