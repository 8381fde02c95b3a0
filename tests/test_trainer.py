"""The trainer: loss weighting, selection on validation, determinism, resume, classification, hooks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from accord.api import evaluate, load
from accord.config import Config, load_config
from accord.core.errors import CheckpointError, ConfigError
from accord.core.hooks import StepState, TrainerHook
from accord.data import build_dataset
from accord.training.optim import FusedAdamW, make_optimizer
from accord.training.trainer import Trainer, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is several times faster

TINY = ["data.params.n_train=96", "data.params.n_valid=48", "data.params.n_test=48",
        "train.batch_size=16", "train.epochs=4", "train.early_stopping.patience=10"]


SMALL = {"mult": ["model.params.hidden=16", "model.params.layers=1"]}
"""Smaller widths for the slow models (the property under test does not depend on the size)."""


def tiny_cfg(tmp_path: Path, *extra: str, method: str = "late_fusion") -> Config:
    return load_config(method=method, dataset="conflictbench",
                       overrides=[*TINY, *SMALL.get(method, []), f"output.dir={tmp_path}", "name=run", *extra])


def test_run_directory_contents_and_summary(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "train.seeds=[0, 1]", "train.seed_parallel=off")  # one by one: a last.pt per seed
    summary = Trainer(cfg, progress=False).fit()
    rd = tmp_path / "run"
    for f in ("config.yaml", "dataset.json", "summary.json", "summary.csv", "summary.md"):
        assert (rd / f).is_file(), f
    for s in (0, 1):
        sd = rd / f"seed_{s}"
        for f in ("log.jsonl", "best.safetensors", "last.pt", "results.json", "diagnostics.npz"):
            assert (sd / f).is_file(), f
        lines = [json.loads(x) for x in (sd / "log.jsonl").read_text().splitlines()]
        assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
        assert {"loss/total", "loss/task", "loss/unimodal_text", "valid/MAE"} <= set(lines[0])
        res = json.loads((sd / "results.json").read_text())
        # the selected epoch is the one with the best VALIDATION MAE in the log
        best = min(lines, key=lambda r: r["valid/MAE"])
        assert res["best_epoch"] == best["epoch"]
        assert res["valid"]["MAE"] == pytest.approx(best["valid/MAE"], abs=1e-6)
    assert summary["test"]["MAE"]["n"] == 2
    maes = [json.loads((rd / f"seed_{s}" / "results.json").read_text())["test"]["MAE"] for s in (0, 1)]
    assert summary["test"]["MAE"]["mean"] == pytest.approx(sum(maes) / 2)
    assert "±" in (rd / "summary.md").read_text()


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    a = Trainer(tiny_cfg(tmp_path / "a", method="mult"), progress=False).fit()
    b = Trainer(tiny_cfg(tmp_path / "b", method="mult"), progress=False).fit()
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = Trainer(tiny_cfg(tmp_path / "c", "train.seeds=[7]", method="mult"), progress=False).fit()
    assert c["test"]["MAE"]["mean"] != a["test"]["MAE"]["mean"]


class Interrupt(TrainerHook):
    """Simulates a crash (like Ctrl-C) at a given global step."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def after_backward(self, model: Any, batch: Any, output: Any, state: StepState) -> dict[str, float]:
        if state.step == self.at_step:
            raise KeyboardInterrupt
        return {}


@pytest.mark.parametrize(("method", "extra"), [("late_fusion", []), ("mult", []),
                                               ("late_fusion", ["train.accumulate_batches=4"])])
def test_resume_after_interruption_matches_uninterrupted(tmp_path: Path, method: str, extra: list[str]) -> None:
    full = Trainer(tiny_cfg(tmp_path / "full", "train.scheduler=cosine", *extra, method=method),
                   progress=False).fit()
    cfg = tiny_cfg(tmp_path / "cut", "train.scheduler=cosine", *extra, method=method)
    # 96 samples / batch 16 = 6 steps per epoch: step 14 is in the middle of epoch 3 (with accumulate_batches=4,
    # in the middle of its first window)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, hooks=[Interrupt(14)], progress=False).fit()
    sd = tmp_path / "cut" / "run" / "seed_0"
    assert (sd / "last.pt").is_file() and not (sd / "results.json").exists()
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(cfg, progress=False).fit()
    resumed = Trainer(cfg, progress=False).fit(resume=True)
    assert resumed["test"] == full["test"]
    epochs = [json.loads(x)["epoch"] for x in (sd / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    Trainer(tiny_cfg(tmp_path), progress=False).fit()
    with pytest.raises(CheckpointError, match="differs from the config"):
        Trainer(tiny_cfg(tmp_path, "train.lr=0.5"), progress=False).fit(resume=True)


def test_classification_on_conflictbench(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "task.kind=classification", "data.params.n_train=400", "train.epochs=6",
                   method="early_fusion")
    summary = Trainer(cfg, progress=False).fit()
    test = summary["test"]
    assert {"Acc", "F1_weighted", "F1_macro", "F1_negative", "F1_positive"} <= set(test)
    assert "MAE" not in test
    assert test["Acc"]["mean"] > 70.0  # text carries the polarity: far above the 50% chance level
    model = load(tmp_path / "run")
    ds = build_dataset("conflictbench", params=cfg.data.params)
    out = model(ds["test"].batch(torch.arange(5), task="classification"))
    assert out.prediction.shape == (5, 2)


def test_loss_weights_are_applied_and_checked(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "loss_weights.unimodal_audio=0.0", "loss_weights.task=2.0")
    tr = Trainer(cfg, progress=False)
    model = tr.build_model()
    batch = tr.dataset["train"].batch(torch.arange(8))
    out = model(batch)
    terms = tr.loss_terms(model, batch, out)
    assert "unimodal_audio" not in terms
    plain = torch.nn.functional.l1_loss(out.prediction, batch.label)
    assert float(terms["task"].detach()) == pytest.approx(2.0 * float(plain.detach()), rel=1e-6)
    assert float(terms["total"].detach()) == pytest.approx(
        sum(float(v.detach()) for k, v in terms.items() if k != "total"), rel=1e-6)
    # an unknown name fails when the config is loaded, before any data is built
    with pytest.raises(ConfigError, match=r"loss_weights\.unimodal_smell: model 'late_fusion' \(and its hooks\) "
                                          r"emits no prediction or loss of that name; it emits task, unimodal_audio"):
        tiny_cfg(tmp_path / "bad", "loss_weights.unimodal_smell=1.0")


class Undeclared(TrainerHook):
    """Emits a loss no ``default_loss_weights`` declares (a bug in a hook or model)."""

    def extra_losses(self, model: Any, batch: Any, output: Any) -> dict[str, torch.Tensor]:
        return {"mystery": output.prediction.sum() * 0}


def test_every_term_is_weighted_once_from_the_resolved_weights(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    assert cfg.loss_weights == {"task": 1.0, "unimodal_text": 1.0, "unimodal_audio": 1.0, "unimodal_visual": 1.0}
    with pytest.raises(ConfigError, match=r"emitted the term 'mystery', which no default_loss_weights declares"):
        Trainer(cfg, hooks=[Undeclared()], progress=False).fit()
    Undeclared.default_loss_weights = {"mystery": 0.5}  # a hook handed in by code brings its own default weight
    try:
        tr = Trainer(tiny_cfg(tmp_path / "ok"), hooks=[Undeclared()], progress=False)
        assert tr.weight("mystery") == 0.5 and tr.weight("task") == 1.0
    finally:
        Undeclared.default_loss_weights = {}


class ZeroAudioGrad(TrainerHook):
    """Edits gradients after backward: the audio branch never learns."""

    def __init__(self) -> None:
        self.calls = 0

    def after_backward(self, model: Any, batch: Any, output: Any, state: StepState) -> dict[str, float]:
        self.calls += 1
        for name, p in model.named_parameters():
            if "audio" in name and p.grad is not None:
                p.grad.zero_()
        return {"edited": 1.0}


class CountingHook(TrainerHook):
    """Counts every call, checks the order of events within a step, emits a line and an artifact."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"fit": 0, "extra": 0, "after": 0, "epoch": 0}
        self.pending = False  # extra_losses seen, after_backward not yet

    def on_fit_start(self, model: Any, state: StepState) -> None:
        self.calls["fit"] += 1

    def extra_losses(self, model: Any, batch: Any, output: Any) -> dict[str, torch.Tensor]:
        assert not self.pending, "extra_losses called twice in one step"
        self.calls["extra"] += 1
        self.pending = True
        return {}

    def after_backward(self, model: Any, batch: Any, output: Any, state: StepState) -> dict[str, float]:
        assert self.pending
        self.pending = False
        self.calls["after"] += 1
        state.emit({"type": "probe", "step": state.step + 1})
        return {}

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self.calls["epoch"] += 1

    def artifacts(self) -> dict[str, Any]:
        return {"probe": {"calls": torch.tensor(self.calls["after"]).numpy()}}


def test_every_hook_method_is_called_once_per_event_and_the_trainer_writes(tmp_path: Path) -> None:
    hook = CountingHook()
    Trainer(tiny_cfg(tmp_path, "train.epochs=2", "train.seeds=[0, 1]"), hooks=[hook], progress=False).fit()
    # 2 seeds x 2 epochs x 6 steps; the first step of each seed is no exception (the loss-name check reuses it)
    assert hook.calls == {"fit": 2, "extra": 24, "after": 24, "epoch": 4}
    sd = tmp_path / "run" / "seed_1"
    probes = [json.loads(x) for x in (sd / "log.jsonl").read_text().splitlines() if '"probe"' in x]
    assert [p["step"] for p in probes] == list(range(1, 13))  # the hook's lines, written by the trainer
    with np.load(sd / "probe.npz") as z:  # and its artifact, after every epoch
        assert int(z["calls"]) == 24


def test_after_backward_hook_edits_gradients(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "train.epochs=2", "train.log_every_steps=3", "train.weight_decay=0.0")
    hook = ZeroAudioGrad()
    tr = Trainer(cfg, hooks=[hook], progress=False)
    tr.fit()
    assert hook.calls == 12  # 2 epochs x 6 steps
    trained = load(tmp_path / "run")
    seed_everything(0)  # the trainer's initialisation for seed 0
    fresh = tr.build_model()
    for (name, p), (_, q) in zip(trained.named_parameters(), fresh.named_parameters(), strict=True):
        if "audio" in name:
            assert torch.equal(p, q), name  # untouched: zero gradient and no weight decay
    lines = [json.loads(x) for x in (tmp_path / "run" / "seed_0" / "log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["type"] == "step"]
    assert [s["step"] for s in steps] == [3, 6, 9, 12] and all(s["edited"] == 1.0 for s in steps)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_gradient_clipping_by_norm_or_by_value(tmp_path: Path, mode: str) -> None:
    """``grad_clip_mode``: norm scales the global gradient norm down to ``grad_clip`` and logs the norm before;
    value clamps every element to ``[-grad_clip, grad_clip]`` (clip_grad_value_) and logs nothing."""
    clip = 1e-3
    cfg = tiny_cfg(tmp_path, "model.params.dropout=0", f"train.grad_clip={clip}", f"train.grad_clip_mode={mode}")
    tr = Trainer(cfg, progress=False)
    run = tr.setup_seed(0)
    run.model.train()
    batch = next(iter(tr.epoch_batches(tr.dataset["train"], 0, 0)))
    out = run.model(batch)  # the step's gradients before clipping (no dropout: the step computes the same)
    terms = tr.prediction_terms(batch, out)
    tr.add_loss_terms(terms, dict(out.losses), None)
    before = [g for g in torch.autograd.grad(terms["total"], run.params, allow_unused=True) if g is not None]
    seen: list[torch.Tensor] = []
    step = run.opt.step

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.extend(p.grad.clone() for p in run.params if p.grad is not None)
        return step(*args, **kwargs)

    run.opt.step = record  # type: ignore[method-assign]
    _, _, logged = tr.train_step(run, batch, batch.size)
    assert len(before) == len(seen) > 0
    if mode == "value":
        assert "grad_norm" not in logged
        for b, a in zip(before, seen, strict=True):
            torch.testing.assert_close(a, b.clamp(-clip, clip), rtol=1e-5, atol=1e-9)
        flat = torch.cat([b.flatten() for b in before]).abs()
        assert bool((flat > clip).any()) and bool((flat < clip).any())  # both kinds of element occur
    else:
        total = float(torch.linalg.vector_norm(torch.cat([b.flatten() for b in before])))
        assert logged["grad_norm"] == pytest.approx(total, rel=1e-4) and total > clip
        for b, a in zip(before, seen, strict=True):
            torch.testing.assert_close(a, b * (clip / (total + 1e-6)), rtol=1e-4, atol=1e-9)


def test_evaluate_with_corruption(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    Trainer(cfg, progress=False).fit()
    clean = evaluate(tmp_path / "run")
    dropped = evaluate(tmp_path / "run", corrupt=["drop:text:1.0"])
    assert clean["mean_std"]["MAE"]["mean"] == pytest.approx(
        json.loads((tmp_path / "run" / "seed_0" / "results.json").read_text())["test"]["MAE"])
    assert dropped["mean_std"]["MAE"]["mean"] != clean["mean_std"]["MAE"]["mean"]
    assert (tmp_path / "run" / "eval_test_drop-text-1.json").is_file()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "train.epochs=1")
    Trainer(cfg, progress=False).fit()
    (tmp_path / "run" / "seed_0" / "best.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"best\.safetensors: not a readable safetensors file"):
        load(tmp_path / "run")
    (tmp_path / "run" / "seed_0" / "results.json").unlink()
    (tmp_path / "run" / "seed_0" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable training state"):
        Trainer(cfg, progress=False).fit(resume=True)


def test_unavailable_device_is_a_config_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"train\.device: 'cuda' requested but CUDA is not available"):
        Trainer(tiny_cfg(tmp_path, "train.device=cuda"), progress=False)


def test_missing_modality_does_not_train_its_unimodal_head(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, "data.params.missing_rate=0.5")
    tr = Trainer(cfg, progress=False)
    model = tr.build_model()
    batch = tr.dataset["train"].batch(torch.arange(32))
    present = batch.present[:, 1]
    assert 0 < int(present.sum()) < 32
    out = model(batch)
    terms = tr.loss_terms(model, batch, out)
    err = (out.aux_predictions["unimodal_audio"] - batch.label).abs().detach()
    assert float(terms["unimodal_audio"].detach()) == pytest.approx(float(err[present].mean()), rel=1e-6)


def test_sample_weight_zero_changes_nothing(tmp_path: Path) -> None:
    """A sample of weight 0 contributes nothing to any task-loss term."""
    tr = Trainer(tiny_cfg(tmp_path), progress=False)
    model = tr.build_model().eval()
    batch = tr.dataset["train"].batch(torch.arange(8))
    sub = tr.dataset["train"].batch(torch.arange(6))
    batch.extras["sample_weight"] = torch.tensor([1.0] * 6 + [0.0, 0.0])
    full = tr.loss_terms(model, batch, model(batch))
    part = tr.loss_terms(model, sub, model(sub))
    for k in ("task", "unimodal_text", "total"):
        assert float(full[k].detach()) == pytest.approx(float(part[k].detach()), rel=1e-5), k


def test_hook_plugins_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.core.hooks import HOOKS, HookParams, register_hook

    class CountParams(HookParams):
        scale: float = 1.0

    seen: list[float] = []

    class Count(TrainerHook):
        def __init__(self, p: CountParams) -> None:
            self.p = p

        def after_backward(self, model: Any, batch: Any, output: Any, state: StepState) -> dict[str, float]:
            seen.append(self.p.scale)
            return {"count": self.p.scale}

    assert "test_count" not in HOOKS
    # registered for this test only: a hook left in the global registry would show up in every later listing
    # (``accord list`` in tests/test_startup.py)
    monkeypatch.setattr(HOOKS, "_items", dict(HOOKS._items))
    register_hook("test_count", CountParams)(Count)
    cfg = tiny_cfg(tmp_path, "train.epochs=1", 'train.hooks=[{name: test_count, params: {scale: 2.5}}]')
    Trainer(cfg, progress=False).fit()
    assert seen == [2.5] * 6
    rec = json.loads((tmp_path / "run" / "seed_0" / "log.jsonl").read_text().splitlines()[0])
    assert rec["count"] == 2.5
    with pytest.raises(ConfigError, match=r"train\.hooks\.0\.params\.bogus: unknown key for hook 'test_count'"):
        tiny_cfg(tmp_path, 'train.hooks=[{name: test_count, params: {bogus: 1}}]')
    with pytest.raises(ConfigError, match="unknown trainer hook 'nohook'"):
        tiny_cfg(tmp_path, "train.hooks=[{name: nohook}]")


def test_resume_accepts_a_run_made_before_a_config_key_existed(tmp_path: Path) -> None:
    """A run's config.yaml lacking a key added to Accord later (so it takes its default) still resumes."""
    import yaml

    cfg = tiny_cfg(tmp_path, "train.epochs=1")
    Trainer(cfg, progress=False).fit()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    del saved["augment"], saved["train"]["modality_dropout"]
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    again = Trainer(cfg, progress=False).fit(resume=True)
    assert again["test"]["MAE"]["n"] == 1
    torch.set_num_threads(2)
    Trainer(tiny_cfg(tmp_path / "t", "train.epochs=1", "train.num_threads=1"), progress=False).fit()
    assert torch.get_num_threads() == 2  # train.num_threads is restored after the run


@pytest.mark.parametrize(("impl", "flag"), [("fused", "fused"), ("foreach", "foreach"), ("auto", None)])
def test_optimizer_impl_selects_the_adamw_kernel(tmp_path: Path, impl: str, flag: str | None) -> None:
    tr = Trainer(tiny_cfg(tmp_path, f"train.optimizer_impl={impl}"), progress=False)
    opt, _ = make_optimizer(tr.build_model(), tr.cfg.train, tr.mode)
    assert isinstance(opt, torch.optim.AdamW) and isinstance(opt, FusedAdamW) == (impl == "fused")
    for name in ("fused", "foreach"):
        assert bool(opt.defaults[name]) == (name == flag)


def test_fused_optimizer_trains_to_nearly_the_same_result(tmp_path: Path) -> None:
    a = Trainer(tiny_cfg(tmp_path / "a"), progress=False).fit()
    b = Trainer(tiny_cfg(tmp_path / "b", "train.optimizer_impl=fused"), progress=False).fit()
    assert b["test"]["MAE"]["mean"] == pytest.approx(a["test"]["MAE"]["mean"], abs=0.02)


def test_seeding_asks_for_deterministic_kernels_without_nan_filling_new_memory() -> None:
    """``seed_everything(deterministic=True)`` turns torch's deterministic mode on but not its NaN filling of new
    uninitialised tensors (a pass over memory no Accord op needs: each writes what it reads)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    try:
        torch.utils.deterministic.fill_uninitialized_memory = True
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        a = torch.rand(3)
        seed_everything(0, deterministic=True)
        assert torch.equal(a, torch.rand(3))
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = before[1]


def test_terms_are_read_and_checked_in_one_conversion_with_the_same_answers() -> None:
    """``read_terms`` (a training step's one stacked read of its 0-d terms) gives what reading and checking each term
    alone gives (``scalar_values`` / ``non_finite_terms``): the numbers in order, and the names of the NaN / infinite
    terms."""
    from accord.training.trainer import EpochSums, non_finite_terms, read_terms, scalar_values

    terms = {"task": torch.tensor(0.25), "total": torch.tensor(1.0 / 3.0), "aux": torch.tensor(-2.5)}
    assert scalar_values(terms) == [0.25, float(torch.tensor(1.0 / 3.0)), -2.5]
    assert non_finite_terms(terms) == []
    bad = {"a": torch.tensor(1.0), "b": torch.tensor(float("nan")), "c": torch.tensor(float("-inf"))}
    assert non_finite_terms(bad) == ["b", "c"]
    mixed = {"a": torch.tensor(1.5, dtype=torch.float64), "b": torch.tensor([2.0, float("inf")])}  # no one stack
    assert scalar_values({"a": mixed["a"], "c": torch.tensor(0.5)}) == [1.5, 0.5]
    assert non_finite_terms(mixed) == ["b"]
    assert scalar_values({}) == [] and non_finite_terms({}) == []
    w = torch.tensor(2.0, requires_grad=True)
    sums = EpochSums()
    steps = (({"total": w * 3.0, "task": w + 0.5}, 4), ({"total": torch.tensor(1.0), "task": torch.tensor(0.0)}, 2))
    for step, n in steps:
        sums.add_term_values(list(step), read_terms(step)[0], n=n)
    assert sums.means() == {"loss/total": (6.0 * 4 + 1.0 * 2) / 6, "loss/task": (2.5 * 4) / 6}
    # a training step reads its terms once for both: the same numbers and the same non-finite names
    assert read_terms(terms) == (scalar_values(terms), [])
    values, names = read_terms(bad)
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == float("-inf") and names == ["b", "c"]
    assert read_terms({"a": mixed["a"], "c": torch.tensor(0.5)}) == ([1.5, 0.5], [])  # two dtypes: each alone
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        read_terms(mixed)  # a term that is not one number cannot be read as one (as scalar_values refuses)
    assert read_terms({}) == ([], [])


def test_a_loss_weight_of_one_adds_no_operation_and_changes_no_number() -> None:
    """``weighted``: at weight 1 the term is the loss itself (``1.0 * x`` is ``x`` bit for bit, NaN and infinities
    included, and so is its gradient); any other weight multiplies."""
    from accord.training.trainer import weighted

    x = torch.tensor([0.3, float("nan"), float("inf"), -0.0], requires_grad=True)
    assert weighted(1.0, x) is x
    for w in (0.5, 2.0, 0.0):
        torch.testing.assert_close(weighted(w, x), w * x, equal_nan=True)
    y = torch.tensor(0.7, requires_grad=True)
    weighted(3.0, y).backward()
    assert y.grad is not None and float(y.grad) == 3.0
