"""MulT (Tsai et al., ACL 2019) built from its params: every dropout, width and depth reaches the block it names,
the raw text alone is dropped out before its projection, and the pooling of the memory sequences is the one
configured. (Contract, padding and query/source wiring: ``test_models.py``.)

Written after the mutation run over ``models/mult.py`` (benchmarks/results/mutation.md): the earlier tests checked
shapes, padding and which modality queries which, not that a configured dropout or depth is the one built.
"""

from __future__ import annotations

import pytest
import torch

from accord.core.errors import ConfigError
from accord.core.types import MODALITIES, Batch
from accord.models import create_model
from accord.models.modules import masked_mean
from test_models import TINY_DIMS, make_batch

DROPS = {"attn_dropout": 0.1, "attn_dropout_audio": 0.2, "attn_dropout_visual": 0.3, "relu_dropout": 0.15,
         "res_dropout": 0.05, "embed_dropout": 0.35, "out_dropout": 0.45}


def test_an_even_convolution_kernel_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.conv_kernel: must be odd .*got 2"):
        create_model("mult", TINY_DIMS, 1, conv_kernel=2)


def test_every_block_gets_the_configured_dropouts_kernel_and_depth() -> None:
    model = create_model("mult", TINY_DIMS, 1, conv_kernel=5, layers=1, attn_dropout_mem=None, **DROPS)
    attn = {"text": 0.1, "audio": 0.2, "visual": 0.3}
    for m in MODALITIES:  # Eq. 1: bias-free temporal convolutions of the configured kernel
        assert model.proj[m].conv.kernel_size == (5,) and model.proj[m].conv.bias is None
    for t in MODALITIES:
        for s in MODALITIES:
            if s == t:
                continue
            block = model.cross[f"{t}_from_{s}"]
            assert len(block.layers) == 1 and block.embed_drop.p == 0.35
            for layer in block.layers:  # attention dropout by TARGET modality
                assert layer.attn.dropout == attn[t] and layer.ffn[2].p == 0.15 and layer.drop.p == 0.05
        memory = model.memory[t]
        assert len(memory.layers) == 3 and memory.embed_drop.p == 0.35  # max(layers, 3), as the released code
        for layer in memory.layers:  # attn_dropout_mem None: the text attention dropout, as the released code
            assert layer.attn.dropout == 0.1 and layer.ffn[2].p == 0.15 and layer.drop.p == 0.05
    assert model.text_drop.p == 0.35 and model.head.drop.p == 0.45


@pytest.mark.parametrize(("params", "depth", "mem_drop"), [
    ({"layers": 4}, 4, 0.0), ({"layers": 2, "mem_layers": 1}, 1, 0.0), ({"layers": 1, "attn_dropout_mem": 0.07},
                                                                        3, 0.07)])
def test_memory_depth_and_attention_dropout(params: dict[str, object], depth: int, mem_drop: float) -> None:
    model = create_model("mult", TINY_DIMS, 1, **params)
    for t in MODALITIES:
        assert len(model.memory[t].layers) == depth
        assert {layer.attn.dropout for layer in model.memory[t].layers} == {mem_drop}


def test_only_the_raw_text_is_dropped_out_before_its_projection() -> None:
    torch.manual_seed(0)
    model = create_model("mult", TINY_DIMS, 1, embed_dropout=0.5).train()
    batch = make_batch({m: [4, 3] for m in MODALITIES}, TINY_DIMS)
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.proj[m].register_forward_pre_hook(lambda mod, args, m=m: seen.__setitem__(m, args[0]))
             for m in MODALITIES]
    model(batch)
    for h in hooks:
        h.remove()
    text = seen["text"]
    kept = text != 0
    assert (~kept & (batch.features["text"] != 0)).any()  # some raw text values dropped
    torch.testing.assert_close(text[kept], batch.features["text"][kept] * 2)  # the rest scaled by 1 / (1 - p)
    for m in ("audio", "visual"):
        assert torch.equal(seen[m], batch.features[m])


def _features_and_memory(model: torch.nn.Module, batch: Batch) -> tuple[dict[str, torch.Tensor],
                                                                       dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``forward_features`` (no grad) and, per target, the full memory transformer's output and its mask (captured
    when the model runs the full memory forward, i.e. for ``pool = "mean"``)."""
    memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [model.memory[t].register_forward_hook(
        lambda mod, args, out, t=t: memory.__setitem__(t, (out, args[1]))) for t in MODALITIES]
    try:
        with torch.no_grad():
            feats = model.forward_features(batch)
    finally:
        for h in hooks:
            h.remove()
    return feats, memory


def test_mean_pooling_averages_the_whole_memory_sequence() -> None:
    torch.manual_seed(0)
    model = create_model("mult", TINY_DIMS, 1, pool="mean", downsample_audio=1, downsample_visual=1).eval()
    batch = make_batch({"text": [4, 2], "audio": [3, 5], "visual": [2, 4]}, TINY_DIMS)
    feats, memory = _features_and_memory(model, batch)
    for t in MODALITIES:
        out, mask = memory[t]
        torch.testing.assert_close(feats[t], masked_mean(out, mask))
        last = out[torch.arange(2), mask.sum(1) - 1]
        assert not torch.allclose(feats[t], last, atol=1e-4)


def test_last_pooling_runs_the_final_memory_layer_for_the_last_query_only() -> None:
    """``pool = "last"`` (the paper's) calls :meth:`CrossmodalTransformer.forward_last`, never the full
    memory forward, and equals the last valid step of the full forward."""
    torch.manual_seed(0)
    model = create_model("mult", TINY_DIMS, 1, downsample_audio=1, downsample_visual=1).eval()
    batch = make_batch({"text": [4, 2], "audio": [3, 5], "visual": [2, 4]}, TINY_DIMS)
    feats, full = _features_and_memory(model, batch)
    assert full == {}  # no memory transformer ran its full forward
    model.params.pool = "mean"  # type: ignore[attr-defined]
    _, memory = _features_and_memory(model, batch)  # the full memory forward of the same model
    for t in MODALITIES:
        out, mask = memory[t]
        torch.testing.assert_close(feats[t], out[torch.arange(2), mask.sum(1) - 1], atol=1e-5, rtol=1e-5)
