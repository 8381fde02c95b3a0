"""Issue 16: the accuracy half of "equal models vs MMSA at equal or better accuracy", on the current code.

``benchmarks/vs_mmsa_speed.py`` times Accord's configs matched to MMSA's (TFN, LMF, MulT, MISA, Self-MM), the last
three also with ``train.accumulate_batches`` set to MMSA's ``update_epochs`` (8, 2, 4 batches per optimiser step).
This script trains the same configs to the end on
MOSI-U (epoch cap 60, early stopping on validation MAE with patience 8, as ``vs_mmsa.py``'s accuracy phase), seeds
0..N-1, one thread, run by the same worker (``vs_mmsa.run_accord``); every table has the train-mean predictor's
row. MMSA's seeds 0..2 are read from the committed ``benchmarks/results/vs_mmsa.json`` and MMSA is run here for the
others (same pickle and budget) unless the results file already holds them for the same budget (MMSA's code and the
pickle do not change); Accord is run with and without accumulation on the current code. Each verdict gives
the 95 % Welch interval of the difference over seeds. Selection is on validation only; the test split is only
scored.

Usage::

    python benchmarks/mosi_u_accuracy.py                  # all five, 10 seeds (MMSA run for seeds 3..9; about
                                                          # 70 CPU minutes)
    python benchmarks/mosi_u_accuracy.py --models tfn,lmf  # re-run some; the JSON keeps the others
    python benchmarks/mosi_u_accuracy.py --models mult --after-pid PID  # beside a run on other models

Writes ``benchmarks/results/mosi_u_accuracy.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_mmsa as vm  # noqa: E402  (MMSA pickles, the Accord worker, metric helpers)
from vs_mmsa_speed import MMSA_ACCUMULATION  # noqa: E402

RESULTS = vm.ROOT / "benchmarks" / "results"
OUT_JSON, OUT_MD = RESULTS / "mosi_u_accuracy.json", RESULTS / "mosi_u_accuracy.md"
MODELS = ("tfn", "lmf", "mult", "misa", "self_mm")
METRICS = ("Non0_acc_2", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr")
EQUAL_WITHIN = 0.5
"""Accuracy 'equal' as vs_mmsa.md judges it: mean Non0_acc_2 within this many points of MMSA's, or better."""


def committed_mmsa(model: str) -> dict[str, Any]:
    """MMSA's MOSI-U accuracy runs of ``model`` from the committed ``vs_mmsa.json``."""
    return dict(json.loads((RESULTS / "vs_mmsa.json").read_text())["runs"]["accuracy"][model]["mmsa"])


def mmsa_seeds(model: str, data: dict[str, Any], seeds: int, epochs: int) -> dict[str, Any]:
    """MMSA's runs of ``model`` for seeds ``0..seeds-1``: the committed ones (``vs_mmsa.json``, seeds 0..2) and, for
    more seeds, MMSA run here on the same pickle and budget for the others (its code is the same); per-seed results
    and epoch times are concatenated in seed order."""
    res = committed_mmsa(model)
    have = [int(s["seed"]) for s in res["per_seed"]]
    extra = [s for s in range(seeds) if s not in have]
    if not extra:
        return res
    earlier = earlier_mmsa(model, epochs)
    by_seed = {int(s["seed"]): s for s in earlier["per_seed"]} if earlier else {}
    if all(s in by_seed for s in extra):  # MMSA's code and pickle are unchanged: its runs of these seeds from an
        # earlier run of this script stand (Accord is what is re-run)
        vm.log(f"{model}: MMSA seeds {extra[0]}..{extra[-1]} from the earlier run in {OUT_JSON.name}")
        return {**earlier, "per_seed": [*res["per_seed"], *(by_seed[s] for s in extra)]}
    vm.log(f"{model}: MMSA, seeds {extra[0]}..{extra[-1]} (the committed run has {have})")
    more = vm.run_mmsa(model, data, extra, epochs, 1, f"acc_{model}_seeds{extra[0]}_{extra[-1]}")
    if "error" in more:
        raise SystemExit(f"{model}: MMSA run failed ({more['error']}):\n{more.get('log_tail', '')}")
    return {**res, "per_seed": [*res["per_seed"], *more["per_seed"]],
            "epoch_seconds": [*res.get("epoch_seconds", []), *more.get("epoch_seconds", [])],
            "epoch_cpu_seconds": [*res.get("epoch_cpu_seconds", []), *more.get("epoch_cpu_seconds", [])],
            "extra_seeds_run": {"seeds": extra, "load": more.get("load"), "wall_seconds": more.get("wall_seconds"),
                                "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}}


def earlier_mmsa(model: str, epochs: int) -> dict[str, Any] | None:
    """MMSA's entry for ``model`` in the results file (its ``per_seed`` runs included), or None when the file has
    none for this epoch budget."""
    if not OUT_JSON.is_file():
        return None
    old = json.loads(OUT_JSON.read_text())
    entry = old.get("models", {}).get(model, {}).get("mmsa")
    return dict(entry) if entry and old.get("epochs") == epochs else None


def difference_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and its 95 % Welch interval ``(diff, low, high)`` (two independent samples of seeds)."""
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = (va + vb) ** 0.5
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.975, dof)) * se
    return diff, diff - half, diff + half


def cell(res: dict[str, Any], key: str) -> str:
    return vm.mean_std(vm.metric_values(res, key), 3 if key in ("MAE", "Corr") else 1)


def markdown(report: dict[str, Any]) -> str:
    made = ", ".join(f"{m} {r['utc']} (`--models {m} --seeds {seeds_of(report, m)}`)"
                     for m, r in report["models"].items())
    lines = ["# Accord vs MMSA on MOSI-U: accuracy of the speed comparison's configs (issue 16)", "",
             f"Made by `python benchmarks/mosi_u_accuracy.py` (models run at: "
             f"{made} UTC): MOSI-U (the MMSA pickle both frameworks read), "
             "seeds 0..N-1 (N in each model's heading), "
             f"epoch cap {report['epochs']}, early stopping on validation MAE (patience {vm.PATIENCE}), 1 thread. "
             "`MMSA` is the committed run of `vs_mmsa.py` for seeds 0..2 (same pickle, seeds and budget; MMSA's code "
             "is unchanged since), and for more seeds MMSA run by this script for the others; "
             "both Accord rows were run by this script on the current code: `one step per batch` is the "
             "matched config of `vs_mmsa.py`, `accumulated` the same with `train.accumulate_batches` set to "
             "MMSA's `update_epochs` (MulT, MISA and Self-MM; MMSA's TFN and LMF step every batch). Mean ± std "
             "over seeds; accuracies in %.", ""]
    verdicts = []
    for m, r in report["models"].items():
        k = r["accumulate_batches"]
        lines += [f"## {m}, {seeds_of(report, m)} seeds" +
                  (f" (MMSA: one optimiser step per {k} batches)" if k > 1 else ""), "",
                  "| run | framework | " + " | ".join(METRICS) + " | best epochs | epoch CPU s |",
                  "|:---|:---|" + "---:|" * (len(METRICS) + 2)]
        for label, key, fw in [("MMSA", "mmsa", "MMSA"), ("Accord, one step per batch", "accord_per_batch", "Accord"),
                               ("Accord, accumulated", "accord_accumulated", "Accord")]:
            if key not in r:
                continue
            res = r[key]
            best = [s.get("best_epoch") for s in res.get("per_seed", [])]
            cpu = [c for seed in res.get("epoch_cpu_seconds") or [] for c in seed]
            cpu_cell = f"{statistics.median(cpu):.2f}" if cpu else "—"
            lines.append(f"| {label} | {fw} | " + " | ".join(cell(res, k) for k in METRICS) +
                         f" | {', '.join(str(b) for b in best)} | {cpu_cell} |")
        lines += [vm.constant_row("mosi-u", report["data_params"], framework_col=True), ""]
        mmsa_vals = vm.metric_values(r["mmsa"], "Non0_acc_2")
        mmsa = statistics.fmean(mmsa_vals)
        for label, key in (("one step per batch", "accord_per_batch"), ("accumulated", "accord_accumulated")):
            if key not in r:
                continue
            vals = vm.metric_values(r[key], "Non0_acc_2")
            acc = statistics.fmean(vals)
            ok = acc >= mmsa - EQUAL_WITHIN
            diff, low, high = difference_interval(vals, mmsa_vals)
            verdicts.append(f"- **{m}**, Accord {label}: Non0_acc_2 MMSA {mmsa:.1f} vs Accord {acc:.1f} "
                            f"({acc - mmsa:+.1f}; 95% interval of the difference {low:+.1f} to {high:+.1f}, "
                            f"{len(vals)} seeds each): equal or better {'**met**' if ok else '**NOT met**'}")
    lines += ["## Equal or better accuracy?", "",
              f"'Equal' = mean Non0_acc_2 within {EQUAL_WITHIN} points of MMSA's, or better (as vs_mmsa.md). The "
              "interval (Welch, over seeds) says how far the seeds let the difference be pinned down: where it "
              f"spans both -{EQUAL_WITHIN} and 0, these seeds cannot tell 'equal' from 'worse', and the verdict can "
              "flip with the random streams (this stop's new dropout draws moved TFN's mean by half a point).", "",
              *verdicts, "",
              "Accord's window is the mean over its rows (a window of 8 batches of 16 steps as one batch of 128); "
              "MMSA sums the batches' mean-loss gradients and clips gradient VALUES after every batch, Accord clips "
              "the window's gradient once (MulT and MISA: by value, as MMSA, since 2026-12-02 10:41 UTC; by norm "
              "before). MMSA drops an epoch's last unfinished window (the next epoch zeroes "
              "it); Accord steps it. The epoch CPU column is the median over every epoch of the runs (the speed "
              "comparison itself is in vs_mmsa_speed.md, measured interleaved with MMSA)."]
    return "\n".join(lines) + "\n"


def seeds_of(report: dict[str, Any], model: str) -> int:
    """Seeds of ``model``'s runs (a report from before per-model seeds has one count for all)."""
    return int(report["models"][model].get("seeds", report.get("seeds", 3)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the JSON")
    p.add_argument("--after-pid", type=int, default=None,
                   help="before writing, wait for this process (another run of this script on other models, so the "
                        "two can run side by side) to end; the JSON is re-read and merged when written")
    args = p.parse_args(argv)
    if args.report_only:
        OUT_MD.write_text(markdown(json.loads(OUT_JSON.read_text())))
        return
    data = vm.write_pickles()["mosi_u"]
    models = [x for x in args.models.split(",") if x]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; expected a subset of {','.join(MODELS)}")
    report: dict[str, Any] = {"epochs": args.epochs, "data_params": data["params"], "models": {}}
    for m in models:
        k = MMSA_ACCUMULATION.get(m, 1)
        entry: dict[str, Any] = {"accumulate_batches": k, "seeds": args.seeds,
                                 "mmsa": mmsa_seeds(m, data, args.seeds, args.epochs)}
        for key, every in (("accord_per_batch", 1), ("accord_accumulated", k))[:2 if k > 1 else 1]:
            vm.log(f"{m}: Accord matched, accumulate_batches={every}, seeds 0..{args.seeds - 1}")
            res = vm.run_accord(m, data, list(range(args.seeds)), args.epochs, 1, f"accum{every}_{m}",
                                [*(vm.FULL_RES if m in vm.DOWNSAMPLED else []), f"train.accumulate_batches={every}"])
            if "error" in res:
                raise SystemExit(f"{m}: Accord run failed ({res['error']}):\n{res.get('log_tail', '')}")
            entry[key] = res
        entry["utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        report["models"][m] = entry
    while args.after_pid is not None and Path(f"/proc/{args.after_pid}").exists():
        time.sleep(5)
    if OUT_JSON.is_file():  # keep the models this run did not redo, as the file holds them now (another run may
        # have written it meanwhile); same budget only, each with its own seed count
        now = json.loads(OUT_JSON.read_text())
        if now["epochs"] == args.epochs:
            report["models"].update({m: {"seeds": seeds_of(now, m), **r} for m, r in now["models"].items()
                                     if m not in models})
    report["models"] = {m: report["models"][m] for m in MODELS if m in report["models"]}
    report["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    vm.write_results(OUT_MD, OUT_JSON, markdown(report), report)
    print(OUT_MD.read_text())


if __name__ == "__main__":
    main()
