"""MOSEI text on the standard folds: MiniLM fine-tuned vs frozen, 3 seeds, and MOSEI → MOSI cross-dataset (issue 15).

    python benchmarks/mosei_finetune.py --train finetune --seed 0   # one fine-tuned seed (run one per process)
    python benchmarks/mosei_finetune.py --train frozen               # the frozen-vector seeds (cheap)
    python benchmarks/mosei_finetune.py --report                     # the report from finished runs

Data: ``mosei-text`` (``../shared/data/mosei/label.csv``, CMU SDK standard folds 16,274 / 1,861 / 4,653 segments,
text only). Rows:

* frozen: text alone on the precomputed all-MiniLM-L6-v2 sentence vectors (the encoder never trained), the
  MOSI-U budget (up to 40 epochs, early stopping on validation MAE, batch 32, lr 1e-3);
* fine-tuned: the packaged all-MiniLM-L6-v2 trained end to end on the tokens (lr 5e-5, head lr 1e-3, batch 32,
  length buckets, dynamic padding, at most 50 word pieces), ONE epoch (509 steps: one epoch over MOSEI is 13× the
  steps of one over MOSI; more did not fit this 2-core machine's budget), so its only checkpoint is evaluated;
* the constant (train-mean) predictor.

Cross-dataset: every MOSEI-trained seed is evaluated on the MOSI standard TEST fold (``accord evaluate RUN --on
mosi-u --on-set split=standard --on-set text_features=minilm``: MOSI's vectors re-standardised with MOSEI's
training statistics; the fine-tuned model tokenizes MOSI's transcripts), beside the MOSI-trained text models of
``benchmarks/mosi_finetune.py`` (``runs/mosi_finetune``).

Writes ``benchmarks/results/mosei_finetune.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from accord import api
from accord.config import Config, load_config
from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.evaluation.baselines import constant_predictor_rows
from accord.evaluation.summary import Aggregate, aggregate, aggregate_table_json, markdown_table
from accord.studies.runner import DatasetCache, constant_rows, run_configs

SEEDS = [0, 1, 2]
FINETUNE = ["model.params.text_encoder.source=pretrained", "model.params.text_encoder.lr=0.00005",
            "train.bucket_by_length=true", "train.epochs=1"]
ON_MOSI = ["split=standard", "text_features=minilm"]
METRICS = ["Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Mult_acc_7", "MAE", "Corr"]


def config(kind: str, seeds: list[int], out: Path, name: str) -> Config:
    """``frozen`` or ``finetune`` text-alone config on MOSEI-text (its packaged dataset YAML's budget)."""
    extra = FINETUNE if kind == "finetune" else []
    return load_config(method="text", dataset="mosei-text", overrides=[
        *extra, f"train.seeds={seeds}", f"output.dir={out}", f"name={name}"])


def seed_rows(run_dir: Path, split: str = "test") -> list[dict[str, float]]:
    """Per seed of ``run_dir``: its selected checkpoint's metrics on ``split`` (``results.json``)."""
    return [rundir.read_results(sd)[split] for sd in rundir.seed_dirs(run_dir)]


def cross_rows(run_dirs: list[Path]) -> dict[str, Aggregate]:
    """Every seed of ``run_dirs`` evaluated on the MOSI standard test fold (saved beside each run)."""
    per_seed: list[dict[str, float]] = []
    for rd in run_dirs:
        res = api.evaluate(rd, on="mosi-u", on_overrides=ON_MOSI)
        per_seed += list(res["per_seed"].values())
    return aggregate(per_seed)


def report(out_runs: Path, mosi_runs: Path, out: Path) -> None:
    ft_dirs = [out_runs / f"finetune_seed{s}" for s in SEEDS]
    frozen = out_runs / "frozen"
    mosei_ds = DatasetCache().get(config("frozen", SEEDS, out_runs, "x"))
    mosei = {
        "constant predictor (train mean)": constant_rows(mosei_ds, len(SEEDS), "regression")["test"],
        "text alone, frozen MiniLM vectors": aggregate(seed_rows(frozen)),
        "text alone, MiniLM fine-tuned (1 epoch)": aggregate([r for d in ft_dirs for r in seed_rows(d)]),
    }
    mosi_ds = DatasetCache().get(load_config(method="text", dataset="mosi-u", overrides=[
        "data.params.split=standard", "data.params.text_features=minilm"]))
    cross = {
        "constant predictor (MOSEI train mean)": constant_predictor_rows(
            mosei_ds["train"].labels.numpy(), {"test": mosi_ds["test"].labels.numpy()}, seeds=len(SEEDS))["test"],
        "MOSEI-trained, frozen MiniLM vectors": cross_rows([frozen]),
        "MOSEI-trained, MiniLM fine-tuned (1 epoch)": cross_rows(ft_dirs),
        "MOSI-trained, frozen MiniLM vectors (5 seeds)": aggregate(seed_rows(mosi_runs / "text_frozen")),
        "MOSI-trained, MiniLM fine-tuned (2 epochs, 5 seeds)": aggregate(seed_rows(mosi_runs / "text_ft")),
    }
    seconds = {name: [float(rundir.read_results(sd)["train_seconds"]) for sd in rundir.seed_dirs(d)]
               for name, d in [("frozen", frozen), *((f"fine-tuned seed {s}", d) for s, d in zip(SEEDS, ft_dirs,
                                                                                             strict=True))]}
    lines = [
        "# MOSEI text (standard folds): MiniLM fine-tuned vs frozen, and MOSEI → MOSI", "",
        "CMU-MOSEI transcripts and scores from `../shared/data/mosei/label.csv` on the CMU SDK standard folds "
        "(16,274 / 1,861 / 4,653 segments; text only: no audio or visual features exist here). Test split, mean ± "
        f"std over seeds {SEEDS}. Frozen: text alone on the precomputed all-MiniLM-L6-v2 sentence vectors, up to 40 "
        "epochs, checkpoint selected on validation MAE. Fine-tuned: MiniLM trained end to end (lr 5e-5, head 1e-3, "
        "batch 32, length buckets), ONE epoch (509 steps), so its only checkpoint is the one evaluated. Accuracies "
        "and F1 in %.", "",
        markdown_table(mosei, METRICS, first_col="MOSEI test").rstrip("\n"), "",
        "## Cross-dataset: the MOSI standard test fold (685 segments)", "",
        "MOSEI-trained models evaluated on MOSI's test transcripts (`accord evaluate RUN --on mosi-u --on-set "
        "split=standard --on-set text_features=minilm`: the frozen model gets MOSI's MiniLM vectors re-standardised "
        "with MOSEI's training statistics, the fine-tuned one tokenizes MOSI's transcripts), beside text models "
        "trained on MOSI itself ([mosi_finetune.md](mosi_finetune.md)).", "",
        markdown_table(cross, METRICS, first_col="MOSI test").rstrip("\n"), "",
        "Training seconds per seed (one thread, the machine shared with other runs): "
        + "; ".join(f"{k} {', '.join(f'{v:.0f}' for v in vs)}" for k, vs in seconds.items()) + ".", "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}).", "", "Commands:", "", "```bash",
        "python benchmarks/mosei_finetune.py --train frozen",
        "for s in 0 1 2; do python benchmarks/mosei_finetune.py --train finetune --seed $s & done; wait",
        "python benchmarks/mosei_finetune.py --report", "```", ""]
    atomic_write_text(out, "\n".join(lines))
    write_json(out.with_suffix(".json"), {"mosei_test": aggregate_table_json(mosei),
                                          "mosi_test": aggregate_table_json(cross), "train_seconds": seconds})
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", choices=["frozen", "finetune"])
    ap.add_argument("--seed", type=int, default=0, help="the fine-tuned seed to train")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--runs", type=Path, default=Path("runs/mosei_finetune"))
    ap.add_argument("--mosi-runs", type=Path, default=Path("runs/mosi_finetune"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/mosei_finetune.md"))
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.train == "frozen":
        run_configs({"frozen": config("frozen", SEEDS, args.runs, "frozen")}, resume=True, progress=False, log=log)
    elif args.train == "finetune":
        name = f"finetune_seed{args.seed}"
        run_configs({name: config("finetune", [args.seed], args.runs, name)}, resume=True, progress=False, log=log)
    if args.report:
        report(args.runs, args.mosi_runs, args.out)


if __name__ == "__main__":
    main()
