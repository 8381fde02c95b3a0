"""The one trainer every method uses.

``Trainer(cfg).fit()`` trains one model per seed in ``cfg.train.seeds``, selects the checkpoint on the VALIDATION
split only, evaluates the selected checkpoint on valid and test, and writes the run directory
(:mod:`accord.core.rundir`)::

    <output.dir>/<name>/config.yaml          the resolved config
    <output.dir>/<name>/seed_<s>/log.jsonl   one line per epoch (and per step with train.log_every_steps)
    <output.dir>/<name>/seed_<s>/best.safetensors, last.pt, results.json, diagnostics.npz, <hook artifacts>.npz
    <output.dir>/<name>/summary.{json,csv,md} mean ± std over seeds, valid and test

The run directory is locked for the whole run (``<run_dir>/.lock``, :mod:`accord.core.lock`; under torchrun rank 0
holds it): a second run into the same directory, ``--overwrite`` included, is refused before anything is deleted.
A run that starts (or resumes) removes the temporary files a killed writer left behind
(:func:`accord.core.io.clean_dead_temps`).

One seed is a sequence of named steps (:meth:`Trainer.fit_seed`): **set up** (model, hooks, optimiser),
**restore** (``--resume``), then per epoch **train one epoch** (:meth:`Trainer.train_step` per batch), **validate**,
**select** (keep the best checkpoint), **checkpoint** (``last.pt``) and **log**; finally **evaluate** the selected
checkpoint. Every hook method is called once per event.

With ``train.seed_parallel`` (default ``auto``) the seeds are trained together as one vmapped model by
:mod:`accord.training.seed_parallel` through the same steps (its ``train_seconds`` per seed are each seed's share
of the group's epochs); where that cannot be done they are trained one by one as above.

The model returns a prediction plus named auxiliary predictions and UNWEIGHTED losses; the total loss is
``w_task · task(prediction) + Σ w_name · task(aux_prediction) + Σ w_name · loss + Σ w_name · hook_loss`` with each
weight read once from the resolved ``cfg.loss_weights`` (:func:`accord.config.resolve_loss_weights`). Per-sample
weights (``batch.extras["sample_weight"]``, QASA's quality scores) weight every term: the task losses, and each
per-sample ``[B]`` model or hook loss, reduced as ``Σ_i w_i l_i / max(Σ_i w_i, 1e-12)``
(:func:`accord.objectives.task.reduce_per_sample`); a scalar (batch-level) loss is taken as it is.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import accord.balance  # noqa: F401  (registers the trainer hooks: grad_monitor, conflict_penalty, ogm_ge, ...)
from accord.augment.modality_dropout import modality_dropout
from accord.config import Config, check_compile_mode, model_hook_requests, read_yaml, validate
from accord.core import rundir
from accord.core.errors import AccordError, CheckpointError, ConfigError, storage_error
from accord.core.hooks import HookRequest, StepState, TrainerHook, build_hook
from accord.core.io import atomic_write_text, clean_dead_temps, write_json, write_npz
from accord.core.lock import RunLock
from accord.core.types import Batch, ModelOutput
from accord.data.contract import check_regression_labels, class_counts, dataset_record
from accord.data.corrupt import apply_corruptions
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.registry import build_dataset
from accord.data.subset import apply_train_fraction
from accord.data.transfer import run_record
from accord.evaluation.baselines import CONSTANT_ROW, constant_value, constant_value_rows
from accord.evaluation.metrics import METRIC_ORDER, default_metric, metric_family, metric_spec
from accord.evaluation.sections import (
    confusion_markdown,
    confusion_matrix,
    dataset_markdown,
    seed_confusion,
    sum_confusions,
)
from accord.evaluation.summary import aggregate, aggregate_json, markdown_table, write_csv
from accord.models.base import AccordModel, create_model
from accord.objectives.task import reduce_per_sample, task_loss
from accord.training import threads
from accord.training.allocator import tune_malloc
from accord.training.checkpoint import load_state, load_weights, save_state, save_weights
from accord.training.distributed import allreduce_step, init_distributed, rank_device, shard_rows
from accord.training.evaluation import EvalResult, autocast, evaluate_split, predict_split
from accord.training.optim import Scheduler, make_optimizer, step_scheduler
from accord.training.seed_parallel import check_seed_parallel, fit_seed_group
from accord.training.text_tokens import prepare_inputs

__all__ = ["EvalResult", "Trainer", "evaluate_split", "load_model", "load_run", "predict_split", "resolve_device",
           "seed_everything"]

EpochCallback = Callable[[int, int, dict[str, Any]], None]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels.

    torch's deterministic mode also fills every new uninitialised tensor with NaN by default
    (``torch.utils.deterministic.fill_uninitialized_memory``), a pass over memory that every op then overwrites
    anyway: no Accord op reads memory it did not write (``new_empty(...).random_()`` and the like write every
    element first), so it is switched off, which torch's documentation gives as safe for such a program. Results are
    the same bit for bit; MOSI-U training steps took up to 23% less time (Self-MM;
    ``benchmarks/results/step_costs.json``, ``fill``).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device; a device that is not available is a one-line ConfigError."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} requested but MPS is not available on this machine")
    return dev


def out_dim_for(cfg: Config, ds: MultimodalDataset) -> int:
    """1 for regression; the number of classes for classification (the dataset must have class labels)."""
    if cfg.task.kind == "regression":
        return 1
    if not ds.class_names or ds.splits["train"].class_labels is None:
        raise ConfigError(f"task.kind: 'classification' but dataset {ds.name!r} has no class labels")
    return len(ds.class_names)


def load_run(run_dir: str | Path) -> tuple[Config, dict[str, Any]]:
    """A run directory's resolved config and its ``dataset.json`` (``{}`` when absent); errors name the file."""
    tree = rundir.read_config_tree(run_dir)
    cfg = validate(tree, str(Path(run_dir) / rundir.CONFIG))
    info = rundir.read_dataset_info(run_dir) if (Path(run_dir) / rundir.DATASET).is_file() else {}
    return cfg, info


def compile_model(model: AccordModel, backend: str) -> None:
    """``torch.compile`` ``model`` in place for ``train.compile`` and ``load_model(compile=...)`` (nothing for
    ``off``): dynamic shapes
    (varying batch sizes and sequence lengths share one graph) and duck shaping off, process-wide (with it, torch
    gives a length that happens to equal another size, a feature width say, the same symbol, then specialises both
    when the width is fixed by a weight, and rebuilds the graph at the next length: traced with the ``eager``
    backend, a 4-epoch TFN on ConflictBench was rebuilt at two new lengths; ``tests/test_precision.py``). The
    models' own length-dependent code takes compile-safe forms while compiling (e.g. ``TemporalConv1d.taps``), and
    the methods a model names in ``eager_methods`` run eagerly."""
    if backend == "off":
        return
    import torch.fx.experimental._config as fx_config

    fx_config.use_duck_shape = False
    for name in getattr(model, "eager_methods", ()):  # the model's deliberate graph breaks (this instance only)
        setattr(model, name, torch.compiler.disable(getattr(model, name)))
    model.compile(backend=backend, dynamic=True)


def load_model(run_dir: str | Path, seed: int | None = None, device: str | torch.device | None = None,
               compile: str = "off") -> AccordModel:
    """The selected checkpoint of one seed of a run (the first seed that has one when ``seed`` is None), rebuilt
    from the run's resolved config and ``dataset.json``, in eval mode on ``device`` (default: ``train.device``).

    ``compile`` (``off``, ``inductor``, ``eager``): ``torch.compile`` the loaded model in place, as ``train.compile``
    does (``dynamic=True``); the graphs are built on the first calls (tens of seconds with inductor), later calls
    run them (``benchmarks/results/compile_speed.md`` measures both)."""
    mode = check_compile_mode(compile, "compile")
    cfg, info = load_run(run_dir)
    if not info:
        raise CheckpointError(f"{run_dir}/{rundir.DATASET}: missing (needed to rebuild the model's input sizes)")
    folder = rundir.seed_dirs(run_dir, with_checkpoint=True)[0] if seed is None else rundir.seed_dir(run_dir, seed)
    if not (folder / rundir.BEST).is_file():
        raise CheckpointError(f"{folder}: no {rundir.BEST}")
    dev = resolve_device(str(device) if device is not None else cfg.train.device)
    model = create_model(cfg.model.name, info["dims"], int(info["out_dim"]), **cfg.model.params).to(dev)
    load_weights(model, folder / rundir.BEST, dev)
    compile_model(model.eval(), mode)
    return model


@dataclass
class SeedRun:
    """Everything one seed's training carries from step to step (and what ``last.pt`` saves)."""

    seed: int
    folder: Path
    model: AccordModel
    hooks: list[TrainerHook]
    opt: torch.optim.Optimizer
    sched: Scheduler | None
    state: StepState
    params: list[torch.nn.Parameter]
    start_epoch: int = 0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    elapsed: float = 0.0
    stopped_early: bool = False
    checked_names: bool = False
    scaler: torch.amp.GradScaler | None = None  # train.precision fp16 only
    window_loss: torch.Tensor | None = None  # train.accumulate_batches > 1: the window's weighted loss so far
    window_bad: list[str] = field(default_factory=list)  # ... and its non-finite terms so far


def _stackable(values: list[torch.Tensor]) -> bool:
    """Whether ``values`` are 0-d tensors of one dtype (the loss terms are), so one stack holds them all."""
    return bool(values) and all(v.dim() == 0 and v.dtype == values[0].dtype for v in values)


def scalar_values(terms: dict[str, torch.Tensor]) -> list[float]:
    """``float(v)`` of every term, in order, term by term (a term that is not one number is refused, as ``float``
    refuses it); :func:`read_terms` reads a training step's terms in one conversion instead."""
    return [float(v.detach()) for v in terms.values()]


def weighted(weight: float, loss: torch.Tensor) -> torch.Tensor:
    """``weight · loss``; ``loss`` itself at weight 1 (the usual weight: ``1.0 * x`` is ``x`` bit for bit, NaN and
    infinities included, and so is its gradient, so the multiplication and its backward would be two ops for
    nothing)."""
    return loss if weight == 1.0 else weight * loss


def read_terms(terms: dict[str, torch.Tensor]) -> tuple[list[float], list[str]]:
    """``(scalar_values(terms), non_finite_terms(terms))`` from ONE read of the stacked terms where they are 0-d
    tensors of one dtype (a training step's terms: the finiteness check and the epoch's sums read the same numbers,
    one op and one synchronisation for both); term by term, by those two functions, otherwise."""
    values = list(terms.values())
    if _stackable(values):
        with torch.no_grad():
            read: list[float] = torch.stack(values).tolist()
        return read, [k for k, x in zip(terms, read, strict=True) if not math.isfinite(x)]
    return scalar_values(terms), non_finite_terms(terms)


def non_finite_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    """The names of the terms that are NaN or infinite (any element, for a term of more than one), in order, term by
    term; :func:`read_terms` checks a training step's terms in one read instead."""
    return [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]


@dataclass
class EpochSums:
    """Running sums of one epoch: loss terms (weighted by batch size) and hook values (one count per step)."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add_term_values(self, names: list[str], values: list[float], n: int) -> None:
        """Add a batch of ``n`` samples' loss terms, already read as numbers (``values[i]`` of term ``names[i]``:
        :func:`read_terms`)."""
        for k, x in zip(names, values, strict=True):
            self.sums[f"loss/{k}"] += x * n
            self.counts[f"loss/{k}"] += n

    def add_values(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] += float(v)
            self.counts[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / max(1, self.counts[k]) for k in self.sums}


class Trainer:
    """Config-driven training of any registered model, over seeds, with selection on validation."""

    def __init__(
        self,
        cfg: Config,
        dataset: MultimodalDataset | None = None,
        hooks: Sequence[TrainerHook] = (),
        console: Console | None = None,
        progress: bool | None = None,
        eval_splits: Sequence[str] = ("valid", "test"),
    ) -> None:
        # a config built by hand is resolved here (a loaded one already is: resolving it again changes nothing)
        self.cfg = cfg = validate(cfg.to_dict(), "config")
        # splits the selected checkpoint is evaluated on; a hyper-parameter sweep's trials pass ("valid",) so
        # that test is never computed while searching
        bad_splits = sorted(set(eval_splits) - {"valid", "test"})
        if bad_splits or "valid" not in eval_splits:
            raise ConfigError(f"eval_splits: expected 'valid' and optionally 'test', got {list(eval_splits)}")
        self.eval_splits = tuple(eval_splits)
        self.dataset = dataset if dataset is not None else build_dataset(cfg.data.name, cfg.data.path,
                                                                         cfg.data.params)
        # data.train_fraction: keep a seeded share of the training groups (videos); idempotent, valid/test untouched
        self.dataset = apply_train_fraction(self.dataset, cfg.data.train_fraction, cfg.data.train_fraction_seed,
                                            cfg.data.train_fraction_by)
        # data.pool_time (modalities averaged over time once), then a pretrained text branch's tokens (stored ones
        # checked against its vocabulary, or the transcripts tokenized)
        self.dataset = prepare_inputs(self.dataset, cfg.data, cfg.model.params)
        self._augmented: SplitData | None = None  # QASA training split (augment section), built once per trainer
        self.extra_hooks = list(hooks)
        # hooks handed in by code (not by the config) bring their own losses, weighted by their class defaults
        self.loss_weights = {**{k: v for h in self.extra_hooks for k, v in h.default_loss_weights.items()},
                             **cfg.loss_weights}
        # torchrun (WORLD_SIZE > 1): join the process group; only rank 0 writes files and prints progress
        self.dist = init_distributed(cfg.train.device, cfg.train.distributed.backend,
                                     cfg.train.distributed.timeout_minutes)
        self.console = console or Console(stderr=True)
        self.progress = (self.console.is_terminal if progress is None else progress) and self.dist.is_main
        self.device = resolve_device(rank_device(cfg.train.device, self.dist))
        if cfg.train.precision == "fp16" and self.dist.enabled:  # the ranks' overflow skips are not synchronised
            raise ConfigError("train.precision: fp16 is not supported under torchrun yet (a rank's gradient scaler "
                              "could skip a step the others take); use bf16")
        self.out_dim = out_dim_for(cfg, self.dataset)
        if cfg.task.kind == "regression" and cfg.task.check_labels:  # 0/1 classes or an uncentred scale: stop
            check_regression_labels(self.dataset.splits["train"].labels.cpu().numpy(),
                                    f"dataset {self.dataset.name!r}, task.kind=regression")
        self.family = metric_family(cfg.task.kind, self.dataset.metric_family)
        self.metric = cfg.train.early_stopping.metric or default_metric(cfg.task.kind, self.dataset.metric_family)
        if self.metric not in self.computed_metrics():  # before any training, not after the first epoch
            raise ConfigError(f"train.early_stopping.metric: {self.metric!r} is not computed for "
                              f"{cfg.task.kind} on dataset {self.dataset.name!r} (metric family {self.family}); "
                              f"available: {', '.join(self.computed_metrics())}")
        self.mode = metric_spec(self.metric).direction
        self.run_dir = cfg.run_dir

    def computed_metrics(self) -> list[str]:
        """The metrics every evaluation of this task and dataset computes (those a selection metric may name)."""
        names = list(METRIC_ORDER[self.family])
        if self.cfg.task.kind == "classification":
            names += [f"F1_{c}" for c in self.dataset.class_names or []]
        return names

    # ------------------------------------------------------------------------------------------ building blocks
    def augmented_train_split(self) -> SplitData:
        """The training split with QASA augmentation (``augment`` section, :mod:`accord.augment.augmented`),
        built once per trainer; generator, scorer and scored samples go to ``<run_dir>/augment``."""
        if self._augmented is None:
            from accord.augment.augmented import augmented_train_split

            built = None
            if self.dist.is_main:  # distributed: rank 0 fits the generator once, the others receive the split
                built = augmented_train_split(self.cfg.augment, self.dataset, self.cfg.data.model_dump(mode="json"),
                                              save_dir=self.run_dir / "augment", log=self._say)
            self._augmented = self.dist.broadcast_object(built)
        assert self._augmented is not None
        return self._augmented

    def build_model(self) -> AccordModel:
        """A fresh model for this config and dataset, on the configured device; compiled in place with
        ``train.compile`` (``nn.Module.compile``: the parameters and state dict keys are the model's own)."""
        model = create_model(self.cfg.model.name, self.dataset.dims, self.out_dim,
                             **self.cfg.model.params).to(self.device)
        compile_model(model, self.cfg.train.compile)
        return model

    def build_hooks(self) -> list[TrainerHook]:
        """Fresh hooks for one seed: those the model names, then ``train.hooks``, then the ones handed in."""
        named = [build_hook(r, f"model {self.cfg.model.name!r} hook") for r in model_hook_requests(self.cfg)]
        configured = [build_hook(HookRequest(h.name, h.params), f"train.hooks.{i}")
                      for i, h in enumerate(self.cfg.train.hooks)]
        if self.cfg.train.compile != "off":
            twice = [h.name for h in [*named, *configured, *self.extra_hooks] if h.double_backward]
            if twice:
                raise ConfigError(f"train.compile={self.cfg.train.compile}: hook {twice[0]!r} needs double backward, "
                                  "which compiled graphs do not support; set train.compile=off")
        hooks = [*named, *configured, *self.extra_hooks]
        if self.cfg.train.accumulate_batches > 1:
            editing = [h.name for h in hooks if h.edits_gradients]
            if editing:
                raise ConfigError(f"train.accumulate_batches={self.cfg.train.accumulate_batches}: hook "
                                  f"{editing[0]!r} edits each batch's gradients, which accumulation would apply "
                                  "to a window's running sum; set train.accumulate_batches=1")
        return hooks

    def loss_terms(self, model: AccordModel, batch: Batch, out: ModelOutput,
                   extra_losses: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one step (``total`` is their sum); ``extra_losses`` are the hooks' losses."""
        terms = self.prediction_terms(batch, out)
        return self.add_loss_terms(terms, {**out.losses, **(extra_losses or {})}, batch.extras.get("sample_weight"))

    def prediction_terms(self, batch: Batch, out: ModelOutput) -> dict[str, torch.Tensor]:
        """The weighted task loss of the prediction (``task``) and of each auxiliary prediction.

        Per-sample weights: ``batch.extras["sample_weight"]`` (e.g. quality scores of generated samples) weights
        every task-loss term; ``out.aux_weights[name]`` further weights an auxiliary prediction's samples.
        """
        loss_name = self.cfg.task.loss_name
        sw = batch.extras.get("sample_weight")
        terms: dict[str, torch.Tensor] = {
            "task": weighted(self.weight("task"), task_loss(out.prediction, batch.label, loss_name, sw))}
        for name, aux in out.aux_predictions.items():
            w = self.weight(name)
            if w:
                aw = out.aux_weights.get(name)
                both = aw if sw is None else (sw if aw is None else sw * aw)
                terms[name] = weighted(w, task_loss(aux, batch.label, loss_name, both))
        return terms

    def add_loss_terms(self, terms: dict[str, torch.Tensor], losses: dict[str, torch.Tensor],
                       sample_weight: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Add the weighted model and hook ``losses`` to ``terms`` (in place) and their sum as ``total``.

        A per-sample loss ``[B]`` becomes the weighted mean with the batch's ``sample_weight`` (the plain mean
        without), a scalar stays as it is (:func:`~accord.objectives.task.reduce_per_sample`); runs under vmap."""
        for name, value in losses.items():
            w = self.weight(name)
            if w:
                terms[name] = weighted(w, reduce_per_sample(value, sample_weight))
        terms["total"] = torch.stack([v for v in terms.values()]).sum()
        return terms

    def weight(self, name: str) -> float:
        """The resolved weight of loss term ``name``; a term nothing declared is an error in the model or hook."""
        try:
            return float(self.loss_weights[name])
        except KeyError:
            raise ConfigError(f"model {self.cfg.model.name!r} or one of its hooks emitted the term {name!r}, which "
                              f"no default_loss_weights declares (declared: {', '.join(sorted(self.loss_weights))})"
                              ) from None

    def _better(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        delta = self.cfg.train.early_stopping.min_delta
        return value < best - delta if self.mode == "min" else value > best + delta

    def _say(self, text: str) -> None:
        if not self.dist.is_main:
            return
        if self.progress:
            self.console.log(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------------------- the run
    def open_run(self, resume: bool, overwrite: bool) -> RunLock:
        """Rank 0's start of a run: take the run directory's lock (a run in progress there is a one-line error
        naming it, raised before anything is deleted), remove the temporary files of dead writers, then
        :meth:`prepare_run_dir`. Returns the held lock (released by the caller; here on a failure)."""
        lock = RunLock(self.run_dir)
        note = lock.acquire()
        try:
            if note:
                self._say(note)
            self.clean_temps()
            self.prepare_run_dir(resume, overwrite)
        except BaseException:
            lock.release()
            raise
        return lock

    def clean_temps(self) -> None:
        """Remove the temporary files (``.<name>.<pid>.<hex>.tmp``) that writers killed between a write and its
        rename left in the run directory, its seed folders and ``augment/``; those of live writers stay."""
        folders = [self.run_dir, *rundir.seed_dirs(self.run_dir), self.run_dir / "augment"]
        removed = [p for folder in folders for p in clean_dead_temps(folder)]
        if removed:
            self._say(f"note: removed {len(removed)} temporary file(s) left by a killed writer: "
                      f"{', '.join(str(p) for p in removed)}")

    def prepare_run_dir(self, resume: bool, overwrite: bool) -> None:
        """Create the run directory; refuse to clobber an existing run unless resuming or overwriting."""
        rd = self.run_dir
        try:
            existing = rd.is_dir() and any(p.name != rundir.LOCK for p in rd.iterdir())
        except OSError as err:
            raise storage_error(rd, err, "list the run directory") from None
        if existing and not (resume or overwrite):
            raise CheckpointError(f"{rd}: run directory exists; pass --resume to continue it or --overwrite to "
                                  f"start over")
        if existing and overwrite and not resume:
            _empty_dir(rd, keep=rundir.LOCK)
        if resume and (rd / rundir.CONFIG).is_file():
            # compare through the current schema, so a key added to Accord later (with its default) does not
            # block resuming a run made before it existed
            old = validate(read_yaml(rd / rundir.CONFIG), str(rd / rundir.CONFIG)).to_dict()
            new = self.cfg.to_dict()
            if old != new:
                diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise CheckpointError(f"{rd}/{rundir.CONFIG}: differs from the config given to --resume (section "
                                      f"{', '.join(diff)}); resume with the same config or start a new run")
        _mkdir(rd)
        atomic_write_text(rd / rundir.CONFIG, self.cfg.to_yaml())
        counts = self.class_counts()
        write_json(rd / rundir.DATASET, self.dataset_info())
        if counts:  # class imbalance, reported before training: the majority class is what a constant scores
            train = counts["train"]
            top = max(train, key=lambda c: train[c])
            share = 100.0 * train[top] / max(sum(train.values()), 1)
            self.console.print(f"classes in train: {', '.join(f'{c} {n}' for c, n in train.items())}; majority "
                               f"{top!r} is {share:.1f}% (a constant predictor's accuracy on a split like it)",
                               markup=False, highlight=False)

    def dataset_info(self) -> dict[str, Any]:
        """What ``dataset.json`` records: input dims, classes, metric family, source and ``data.path``, the dataset
        section's per-split record (:func:`~accord.data.contract.dataset_record`: samples, absent-modality shares,
        class counts) and the trivial predictor's value (``constant_prediction``: train mean or majority class)."""
        names = self.dataset.class_names if self.cfg.task.kind == "classification" else []
        return {"name": self.dataset.name, "dims": self.dataset.dims, "out_dim": self.out_dim,
                "class_names": self.dataset.class_names, "metric_family": self.dataset.metric_family,
                "source": self.dataset.source, "path": self.cfg.data.path, **run_record(self.dataset),
                **dataset_record(self.dataset.splits, names or []),
                "constant_prediction": constant_value(self._labels("train"), self.cfg.task.kind, self.out_dim)}

    def _labels(self, split: str) -> np.ndarray:
        """The labels of ``split`` the task scores: class indices (classification) or scores (regression)."""
        part = self.dataset.splits[split]
        y = part.class_labels if self.cfg.task.kind == "classification" and part.class_labels is not None \
            else part.labels
        return y.cpu().numpy()

    def constant_rows(self, seeds: int) -> dict[str, dict[str, tuple[float, float, int]]]:
        """The trivial-baseline row (:mod:`accord.evaluation.baselines`) on each evaluated split."""
        value = constant_value(self._labels("train"), self.cfg.task.kind, self.out_dim)
        return constant_value_rows(value, {s: self._labels(s) for s in self.eval_splits}, self.cfg.task.kind,
                                   self.dataset.metric_family, self.dataset.class_names or [], seeds)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class name: samples}}`` for a classification run (``{}`` for regression)."""
        names = self.dataset.class_names
        if self.cfg.task.kind != "classification" or not names:
            return {}
        return class_counts(self.dataset.splits, names)

    def fit(self, resume: bool = False, overwrite: bool = False, on_epoch: EpochCallback | None = None
            ) -> dict[str, Any]:
        """Train every seed (resuming finished/partial seeds with ``resume``) and write the summary.

        Rank 0 holds the run directory's lock from the start (:meth:`open_run`) to the end, whatever the exit
        (normal end, an error, KeyboardInterrupt)."""
        lock: RunLock | None = None
        if self.cfg.train.malloc == "tuned":  # large buffers reused between steps (training/allocator.py)
            tune_malloc()
        with threads.using(self.cfg.train.num_threads):  # null: the thread policy's default (training/threads.py)
            try:
                failure: AccordError | None = None
                if self.dist.is_main:
                    try:
                        lock = self.open_run(resume, overwrite)
                    except AccordError as err:
                        failure = err
                failure = self.dist.broadcast_object(failure)  # every rank stops with rank 0's error
                if failure is not None:
                    raise failure
                if check_seed_parallel(self, resume):  # train.seed_parallel: the seeds as one vectorised model
                    results = fit_seed_group(self, resume, on_epoch)
                else:
                    results = [self.fit_seed(seed, resume=resume, on_epoch=on_epoch) for seed in self.cfg.train.seeds]
                return self.write_summary(results)
            finally:
                if lock is not None:
                    lock.release()

    def fit_seed(self, seed: int, resume: bool = False, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
        """Train one seed; returns its results dict (also written to ``seed_<s>/results.json``)."""
        finished = self.finished_results(seed, resume)
        if finished is not None:
            return finished
        run = self.setup_seed(seed)
        self.restore(run, resume)
        for hook in run.hooks:
            hook.on_fit_start(run.model, run.state)
        train_split, valid_split = self.dataset["train"], self.dataset["valid"]
        if self.cfg.augment.enabled:  # QASA: + K generated (or noise) rows per real row, weighted in the task loss
            train_split = self.augmented_train_split()
        prog = self._progress()
        task_id = prog.add_task(f"seed {seed}", total=self.cfg.train.epochs, completed=run.start_epoch) \
            if prog else None
        try:
            for epoch in range(run.start_epoch, self.cfg.train.epochs):
                t0 = time.perf_counter()
                sums = self.train_epoch(run, epoch, train_split)
                valid = self.evaluate_valid(run.model, valid_split)
                score, improved = self.select(run, epoch, valid)
                step_scheduler(run.sched, score)
                run.elapsed += time.perf_counter() - t0
                record = self.epoch_record(run, epoch, time.perf_counter() - t0, run.opt.param_groups[0]["lr"], sums,
                                           valid, improved)
                self.log_epoch(run, record)
                stop = run.bad_epochs >= self.cfg.train.early_stopping.patience
                self.checkpoint(run, epoch, stop)
                self.show_progress(run, record, score, prog, task_id)
                if on_epoch is not None:
                    on_epoch(seed, epoch, record)
                if stop:
                    run.stopped_early = True
                    break
        finally:
            if prog is not None:
                prog.stop()
        return self.finish_seed(run.model, run.folder, seed, run.best_epoch, run.elapsed, run.stopped_early)

    # -------------------------------------------------------------------------------------------- named steps
    def finished_results(self, seed: int, resume: bool) -> dict[str, Any] | None:
        """With ``resume``, the results of a seed that finished earlier (rank 0 reads, every rank gets them)."""
        sd = rundir.seed_dir(self.run_dir, seed)
        finished: dict[str, Any] | None = None
        failure: AccordError | None = None
        if self.dist.is_main:
            try:
                _mkdir(sd)
                if resume and (sd / rundir.RESULTS).is_file():
                    finished = rundir.read_results(sd, required=("seed", *self.eval_splits, "train_seconds"))
                    self._say(f"seed {seed}: finished earlier, kept ({sd / rundir.RESULTS})")
            except AccordError as err:
                failure = err
        finished, failure = self.dist.broadcast_object((finished, failure))  # every rank stops with rank 0's error
        if failure is not None:
            raise failure
        return finished

    def setup_seed(self, seed: int) -> SeedRun:
        """Seed everything, build the model (identical on every rank), its hooks, optimiser and step state."""
        seed_everything(seed, self.cfg.train.deterministic)
        model = self.build_model()
        self.dist.broadcast_module(model)  # identical replicas (they are seeded alike; this makes it certain)
        if self.dist.rank > 0:  # dropout and other training randomness: a different stream per rank
            torch.manual_seed(seed * 1_000_003 + self.dist.rank)
        hooks = self.build_hooks()
        opt, sched = make_optimizer(model, self.cfg.train, self.mode)
        state = StepState(seed=seed, task_kind=self.cfg.task.kind, task_loss=self.cfg.task.loss_name,
                          loss_weights=dict(self.loss_weights), rank=self.dist.rank,
                          world_size=self.dist.world_size)
        scaler = torch.amp.GradScaler(self.device.type) if self.cfg.train.precision == "fp16" else None
        return SeedRun(seed=seed, folder=rundir.seed_dir(self.run_dir, seed), model=model, hooks=hooks, opt=opt,
                       sched=sched, state=state, params=[p for p in model.parameters() if p.requires_grad],
                       scaler=scaler)

    def restore(self, run: SeedRun, resume: bool) -> None:
        """With ``resume``, continue from ``last.pt`` (model, optimiser, schedule, RNG, selection state); without,
        start a fresh log."""
        ck: dict[str, Any] | None = None
        failure: AccordError | None = None
        last = run.folder / rundir.LAST
        if self.dist.is_main and resume and last.is_file():
            try:
                ck = load_state(last)  # validated: a damaged file or a missing key is a one-line error
            except AccordError as err:
                failure = err
        # rank 0 reads; other machines need no shared filesystem; every rank stops with rank 0's error
        ck, failure = self.dist.broadcast_object((ck, failure))
        if failure is not None:
            raise failure
        if ck is None:
            if self.dist.is_main:
                _unlink(run.folder / rundir.LOG)
            return
        try:
            self._load_state_dicts(run, ck)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise CheckpointError(f"{last}: training state does not fit this run's model or optimiser ({first}); "
                                  f"start the run over with --overwrite") from None
        run.start_epoch, run.best_epoch = int(ck["epoch"]) + 1, int(ck["best_epoch"])
        run.bad_epochs = int(ck["bad_epochs"])
        run.best = None if ck["best"] is None else float(ck["best"])
        run.state.step, run.elapsed = int(ck["step"]), float(ck["elapsed"])
        if bool(ck.get("stopped", False)):  # early stopping had fired; only the final evaluation is left
            run.start_epoch, run.stopped_early = self.cfg.train.epochs, True
        if self.dist.is_main:
            _truncate_log(run.folder / rundir.LOG, int(ck["epoch"]))
        self._say(f"seed {run.seed}: resuming after epoch {int(ck['epoch']) + 1} from {last}")

    def _load_state_dicts(self, run: SeedRun, ck: dict[str, Any]) -> None:
        """Model, optimiser, schedule and RNG state from a training state (this rank's RNG stream)."""
        run.model.load_state_dict(ck["model"])
        run.opt.load_state_dict(ck["optimizer"])
        if run.sched is not None and ck.get("scheduler") is not None:
            run.sched.load_state_dict(ck["scheduler"])
        if run.scaler is not None and ck.get("scaler"):
            run.scaler.load_state_dict(ck["scaler"])
        rngs = ck.get("rng_torch_ranks")
        if rngs is not None and len(rngs) == self.dist.world_size:
            torch.set_rng_state(rngs[self.dist.rank])
        elif self.dist.is_main:
            torch.set_rng_state(ck["rng_torch"])

    def train_epoch(self, run: SeedRun, epoch: int, train_split: SplitData) -> EpochSums:
        """One pass over the shuffled training split (the order and modality dropout seeded by seed and epoch)."""
        t = self.cfg.train
        run.state.epoch = epoch
        run.model.train()
        sums = EpochSums()
        for window in self.epoch_windows(train_split, run.seed, epoch):
            n_window = sum(b.size for b in window)
            for i, batch in enumerate(window):
                n_global = batch.size
                if self.dist.enabled:  # this rank's contiguous slice of the global batch
                    batch = batch.select(shard_rows(n_global, self.dist))
                batch = batch.to(self.device)
                share = batch.size / n_window if t.accumulate_batches > 1 else None
                terms, values, logged = self.train_step(run, batch, n_global, share=share, first=i == 0,
                                                        last=i == len(window) - 1)
                sums.add_term_values(list(terms), values, batch.size)
                sums.add_values(logged)
                if self.dist.is_main and terms and t.log_every_steps and run.state.step % t.log_every_steps == 0:
                    _append_log(run.folder / rundir.LOG, {"type": "step", "epoch": epoch + 1,
                                                          "step": run.state.step,
                                                          **{k: float(v.detach()) for k, v in terms.items()},
                                                          **logged})
        if self.dist.enabled:  # epoch means over all ranks' samples (loss) and steps (hook values)
            sums = self._merge_epoch_sums(sums)
        return sums

    def epoch_batches(self, split: SplitData, seed: int, epoch: int) -> Iterator[Batch]:
        """``seed``'s training batches of ``epoch``: ``split`` shuffled (and length-bucketed with
        ``train.bucket_by_length``) by a generator seeded with seed and epoch, ``train.modality_dropout`` drawn from
        a second one. A seed trained alone and a seed of a seed-parallel group both read their batches here."""
        t = self.cfg.train
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        drop_gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000_017)
        for batch in split.iter_batches(t.batch_size, shuffle=True, generator=gen, task=self.cfg.task.kind,
                                        bucket=t.bucket_by_length, trim=t.dynamic_padding):
            yield modality_dropout(batch, t.modality_dropout, drop_gen) if t.modality_dropout else batch

    def epoch_windows(self, split: SplitData, seed: int, epoch: int) -> Iterator[list[Batch]]:
        """:meth:`epoch_batches` in windows of ``train.accumulate_batches`` consecutive batches (one optimiser step
        each; the epoch's last window may be shorter, and no window spans two epochs, so resuming at an epoch
        boundary continues exactly)."""
        k = self.cfg.train.accumulate_batches
        window: list[Batch] = []
        for batch in self.epoch_batches(split, seed, epoch):
            window.append(batch)
            if len(window) == k:
                yield window
                window = []
        if window:
            yield window

    def train_step(self, run: SeedRun, batch: Batch, n_global: int, share: float | None = None,
                   first: bool = True, last: bool = True
                   ) -> tuple[dict[str, torch.Tensor], list[float], dict[str, float]]:
        """Forward, weighted loss, backward, hooks, (distributed) gradient reduce, clipping and the optimiser step.

        With gradient accumulation (``share``: this batch's fraction of its window's samples, counted over all
        ranks) the backward pass reads ``share`` · total loss, the gradients are zeroed at the window's ``first``
        batch only, and the reduce, clipping and optimiser step run after its ``last``. ``share=None`` is one batch
        per step. Returns the batch's weighted loss terms, their values as numbers (read once, for the finiteness
        check and the epoch's sums) and the values hooks (and clipping) logged.
        """
        if first:
            run.opt.zero_grad(set_to_none=True)
            run.window_loss, run.window_bad = None, []
        terms, values, logged, bad_terms = self._forward_backward(run, batch, share, last)
        self._write_hook_records(run)
        if last:  # (accumulating: the window's step comes after its last batch)
            self._update(run, batch, n_global, terms, bad_terms, share, logged)
        run.state.step += 1
        return terms, values, logged

    def _forward_backward(self, run: SeedRun, batch: Batch, share: float | None,
                          last: bool) -> tuple[dict[str, torch.Tensor], list[float], dict[str, float], list[str]]:
        """:meth:`train_step`'s forward, weighted loss terms, finiteness check, backward (of ``share`` · total when
        accumulating) and the hooks' ``after_backward``; returns the terms, their values, the hooks' values and the
        non-finite terms (which only stop the run here in one process: under torchrun the reduce decides, on every
        rank)."""
        state, seed, epoch = run.state, run.seed, run.state.epoch
        terms: dict[str, torch.Tensor] = {}
        logged: dict[str, float] = {}
        bad_terms: list[str] = []
        if not batch.size:  # a rank's slice of a tiny last batch can be empty: it only joins the reduce
            return terms, [], logged, bad_terms
        with autocast(self.cfg, self.device):  # train.precision (a no-op for fp32)
            out = run.model(batch)
            terms = self.prediction_terms(batch, out)
            extra: dict[str, torch.Tensor] = {}
            for hook in run.hooks:  # once per step, after the prediction terms (the graph's order is kept)
                extra.update(hook.extra_losses(run.model, batch, out))
            if not run.checked_names:
                for name in [*out.losses, *extra]:
                    self.weight(name)  # a term nothing declared fails on the first step, naming it
                run.checked_names = True
            self.add_loss_terms(terms, {**out.losses, **extra}, batch.extras.get("sample_weight"))
        values, bad_terms = read_terms(terms)
        if bad_terms and not self.dist.enabled:
            raise FloatingPointError(f"seed {seed} epoch {epoch + 1} step {state.step}: non-finite loss in "
                                     f"{', '.join(bad_terms)} (lower train.lr or check inputs)")
        loss = terms["total"] if share is None else terms["total"] * share
        if share is not None:
            run.window_loss = loss.detach() if run.window_loss is None else run.window_loss + loss.detach()
            run.window_bad += [k for k in bad_terms if k not in run.window_bad]
        if run.scaler is not None:  # fp16: scaled backward, true gradients again before the hooks see them
            # (accumulating: only after the window's last batch; earlier hooks see scaled running sums)
            run.scaler.scale(loss).backward()
            if last:  # (once per optimiser step: unscale_ may run once before scaler.step)
                run.scaler.unscale_(run.opt)
        else:
            loss.backward()
        state.loss_terms = {k: v.detach() for k, v in terms.items()}
        for hook in run.hooks:
            logged.update(hook.after_backward(run.model, batch, out, state))
        return terms, values, logged, bad_terms

    def _update(self, run: SeedRun, batch: Batch, n_global: int, terms: dict[str, torch.Tensor],
                bad_terms: list[str], share: float | None, logged: dict[str, float]) -> None:
        """:meth:`train_step`'s (distributed) gradient reduce, clipping (its norm into ``logged``) and optimiser
        step, after a batch or, accumulating (``share`` not None), after a window's last batch."""
        state, seed, epoch = run.state, run.seed, run.state.epoch
        if self.dist.enabled:  # Σ_r (n_r/N)·g_r after the hooks; the global loss rides along
            if share is None:
                total = allreduce_step(run.params, batch.size / n_global, terms.get("total"), self.dist)
            else:  # each rank's gradient already carries its samples' share of the window: a plain sum
                total, bad_terms = allreduce_step(run.params, 1.0, run.window_loss, self.dist), run.window_bad
            if not math.isfinite(total):
                where = f"in {', '.join(bad_terms)} on rank {self.dist.rank}" if bad_terms else "on another rank"
                raise FloatingPointError(f"seed {seed} epoch {epoch + 1} step {state.step}: non-finite "
                                         f"loss {where} (lower train.lr or check inputs)")
        t = self.cfg.train
        if t.grad_clip and t.grad_clip_mode == "value":
            torch.nn.utils.clip_grad_value_(run.params, t.grad_clip)
        elif t.grad_clip:
            logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(run.params, t.grad_clip))
        if run.scaler is not None:  # skips the step when a gradient overflowed, and adapts the scale
            run.scaler.step(run.opt)
            run.scaler.update()
        else:
            run.opt.step()

    def _write_hook_records(self, run: SeedRun) -> None:
        """Append the log lines hooks emitted this step (rank 0) and clear the step's shared values."""
        if self.dist.is_main:
            for rec in run.state.records:
                _append_log(run.folder / rundir.LOG, rec)
        run.state.records.clear()
        run.state.shared.clear()

    def select(self, run: SeedRun, epoch: int, valid: EvalResult) -> tuple[float, bool]:
        """Checkpoint selection on the validation metric: keep ``best.safetensors`` when it improves.

        Returns ``(score, improved)``.
        """
        return self.select_score(run, epoch, valid, run.model)

    def select_score(self, run: Any, epoch: int, valid: EvalResult, model: AccordModel) -> tuple[float, bool]:
        """:meth:`select` for any seed state with ``best``, ``best_epoch``, ``bad_epochs`` and ``folder`` (a
        sequential :class:`SeedRun` or a seed of a seed-parallel group), saving ``model`` when it improves."""
        if self.metric not in valid.metrics:
            raise ConfigError(f"train.early_stopping.metric: {self.metric!r} is not computed for this task; "
                              f"available: {', '.join(valid.metrics)}")
        score = valid.metrics[self.metric]
        improved = self._better(score, run.best)
        if improved:
            run.best, run.best_epoch, run.bad_epochs = score, epoch, 0
            if self.dist.is_main:
                save_weights(model, run.folder / rundir.BEST)
        else:
            run.bad_epochs += 1
        return score, improved

    def evaluate_valid(self, model: AccordModel, split: SplitData) -> EvalResult:
        """The epoch's validation of ``model`` (every rank gets the same metrics)."""
        return evaluate_split(model, split, self.cfg, self.dataset, self.device, self.dist)

    def append_log(self, path: Path, record: dict[str, Any]) -> None:
        """One line of a seed's ``log.jsonl`` (rank 0 writes)."""
        if self.dist.is_main:
            _append_log(path, record)

    def hook_names(self) -> list[str]:
        """The names of the hooks every seed of this run gets (the model's, ``train.hooks``, the handed-in ones)."""
        return [*(r.name for r in model_hook_requests(self.cfg)), *(h.name for h in self.cfg.train.hooks),
                *(h.name for h in self.extra_hooks)]

    def finish_seed(self, model: AccordModel, folder: Path, seed: int, best_epoch: int, elapsed: float,
                    stopped_early: bool) -> dict[str, Any]:
        """Load a seed's selected checkpoint into ``model`` and run :meth:`final_evaluation` on it."""
        best = folder / rundir.BEST
        if not self.dist.broadcast_object(best.is_file()):
            raise CheckpointError(f"{folder}: no epoch produced a finite validation {self.metric}; nothing to "
                                  f"select")
        if self.dist.is_main:
            load_weights(model, best, self.device)
        self.dist.broadcast_module(model)
        return self.final_evaluation(model, folder, seed, best_epoch, elapsed, stopped_early)

    def epoch_record(self, run: Any, epoch: int, seconds: float, lr: float, sums: EpochSums, valid: EvalResult,
                     improved: bool) -> dict[str, Any]:
        """The epoch's ``log.jsonl`` line: losses and hook values (epoch means), validation metrics, selection
        (``run``: a sequential :class:`SeedRun` or a seed of a seed-parallel group, with ``best`` and
        ``best_epoch``)."""
        return {
            "type": "epoch", "epoch": epoch + 1, "seconds": round(seconds, 4), "lr": lr,
            **sums.means(),
            **{f"valid/{k}": v for k, v in valid.metrics.items()},
            "best": run.best, "best_epoch": run.best_epoch + 1, "improved": improved,
        }

    def checkpoint(self, run: SeedRun, epoch: int, stop: bool) -> None:
        """Write ``last.pt``: everything :meth:`restore` needs, every rank's RNG state."""
        rng_ranks = self.dist.all_gather_object(torch.get_rng_state())
        if not self.dist.is_main:
            return
        save_state({
            "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict() if run.sched is not None else None,
            "rng_torch": torch.get_rng_state(), "rng_torch_ranks": rng_ranks, "epoch": epoch,
            "best": run.best, "best_epoch": run.best_epoch, "bad_epochs": run.bad_epochs, "step": run.state.step,
            "elapsed": run.elapsed, "stopped": stop,
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        }, run.folder / rundir.LAST)

    def log_epoch(self, run: SeedRun, record: dict[str, Any]) -> None:
        """The epoch's line in ``log.jsonl``, the hooks' ``on_epoch_end`` and their artifacts (rank 0 writes)."""
        if self.dist.is_main:
            _append_log(run.folder / rundir.LOG, record)
        for hook in run.hooks:
            hook.on_epoch_end(record["epoch"] - 1, record)
        if self.dist.is_main:
            for hook in run.hooks:
                for stem, arrays in hook.artifacts().items():
                    write_npz(run.folder / f"{stem}.npz", arrays)

    def show_progress(self, run: Any, record: dict[str, Any], score: float, prog: Progress | None,
                      task_id: Any) -> None:
        """Advance the progress bar, or print the epoch's line to stderr (rank 0)."""
        if prog is not None and task_id is not None:
            prog.update(task_id, advance=1, description=f"seed {run.seed} · {self.metric} {score:.3f}")
        elif self.dist.is_main:
            best = run.best if run.best is None else round(run.best, 4)
            print(f"seed {run.seed} epoch {record['epoch']}/{self.cfg.train.epochs} loss "
                  f"{record.get('loss/total', 0):.4f} valid {self.metric} {score:.4f} (best {best} @ "
                  f"{run.best_epoch + 1}) {record['seconds']:.1f}s", file=sys.stderr, flush=True)

    def final_evaluation(self, model: AccordModel, sd: Path, seed: int, best_epoch: int, elapsed: float,
                         stopped_early: bool) -> dict[str, Any]:
        """Evaluate the selected checkpoint on valid and test; write results.json and diagnostics.npz."""
        cfg = self.cfg
        out: dict[str, Any] = {
            "seed": seed, "method": cfg.model.name, "dataset": self.dataset.name, "task": cfg.task.kind,
            "selection_metric": self.metric, "best_epoch": best_epoch + 1, "stopped_early": stopped_early,
            "train_seconds": round(elapsed, 3),
            "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "torch_threads": torch.get_num_threads(),  # float reductions reorder with it (training/threads.py)
            "pid": os.getpid(),  # the process that trained it (a study's worker, accord.studies.parallel)
        }
        arrays: dict[str, np.ndarray] = {}
        for split in self.eval_splits:
            part = self.dataset[split]
            if cfg.data.corruption:
                part = apply_corruptions(part, cfg.data.corruption)
            res = evaluate_split(model, part, cfg, self.dataset, self.device, self.dist)
            out[split] = res.metrics
            arrays[f"{split}/prediction"] = res.predictions
            arrays[f"{split}/label"] = res.labels
            arrays[f"{split}/id"] = np.array(res.ids)
            for k, v in res.diagnostics.items():
                arrays[f"{split}/{k}"] = v
            for k, t in part.extras.items():
                arrays[f"{split}/extra_{k}"] = t.numpy()
            if cfg.task.kind == "classification":  # counts, rows = true class (sections.confusion_matrix)
                out.setdefault("confusion", {})[split] = confusion_matrix(res.predictions, res.labels,
                                                                          self.out_dim).tolist()
        if self.dist.enabled:  # the replicas must have stayed identical (one reduced gradient, same optimiser steps)
            digests = self.dist.all_gather_object([float(p.detach().double().sum()) for p in model.parameters()])
            out["world_size"] = self.dist.world_size
            out["replicas_in_sync"] = all(d == digests[0] for d in digests)
            if not out["replicas_in_sync"]:
                raise RuntimeError(f"seed {seed}: distributed replicas diverged (parameter sums differ across ranks)")
        if not self.dist.is_main:
            return out
        write_json(sd / rundir.RESULTS, out)
        write_npz(sd / rundir.DIAGNOSTICS, arrays)
        return out

    def write_summary(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Write summary.json/csv/md (mean ± std over seeds for valid and test, the trivial-baseline row, the test
        confusion matrix summed over seeds for classification, the dataset section) and return the summary."""
        rows = {split: aggregate([r[split] for r in results]) for split in self.eval_splits}
        last = self.eval_splits[-1]
        metrics = [m for m in METRIC_ORDER[self.family] if m in rows[last]]
        metrics += [m for m in rows[last] if m not in metrics]
        constant = self.constant_rows(len(results))
        confusion = self.summed_confusion(results)
        summary = {
            "name": self.cfg.run_name, "method": self.cfg.model.name, "dataset": self.dataset.name,
            "seeds": [r["seed"] for r in results], "selection_metric": self.metric,
            **{split: aggregate_json(rows[split]) for split in self.eval_splits},
            "constant_predictor": {split: aggregate_json(constant[split]) for split in self.eval_splits},
            **({"confusion": confusion} if confusion else {}),
            "train_seconds": float(np.mean([r["train_seconds"] for r in results])),
        }
        if not self.dist.is_main:
            return summary
        write_json(self.run_dir / rundir.SUMMARY, summary)
        shown = {**rows, **{f"{split}: {CONSTANT_ROW}": constant[split] for split in self.eval_splits}}
        write_csv(self.run_dir / "summary.csv", shown, metrics)
        table = markdown_table(shown, metrics, first_col="split", bold_best=False)
        header = (f"# {self.cfg.run_name}\n\nmethod `{self.cfg.model.name}` on `{self.dataset.name}`, "
                  f"{len(results)} seed(s), checkpoint selected on validation {self.metric}.\n\n")
        parts = [header + table]
        if confusion and last in confusion:
            parts.append(confusion_markdown(confusion[last], confusion["class_names"],
                                            f"Confusion matrix on {last}, counts summed over {len(results)} seed(s) "
                                            "(rows: true class, columns: predicted class):"))
        parts.append(dataset_markdown(self.dataset_info(), "## Dataset"))
        atomic_write_text(self.run_dir / "summary.md", "\n".join(parts) + "\n")
        return summary

    def summed_confusion(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """``{"class_names": [...], split: counts summed over seeds}`` of a classification run (``{}`` for
        regression); a seed that finished before confusion matrices were recorded is read from its diagnostics."""
        if self.cfg.task.kind != "classification":
            return {}
        out: dict[str, Any] = {"class_names": list(self.dataset.class_names or [])}
        for split in self.eval_splits:
            found = [seed_confusion(r, rundir.seed_dir(self.run_dir, int(r["seed"])), split, self.out_dim)
                     for r in results]
            total = sum_confusions([m for m in found if m is not None])
            if total is not None:
                out[split] = total.tolist()
        return out

    def _merge_epoch_sums(self, sums: EpochSums) -> EpochSums:
        """Sum the per-rank running sums and counts of an epoch (every rank gets the same totals)."""
        merged = EpochSums()
        for s, c in self.dist.all_gather_object((dict(sums.sums), dict(sums.counts))):
            for k, v in s.items():
                merged.sums[k] += v
            for k, v in c.items():
                merged.counts[k] += v
        return merged

    def _progress(self) -> Progress | None:
        if not self.progress:
            return None
        prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=False)
        prog.start()
        return prog


def _append_log(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to a ``log.jsonl`` (a refusal of the system is a one-line StorageError)."""
    line = json.dumps(record, default=float) + "\n"
    try:
        with path.open("a") as f:
            f.write(line)
            f.flush()
    except OSError as err:
        raise storage_error(path, err, "append to the log") from None


def _mkdir(folder: Path) -> None:
    """``mkdir -p`` (a refusal of the system is a one-line StorageError)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(folder, err, "create the folder") from None


def _unlink(file: Path) -> None:
    """Remove ``file`` if it exists (a refusal of the system is a one-line StorageError)."""
    try:
        file.unlink(missing_ok=True)
    except OSError as err:
        raise storage_error(file, err, "remove") from None


def _empty_dir(folder: Path, keep: str) -> None:
    """Delete everything in ``folder`` but the entry named ``keep`` (``--overwrite``: the run lock stays)."""
    try:
        for p in folder.iterdir():
            if p.name == keep:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    except OSError as err:
        raise storage_error(err.filename or folder, err, "delete (--overwrite)") from None


def _truncate_log(path: Path, last_epoch: int) -> None:
    """Keep only log lines of epochs up to ``last_epoch`` (0-based) when resuming."""
    if not path.is_file():
        return
    keep = []
    try:
        text = path.read_text()
    except OSError as err:
        raise storage_error(path, err, "read the log") from None
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the interruption
        if int(rec.get("epoch", 0)) <= last_epoch + 1:  # log epochs are 1-based
            keep.append(line)
    atomic_write_text(path, "\n".join(keep) + ("\n" if keep else ""))
