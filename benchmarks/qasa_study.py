"""QASA on MOSI-U: low-data study × ablations, scorer meaningfulness (Spearman), generator throughput.

Three parts (run all with no argument, or name them):

- ``study``: for 10 / 25 / 50 / 100 % of the training VIDEOS (``data.train_fraction``, a different seeded subset per
  seed) and seeds 0..4, fit the generator + quality scorer on that training subset only, draw K variants per real
  row, then train ONE fixed fusion model (early_fusion, its MOSI-U config) under each ablation: none, noise
  (Gaussian copies, same budget), uniform, fidelity, consistency, quality (QASA). Checkpoints are selected on the
  validation split (MAE); the table reports test mean ± std over the 5 seeds and paired differences to ``none``.
  Each share's table starts with the trivial-baseline row (``CONSTANT_ROW``): every test row gets the mean training
  label of the seed's kept videos; the row is the mean ± std over the seeds of those per-seed predictors (stored in
  the study JSON under ``constant_predictor``; ``report`` computes it from the data when an older JSON lacks it).
- ``scorer``: on generated rows of the full-data generator, add Gaussian noise of 0, 0.1, 0.25, 0.5, 1, 2 × the
  per-feature std of the real training features to both generated modalities and measure the Spearman correlation
  between the noise level and each score (q, q_fid, q_con), pooled over rows; plus the consistency score on the
  same rows with contradicted labels (y → −y).
- ``throughput``: wall-clock and CPU time to fit the generator (and scorer) on the full MOSI-U training split and to
  sample (and score) 10,000 rows (= 10,000 audio + 10,000 visual vectors), one intra-op thread.

Usage::

    python benchmarks/qasa_study.py                          # everything (about an hour on 2 busy cores)
    python benchmarks/qasa_study.py study --seeds 5 --per-sample 2
    python benchmarks/qasa_study.py scorer throughput

Intermediate results go to ``--work`` (default ``runs/qasa_study``; finished runs are reused, so an interrupted study
resumes). Results: ``benchmarks/results/qasa_mosi_u.md`` + ``qasa_mosi_u.png`` (+ ``qasa_mosi_u.json``) and
``benchmarks/results/qasa_throughput.json``. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.augment.augmented import build_sampled_dataset, fit_generator_dir
from accord.augment.augmented import feature_std as real_feature_std
from accord.augment.diffusion import load_generator
from accord.augment.params import AugmentConfig
from accord.augment.quality import load_scorer
from accord.config import load_config
from accord.core import rundir
from accord.core.io import atomic_write_bytes, atomic_write_text, write_json
from accord.data.dataset import MultimodalDataset, SplitData
from accord.data.safe import MANIFEST, save_dataset
from accord.data.subset import apply_train_fraction
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.metrics import metric_spec
from accord.evaluation.summary import aggregate, format_mean_std
from accord.studies.runner import DatasetCache, constant_rows, run_configs

RESULTS = Path(__file__).resolve().parent / "results"
FRACTIONS = [0.1, 0.25, 0.5, 1.0]
ABLATIONS = ["none", "noise", "uniform", "fidelity", "consistency", "quality"]
METRICS = [("Non0_acc_2", "Acc2"), ("Has0_acc_2", "Acc2 (has0)"), ("Mult_acc_5", "Acc5"), ("Mult_acc_7", "Acc7"),
           ("MAE", "MAE"), ("Corr", "Corr")]
NOISE_LEVELS = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def data_config(fraction: float, seed: int) -> dict[str, Any]:
    cfg = load_config(dataset="mosi-u", overrides=[f"data.train_fraction={fraction}",
                                                   f"data.train_fraction_seed={seed}"])
    return cfg.data.model_dump(mode="json")


DATASETS = DatasetCache()
"""MOSI-U, built once for every part (the cut training splits and the augmentations go on top of it)."""


def mosi_u() -> MultimodalDataset:
    """The MOSI-U dataset of the method configs (``configs/datasets/mosi-u.yaml``), built once."""
    return DATASETS.get(load_config(dataset="mosi-u").data)


def tag(fraction: float, seed: int) -> str:
    return f"f{int(round(fraction * 100)):03d}_s{seed}"


def constant_tests(fractions: list[float], seeds: int) -> dict[str, dict[str, float]]:
    """``{tag: test metrics}``: the trivial-baseline predictor (train-label mean of the kept videos: the training
    split the trainer cuts with ``data.train_fraction``, the one the generator is fitted on) of each share × seed,
    scored on the test split."""
    base = mosi_u()
    out: dict[str, dict[str, float]] = {}
    for fraction in fractions:
        for seed in range(seeds):
            cut = apply_train_fraction(base, fraction, seed)
            out[tag(fraction, seed)] = {m: v[0] for m, v in constant_rows(cut, 1, "regression")["test"].items()}
    return out


def ensure_samples(base: MultimodalDataset, fraction: float, seed: int, k: int, work: Path) -> Path:
    """Fit generator + scorer on the cut training split (once) and save K scored variants per real row."""
    gen_dir, sample_dir = work / "generators" / tag(fraction, seed), work / "samples" / f"{tag(fraction, seed)}_k{k}"
    cut = apply_train_fraction(base, fraction, seed)
    if not (gen_dir / "scorer.json").is_file():
        log(f"fit generator {tag(fraction, seed)} on {len(cut['train'])} training rows")
        fit_generator_dir(cut, AugmentConfig(seed=seed), gen_dir, data_config(fraction, seed))
    if not (sample_dir / MANIFEST).is_file():
        generator, scorer = load_generator(gen_dir), load_scorer(gen_dir)
        save_dataset(build_sampled_dataset(cut, generator, scorer, k, seed, {"generator": str(gen_dir)}), sample_dir)
    return sample_dir


def run_one(method: str, fraction: float, seed: int, ablation: str, k: int, sample_dir: Path, work: Path,
            threads: int) -> dict[str, Any]:
    aug = ["augment.source=none"]
    if ablation == "noise":
        aug = ["augment.source=noise", f"augment.per_sample={k}", f"augment.seed={seed}"]
    elif ablation != "none":
        aug = [f"augment.source={sample_dir}", f"augment.per_sample={k}", f"augment.weighting={ablation}"]
    name = f"{tag(fraction, seed)}_{ablation}"
    cfg = load_config(method=method, dataset="mosi-u", overrides=[
        f"name={name}", f"output.dir={work / 'runs'}", f"train.seeds=[{seed}]", f"train.num_threads={threads}",
        f"data.train_fraction={fraction}", f"data.train_fraction_seed={seed}", *aug])
    sd = rundir.seed_dir(cfg.run_dir, seed)
    if not (sd / rundir.RESULTS).is_file():
        run_configs([(name, cfg)], overwrite=True, progress=False, datasets=DATASETS)
    res = rundir.read_results(sd)
    return {"fraction": fraction, "seed": seed, "ablation": ablation, "test": res["test"], "valid": res["valid"],
            "train_seconds": res["train_seconds"]}


def study(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    base = mosi_u()
    work = Path(args.work)
    rows: list[dict[str, Any]] = []
    gen_info: dict[str, Any] = {}
    for fraction in args.fractions:
        for seed in range(args.seeds):
            sample_dir = ensure_samples(base, fraction, seed, args.per_sample, work)
            info = json.loads((work / "generators" / tag(fraction, seed) / "generator.json").read_text())
            meta = json.loads((sample_dir / MANIFEST).read_text())["meta"]
            gen_info[tag(fraction, seed)] = {"fit_seconds": info["fit_seconds"], "n_train": info["n_train"],
                                             "scores": meta["qasa"]["generated_scores"],
                                             "videos": meta.get("train_fraction_kept", {}).get("groups", 52)}
            for ablation in args.ablations:
                r = run_one(args.method, fraction, seed, ablation, args.per_sample, sample_dir, work, args.threads)
                rows.append(r)
                log(f"{tag(fraction, seed)} {ablation:12s} test Acc2 {r['test']['Non0_acc_2']:.1f} "
                    f"MAE {r['test']['MAE']:.3f}")
    out = {"method": args.method, "per_sample": args.per_sample, "seeds": args.seeds, "fractions": args.fractions,
           "ablations": args.ablations, "runs": rows, "generators": gen_info,
           "constant_predictor": constant_tests(args.fractions, args.seeds),
           "command": "python benchmarks/qasa_study.py " + " ".join(sys.argv[1:])}
    write_json(RESULTS / "qasa_mosi_u_study.json", out)
    return out


def scorer_check(args: argparse.Namespace) -> dict[str, Any]:
    """Spearman(noise level, score) on corrupted generated rows; consistency under contradicted labels."""
    from scipy.stats import spearmanr

    torch.set_num_threads(args.threads)
    base = mosi_u()
    work = Path(args.work)
    sample_dir = ensure_samples(base, 1.0, 0, args.per_sample, work)
    from accord.data.safe import load_dataset_dir

    saved = load_dataset_dir(sample_dir)["train"]
    gen_rows = saved.subset((saved.extras["generated"] == 1).nonzero().flatten())
    scorer = load_scorer(work / "generators" / tag(1.0, 0))
    real = base["train"]
    src = gen_rows.extras["source_index"]
    levels, scores = [], {k: [] for k in ("quality", "q_fid", "q_con", "q_fid_audio", "q_fid_visual",
                                          "q_con_audio", "q_con_visual")}
    per_level: dict[str, dict[str, float]] = {}
    for lv in NOISE_LEVELS:
        rows = gen_rows
        if lv > 0:
            rows = gen_rows.subset(torch.arange(len(gen_rows)))  # a copy
            g = torch.Generator().manual_seed(int(lv * 1000))
            for m in ("audio", "visual"):
                x = rows.features[m]
                rows.features[m] = x + lv * real_feature_std(real, m) * torch.randn(x.shape, generator=g)
        s = scorer.score_split(rows, source=src)
        per_level[str(lv)] = {k: round(float(s[k].mean()), 4) for k in scores}
        for k in scores:
            scores[k].append(s[k])
        levels.append(torch.full((len(rows),), lv))
    lv_all = torch.cat(levels).numpy()
    rho = {k: float(spearmanr(lv_all, torch.cat(v).numpy()).statistic) for k, v in scores.items()}
    flipped = SplitData(**{**gen_rows.__dict__, "labels": -gen_rows.labels})
    keep = gen_rows.labels.abs() >= 1.0
    true_s, flip_s = scorer.score_split(gen_rows, source=src), scorer.score_split(flipped, source=src)
    contra = {k: {"true_label": round(float(true_s[k][keep].mean()), 4),
                  "contradicted_label": round(float(flip_s[k][keep].mean()), 4)}
              for k in ("q_con", "q_con_audio", "q_con_visual", "quality")}
    out = {"rows": len(gen_rows), "levels": NOISE_LEVELS, "spearman": rho, "mean_per_level": per_level,
           "contradicted_labels_|y|>=1": contra, "rows_|y|>=1": int(keep.sum()), "scorer": scorer.info,
           "command": "python benchmarks/qasa_study.py scorer"}
    write_json(RESULTS / "qasa_mosi_u_scorer.json", out)
    log(f"Spearman(noise, score): {rho}")
    return out


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    base = mosi_u()
    train = base["train"]
    load_before = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    from accord.augment.diffusion import fit_generator
    from accord.augment.quality import fit_scorer

    aug = AugmentConfig()
    generator = fit_generator(train, aug.generator, base.label_range, seed=0)
    fit_wall, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    scorer = fit_scorer(train, aug.scorer, aug.generator.modalities)
    sc_wall, sc_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = 10_000
    index = torch.arange(n) % len(train)
    t0, c0 = time.perf_counter(), time.process_time()
    feats = generator.generate(train, index, seed=1)
    samp_wall, samp_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = train.subset(index)
    for m, x in feats.items():
        rows.features[m] = x
    t0, c0 = time.perf_counter(), time.process_time()
    scorer.score_split(rows, source=index)
    score_wall, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = os.getloadavg()
    out = {
        "what": "QASA generator on MOSI-U (1204 training rows; audio 73-d and visual 100-d utterance vectors, one "
                "conditional DDPM each, default GeneratorParams); sampling = DDIM with the default steps",
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "params": aug.generator.model_dump(mode="json"),
        "fit_generator": {"wall_seconds": round(fit_wall, 2), "cpu_seconds": round(fit_cpu, 2),
                          "budget_seconds": 180, "within_budget": fit_wall < 180},
        "fit_scorer": {"wall_seconds": round(sc_wall, 2), "cpu_seconds": round(sc_cpu, 2)},
        "sample_10000": {"rows": n, "vectors": n * len(feats), "wall_seconds": round(samp_wall, 2),
                         "cpu_seconds": round(samp_cpu, 2), "budget_seconds": 30, "within_budget": samp_wall < 30},
        "score_10000": {"wall_seconds": round(score_wall, 2), "cpu_seconds": round(score_cpu, 2)},
        "command": "python benchmarks/qasa_study.py throughput",
        "note": "cpu_seconds is the process CPU time: the wall time on an otherwise idle core. The machine is shared "
                "with other benchmark runs (see the load averages), which stretches wall time.",
    }
    write_json(RESULTS / "qasa_throughput.json", out)
    log(f"throughput: fit {fit_wall:.1f}s wall / {fit_cpu:.1f}s cpu; sample 10k {samp_wall:.1f}s")
    return out


# ---------------------------------------------------------------------------------------------------- report
def _fmt(agg: tuple[float, float, int], metric: str) -> str:
    """``mean ± std`` with the metric's registered decimals (NaN mean and std shown as ``nan``, as numbers)."""
    mean, std, _ = agg
    if math.isfinite(mean) and math.isfinite(std):
        return format_mean_std(mean, std, metric)
    digits = metric_spec(metric).digits
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def report(study_res: dict[str, Any] | None, scorer_res: dict[str, Any] | None,
           thr: dict[str, Any] | None) -> None:
    lines = ["# QASA on MOSI-U: low-data study, ablations, scorer check, throughput", ""]
    if study_res:
        runs = study_res["runs"]
        fracs, abls = study_res["fractions"], study_res["ablations"]
        k = study_res["per_sample"]
        lines += [
            f"Fixed fusion model `{study_res['method']}` (configs/early_fusion.yaml + configs/datasets/mosi-u.yaml: "
            "up to 40 epochs, early stopping on validation MAE, patience 8). For each share of the 52 training "
            f"videos and each seed s = 0..{study_res['seeds'] - 1}, the kept videos are drawn with seed s "
            "(`data.train_fraction_seed=s`), the generator and the quality scorer are fitted on those videos only, "
            f"and K = {k} generated rows per real row are added (text and label kept). Each table's first row, "
            f"*{CONSTANT_ROW}*, is the trivial baseline: every test row gets the mean training label of the seed's "
            "kept videos, mean ± std over the seeds of those per-seed constants. Ablations: **none** (real rows "
            f"only), **noise** (K Gaussian copies, audio/visual + N(0, (0.5·σ)²), weight 1), **uniform** (generated "
            "rows, weight 1), **fidelity** (weight q_fid), **consistency** (weight q_con), **quality** (QASA, weight "
            "q = q_fid·q_con). Test split (751 rows, 31 videos), mean ± std over the seeds; Acc2 = Non0_acc_2.",
            ""]
        for f in fracs:
            sub = [r for r in runs if r["fraction"] == f]
            if not sub:
                continue
            videos = {v["videos"] for t, v in study_res["generators"].items() if t.startswith(f"f{round(f * 100):03d}")}
            lines += [f"### {round(f * 100)}% of the training videos ({', '.join(map(str, sorted(videos)))} videos)",
                      "", "| ablation | " + " | ".join(lbl for _, lbl in METRICS) + " | Δ Acc2 vs none (paired) | "
                      "Δ MAE vs none (paired) |", "|:---|" + "---:|" * (len(METRICS) + 2)]
            none = {r["seed"]: r["test"] for r in sub if r["ablation"] == "none"}
            const = [v for t, v in study_res.get("constant_predictor", {}).items()
                     if t.startswith(f"f{round(f * 100):03d}_")]
            if const:
                agg = aggregate(const)
                lines.append(f"| {CONSTANT_ROW} | " + " | ".join(_fmt(agg[m], m) for m, _ in METRICS) + " |  |  |")
            for a in abls:
                ra = [r for r in sub if r["ablation"] == a]
                if not ra:
                    continue
                agg = aggregate([r["test"] for r in ra])
                cells = [_fmt(agg[m], m) for m, _ in METRICS]
                if a == "none" or not none:
                    cells += ["", ""]
                else:
                    d_acc = [r["test"]["Non0_acc_2"] - none[r["seed"]]["Non0_acc_2"] for r in ra if r["seed"] in none]
                    d_mae = [r["test"]["MAE"] - none[r["seed"]]["MAE"] for r in ra if r["seed"] in none]
                    cells += [f"{np.mean(d_acc):+.1f} ± {np.std(d_acc, ddof=1) if len(d_acc) > 1 else 0:.1f}",
                              f"{np.mean(d_mae):+.3f} ± {np.std(d_mae, ddof=1) if len(d_mae) > 1 else 0:.3f}"]
                lines.append(f"| {a} | " + " | ".join(cells) + " |")
            lines.append("")
        gens = study_res["generators"]
        fits = [g["fit_seconds"] for g in gens.values()]
        lines += [f"Generator fits: {len(fits)} (one per share × seed), {np.mean(fits):.0f} ± {np.std(fits):.0f} s "
                  "each on this shared machine (one thread). Mean scores of the generated rows per share "
                  "(real rows score q_fid ≈ 0.75 by construction):", "",
                  "| share | q_fid | q_con | q |", "|:---|---:|---:|---:|"]
        for f in fracs:
            gs = [g["scores"] for t, g in gens.items() if t.startswith(f"f{round(f * 100):03d}")]
            if gs:
                lines.append(f"| {round(f * 100)}% | " + " | ".join(
                    f"{np.mean([g[k]['mean'] for g in gs]):.3f}" for k in ("q_fid", "q_con", "quality")) + " |")
        lines += ["", "![QASA low-data study](qasa_mosi_u.png)", "",
                  f"Produced by `{study_res['command']}` (study part; JSON: qasa_mosi_u_study.json).", ""]
        plot(study_res)
    if scorer_res:
        rho = scorer_res["spearman"]
        lines += ["## Is the quality score meaningful? Noise corruption of generated rows", "",
                  f"{scorer_res['rows']} generated rows of the full-data generator (seed 0), both generated modalities "
                  "corrupted with Gaussian noise of λ × the per-feature std of the real training features, scored "
                  "with their source row left out. Spearman correlation between λ and the score, pooled over rows "
                  f"and the {len(scorer_res['levels'])} levels:", "",
                  "| score | Spearman ρ(λ, score) |", "|:---|---:|"]
        lines += [f"| {k} | {v:+.3f} |" for k, v in rho.items()]
        lines += ["", "Mean score per noise level:", "",
                  "| λ | " + " | ".join(scorer_res["mean_per_level"]["0.0"]) + " |",
                  "|---:|" + "---:|" * len(scorer_res["mean_per_level"]["0.0"])]
        for lv, vals in scorer_res["mean_per_level"].items():
            lines.append(f"| {lv} | " + " | ".join(f"{v:.3f}" for v in vals.values()) + " |")
        c = scorer_res["contradicted_labels_|y|>=1"]
        lines += ["", f"Consistency with a contradicted label (same generated rows, y → −y, on the "
                      f"{scorer_res['rows_|y|>=1']} rows with |y| ≥ 1):", "",
                  "| score | true label | contradicted label |", "|:---|---:|---:|"]
        lines += [f"| {k} | {v['true_label']:.3f} | {v['contradicted_label']:.3f} |" for k, v in c.items()]
        lines += ["", "Ridge penalties / out-of-fold MAE of the consistency regressors: "
                  f"{scorer_res['scorer']['alpha']}.",
                  "", f"Produced by `{scorer_res['command']}` (JSON: qasa_mosi_u_scorer.json).", ""]
    if thr:
        lines += ["## Throughput (one thread; the machine is shared)", "",
                  "Fit the generator on MOSI-U (1204 rows, audio + visual): "
                  f"**{thr['fit_generator']['wall_seconds']} s wall**, {thr['fit_generator']['cpu_seconds']} s CPU "
                  "(budget 180 s); fit the scorer "
                  f"{thr['fit_scorer']['wall_seconds']} s. Sample 10,000 rows (10,000 audio + 10,000 visual vectors): "
                  f"**{thr['sample_10000']['wall_seconds']} s wall**, {thr['sample_10000']['cpu_seconds']} s CPU "
                  f"(budget 30 s); score them {thr['score_10000']['wall_seconds']} s. Load average before/after "
                  f"{thr['load_average_before'][0]} / {thr['load_average_after'][0]}. "
                  f"Produced by `{thr['command']}` (qasa_throughput.json).", ""]
    old = RESULTS / "qasa_mosi_u.md"
    notes = ""
    if old.is_file() and "<!-- notes -->" in old.read_text():
        notes = old.read_text().split("<!-- notes -->", 1)[1]
    atomic_write_text(old, "\n".join(lines) + "\n<!-- notes -->" + notes if notes else "\n".join(lines) + "\n")


def plot(study_res: dict[str, Any]) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, fracs, abls = study_res["runs"], study_res["fractions"], study_res["ablations"]
    panels = [("Non0_acc_2", "Acc2 (%)"), ("Mult_acc_5", "Acc5 (%)"), ("Mult_acc_7", "Acc7 (%)"), ("MAE", "MAE")]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for j, a in enumerate(abls):
            xs, ms, ss = [], [], []
            for f in fracs:
                vals = [r["test"][metric] for r in runs if r["fraction"] == f and r["ablation"] == a]
                if vals:
                    xs.append(100 * f * (1 + 0.025 * (j - len(abls) / 2)))
                    ms.append(np.mean(vals))
                    ss.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            ax.errorbar(xs, ms, yerr=ss, marker="o", ms=4, capsize=3, label=a, lw=2.2 if a == "quality" else 1.2)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fracs], [f"{round(100 * f)}%" for f in fracs])
        ax.set_xlabel("share of training videos")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"QASA ablations on MOSI-U, {study_res['method']}, test mean ± std over {study_res['seeds']} seeds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(RESULTS / "qasa_mosi_u.png", buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="*", default=["study", "scorer", "throughput"],
                   choices=["study", "scorer", "throughput", "report"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")], default=FRACTIONS)
    p.add_argument("--ablations", type=lambda s: s.split(","), default=ABLATIONS)
    p.add_argument("--per-sample", type=int, default=2)
    p.add_argument("--method", default="early_fusion")
    p.add_argument("--work", default="runs/qasa_study")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    done: dict[str, Any] = {}
    for part, fn in (("throughput", throughput), ("scorer", scorer_check), ("study", study)):
        if part in args.parts:
            done[part] = fn(args)
    load = {name: json.loads(f.read_text()) for name, f in (("study", RESULTS / "qasa_mosi_u_study.json"),
                                                            ("scorer", RESULTS / "qasa_mosi_u_scorer.json"),
                                                            ("throughput", RESULTS / "qasa_throughput.json"))
            if f.is_file()}
    study_res = load.get("study")
    if study_res and "constant_predictor" not in study_res:  # a study JSON from before the trivial-baseline row
        study_res["constant_predictor"] = constant_tests(study_res["fractions"], study_res["seeds"])
        write_json(RESULTS / "qasa_mosi_u_study.json", study_res)
    report(study_res, load.get("scorer"), load.get("throughput"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
