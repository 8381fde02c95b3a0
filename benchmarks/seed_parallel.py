"""Seed-parallel training on MOSI-U: 5 seeds as one vmapped model vs one seed, and vs 5 seeds one by one.

For each method (TFN and MulT by default), in one process and one after another on the same machine:

* ``one``: seed 0 alone (the default config), wall seconds of ``accord.train`` and its median epoch;
* ``group``: seeds 0-4 with ``train.seed_parallel=on`` (the default config), and its median epoch while all 5
  seeds are in the group (the per-epoch cost of 5 seeds; the whole run also depends on when each seed stops);
* ``group_nodrop`` and ``sequential_nodrop``: seeds 0-4 with every dropout at 0, as one group and one by one
  (``train.seed_parallel=off``): the speed-up over training the seeds one by one, and the largest per-seed
  difference of any valid/test metric between the two (equal up to float rounding, amplified by training).

Every run uses the MOSI-U defaults (40 epochs, patience 8, one thread unless ``--threads``). Writes
``benchmarks/results/seed_parallel.json`` and prints a markdown table.

    python benchmarks/seed_parallel.py --methods tfn,mult
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import accord

NO_DROPOUT = {
    "tfn": ["model.params.dropout=0", "model.params.fusion_dropout=0"],
    "mult": ["model.params.attn_dropout=0", "model.params.relu_dropout=0", "model.params.res_dropout=0",
             "model.params.embed_dropout=0", "model.params.out_dropout=0"],
}


def timed_run(method: str, seeds: list[int], mode: str, out: Path, extra: list[str]) -> tuple[float, Path]:
    """Wall seconds of one ``accord.train`` and its run directory."""
    cfg = accord.load_config(method=method, dataset="mosi-u", overrides=[
        f"train.seeds={json.dumps(seeds)}", f"train.seed_parallel={mode}", f"output.dir={out}",
        f"name={method}_{mode}_{len(seeds)}", *extra])
    t0 = time.perf_counter()
    accord.train(cfg, overwrite=True)
    return time.perf_counter() - t0, cfg.run_dir


def epoch_seconds(run_dir: Path, seeds: list[int], active: int | None = None) -> float:
    """Median seconds of one training epoch (train + validation) in a run: a sequential run's epochs, or a group's
    epochs with ``active`` seeds still in it (every seed logs the group's epoch time: counted once)."""
    import statistics

    seen: dict[int, float] = {}
    values: list[float] = []
    for s in seeds:
        for line in (run_dir / f"seed_{s}" / "log.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r.get("type") != "epoch":
                continue
            if active is None:
                values.append(float(r["seconds"]))
            elif r.get("seed_parallel") == active:
                seen[int(r["epoch"])] = float(r["seconds"])
    return statistics.median(values if active is None else list(seen.values()))


def max_metric_gap(a: Path, b: Path, seeds: list[int]) -> tuple[float, int]:
    """The largest |difference| of any valid/test metric between two runs' seeds, and how many seeds' selected
    epochs differ."""
    gap, epochs = 0.0, 0
    for s in seeds:
        ra = json.loads((a / f"seed_{s}" / "results.json").read_text())
        rb = json.loads((b / f"seed_{s}" / "results.json").read_text())
        epochs += ra["best_epoch"] != rb["best_epoch"]
        for split in ("valid", "test"):
            gap = max(gap, *(abs(ra[split][k] - rb[split][k]) for k in ra[split]))
    return gap, epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="tfn,mult")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="train.num_threads (default: MOSI-U's, 1)")
    ap.add_argument("--out", default="benchmarks/results/seed_parallel.json")
    args = ap.parse_args()
    extra = [f"train.num_threads={args.threads}"] if args.threads else []
    seeds = list(range(args.seeds))
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for method in args.methods.split(","):
            nd = [*extra, *NO_DROPOUT[method]]
            one, o_dir = timed_run(method, [0], "off", out, extra)
            group, g_dir = timed_run(method, seeds, "on", out, extra)
            e_one, e_group = epoch_seconds(o_dir, [0]), epoch_seconds(g_dir, seeds, active=len(seeds))
            group0, g0 = timed_run(method, seeds, "on", out / "nodrop", nd)
            seq0, s0 = timed_run(method, seeds, "off", out / "nodrop", nd)
            gap0, ep0 = max_metric_gap(g0, s0, seeds)
            rows[method] = {"one_seed_s": round(one, 2), "group_s": round(group, 2),
                            "one_seed_epoch_s": round(e_one, 3), "group_epoch_s": round(e_group, 3),
                            "group_epoch_over_one": round(e_group / e_one, 3),
                            "sequential_nodrop_epoch_s": round(epoch_seconds(s0, seeds), 3),
                            "group_over_one": round(group / one, 3), "group_nodrop_s": round(group0, 2),
                            "sequential_nodrop_s": round(seq0, 2),
                            "sequential_over_group": round(seq0 / group0, 3),
                            "no_dropout_max_metric_gap": gap0, "no_dropout_best_epochs_differ": ep0}
            print(method, rows[method], flush=True)
    Path(args.out).write_text(json.dumps({"seeds": seeds, "threads": args.threads or 1, "rows": rows,
                                          "command": "python benchmarks/seed_parallel.py " +
                                          " ".join(f"--{k}={v}" for k, v in vars(args).items()
                                                   if k != "out" and v not in (None, False))}, indent=2) + "\n")
    print("| method | 1 seed (s) | 5 seeds, one group (s) | group / one | epoch: 5 seeds / 1 | no dropout: group (s) "
          "| no dropout: one by one (s) | one by one / group | max metric gap | best epochs differ |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, r in rows.items():
        print(f"| {m} | {r['one_seed_s']} | {r['group_s']} | {r['group_over_one']} | {r['group_epoch_over_one']} | "
              f"{r['group_nodrop_s']} | "
              f"{r['sequential_nodrop_s']} | {r['sequential_over_group']} | {r['no_dropout_max_metric_gap']:.2g} | "
              f"{r['no_dropout_best_epochs_differ']} |")


if __name__ == "__main__":
    main()
