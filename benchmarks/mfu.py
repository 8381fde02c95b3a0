"""Model FLOP utilisation (MFU) of training steps on CPU: model FLOPs per step / step time / measured fp32 GEMM peak.

1. **Peak**: the best ``torch.mm`` rate on square fp32 matrices (``--gemm-sizes``, best of ``--gemm-reps``), with
   1 thread and with ``--threads`` threads. MFU is taken against the peak of the thread count the models run with.
2. **Model FLOPs** of one training step (forward + backward; the optimiser step is not counted) with
   :class:`torch.utils.flop_counter.FlopCounterMode`, which in torch 2.13 has no formula for the CPU fused attention
   ops: ``aten._scaled_dot_product_flash_attention_for_cpu`` is counted as ``4·B·H·Tq·Tk·d`` (``QK^T`` and ``PV``)
   and its backward as twice that (``dQ, dK, dV, dP``; the kernel's recomputation of ``QK^T`` is not a model FLOP),
   which is exactly what the explicit path's ``bmm`` calls count. Model FLOPs are counted on the reference ("before")
   formulation, so before and after share them; the FLOPs the "after" code really executes (the two-pass dropout
   attention runs the kernel twice) are reported beside them as ``executed_gflop``.
3. **Step time**: forward, the L1 loss of ``benchmarks/throughput.py`` (plus weighted auxiliary terms), backward and a
   fused AdamW step (the trainer's default ``train.optimizer_impl``), on random MOSI-shaped batches
   (``throughput.mosi_shaped_split``: T = 50/375/500, dims 768/5/20, random lengths, padding trimmed per batch). The
   modes (``before``: the attention/dropout code of ``accord.models.modules.attention`` before issue 16, patched in
   from the copies below; ``after``: the code as it is) run interleaved, ``--rounds`` rounds of ``--steps`` steps each,
   so a busy machine slows both alike. MFU = Σ model FLOPs / Σ step time over the timed steps; the median step's MFU
   is reported too.
4. **Where the time goes**: ``torch.profiler`` over two steps per mode, the top ops by self CPU time, and the time
   of the ops that carry the model FLOPs (``products_ms_per_step``: matrix products, convolutions, attention kernels;
   :data:`PRODUCT_OPS`), with the two profiled batches' model FLOPs and mean timed (unprofiled) step
   (``profiled_batches``). ``mfu_ceiling`` = model FLOPs / products' time / peak: the MFU the step would reach if
   every other op (softmax, dropout masks, elementwise, optimiser) took no time, the products running as they do.

Configurations (``--configs``):

- ``mult_default``: MulT with its defaults (audio/visual averaged over 4 steps), batch 32;
- ``mult_full``: MulT at full resolution (``downsample_audio = downsample_visual = 1``, as ``vs_mmsa.py``'s
  ``FULL_RES``), batch 32;
- ``mult_mmsa``: MMSA's MulT for MOSI (``vs_mmsa.ACCORD_MATCHED["mult"]``: d = 50, 10 heads, 4 layers, kernel 5,
  attention dropout 0.3 text / 0.2 audio / 0 visual / 0.3 memory, embedding dropout 0.2, output dropout 0.5) at
  full resolution, batch 16;
- ``cacr``: CACR with its defaults, batch 32;
- ``mult_mosi_u``: MulT defaults on MOSI-U's shape (one step per modality, dims 100/73/100), batch 32.

Usage::

    python benchmarks/mfu.py                          # every config, before and after, 2 threads
    python benchmarks/mfu.py --configs mult_full --modes after --rounds 2
    python benchmarks/mfu.py --modes before,after,after_explicit   # also: dropout attention on the explicit path
    python benchmarks/mfu.py --modes before,float_masks,after       # also: the dropout masks of commit bc816f5

Writes ``--out`` (default ``benchmarks/results/mfu.json``, atomically) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode, flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accord.core.io import write_json  # noqa: E402
from accord.core.types import MODALITIES, Batch  # noqa: E402
from accord.data.dataset import make_split  # noqa: E402
from accord.models import create_model  # noqa: E402
from accord.models.modules import attention as attn_mod  # noqa: E402
from throughput import DIMS, cpu_model, loss_fn, mosi_shaped_split  # noqa: E402
from vs_mmsa import ACCORD_MATCHED, FULL_RES  # noqa: E402

aten = torch.ops.aten


def model_params(overrides: list[str]) -> dict[str, Any]:
    """``["model.params.hidden=50", "train.batch_size=16", ...]`` -> ``{"hidden": 50}`` (numbers parsed)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        if key.startswith("model.params."):
            out[key.removeprefix("model.params.")] = float(raw) if "." in raw else int(raw)
    return out


FULL = model_params(FULL_RES)
CONFIGS: dict[str, dict[str, Any]] = {
    "mult_default": {"model": "mult", "params": {}, "batch_size": 32, "shape": "mosi",
                     "label": "MulT default (downsample 4), MOSI-shaped"},
    "mult_full": {"model": "mult", "params": FULL, "batch_size": 32, "shape": "mosi",
                  "label": "MulT full resolution, MOSI-shaped", "target": 0.40},
    "mult_mmsa": {"model": "mult", "params": {**model_params(ACCORD_MATCHED["mult"]), **FULL}, "batch_size": 16,
                  "shape": "mosi", "label": "MMSA-sized MulT with attention dropout, full resolution",
                  "target": 0.25},
    "cacr": {"model": "cacr", "params": {}, "batch_size": 32, "shape": "mosi", "label": "CACR default, MOSI-shaped"},
    "mult_mosi_u": {"model": "mult", "params": {}, "batch_size": 32, "shape": "mosi_u",
                    "label": "MulT default, MOSI-U-shaped (T = 1)"},
}
MOSI_U_DIMS = {"text": 100, "audio": 73, "visual": 100}

# ---------------------------------------------------------------------------------------------------------------
# FLOP formulas for the CPU fused attention ops (model FLOPs, see the module docstring)
# ---------------------------------------------------------------------------------------------------------------


def _flash_fwd_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    b, h, tq, d = query_shape
    return 2 * b * h * tq * key_shape[-2] * (d + value_shape[-1])


def _flash_bwd_flop(grad_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                    **kwargs: Any) -> int:
    return 2 * _flash_fwd_flop(query_shape, key_shape, value_shape)


FLOP_FORMULAS = {aten._scaled_dot_product_flash_attention_for_cpu: _flash_fwd_flop,
                 aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_bwd_flop}

# ---------------------------------------------------------------------------------------------------------------
# "before": the attention module's dropout and attention as they were before issue 16 (commit 5173a02)
# ---------------------------------------------------------------------------------------------------------------


def legacy_keep_mask(x: Tensor, p: float) -> tuple[Tensor, float]:
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
    bits = words.view(torch.int16)[:n].view(x.shape) & 0x7FFF
    threshold = round(p * 32768)
    return bits >= threshold, threshold / 32768


def legacy_dropout_forward(self: Any, x: Tensor) -> Tensor:
    if not self.training or self.p == 0.0:
        return x
    if self.p >= 1.0:
        return x * 0.0
    keep, p_eff = legacy_keep_mask(x, self.p)
    if p_eff == 0.0:
        return x
    return torch.where(keep, x * (1.0 / (1.0 - p_eff)), torch.zeros((), dtype=x.dtype, device=x.device))


def legacy_attention_forward(self: Any, query: Tensor, key_value: Tensor, key_mask: Tensor | None = None,
                             return_weights: bool = False, explicit: bool = False) -> tuple[Tensor, Tensor | None]:
    b, tq, _ = query.shape
    q = self._split(self.q_proj(query))
    k, v = (self._split(t) for t in self.kv_proj(key_value).chunk(2, dim=-1))
    has_key: Tensor | None = None
    attn_mask: Tensor | None = None
    if key_mask is not None and not bool(key_mask.all()):
        safe, has_key = attn_mod.safe_key_mask(key_mask)
        attn_mask = safe[:, None, None, :]
    p = self.dropout if self.training else 0.0
    weights: Tensor | None = None
    if return_weights or explicit:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if has_key is not None:
            weights = weights * has_key.to(weights.dtype)[:, None, None, None]
        out = F.dropout(weights, p, self.training) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
    out = self.out_proj(out.transpose(1, 2).reshape(b, tq, self.dim))
    if has_key is not None:
        out = out * has_key.to(out.dtype)[:, None, None]
    return out, weights


CURRENT: dict[str, Callable[..., Any]] = {"dropout": attn_mod.Dropout.forward,
                                          "attention": attn_mod.MultiheadAttention.forward}


def explicit_dropout_forward(self: Any, query: Tensor, key_value: Tensor, key_mask: Tensor | None = None,
                             return_weights: bool = False, explicit: bool = False) -> tuple[Tensor, Tensor | None]:
    """The current code, but attention with dropout on the explicit path (for comparison)."""
    out: tuple[Tensor, Tensor | None] = CURRENT["attention"](self, query, key_value, key_mask, return_weights,
                                                             explicit or (self.training and self.dropout > 0))
    return out


def float_keep01(shape: Any, threshold: int, like: Tensor) -> Tensor:
    """``_keep01`` as of commit bc816f5: every random word drawn at once, the comparison written into a float mask."""
    bits = attn_mod.random_bits15(shape, like)
    limit = attn_mod.scalar_operand(threshold, torch.int16, like.device)
    if attn_mod.is_batched(bits):
        return bits.ge(limit).to(like.dtype)
    return torch.ge(bits, limit, out=like.new_empty(tuple(shape)))


def float_keep_mask01(shape: Any, p: float, like: Tensor) -> tuple[Tensor | None, float]:
    """``keep_mask01`` as of commit bc816f5: the blocked path's keep mask in the activations' dtype (float)."""
    threshold, p_eff = attn_mod.drop_threshold(p)
    if threshold == 0:
        return None, 1.0
    if threshold >= 32768 or attn_mod.uses_torch_dropout(math.prod(shape), like):
        return attn_mod.dropout_scale_mask(shape, p, like), 1.0
    return float_keep01(shape, threshold, like), 1.0 / (1.0 - p_eff)


MODES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "before": (legacy_dropout_forward, legacy_attention_forward),
    "after": (CURRENT["dropout"], CURRENT["attention"]),
    "after_explicit": (CURRENT["dropout"], explicit_dropout_forward),
    "float_masks": (CURRENT["dropout"], CURRENT["attention"]),
}
PATCHES: dict[str, dict[str, Callable[..., Any]]] = {
    "float_masks": {"_keep01": float_keep01, "keep_mask01": float_keep_mask01},
}
"""Module functions a mode replaces: ``float_masks`` is the current code with the dropout masks of commit bc816f5
(float keep masks, the random words drawn all at once), to show what the byte masks drawn in chunks changed."""


@contextmanager
def code_path(mode: str) -> Iterator[None]:
    """Run the block with ``mode``'s Dropout.forward and MultiheadAttention.forward (and module functions)."""
    drop, att = MODES[mode]
    attn_mod.Dropout.forward = drop  # type: ignore[method-assign]
    attn_mod.MultiheadAttention.forward = att  # type: ignore[method-assign]
    saved = {name: getattr(attn_mod, name) for name in PATCHES.get(mode, {})}
    for name, fn in PATCHES.get(mode, {}).items():
        setattr(attn_mod, name, fn)
    try:
        yield
    finally:
        attn_mod.Dropout.forward = CURRENT["dropout"]  # type: ignore[method-assign]
        attn_mod.MultiheadAttention.forward = CURRENT["attention"]  # type: ignore[method-assign]
        for name, fn in saved.items():
            setattr(attn_mod, name, fn)


# ---------------------------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------------------------


def gemm_peak(threads: int, sizes: list[int], reps: int) -> dict[str, Any]:
    """Best fp32 ``torch.mm`` GFLOP/s over square sizes and repetitions with ``threads`` threads."""
    torch.set_num_threads(threads)
    per_size = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)
        best = 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
        per_size[str(n)] = round(best, 1)
    return {"gflops": max(per_size.values()), "per_size": per_size}


def batches_for(cfg: dict[str, Any], n_batches: int, seed: int) -> list[Batch]:
    bs = cfg["batch_size"]
    if cfg["shape"] == "mosi_u":
        g = torch.Generator().manual_seed(seed)
        n = bs * n_batches
        feats = {m: torch.randn(n, 1, MOSI_U_DIMS[m], generator=g) for m in MODALITIES}
        split = make_split(feats, torch.rand(n, generator=g) * 6 - 3)
    else:
        split = mosi_shaped_split(bs * n_batches, seed)
    order = torch.randperm(bs * n_batches, generator=torch.Generator().manual_seed(seed))
    return [split.batch(order[i * bs:(i + 1) * bs]) for i in range(n_batches)]


def dims_for(cfg: dict[str, Any]) -> dict[str, int]:
    return MOSI_U_DIMS if cfg["shape"] == "mosi_u" else DIMS


def count_flops(model: torch.nn.Module, batch: Batch) -> int:
    fc = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with fc:
        loss_fn(model, batch).backward()  # type: ignore[arg-type]
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


class Runner:
    """One mode's model and fused AdamW (every mode starts from the same initial weights)."""

    def __init__(self, cfg: dict[str, Any], seed: int) -> None:
        torch.manual_seed(seed)
        self.model = create_model(cfg["model"], dims_for(cfg), 1, **cfg["params"])
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, fused=True)

    def step(self, batch: Batch) -> float:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss_fn(self.model, batch).backward()
        self.opt.step()
        return time.perf_counter() - t0


PRODUCT_OPS: frozenset[str] = frozenset(
    {"aten::" + str(op).removeprefix("aten.") for op in flop_registry}
    | {"aten::" + op.__name__ for op in FLOP_FORMULAS})
"""The ops that carry model FLOPs: those ``FlopCounterMode`` counts (matrix products, convolutions, attention
kernels) and the CPU flash-attention ops counted here."""


def split_products(events: Any, steps: int, n: int) -> tuple[float, list[dict[str, Any]]]:
    """Wall ms per step (inclusive) of the profiled ops in :data:`PRODUCT_OPS`, each counted once (an op inside
    another such op, ``convolution`` -> ``_convolution``, or a copy inside ``baddbmm``, is part of its parent's
    time), and the ``n`` other ops with the most self time outside them (``op``, ``self_ms_per_step``)."""
    def inside_product(e: Any) -> bool:
        parent = e.cpu_parent
        while parent is not None:
            if parent.name in PRODUCT_OPS:
                return True
            parent = parent.cpu_parent
        return False
    products = 0.0
    rest: dict[str, float] = {}
    for e in events:
        if inside_product(e):
            continue
        if e.name in PRODUCT_OPS:
            products += e.cpu_time_total
        else:
            rest[e.name] = rest.get(e.name, 0.0) + e.self_cpu_time_total
    top = sorted(rest.items(), key=lambda kv: -kv[1])[:n]
    return products / 1e3 / steps, [{"op": k, "self_ms_per_step": round(v / 1e3 / steps, 1)} for k, v in top]


def profile_steps(runner: Runner, batches: list[Batch], n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``torch.profiler`` over two steps: the ``n`` top ops by self CPU time, and the time per step of the ops
    that carry model FLOPs with the top other ops (:func:`split_products`)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[:2]:
            runner.step(b)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    products, rest = split_products(prof.events(), 2, n)
    return ([{"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / 2, 1),
              "share": round(e.self_cpu_time_total / total, 3), "calls_per_step": e.count // 2} for e in events[:n]],
            {"products_ms_per_step": round(products, 1), "top_other_ops": rest})


def measure_config(name: str, cfg: dict[str, Any], modes: list[str], args: argparse.Namespace,
                   peak: float) -> dict[str, Any]:
    batches = batches_for(cfg, args.batches, args.seed)
    runners = {m: Runner(cfg, args.seed) for m in modes}
    ref = Runner(cfg, args.seed)
    with code_path("before"):
        flops = [count_flops(ref.model, b) for b in batches]
    executed = {}
    for m in modes:
        with code_path(m):
            executed[m] = [count_flops(runners[m].model, b) for b in batches]
    times: dict[str, list[tuple[float, int]]] = {m: [] for m in modes}
    for m in modes:  # warm-up
        with code_path(m):
            for b in batches[: args.warmup]:
                runners[m].step(b)
    k = 0
    for _ in range(args.rounds):
        for m in modes:
            with code_path(m):
                for i in range(args.steps):
                    j = (k + i) % len(batches)
                    times[m].append((runners[m].step(batches[j]), j))
        k += args.steps
    out: dict[str, Any] = {
        "label": cfg["label"], "model": cfg["model"], "params": cfg["params"], "batch_size": cfg["batch_size"],
        "shape": cfg["shape"], "target_mfu": cfg.get("target"),
        "padded_lengths": {m: [int(b.features[m].shape[1]) for b in batches] for m in MODALITIES},
        "model_gflop_per_step": round(statistics.mean(flops) / 1e9, 3),
        "modes": {},
    }
    for m in modes:
        secs = [t for t, _ in times[m]]
        step_flops = [flops[j] for _, j in times[m]]
        mfu_steps = [f / t / (peak * 1e9) for (t, _), f in zip(times[m], step_flops, strict=True)]
        out["modes"][m] = {
            "step_ms_median": round(1e3 * statistics.median(secs), 1),
            "step_ms_min": round(1e3 * min(secs), 1),
            "steps": len(secs),
            "executed_gflop_per_step": round(statistics.mean(executed[m]) / 1e9, 3),
            "model_gflops_per_s": round(sum(step_flops) / sum(secs) / 1e9, 2),
            "mfu": round(sum(step_flops) / sum(secs) / (peak * 1e9), 4),
            "mfu_median_step": round(statistics.median(mfu_steps), 4),
        }
        if args.profile:
            with code_path(m):
                top, prof = profile_steps(runners[m], batches, args.top)
            # the profiled batches (0 and 1): their model FLOPs, their timed (unprofiled) steps, and the MFU were
            # every op but the products free
            gflop = statistics.mean(flops[:2]) / 1e9
            step_ms = 1e3 * statistics.mean(t for t, j in times[m] if j < 2)
            prof.update({"model_gflop_per_step": round(gflop, 3), "step_ms_mean": round(step_ms, 1),
                         "mfu_ceiling": round(gflop / (prof["products_ms_per_step"] / 1e3) / peak, 4)})
            out["modes"][m].update({"top_ops": top, "profiled_batches": prof})
    return out


def markdown(report: dict[str, Any]) -> str:
    peak, threads = report["peak"], report["setup"]["threads"]
    peaks = ", ".join(f"{t} thread{'s' if t != '1' else ''} {v['gflops']} GFLOP/s" for t, v in peak.items())
    lines = [
        f"GEMM peak (fp32 torch.mm): {peaks}; MFU below against the {threads}-thread peak. MFU = sum of model FLOPs "
        "/ sum of step times; 'median step' = the median of the per-step ratios (robust to a busy machine).",
        "",
        "| config | model GFLOP/step | mode | step ms (median) | executed GFLOP/step | MFU | MFU (median step) "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["configs"].values():
        for m, v in r["modes"].items():
            target = f"{100 * r['target_mfu']:.0f}%" if r.get("target_mfu") else ""
            lines.append(f"| {r['label']} | {r['model_gflop_per_step']} | {m} | {v['step_ms_median']} | "
                         f"{v['executed_gflop_per_step']} | {100 * v['mfu']:.1f}% | {100 * v['mfu_median_step']:.1f}% "
                         f"| {target} |")
    for r in report["configs"].values():
        for m, v in r["modes"].items():
            if "top_ops" in v:
                ops = ", ".join(f"{o['op'].removeprefix('aten::')} {100 * o['share']:.0f}%" for o in v["top_ops"])
                lines.append(f"\n- {r['label']}, {m}: {ops}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--modes", default="before,after", help="comma-separated, of " + ", ".join(MODES))
    p.add_argument("--threads", type=int, default=2, help="threads the models run with")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each runs every mode)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode")
    p.add_argument("--batches", type=int, default=4, help="distinct random batches cycled through")
    p.add_argument("--gemm-sizes", default="1024,2048,3072")
    p.add_argument("--gemm-reps", type=int, default=5)
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profiler top-op lists")
    p.add_argument("--top", type=int, default=8, help="ops listed per profile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--malloc", choices=["tuned", "system"], default="tuned",
                   help="glibc's thresholds as the trainer sets them (train.malloc, training/allocator.py) or not")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/mfu.json"))
    args = p.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = sorted(set(configs) - set(CONFIGS)) + sorted(set(modes) - set(MODES))
    if bad:
        p.error(f"unknown config(s)/mode(s): {bad}")

    if args.malloc == "tuned":  # what every training gets by default (train.malloc)
        from accord.training.allocator import tune_malloc

        tune_malloc()
    load_before = os.getloadavg()
    started = time.time()
    sizes = [int(s) for s in args.gemm_sizes.split(",")]
    peak = {str(t): gemm_peak(t, sizes, args.gemm_reps) for t in sorted({1, args.threads})}
    torch.set_num_threads(args.threads)
    print("[mfu] GEMM peak: " + ", ".join(f"{t} thread(s) {v['gflops']} GFLOP/s" for t, v in peak.items()),
          file=sys.stderr, flush=True)
    results = {}
    for name in configs:
        print(f"[mfu] {name} ...", file=sys.stderr, flush=True)
        results[name] = measure_config(name, CONFIGS[name], modes, args, peak[str(args.threads)]["gflops"])
        for m, v in results[name]["modes"].items():
            print(f"[mfu] {name} {m}: {v['step_ms_median']} ms/step, MFU {100 * v['mfu']:.1f}%", file=sys.stderr,
                  flush=True)
    report = {
        "machine": {"cpu_count": os.cpu_count(), "torch_version": torch.__version__, "threads": args.threads,
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_model": cpu_model(), "made_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                    "python": platform.python_version(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "setup": {"threads": args.threads, "malloc": args.malloc, "rounds": args.rounds, "steps_per_round": args.steps,
                  "warmup": args.warmup, "batches": args.batches, "seed": args.seed,
                  "optimizer": "AdamW(lr=1e-3, fused=True)",
                  "loss": "L1 on prediction + default-weighted aux predictions/losses (throughput.loss_fn)",
                  "flops": "model FLOPs of forward + backward on the 'before' formulation; CPU flash attention "
                           "4*B*H*Tq*Tk*d forward, twice that backward",
                  "mfu": "sum of model FLOPs / sum of step times / GEMM peak at the same thread count",
                  "modes": {"before": "Dropout/MultiheadAttention.forward of commit 5173a02 (torch.where dropout; "
                                      "attention dropout through F.scaled_dot_product_attention's math path)",
                            "after": "the current accord.models.modules.attention",
                            "after_explicit": "current code, attention with dropout on the explicit path",
                            "float_masks": "current code with the dropout masks of commit bc816f5 (float keep "
                                           "masks, random words drawn all at once)"},
                  "wall_seconds": round(time.time() - started, 1)},
        "peak": peak,
        "configs": results,
    }
    write_json(args.out, report)
    print(markdown(report))
    print(f"[mfu] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
