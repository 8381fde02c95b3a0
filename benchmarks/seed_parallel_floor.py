"""How far can seed-parallel training go? One seed's training step vs the 5-seed group's, and the group's matrix
products alone: a lower bound on the group's step that no reduction of per-operation overhead can go below.

For each method (TFN and MulT on MOSI-U by default; their default configs, real training batches) and each thread
count:

* ``one_ms``: median wall time of one seed's training step, :meth:`Trainer.train_step` itself (forward, the
  weighted loss terms, backward, clipping where configured, the run's AdamW) on a seed :meth:`Trainer.setup_seed`
  built;
* ``group_ms``: median wall time of :meth:`SeedGroup.train_step` for the seeds as one vmapped model, the group
  :func:`open_group` opens for ``train.seed_parallel=on``, each seed on its own batch;
* ``group_gemm_ms``: the matrix products of one group step (``mm``, ``bmm``, ``addmm``, ``baddbmm``, forward and
  backward, captured by a dispatch mode with their shapes and strides), replayed in their order on fresh tensors
  of the same layouts (so they touch as much memory as in the step), best of ``--reps`` passes: the cost of the
  products alone, a lower bound of the group step. Where ``group_gemm_ms`` is itself more than 1.5x ``one_ms``,
  no removal of overhead brings the group within issue 16's 1.5x of one seed at that thread count;
* ``gflop_one`` / ``gflop_group_gemm``: model FLOPs of one seed's step (``FlopCounterMode``) and of the group's
  recorded products, and the products' rate in the replay;
* ``top_ops_one`` / ``top_ops_group``: where each step's time goes (``torch.profiler``, self CPU time per op and
  input shapes, per step).

The one-seed step and the group step alternate, ``--rounds`` rounds of ``--steps`` steps each, so a busy machine
slows both alike. Writes ``benchmarks/results/seed_parallel_floor.json``.

    python benchmarks/seed_parallel_floor.py --methods tfn,mult --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from accord.config import load_config
from accord.core.io import write_json
from accord.training.allocator import tune_malloc
from accord.training.seed_parallel import open_group
from accord.training.trainer import Trainer

aten = torch.ops.aten
GEMMS = {aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default}


class GemmCapture(TorchDispatchMode):
    """Records every matrix product that runs under it: the op, and each tensor argument's shape and strides."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, list[Any], dict[str, Any]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in GEMMS:
            spec = [("T", tuple(a.shape), a.stride()) if isinstance(a, Tensor) else a for a in args]
            self.calls.append((func, spec, dict(kwargs)))
        return func(*args, **kwargs)


def replay_ms(calls: list[tuple[Any, list[Any], dict[str, Any]]], reps: int) -> float:
    """Wall ms of running ``calls`` in their order, each on its own fresh tensors of the recorded layout (so the
    sequence touches as much memory as the step's products do), best of ``reps`` passes."""
    prepared = [(func, [torch.empty_strided(a[1], a[2]).normal_() if isinstance(a, tuple) and a and a[0] == "T"
                        else a for a in spec], kwargs) for func, spec, kwargs in calls]
    best = float("inf")
    for _ in range(reps + 1):  # the first pass warms up
        t0 = time.perf_counter()
        for func, args, kwargs in prepared:
            func(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def gemm_flops(calls: list[tuple[Any, list[Any], dict[str, Any]]]) -> int:
    """2·m·n·k summed over the recorded products (times the batch for bmm/baddbmm)."""
    flops = 0
    for _func, spec, _ in calls:
        shapes = [a[1] for a in spec if isinstance(a, tuple) and a and a[0] == "T"]
        a, b = shapes[-2], shapes[-1]
        batch = a[0] if len(a) == 3 else 1
        flops += 2 * batch * a[-2] * a[-1] * b[-1]
    return flops


def top_ops(step: Any, steps: int, n: int = 8) -> list[dict[str, Any]]:
    """The ``n`` ops with the most self CPU time over ``steps`` calls of ``step(i)`` (``torch.profiler``), per step,
    with their input shapes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(steps):
            step(i)
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "shapes": str(e.input_shapes),
             "self_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 2),
             "share": round(e.self_cpu_time_total / total, 3), "calls_per_step": e.count // steps}
            for e in events[:n]]


def measure(method: str, threads: int, seeds: list[int], args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = load_config(method=method, dataset="mosi-u", overrides=[
        f"train.seeds={json.dumps(seeds)}", "train.seed_parallel=on", f"train.num_threads={threads}",
        "output.dir=/tmp/accord-seed-parallel-floor"])
    trainer = Trainer(cfg, progress=False)
    if cfg.train.malloc == "tuned":  # as Trainer.fit does before training
        tune_malloc()
    split = trainer.dataset["train"]
    per_seed = [list(trainer.epoch_batches(split, s, 0)) for s in seeds]
    n = min(len(b) for b in per_seed)
    full = [i for i in range(n) if per_seed[0][i].size == cfg.train.batch_size]  # same-size steps only
    run = trainer.setup_seed(seeds[0])  # one seed, built and stepped as Trainer.fit_seed does
    run.model.train()
    _, group, _ = open_group(trainer, resume=False)  # the seeds as Trainer.fit groups them (train.seed_parallel)
    assert group is not None

    def one_step(i: int) -> None:
        batch = per_seed[0][full[i % len(full)]]
        trainer.train_step(run, batch, batch.size)

    def group_step(i: int) -> None:
        group.train_step([b[full[i % len(full)]] for b in per_seed])

    for f in (one_step, group_step):  # warm-up
        for i in range(3):
            f(i)
    times: dict[str, list[float]] = {"one": [], "group": []}
    for _ in range(args.rounds):
        for key, f in (("one", one_step), ("group", group_step)):
            for i in range(args.steps):
                t0 = time.perf_counter()
                f(i)
                times[key].append(time.perf_counter() - t0)
    cap = GemmCapture()
    with cap:
        group_step(0)
    one_cap = GemmCapture()
    with one_cap:
        one_step(0)
    fc = FlopCounterMode(display=False)
    with fc:
        one_step(0)
    one_ms, group_ms = 1e3 * statistics.median(times["one"]), 1e3 * statistics.median(times["group"])
    gemm_ms = replay_ms(cap.calls, args.reps)
    one_gemm_ms = replay_ms(one_cap.calls, args.reps)
    return {
        "threads": threads, "seeds": len(seeds), "batch_size": cfg.train.batch_size,
        "one_ms": round(one_ms, 3), "group_ms": round(group_ms, 3), "group_over_one": round(group_ms / one_ms, 3),
        "one_gemm_ms": round(one_gemm_ms, 3), "one_gemm_share": round(one_gemm_ms / one_ms, 3),
        "group_gemm_ms": round(gemm_ms, 3), "group_gemm_over_one": round(gemm_ms / one_ms, 3),
        "group_gemm_calls": len(cap.calls), "one_gemm_calls": len(one_cap.calls),
        "gflop_one": round(fc.get_total_flops() / 1e9, 4), "gflop_group_gemm": round(gemm_flops(cap.calls) / 1e9, 4),
        "group_gemm_gflops_per_s": round(gemm_flops(cap.calls) / 1e6 / gemm_ms, 1),
        "bound": "group_gemm_ms > 1.5 x one_ms" if gemm_ms > 1.5 * one_ms else None,
        "top_ops_one": top_ops(one_step, args.steps), "top_ops_group": top_ops(group_step, args.steps),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="tfn,mult")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=20, help="passes of the replayed products (the best counts)")
    ap.add_argument("--out", default="benchmarks/results/seed_parallel_floor.json")
    args = ap.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows: dict[str, list[dict[str, Any]]] = {}
    for method in args.methods.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            row = measure(method, threads, list(range(args.seeds)), args)
            rows.setdefault(method, []).append(row)
            print(method, row, file=sys.stderr, flush=True)
    command = "python benchmarks/seed_parallel_floor.py " + " ".join(
        f"--{k}={v}" for k, v in vars(args).items() if k != "out")
    write_json(Path(args.out), {"made_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "load_before": load_before,
                                "rows": rows, "command": command})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
