"""Gradient accumulation (``train.accumulate_batches``): a window of k batches steps as one batch of its samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from accord.config import Config, load_config
from accord.core.errors import ConfigError
from accord.core.hooks import StepState, TrainerHook
from accord.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

#: 84 training rows: batches of 8 give 10 full batches and one of 4, so windows of 4 batches hold 32, 32 and 20
#: rows (8 + 8 + 4: unequal shares), matching batches of 32, 32 and 20.
BASE = ["data.params.n_train=84", "data.params.n_valid=40", "data.params.n_test=40", "train.epochs=2",
        "model.params.dropout=0", "train.grad_clip=100.0", "train.log_every_steps=1",
        "train.early_stopping.patience=10", "train.seed_parallel=off"]


def cfg(tmp_path: Path, name: str, *extra: str, method: str = "early_fusion") -> Config:
    return load_config(method=method, dataset="conflictbench",
                       overrides=[*BASE, f"output.dir={tmp_path}", f"name={name}", *extra])


def steps(run: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run / "seed_0" / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if r["type"] == "step"]


def test_a_window_of_small_batches_steps_as_one_batch_of_its_rows(tmp_path: Path) -> None:
    """Batches of 8 accumulated 4 at a time == batches of 32 (the same shuffled order): the same gradient at each
    optimiser step (its norm, logged before clipping) and the same weights after two epochs. The short last window
    (8 + 8 + 4 rows) only matches when each batch is weighted by its share of the window's rows."""
    Trainer(cfg(tmp_path, "big", "train.batch_size=32"), progress=False).fit()
    Trainer(cfg(tmp_path, "acc", "train.batch_size=8", "train.accumulate_batches=4"), progress=False).fit()
    big, acc = steps(tmp_path / "big"), steps(tmp_path / "acc")
    assert len(big) == 2 * 3 and len(acc) == 2 * 11  # a log line per batch
    norms_acc = [r["grad_norm"] for r in acc if "grad_norm" in r]  # clipping runs once per window
    assert len(norms_acc) == 2 * 3
    for a, b in zip(norms_acc, [r["grad_norm"] for r in big], strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    w_big = load_file(str(tmp_path / "big" / "seed_0" / "best.safetensors"))
    w_acc = load_file(str(tmp_path / "acc" / "seed_0" / "best.safetensors"))
    assert w_big.keys() == w_acc.keys()
    for k in w_big:
        torch.testing.assert_close(w_acc[k], w_big[k], rtol=0, atol=1e-5)
    ck = torch.load(tmp_path / "acc" / "seed_0" / "last.pt", map_location="cpu", weights_only=True)
    assert {float(s["step"]) for s in ck["optimizer"]["state"].values()} == {6.0}  # 3 optimiser steps an epoch
    assert ck["step"] == 22  # the trainer's step counts batches


def test_without_accumulation_every_batch_steps(tmp_path: Path) -> None:
    """The same batches of 8 stepped one by one are a different training (the equality above is not vacuous)."""
    Trainer(cfg(tmp_path, "big", "train.batch_size=32", "train.epochs=1"), progress=False).fit()
    Trainer(cfg(tmp_path, "one", "train.batch_size=8", "train.epochs=1"), progress=False).fit()
    ck = torch.load(tmp_path / "one" / "seed_0" / "last.pt", map_location="cpu", weights_only=True)
    assert {float(s["step"]) for s in ck["optimizer"]["state"].values()} == {11.0}
    w_big = load_file(str(tmp_path / "big" / "seed_0" / "best.safetensors"))
    w_one = load_file(str(tmp_path / "one" / "seed_0" / "best.safetensors"))
    assert max(float((w_big[k] - w_one[k]).abs().max()) for k in w_big) > 1e-3


class GradSum(TrainerHook):
    """Records the gradient norm after every backward and counts ``after_backward`` calls."""

    name = "grad_sum"

    def __init__(self) -> None:
        self.norms: list[float] = []

    def after_backward(self, model: torch.nn.Module, batch: Any, output: Any, state: StepState) -> dict[str, float]:
        grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        self.norms.append(float(torch.stack(grads).norm()) if grads else 0.0)
        return {}


def test_hooks_run_after_every_batch_and_see_the_window_accumulate(tmp_path: Path) -> None:
    """``after_backward`` runs once per batch. Gradients are zeroed at a window's first batch only: there the hook
    sees that batch's gradient times its share of the window's rows; later in the window, a running sum.
    (A learning rate of 1e-12 keeps the two runs' weights equal to float precision.)"""
    acc, one = GradSum(), GradSum()
    tiny_lr = ["train.batch_size=8", "train.epochs=1", "train.lr=1e-12"]
    Trainer(cfg(tmp_path, "acc", *tiny_lr, "train.accumulate_batches=4"), hooks=[acc], progress=False).fit()
    Trainer(cfg(tmp_path, "one", *tiny_lr), hooks=[one], progress=False).fit()
    assert len(acc.norms) == len(one.norms) == 11
    for first, share in [(0, 8 / 32), (4, 8 / 32), (8, 8 / 20)]:  # the last window: 8 + 8 + 4 rows
        assert acc.norms[first] == pytest.approx(share * one.norms[first], rel=1e-5)
    assert acc.norms[1] != pytest.approx(0.25 * one.norms[1], rel=1e-2)


@pytest.mark.parametrize("hook", ["ogm_ge", "agm"])
def test_a_hook_that_edits_gradients_is_refused_with_accumulation(tmp_path: Path, hook: str) -> None:
    c = cfg(tmp_path, "x", "train.accumulate_batches=2", f"train.hooks=[{{name: {hook}}}]", method="late_fusion")
    with pytest.raises(ConfigError, match=rf"train.accumulate_batches=2: hook '{hook}' edits each batch's gradients"):
        Trainer(c, progress=False).fit()


def test_seed_parallel_on_refuses_accumulation_and_auto_trains_one_by_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.accumulate_batches is 2"):
        Trainer(cfg(tmp_path, "group", "train.accumulate_batches=2", "train.seeds=[0,1]", "train.seed_parallel=on",
                    "train.epochs=1"), progress=False).fit()
    Trainer(cfg(tmp_path, "fallback", "train.accumulate_batches=2", "train.seeds=[0,1]", "train.seed_parallel=auto",
                "train.epochs=1"), progress=False).fit()
    assert (tmp_path / "fallback" / "seed_1" / "last.pt").is_file()  # sequential runs keep a last.pt per seed


def test_accumulate_batches_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="accumulate_batches"):
        load_config(method="early_fusion", dataset="conflictbench", overrides=["train.accumulate_batches=0"])


def test_fp16_unscales_once_per_window(tmp_path: Path) -> None:
    """With a gradient scaler the gradients are unscaled once, after a window's last batch (``unscale_`` twice
    before one ``scaler.step`` is an error), and the run trains to finite metrics."""
    summary = Trainer(cfg(tmp_path, "fp16", "train.batch_size=8", "train.accumulate_batches=3", "train.epochs=1",
                          "train.precision=fp16"), progress=False).fit()
    assert all(v == v for v in summary["test"].values() if isinstance(v, float))
