"""Seed-parallel training: the seeds of one config trained together as ONE vectorised model.

``train.seed_parallel`` (``on``, or ``auto`` where the run allows it) makes :meth:`Trainer.fit` hand all seeds to
:func:`fit_seed_group` instead of training them one after another. Each seed's model is built exactly as in a
sequential run (seeded by its own seed); their parameters are stacked along a new leading dimension
(:func:`torch.func.stack_module_state`) and every training step runs ``vmap(functional_call(model))`` over the
stack, with each seed reading ITS OWN batch (its own shuffled order and modality dropout, seeded as in
:meth:`Trainer.train_epoch`). One AdamW steps the stacked tensors; AdamW is element-wise, so that is each seed's
own optimiser. Gradient clipping is per seed (each seed's global norm, as ``clip_grad_norm_``).

Per seed, nothing else changes: validation after every epoch, checkpoint selection on the validation metric
(``seed_<s>/best.safetensors``), early stopping, ``log.jsonl`` lines, the final evaluation, ``results.json``.
A seed that stops early leaves the stack (the others go on without its cost). With every dropout at 0 the
per-seed metrics equal those of sequential training up to float rounding (tested to 1e-5); with dropout on,
the masks are drawn per seed by vmap (``randomness="different"``) from one generator, so the run is deterministic
but its dropout masks are not those of a sequential run.

Interruption: ``<run_dir>/seed_group.pt`` holds the whole group's training state after every epoch (stacked
parameters, optimiser, schedule, RNG, each seed's selection state); ``--resume`` continues from it with the same
results as an uninterrupted run. Finished seeds (``results.json``) are kept as in a sequential resume.

What runs sequentially instead (``auto``) or is refused (``on``, one line naming the reason): trainer hooks
(gradient editing needs per-seed gradients at hook time), QASA augmentation, torchrun, a pretrained text branch
(token batches differ in length per seed), mixed precision, ``train.compile``, the ``plateau`` schedule (its
learning rate differs per seed), and models that say why they cannot (``AccordModel.not_vectorisable``:
Self-MM's label memory).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from accord.core import rundir
from accord.core.errors import CheckpointError, ConfigError
from accord.core.types import Batch
from accord.models.base import AccordModel, model_class

if TYPE_CHECKING:
    from accord.training.trainer import EpochSums, Trainer

GROUP_STATE = "seed_group.pt"
"""The group's training state in the run directory (what ``--resume`` continues from)."""


def seed_parallel_blocker(trainer: Trainer, resume: bool = False) -> str | None:
    """Why this run cannot train its seeds as one vectorised model, or None when it can (``resume``: a run being
    resumed whose seeds were trained one by one continues that way)."""
    cfg = trainer.cfg
    t = cfg.train
    sequential = resume and any((rundir.seed_dir(trainer.run_dir, s) / rundir.LAST).is_file() for s in t.seeds)
    reasons = [
        (sequential, "the run being resumed trained its seeds one by one (seed_<s>/last.pt)"),
        (len(t.seeds) < 2, "it has one seed"),
        (model_class(cfg.model.name).not_vectorisable is not None,
         f"model {cfg.model.name!r} cannot run under vmap: {model_class(cfg.model.name).not_vectorisable}"),
        (bool(trainer.hook_names()),
         f"trainer hooks ({', '.join(trainer.hook_names())}) act on one seed's model and gradients at a time"),
        (cfg.augment.enabled, "QASA augmentation (augment.enabled) is on"),
        (trainer.dist.enabled, "it runs under torchrun"),
        (trainer.dataset["train"].text_tokens is not None, "a pretrained text branch reads token batches"),
        (t.precision != "fp32", f"train.precision is {t.precision}"),
        (t.compile != "off", f"train.compile is {t.compile}"),
        (t.scheduler == "plateau", "the plateau schedule's learning rate differs per seed"),
        (t.accumulate_batches > 1, f"train.accumulate_batches is {t.accumulate_batches} (the group steps after "
                                   "every batch)"),
    ]
    return next((why for bad, why in reasons if bad), None)


def _to_steps(t: Tensor, t_max: int) -> Tensor:
    """``t [B, T, ...]`` zero-padded along its steps to ``t_max``; ``t`` itself when it is that long already (a
    padding of 0 would only copy it)."""
    missing = t_max - t.shape[1]
    return t if missing == 0 else F.pad(t, (0, 0) * (t.dim() - 2) + (0, missing))


def stack_batches(batches: list[Batch]) -> dict[str, Any]:
    """The seeds' batches (same size) as one pytree of tensors with a leading seed dimension; sequences are padded
    to the longest of the step (the padding is masked, as within a batch)."""
    out: dict[str, Any] = {"features": {}, "mask": {}}
    for m in batches[0].features:
        t_max = max(b.features[m].shape[1] for b in batches)
        out["features"][m] = torch.stack([_to_steps(b.features[m], t_max) for b in batches])
        out["mask"][m] = torch.stack([_to_steps(b.mask[m], t_max) for b in batches])
    out["present"] = torch.stack([b.present for b in batches])
    out["label"] = torch.stack([b.label for b in batches])
    out["unimodal_labels"] = {k: torch.stack([b.unimodal_labels[k] for b in batches])
                              for k in batches[0].unimodal_labels}
    out["extras"] = {k: torch.stack([b.extras[k] for b in batches]) for k in batches[0].extras}
    return out


def unstacked_batch(tree: dict[str, Any]) -> Batch:
    """One seed's :class:`Batch` from its slice of :func:`stack_batches` (inside vmap; ids are not carried)."""
    return Batch(features=tree["features"], mask=tree["mask"], present=tree["present"], label=tree["label"],
                 unimodal_labels=tree["unimodal_labels"], extras=tree["extras"])


@dataclass
class SeedState:
    """One seed's selection state inside the group (as :class:`~accord.training.trainer.SeedRun` has it)."""

    seed: int
    model: AccordModel
    folder: Any
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    elapsed: float = 0.0
    step: int = 0
    stopped_early: bool = False


class SeedGroup:
    """The active seeds' stacked parameters, their optimiser and schedule, and the vmapped training step."""

    def __init__(self, trainer: Trainer, seeds: list[SeedState]) -> None:
        self.trainer, self.seeds = trainer, seeds
        self.names = [n for n, p in seeds[0].model.named_parameters() if p.requires_grad]
        self.template = copy.deepcopy(seeds[0].model).to("meta")
        params, buffers = stack_module_state([s.model for s in seeds])
        self.params: dict[str, Tensor] = {n: params[n] for n in self.names}
        self.frozen: dict[str, Tensor] = {n: p.detach() for n, p in params.items() if n not in self.params}
        self.buffers: dict[str, Tensor] = dict(buffers)
        self.opt, self.sched = self._optimizer()
        self._step = vmap(self._loss, randomness="different")

    def _optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW over the stacked parameters, grouped as the model groups its own (text encoder lr, ...)."""
        from accord.training.optim import make_optimizer_for

        t = self.trainer.cfg.train
        model = self.seeds[0].model
        name_of = {id(p): n for n, p in model.named_parameters()}
        groups_fn = getattr(model, "parameter_groups", None)
        groups: list[dict[str, Any]] = groups_fn(t.lr, t.weight_decay) if callable(groups_fn) else \
            [{"params": [p for p in model.parameters() if p.requires_grad]}]
        stacked = [{**g, "params": [self.params[name_of[id(p)]] for p in g["params"]]} for g in groups]
        return make_optimizer_for(stacked, t, self.trainer.mode)

    def _loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], tree: dict[str, Any]
              ) -> dict[str, Tensor]:
        """One seed's weighted loss terms (run under vmap: every tensor is that seed's slice)."""
        batch = unstacked_batch(tree)
        out = functional_call(self.template, ({**params, **self.frozen}, buffers), (batch,))
        tr = self.trainer
        terms = tr.prediction_terms(batch, out)
        return tr.add_loss_terms(terms, out.losses, batch.extras.get("sample_weight"))

    def train_step(self, batches: list[Batch]) -> tuple[dict[str, Tensor], Tensor | None]:
        """Forward and backward of every active seed on its batch, per-seed clipping and one optimiser step.

        Returns the weighted loss terms (``[S]`` each) and the per-seed gradient norms before clipping (None
        without ``train.grad_clip`` or with ``grad_clip_mode: value``)."""
        # gradients zeroed in place, not set to None: a vmapped Linear's weight gradient arrives transposed, and
        # accumulating it into an existing buffer is an add, where a fresh .grad is a slow transposing copy
        self.opt.zero_grad(set_to_none=False)
        terms = self._step(self.params, self.buffers, stack_batches(batches))
        bad = ~torch.isfinite(terms["total"])
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            names = [k for k, v in terms.items() if not bool(torch.isfinite(v[i]))]
            raise FloatingPointError(f"seed {self.seeds[i].seed} step {self.seeds[i].step}: non-finite loss in "
                                     f"{', '.join(names)} (lower train.lr or check inputs)")
        terms["total"].sum().backward()
        norms = self.clip(self.trainer.cfg.train.grad_clip, self.trainer.cfg.train.grad_clip_mode)
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}, norms

    @torch.no_grad()
    def clip(self, max_norm: float | None, mode: str = "norm") -> Tensor | None:
        """Per-seed ``clip_grad_norm_``: each seed's gradients scaled by ``min(1, max_norm / (‖g_s‖ + 1e-6))``;
        returns the norms before clipping. ``mode="value"``: every element clamped to ``[-max_norm, max_norm]``
        (``clip_grad_value_``, element-wise, hence per seed as it is), and None."""
        if not max_norm:
            return None
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if not grads:
            return None
        if mode == "value":  # (reads each parameter's .grad)
            torch.nn.utils.clip_grad_value_(list(self.params.values()), max_norm)
            return None
        per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
        norms = torch.linalg.vector_norm(per_param, dim=1)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
        return norms

    @torch.no_grad()
    def sync(self, i: int) -> AccordModel:
        """Seed ``i``'s model holding its current slice of the stack (for evaluation and saving)."""
        model = self.seeds[i].model
        for n, p in model.named_parameters():
            if n in self.params:
                p.copy_(self.params[n][i])
        for n, b in model.named_buffers():
            if n in self.buffers:
                b.copy_(self.buffers[n][i])
        return model

    def drop(self, done: list[int]) -> None:
        """Remove finished seeds from the stack (parameters, buffers and optimiser state), keeping the others'."""
        keep = [i for i in range(len(self.seeds)) if i not in done]
        index = torch.tensor(keep)
        old = list(self.params.values())
        self.params = {n: p.detach()[index].clone().requires_grad_(True) for n, p in self.params.items()}
        self.buffers = {n: b[index].clone() for n, b in self.buffers.items()}
        new_of = {id(o): p for o, p in zip(old, self.params.values(), strict=True)}
        state = self.opt.state
        for g in self.opt.param_groups:
            g["params"] = [new_of[id(p)] for p in g["params"]]
        moved: dict[Any, Any] = {}
        for o in old:
            if o in state:
                moved[new_of[id(o)]] = {k: (v[index].clone() if torch.is_tensor(v) and v.dim() > 0 else v)
                                        for k, v in state[o].items()}
        self.opt.state.clear()
        self.opt.state.update(moved)
        self.seeds = [self.seeds[i] for i in keep]

    # --------------------------------------------------------------------------------------- resumable state
    def state_dict(self, epoch: int, pending: list[SeedState], empty: bool = False) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` (0-based): the stack, optimiser, schedule, RNG, each
        active seed's selection state, and the ``pending`` seeds that left the group this epoch (their results
        are written right after the save). ``empty``: every seed has left; only ``pending`` matters."""
        state: dict[str, Any] = {"epoch": epoch, "seeds": [] if empty else [s.seed for s in self.seeds],
                                 "pending": [_selection(s) for s in pending], "rng_torch": torch.get_rng_state()}
        if not empty:
            state.update({
                "params": {n: p.detach() for n, p in self.params.items()}, "buffers": dict(self.buffers),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else None,
                "selection": [_selection(s) for s in self.seeds],
            })
        return state

    def load_state_dict(self, ck: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the group's seeds must be the saved ones, in order)."""
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(ck["params"][n])
            for n, b in self.buffers.items():
                b.copy_(ck["buffers"][n])
        self.opt.load_state_dict(ck["optimizer"])
        if self.sched is not None and ck.get("scheduler") is not None:
            self.sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng_torch"])
        for s, sel in zip(self.seeds, ck["selection"], strict=True):
            _restore_selection(s, sel)


EpochCallback = Callable[[int, int, dict[str, Any]], None]


def fit_seed_group(trainer: Trainer, resume: bool, on_epoch: EpochCallback | None) -> list[dict[str, Any]]:
    """Train every seed of ``trainer.cfg.train.seeds`` as one vectorised model; returns their results in order
    (each also written to ``seed_<s>/results.json``)."""
    from accord.training.checkpoint import save_state
    from accord.training.trainer import EpochSums, _unlink

    t = trainer.cfg.train
    results, group, start = open_group(trainer, resume)
    state_file = trainer.run_dir / GROUP_STATE
    if group is None:
        _unlink(state_file)
        return [results[s] for s in t.seeds]
    train_split = trainer.dataset["train"]
    prog = trainer._progress()
    task_id = prog.add_task(f"seeds {[s.seed for s in group.seeds]}", total=t.epochs, completed=start) \
        if prog else None
    try:
        for epoch in range(start, t.epochs):
            t0 = time.perf_counter()
            sums = [EpochSums() for _ in group.seeds]
            _train_epoch(trainer, group, epoch, train_split, sums)
            seconds = time.perf_counter() - t0
            finals = _end_epoch(trainer, group, epoch, seconds, sums, on_epoch, verbose=prog is None)
            every = len(finals) == len(group.seeds)
            if finals and not every:
                group.drop([group.seeds.index(s) for s in finals])
            # saved BEFORE the leaving seeds' results are written: a resume finishes those ("pending") first
            save_state(group.state_dict(epoch, finals, empty=every), state_file)
            if prog is not None and task_id is not None:
                prog.update(task_id, advance=1, description=f"seeds {[s.seed for s in group.seeds]} · epoch "
                                                            f"{epoch + 1}")
            for s in finals:  # the selected checkpoint, evaluated exactly as a sequential seed's
                results[s.seed] = trainer.finish_seed(s.model, s.folder, s.seed, s.best_epoch, s.elapsed,
                                                      s.stopped_early)
            if every:
                break
    finally:
        if prog is not None:
            prog.stop()
    _unlink(state_file)
    return [results[s] for s in t.seeds]


def open_group(trainer: Trainer, resume: bool) -> tuple[dict[int, dict[str, Any]], SeedGroup | None, int]:
    """The seeds' results kept from earlier (``resume``: finished seeds, and seeds that had left the group when it
    was saved), the group of the unfinished seeds (None when there is none) and the first epoch to train."""
    from accord.training.checkpoint import GROUP_STATE_KINDS, load_state
    from accord.training.trainer import _truncate_log, _unlink, seed_everything

    t = trainer.cfg.train
    results: dict[int, dict[str, Any]] = {}
    for seed in t.seeds:
        finished = trainer.finished_results(seed, resume)
        if finished is not None:
            results[seed] = finished
    state_file = trainer.run_dir / GROUP_STATE
    ck = load_state(state_file, GROUP_STATE_KINDS) if resume and state_file.is_file() else None

    def build(seed: int) -> SeedState:
        seed_everything(seed, t.deterministic)  # the model each seed would get in a sequential run
        return SeedState(seed=seed, model=trainer.build_model(), folder=rundir.seed_dir(trainer.run_dir, seed))

    for sel in ck["pending"] if ck is not None else []:  # left the group, results not written when it stopped
        if int(sel["seed"]) not in results:
            s = build(int(sel["seed"]))
            _restore_selection(s, sel)
            results[s.seed] = trainer.finish_seed(s.model, s.folder, s.seed, s.best_epoch, s.elapsed,
                                                  s.stopped_early)
    states = [build(seed) for seed in t.seeds if seed not in results]
    if not states:
        return results, None, 0
    group = SeedGroup(trainer, states)
    torch.manual_seed(states[0].seed * 1_000_003 + len(states))  # the group's dropout stream
    if ck is None:
        for s in states:
            _unlink(s.folder / rundir.LOG)
        return results, group, 0
    if ck["seeds"] != [s.seed for s in states]:
        raise CheckpointError(f"{state_file}: holds seeds {ck['seeds']}, but seeds {[s.seed for s in states]} are "
                              "unfinished; start the run over with --overwrite")
    group.load_state_dict(ck)
    for s in states:
        _truncate_log(s.folder / rundir.LOG, int(ck["epoch"]))
    trainer._say(f"seeds {ck['seeds']}: resuming after epoch {int(ck['epoch']) + 1} from {state_file}")
    return results, group, int(ck["epoch"]) + 1


def _end_epoch(trainer: Trainer, group: SeedGroup, epoch: int, seconds: float, sums: list[EpochSums],
               on_epoch: EpochCallback | None, verbose: bool) -> list[SeedState]:
    """Validate, select, log and check early stopping for every active seed; step the schedule. Returns the
    seeds that leave the group after this epoch (stopped early, or the last epoch)."""
    t = trainer.cfg.train
    done: list[SeedState] = []
    for i, s in enumerate(group.seeds):
        s.elapsed += seconds / len(group.seeds)  # each active seed's share of the epoch
        model = group.sync(i)
        valid = trainer.evaluate_valid(model, trainer.dataset["valid"])
        score, improved = trainer.select_score(s, epoch, valid, model)
        record = {**trainer.epoch_record(s, epoch, seconds, group.opt.param_groups[0]["lr"], sums[i], valid,
                                         improved), "seed_parallel": len(group.seeds)}
        trainer.append_log(s.folder / rundir.LOG, record)
        if verbose:  # no progress bar: the epoch's line on stderr, as a sequential seed prints it
            trainer.show_progress(s, record, score, None, None)
        if on_epoch is not None:
            on_epoch(s.seed, epoch, record)
        if s.bad_epochs >= t.early_stopping.patience or epoch == t.epochs - 1:
            s.stopped_early = s.bad_epochs >= t.early_stopping.patience
            done.append(s)
    if group.sched is not None:
        group.sched.step()
    return done


def _restore_selection(s: SeedState, sel: dict[str, Any]) -> None:
    """A seed's selection state from a saved group state."""
    s.best = None if sel["best"] is None else float(sel["best"])
    s.best_epoch, s.bad_epochs = int(sel["best_epoch"]), int(sel["bad_epochs"])
    s.elapsed, s.step = float(sel["elapsed"]), int(sel["step"])
    s.stopped_early = bool(sel.get("stopped_early", False))


def _selection(s: SeedState) -> dict[str, Any]:
    return {"seed": s.seed, "best": s.best, "best_epoch": s.best_epoch, "bad_epochs": s.bad_epochs,
            "elapsed": s.elapsed, "step": s.step, "stopped_early": s.stopped_early}


def _train_epoch(trainer: Trainer, group: SeedGroup, epoch: int, split: Any, sums: list[EpochSums]) -> None:
    """One epoch: each seed's batches (order, length bucketing, modality dropout) exactly as a sequential seed's
    (:meth:`Trainer.epoch_batches`)."""
    t = trainer.cfg.train
    iters = [trainer.epoch_batches(split, s.seed, epoch) for s in group.seeds]
    for batches in zip(*iters, strict=True):
        batches = tuple(b.to(trainer.device) for b in batches)
        terms, norms = group.train_step(list(batches))
        n = batches[0].size
        names = list(terms)
        # every seed's terms (and gradient norms) read as numbers in one conversion each: [seed][term]
        values: list[list[float]] = torch.stack([terms[k] for k in names], dim=1).tolist()
        norm_values: list[float] | None = norms.tolist() if norms is not None else None
        for i, s in enumerate(group.seeds):
            sums[i].add_term_values(names, values[i], n)
            logged = {"grad_norm": norm_values[i]} if norm_values is not None else {}
            sums[i].add_values(logged)
            s.step += 1
            if t.log_every_steps and s.step % t.log_every_steps == 0:  # as a sequential seed logs its steps
                trainer.append_log(s.folder / rundir.LOG, {"type": "step", "epoch": epoch + 1, "step": s.step,
                                                           **dict(zip(names, values[i], strict=True)), **logged})


def check_seed_parallel(trainer: Trainer, resume: bool = False) -> bool:
    """Whether :meth:`Trainer.fit` trains the seeds as one group: ``on`` where allowed (a refusal names the
    reason), ``auto`` where allowed, ``off`` never."""
    mode = trainer.cfg.train.seed_parallel
    if mode == "off":
        return False
    why = seed_parallel_blocker(trainer, resume)
    if why is None:
        return True
    if mode == "on" and len(trainer.cfg.train.seeds) > 1:
        raise ConfigError(f"train.seed_parallel: 'on' but the seeds cannot train as one model here: {why}; "
                          "set train.seed_parallel=auto or off")
    return False
