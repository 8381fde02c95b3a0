"""Every method's mechanism probe on trained runs (issue 17): does each mechanism do what its paper says?

Trains each method on a dataset (default MOSI-U; checkpoint selected on VALIDATION MAE, one thread per run, the
method's shipped config), runs ``accord probe`` on every seed's selected checkpoint (test split) and writes
``benchmarks/results/probes_<dataset>.md`` (+ ``.json``): one table per method with each probe measure, mean ± std over
seeds, what it measures and what the paper's mechanism predicts, and whether the measurement agrees.

    python benchmarks/probes_study.py --seeds 3                       # MOSI-U
    python benchmarks/probes_study.py --dataset conflictbench --seeds 3

Runs go to ``--out`` (default ``runs/probes_study``); ``--resume`` keeps finished seeds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from accord.config import load_config
from accord.core.io import atomic_write_text, write_json
from accord.studies.probes import probe_run
from accord.studies.runner import run_configs

RESULTS = Path("benchmarks/results")
QASA = ["augment.source=fit", "augment.per_sample=2", "augment.weighting=quality"]
RUNS: dict[str, tuple[str, list[str], str]] = {
    # name: (method, overrides, what the paper's mechanism predicts)
    "cacr_drop": ("cacr", ["model.params.crm=drop"],
                  "CACR (METHODS §1.3): the reconstruction of X_m uses the other modalities' shared features, so "
                  "permuting H_n raises l_m (hn_rise > 0)."),
    "cacr_paper": ("cacr", ["model.params.crm=paper"],
                   "CACR with the literal decoder input (P_m and H_n): the shortcut predicts hn_rise ≈ 0."),
    "cpsl": ("cpsl", [],
             "CP+SL (METHODS §2): the projection is decided on every step and fires where the dominant modality's "
             "task gradient conflicts with SL's (projected_share > 0); the penalty keeps max r_m near κ."),
    "ebmc": ("ebmc", [],
             "EBMC (METHODS §3): trust falls for a missing or noised modality (trust_dropped_m, trust_noised_m "
             "below trust_m); the shared-space term makes the modalities' shared features similar (shared_cos)."),
    "self_mm": ("self_mm", [],
                "Self-MM: the generated unimodal labels move away from the multimodal label where a modality "
                "disagrees (drift_m > 0), and settle (drift at the last epoch ≤ its maximum)."),
    "qasa": ("early_fusion", QASA,
             "QASA: generated rows of higher quality weight are the ones the trained model fits better "
             "(weight_error_corr < 0)."),
}


def verdicts(name: str, ms: dict[str, dict[str, float]]) -> list[str]:
    """Plain statements of whether the measured probe agrees with the mechanism's prediction."""
    def m(key: str) -> float:
        return ms[key]["mean"] if key in ms else float("nan")

    out = []
    if name.startswith("cacr"):
        out.append(f"hn_rise {100 * m('hn_rise'):.1f}% (label ceiling {100 * m('ceiling'):.1f}%): "
                   + ("the reconstruction uses H_n" if m("hn_rise") > 0.01 else "the reconstruction ignores H_n"))
    if name == "cpsl":
        out.append(f"projected on {100 * m('projected_share'):.1f}% of steps, conflict (max r > κ) on "
                   f"{100 * m('conflict_share'):.1f}%")
    if name == "ebmc":
        for mod in ("text", "audio", "visual"):
            clean, drop, noise = m(f"trust_{mod}"), m(f"trust_dropped_{mod}"), m(f"trust_noised_{mod}")
            out.append(f"{mod}: trust {clean:.3f} clean, {drop:.3f} dropped, {noise:.3f} noised: "
                       + ("falls when dropped" if drop < clean else "does NOT fall when dropped")
                       + (", falls when noised" if noise < clean - 0.01 else ", does not fall when noised"))
        out.append(f"shared_cos {m('shared_cos'):.3f}")
    if name == "self_mm":
        out += [f"{mod}: drift {m(f'drift_{mod}'):.3f} at the last epoch, {m(f'drift_max_{mod}'):.3f} at most"
                for mod in ("text", "audio", "visual")]
    if name == "qasa":
        out.append(f"weight_error_corr {m('weight_error_corr'):+.3f}: "
                   + ("higher-weight rows are fitted better" if m("weight_error_corr") < -0.05 else
                      "weights do not track the model's error (|ρ| ≤ 0.05)" if abs(m("weight_error_corr")) <= 0.05
                      else "higher-weight rows are fitted WORSE"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mosi-u")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", default=",".join(RUNS), help="which of: " + ", ".join(RUNS))
    ap.add_argument("--out", default="runs/probes_study")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    command = "python benchmarks/probes_study.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    names = args.runs.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"--runs: unknown {', '.join(unknown)}; expected some of {', '.join(RUNS)}")
    seeds = list(range(args.seeds))
    out = Path(args.out) / args.dataset
    cfgs = {n: load_config(method=RUNS[n][0], dataset=args.dataset,
                           overrides=[*RUNS[n][1], "train.num_threads=1", f"name={n}", f"output.dir={out}",
                                      f"train.seeds={json.dumps(seeds)}"]) for n in names}
    rows = run_configs(cfgs, resume=args.resume, overwrite=not args.resume, progress=False,
                       log=lambda msg: print(f"[probes] {msg}", file=sys.stderr, flush=True))
    results: dict[str, Any] = {}
    lines = [f"# Mechanism probes on {args.dataset}", "",
             f"Each method trained with its shipped config on `{args.dataset}`, seeds {seeds} (checkpoint selected on "
             "VALIDATION MAE, one thread per run), then `accord probe RUN` on the test split (every seed's selected "
             "checkpoint; `src/accord/studies/probes.py` defines each measure). Mean ± std over seeds.", ""]
    for row in rows:
        res = probe_run(row.run_dir)
        results[row.name] = {"mean_std": res["mean_std"], "per_seed": res["per_seed"],
                             "Non0_acc_2": row.test.get("Non0_acc_2")}
        acc = row.test.get("Non0_acc_2")
        lines += [f"## `{row.name}` ({RUNS[row.name][0]}" + (", " + " ".join(RUNS[row.name][1]) if RUNS[row.name][1]
                                                             else "") + ")", "",
                  f"Prediction: {RUNS[row.name][2]}", "",
                  "| measure | mean ± std | seeds |", "|:---|---:|---:|",
                  *(f"| {k} | {v['mean']:.3f} ± {v['std']:.3f} | {v['n']} |" for k, v in res["mean_std"].items()),
                  "", "Measured: " + "; ".join(verdicts(row.name, res["mean_std"])) + "."
                  + (f" Test Non0_acc_2 {acc[0]:.1f} ± {acc[1]:.1f}." if acc else ""), ""]
    lines += ["Produced by:", "", "```bash", command, "```", ""]
    target = RESULTS / f"probes_{args.dataset.replace('-', '_')}.md"
    atomic_write_text(target, "\n".join(lines))
    write_json(target.with_suffix(".json"), {"command": command, "seeds": seeds, "runs": results})
    print(f"[probes] wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
