"""Several transformer stacks of one shape run as ONE batched computation on utterance-level data (one step).

On utterance-level data (MOSI-U: every modality one vector, T = 1) a :class:`CrossmodalTransformer` is a chain of
small products (``[B, d] x [d, 4d]``) and per-op overhead dominates its cost: MulT runs six crossmodal stacks and
three memory stacks, each of them dozens of small ops forward and backward. :func:`one_step_transformers` runs G
stacks of the same shape at once: each parameter is stacked over the stacks (``torch.stack``, one op forward and
one backward), and every layer is one batched product (``baddbmm``) or one batched elementwise op over
``[G, B, d]``. Each stack keeps its own parameters, names and state dict; only the number of ops changes.

The computation is the one-key path of :class:`~accord.models.modules.attention.MultiheadAttention` (the softmax
over a single key is 1, so attention is ``out_proj(dropout(v))`` with ``v`` the value half of ``kv_proj``) inside
:meth:`CrossmodalTransformer.forward`. Without dropout the outputs and gradients equal the stacks' own to float
rounding (a batched product may round differently from a single one: within 1e-6 in the tests; MulT's MOSI-U
predictions matched bit for bit in an ad hoc check). With dropout
the masks are drawn differently (one draw for all stacks), with the same probabilities: the same model, other
random numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from accord.models.modules.attention import (
    CrossmodalTransformer,
    CrossmodalTransformerLayer,
    drop_threshold,
    dropout,
    dropout_scale_mask,
    random_bits15,
    shared_positions,
    values_unreadable,
)


def grouped_linear(x: Tensor, layers: Sequence[nn.Linear], rows: slice | None = None) -> Tensor:
    """``x [G, B, in]`` through ``layers[g]`` for each g, ``[G, B, out]``: one ``baddbmm`` on the stacked weights
    (``rows`` picks output rows of every layer, e.g. the value half of a key/value projection).

    Computed transposed, ``(W x^T + b)^T``: the weights are the product's first operand, so their gradient
    ``dout^T x`` comes out in the weights' own layout and each layer's slice is handed to its ``.grad`` as it is,
    where ``x W^T`` gives transposed weight gradients that the accumulation copies (forward + backward of MulT's
    six crossmodal FFN products, [6, 16, 50] x [50, 200]: 440 -> 370 µs, ad hoc). The result is a transposed view
    (``[G, B, out]`` with the batch innermost); the next grouped product reads it without a copy."""
    weight = torch.stack([layer.weight for layer in layers])
    bias = torch.stack([_bias(layer) for layer in layers])
    if rows is not None:
        weight, bias = weight[:, rows], bias[:, rows]
    return torch.baddbmm(bias.unsqueeze(2), weight, x.transpose(1, 2)).transpose(1, 2)


def _bias(layer: nn.Linear) -> Tensor:
    if layer.bias is None:
        raise ValueError("grouped_linear: every layer needs a bias")
    return layer.bias


def grouped_layer_norm(x: Tensor, norms: Sequence[nn.LayerNorm]) -> Tensor:
    """``x [G, B, D]`` through ``norms[g]`` for each g: the normalisation once for all, then each norm's
    elementwise affine (``addcmul``), which rounds as :func:`torch.nn.functional.layer_norm` does on CPU."""
    first = norms[0]
    if any(n.weight is None or n.bias is None for n in norms):
        raise ValueError("grouped_layer_norm: every LayerNorm needs its elementwise affine")
    weight = torch.stack([n.weight for n in norms]).unsqueeze(1)
    bias = torch.stack([n.bias for n in norms]).unsqueeze(1)
    return torch.addcmul(bias, F.layer_norm(x, first.normalized_shape, eps=first.eps), weight)


@functools.lru_cache(maxsize=64)
def _group_thresholds(ps: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    thresholds = [drop_threshold(p) for p in ps]
    # a slice that drops everything (threshold 2^15, beyond int16) keeps nothing through its scale of 0
    limit = torch.tensor([min(t, 32767) for t, _ in thresholds], dtype=torch.int16, device=device)
    scale = torch.tensor([0.0 if p_eff >= 1.0 else 1.0 / (1.0 - p_eff) for _, p_eff in thresholds], dtype=dtype,
                         device=device)
    return limit, scale


def group_scale_mask(shape: Sequence[int], ps: Sequence[float], like: Tensor) -> Tensor | None:
    """Inverted-dropout multiplier of ``shape = [G, ...]`` whose slice g drops with probability ``ps[g]``
    (:func:`~accord.models.modules.attention.dropout_scale_mask` per slice: ``1 / (1 - p_eff)`` where kept, 0 where
    dropped). None when no slice drops; one :func:`dropout_scale_mask` when all slices share one probability."""
    if all(drop_threshold(p)[0] == 0 for p in ps):
        return None
    if len(set(ps)) == 1:
        return dropout_scale_mask(shape, ps[0], like)
    make = _group_thresholds.__wrapped__ if torch.compiler.is_compiling() else _group_thresholds  # no cached tensor
    limit, scale = make(tuple(ps), like.dtype, like.device)  # in a compiled graph
    view = (len(ps),) + (1,) * (len(shape) - 1)
    keep = random_bits15(shape, like) >= limit.view(view)
    return keep.to(like.dtype).mul_(scale.view(view))


def group_dropout(x: Tensor, ps: Sequence[float], training: bool) -> Tensor:
    """Inverted dropout on ``x [G, ...]`` with probability ``ps[g]`` in slice g: the dropout of each stack's own
    :class:`~accord.models.modules.attention.Dropout` (:func:`~accord.models.modules.attention.dropout`) when every
    slice shares one probability, a per-slice mask (:func:`group_scale_mask`) otherwise."""
    if not training:
        return x
    if len(set(ps)) == 1:
        return dropout(x, ps[0])
    mask = group_scale_mask(x.shape, ps, x)
    return x if mask is None else x * mask


def _check_same_shape(stacks: Sequence[CrossmodalTransformer]) -> None:
    """A one-line ValueError when the stacks cannot be batched (differing widths, depths, heads or modes)."""
    def shape(s: CrossmodalTransformer) -> tuple[object, ...]:
        layer = cast(CrossmodalTransformerLayer, s.layers[0]) if len(s.layers) else None
        return (s.dim, s.source_dim, len(s.layers), s.embed_scale, s.positions, s.training,
                None if layer is None else (layer.attn.heads, layer.ln_kv is None,
                                            cast(nn.Linear, layer.ffn[0]).out_features))
    shapes = {shape(s) for s in stacks}
    if len(shapes) != 1:
        raise ValueError(f"one_step_transformers: the stacks differ in (dim, source_dim, layers, embed_scale, "
                         f"positions, training, (heads, self-attention, ffn width)): {sorted(map(str, shapes))}")


def one_step_transformers(stacks: Sequence[CrossmodalTransformer], x: Tensor, x_mask: Tensor,
                          source: Tensor | None = None, source_mask: Tensor | None = None) -> Tensor:
    """``stacks[g](x[g, :, None], x_mask[g, :, None], source[g, :, None], source_mask[g, :, None])[:, 0]`` for
    every g, as one batched computation: ``x [G, B, D]`` (one step per sample), ``x_mask [G, B]`` (True = present),
    ``source [G, B, D_s]`` and ``source_mask [G, B]`` or None (self-attention stacks). Returns ``[G, B, D]``.

    Per layer (pre-LN, one key): ``h = h + Drop(W_o Drop_attn(W_v LN_kv(src) + b_v) + b_o)`` (zero where the sample
    has no key), ``h = h + Drop(FFN(LN_ffn(h)))``; the embedding ``Drop(sqrt(d) x + pos_0)`` before and the output
    LayerNorm after, times ``x_mask``. The stacks must share widths, depth, heads and mode (a ValueError says which
    differ); their dropout probabilities may differ (MulT's attention dropout is per target modality)."""
    _check_same_shape(stacks)
    first = stacks[0]
    training = first.training

    def embed(z: Tensor) -> Tensor:
        z = first.embed_scale * z
        if first.positions:
            z = z + shared_positions(1, z.shape[-1], device=z.device, dtype=z.dtype)[0]
        return group_dropout(z, [s.embed_drop.p for s in stacks], training)

    h = embed(x)
    src = None if source is None else embed(source)
    key_mask = x_mask if source_mask is None else source_mask
    full = not values_unreadable(key_mask) and bool(key_mask.all())
    has_key = None if full else key_mask.to(x.dtype).unsqueeze(-1)
    for i in range(len(first.layers)):
        h = _one_step_layer([cast(CrossmodalTransformerLayer, s.layers[i]) for s in stacks], h, src, has_key,
                            training)
    return grouped_layer_norm(h, [s.ln_out for s in stacks]) * x_mask.unsqueeze(-1).to(h.dtype)


def _one_step_layer(layers: Sequence[CrossmodalTransformerLayer], h: Tensor, src: Tensor | None,
                    has_key: Tensor | None, training: bool) -> Tensor:
    """One layer of every stack on ``h [G, B, D]`` (see :func:`one_step_transformers`)."""
    g, b, dim = h.shape
    heads = layers[0].attn.heads
    if src is None:
        kv = grouped_layer_norm(h, [layer.ln_q for layer in layers])
    else:
        kv = grouped_layer_norm(src, [_ln_kv(layer.ln_kv) for layer in layers])
    v = grouped_linear(kv, [layer.attn.kv_proj for layer in layers], rows=slice(dim, 2 * dim))
    scale = group_scale_mask((g, b, heads, 1), [layer.attn.dropout for layer in layers], v) if training else None
    if scale is not None:
        v = (v.view(g, b, heads, dim // heads) * scale).reshape(g, b, dim)  # a view unless the product's layout
        # cannot merge the heads back (it can for the transposed layout grouped_linear returns)
    out = grouped_linear(v, [layer.attn.out_proj for layer in layers])
    if has_key is not None:
        out = out * has_key
    res_p = [layer.drop.p for layer in layers]
    h = h + group_dropout(out, res_p, training)
    f = grouped_layer_norm(h, [layer.ln_ffn for layer in layers])
    f = torch.relu(grouped_linear(f, [cast(nn.Linear, layer.ffn[0]) for layer in layers]))
    f = group_dropout(f, [cast(nn.Dropout, layer.ffn[2]).p for layer in layers], training)
    f = grouped_linear(f, [cast(nn.Linear, layer.ffn[3]) for layer in layers])
    return h + group_dropout(f, res_p, training)


def _ln_kv(norm: nn.LayerNorm | None) -> nn.LayerNorm:
    if norm is None:  # _check_same_shape made every stack of one mode; a cross stack has its source LayerNorm
        raise ValueError("one_step_transformers: a source was given to self-attention stacks")
    return norm


__all__ = ["group_dropout", "group_scale_mask", "grouped_layer_norm", "grouped_linear", "one_step_transformers"]

