"""``train.compile`` on this CPU: what ``torch.compile`` (inductor) costs and saves per epoch (issue 16).

For each method and mode (``off``, ``inductor``), one fresh ``accord train`` process on MOSI-U: seed 0, ``--epochs``
epochs without early stopping, ``--threads`` threads. Reported from the run's own log: the first epoch (with
inductor it includes tracing and compiling the training and the evaluation graphs; every process starts with
inductor's caches empty), the median of the later epochs
(training plus validation, the compiled steady state), the whole process's wall time, the graph breaks TorchDynamo
logged (``TORCH_LOGS=graph_breaks``: each is a place where the compiled graph falls back to Python) and the test
MAE of the selected checkpoint. Dropout draws from another stream under compile (``random_bits15``), so the metrics
of the two modes are close, not equal.

    python benchmarks/compile_speed.py --methods tfn,mult --epochs 4

Inference (``--parts inference``; the part ``accord serve --compile`` and ``api.load(compile=...)`` use): per method,
one short training run (seed 0, ``--infer-epochs`` epochs), then per mode a fresh process that loads its checkpoint
with :func:`accord.api.load` (``compile=mode``) and scores MOSI-U's test split under ``torch.inference_mode``:
the first pass at batch size 1 and at 64 (each builds its graph under inductor: torch specialises a batch of one),
then the best of ``--reps`` passes at each size (the steady state), and the largest prediction difference from
the uncompiled model. ``--parts`` names what to re-measure (``train``: MOSI-U; ``sequences``: the same training
on ``--seq-dataset``, ConflictBench's unaligned sequences by default; ``inference``); the other parts' rows are kept
from the JSON.

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


def cold_cache(folder: Path) -> dict[str, str]:
    """The environment with inductor's on-disk caches in the fresh ``folder``: every measured process compiles from
    scratch, as the first run on a new machine does (a warm cache made a first pass several times faster)."""
    return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder), "TRITON_CACHE_DIR": str(folder / "triton")}


def failure(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed process said last on stderr, else its exit code."""
    return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def run(method: str, mode: str, epochs: int, threads: int, out: Path, dataset: str = "mosi-u") -> dict[str, Any]:
    """One ``accord train`` process; its epoch seconds, wall time, graph breaks and test MAE."""
    name = f"{method}_{mode}_{dataset}"
    cmd = [sys.executable, "-m", "accord", "train", "-m", method, "-d", dataset, "--seeds", "1", "--overwrite",
           "--set", f"train.compile={mode}", "--set", f"train.epochs={epochs}",
           "--set", "train.early_stopping.patience=1000", "--set", f"train.num_threads={threads}",
           "--set", f"name={name}", "--set", f"output.dir={out}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**cold_cache(out / f"cache_{name}"), "TORCH_LOGS": "graph_breaks,recompiles"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": failure(proc)}
    seed_dir = out / name / "seed_0"
    seconds = [float(r["seconds"]) for r in map(json.loads, (seed_dir / "log.jsonl").read_text().splitlines())
               if r.get("type") == "epoch"]
    results = json.loads((seed_dir / "results.json").read_text())
    breaks = sum("[__graph_breaks] Graph break" in line for line in proc.stderr.splitlines())
    recompiles = sum("[__recompiles] Recompiling" in line for line in proc.stderr.splitlines())
    return {"first_epoch_s": round(seconds[0], 2), "later_epoch_s": round(statistics.median(seconds[1:]), 3),
            "epochs": len(seconds), "wall_s": round(wall, 1), "graph_breaks": breaks, "recompiles": recompiles,
            "test_MAE": round(results["test"]["MAE"], 4), "command": " ".join(cmd[1:])}


INFER_BATCHES = (1, 64)
"""Batch sizes of the inference passes (a server's single request, and a batch)."""


def infer_worker(spec_path: str) -> None:
    """In a fresh process: load the run with ``compile=mode``, score the test split at each batch size (first pass,
    then the best of ``reps``), write the seconds and the predictions to ``out``."""
    import torch

    from accord.api import load
    from accord.data import build_dataset
    from accord.training.text_tokens import prepare_inputs
    from accord.training.trainer import load_run

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    cfg, _ = load_run(spec["run"])
    ds = prepare_inputs(build_dataset(cfg.data.name, cfg.data.path, cfg.data.params), cfg.data, cfg.model.params)
    part = ds["test"]
    t0 = time.perf_counter()
    model = load(spec["run"], compile=spec["mode"])
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 3), "samples": len(part)}

    def one_pass(bs: int) -> tuple[float, list[float]]:
        t = time.perf_counter()
        with torch.inference_mode():
            preds = torch.cat([model(b).prediction.reshape(-1) for b in part.iter_batches(bs)])
        return time.perf_counter() - t, preds.tolist()

    for bs in INFER_BATCHES:
        first, _ = one_pass(bs)
        best, preds = min(one_pass(bs) for _ in range(int(spec["reps"])))
        out[f"bs{bs}"] = {"first_pass_s": round(first, 3), "pass_s": round(best, 4),
                          "samples_per_s": round(len(part) / best, 1), "predictions": preds}
    Path(spec["out"]).write_text(json.dumps(out))


def infer(method: str, modes: list[str], epochs: int, threads: int, reps: int, tmp: Path) -> dict[str, Any]:
    """One short training run of ``method``, then one :func:`infer_worker` process per mode; rows per mode."""
    run_dir = tmp / f"infer_{method}"
    cmd = [sys.executable, "-m", "accord", "train", "-m", method, "-d", "mosi-u", "--seeds", "1", "--overwrite",
           "--set", f"train.epochs={epochs}", "--set", f"train.num_threads={threads}",
           "--set", f"name={run_dir.name}", "--set", f"output.dir={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": failure(proc)}
    rows: dict[str, Any] = {}
    for mode in modes:
        spec = {"run": str(run_dir), "mode": mode, "threads": threads, "reps": reps,
                "out": str(tmp / f"infer_{method}_{mode}.json")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--infer-worker",
                               str(tmp / "spec.json")], capture_output=True, text=True, check=False,
                              env=cold_cache(tmp / f"cache_infer_{method}_{mode}"))
        if proc.returncode != 0:
            rows[mode] = {"error": failure(proc)}
            continue
        rows[mode] = {**json.loads(Path(spec["out"]).read_text()), "process_wall_s": round(time.perf_counter() - t0, 1)}
    eager = rows.get("off", {})
    for r in rows.values():
        for bs in INFER_BATCHES:
            key = f"bs{bs}"
            if key in r and key in eager:
                r[key]["max_abs_diff_vs_off"] = max(abs(a - b) for a, b in zip(r[key]["predictions"],
                                                                             eager[key]["predictions"], strict=True))
    for r in rows.values():
        for bs in INFER_BATCHES:
            r.get(f"bs{bs}", {}).pop("predictions", None)
    return {"train_command": " ".join(cmd[1:]), "modes": rows}


def infer_markdown(report: dict[str, Any]) -> list[str]:
    """The inference table: per method and mode, load and first-pass seconds, steady samples/s per batch size."""
    inf = report.get("inference")
    if not inf:
        return []
    lines = ["", "## Inference (`api.load(compile=...)`, `Predictor(compile=...)`, `accord serve --compile`)", "",
             f"Made {inf['made_utc']} by `{inf['command']}` (load average before: "
             f"{' '.join(str(x) for x in inf['load_before'])}): MOSI-U's test split ({inf['samples']} samples) "
             f"scored by a checkpoint of {inf['epochs']} training epochs, {inf['threads']} thread(s), one fresh "
             "process per row, inductor's caches empty. `first pass` includes building the graph (at batch size 1, "
             "and again at 64: torch specialises a batch of one); `samples/s` is the best of "
             f"{inf['reps']} later passes; `max abs diff` the largest prediction difference from the uncompiled "
             "model.",
             "", "| method | compile | first pass s, bs 1 | samples/s, bs 1 | × off | first pass s, bs 64 | "
             "samples/s, bs 64 | × off | max abs diff |", "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, res in inf["rows"].items():
        if "error" in res:
            lines.append(f"| {method} | | failed: {res['error']} | | | | | | |")
            continue
        off = res["modes"].get("off", {})
        for mode, r in res["modes"].items():
            if "error" in r:
                lines.append(f"| {method} | {mode} | failed: {r['error']} | | | | | | |")
                continue
            cells = []
            for bs in INFER_BATCHES:
                x, base = r[f"bs{bs}"], off.get(f"bs{bs}")
                ratio = f"{x['samples_per_s'] / base['samples_per_s']:.2f}×" if base else ""
                cells += [f"{x['first_pass_s']:.1f}", f"{x['samples_per_s']:,.0f}", ratio]
            diff = max(r[f"bs{bs}"].get("max_abs_diff_vs_off", 0.0) for bs in INFER_BATCHES)
            lines.append(f"| {method} | {mode} | {' | '.join(cells)} | {diff:.1e} |")
    return lines


def train_table(part: dict[str, Any], dataset: str) -> list[str]:
    """One training part's paragraph and table (per method and mode)."""
    lines = [f"Made {part['made_utc']} by `{part['command']}` (load average before: "
             f"{' '.join(str(x) for x in part['load_before'])}): one fresh `accord train` process per row, "
             f"{dataset}, seed 0, inductor's caches empty, {part['epochs']} epochs, {part['threads']} thread(s). "
             "`later epoch` = median of epochs 2 on (training + validation); `first epoch` includes compiling; "
             "`graph breaks` and `recompiles` as TorchDynamo logged them (a recompile: a graph built again because "
             "a guard failed, e.g. training after evaluation).",
             "", "| method | compile | first epoch s | later epoch s | later / off | process wall s | graph breaks | "
             "recompiles | test MAE |", "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, modes in part["rows"].items():
        off = modes.get("off", {}).get("later_epoch_s")
        for mode, r in modes.items():
            if "error" in r:
                lines.append(f"| {method} | {mode} | failed: {r['error']} | | | | | | |")
                continue
            ratio = f"{r['later_epoch_s'] / off:.2f}×" if off else ""
            lines.append(f"| {method} | {mode} | {r['first_epoch_s']:.1f} | {r['later_epoch_s']:.2f} | {ratio} | "
                         f"{r['wall_s']:.0f} | {r['graph_breaks']} | {r.get('recompiles', '')} | "
                         f"{r['test_MAE']:.4f} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# `train.compile` on this CPU (issue 16)", "", "## Training on MOSI-U (T = 1)", "",
             *train_table(report, "MOSI-U")]
    seq = report.get("sequences")
    if seq:
        lines += ["", f"## Training on sequences ({seq['dataset']}: unaligned, dynamic padding)", "",
                  *train_table(seq, seq["dataset"])]
    return "\n".join(lines + infer_markdown(report)) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="tfn,mult")
    ap.add_argument("--modes", default="off,inductor")
    ap.add_argument("--parts", default="train,sequences,inference",
                    help="what to measure: train (MOSI-U), sequences (--seq-dataset), inference")
    ap.add_argument("--seq-dataset", default="conflictbench", help="the sequences part's dataset")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--infer-epochs", type=int, default=2, help="training epochs of the inference part's run")
    ap.add_argument("--reps", type=int, default=3, help="inference: timed passes per batch size (best is kept)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--infer-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.infer_worker:
        infer_worker(args.infer_worker)
        return 0
    parts = set(args.parts.split(","))
    if not parts or parts - {"train", "sequences", "inference"}:
        raise SystemExit(f"--parts: expected some of train, sequences, inference (got {args.parts!r})")
    results = Path(args.results)
    old = json.loads((results / "compile_speed.json").read_text()) if (results / "compile_speed.json").is_file() else {}
    report = {k: v for k, v in old.items() if k not in ("inference", "sequences")} if "train" not in parts else {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    methods, modes = args.methods.split(","), args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "train" in parts:
            rows: dict[str, dict[str, Any]] = {}
            for method in methods:
                for mode in modes:
                    rows.setdefault(method, {})[mode] = run(method, mode, args.epochs, args.threads, Path(tmp))
                    print(method, mode, rows[method][mode], file=sys.stderr, flush=True)
            command = (f"python benchmarks/compile_speed.py --parts train --methods {args.methods} --modes "
                       f"{args.modes} --epochs {args.epochs} --threads {args.threads}")
            report = {"made_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_before,
                      "command": command, "epochs": args.epochs, "threads": args.threads, "rows": rows}
        if "sequences" in parts:
            seq_rows: dict[str, dict[str, Any]] = {}
            for method in methods:
                for mode in modes:
                    seq_rows.setdefault(method, {})[mode] = run(method, mode, args.epochs, args.threads, Path(tmp),
                                                                args.seq_dataset)
                    print(method, mode, args.seq_dataset, seq_rows[method][mode], file=sys.stderr, flush=True)
            report["sequences"] = {
                "made_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_before,
                "command": (f"python benchmarks/compile_speed.py --parts sequences --seq-dataset {args.seq_dataset} "
                            f"--methods {args.methods} --modes {args.modes} --epochs {args.epochs} --threads "
                            f"{args.threads}"),
                "dataset": args.seq_dataset, "epochs": args.epochs, "threads": args.threads, "rows": seq_rows}
        elif "sequences" in old:
            report["sequences"] = old["sequences"]
        if "inference" in parts:
            inf_rows = {}
            for method in methods:
                inf_rows[method] = infer(method, modes, args.infer_epochs, args.threads, args.reps, Path(tmp))
                print(method, "inference", inf_rows[method], file=sys.stderr, flush=True)
            samples = next((r["samples"] for res in inf_rows.values() for r in res.get("modes", {}).values()
                            if "samples" in r), 0)
            report["inference"] = {
                "made_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_before,
                "command": (f"python benchmarks/compile_speed.py --parts inference --methods {args.methods} --modes "
                            f"{args.modes} --infer-epochs {args.infer_epochs} --reps {args.reps} --threads "
                            f"{args.threads}"),
                "epochs": args.infer_epochs, "threads": args.threads, "reps": args.reps, "samples": samples,
                "rows": inf_rows}
        elif "inference" in old:
            report["inference"] = old["inference"]
    write_json(results / "compile_speed.json", report)
    atomic_write_text(results / "compile_speed.md", markdown(report))
    print(f"wrote {results / 'compile_speed.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
