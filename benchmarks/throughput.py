"""CPU throughput of the models on MOSI-shaped unaligned sequences.

For each method: training samples/s (forward + backward + AdamW step, loss on the prediction and on every
auxiliary prediction the model emits, weighted by its ``default_loss_weights``) and inference samples/s
(``eval()`` + ``no_grad``), after a warm-up, on random sequences shaped like MMSA's unaligned CMU-MOSI
(T = 50 / 375 / 500 steps for text / audio / visual, feature dims 768 / 5 / 20, batch 32). Each sample's
length is random in ``[1, T]`` and batches go through :meth:`SplitData.batch` (padding trimmed to the longest
sample of the batch), so masks matter exactly as in training.

Usage::

    python benchmarks/throughput.py --out benchmarks/results/throughput.json --seconds 5
    python benchmarks/throughput.py --methods mult,cacr --set mult.hidden=40

The method list is open: ``--methods`` takes any registered model name (add new methods to ``DEFAULT_METHODS``
to include them in the default run). The JSON is written atomically (temp file + ``os.replace``). An existing
``--out`` file is MERGED: the methods measured now replace their old entries, every other method's entry is kept
(with the machine/setup record it was measured under, in ``runs``), so ``--methods mult,cacr`` updates two rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from accord.core.io import write_json
from accord.core.types import MODALITIES, Batch
from accord.data.dataset import SplitData, make_split
from accord.models import create_model, list_models
from accord.models.base import AccordModel
from accord.objectives.task import reduce_losses

DEFAULT_METHODS: list[str] = ["text", "audio", "visual", "early_fusion", "late_fusion", "tfn", "mult", "cacr", "misa"]
"""Methods measured by default, in report order. Extend this list as methods are added (e.g. ``"cacr"``)."""

SEQ_LENS: dict[str, int] = {"text": 50, "audio": 375, "visual": 500}
DIMS: dict[str, int] = {"text": 768, "audio": 5, "visual": 20}
MOSI_TRAIN_SAMPLES = 1284
POOL_SAMPLES = 256  # distinct random samples the batches are drawn from


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``: machines lent to this
    project differ, and so do their figures."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mosi_shaped_split(n: int, seed: int) -> SplitData:
    """``n`` random samples with MOSI's unaligned shapes; lengths uniform in ``[1, T_m]``, zero padding
    after."""
    g = torch.Generator().manual_seed(seed)
    feats, lengths = {}, {}
    for m in MODALITIES:
        t, d = SEQ_LENS[m], DIMS[m]
        lens = torch.randint(1, t + 1, (n,), generator=g)
        mask = torch.arange(t).unsqueeze(0) < lens.unsqueeze(1)
        feats[m] = torch.randn(n, t, d, generator=g) * mask.unsqueeze(-1)
        lengths[m] = lens
    labels = (torch.rand(n, generator=g) * 6 - 3).clamp(-3, 3)
    return make_split(feats, labels, lengths=lengths)


def loss_fn(model: AccordModel, batch: Batch) -> torch.Tensor:
    """L1 task loss plus every auxiliary prediction's L1 loss and auxiliary loss, as a trainer would weight
    them."""
    out = model(batch)
    weights = model.default_loss_weights
    loss = (out.prediction - batch.label).abs().mean()
    for name, pred in out.aux_predictions.items():
        loss = loss + weights.get(name, 1.0) * (pred - batch.label).abs().mean()
    for name, value in reduce_losses(out.losses).items():  # a per-sample loss [B] by its mean, as the trainer
        loss = loss + weights.get(name, 1.0) * value
    return loss


def timed_loop(step: Any, batches: list[Batch], seconds: float, warmup: int, min_steps: int) -> dict[str, float]:
    """Run ``step(batch)`` ``warmup`` times, then until ``seconds`` passed (at least ``min_steps``).

    Returns the throughput from the median step time (robust to other processes briefly taking the CPU on a
    shared machine), the throughput over the whole window, and the number of measured steps.
    """
    for i in range(warmup):
        step(batches[i % len(batches)])
    per_sample: list[float] = []
    samples = 0
    start = time.perf_counter()
    while len(per_sample) < min_steps or time.perf_counter() - start < seconds:
        batch = batches[len(per_sample) % len(batches)]
        t0 = time.perf_counter()
        step(batch)
        per_sample.append((time.perf_counter() - t0) / batch.size)
        samples += batch.size
    total = time.perf_counter() - start
    return {"median": 1.0 / statistics.median(per_sample), "window": samples / total, "steps": len(per_sample)}


def measure(name: str, overrides: dict[str, Any], batches: list[Batch], seconds: float, warmup: int,
            min_steps: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = create_model(name, DIMS, 1, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step(batch: Batch) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        opt.step()

    def infer_step(batch: Batch) -> None:
        with torch.no_grad():
            model(batch)

    model.train()
    train = timed_loop(train_step, batches, seconds, warmup, min_steps)
    model.eval()
    infer = timed_loop(infer_step, batches, seconds, warmup, min_steps)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_samples_per_s": round(train["median"], 2),
        "infer_samples_per_s": round(infer["median"], 2),
        "seconds_per_mosi_epoch": round(MOSI_TRAIN_SAMPLES / train["median"], 2),
        "train_samples_per_s_window": round(train["window"], 2),
        "infer_samples_per_s_window": round(infer["window"], 2),
        "train_steps_measured": int(train["steps"]),
        "infer_steps_measured": int(infer["steps"]),
        "hyperparams": model.params.model_dump(),
    }


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["mult.hidden=40", "tfn.fusion_dim=8"]`` ->
    ``{"mult": {"hidden": 40}, "tfn": {"fusion_dim": 8}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, param = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected METHOD.PARAM=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[param] = value
    return out


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (accord.core.io: temp file + rename, normal file permissions)."""
    write_json(path, data)


def merge_report(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """``report`` merged into the JSON already at ``path``: methods measured now replace their old entries, the
    others are kept. ``machine``/``setup`` describe the latest run; ``runs`` keeps each run's machine and setup
    with the methods it measured, so every entry can be traced to its conditions."""
    run = {"machine": report["machine"], "setup": report["setup"], "methods": sorted(report["methods"])}
    if not path.is_file():
        return {**report, "runs": [run]}
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {**report, "runs": [run]}
    runs = old.get("runs") or [{"machine": old.get("machine"), "setup": old.get("setup"),
                                "methods": sorted(old.get("methods", {}))}]
    for r in runs:
        r["methods"] = [m for m in r["methods"] if m not in report["methods"]]
    runs = [r for r in runs if r["methods"]] + [run]
    methods = {**old.get("methods", {}), **report["methods"]}
    return {**report, "methods": methods, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per measurement (train, infer)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated model names")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                        help="override a model parameter (repeatable; VALUE parsed as JSON when possible)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps even past the time budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(list_models()))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {', '.join(list_models())}")
    overrides = parse_overrides(args.overrides)
    torch.set_num_threads(args.threads)

    split = mosi_shaped_split(POOL_SAMPLES, args.seed)
    order = torch.randperm(POOL_SAMPLES, generator=torch.Generator().manual_seed(args.seed))
    batches = [split.batch(order[i : i + args.batch_size]) for i in range(0, POOL_SAMPLES, args.batch_size)]
    batches = [b for b in batches if b.size == args.batch_size]

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.time()
    results: dict[str, Any] = {}
    for name in methods:
        print(f"[throughput] {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name, overrides.get(name, {}), batches, args.seconds, args.warmup,
                                args.min_steps, args.seed)
        r = results[name]
        print(f"[throughput] {name}: params={r['params']} train={r['train_samples_per_s']}/s "
              f"infer={r['infer_samples_per_s']}/s epoch={r['seconds_per_mosi_epoch']}s", file=sys.stderr)
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_average_before": load_start,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "setup": {
            "seq_lens": SEQ_LENS,
            "dims": DIMS,
            "batch_size": args.batch_size,
            "lengths": "uniform in [1, T] per sample and modality; batches trimmed to their longest sample",
            "mean_padded_lengths": {m: sum(b.features[m].shape[1] for b in batches) / len(batches)
                                    for m in MODALITIES},
            "mosi_train_samples": MOSI_TRAIN_SAMPLES,
            "seconds_per_measurement": args.seconds,
            "rate": "samples/s from the median step time (the *_window rates divide by the whole window)",
            "warmup_steps": args.warmup,
            "optimizer": "AdamW(lr=1e-3)",
            "loss": "L1 on prediction + default-weighted aux predictions/losses",
            "overrides": overrides,
            "wall_seconds": round(time.time() - started, 1),
        },
        "methods": results,
    }
    write_json_atomic(args.out, merge_report(args.out, report))
    print(f"[throughput] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
