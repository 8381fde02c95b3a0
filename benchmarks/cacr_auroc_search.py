"""Issue 17: does any setting of CACR's own (paper-form) conflict score reach a planted-conflict AUROC of 0.85?

``cacr_conflictbench.md`` measures the conflict score C_m of METHODS §1 (1 - cos between the modalities' pooled
shared features, as CACR's CAW reads it) on ConflictBench with planted conflicts; in every setting it stays below the
issue's goal of 0.85 (0.80 in the ``clean`` setting), and only the ``shared_anchor`` option, which is not in the
paper, passes it. This script tries the paper's own knobs on the ``clean`` setting (where the goal is most within
reach): the loss weights of the reconstruction and of the shared branch, CAW's temperature, the shared encoder's
form, the orthogonality weight, the width, and the CRM's private path. Each configuration: CACR, ``--seeds`` seeds
(checkpoint selected on validation MAE as always), then the AUROC of C_audio for audio-flipped vs consistent test
samples and of C_visual for visual-flipped ones, averaged (``AUROC_planted``, ``cacr_study.conflict_aurocs``).

Writes ``benchmarks/results/cacr_auroc_search.json`` and ``.md``.

    python benchmarks/cacr_auroc_search.py --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accord  # noqa: E402
import cacr_study as cs  # noqa: E402  (the ConflictBench settings and the AUROC of the conflict score)
from accord.core.io import atomic_write_text  # noqa: E402

CONFIGS: list[list[str]] = [
    [],
    ["loss_weights.rec=1.0"],
    ["loss_weights.rec=3.0"],
    ["loss_weights.shared=2.0"],
    ["loss_weights.rec=1.0", "loss_weights.shared=2.0"],
    ["model.params.tau=0.1"],
    ["model.params.shared_encoder=separate"],
    ["loss_weights.orth=0.0"],
    ["loss_weights.orth=1.0"],
    ["model.params.hidden=64"],
    ["model.params.private_drop=0.9"],
    ["model.params.crm=narrow"],
]
"""Overrides tried, each on top of the ``clean`` setting and CACR's defaults (the first row)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="runs/cacr_auroc_search")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    base = ["data.params.n_test=1000", *cs.SETTINGS["clean"][1], *cs.THREAD, f"train.seeds={json.dumps(seeds)}",
            f"output.dir={args.out}"]
    rows = []
    for extra in CONFIGS:
        name = "_".join(e.replace("loss_weights.", "").replace("model.params.", "").replace("=", "-")
                        for e in extra) or "defaults"
        cfg = accord.load_config(method="cacr", dataset="conflictbench", overrides=[*base, *extra, f"name={name}"])
        t0 = time.perf_counter()
        accord.train(cfg, overwrite=True)
        au = cs.conflict_aurocs(cfg.run_dir, seeds)
        summ = json.loads((cfg.run_dir / "summary.json").read_text())
        rows.append({"overrides": extra, "AUROC_planted": au["AUROC_planted"][:2], "AUROC_any": au["AUROC_any"][:2],
                     "Non0_acc_2": [summ["test"]["Non0_acc_2"]["mean"], summ["test"]["Non0_acc_2"]["std"]],
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(name, rows[-1], flush=True)
    command = f"python benchmarks/cacr_auroc_search.py --seeds {args.seeds}"
    res = Path(args.results)
    atomic_write_text(res / "cacr_auroc_search.json", json.dumps(
        {"command": command, "setting": "clean", "setting_overrides": cs.SETTINGS["clean"][1], "seeds": seeds,
         "goal": 0.85, "rows": rows}, indent=1) + "\n")
    best = max(rows, key=lambda r: r["AUROC_planted"][0])
    lines = ["# CACR's own conflict score on planted conflicts: the paper's knobs (issue 17)", "",
             f"ConflictBench `clean` setting ({cs.SETTINGS['clean'][0]}), test n = 1000, seeds {seeds}; CACR with "
             "its defaults plus the overrides in each row; AUROC of the paper-form conflict score C_m (mean over the "
             "audio- and visual-flipped samples, each against the consistent ones). Goal 0.85.", "",
             "| overrides | AUROC planted | AUROC any conflict | Non0_acc_2 | s |", "|:---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {' '.join(r['overrides']) or '(defaults)'} | {r['AUROC_planted'][0]:.3f} ± "
                     f"{r['AUROC_planted'][1]:.3f} | {r['AUROC_any'][0]:.3f} | {r['Non0_acc_2'][0]:.1f} ± "
                     f"{r['Non0_acc_2'][1]:.1f} | {r['seconds']:.0f} |")
    lines += ["", f"Best: {' '.join(best['overrides']) or '(defaults)'} at {best['AUROC_planted'][0]:.3f}: the goal "
              f"is {'met by it' if best['AUROC_planted'][0] >= 0.85 else 'NOT met by any of these settings'} "
              "(2 seeds here: a search; `cacr_conflictbench.md` runs the best setting with 5 seeds). For "
              "comparison (cacr_conflictbench.md, 5 seeds): the `shared_anchor` option, not in the paper, 0.972; the "
              "reference detector from separately trained unimodal models 0.985.", "", f"Produced by `{command}`.",
              ""]
    atomic_write_text(res / "cacr_auroc_search.md", "\n".join(lines))


if __name__ == "__main__":
    main()
