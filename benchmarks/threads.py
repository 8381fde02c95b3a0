"""Seconds per epoch (wall and CPU) of TFN and MulT under different thread layouts, on an idle machine and next to a
second CPU-bound process: the measurements behind Accord's thread policy (``src/accord/training/threads.py``,
``benchmarks/results/threads.md``).

Layouts (each a fresh ``python`` process per training, through the runner primitive and the real trainer):

* 1 process × 1 thread, 1 process × 2 threads, 1 process × 2 threads with ``OMP_WAIT_POLICY=PASSIVE`` in its
  environment (read when the OpenMP runtime starts, i.e. at ``import torch``);
* 2 processes × 1 thread at the same time (what ``accord sweep --workers 2`` does under the policy), and 2 processes
  × 2 threads (what it did before: each worker took every core).

Loads: ``idle`` (nothing of ours besides the training) and ``busy`` (a ``while True: pass`` Python process started
before the training and killed after it, so it runs throughout). Data: ConflictBench as packaged (T = 12/24/16,
dims 32/16/24, 800 training rows) and MOSI-shaped ConflictBench sequences (T = 50/375/500, dims 768/5/20, as in
``benchmarks/throughput.py``; ``--shaped-train`` rows). Each training runs ``--epochs`` epochs with early stopping
off; the first epoch (warm-up, dataset building) is dropped and the median of the others is reported, wall-clock
(``time.perf_counter``) and CPU (``time.process_time``: every thread of the process, spinning included). Every
layout of a case trains the same config and seed.

    python benchmarks/threads.py --out benchmarks/results/threads
    python benchmarks/threads.py --models mult --data mosi-shaped --layouts 1x1,1x2 --epochs 3   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

DATA: dict[str, list[str]] = {
    "conflictbench": [],
    "mosi-shaped": ["data.params.seq_len={text: 50, audio: 375, visual: 500}",
                    "data.params.dims={text: 768, audio: 5, visual: 20}"],
}
LAYOUTS: dict[str, tuple[str, int, int, dict[str, str]]] = {
    # key: (label, processes, threads per process, extra environment)
    "1x1": ("1 process × 1 thread", 1, 1, {}),
    "1x2": ("1 process × 2 threads", 1, 2, {}),
    "1x2p": ("1 process × 2 threads, OMP_WAIT_POLICY=PASSIVE", 1, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2x1": ("2 processes × 1 thread", 2, 1, {}),
    "2x2": ("2 processes × 2 threads (no policy: each takes every core)", 2, 2, {}),
}
BUSY = "while True:\n    pass\n"


# ------------------------------------------------------------------------------------------------ one training
def child(spec: dict[str, Any]) -> None:
    """Train one config; print the wall and CPU seconds of every epoch as one JSON line."""
    import accord.data  # noqa: F401  (registers the datasets)
    import accord.models  # noqa: F401  (registers the models)
    from accord.config import compose, validate
    from accord.studies.runner import run_configs

    cfg = validate(compose(spec["method"], "conflictbench", None, spec["overrides"]), "benchmarks/threads.py")
    marks = [(time.perf_counter(), time.process_time())]

    def on_epoch(seed: int, epoch: int, record: dict[str, Any]) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    import torch

    run_configs([(cfg.run_name, cfg)], overwrite=True, progress=False, on_epoch=on_epoch)
    epochs = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:], strict=False)]
    print(json.dumps({"epochs": epochs, "torch_threads": torch.get_num_threads()}), flush=True)


# --------------------------------------------------------------------------------------------------- the layouts
def run_layout(method: str, data: str, layout: str, busy: bool, args: argparse.Namespace, work: Path
               ) -> dict[str, Any]:
    """Run one layout (its P trainings at once, next to a busy process when ``busy``); per-epoch medians."""
    _, procs, threads, extra_env = LAYOUTS[layout]
    rows = args.shaped_train if data == "mosi-shaped" else 800
    epochs = args.epochs or (4 if data == "mosi-shaped" else 8)
    overrides = [*DATA[data], f"data.params.n_train={rows}", f"train.epochs={epochs}",
                 "train.early_stopping.patience=1000", "train.seeds=[0]", f"train.num_threads={threads}",
                 f"output.dir={work}"]
    if data == "mosi-shaped":
        overrides += [f"data.params.n_valid={max(32, rows // 4)}", f"data.params.n_test={max(32, rows // 4)}"]
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_NUM_THREADS", None)
    hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    load0 = os.getloadavg()[0]
    try:
        if hog is not None:
            time.sleep(1.0)
        kids = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(
            {"method": method, "overrides": [*overrides, f"name={method}_{data}_{layout}_{i}"]})],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(procs)]
        outs = [k.communicate() for k in kids]
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    for k, (_out, err) in zip(kids, outs, strict=True):
        if k.returncode != 0:
            sys.exit(f"{method}/{data}/{layout}: a training failed:\n{err[-2000:]}")
    per = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    measured = [e for p in per for e in p["epochs"][1:]]  # epoch 1 (warm-up, dataset building) dropped
    return {"wall": statistics.median(w for w, _ in measured), "cpu": statistics.median(c for _, c in measured),
            "processes": procs, "threads": threads, "torch_threads": [p["torch_threads"] for p in per],
            "epochs_measured": len(measured), "load_1min_before": round(load0, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """Tables: one per case (model × data), a row per layout, idle and busy side by side."""
    lines = ["# Threads: seconds per epoch by thread layout, idle and next to a CPU-bound process", "",
             f"Machine: {meta['cores']} cores given (`os.sched_getaffinity`), torch {meta['torch']}, "
             f"{meta['epochs']} epochs per training (the first dropped, median of the rest; each epoch includes its "
             f"validation pass). *busy*: a `while True: pass` Python process runs throughout. Wall = "
             f"`time.perf_counter`, CPU = `time.process_time` of the training process (all its threads). For 2 "
             f"processes the epoch time is that of each process while both run; *per epoch of work* divides the "
             f"wall time by the processes (two epochs are done in that time).", ""]
    for case, rows in results.items():
        lines += [f"## {case}", "",
                  "| layout | idle wall s/epoch | idle CPU s/epoch | busy wall s/epoch | busy CPU s/epoch | "
                  "busy / idle (wall) | per epoch of work, busy |",
                  "|:---|---:|---:|---:|---:|---:|---:|"]
        for layout, r in rows.items():
            idle, busy = r.get("idle"), r.get("busy")
            cells = [LAYOUTS[layout][0]]
            for part in (idle, busy):
                cells += [f"{part['wall']:.2f}", f"{part['cpu']:.2f}"] if part else ["", ""]
            ratio = f"{busy['wall'] / idle['wall']:.1f}×" if idle and busy else ""
            work = f"{busy['wall'] / busy['processes']:.2f}" if busy else ""
            lines.append("| " + " | ".join([*cells, ratio, work]) + " |")
        lines.append("")
    lines += [f"Produced by `{meta['command']}` (wall-clock {meta['seconds']:.0f} s; 1-minute load average "
              f"{meta['load_before']} before, {meta['load_after']} after).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="tfn,mult")
    ap.add_argument("--data", default="conflictbench,mosi-shaped")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--loads", default="idle,busy")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per training (default: 8 on ConflictBench, 4 on the MOSI-shaped data)")
    ap.add_argument("--shaped-train", type=int, default=256, help="training rows of the MOSI-shaped data")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import torch

    t0, load_before = time.time(), round(os.getloadavg()[0], 2)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.models.split(","):
            for data in args.data.split(","):
                case = f"{method} on {data}"
                for layout in args.layouts.split(","):
                    for load in args.loads.split(","):
                        r = run_layout(method, data, layout, load == "busy", args, Path(tmp))
                        results.setdefault(case, {}).setdefault(layout, {})[load] = r
                        print(f"{case} | {LAYOUTS[layout][0]} | {load}: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s "
                              f"(load {r['load_1min_before']} -> {r['load_1min_after']})", flush=True)
    meta = {"cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "epochs": args.epochs or "8 (ConflictBench) or 4 (MOSI-shaped)",
            "shaped_train": args.shaped_train, "seconds": time.time() - t0, "load_before": load_before,
            "load_after": round(os.getloadavg()[0], 2),
            "command": "python benchmarks/threads.py " + " ".join(sys.argv[1:])}
    if args.out:
        from accord.core.io import atomic_write_text, write_json

        write_json(args.out.with_suffix(".json"), {"meta": meta, "results": results})
        atomic_write_text(args.out.with_suffix(".md"), markdown(results, meta))
    else:
        print(markdown(results, meta))


if __name__ == "__main__":
    main()
