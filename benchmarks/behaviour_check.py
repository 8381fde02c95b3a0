"""Same seed, same metrics: a fingerprint of every method, hook and training option, to compare two versions.

A refactor that claims "no behaviour change" runs this before and after (on the same machine, same thread count)
and compares the two JSON files: every number must match to the last bit. It trains each case for a few epochs on
ConflictBench (one seed) through the public API only (``accord.load_config`` + ``accord.train``), so the same
script runs on any version of Accord.

    python benchmarks/behaviour_check.py --out before.json            # on the old version
    python benchmarks/behaviour_check.py --out after.json --compare before.json

Exit status 1 when ``--compare`` finds a difference (each one is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import accord

BASE = ["train.epochs=3", "train.seeds=[0]", "train.num_threads=1"]
CASES: dict[str, tuple[str, list[str]]] = {
    **{m: (m, []) for m in ("text", "audio", "visual", "early_fusion", "late_fusion", "tfn", "lmf", "mult",
                            "misa", "self_mm", "cacr", "cpsl", "ebmc")},
    "unimodal_visual": ("unimodal", ["model.params.modality=visual"]),
    **{f"cacr_{a}": ("cacr", [f"model.params.ablation={a}"]) for a in ("no_crm", "no_caw", "gating", "no_fsr",
                                                                       "no_orth", "no_private")},
    "cacr_anchor": ("cacr", ["model.params.shared_anchor=true"]),
    **{f"cpsl_{a}": ("cpsl", [f"model.params.ablation={a}"]) for a in ("no_cp", "no_sl", "no_projection",
                                                                       "backbone")},
    "cpsl_conflict_projection": ("cpsl", ["model.params.project_on=conflict"]),  # the pre-issue-17 rule
    **{f"ebmc_{a}": ("ebmc", [f"model.params.ablation={a}"]) for a in ("no_enhance", "no_energy", "no_trust",
                                                                       "trust_without_distillation", "no_sim")},
    "ebmc_two_sided_eq": ("ebmc", ["model.params.eq_form=two_sided"]),  # the pre-issue-17 L_eq
    "late_fusion_monitor": ("late_fusion", ["train.hooks=[{name: grad_monitor}]", "train.log_every_steps=5"]),
    "late_fusion_ogm": ("late_fusion", ["train.hooks=[{name: ogm_ge, params: {alpha: 0.3}}]"]),
    "tfn_agm": ("tfn", ["train.hooks=[{name: agm, params: {alpha: 0.1}}]"]),
    "mult_cp_hook": ("mult", ["train.hooks=[{name: conflict_penalty}]"]),
    "late_fusion_classification": ("late_fusion", ["task.kind=classification"]),
    "tfn_classification": ("tfn", ["task.kind=classification"]),
    "early_fusion_mse_cosine": ("early_fusion", ["task.loss=mse", "train.scheduler=cosine",
                                                 "train.warmup_epochs=1"]),
    "tfn_plateau": ("tfn", ["train.scheduler=plateau"]),
    "late_fusion_modality_dropout": ("late_fusion", ["train.modality_dropout={audio: 0.3, visual: 0.2}"]),
    "late_fusion_weights": ("late_fusion", ["loss_weights.unimodal_text=0.2"]),
    "tfn_train_fraction": ("tfn", ["data.train_fraction=0.5", "data.train_fraction_by=sample"]),
    "early_fusion_qasa_noise": ("early_fusion", ["augment.source=noise", "augment.per_sample=2"]),
    "tfn_fused_adamw": ("tfn", ["train.optimizer_impl=fused"]),
}


def run_case(method: str, overrides: list[str], out_dir: Path) -> dict[str, Any]:
    """Train one case; return its valid/test metrics, last epoch's losses and the selected epoch."""
    cfg = accord.load_config(method=method, dataset="conflictbench",
                             overrides=[*BASE, *overrides, f"output.dir={out_dir}"])
    summary = accord.train(cfg)
    seed_dir = Path(cfg.run_dir) / "seed_0"
    results = json.loads((seed_dir / "results.json").read_text())
    epochs = [json.loads(line) for line in (seed_dir / "log.jsonl").read_text().splitlines()
              if json.loads(line).get("type") == "epoch"]
    return {"valid": results["valid"], "test": results["test"], "best_epoch": results["best_epoch"],
            "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in epochs],
            "summary_test": {k: v["mean"] for k, v in summary["test"].items()}}


def compare(new: dict[str, Any], old: dict[str, Any], path: str = "") -> list[str]:
    """Every difference between two fingerprints (exact float equality; NaN equals NaN)."""
    diffs: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if k not in new or k not in old:
                diffs.append(f"{path}/{k}: only in {'old' if k in old else 'new'}")
            else:
                diffs += compare(new[k], old[k], f"{path}/{k}")
    elif new != old and not (isinstance(new, float) and isinstance(old, float) and new != new and old != old):
        diffs.append(f"{path}: {old!r} -> {new!r}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, default=None, help="an earlier fingerprint to compare with")
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.only.split(",") if n] or list(CASES)
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            method, overrides = CASES[name]
            result[name] = run_case(method, overrides, Path(tmp) / name)
            print(f"{name}: test MAE/Acc {result[name]['test'].get('MAE', result[name]['test'].get('Acc'))}",
                  file=sys.stderr, flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(names)} cases in {time.perf_counter() - t0:.0f}s -> {args.out}", file=sys.stderr)
    if args.compare is not None:
        old = json.loads(args.compare.read_text())
        diffs = compare({k: result[k] for k in names}, {k: old[k] for k in names if k in old})
        for d in diffs:
            print("DIFF", d)
        print(f"{len(diffs)} differences over {len(names)} cases")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
