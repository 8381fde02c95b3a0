"""Seconds per fine-tuning epoch of the MiniLM text branch on the MOSI training fold: fixed padding vs dynamic
padding vs dynamic padding with length buckets (issue 15).

    python benchmarks/text_padding_speed.py [--threads 2] [--repeats 2]

Each setting trains text alone (packaged all-MiniLM-L6-v2 fine-tuned, lr 5e-5, batch 32) for ONE epoch on the
standard training fold (1,283 transcripts), seed 0, ``train.num_threads`` threads; the settings run interleaved
(fixed, dynamic, bucketed, then again) so a change in machine load hits all of them. Seconds are the trainer's own
epoch time (``log.jsonl``: the training pass plus the validation pass) and the process CPU seconds of that run.

* fixed: ``train.dynamic_padding=false``: every batch padded to the fold's longest sentence (MMSA pads to 50);
* dynamic: each batch padded to its own longest sentence, batches drawn at random;
* bucketed: dynamic padding + ``train.bucket_by_length=true`` (rows of similar length batched together).

Writes ``benchmarks/results/text_padding_speed.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
from pathlib import Path
from typing import Any

from accord.config import load_config
from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.studies.runner import DatasetCache, run_configs

SETTINGS: dict[str, list[str]] = {
    "fixed padding (fold's longest sentence)": ["train.dynamic_padding=false", "train.bucket_by_length=false"],
    "dynamic padding, random batches": ["train.dynamic_padding=true", "train.bucket_by_length=false"],
    "dynamic padding + length buckets": ["train.dynamic_padding=true", "train.bucket_by_length=true"],
}
BASE = ["data.params.split=standard", "data.params.text_features=minilm", "train.epochs=1", "train.seeds=[0]",
        "model.params.text_encoder.source=pretrained", "model.params.text_encoder.lr=0.00005"]


def cpu_seconds() -> float:
    """This process's user + system CPU seconds so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=Path("runs/text_padding_speed"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/text_padding_speed.md"))
    args = ap.parse_args()
    cache = DatasetCache()
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in SETTINGS}
    for rep in range(args.repeats):
        for k, (label, overrides) in enumerate(SETTINGS.items()):
            cfg = load_config(method="text", dataset="mosi-u", overrides=[
                *BASE, *overrides, f"train.num_threads={args.threads}", f"output.dir={args.runs}",
                f"name=s{k}_r{rep}"])
            load = os.getloadavg()[0]
            c0 = cpu_seconds()
            row = run_configs({label: cfg}, overwrite=True, progress=False, datasets=cache)[0]
            cpu = cpu_seconds() - c0
            epoch = rundir.read_log(rundir.seed_dir(row.run_dir, 0) / rundir.LOG, "epoch")[0]
            results[label].append({"seconds": float(epoch["seconds"]), "cpu_run": cpu, "load": load,
                                   "valid_MAE": row.valid["MAE"][0]})
            print(f"{label}: {epoch['seconds']:.1f} s (load {load:.1f})", flush=True)
    base = statistics.median(r["seconds"] for r in results[next(iter(SETTINGS))])
    lines = ["# Fine-tuning MiniLM on the MOSI training fold: seconds per epoch by padding", "",
             f"Text alone, packaged all-MiniLM-L6-v2 fine-tuned (lr 5e-5, batch 32), one epoch on the standard "
             f"training fold (1,281 transcripts; real token counts: mean 14.9, 99th percentile 45, longest 114 "
             f"word pieces), seed 0, {args.threads} threads, {args.repeats} interleaved repeats per setting. s/epoch "
             f"= the trainer's epoch time (training pass + validation pass); CPU s = the whole run's process CPU "
             f"(set-up, final test pass included). Speed-up = fixed / setting, medians.", "",
             "| setting | s / epoch (each repeat) | median | speed-up | CPU s per run (median) | load at start |",
             "|:---|---:|---:|---:|---:|---:|"]
    for label, rs in results.items():
        med = statistics.median(r["seconds"] for r in rs)
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        loads = ", ".join(f"{r['load']:.1f}" for r in rs)
        cpu = statistics.median(r["cpu_run"] for r in rs)
        lines.append(f"| {label} | {each} | {med:.1f} | {base / med:.2f}× | {cpu:.0f} | {loads} |")
    lines += ["", f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}).", "", "Command:", "", "```bash",
              f"python benchmarks/text_padding_speed.py --threads {args.threads} --repeats {args.repeats}", "```", ""]
    atomic_write_text(args.out, "\n".join(lines))
    write_json(args.out.with_suffix(".json"), {"threads": args.threads, "results": results})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
