"""Typed run configuration: load YAML, apply ``--set key=value`` overrides, reject unknown keys by name.

A config has seven sections::

    name: my_run
    data:   {name: conflictbench, path: null, params: {...}}
    task:   {kind: regression, loss: l1}
    model:  {name: mult, params: {...}}
    loss_weights: {unimodal_text: 0.5}
    train:  {epochs: 30, batch_size: 32, lr: 1e-3, seeds: [0, 1, 2], device: cpu, ...}
    output: {dir: runs}
    augment: {source: none, per_sample: 1, weighting: quality, ...}   (QASA, off by default)

``data.params`` and ``model.params`` are validated by the dataset builder's and the model's own parameter
models, so a typo anywhere in a config is a one-line :class:`~accord.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from accord.augment.params import AugmentConfig
from accord.data.corrupt import CorruptionSpec, parse_corruption
from accord.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
"""The repository's ``configs/`` folder (one YAML per method, dataset defaults in ``configs/datasets/``)."""


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    name: str = "conflictbench"
    """Registered dataset: conflictbench, mosi-u, mmsa (a pickle), saved (a safe-format directory)."""
    path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    corruption: list[CorruptionSpec] = Field(default_factory=list)
    """Corruptions applied to valid and test at evaluation (robustness); training data is never corrupted."""
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    """Low-data option: share of training GROUPS kept (a group is the id up to the last '_', the video for MOSI),
    drawn with ``train_fraction_seed`` after the dataset is built; valid and test are never cut."""
    train_fraction_seed: int = 0
    train_fraction_by: Literal["group", "sample"] = "group"
    """``sample`` keeps a share of single rows instead (datasets whose ids carry no group, e.g. ConflictBench)."""

    @field_validator("corruption", mode="before")
    @classmethod
    def _parse_corruption(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s for s in v.split(",") if s]
        if isinstance(v, list):
            return [parse_corruption(s) if isinstance(s, str) else s for s in v]
        return v


class TaskConfig(Section):
    kind: Literal["regression", "classification"] = "regression"
    loss: Literal["l1", "mse", "ce"] | None = None
    """Task loss; defaults to l1 for regression and cross-entropy for classification."""

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.kind == "classification" and self.loss not in (None, "ce"):
            raise ValueError(f"loss {self.loss!r} does not fit task kind 'classification' (use ce)")
        if self.kind == "regression" and self.loss == "ce":
            raise ValueError("loss 'ce' does not fit task kind 'regression' (use l1 or mse)")
        return self

    @property
    def loss_name(self) -> str:
        return self.loss or ("ce" if self.kind == "classification" else "l1")


class ModelConfig(Section):
    name: str = "late_fusion"
    params: dict[str, Any] = Field(default_factory=dict)


class EarlyStopping(Section):
    metric: str | None = None
    """Validation metric to select on; default MAE (regression) / F1_weighted (classification)."""
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class HookConfig(Section):
    name: str
    """A registered trainer hook plugin (see ``accord list``), e.g. a gradient monitor or OGM-GE."""
    params: dict[str, Any] = Field(default_factory=dict)


class DistributedConfig(Section):
    """Settings used when the run is launched by torchrun (``WORLD_SIZE > 1``); ignored in one process."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """auto: NCCL for a CUDA train.device, gloo otherwise (CPU)."""
    timeout_minutes: float = Field(30.0, gt=0)
    """How long a collective may wait for the other ranks before the job fails."""


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    optimizer_impl: Literal["auto", "fused", "foreach", "loop"] = "auto"
    """AdamW kernel. auto: torch's choice (a per-parameter loop on CPU, foreach on CUDA; every committed result was
    made with it). fused: one kernel over all parameters, faster (MulT on MOSI-U: about 10% less time per epoch on
    CPU); same algorithm, last float digits differ, so the same seed gives slightly different metrics than auto."""
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: str = "cpu"
    """torch device string: cpu, cuda, cuda:1, mps. Never hard-coded anywhere else."""
    num_threads: int | None = Field(None, ge=1)
    deterministic: bool = True
    modality_dropout: dict[Literal["text", "audio", "visual"], float] = Field(default_factory=dict)
    """Training-time modality dropout: per modality, the probability that a sample loses it in a batch (seeded)."""
    hooks: list[HookConfig] = Field(default_factory=list)
    """Trainer hook plugins switched on for this run, in order (they run after the model's own hooks)."""
    log_every_steps: int = Field(0, ge=0)
    """0 logs one JSONL line per epoch; N > 0 also logs every N steps (loss terms and hook values)."""
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """torchrun data-parallel settings (docs/distributed.md); batch_size stays the global batch size."""

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int):
            return list(range(v))
        return v

    @field_validator("modality_dropout")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for m, p in v.items():
            if not 0.0 <= p < 1.0:
                raise ValueError(f"rate of {m} must be in [0, 1), got {p}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_nonempty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v


class OutputConfig(Section):
    dir: str = "runs"
    """Parent folder; the run goes to ``<dir>/<name>``."""


class Config(Section):
    name: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss_weights: dict[str, float] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """QASA augmentation of the training split (accord.augment; off with ``source: none``)."""

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model.name}_{self.data.name}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _format_validation_error(err: ValidationError, source: str) -> ConfigError:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return ConfigError(f"{source}: unknown key {key!r}")
    got = e.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return ConfigError(f"{source}: {key}: {e['msg']}{got_text}")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def apply_override(tree: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a copy of ``tree``."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.lr=0.001")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out = copy.deepcopy(tree)
    node = out
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value
    return out


def method_config_path(method: str) -> Path:
    """``configs/<method>.yaml`` (it may not exist: every method has in-code defaults)."""
    return CONFIG_DIR / f"{method}.yaml"


def compose(
    method: str | None = None,
    dataset: str | None = None,
    files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Compose a raw config tree: method YAML, dataset YAML, ``<method>.<dataset>.yaml``, files, overrides.

    Later sources win. Missing method/dataset YAMLs are fine (in-code defaults apply); explicit files must exist.
    """
    tree: dict[str, Any] = {}
    if method:
        p = method_config_path(method)
        tree = deep_merge(tree, read_yaml(p)) if p.is_file() else deep_merge(tree, {"model": {"name": method}})
    if dataset:
        p = CONFIG_DIR / "datasets" / f"{dataset}.yaml"
        tree = deep_merge(tree, read_yaml(p)) if p.is_file() else deep_merge(tree, {"data": {"name": dataset}})
        if method:
            p = CONFIG_DIR / f"{method}.{dataset}.yaml"
            if p.is_file():
                tree = deep_merge(tree, read_yaml(p))
    for f in files or []:
        tree = deep_merge(tree, read_yaml(f))
    for o in overrides or []:
        tree = apply_override(tree, o)
    return tree


def validate(tree: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw tree into a :class:`Config`, including the model's and dataset's own params."""
    from accord.data.registry import validate_data_params
    from accord.models.base import validate_params

    try:
        cfg = Config(**tree)
    except ValidationError as err:
        raise _format_validation_error(err, source) from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    from accord.train.hooks import build_hook

    try:
        validate_params(cfg.model.name, cfg.model.params)
        validate_data_params(cfg.data.name, cfg.data.params)
        for i, h in enumerate(cfg.train.hooks):
            build_hook(h.name, h.params, i)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    method: str | None = None,
    dataset: str | None = None,
) -> Config:
    """Load and validate a config from a YAML file and/or a method + dataset, then ``--set`` overrides."""
    import accord.data  # noqa: F401  (register datasets)
    import accord.models  # noqa: F401  (register models)

    files = [path] if path else []
    tree = compose(method, dataset, files, overrides)
    source = str(path) if path else (f"configs for {method or ''}/{dataset or ''}".strip("/"))
    return validate(tree, source)
