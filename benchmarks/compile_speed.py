"""``train.compile`` on this CPU: what ``torch.compile`` (inductor) costs and saves per epoch (issue 16).

For each method and mode (``off``, ``inductor``), one fresh ``accord train`` process on MOSI-U: seed 0, ``--epochs``
epochs without early stopping, ``--threads`` threads. Reported from the run's own log: the first epoch (with
inductor it includes tracing and compiling the training and the evaluation graphs), the median of the later epochs
(training plus validation, the compiled steady state), the whole process's wall time, the graph breaks TorchDynamo
logged (``TORCH_LOGS=graph_breaks``: each is a place where the compiled graph falls back to Python) and the test
MAE of the selected checkpoint. Dropout draws from another stream under compile (``random_bits15``), so the metrics
of the two modes are close, not equal.

    python benchmarks/compile_speed.py --methods tfn,mult --epochs 4

Writes ``benchmarks/results/compile_speed.json`` and ``.md``.
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

from accord.core.io import atomic_write_text, write_json

RESULTS = Path("benchmarks/results")


def run(method: str, mode: str, epochs: int, threads: int, out: Path) -> dict[str, Any]:
    """One ``accord train`` process; its epoch seconds, wall time, graph breaks and test MAE."""
    name = f"{method}_{mode}"
    cmd = [sys.executable, "-m", "accord", "train", "-m", method, "-d", "mosi-u", "--seeds", "1", "--overwrite",
           "--set", f"train.compile={mode}", "--set", f"train.epochs={epochs}",
           "--set", "train.early_stopping.patience=1000", "--set", f"train.num_threads={threads}",
           "--set", f"name={name}", "--set", f"output.dir={out}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TORCH_LOGS": "graph_breaks"},
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    seed_dir = out / name / "seed_0"
    seconds = [float(r["seconds"]) for r in map(json.loads, (seed_dir / "log.jsonl").read_text().splitlines())
               if r.get("type") == "epoch"]
    results = json.loads((seed_dir / "results.json").read_text())
    breaks = sum("[__graph_breaks] Graph break" in line for line in proc.stderr.splitlines())
    return {"first_epoch_s": round(seconds[0], 2), "later_epoch_s": round(statistics.median(seconds[1:]), 3),
            "epochs": len(seconds), "wall_s": round(wall, 1), "graph_breaks": breaks,
            "test_MAE": round(results["test"]["MAE"], 4), "command": " ".join(cmd[1:])}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# `train.compile` on this CPU (issue 16)", "",
             f"Made {report['made_utc']} by `{report['command']}` (load average before: "
             f"{' '.join(str(x) for x in report['load_before'])}): one fresh `accord train` process per row, "
             "MOSI-U, seed 0, "
             f"{report['epochs']} epochs, {report['threads']} thread(s). `later epoch` = median of epochs 2 on "
             "(training + validation); `first epoch` includes compiling; `graph breaks` as TorchDynamo logged them.",
             "", "| method | compile | first epoch s | later epoch s | later / off | process wall s | graph breaks | "
             "test MAE |", "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for method, modes in report["rows"].items():
        off = modes.get("off", {}).get("later_epoch_s")
        for mode, r in modes.items():
            if "error" in r:
                lines.append(f"| {method} | {mode} | failed: {r['error']} | | | | | |")
                continue
            ratio = f"{r['later_epoch_s'] / off:.2f}×" if off else ""
            lines.append(f"| {method} | {mode} | {r['first_epoch_s']:.1f} | {r['later_epoch_s']:.2f} | {ratio} | "
                         f"{r['wall_s']:.0f} | {r['graph_breaks']} | {r['test_MAE']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="tfn,mult")
    ap.add_argument("--modes", default="off,inductor")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for mode in args.modes.split(","):
                rows.setdefault(method, {})[mode] = run(method, mode, args.epochs, args.threads, Path(tmp))
                print(method, mode, rows[method][mode], file=sys.stderr, flush=True)
    command = (f"python benchmarks/compile_speed.py --methods {args.methods} --modes {args.modes} "
               f"--epochs {args.epochs} --threads {args.threads}")
    report = {"made_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_before,
              "command": command, "epochs": args.epochs, "threads": args.threads, "rows": rows}
    results = Path(args.results)
    write_json(results / "compile_speed.json", report)
    atomic_write_text(results / "compile_speed.md", markdown(report))
    print(f"wrote {results / 'compile_speed.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
