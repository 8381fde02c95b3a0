"""Seconds per epoch and test metrics: one process vs ``torchrun`` data-parallel ranks (gloo, CPU).

Runs the same config three ways — 1 process × 1 thread, 1 process × ``--threads`` threads, and ``--ranks`` torchrun
processes × 1 thread — and writes ``benchmarks/results/ddp_scaling.{json,md}``: median seconds per epoch (training +
the validation pass, from each run's ``log.jsonl``), the speed-up over one thread, and the test metrics of the
validation-selected checkpoint, so the cost and the (small) numerical difference of data parallelism are visible.
The accuracy columns start with the trivial-baseline row (:data:`accord.evaluation.baselines.CONSTANT_ROW`: the
train-label mean / majority class scored on the same test split, as the runs recorded it in ``summary.json``); it
trains nothing, so it has no speed figures.

    python benchmarks/ddp_scaling.py --method mult --dataset mosi-u --epochs 8

Not part of the test suite (tests/test_distributed.py checks correctness on a small dataset).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from accord.core import rundir
from accord.evaluation.baselines import CONSTANT_ROW

ROOT = Path(__file__).resolve().parents[1]
TEST_METRICS = ("Non0_acc_2", "MAE", "Corr")


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd``; return its wall-clock seconds (fails loudly with the tail of stderr)."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def summarise(run_dir: Path) -> dict[str, Any]:
    """Median epoch seconds and test metrics of seed 0 of ``run_dir``."""
    sd = rundir.seed_dir(run_dir, 0)
    epochs = rundir.read_log(sd / rundir.LOG, "epoch")
    res = rundir.read_results(sd)
    return {"epochs": len(epochs), "s_per_epoch": statistics.median(e["seconds"] for e in epochs),
            "test": {k: res["test"][k] for k in TEST_METRICS}}


def constant_test(run_dir: Path) -> dict[str, float]:
    """The trivial-baseline row's test metrics that ``run_dir``'s trainer recorded (``summary.json``,
    ``constant_predictor``: the train-label mean / majority class scored on the test split)."""
    agg = rundir.read_summary(run_dir)["constant_predictor"]["test"]
    return {k: float(agg[k]["mean"]) for k in TEST_METRICS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="mult")
    ap.add_argument("--dataset", default="mosi-u")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ddp_scaling")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "ddp_scaling")
    args = ap.parse_args()

    sets = [f"train.epochs={args.epochs}", "train.early_stopping.patience=1000", f"output.dir={args.runs}",
            *args.overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    accord = [sys.executable, "-m", "accord.cli", "train", "--method", args.method, "--dataset", args.dataset,
              "--overwrite"]
    layouts = {
        "1 process × 1 thread": ([], 1),
        f"1 process × {args.threads} threads": ([], args.threads),
        f"{args.ranks} torchrun ranks × 1 thread": (
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.ranks)], 1),
    }
    rows: dict[str, Any] = {}
    for i, (label, (launcher, threads)) in enumerate(layouts.items()):
        name = f"layout{i}"
        cmd = [*launcher, *(accord[1:] if launcher else accord)]
        cmd += [a for s in [*sets, f"train.num_threads={threads}", f"name={name}"] for a in ("--set", s)]
        wall = run(cmd, env)
        rows[label] = {**summarise(args.runs / name), "wall_seconds": round(wall, 1), "load": os.getloadavg()[0]}
        print(label, rows[label], flush=True)
    constants = [constant_test(args.runs / f"layout{i}") for i in range(len(layouts))]
    if any(c != constants[0] for c in constants[1:]):
        sys.exit(f"the layouts' runs recorded different trivial baselines (different data?): {constants}")
    constant = constants[0]
    base = rows["1 process × 1 thread"]["s_per_epoch"]
    for r in rows.values():
        r["speedup"] = round(base / r["s_per_epoch"], 2)
    import torch

    meta = {"method": args.method, "dataset": args.dataset, "epochs": args.epochs, "overrides": args.overrides,
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "command": "python benchmarks/ddp_scaling.py " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from accord.core.io import atomic_write_text, write_json

    write_json(args.out.with_suffix(".json"), {"meta": meta, "rows": rows,
                                               "constant_predictor": {"row": CONSTANT_ROW, "test": constant}})
    lines = [f"# Data-parallel scaling: `{args.method}` on `{args.dataset}`", "",
             f"{args.epochs} epochs per layout (early stopping off), seed 0, same config; seconds per epoch are the "
             f"median over epochs and include the validation pass. Machine: {os.cpu_count()} CPU cores, "
             f"torch {torch.__version__}.", "",
             "| layout | s/epoch | speed-up | test Non0_acc_2 | test MAE | test Corr | 1-min load |",
             "|:---|---:|---:|---:|---:|---:|---:|",
             f"| {CONSTANT_ROW} | – | – | {constant['Non0_acc_2']:.1f} | {constant['MAE']:.3f} | "
             f"{constant['Corr']:.3f} | – |"]
    for label, r in rows.items():
        t = r["test"]
        lines.append(f"| {label} | {r['s_per_epoch']:.2f} | {r['speedup']:.2f}× | {t['Non0_acc_2']:.1f} | "
                     f"{t['MAE']:.3f} | {t['Corr']:.3f} | {r['load']:.1f} |")
    lines += ["", "The first row is the trivial baseline: every test sample gets the training labels' mean (a "
                  "majority class for classification), scored on the same test split as the layouts (Corr of a "
                  "constant is 0); it trains nothing, so it has no speed figures.",
              "", f"Produced by `{meta['command']}`.", ""]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines))


if __name__ == "__main__":
    main()
