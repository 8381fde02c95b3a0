"""Typed run configuration: layered YAML, ``--set key=value`` overrides, every default resolved in one place.

A config has eight sections::

    name: my_run
    data:   {name: conflictbench, path: null, params: {...}}
    task:   {kind: regression, loss: l1}
    model:  {name: mult, params: {...}}
    loss_weights: {task: 1.0, unimodal_text: 0.5}
    train:  {epochs: 30, batch_size: 32, lr: 1e-3, seeds: [0, 1, 2], device: cpu, ...}
    output: {dir: runs}
    augment: {source: none, per_sample: 1, weighting: quality, ...}   (QASA, off by default)

**Layers** (later wins; ``accord config show`` prints each value's layer):

1. code defaults: the sections below, each model's ``Params`` and ``default_loss_weights``, each dataset
   builder's params, each hook's ``default_loss_weights`` (the one source of every default);
2. the packaged dataset file ``accord/configs/datasets/<dataset>.yaml`` (what a dataset needs: epochs, lr, ...);
3. the packaged method file ``accord/configs/methods/<method>.yaml`` (only what a method needs to differ from its
   code defaults: none of the built-in methods has one);
4. the packaged ``accord/configs/methods/<method>.<dataset>.yaml`` (a method on one dataset);
5. the user's YAML files, in the order given;
6. ``--set a.b=value`` overrides, in order.

The packaged files ship inside the package (``importlib.resources``), so a wheel install resolves exactly what an
editable one does. :func:`validate` returns the RESOLVED config: ``model.params`` and ``data.params`` with every
default filled in by the model's and dataset's own parameter models, and ``loss_weights`` with a weight for every
term the model and its hooks can emit (so a run's ``config.yaml`` records every value it used). A typo anywhere is a
one-line :class:`~accord.core.errors.ConfigError` naming the key: unknown sections and keys, unknown ``loss_weights``
names, unknown hooks and their parameters, and unknown selection metrics.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from accord.augment.params import AugmentConfig
from accord.core.errors import ConfigError, config_error
from accord.core.types import MODALITIES
from accord.data.corruption_spec import CorruptionSpec, parse_corruption


def packaged_configs() -> Traversable:
    """The ``configs`` folder shipped inside the package (``datasets/``, ``methods/``, ``sweeps/``)."""
    return resources.files("accord") / "configs"


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
    pool_time: list[Literal["text", "audio", "visual"]] = Field(default_factory=list)
    """Modalities averaged over their valid time steps ONCE when the run loads its data (one step each after;
    MMSA's ``need_normalized``, :mod:`accord.data.pool_time`); also applied when the run is evaluated."""

    def cache_key(self) -> str:
        """The one key under which a built dataset may be shared between runs: everything that shapes the data
        except the evaluation-time corruptions and the low-data subset (both applied on top of the built dataset).
        """
        return json.dumps(self.model_dump(mode="json", include={"name", "path", "params"}), sort_keys=True)

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
    check_labels: bool = True
    """Before training a regression, stop when the training labels are all of one sign or take only two values
    (0/1 classes trained as scores: the sentiment metrics split at 0 and would be meaningless); ``false`` trains
    anyway (a rating scale such as 1-5 whose MAE and correlation are what you read)."""

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
    """A registered trainer hook (see ``accord list``), e.g. a gradient monitor or OGM-GE."""
    params: dict[str, Any] = Field(default_factory=dict)


class DistributedConfig(Section):
    """Settings used when the run is launched by torchrun (``WORLD_SIZE > 1``); ignored in one process."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """auto: NCCL for a CUDA train.device, gloo otherwise (CPU)."""
    timeout_minutes: float = Field(30.0, gt=0)
    """How long a collective may wait for the other ranks before the job fails."""


_COMMON_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|meta)(:(0|[1-9][0-9]*))?")
"""Device strings ``torch.device`` accepts (``tests/test_startup.py`` checks them against it), taken without importing
torch so that a config is validated without it."""


CompileMode = Literal["off", "inductor", "eager"]
"""``torch.compile`` settings (``train.compile``; ``compile`` of :func:`accord.api.load`, the predictor and ``accord
serve``): ``off``, or the TorchDynamo backend."""
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


def check_compile_mode(value: str, where: str) -> CompileMode:
    """``value`` as a :data:`CompileMode`; anything else is a one-line ConfigError naming ``where``."""
    if value not in COMPILE_MODES:
        raise ConfigError(f"{where}: expected one of {', '.join(COMPILE_MODES)} (got {value!r})")
    return cast(CompileMode, value)


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["none", "cosine", "plateau"] = "none"
    optimizer_impl: Literal["auto", "fused", "foreach", "loop"] = "fused"
    """AdamW kernel. fused (the default since issue 16): one kernel over all parameters (CPU, CUDA, MPS), called
    directly by :class:`accord.training.optim.FusedAdamW` (torch's fused AdamW bit for bit, without its per-step
    Python overhead); on CPU the per-parameter step of ``auto`` was 35% of a fine-tuning epoch. auto: torch's
    choice (a per-parameter loop on CPU, foreach on CUDA; the committed results before issue 16 were made with it).
    Same algorithm either way; the last float digits differ, so the same seed gives slightly different metrics
    under each."""
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    """Gradient clipping after each optimiser window's backward (null: none); what it bounds is
    ``grad_clip_mode``."""
    grad_clip_mode: Literal["norm", "value"] = "norm"
    """norm: the global L2 norm of all gradients is scaled down to at most ``grad_clip`` (``clip_grad_norm_``;
    the norm before clipping is logged as ``grad_norm``). value: every gradient element is clamped to
    ``[-grad_clip, grad_clip]`` (``clip_grad_value_``, as MMSA's MulT and MISA trainers clip; no norm is computed or
    logged, one pass over the gradients instead of two)."""
    accumulate_batches: int = Field(1, ge=1)
    """Batches per optimiser step (gradient accumulation). The epoch's batches are taken in windows of this many
    (the last window may be shorter); each batch's loss is weighted by its share of the window's samples, so a
    window's gradient is the gradient of the mean loss over all its samples, as one batch of them would give
    (models without batch statistics). Clipping, the optimiser step and, under torchrun, the gradient all-reduce
    happen once per window; hooks still run after every batch's backward, so a hook that edits gradients (OGM-GE,
    AGM, CP) is refused. 1 (the default) steps after every batch."""
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: str = "cpu"
    """torch device string: cpu, cuda, cuda:1, mps. Never hard-coded anywhere else."""
    num_threads: int | None = Field(None, ge=1)
    deterministic: bool = True
    modality_dropout: dict[str, float] = Field(default_factory=dict)
    """Training-time modality dropout: per modality, the probability that a sample loses it in a batch (seeded)."""
    hooks: list[HookConfig] = Field(default_factory=list)
    """Trainer hooks switched on for this run, in order (they run after the hooks the model names)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision: forward passes and losses run under ``torch.autocast`` in bfloat16 or float16 (training and
    evaluation; parameters and optimiser state stay float32). fp16 adds a gradient scaler whose gradients are
    unscaled before the hooks and clipping. Meant for CUDA; bf16 and fp16 also run on CPU."""
    bucket_by_length: bool = False
    """Length-bucketed training batches: rows of similar text length batched together (shuffled within chunks and
    in batch order, seeded), so with dynamic padding an epoch costs what the real token counts cost. Off keeps the
    plain shuffled order."""
    compile: CompileMode = "off"
    """``torch.compile`` the model for training and evaluation (``dynamic=True``, so varying batch and token lengths
    do not recompile each step): ``inductor`` generates fused kernels (CUDA, or CPU with a C++ compiler); ``eager``
    only traces (checks that a model compiles, no speed-up). Refused for a run with a hook that needs double backward
    (CP's penalty). Checkpoints are the same plain state dicts either way."""
    dynamic_padding: bool = True
    """Pad each batch's text tokens (and sequences) to the longest real row of THAT batch. Off pads every batch's
    tokens to the split's longest sentence (fixed padding, as MMSA's 50-token arrays): the same predictions
    (tested), more compute; kept for speed comparisons."""
    seed_parallel: Literal["off", "on", "auto"] = "auto"
    """Train the seeds as ONE vectorised model (``torch.func.vmap`` over the stacked seed models; per-seed data
    order, selection, early stopping, checkpoints and metrics as in sequential training; docs/speed.md). ``on``
    refuses, in one line naming the reason, a run that cannot (hooks, QASA, torchrun, a pretrained text branch,
    mixed precision, compile, the plateau schedule, gradient accumulation); ``auto`` falls back to sequential
    there. With dropout on, the masks differ from a sequential run's (deterministic still)."""
    malloc: Literal["tuned", "system"] = "tuned"
    """tuned: glibc's malloc keeps large freed buffers for the next step instead of mapping fresh pages each step
    (``training/allocator.py``; TFN at MMSA's sizes: epochs 4.4 -> 3.0 s, up to 256 MiB more resident memory;
    process-wide, from the first training on). system: the C library's own thresholds. Numerics are the same."""
    log_every_steps: int = Field(0, ge=0)
    """0 logs one JSONL line per epoch; N > 0 also logs every N steps (loss terms and hook values)."""
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """torchrun data-parallel settings (docs/distributed.md); batch_size stays the global batch size."""

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return list(range(v))
        return v

    @field_validator("seed_parallel", "compile", mode="before")
    @classmethod
    def _yaml_switch(cls, v: Any) -> Any:
        """YAML reads a bare ``on`` / ``off`` as true / false: take them as the words."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("modality_dropout")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for m, p in v.items():
            if m not in MODALITIES:
                raise ValueError(f"unknown modality {m!r}; expected one of {', '.join(MODALITIES)}")
            if not 0.0 <= p < 1.0:
                raise ValueError(f"rate of {m} must be in [0, 1), got {p}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        """The form of a torch device string (whether the device is present is the trainer's check). The common
        forms (:data:`_COMMON_DEVICE`) are taken without importing torch; anything else is asked of torch."""
        if _COMMON_DEVICE.fullmatch(v):
            return v
        import torch

        try:
            torch.device(v)
        except (RuntimeError, ValueError):
            raise ValueError("not a torch device string (e.g. cpu, cuda, cuda:1, mps)") from None
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


# --------------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """One source of config values: a label (``dataset: accord/configs/datasets/mosi-u.yaml``) and its tree."""

    label: str
    tree: dict[str, Any]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: unreadable ({err})") from None
    return parse_yaml(text, str(p))


def _packaged_layer(kind: str, *parts: str) -> Layer | None:
    """The packaged file ``configs/<parts...>``, if it exists."""
    node = packaged_configs().joinpath(*parts)
    if not node.is_file():
        return None
    where = "accord/configs/" + "/".join(parts)
    return Layer(f"{kind}: {where}", parse_yaml(node.read_text(encoding="utf-8"), where))


def apply_override(tree: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a copy of ``tree``."""
    return deep_merge(tree, _checked_override(tree, assignment))


def override_tree(assignment: str) -> dict[str, Any]:
    """The nested mapping of one ``a.b.c=value`` override (value parsed as YAML)."""
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
    out: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        out = {p: out}
    return out


def layers(method: str | None = None, dataset: str | None = None, files: list[str | Path] | None = None,
           overrides: list[str] | None = None) -> list[Layer]:
    """The config layers of a run, lowest precedence first (the code defaults come in :func:`validate`)."""
    out: list[Layer] = []
    if method:
        out.append(Layer("method", {"model": {"name": method}}))
    if dataset:
        out.append(Layer("dataset", {"data": {"name": dataset}}))
        found = _packaged_layer("dataset", "datasets", f"{dataset}.yaml")
        if found:
            out.append(found)
    if method:
        found = _packaged_layer("method", "methods", f"{method}.yaml")
        if found:
            out.append(found)
        if dataset:
            found = _packaged_layer("method on dataset", "methods", f"{method}.{dataset}.yaml")
            if found:
                out.append(found)
    out += [Layer(f"file: {f}", read_yaml(f)) for f in files or []]
    out += [Layer(f"--set {o}", _checked_override(tree_so_far(out), o)) for o in overrides or []]
    return out


def tree_so_far(parts: list[Layer]) -> dict[str, Any]:
    """The merged tree of ``parts``."""
    tree: dict[str, Any] = {}
    for layer in parts:
        tree = deep_merge(tree, layer.tree)
    return tree


def _checked_override(tree: dict[str, Any], assignment: str) -> dict[str, Any]:
    """``override_tree(assignment)``, refusing to descend into a key that holds a value in ``tree``."""
    over = override_tree(assignment)
    key = assignment.split("=", 1)[0].strip()
    node: Any = tree
    for p in [p for p in key.split(".") if p][:-1]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p!r} is a value, not a section")
    return over


def compose(method: str | None = None, dataset: str | None = None, files: list[str | Path] | None = None,
            overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw config tree of :func:`layers` (later layers win)."""
    return tree_so_far(layers(method, dataset, files, overrides))


# ------------------------------------------------------------------------------------------------ resolution
def resolve_loss_weights(cfg: Config) -> dict[str, float]:
    """Every term the model and its hooks can emit, with its weight: ``task`` 1, then each hook's and the model's
    ``default_loss_weights``, then the config's ``loss_weights``. A name no term has is a ConfigError naming it."""
    from accord.balance.params import declared_hook
    from accord.models.params import declared

    weights: dict[str, float] = {"task": 1.0}
    for request in model_hook_requests(cfg):
        weights.update(declared_hook(request.name)[1])
    for h in cfg.train.hooks:
        weights.update(declared_hook(h.name)[1])
    weights.update(declared(cfg.model.name).declaration.default_loss_weights)
    unknown = sorted(set(cfg.loss_weights) - set(weights))
    if unknown:
        raise ConfigError(f"loss_weights.{unknown[0]}: model {cfg.model.name!r} (and its hooks) emits no prediction "
                          f"or loss of that name; it emits {', '.join(sorted(weights))}")
    weights.update({k: float(v) for k, v in cfg.loss_weights.items()})
    return weights


def model_hook_requests(cfg: Config) -> list[Any]:
    """The hooks the configured model names (:meth:`accord.models.params.ModelDeclaration.required_hooks`)."""
    from accord.models.params import declared, validate_params

    params = validate_params(cfg.model.name, cfg.model.params)
    return list(declared(cfg.model.name).declaration.required_hooks(params))


def _check_hooks(cfg: Config) -> None:
    """Every hook of ``train.hooks`` and of the model exists and takes its parameters (checked against
    :mod:`accord.balance.params` for the built-in hooks, without torch)."""
    from accord.balance.params import declared_hook
    from accord.core.hooks import HookRequest, parse_hook_params

    for i, h in enumerate(cfg.train.hooks):
        parse_hook_params(HookRequest(h.name, h.params), declared_hook(h.name)[0], f"train.hooks.{i}")
    for request in model_hook_requests(cfg):
        parse_hook_params(request, declared_hook(request.name)[0], f"model {cfg.model.name!r} hook {request.name!r}")


def _check_metric(cfg: Config) -> None:
    """``train.early_stopping.metric`` is a registered metric (whether the dataset computes it is checked when the
    trainer has built the dataset, before the first epoch)."""
    from accord.evaluation.metric_specs import metric_spec

    name = cfg.train.early_stopping.metric
    if name is not None:
        try:
            metric_spec(name)
        except ConfigError as err:
            raise ConfigError(f"train.early_stopping.metric: {err}") from None


def validate(tree: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw tree into the RESOLVED :class:`Config` (every default of the model, the dataset and the
    loss weights filled in; see the module docstring). Resolving a resolved config changes nothing.

    A config of built-in methods, datasets and hooks is resolved from their torch-free declarations
    (:mod:`accord.models.params`, :mod:`accord.data.params`, :mod:`accord.balance.params`): validating it imports
    no torch. Any other name is looked up in its registry (importing the built-ins, hence torch)."""
    from accord.data.registry import validate_data_params
    from accord.models.params import declared, validate_params

    try:
        cfg = Config(**tree)
    except ValidationError as err:
        raise config_error(err, source=source) from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    try:
        fixed = declared(cfg.model.name).fixed
        params = validate_params(cfg.model.name, cfg.model.params).model_dump(mode="json")
        cfg.model.params = {k: v for k, v in params.items() if k not in fixed}
        cfg.data.params = validate_data_params(cfg.data.name, cfg.data.params).model_dump(mode="json")
        _check_hooks(cfg)
        cfg.loss_weights = resolve_loss_weights(cfg)
        _check_metric(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    method: str | None = None,
    dataset: str | None = None,
) -> Config:
    """Load and resolve a config from a YAML file and/or a method + dataset, then ``--set`` overrides."""
    files = [path] if path else []
    tree = compose(method, dataset, files, overrides)
    source = str(path) if path else (f"configs for {method or ''}/{dataset or ''}".strip("/"))
    return validate(tree, source)


# ------------------------------------------------------------------------------------------------ provenance
def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested mapping (lists and empty mappings are leaves)."""
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, tree


def _default_label(key: str, cfg: Config) -> str:
    """Where the code default of ``key`` lives."""
    from accord.data.registry import declared_data_params
    from accord.models.params import declared

    model = declared(cfg.model.name)
    if key.startswith("model.params."):
        return f"default: {model.owner}.Params"
    if key.startswith("data.params."):
        return f"default: {declared_data_params(cfg.data.name)[1]}"
    if key.startswith("loss_weights."):
        name = key.split(".", 1)[1]
        if name == "task":
            return "default: the task loss"
        if name in model.declaration.default_loss_weights:
            return f"default: {model.owner}.default_loss_weights"
        return "default: a hook's default_loss_weights"
    owner: type[BaseModel] = Config
    for part in key.split(".")[:-1]:
        ann = owner.model_fields[part].annotation if part in owner.model_fields else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        owner = ann
    return f"default: {owner.__module__}.{owner.__qualname__}"


def explain(method: str | None = None, dataset: str | None = None, files: list[str | Path] | None = None,
            overrides: list[str] | None = None) -> tuple[Config, list[tuple[str, Any, str]]]:
    """The resolved config and, for every value, ``(dotted key, value, layer it came from)`` (the highest layer
    that set it, else the code default that filled it)."""
    parts = layers(method, dataset, files, overrides)
    source = f"configs for {method or ''}/{dataset or ''}".strip("/")
    cfg = validate(tree_so_far(parts), source)
    origin: dict[str, str] = {}
    for layer in parts:
        for key, _ in _leaves(layer.tree):
            origin[key] = layer.label
    rows = []
    for key, value in _leaves(cfg.to_dict()):
        label = origin.get(key) or next((origin[k] for k in origin if k.startswith(f"{key}.")), None)
        rows.append((key, value, label or _default_label(key, cfg)))
    return cfg, rows


def show(method: str | None = None, dataset: str | None = None, files: list[str | Path] | None = None,
         overrides: list[str] | None = None) -> str:
    """The resolved config as YAML, each value followed by ``# <layer>`` (``accord config show``)."""
    _, rows = explain(method, dataset, files, overrides)
    lines: list[str] = []
    open_path: list[str] = []
    for key, value, label in rows:
        parts = key.split(".")
        common = 0
        while common < min(len(open_path), len(parts) - 1) and open_path[common] == parts[common]:
            common += 1
        for depth in range(common, len(parts) - 1):
            lines.append("  " * depth + f"{parts[depth]}:")
        open_path = parts[:-1]
        text = yaml.safe_dump({parts[-1]: value}, default_flow_style=True, sort_keys=False, width=10_000).strip()
        text = text[1:-1] if text.startswith("{") and text.endswith("}") else text
        lines.append(f"{'  ' * (len(parts) - 1)}{text:<{max(1, 48 - 2 * (len(parts) - 1))}}  # {label}")
    return "\n".join(lines) + "\n"
