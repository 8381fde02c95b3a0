"""``benchmarks/mfu.py``'s split of a profiled step into the ops that carry model FLOPs and the rest (the MFU
ceiling in speed.md), on hand-made profiler events."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mfu  # noqa: E402


@dataclass
class Event:
    """What :func:`mfu.split_products` reads of a ``torch.profiler`` event (times in µs)."""

    name: str
    cpu_time_total: float
    self_cpu_time_total: float
    cpu_parent: Event | None = None


def test_products_count_once_and_their_children_are_not_the_rest() -> None:
    events: list[Event] = []
    conv = Event("aten::convolution", 10_000, 1_000)  # -> _convolution (also a FLOP op) -> mkldnn_convolution
    inner = Event("aten::_convolution", 9_000, 0, conv)
    kernel = Event("aten::mkldnn_convolution", 9_000, 8_000, inner)
    events += [conv, inner, kernel, Event("aten::fill_", 1_000, 1_000, kernel)]  # two levels below a product
    bmm = Event("aten::baddbmm", 5_000, 3_000)  # its broadcast of the bias is part of the product's time
    events += [bmm, Event("aten::copy_", 2_000, 2_000, bmm)]
    backward = Event("_BlockedAttentionBackward", 8_000, 1_000)  # a product inside a custom backward still counts
    events += [backward, Event("aten::bmm", 4_000, 4_000, backward), Event("aten::exp_", 3_000, 3_000, backward)]
    events += [Event("aten::exp_", 2_000, 2_000), Event("aten::copy_", 600, 600), Event("aten::mm", 1_000, 1_000)]
    products, rest = mfu.split_products(events, steps=2, n=3)
    # (10 + 5 + 4 + 1) ms over 2 steps; the convolution's and baddbmm's children are inside their parents
    assert products == pytest.approx(10.0)
    # exp_: 3 + 2 ms over 2 steps; the custom backward's own 1 ms; copy_ only outside baddbmm (0.6 ms)
    assert rest == [{"op": "aten::exp_", "self_ms_per_step": 2.5},
                    {"op": "_BlockedAttentionBackward", "self_ms_per_step": 0.5},
                    {"op": "aten::copy_", "self_ms_per_step": 0.3}]


def test_the_product_ops_are_what_flop_counter_counts_and_the_cpu_flash_kernels() -> None:
    assert {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::convolution",
            "aten::convolution_backward", "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward"} <= mfu.PRODUCT_OPS
    assert not {"aten::exp_", "aten::copy_", "aten::random_", "aten::_fused_adamw_"} & mfu.PRODUCT_OPS
