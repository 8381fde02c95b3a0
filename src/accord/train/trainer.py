"""The one trainer every method uses.

``Trainer(cfg).fit()`` trains one model per seed in ``cfg.train.seeds``, selects the checkpoint on the VALIDATION
split only, evaluates the selected checkpoint on valid and test, and writes the run directory::

    <output.dir>/<name>/config.yaml          the resolved config
    <output.dir>/<name>/seed_<s>/log.jsonl   one line per epoch (and per step with train.log_every_steps)
    <output.dir>/<name>/seed_<s>/best.safetensors, last.pt, results.json, diagnostics.npz
    <output.dir>/<name>/summary.{json,csv,md} mean ± std over seeds, valid and test

The model returns a prediction plus named auxiliary predictions and losses; the total loss is
``w_task · task(prediction) + Σ w_name · task(aux_prediction) + Σ w_name · loss + Σ w_name · hook_loss`` with
weights from ``cfg.loss_weights`` (falling back to the model's ``default_loss_weights``, then 1).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import accord.balance  # noqa: F401  (registers the balancing hook plugins: grad_monitor, ogm_ge, agm, ...)
from accord.augment.modality_dropout import modality_dropout
from accord.config import Config
from accord.data.corrupt import apply_corruptions
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.registry import build_dataset
from accord.data.subset import apply_train_fraction
from accord.errors import AccordError, CheckpointError, ConfigError
from accord.evaluate.metrics import compute_metrics, default_metric, metric_mode
from accord.evaluate.summary import aggregate, aggregate_json
from accord.io import atomic_write_bytes, atomic_write_text, write_json
from accord.models.base import AccordModel, create_model
from accord.objectives.task import task_loss
from accord.train.checkpoint import load_state, load_weights, save_state, save_weights
from accord.train.distributed import SINGLE, DistContext, allreduce_step, init_distributed, rank_device, shard_rows
from accord.train.hooks import StepState, TrainerHook, build_hook
from accord.types import ModelOutput


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


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


@dataclass
class EvalResult:
    """Metrics on one split plus per-sample predictions and diagnostics (numpy)."""

    metrics: dict[str, float]
    predictions: np.ndarray
    labels: np.ndarray
    ids: list[str]
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict_split(model: AccordModel, split: SplitData, task: str, batch_size: int,
                  device: torch.device, rows: slice | None = None) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Run ``model`` over ``split`` (or its ``rows``) in eval mode; return predictions and diagnostics.

    Predictions are ``None`` when ``rows`` is empty (a distributed rank with no share of a tiny split).
    """
    model.eval()
    preds: list[torch.Tensor] = []
    diags: dict[str, list[torch.Tensor]] = defaultdict(list)
    start, stop = (0, len(split)) if rows is None else (rows.start, rows.stop)
    for a in range(start, stop, batch_size):
        batch = split.batch(torch.arange(a, min(a + batch_size, stop)), task=task)
        out = model(batch.to(device))
        preds.append(out.prediction.detach().float().cpu())
        for k, v in out.diagnostics.items():
            diags[k].append(v.detach().float().cpu())
        for k, v in out.aux_predictions.items():
            diags[f"aux_{k}"].append(v.detach().float().cpu())
    if not preds:
        return None, {}
    return torch.cat(preds).numpy(), {k: torch.cat(v).numpy() for k, v in diags.items()}


def evaluate_split(model: AccordModel, split: SplitData, cfg: Config, ds: MultimodalDataset,
                   device: torch.device, ctx: DistContext = SINGLE) -> EvalResult:
    """Predict ``split`` and compute the task's metrics on it.

    Distributed (``ctx.enabled``): each rank predicts its contiguous share of the rows and the shares are gathered
    in rank order, so every rank computes the same metrics on the whole split.
    """
    rows = shard_rows(len(split), ctx) if ctx.enabled else None
    pred, diags = predict_split(model, split, cfg.task.kind, cfg.train.eval_batch_size, device, rows)
    if ctx.enabled:
        parts = [p for p in ctx.all_gather_object((pred, diags)) if p[0] is not None]
        pred = np.concatenate([p[0] for p in parts])
        diags = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    if pred is None:
        raise ConfigError(f"split of dataset {ds.name!r} is empty; nothing to evaluate")
    y = (split.class_labels if cfg.task.kind == "classification" else split.labels)
    assert y is not None
    labels = y.numpy()
    metrics = compute_metrics(pred, labels, cfg.task.kind, ds.metric_family, ds.class_names)
    return EvalResult(metrics, pred, labels, list(split.ids), diags)


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
        self.cfg = cfg
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
        self._augmented: SplitData | None = None  # QASA training split (augment section), built once per trainer
        self.extra_hooks = list(hooks)
        # torchrun (WORLD_SIZE > 1): join the process group; only rank 0 writes files and prints progress
        self.dist = init_distributed(cfg.train.device, cfg.train.distributed.backend,
                                     cfg.train.distributed.timeout_minutes)
        self.console = console or Console(stderr=True)
        self.progress = (self.console.is_terminal if progress is None else progress) and self.dist.is_main
        self.device = resolve_device(rank_device(cfg.train.device, self.dist))
        self.out_dim = out_dim_for(cfg, self.dataset)
        self.metric = cfg.train.early_stopping.metric or default_metric(cfg.task.kind, self.dataset.metric_family)
        self.mode = metric_mode(self.metric)
        self.run_dir = cfg.run_dir

    # ------------------------------------------------------------------ helpers
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
        """A fresh model for this config and dataset, on the configured device."""
        return create_model(self.cfg.model.name, self.dataset.dims, self.out_dim,
                            **self.cfg.model.params).to(self.device)

    def config_hooks(self) -> list[TrainerHook]:
        """Fresh instances of the hook plugins named in ``train.hooks`` (one set per seed)."""
        return [build_hook(h.name, h.params, i) for i, h in enumerate(self.cfg.train.hooks)]

    def _weight(self, model: AccordModel, name: str) -> float:
        if name in self.cfg.loss_weights:
            return float(self.cfg.loss_weights[name])
        return float(model.default_loss_weights.get(name, 1.0))

    def _check_loss_names(self, model: AccordModel, names: set[str]) -> None:
        unknown = sorted(set(self.cfg.loss_weights) - names)
        if unknown:
            raise ConfigError(
                f"loss_weights.{unknown[0]}: model {self.cfg.model.name!r} emits no prediction or loss of that "
                f"name; it emits {', '.join(sorted(names))}"
            )

    def loss_terms(self, model: AccordModel, batch: Any, out: ModelOutput,
                   hooks: Sequence[TrainerHook]) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one step (``total`` is their sum).

        Per-sample weights: ``batch.extras["sample_weight"]`` (e.g. quality scores of generated samples) weights
        every task-loss term; ``out.aux_weights[name]`` further weights an auxiliary prediction's samples.
        """
        loss_name = self.cfg.task.loss_name
        sw = batch.extras.get("sample_weight")
        terms: dict[str, torch.Tensor] = {
            "task": self._weight(model, "task") * task_loss(out.prediction, batch.label, loss_name, sw)}
        for name, aux in out.aux_predictions.items():
            w = self._weight(model, name)
            if w:
                aw = out.aux_weights.get(name)
                both = aw if sw is None else (sw if aw is None else sw * aw)
                terms[name] = w * task_loss(aux, batch.label, loss_name, both)
        extra: dict[str, torch.Tensor] = {}
        for hook in hooks:
            extra.update(hook.extra_losses(model, batch, out))
        for name, value in {**out.losses, **extra}.items():
            w = self._weight(model, name)
            if w:
                terms[name] = w * value
        terms["total"] = torch.stack([v for v in terms.values()]).sum()
        return terms

    def _make_optim(self, model: AccordModel) -> tuple[torch.optim.Optimizer, Any]:
        t = self.cfg.train
        impl: dict[str, bool] = {"auto": {}, "fused": {"fused": True}, "foreach": {"foreach": True},
                                 "loop": {"foreach": False}}[t.optimizer_impl]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.lr,
                                weight_decay=t.weight_decay, **impl)
        sched: Any = None
        if t.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=self.mode, factor=0.5,
                                                               patience=max(1, t.early_stopping.patience // 3))
        elif t.scheduler == "cosine" or t.warmup_epochs:
            warm, total, cosine = t.warmup_epochs, t.epochs, t.scheduler == "cosine"

            def factor(epoch: int) -> float:
                if epoch < warm:
                    return (epoch + 1) / (warm + 1)
                if not cosine:
                    return 1.0
                progress = (epoch - warm) / max(1, total - warm)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return opt, sched

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
            self.console.log(text)
        else:
            print(text, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ run
    def prepare_run_dir(self, resume: bool, overwrite: bool) -> None:
        """Create the run directory; refuse to clobber an existing run unless resuming or overwriting."""
        rd = self.run_dir
        existing = rd.is_dir() and any(rd.iterdir())
        if existing and not (resume or overwrite):
            raise CheckpointError(f"{rd}: run directory exists; pass --resume to continue it or --overwrite to "
                                  f"start over")
        if existing and overwrite and not resume:
            import shutil

            shutil.rmtree(rd)
        if resume and (rd / "config.yaml").is_file():
            # compare through the current schema, so a key added to Accord later (with its default) does not
            # block resuming a run made before it existed
            from accord.config import read_yaml, validate

            old = validate(read_yaml(rd / "config.yaml"), str(rd / "config.yaml")).to_dict()
            new = self.cfg.to_dict()
            if old != new:
                diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise CheckpointError(f"{rd}/config.yaml: differs from the config given to --resume (section "
                                      f"{', '.join(diff)}); resume with the same config or start a new run")
        rd.mkdir(parents=True, exist_ok=True)
        atomic_write_text(rd / "config.yaml", self.cfg.to_yaml())
        write_json(rd / "dataset.json", {"name": self.dataset.name, "dims": self.dataset.dims,
                                         "out_dim": self.out_dim, "class_names": self.dataset.class_names,
                                         "metric_family": self.dataset.metric_family,
                                         "source": self.dataset.source})

    def fit(self, resume: bool = False, overwrite: bool = False,
            on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train every seed (resuming finished/partial seeds with ``resume``) and write the summary."""
        threads = torch.get_num_threads()
        if self.cfg.train.num_threads:
            torch.set_num_threads(self.cfg.train.num_threads)
        try:
            failure: AccordError | None = None
            if self.dist.is_main:
                try:
                    self.prepare_run_dir(resume, overwrite)
                except AccordError as err:
                    failure = err
            failure = self.dist.broadcast_object(failure)  # every rank stops with rank 0's error
            if failure is not None:
                raise failure
            results = [self.fit_seed(seed, resume=resume, on_epoch=on_epoch) for seed in self.cfg.train.seeds]
            return self.write_summary(results)
        finally:
            torch.set_num_threads(threads)  # train.num_threads applies to this run only

    def fit_seed(self, seed: int, resume: bool = False,
                 on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train one seed; returns its results dict (also written to ``seed_<s>/results.json``)."""
        cfg, t = self.cfg, self.cfg.train
        sd = self.run_dir / f"seed_{seed}"
        main = self.dist.is_main
        finished: dict[str, Any] | None = None
        if main:
            sd.mkdir(parents=True, exist_ok=True)
            if resume and (sd / "results.json").is_file():
                self._say(f"seed {seed}: finished earlier, kept ({sd / 'results.json'})")
                finished = json.loads((sd / "results.json").read_text())
        finished = self.dist.broadcast_object(finished)
        if finished is not None:
            return finished
        seed_everything(seed, t.deterministic)
        model = self.build_model()
        self.dist.broadcast_module(model)  # identical replicas (they are seeded alike; this makes it certain)
        if self.dist.rank > 0:  # dropout and other training randomness: a different stream per rank
            torch.manual_seed(seed * 1_000_003 + self.dist.rank)
        hooks = [*model.trainer_hooks(), *self.config_hooks(), *self.extra_hooks]
        opt, sched = self._make_optim(model)
        state = StepState(seed=seed, extra={"task_kind": cfg.task.kind, "task_loss": cfg.task.loss_name,
                                            "loss_weights": dict(cfg.loss_weights),
                                            # only rank 0 writes files: hooks see no run_dir on the other ranks
                                            "run_dir": str(sd) if main else None,
                                            "rank": self.dist.rank, "world_size": self.dist.world_size})
        start_epoch, best, best_epoch, bad, elapsed, stopped_early = 0, None, -1, 0, 0.0, False
        ck: dict[str, Any] | None = None
        if main and resume and (sd / "last.pt").is_file():
            ck = load_state(sd / "last.pt")
        ck = self.dist.broadcast_object(ck)  # rank 0 reads; other machines need no shared filesystem
        if ck is not None:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if sched is not None and ck.get("scheduler") is not None:
                sched.load_state_dict(ck["scheduler"])
            rngs = ck.get("rng_torch_ranks")
            if rngs is not None and len(rngs) == self.dist.world_size:
                torch.set_rng_state(rngs[self.dist.rank])
            elif main:
                torch.set_rng_state(ck["rng_torch"])
            start_epoch, best_epoch, bad = int(ck["epoch"]) + 1, int(ck["best_epoch"]), int(ck["bad_epochs"])
            best = None if ck["best"] is None else float(ck["best"])
            state.step, elapsed = int(ck["step"]), float(ck["elapsed"])
            if bool(ck.get("stopped", False)):  # early stopping had fired; only the final evaluation is left
                start_epoch, stopped_early = t.epochs, True
            if main:
                self._truncate_log(sd / "log.jsonl", int(ck["epoch"]))
            self._say(f"seed {seed}: resuming after epoch {int(ck['epoch']) + 1} from {sd / 'last.pt'}")
        elif main and (sd / "log.jsonl").exists():
            (sd / "log.jsonl").unlink()
        for hook in hooks:
            hook.on_fit_start(model, state)
        train_split, valid_split = self.dataset["train"], self.dataset["valid"]
        if cfg.augment.enabled:  # QASA: + K generated (or noise) rows per real row, weighted in the task loss
            train_split = self.augmented_train_split()
        checked_names = False
        params = [p for p in model.parameters() if p.requires_grad]
        prog = self._progress()
        task_id = prog.add_task(f"seed {seed}", total=t.epochs, completed=start_epoch) if prog else None
        try:
            for epoch in range(start_epoch, t.epochs):
                state.epoch = epoch
                t0 = time.perf_counter()
                model.train()
                sums: dict[str, float] = defaultdict(float)
                counts: dict[str, int] = defaultdict(int)
                gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
                drop_gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000_017)
                for batch in train_split.iter_batches(t.batch_size, shuffle=True, generator=gen,
                                                      task=cfg.task.kind):
                    if t.modality_dropout:
                        batch = modality_dropout(batch, t.modality_dropout, drop_gen)
                    n_global = batch.size
                    if self.dist.enabled:  # this rank's contiguous slice of the global batch
                        batch = batch.select(shard_rows(n_global, self.dist))
                    batch = batch.to(self.device)
                    opt.zero_grad(set_to_none=True)
                    terms: dict[str, torch.Tensor] = {}
                    logged: dict[str, float] = {}
                    if batch.size:  # a rank's slice of a tiny last batch can be empty: it only joins the reduce
                        out = model(batch)
                        terms = self.loss_terms(model, batch, out, hooks)
                        if not checked_names:
                            names = {"task", *out.aux_predictions, *out.losses}
                            for hook in hooks:
                                names |= set(hook.extra_losses(model, batch, out))
                            self._check_loss_names(model, names)
                            checked_names = True
                        bad_terms = [k for k, v in terms.items() if not torch.isfinite(v)]
                        if bad_terms and not self.dist.enabled:
                            raise FloatingPointError(
                                f"seed {seed} epoch {epoch + 1} step {state.step}: non-finite loss in "
                                f"{', '.join(bad_terms)} (lower train.lr or check inputs)")
                        terms["total"].backward()
                        state.loss_terms = {k: v.detach() for k, v in terms.items()}
                        for hook in hooks:
                            logged.update(hook.after_backward(model, batch, out, state))
                    if self.dist.enabled:  # Σ_r (n_r/N)·g_r after the hooks; the global loss rides along
                        total = allreduce_step(params, batch.size / n_global, terms.get("total"), self.dist)
                        if not math.isfinite(total):
                            where = f"in {', '.join(bad_terms)} on rank {self.dist.rank}" if terms and bad_terms \
                                else "on another rank"
                            raise FloatingPointError(f"seed {seed} epoch {epoch + 1} step {state.step}: non-finite "
                                                     f"loss {where} (lower train.lr or check inputs)")
                    if t.grad_clip:
                        gn = torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
                        logged["grad_norm"] = float(gn)
                    opt.step()
                    state.step += 1
                    for k, v in terms.items():
                        sums[f"loss/{k}"] += float(v.detach()) * batch.size
                        counts[f"loss/{k}"] += batch.size
                    for k, v in logged.items():
                        sums[k] += float(v)
                        counts[k] += 1
                    if main and terms and t.log_every_steps and state.step % t.log_every_steps == 0:
                        rec = {"type": "step", "epoch": epoch + 1, "step": state.step,
                               **{k: float(v.detach()) for k, v in terms.items()}, **logged}
                        self._append_log(sd / "log.jsonl", rec)
                if self.dist.enabled:  # epoch means over all ranks' samples (loss) and steps (hook values)
                    sums, counts = self._merge_epoch_sums(sums, counts)
                valid = evaluate_split(model, valid_split, cfg, self.dataset, self.device, self.dist)
                score = valid.metrics.get(self.metric, float("nan"))
                if self.metric not in valid.metrics:
                    raise ConfigError(f"train.early_stopping.metric: {self.metric!r} is not computed for this "
                                      f"task; available: {', '.join(valid.metrics)}")
                improved = self._better(score, best)
                if improved:
                    best, best_epoch, bad = score, epoch, 0
                    if main:
                        save_weights(model, sd / "best.safetensors")
                else:
                    bad += 1
                if sched is not None:
                    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sched.step(score)
                    else:
                        sched.step()
                elapsed += time.perf_counter() - t0
                record: dict[str, Any] = {
                    "type": "epoch", "epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 4),
                    "lr": opt.param_groups[0]["lr"],
                    **{k: sums[k] / max(1, counts[k]) for k in sums},
                    **{f"valid/{k}": v for k, v in valid.metrics.items()},
                    "best": best, "best_epoch": best_epoch + 1, "improved": improved,
                }
                if main:
                    self._append_log(sd / "log.jsonl", record)
                for hook in hooks:
                    hook.on_epoch_end(epoch, record)
                stop = bad >= t.early_stopping.patience
                rng_ranks = self.dist.all_gather_object(torch.get_rng_state())
                if main:
                    save_state({
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict() if sched is not None else None,
                        "rng_torch": torch.get_rng_state(), "rng_torch_ranks": rng_ranks, "epoch": epoch,
                        "best": best, "best_epoch": best_epoch, "bad_epochs": bad, "step": state.step,
                        "elapsed": elapsed, "stopped": stop,
                    }, sd / "last.pt")
                msg = (f"seed {seed} epoch {epoch + 1}/{t.epochs} loss {record.get('loss/total', 0):.4f} "
                       f"valid {self.metric} {score:.4f} (best {best if best is None else round(best, 4)} @ "
                       f"{best_epoch + 1}) {record['seconds']:.1f}s")
                if prog is not None and task_id is not None:
                    prog.update(task_id, advance=1, description=f"seed {seed} · {self.metric} {score:.3f}")
                elif main:
                    print(msg, file=sys.stderr, flush=True)
                if on_epoch is not None:
                    on_epoch(seed, epoch, record)
                if stop:
                    stopped_early = True
                    break
        finally:
            if prog is not None:
                prog.stop()
        if not self.dist.broadcast_object((sd / "best.safetensors").is_file()):
            raise CheckpointError(f"{sd}: no epoch produced a finite validation {self.metric}; nothing to select")
        if main:
            load_weights(model, sd / "best.safetensors", self.device)
        self.dist.broadcast_module(model)
        results = self.final_evaluation(model, sd, seed, best_epoch, elapsed, stopped_early)
        return results

    def final_evaluation(self, model: AccordModel, sd: Path, seed: int, best_epoch: int, elapsed: float,
                         stopped_early: bool) -> dict[str, Any]:
        """Evaluate the selected checkpoint on valid and test; write results.json and diagnostics.npz."""
        cfg = self.cfg
        out: dict[str, Any] = {
            "seed": seed, "method": cfg.model.name, "dataset": self.dataset.name, "task": cfg.task.kind,
            "selection_metric": self.metric, "best_epoch": best_epoch + 1, "stopped_early": stopped_early,
            "train_seconds": round(elapsed, 3),
            "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
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
            for k, v in part.extras.items():
                arrays[f"{split}/extra_{k}"] = v.numpy()
        if self.dist.enabled:  # the replicas must have stayed identical (one reduced gradient, same optimiser steps)
            digests = self.dist.all_gather_object([float(p.double().sum()) for p in model.parameters()])
            out["world_size"] = self.dist.world_size
            out["replicas_in_sync"] = all(d == digests[0] for d in digests)
            if not out["replicas_in_sync"]:
                raise RuntimeError(f"seed {seed}: distributed replicas diverged (parameter sums differ across ranks)")
        if not self.dist.is_main:
            return out
        write_json(sd / "results.json", out)
        import io as _io

        buf = _io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(sd / "diagnostics.npz", buf.getvalue())
        return out

    def write_summary(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Write summary.json/csv/md (mean ± std over seeds for valid and test) and return the summary."""
        from accord.evaluate.metrics import METRIC_ORDER
        from accord.evaluate.summary import markdown_table, write_csv

        family = "classification" if self.cfg.task.kind == "classification" else self.dataset.metric_family
        rows = {split: aggregate([r[split] for r in results]) for split in self.eval_splits}
        last = self.eval_splits[-1]
        metrics = [m for m in METRIC_ORDER[family] if m in rows[last]]
        metrics += [m for m in rows[last] if m not in metrics]
        summary = {
            "name": self.cfg.run_name, "method": self.cfg.model.name, "dataset": self.dataset.name,
            "seeds": [r["seed"] for r in results], "selection_metric": self.metric,
            **{split: aggregate_json(rows[split]) for split in self.eval_splits},
            "train_seconds": float(np.mean([r["train_seconds"] for r in results])),
        }
        if not self.dist.is_main:
            return summary
        write_json(self.run_dir / "summary.json", summary)
        write_csv(self.run_dir / "summary.csv", rows, metrics)
        table = markdown_table(rows, metrics, first_col="split", bold_best=False)
        header = (f"# {self.cfg.run_name}\n\nmethod `{self.cfg.model.name}` on `{self.dataset.name}`, "
                  f"{len(results)} seed(s), checkpoint selected on validation {self.metric}.\n\n")
        atomic_write_text(self.run_dir / "summary.md", header + table + "\n")
        return summary

    def _merge_epoch_sums(self, sums: dict[str, float], counts: dict[str, int]
                          ) -> tuple[dict[str, float], dict[str, int]]:
        """Sum the per-rank running sums and counts of an epoch (every rank gets the same totals)."""
        merged_s: dict[str, float] = defaultdict(float)
        merged_c: dict[str, int] = defaultdict(int)
        for s, c in self.dist.all_gather_object((dict(sums), dict(counts))):
            for k, v in s.items():
                merged_s[k] += v
            for k, v in c.items():
                merged_c[k] += v
        return merged_s, merged_c

    # ------------------------------------------------------------------ logging
    def _progress(self) -> Progress | None:
        if not self.progress:
            return None
        prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=False)
        prog.start()
        return prog

    @staticmethod
    def _append_log(path: Path, record: dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    @staticmethod
    def _truncate_log(path: Path, last_epoch: int) -> None:
        """Keep only log lines of epochs up to ``last_epoch`` (0-based) when resuming."""
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the interruption
            if int(rec.get("epoch", 0)) <= last_epoch + 1:  # log epochs are 1-based
                keep.append(line)
        atomic_write_text(path, "\n".join(keep) + ("\n" if keep else ""))


def load_run(run_dir: str | Path) -> tuple[Config, dict[str, Any]]:
    """Read a run directory's resolved config and dataset info; errors name the missing file."""
    from accord.config import read_yaml, validate

    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file():
        raise CheckpointError(f"{rd}: not a run directory (no config.yaml)")
    cfg = validate(read_yaml(rd / "config.yaml"), str(rd / "config.yaml"))
    info = json.loads((rd / "dataset.json").read_text()) if (rd / "dataset.json").is_file() else {}
    return cfg, info
