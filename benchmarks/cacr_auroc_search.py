"""Issue 17: does any setting of CACR's own (paper-form) conflict score reach a planted-conflict AUROC of 0.85?

``cacr_conflictbench.md`` measures the conflict score C_m of METHODS §1 (1 - cos between the modalities' pooled
shared features, as CACR's CAW reads it) on ConflictBench with planted conflicts. With one shared encoder common to
all modalities (CACR's default when this search ran, pinned here as ``BASE`` so that the search reproduces) it
stayed below the issue's goal of 0.85 in every setting (0.80 in ``clean``). This script tries the paper's own knobs
on the ``clean`` setting (where the goal is most within reach): the loss weights of the reconstruction and of the
shared branch, CAW's temperature, the shared encoder's form, the orthogonality weight, the width, and the CRM's
private path. Each configuration: CACR, ``--seeds`` seeds (checkpoint selected on validation MAE as always), then
the AUROC of C_audio for audio-flipped vs consistent test samples and of C_visual for visual-flipped ones, averaged
(``AUROC_planted``, ``cacr_study.conflict_aurocs``).

Its best setting on validation, one shared encoder per modality (``shared_encoder: separate``), is CACR's default
now. Writes ``benchmarks/results/cacr_auroc_search.json`` and ``.md``.

    python benchmarks/cacr_auroc_search.py --seeds 2 --mosi-seeds 5   # --resume keeps finished seeds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cacr_study as cs  # noqa: E402  (the ConflictBench settings and the AUROC of the conflict score)
from accord.core.io import atomic_write_text  # noqa: E402
from accord.evaluation.baselines import CONSTANT_ROW  # noqa: E402
from accord.evaluation.summary import format_mean_std  # noqa: E402
from accord.studies.runner import DatasetCache, constant_rows  # noqa: E402

BASE = ["model.params.shared_encoder=common"]
"""CACR's defaults when the search ran (the shared encoder was common to all modalities); every row starts there."""

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
"""Overrides tried, each on top of the ``clean`` setting and :data:`BASE` (the first row)."""


def name_of(overrides: list[str]) -> str:
    """A run name for ``overrides`` (``loss_weights.rec=1.0`` -> ``rec-1.0``)."""
    return "_".join(o.replace("loss_weights.", "").replace("model.params.", "").replace("=", "-")
                    for o in overrides) or "defaults"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--mosi-seeds", type=int, default=5, help="seeds of the MOSI-U check of each shared encoder")
    ap.add_argument("--out", default="runs/cacr_auroc_search")
    ap.add_argument("--results", default="benchmarks/results")
    ap.add_argument("--resume", action="store_true", help="keep finished seeds")
    args = ap.parse_args()
    seeds, out = list(range(args.seeds)), Path(args.out)
    specs = {name_of(extra): ("cacr", [*BASE, *extra]) for extra in CONFIGS}
    trained = cs.train_runs(specs, "conflictbench", seeds, out,
                            ["data.params.n_test=1000", *cs.SETTINGS["clean"][1]], args.resume)
    rows = []
    for extra in CONFIGS:
        name = name_of(extra)
        au = cs.conflict_aurocs(trained[name].run_dir, seeds)
        valid = cs.conflict_aurocs(trained[name].run_dir, seeds, "valid")
        rows.append({"overrides": extra, "valid_AUROC_planted": valid["AUROC_planted"][:2],
                     "AUROC_planted": au["AUROC_planted"][:2], "AUROC_any": au["AUROC_any"][:2],
                     "Non0_acc_2": trained[name].test["Non0_acc_2"][:2],
                     "train_seconds_per_seed": round(trained[name].seconds, 1)})
    # does the best setting's encoder form cost accuracy on real data? both forms on MOSI-U, more seeds
    encoders = {e: ("cacr", [f"model.params.shared_encoder={e}"]) for e in ("common", "separate")}
    mosi = cs.train_runs(encoders, "mosi-u", list(range(args.mosi_seeds)), out / "mosi_u", [], args.resume)
    mosi_rows = {e: {k: mosi[e].test[k][:2] for k in ("Non0_acc_2", "MAE", "Corr")} for e in encoders}
    # the trivial baselines: the train-mean predictor (accuracy; its conflict "score" is constant: AUROC 0.5)
    datasets = DatasetCache()
    const_cb = constant_rows(datasets.get(trained["defaults"].cfg.data), len(seeds), "regression")["test"]
    const_mosi = constant_rows(datasets.get(mosi["common"].cfg.data), args.mosi_seeds, "regression")["test"]
    command = f"python benchmarks/cacr_auroc_search.py --seeds {args.seeds} --mosi-seeds {args.mosi_seeds}"
    res = Path(args.results)
    atomic_write_text(res / "cacr_auroc_search.json", json.dumps(
        {"command": command, "setting": "clean", "setting_overrides": cs.SETTINGS["clean"][1], "base": BASE,
         "seeds": seeds, "goal": 0.85, "rows": rows, "mosi_u": mosi_rows, "mosi_u_seeds": args.mosi_seeds},
        indent=1) + "\n")
    best = max(rows, key=lambda r: r["valid_AUROC_planted"][0])  # chosen on validation, reported on test
    lines = ["# CACR's own conflict score on planted conflicts: the paper's knobs (issue 17)", "",
             f"ConflictBench `clean` setting ({cs.SETTINGS['clean'][0]}), test n = 1000, seeds {seeds}; CACR as "
             "its defaults were when the search ran (one shared encoder common to all modalities, "
             "`shared_encoder: common`) plus the overrides in each row; AUROC of the paper-form conflict score "
             "C_m (mean over the audio- and visual-flipped samples, each against the consistent ones) on the test "
             "split, and on validation, where the setting is chosen. Goal 0.85.", "",
             "| overrides | valid AUROC planted | AUROC planted | AUROC any conflict | Non0_acc_2 | "
             "train s per seed |",
             "|:---|---:|---:|---:|---:|---:|",
             f"| {CONSTANT_ROW} | 0.500 | 0.500 | 0.500 | "
             f"{format_mean_std(*const_cb['Non0_acc_2'][:2], 'Non0_acc_2')} | |"]
    for r in rows:
        lines.append(f"| {' '.join(r['overrides']) or '(base: shared_encoder=common)'} | "
                     f"{r['valid_AUROC_planted'][0]:.3f} | "
                     f"{r['AUROC_planted'][0]:.3f} ± "
                     f"{r['AUROC_planted'][1]:.3f} | {r['AUROC_any'][0]:.3f} | {r['Non0_acc_2'][0]:.1f} ± "
                     f"{r['Non0_acc_2'][1]:.1f} | {r['train_seconds_per_seed']:.0f} |")
    met = best["AUROC_planted"][0] >= 0.85
    lines += ["", f"Best on VALIDATION (the setting is chosen there; the other columns are the test split): "
              f"{' '.join(best['overrides']) or '(base)'}, valid {best['valid_AUROC_planted'][0]:.3f}, test "
              f"{best['AUROC_planted'][0]:.3f}: the goal "
              f"is {'met by it' if met else 'NOT met by any of these settings'} "
              "(2 seeds here: a search; `cacr_conflictbench.md` runs the best setting with 5 seeds). For "
              "comparison (cacr_conflictbench.md, 5 seeds): the `shared_anchor` option, not in the paper, 0.972; the "
              "reference detector from separately trained unimodal models 0.985.", "",
              f"## Accuracy on MOSI-U with each shared encoder ({args.mosi_seeds} seeds)", "",
              "Whether `separate` costs accuracy on real data: CACR on MOSI-U, every other setting the default, test "
              "split, checkpoint selected on validation MAE.", "",
              "| shared_encoder | Non0_acc_2 | MAE | Corr |", "|:---|---:|---:|---:|",
              f"| {CONSTANT_ROW} | "
              + " | ".join(format_mean_std(*const_mosi[k][:2], k) for k in ("Non0_acc_2", "MAE", "Corr")) + " |"]
    for e, m in mosi_rows.items():
        lines.append(f"| {e}{' (the default)' if e == 'separate' else ''} | "
                     + " | ".join(format_mean_std(*m[k], k) for k in ("Non0_acc_2", "MAE", "Corr")) + " |")
    lines += ["", "`separate` is CACR's default since this search; every CACR table (the MOSI-U and fine-tuned "
              "ablations, ConflictBench, probes, robustness, the sweep) was re-made with it.", "",
              f"Produced by `{command}`.", ""]
    atomic_write_text(res / "cacr_auroc_search.md", "\n".join(lines))


if __name__ == "__main__":
    main()
