"""Mixed precision (``train.precision``): bf16 / fp16 autocast on the forward passes and losses, parameters in
float32, fp16's gradient scaler unscaled before the hooks and clipping and kept in ``last.pt`` (an interrupted fp16
run resumes to exactly the uninterrupted result). Run on CPU here; CUDA is the target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from accord.core.errors import CheckpointError
from accord.training.trainer import Trainer
from test_trainer import Interrupt, tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _grad_lines(folder: Path) -> list[dict[str, float]]:
    lines = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if r["type"] == "grad"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32_with_true_gradients_for_the_hooks(tmp_path: Path,
                                                                               precision: str) -> None:
    monitor = "train.hooks=[{name: grad_monitor}]"
    full = Trainer(tiny_cfg(tmp_path / "fp32", monitor), progress=False).fit()
    trainer = Trainer(tiny_cfg(tmp_path / precision, monitor, f"train.precision={precision}"), progress=False)
    mixed = trainer.fit()
    assert abs(mixed["test"]["MAE"]["mean"] - full["test"]["MAE"]["mean"]) < 0.1
    # the first step starts from the same weights and batch: the monitor's gradient norms agree to the precision's
    # rounding, so the hooks saw unscaled gradients (fp16's scaler multiplies the loss by 65536 before backward)
    a = _grad_lines(tmp_path / "fp32" / "run" / "seed_0")[0]
    b = _grad_lines(tmp_path / precision / "run" / "seed_0")[0]
    for m in ("text", "audio", "visual"):
        assert b[f"g/{m}"] == pytest.approx(a[f"g/{m}"], rel=0.05), m
    state = torch.load(tmp_path / precision / "run" / "seed_0" / "last.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert (state["scaler"] is not None) == (precision == "fp16")


def test_an_interrupted_fp16_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    full = Trainer(tiny_cfg(tmp_path / "full", "train.precision=fp16"), progress=False).fit()
    cfg = tiny_cfg(tmp_path / "cut", "train.precision=fp16")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, hooks=[Interrupt(14)], progress=False).fit()
    sd = tmp_path / "cut" / "run" / "seed_0"
    assert torch.load(sd / "last.pt", weights_only=True)["scaler"]["scale"] > 0
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(cfg, progress=False).fit()
    assert Trainer(cfg, progress=False).fit(resume=True)["test"] == full["test"]


def test_compiled_training_matches_eager_and_saves_plain_state_dicts(tmp_path: Path) -> None:
    """``train.compile=eager`` traces the model with TorchDynamo (the same ops run): without dropout, the same metrics
    as an uncompiled run within float tolerance, and a checkpoint whose keys are the model's own (no ``_orig_mod.``
    prefix)."""
    no_drop = "model.params.dropout=0"
    plain = Trainer(tiny_cfg(tmp_path / "plain", no_drop, method="early_fusion"), progress=False).fit()
    trainer = Trainer(tiny_cfg(tmp_path / "compiled", no_drop, "train.compile=eager", method="early_fusion"),
                      progress=False)
    compiled = trainer.fit()
    for metric in ("MAE", "Corr"):
        assert compiled["test"][metric]["mean"] == pytest.approx(plain["test"][metric]["mean"], abs=1e-4)
    state = torch.load(tmp_path / "compiled" / "run" / "seed_0" / "last.pt", weights_only=True)
    plain_state = torch.load(tmp_path / "plain" / "run" / "seed_0" / "last.pt", weights_only=True)
    assert list(state["model"]) == list(plain_state["model"])


def test_compiled_dropout_is_seeded_and_traced_without_graph_breaks(tmp_path: Path) -> None:
    """Under ``torch.compile`` dropout draws its bits with ``torch.randint`` (the eager path's in-place ``random_``
    and int16 view break the graph), so a compiled run with dropout is deterministic but its masks are not the
    eager run's; attention's all-valid-mask shortcut is not taken while tracing (it reads a value)."""
    from torch import _dynamo

    from accord.models.modules.attention import MultiheadAttention, random_bits15

    runs = [Trainer(tiny_cfg(tmp_path / f"c{i}", "train.compile=eager", method="early_fusion"), progress=False).fit()
            for i in range(2)]
    assert runs[0]["test"]["MAE"]["mean"] == runs[1]["test"]["MAE"]["mean"]
    plain = Trainer(tiny_cfg(tmp_path / "plain", method="early_fusion"), progress=False).fit()
    assert runs[0]["test"]["MAE"]["mean"] != plain["test"]["MAE"]["mean"]  # another dropout stream
    bits = _dynamo.explain(lambda x: random_bits15((64,), x))(torch.zeros(1))
    assert bits.graph_break_count == 0
    attn = MultiheadAttention(8, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    out = _dynamo.explain(lambda q, kv, m: attn(q, kv, m)[0])(torch.randn(3, 4, 8), torch.randn(3, 5, 8), mask)
    assert out.graph_break_count == 0


def test_compile_is_refused_with_a_double_backward_hook(tmp_path: Path) -> None:
    from accord.core.errors import ConfigError

    trainer = Trainer(tiny_cfg(tmp_path, "train.compile=eager", method="cpsl"), progress=False)
    with pytest.raises(ConfigError, match=r"^train.compile=eager: hook 'conflict_penalty' needs double backward"):
        trainer.fit()
