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
    """Under ``torch.compile`` dropout is torch's ``F.dropout`` at every size (the eager path's random bits, for
    tensors above ``SMALL_DROPOUT_NUMEL``, use an in-place ``random_`` and an int16 view that break the graph;
    ``random_bits15`` itself draws with ``torch.randint`` while tracing), so a compiled run with dropout is
    deterministic; attention's all-valid-mask shortcut is not taken while tracing (it reads a value)."""
    from torch import _dynamo

    from accord.models.modules.attention import MultiheadAttention, random_bits15

    runs = [Trainer(tiny_cfg(tmp_path / f"c{i}", "train.compile=eager", method="early_fusion"), progress=False).fit()
            for i in range(2)]
    assert runs[0]["test"]["MAE"]["mean"] == runs[1]["test"]["MAE"]["mean"]
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


DELIBERATE_BREAKS = {("self_mm", "train"): "labels_so_far"}
"""Graph breaks a model takes on purpose: Self-MM's training forward reads its label memory (sample ids, a Python
index) eagerly, so that the compiled graphs are not rebuilt for every batch's ids."""


FEWER_LAYERS: dict[str, dict[str, int]] = {"mult": {"layers": 1}, "cacr": {"layers": 1}, "misa": {"cmd_moments": 2},
                                           "ebmc": {"cmd_moments": 2}}
"""Fewer repeats of the same code (layers, CMD moments) where tracing takes longest; every code path stays."""


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_every_model_compiles_without_graph_breaks_or_per_batch_recompiles(mode: str) -> None:
    """Every registered model, compiled as ``train.compile`` and ``api.load(compile=...)`` compile it
    (:func:`compile_model`: ``dynamic=True``, duck shaping off), on a batch with unaligned lengths and a sample
    missing a modality: no graph break except the deliberate ones of :data:`DELIBERATE_BREAKS`; a second batch with
    other sample ids, values, lengths and batch size builds no new graph (nothing in a graph depends on ids, values
    or a batch's sizes); in eval mode the compiled model predicts what the eager one predicts, diagnostics included."""
    from torch import _dynamo
    from torch._dynamo.utils import counters

    from accord.models import create_model, list_models
    from accord.training.trainer import compile_model
    from conftest import tiny_dataset

    dims = {"text": 6, "audio": 4, "visual": 5}  # widths equal to some lengths: duck shaping would specialise them
    data = tiny_dataset(n=8, dims=tuple(dims.values()), t=(9, 9, 9))
    for split, longest in (("train", 9), ("valid", 6)):  # other ids, values and lengths; at least 5 steps, so that
        for lens in data[split].lengths.values():  # a 4-step downsampling leaves 2 or more (torch specialises 1)
            lens.clamp_(max=longest)[0] = longest
    batch, other = data["train"].batch(torch.arange(8)), data["valid"].batch(torch.arange(6))  # another batch size
    for b, row in ((batch, 2), (other, 5)):  # a sample without audio
        b.features["audio"][row] = 0.0
        b.mask["audio"][row] = False
        b.present[row, 1] = False
    for name in list_models():
        torch.manual_seed(0)
        model = getattr(create_model(name, dims, 1, **FEWER_LAYERS.get(name, {})), mode)()
        with torch.no_grad():
            eager = model(batch) if mode == "eval" else None
            _dynamo.reset()
            counters.clear()
            compile_model(model, "eager")  # as train.compile and load_model(compile=...) do
            compiled = model(batch)
            built = counters["stats"]["unique_graphs"]
            model(other)
        breaks = sorted(counters["graph_break"])
        expected = DELIBERATE_BREAKS.get((name, mode))
        if expected is None:
            assert not breaks, (name, breaks)
        else:
            assert len(breaks) == 1 and expected in breaks[0], (name, breaks)
        assert counters["stats"]["unique_graphs"] == built, (name, "recompiled for other ids / values")
        if eager is not None:
            assert torch.allclose(compiled.prediction, eager.prediction, atol=1e-6), name
            for key, value in eager.diagnostics.items():
                assert torch.allclose(compiled.diagnostics[key], value, atol=1e-6), (name, key)


def test_trimmed_batches_are_contiguous_copies_not_views() -> None:
    """Dynamic padding cuts each batch to its longest row; the cut is a contiguous copy (no ``_base``): a strided
    view of the split's padded tensor would make TorchDynamo specialise a batch's length (its guards relate the
    view's strides to its sizes) and rebuild a compiled model's graph for every new length."""
    from conftest import tiny_dataset

    split = tiny_dataset(n=8, t=(9, 9, 9))["train"]
    split.lengths = {m: torch.tensor([2, 3, 1, 2, 3, 2, 1, 2]) for m in split.lengths}
    tokens = torch.zeros(8, 3, 12, dtype=torch.long)
    tokens[:, 1, :4] = 1
    split.text_tokens = tokens
    batch = split.batch(torch.arange(8))
    for m, x in batch.features.items():
        assert x.shape[1] == 3 and x.is_contiguous() and x._base is None, m
    assert batch.text_tokens is not None and batch.text_tokens.shape[2] == 4
    assert batch.text_tokens.is_contiguous() and batch.text_tokens._base is None


def test_the_convolution_as_taps_equals_the_convolution_in_values_and_gradients() -> None:
    """``TemporalConv1d.taps`` (the form ``torch.compile`` traces) is the module's convolution: the same outputs
    and parameter gradients for kernels 3 and 5 on a batch with padding (a wrong tap offset or a flipped kernel
    fails this)."""
    from accord.models.modules.encoders import TemporalConv1d

    torch.manual_seed(0)
    x, mask = torch.randn(4, 9, 5), torch.rand(4, 9) > 0.3
    m = mask.unsqueeze(-1).float()
    for k in (3, 5):
        conv = TemporalConv1d(5, 7, k)
        out = conv(x, mask)
        grads = torch.autograd.grad(out.square().sum(), list(conv.parameters()))
        taps = conv.taps(x * m) * m
        torch.testing.assert_close(taps, out, rtol=0, atol=1e-6)
        for a, b in zip(torch.autograd.grad(taps.square().sum(), list(conv.parameters())), grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_trains_a_conv_encoder_at_new_lengths_without_a_new_graph(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With inductor (not only the tracing that the every-model test uses), a convolutional sequence encoder
    trained forward and backward on batches of other lengths and sizes reuses its graph: inductor's lowering of the
    convolution's backward fixed the length (TFN on ConflictBench was rebuilt at every new length), the taps form
    keeps it symbolic. The compiled values match the eager ones."""
    from torch import _dynamo
    from torch._dynamo.utils import counters

    from accord.models.modules.encoders import SequenceEncoder
    from accord.training.trainer import compile_model

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cached graph would hide the lowering
    torch.manual_seed(0)
    enc = SequenceEncoder(5, 8, projection="conv", temporal="conv", dropout=0.0).train()
    eager = SequenceEncoder(5, 8, projection="conv", temporal="conv", dropout=0.0).train()
    eager.load_state_dict(enc.state_dict())
    _dynamo.reset()
    counters.clear()
    compile_model(enc, "inductor")
    for b, t in ((8, 12), (6, 15), (7, 9)):
        x, mask = torch.randn(b, t, 5), torch.ones(b, t, dtype=torch.bool)
        mask[0, t // 2:] = False
        out = enc(x, mask).pooled
        out.square().sum().backward()
        torch.testing.assert_close(out, eager(x, mask).pooled, rtol=1e-5, atol=1e-5)
        if t == 12:
            built = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == built, "rebuilt for a new length"
    assert not counters["graph_break"]
