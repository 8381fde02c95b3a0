"""Transformer stacks run as one batched computation on one-step data (``models/modules/grouped.py``) and MulT's
``batch_streams`` switch: the same function of the same parameters as running each stack alone (outputs and
gradients equal to float rounding without dropout: batched products may round differently from single ones),
each stack's own dropout probability at each site, and errors for stacks that cannot be batched."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from accord.core.types import MODALITIES
from accord.models import create_model
from accord.models.modules import CrossmodalTransformer
from accord.models.modules.attention import drop_threshold
from accord.models.modules.grouped import group_scale_mask, grouped_linear, one_step_transformers
from test_models import TINY_DIMS, make_batch, training_ops


def _stacks(n: int, self_attention: bool = False, seed: int = 0, **kw: float) -> list[CrossmodalTransformer]:
    torch.manual_seed(seed)
    stacks = [CrossmodalTransformer(8, 2, 2, self_attention=self_attention, **kw) for _ in range(n)]
    for s in stacks:  # non-trivial LayerNorm affines, so a swapped LayerNorm shows
        for name, p in s.named_parameters():
            if name.endswith(("ln_q.weight", "ln_kv.weight", "ln_ffn.weight", "ln_out.weight")):
                p.data.uniform_(0.5, 1.5)
            elif name.endswith(("ln_q.bias", "ln_kv.bias", "ln_ffn.bias", "ln_out.bias")):
                p.data.uniform_(-0.5, 0.5)
    return stacks


def _one_by_one(stacks: list[CrossmodalTransformer], x: Tensor, x_mask: Tensor, src: Tensor | None,
                src_mask: Tensor | None) -> Tensor:
    return torch.stack([
        s(x[g].unsqueeze(1), x_mask[g].unsqueeze(1), None if src is None else src[g].unsqueeze(1),
          None if src_mask is None else src_mask[g].unsqueeze(1))[:, 0]
        for g, s in enumerate(stacks)])


@pytest.mark.parametrize("self_attention", [False, True])
def test_one_step_stacks_equal_each_stack_alone_with_missing_keys_and_targets(self_attention: bool) -> None:
    stacks = [s.eval() for s in _stacks(3, self_attention)]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 8, generator=g, requires_grad=True)
    src = None if self_attention else torch.randn(3, 5, 8, generator=g, requires_grad=True)
    x_mask = torch.ones(3, 5, dtype=torch.bool)
    x_mask[1, 2] = False  # a missing target: zero output
    src_mask = None if self_attention else torch.ones(3, 5, dtype=torch.bool)
    if src_mask is not None:
        src_mask[2, 4] = False  # a missing source: the attention adds nothing (not even out_proj's bias)
    weights = torch.randn(3, 5, 8, generator=g)
    got = one_step_transformers(stacks, x, x_mask, src, src_mask)
    want = _one_by_one(stacks, x, x_mask, src, src_mask)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # batched products may round differently
    assert torch.equal(got[1, 2], torch.zeros(8))
    inputs = [x] if src is None else [x, src]
    params = [p for s in stacks for p in s.parameters()]
    grads_got = torch.autograd.grad((got * weights).sum(), inputs + params, allow_unused=True)
    grads_want = torch.autograd.grad((want * weights).sum(), inputs + params, allow_unused=True)
    used = 0
    for a, b in zip(grads_got, grads_want, strict=True):
        assert (a is None) == (b is None)  # the same parameters are read (no query projection on one key)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            used += 1
    assert used > len(params) // 2


def test_a_missing_source_drops_the_attention_output_bias_too() -> None:
    stacks = [s.eval() for s in _stacks(2)]
    x, src = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    ones = torch.ones(2, 3, dtype=torch.bool)
    none = ones.clone()
    none[0, 1] = False
    missing = one_step_transformers(stacks, x, ones, src, none)
    present = one_step_transformers(stacks, x, ones, src, ones)
    assert not torch.allclose(missing[0, 1], present[0, 1])
    assert torch.equal(missing[1], present[1]) and torch.equal(missing[0, 0], present[0, 0])
    # what a missing source leaves: the FFN of the embedded target alone, as the stack alone computes it
    alone = stacks[0](x[0, 1].view(1, 1, 8), ones[0, :1].view(1, 1), src[0, 1].view(1, 1, 8),
                      torch.zeros(1, 1, dtype=torch.bool))
    torch.testing.assert_close(missing[0, 1], alone[0, 0], rtol=1e-6, atol=1e-6)


def test_each_stack_keeps_its_own_attention_dropout() -> None:
    """Attention dropout only in stack 1 (of 3, every other dropout off): in training, stacks 0 and 2 give their
    evaluation output exactly, stack 1 does not; stack 1's drop rate is its own probability."""
    stacks = _stacks(3, embed_dropout=0.0, relu_dropout=0.0, res_dropout=0.0)
    stacks[1].layers[0].attn.dropout = 0.5
    x, src = torch.randn(3, 64, 8), torch.randn(3, 64, 8)
    mask = torch.ones(3, 64, dtype=torch.bool)
    evaluated = one_step_transformers([s.eval() for s in stacks], x, mask, src, mask)
    torch.manual_seed(3)
    trained = one_step_transformers([s.train() for s in stacks], x, mask, src, mask)
    assert torch.equal(trained[0], evaluated[0]) and torch.equal(trained[2], evaluated[2])
    assert not torch.allclose(trained[1], evaluated[1])


def test_each_dropout_reaches_its_own_stack_and_site_in_training() -> None:
    """Training mode with every dropout at 0 or 1 (1 drops everything, so both paths are deterministic): stack 1
    drops its attention, stack 2 its FFN's hidden units, stack 3 its residual branches, stack 4 its embeddings;
    the batched path equals each stack alone in training, so every probability reaches its own site and stack."""
    stacks = [s.train() for s in _stacks(5, embed_dropout=0.0, relu_dropout=0.0, res_dropout=0.0)]
    for layer in stacks[1].layers:
        layer.attn.dropout = 1.0
    for layer in stacks[2].layers:
        layer.ffn[2].p = 1.0
    for layer in stacks[3].layers:
        layer.drop.p = 1.0
    stacks[4].embed_drop.p = 1.0
    x, src = torch.randn(5, 4, 8), torch.randn(5, 4, 8)
    mask = torch.ones(5, 4, dtype=torch.bool)
    got = one_step_transformers(stacks, x, mask, src, mask)
    torch.testing.assert_close(got, _one_by_one(stacks, x, mask, src, mask), rtol=1e-6, atol=1e-6)
    evaluated = one_step_transformers([s.eval() for s in stacks], x, mask, src, mask)
    assert torch.equal(got[0], evaluated[0])
    for g in range(1, 5):  # each dropout changes its stack
        assert not torch.allclose(got[g], evaluated[g], atol=1e-3), g


def test_attention_dropout_drops_whole_heads_of_each_sample() -> None:
    """One key: attention dropout keeps or drops each HEAD's value of a sample (the weight of its single key). With
    zero targets, no positions, an identity output projection and a zero FFN, a layer's output is the output norm of
    the masked values: a sample keeping all heads gives its evaluation output, one dropping all gives the norm of
    zeros, and (4 heads at p = 0.5) most samples drop some heads only."""
    torch.manual_seed(0)
    stack = CrossmodalTransformer(8, 4, 1, attn_dropout=0.5, positions=False)
    layer = stack.layers[0]
    with torch.no_grad():
        layer.attn.out_proj.weight.copy_(torch.eye(8))
        layer.attn.out_proj.bias.zero_()
        for lin in (layer.ffn[0], layer.ffn[3]):
            lin.weight.zero_()
            lin.bias.zero_()
    x, src = torch.zeros(1, 64, 8), torch.randn(1, 64, 8)
    mask = torch.ones(1, 64, dtype=torch.bool)
    evaluated = one_step_transformers([stack.eval()], x, mask, src, mask)[0]
    trained = one_step_transformers([stack.train()], x, mask, src, mask)[0]
    nothing = stack.ln_out(torch.zeros(8))
    whole = torch.isclose(trained, evaluated, atol=1e-4).all(dim=1)
    none = torch.isclose(trained, nothing.expand(64, 8), atol=1e-4).all(dim=1)
    assert whole.any() and none.any()
    assert int((~whole & ~none).sum()) > 32


@pytest.mark.parametrize("ps", [[0.0, 0.5, 0.9], [0.25, 0.25, 0.25], [0.0, 0.0, 0.0]])
def test_group_scale_mask_drops_each_slice_at_its_rate_and_rescales(ps: list[float]) -> None:
    torch.manual_seed(0)
    like = torch.zeros(1)
    mask = group_scale_mask((3, 400, 50), ps, like)
    if not any(ps):
        assert mask is None
        return
    assert mask is not None
    for g, p in enumerate(ps):
        _, p_eff = drop_threshold(p)
        kept = mask[g][mask[g] != 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 1.0 / (1.0 - p_eff)))
        assert abs(float((mask[g] == 0).float().mean()) - p) < 0.01
        assert abs(float(mask[g].mean()) - 1.0) < 0.03


def test_grouped_linear_reads_the_chosen_rows_of_each_layer() -> None:
    layers = [torch.nn.Linear(4, 6) for _ in range(2)]
    x = torch.randn(2, 3, 4)
    got = grouped_linear(x, layers, rows=slice(3, 6))
    for g, layer in enumerate(layers):
        torch.testing.assert_close(got[g], x[g] @ layer.weight[3:].T + layer.bias[3:])
    got.sum().backward()
    for layer in layers:  # rows outside the slice get a zero gradient
        assert torch.equal(layer.weight.grad[:3], torch.zeros(3, 4)) and layer.weight.grad[3:].abs().sum() > 0


def test_stacks_of_different_shapes_are_refused_naming_what_differs() -> None:
    torch.manual_seed(0)
    a, b = CrossmodalTransformer(8, 2, 2), CrossmodalTransformer(8, 2, 3)
    with pytest.raises(ValueError, match=r"one_step_transformers: the stacks differ in .*layers"):
        one_step_transformers([a, b], torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool),
                              torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="one_step_transformers: the stacks differ"):
        one_step_transformers([a.eval(), CrossmodalTransformer(8, 2, 2).train()], torch.randn(2, 3, 8),
                              torch.ones(2, 3, dtype=torch.bool), torch.randn(2, 3, 8),
                              torch.ones(2, 3, dtype=torch.bool))


def test_a_source_for_self_attention_stacks_is_refused() -> None:
    stacks = _stacks(2, self_attention=True)
    ones = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="one_step_transformers: a source was given to self-attention stacks"):
        one_step_transformers(stacks, torch.randn(2, 3, 8), ones, torch.randn(2, 3, 8), ones)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_mult_batch_streams_is_the_same_model_on_one_step_data(pool: str) -> None:
    """MulT on utterance-level data (one step per modality, one sample missing audio, one missing text): the
    batched path gives the per-transformer path's prediction, features and gradients to float rounding; on
    sequences the switch changes nothing (the path is not taken)."""
    params = dict(hidden=8, heads=2, layers=2, attn_dropout=0.2, attn_dropout_audio=0.1, attn_dropout_mem=0.3,
                  pool=pool, downsample_audio=1, downsample_visual=1)
    torch.manual_seed(0)
    batched = create_model("mult", TINY_DIMS, 1, **params).eval()
    alone = create_model("mult", TINY_DIMS, 1, batch_streams=False, **params).eval()
    alone.load_state_dict(batched.state_dict())
    one_step = make_batch({"text": [1, 1, 0, 1], "audio": [1, 0, 1, 1], "visual": [1, 1, 1, 1]}, TINY_DIMS)
    out_b, out_a = batched(one_step), alone(one_step)
    torch.testing.assert_close(out_b.prediction, out_a.prediction, rtol=1e-6, atol=1e-6)
    for m in MODALITIES:
        torch.testing.assert_close(out_b.features[m], out_a.features[m], rtol=1e-6, atol=1e-6)
    out_b.prediction.sum().backward()
    out_a.prediction.sum().backward()
    for (name, p), q in zip(batched.named_parameters(), alone.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    sequences = make_batch({"text": [3, 2, 1, 3], "audio": [2, 1, 2, 2], "visual": [1, 3, 2, 1]}, TINY_DIMS)
    assert torch.equal(batched(sequences).prediction, alone(sequences).prediction)


def test_mult_batch_streams_trains_with_dropout_and_runs_fewer_ops() -> None:
    """In training the batched path draws other dropout masks (so the outputs differ) and runs far fewer ops."""
    params = dict(hidden=8, heads=2, layers=2, attn_dropout=0.2)
    batch = make_batch({m: [1, 1, 1, 1] for m in MODALITIES}, TINY_DIMS)
    counts, predictions = [], []
    for streams in (True, False):
        torch.manual_seed(0)  # the same initial weights and random stream for both paths
        model = create_model("mult", TINY_DIMS, 1, batch_streams=streams, **params).train()
        n, prediction = training_ops(model, batch)
        counts.append(n)
        predictions.append(prediction)
    assert counts[0] < 0.6 * counts[1], counts
    assert not torch.allclose(predictions[0], predictions[1])
