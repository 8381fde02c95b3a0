"""MOSI standard folds with the MiniLM text branch fine-tuned end to end: every method, 5 seeds (issue 15).

    python benchmarks/mosi_finetune.py                          # train every variant, then write the report
    python benchmarks/mosi_finetune.py --variants text_ft,tfn   # train some variants only (e.g. one per process)
    python benchmarks/mosi_finetune.py --report                 # the report from finished runs, no training

Data: ``mosi-u`` with ``split=standard`` (CMU SDK folds, 52/10/31 videos): transcripts from
``../shared/data/mosi/label.csv``, audio = the bc-LSTM openSMILE vector, visual absent (its extractor saw labels
of the standard test videos; ``../shared/data/README.md``). Every fine-tuned variant reads the transcripts'
tokens through the packaged all-MiniLM-L6-v2 (``model.params.text_encoder.source=pretrained``, masked-mean pooling
except Self-MM's [CLS]; encoder lr 5e-5, MMSA's ``learning_rate_bert`` convention; the rest of the model at the
dataset's lr), length-bucketed batches with dynamic padding, ``--epochs`` epochs, checkpoint selected on validation.
The frozen-text row reads the precomputed MiniLM sentence vectors (``text_features=minilm``, the encoder never
trained) and, like audio alone, uses the dataset's own budget (40 epochs, early stopping): those two are cheap.
CP+SL and CP+SL without CP run with the gradient monitor, whose per-step r_m lines give the text/audio ratio trace.

Writes ``benchmarks/results/mosi_finetune.md`` (+ ``.json`` and ``mosi_finetune_r_text.png``); runs go to
``runs/mosi_finetune/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from accord.config import Config, load_config
from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.evaluation.metrics import metric_mode, register_metric
from accord.evaluation.summary import Aggregate, aggregate_table_json, markdown_table
from accord.studies.runner import (
    DatasetCache,
    constant_rows,
    finished_rows,
    rows_table,
    run_configs,
    table_metrics,
    train_seconds,
)

DATA = ["data.params.split=standard", "data.params.text_features=minilm"]
FINETUNE = ["model.params.text_encoder.source=pretrained", "model.params.text_encoder.lr=0.00005",
            "train.bucket_by_length=true"]
MONITOR = ["train.hooks=[{name: grad_monitor}]"]
VARIANTS: dict[str, tuple[str, list[str], bool, str]] = {
    # name: (registered model, overrides, fine-tuned text?, label)
    "text_frozen": ("text", [], False, "text alone, frozen MiniLM vectors"),
    "audio": ("audio", [], False, "audio alone (openSMILE)"),
    "text_ft": ("text", [], True, "text alone, fine-tuned MiniLM"),
    "early_fusion": ("early_fusion", [], True, "early fusion"),
    "late_fusion": ("late_fusion", [], True, "late fusion"),
    "tfn": ("tfn", [], True, "TFN"),
    "lmf": ("lmf", [], True, "LMF"),
    "mult": ("mult", [], True, "MulT"),
    "misa": ("misa", [], True, "MISA"),
    "self_mm": ("self_mm", [], True, "Self-MM"),
    "cacr": ("cacr", [], True, "CACR"),
    "cpsl": ("cpsl", MONITOR, True, "CP+SL"),
    "cpsl_no_cp": ("cpsl", ["model.params.ablation=no_cp", *MONITOR], True, "CP+SL without CP (SL only)"),
    "ebmc": ("ebmc", [], True, "EBMC"),
}
FEWER_SEEDS = {"cpsl": 2, "cpsl_no_cp": 2}
"""Variants trained on two seeds: CP+SL with and without CP (the r_m trace). CP's penalty differentiates the
feature-gradient norms (double backward), which made a CP+SL epoch about 3x a plain fusion epoch here, and five
seeds of both did not fit one session's CPU budget on this 2-core machine (both were started on more and cut)."""
REFERENCE = "text_ft"
for _m, _what in (("r_text", "text's imbalance ratio r_m, epoch mean of steps"),
                  ("r_audio", "audio's imbalance ratio r_m, epoch mean of steps"),
                  ("projected", "% of steps where CP projected the task gradient")):
    register_metric(_m, "max", description=_what)
HEADLINE = "Non0_acc_2"


def variant_config(name: str, seeds: list[int], epochs: int, out: Path) -> Config:
    """The validated config of one variant (method + dataset YAML + the variant's switches + forced settings)."""
    method, extra, finetune, _ = VARIANTS[name]
    seeds = seeds[: FEWER_SEEDS.get(name, len(seeds))]
    overrides = [*DATA, *extra, f"name={name}", f"output.dir={out}", f"train.seeds={json.dumps(seeds)}",
                 "train.num_threads=1"]
    if finetune:
        overrides += [*FINETUNE, f"train.epochs={epochs}"]
    return load_config(method=method, dataset="mosi-u", overrides=overrides)


def label(name: str, seeds: int) -> str:
    """A variant's row label, with its seed count where it has fewer than the table's."""
    fewer = FEWER_SEEDS.get(name)
    return VARIANTS[name][3] + (f" ({fewer} seeds)" if fewer and fewer < seeds else "")


def verdict(rows: dict[str, dict[str, Aggregate]]) -> list[str]:
    """Which rows beat fine-tuned text alone on the headline metric by more than one (the larger) seed std."""
    ref_mean, ref_std, ref_n = rows[REFERENCE][HEADLINE]
    sign = 1.0 if metric_mode(HEADLINE) == "max" else -1.0
    beat, tie, worse = [], [], []
    for name, agg in rows.items():
        if name == REFERENCE or HEADLINE not in agg or not VARIANTS.get(name, ("", [], False, ""))[2]:
            continue
        mean, std, _ = agg[HEADLINE]
        margin = max(std, ref_std)
        d = sign * (mean - ref_mean)
        (beat if d > margin else worse if d < -margin else tie).append(f"{label(name, ref_n)}: {mean:.1f} ± {std:.1f}")
    say = lambda xs: ", ".join(xs) if xs else "none"  # noqa: E731
    return [f"Against fine-tuned text alone ({ref_mean:.1f} ± {ref_std:.1f} {HEADLINE}), by more than one seed std "
            f"(the larger of the two):",
            "", f"- beat it: {say(beat)};", f"- within one std (no demonstrated difference): {say(tie)};",
            f"- worse: {say(worse)}.", ""]


def ratio_trace(run_dir: Path, seeds: list[int], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per training step (all epochs in order), the mean over seeds of the monitor's ``key`` and its std."""
    per_seed = []
    for s in seeds:
        recs = rundir.read_log(rundir.seed_dir(run_dir, s) / rundir.LOG, "grad")
        per_seed.append([float(r[key]) for r in recs if key in r])
    n = min(len(v) for v in per_seed)
    arr = np.array([v[:n] for v in per_seed])
    return arr.mean(0), arr.std(0)


def ratio_section(out_runs: Path, seeds: list[int], figure: Path) -> tuple[list[str], dict[str, Any]]:
    """The r_m table (per epoch, mean over steps and seeds) and the per-step figure, CP+SL with and without CP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    table: dict[str, dict[str, Aggregate]] = {}
    data: dict[str, Any] = {}
    for name in ("cpsl", "cpsl_no_cp"):
        run_dir = out_runs / name
        per_epoch: dict[str, list[dict[str, float]]] = {}
        own = seeds[: FEWER_SEEDS.get(name, len(seeds))]
        for s in own:
            recs = rundir.read_log(rundir.seed_dir(run_dir, s) / rundir.LOG, "grad")
            for e in sorted({int(r["epoch"]) for r in recs}):
                er = [r for r in recs if int(r["epoch"]) == e]
                row = {f"r_{m}": float(np.mean([r[f"r/{m}"] for r in er if f"r/{m}" in r])) for m in ("text", "audio")}
                row["projected"] = 100.0 * float(np.mean([bool(r.get("cp/projected", False)) for r in er]))
                per_epoch.setdefault(f"{VARIANTS[name][3]}, epoch {e}", []).append(row)
        for label, vals in per_epoch.items():
            table[label] = {k: (float(np.mean([v[k] for v in vals])), float(np.std([v[k] for v in vals])), len(vals))
                            for k in vals[0]}
        mean, std = ratio_trace(run_dir, own, "r/text")
        k = 5
        smooth = np.convolve(mean, np.ones(k) / k, mode="valid")
        x = np.arange(len(smooth)) + k // 2
        line = ax.plot(x, smooth, lw=1.6, label=f"{VARIANTS[name][3]} (mean of {len(own)} seeds, {k}-step avg)")[0]
        ax.fill_between(np.arange(len(mean)), mean - std, mean + std, color=line.get_color(), alpha=0.15)
        data[name] = {"r_text_mean": mean.tolist(), "r_text_std": std.tolist()}
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("r_text = g_text / mean(g_text, g_audio)")
    ax.set_title("MOSI standard folds, fine-tuned MiniLM: text's gradient share at the fusion input")
    ax.legend(fontsize=8)
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110, bbox_inches="tight")
    plt.close(fig)
    lines = ["## Text/audio gradient ratio over training (CP+SL with and without CP)", "",
             "r_m = ‖∂L_task/∂z_m‖ / mean_n ‖∂L_task/∂z_n‖ at the fusion input (gradient monitor, every step; two "
             "modalities, so r_text + r_audio = 2 and r_text > 1 means text receives the larger gradient). "
             "projected = % of steps where CP removed the dominant modality's component. Mean ± std over seeds of "
             "each epoch's mean over steps.", "",
             markdown_table(table, ["r_text", "r_audio", "projected"], first_col="run, epoch",
                            bold_best=False).rstrip("\n"), "",
             f"![r_text per step]({figure.name})", "",
             "What this shows, plainly: at the fusion input the fine-tuned text branch does NOT receive the larger "
             "gradient here; audio does (r_text < 1 in every epoch), and without CP text's share FALLS as training "
             "goes on, while with CP it stays near balance. CP's projection fires on few steps because the model's "
             "conflict test (max_m r_m > κ) rarely passes. The CP+SL premise (a dominant text modality starves "
             "the others of gradient) is not what this measure sees on MOSI with fine-tuned MiniLM; note that r_m "
             "compares gradient norms with respect to two different representations (their scales differ), so it "
             "is a statement about this model's fusion input, not about the encoders' parameters.", ""]
    return lines, data


def report(seeds: list[int], epochs: int, out_runs: Path, out: Path, command: str, wall: float | None) -> None:
    cfgs = {v: variant_config(v, seeds, epochs, out_runs) for v in VARIANTS}
    rows = finished_rows(cfgs)
    table = {label(r.name, len(seeds)): r.test for r in rows}
    ds = DatasetCache().get(cfgs["text_frozen"])
    const = constant_rows(ds, len(seeds), "regression")
    table = {"constant predictor (train mean)": const["test"], **table}
    metrics = table_metrics(rows)
    seconds = train_seconds(rows)
    by_name = rows_table(rows)
    lines = [
        "# MOSI standard folds, fine-tuned MiniLM text: every method, 5 seeds", "",
        f"CMU-MOSI on the CMU SDK standard folds (1,281 / 229 / 685 segments, all 2,195 of `label.csv`): "
        f"transcripts + bc-LSTM openSMILE audio, visual absent (leakage-free combination, `../shared/data/README.md`)."
        f" Test split, mean ± std over seeds {seeds}; each seed's checkpoint selected on VALIDATION MAE. Fine-tuned "
        f"rows: the packaged all-MiniLM-L6-v2 trained end to end (lr 5e-5, the rest lr 1e-3, batch 32, {epochs} "
        "epochs, length buckets + dynamic padding); frozen text and audio alone: the dataset's budget (up to 40 "
        "epochs, early stopping). Accuracies and F1 in %.", "",
        markdown_table(table, metrics, first_col="method").rstrip("\n"), "",
        *verdict(by_name),
    ]
    ratio_lines, ratio_data = ratio_section(out_runs, seeds, out.with_name(out.stem + "_r_text.png"))
    lines += ratio_lines
    lines += ["Mean training seconds per seed (one thread each; between 2 and 7 runs shared this 2-core machine at any "
              "time, so these are not comparable across rows): "
              + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ".", ""]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    lines += [f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), load average at report time {load:.1f}"
              + (f"; total {wall:.0f} s" if wall else "") + ".", "", "Command:", "", "```bash", command, "```", ""]
    atomic_write_text(out, "\n".join(lines))
    write_json(out.with_suffix(".json"), {
        "seeds": seeds, "epochs": epochs, "test": aggregate_table_json(table), "valid": aggregate_table_json(
            {label(r.name, len(seeds)): r.valid for r in rows}), "train_seconds": seconds, "r_text": ratio_data})
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--runs", type=Path, default=Path("runs/mosi_finetune"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/mosi_finetune.md"))
    ap.add_argument("--report", action="store_true", help="only write the report from finished runs")
    ap.add_argument("--no-report", action="store_true", help="only train")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    t0 = time.perf_counter()
    if not args.report:
        cfgs = {v: variant_config(v, seeds, args.epochs, args.runs) for v in args.variants.split(",")}
        run_configs(cfgs, resume=True, progress=False, log=lambda m: print(m, file=sys.stderr, flush=True))
    if not args.no_report:
        cmd = (f"python benchmarks/mosi_finetune.py --seeds {args.seeds} --epochs {args.epochs} --no-report "
               "--variants <some of them>   # one process per group, several at once\n"
               f"python benchmarks/mosi_finetune.py --seeds {args.seeds} --epochs {args.epochs} --report")
        report(seeds, args.epochs, args.runs, args.out, cmd, None if args.report else time.perf_counter() - t0)


if __name__ == "__main__":
    main()
