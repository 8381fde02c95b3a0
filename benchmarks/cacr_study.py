"""CACR study (issue #3): the ablation table on MOSI-U, and conflict detection on ConflictBench.

Two parts, each trains with the one trainer (checkpoint selected on VALIDATION MAE, one thread per run) and writes
one results file (the command that produced it is recorded inside):

``mosi-u``
    ``accord ablate --method cacr`` on MOSI-U (the 7 configurations of seed 003's table), beside the paper's MOSI
    numbers, plus MISA and the foundation baselines (text, early fusion, TFN, MulT) trained on the same seeds and
    budget -> ``benchmarks/results/cacr_ablation_mosi_u.md``.

``conflictbench``
    On ConflictBench with planted conflicts (one of audio/visual carries the opposite polarity in
    ``conflict_rate`` of the samples; ``n_test`` raised to 1000 so an AUROC rests on ~100 conflicting samples per
    seed): CACR, CACR ``no_caw``, MISA, the ``shared_anchor`` experiment (not in the paper) and the unimodal models;
    the AUROC of the conflict score ``C_m`` of the planted modality against the ground truth, the same for a
    reference detector built from separately trained unimodal models, accuracy on conflicting vs consistent samples,
    at the default modality strengths and at stronger audio/visual -> ``benchmarks/results/cacr_conflictbench.md``
    and ``cacr_conflictbench_*.png``.

Usage::

    python benchmarks/cacr_study.py mosi-u --seeds 5
    python benchmarks/cacr_study.py conflictbench --seeds 5 --sweep-seeds 3
    python benchmarks/cacr_study.py mosi-u --seeds 1 --out runs/try --results /tmp/r   # a quick try

``--resume`` keeps finished seeds (runs go to ``--out``, default ``runs/cacr_study``); ``--report-only`` rewrites
the results files from finished runs without training.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from accord.config import compose, validate
from accord.core import rundir
from accord.core.io import atomic_write_text
from accord.core.types import MODALITIES
from accord.evaluation.metrics import register_metric
from accord.evaluation.plots import plot_conflict
from accord.evaluation.summary import Aggregate, aggregate, aggregate_table_from_json, format_mean_std, markdown_table
from accord.models.cacr import CACR
from accord.studies.ablate import run_ablation
from accord.studies.benchmark import conflict_split_rows
from accord.studies.runner import Row, finished_rows, rows_table, run_configs

THREAD = ["train.num_threads=1"]
REPORT_ONLY = False
"""Set by ``--report-only``: rebuild the results files from finished runs without training anything."""
TUNING_NOTE = (
    "we tried, on MOSI-U with seeds 0-2, the defaults of configs/cacr.yaml (d 32, lr 1e-3, dropout 0.1, "
    "alpha = beta = 0.5, lambda_rec = lambda_o = lambda_p = 0.1; validation MAE 0.646 ± 0.014), lr 5e-4 (0.672), "
    "dropout 0.3 (0.699), lambda_rec 1 / lambda_o 0.5 / lambda_p 0.5 (0.656), alpha = beta = 1 (0.651), d 64 "
    "(0.672) and weight decay 0.01 (0.654); the defaults had the lowest validation MAE and are used everywhere. "
    "Given the leaky validation split these differences are within noise; we did not search further."
)
RESULTS = Path("benchmarks/results")


def train_runs(specs: dict[str, tuple[str, list[str]]], dataset: str, seeds: list[int], out: Path,
               common: list[str], resume: bool) -> dict[str, Row]:
    """Train ``{name: (method, overrides)}`` on ``dataset`` over ``seeds`` (``--report-only``: read the finished
    runs instead); returns the rows by name."""
    cfgs = {name: validate(compose(method, dataset, [], [*THREAD, *common, *overrides, f"name={name}",
                                                         f"output.dir={out}", f"train.seeds={json.dumps(seeds)}"]),
                           f"{name}/{dataset}")
            for name, (method, overrides) in specs.items()}
    if REPORT_ONLY:
        rows = finished_rows(cfgs)
    else:
        rows = run_configs(cfgs, resume=resume, overwrite=not resume, progress=False,
                           log=lambda m: print(f"[cacr_study] {m}", file=sys.stderr, flush=True))
    return {r.name: r for r in rows}


def ablation_report(folder: Path, command: str) -> dict[str, Any]:
    """What :func:`run_ablation` returns, rebuilt from its ``ablation.{json,md}`` (``--report-only``)."""
    data = json.loads((folder / "ablation.json").read_text())
    md = (folder / "ablation.md").read_text()
    md = md.rsplit("Produced by", 1)[0] + f"Produced by `{command}`.\n"
    return {"markdown": md, "rows": aggregate_table_from_json(data["test"]),
            "valid": aggregate_table_from_json(data["valid"])}


# ---------------------------------------------------------------------------------------------------- MOSI-U


def mosi_u(args: argparse.Namespace, command: str) -> None:
    seeds = list(range(args.seeds))
    out = Path(args.out) / "mosi_u"
    if REPORT_ONLY:
        res = ablation_report(out / "ablation", command)
    else:
        res = run_ablation("cacr", "mosi-u", seeds, out / "ablation", overrides=[*THREAD, *args.set],
                           resume=args.resume, overwrite=not args.resume, command=command)
    baselines = train_runs({m: (m, []) for m in ("text", "early_fusion", "tfn", "mult", "misa")}, "mosi-u", seeds,
                           out / "baselines", list(args.set_baselines), args.resume)
    base = rows_table(list(baselines.values()))
    rows = res["rows"]
    metric = "Non0_acc_2"
    full_mean, full_std, _ = rows["full"][metric]
    best_name = max((k for k in base if k != "misa"), key=lambda k: base[k][metric][0])
    b_mean, b_std, _ = base[best_name][metric]
    beats = full_mean > b_mean
    best_ablation = max(rows, key=lambda k: rows[k][metric][0])
    verdict = (
        f"**Verdict.** CACR (full) reaches Non0_acc_2 {format_mean_std(full_mean, full_std, metric)} on MOSI-U; the "
        f"best foundation baseline is `{best_name}` with {format_mean_std(b_mean, b_std, metric)}. CACR "
        + ("beats it on the mean" + (" but by less than the stds, so not clearly" if full_mean - b_mean <
                                     max(full_std, b_std) else "") if beats else "does NOT beat it")
        + f" (difference {full_mean - b_mean:+.1f} points). The best ablation row is `{best_ablation}` "
        f"({format_mean_std(*rows[best_ablation][metric][:2], metric)}). MISA: "
        f"{format_mean_std(*base['misa'][metric][:2], metric)}."
    )
    order = ["full", "no_crm", "no_caw", "gating", "no_fsr", "no_orth", "no_private"]
    spread = max(rows[k][metric][0] for k in order) - min(rows[k][metric][0] for k in order)
    max_std = max(rows[k][metric][1] for k in order)
    md = [
        "# CACR ablation on MOSI-U (seed 003's table re-run by configuration)",
        "",
        res["markdown"].split("\n", 2)[2].rstrip("\n").rsplit("\n", 1)[0].rstrip("\n"),
        "",
        "(Training seconds were measured on a shared 2-core machine with other jobs running: not a speed "
        "comparison; see benchmarks/results/throughput.json for that.)",
        "",
        "## Beside the foundation baselines and MISA (same seeds, data and budget)",
        "",
        markdown_table({**{f"cacr ({k})": rows[k] for k in ("full",)}, **base},
                       ["Has0_acc_2", "Non0_acc_2", "Non0_F1", "Mult_acc_7", "MAE", "Corr"]).rstrip("\n"),
        "",
        verdict,
        "",
        "## Why our numbers differ from the paper's",
        "",
        f"The ablation rows span {spread:.1f} points of Non0_acc_2 while the largest seed std is {max_std:.1f}: on "
        "MOSI-U the components of CACR do not separate from seed noise, whereas the paper reports drops of up to "
        "8.5 ACC7 points. Our numbers differ from the paper's MOSI numbers (87.04 ACC2 / 48.69 ACC7 / 0.710 MAE) "
        "for three reasons, none of which is a claim that the paper is wrong: (1) **features**: MOSI-U holds one "
        "bc-LSTM utterance vector per modality (text 100-d, audio 73-d, visual 100-d), not BERT token sequences "
        "with COVAREP/Facet frames, and on its speaker-independent split no model gets near 87% (text alone "
        "77%, see docs/data.md); (2) **T = 1**: with one vector per modality the cross-reconstruction, the temporal "
        "convolutions, the resampling and FSR's attention degenerate to per-vector maps (one key per modality), so "
        "the components the ablation removes have little left to do; (3) **CPU budget**: d = 32, 2 transformer "
        "layers, up to 40 epochs with patience 8 on validation MAE, as the baselines. Also, the validation split "
        "(10 of the feature extractor's 62 TRAINING videos) is nearly solved by every model (validation Non0_acc_2 "
        f"of CACR full {format_mean_std(*res['valid']['full']['Non0_acc_2'][:2], metric)}, validation MAE "
        f"{res['valid']['full']['MAE'][0]:.3f} vs test {rows['full']['MAE'][0]:.3f}): the bc-LSTM features were "
        "fitted on those videos, so selection on validation "
        "MAE is a weak signal for test and tends to stop early. The paper's ACC2 is compared with our Non0_acc_2 "
        "(an assumption: the paper gives one ACC2 column).",
        "",
        "Hyper-parameters: tuned on VALIDATION only (3 seeds, validation MAE), never on test: " + TUNING_NOTE,
        "",
        f"Produced by `{command}`.",
    ]
    target = Path(args.results) / "cacr_ablation_mosi_u.md"
    atomic_write_text(target, "\n".join(md) + "\n")
    print(f"[cacr_study] wrote {target}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ ConflictBench


def auroc(score: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    sel = positive | negative
    if not positive.any() or not negative.any():
        return float("nan")
    return float(roc_auc_score(positive[sel], score[sel]))


def conflict_aurocs(run_dir: Path, seeds: list[int]) -> dict[str, Aggregate]:
    """Per seed, AUROC of C_audio (audio flipped vs consistent), C_visual (visual flipped vs consistent), their mean,
    and of max(C_audio, C_visual) for any conflict vs none; aggregated over seeds."""
    per_seed = []
    for s in seeds:
        z = rundir.read_diagnostics(rundir.seed_dir(run_dir, s), "test")
        which = z["extra_conflict_modality"]
        c = {m: z[f"conflict_{m}"] for m in MODALITIES}
        none = which == -1
        a = auroc(c["audio"], which == 1, none)
        v = auroc(c["visual"], which == 2, none)
        per_seed.append({"AUROC_audio": a, "AUROC_visual": v, "AUROC_planted": (a + v) / 2,
                         "AUROC_any": auroc(np.maximum(c["audio"], c["visual"]), ~none, none)})
    return aggregate(per_seed)


def reference_aurocs(uni: dict[str, Path], seeds: list[int]) -> dict[str, Aggregate]:
    """A detector outside CACR: separately trained unimodal models; score_m = -sign(y_text) * y_m (how strongly
    modality m's own prediction contradicts the text polarity). An estimate of how detectable the flips are."""
    per_seed = []
    for s in seeds:
        preds = {}
        for m in MODALITIES:
            z = rundir.read_diagnostics(rundir.seed_dir(uni[m], s), "test")
            preds[m] = z["prediction"]
            which = z["extra_conflict_modality"]
        none = which == -1
        score = {m: -np.sign(preds["text"]) * preds[m] for m in ("audio", "visual")}
        a = auroc(score["audio"], which == 1, none)
        v = auroc(score["visual"], which == 2, none)
        per_seed.append({"AUROC_audio": a, "AUROC_visual": v, "AUROC_planted": (a + v) / 2,
                         "AUROC_any": auroc(np.maximum(score["audio"], score["visual"]), ~none, none)})
    return aggregate(per_seed)


def mean_conflict(run_dir: Path, seeds: list[int]) -> float:
    """Mean of C_m over modalities, test samples and seeds (how far apart a model's shared vectors are)."""
    vals = []
    for s in seeds:
        z = rundir.read_diagnostics(rundir.seed_dir(run_dir, s), "test")
        vals += [float(z[f"conflict_{m}"].mean()) for m in MODALITIES]
    return float(np.mean(vals))


def reading(headline: dict[str, dict[str, dict[str, Aggregate]]], accs: dict[str, dict[str, dict[str, Aggregate]]],
            misa_c: float, cacr_c: float) -> str:
    """The paragraph under the headline, from the numbers (so a re-run cannot leave a stale sentence)."""
    def f(agg: Aggregate) -> str:
        return format_mean_std(agg[0], agg[1], "AUROC_planted")

    def acc(agg: Aggregate) -> str:
        return format_mean_std(agg[0], agg[1], "acc_conflicting")

    per = "; ".join(
        f"`{s}` {f(h['cacr']['AUROC_planted'])} / {f(h['cacr_anchor']['AUROC_planted'])} / "
        f"{f(h['reference (unimodal models)']['AUROC_planted'])}" for s, h in headline.items())
    faithful_max = max(h["cacr"]["AUROC_planted"][0] for h in headline.values())
    below = min(h["reference (unimodal models)"]["AUROC_planted"][0] - h["cacr"]["AUROC_planted"][0]
                for h in headline.values())
    gap = max(abs(h["cacr_anchor"]["AUROC_planted"][0] - h["reference (unimodal models)"]["AUROC_planted"][0])
              for h in headline.values())
    reached = [s for s, h in headline.items() if h["cacr_anchor"]["AUROC_planted"][0] >= 0.85]
    a = accs["default"]
    caw = a["cacr"]["acc_conflicting"]
    nocaw = a["cacr_no_caw"]["acc_conflicting"]
    return (
        f"**Reading.** Planted-modality AUROC per setting (faithful CACR / CACR + shared anchor / unimodal reference): "
        f"{per}. The faithful conflict score is at most {faithful_max:.3f} in any setting and at least {below:.3f} "
        "below the reference detector, which shows what is detectable from the same features. Our "
        "explanation (tested by the anchor): "
        "nothing in CACR's objective ties the GEOMETRY of different modalities' shared features together. The "
        "cross-reconstruction only requires H_n to carry what D_nm needs to rebuild modality m, and a decoder per "
        "pair absorbs any modality-specific rotation of H_n, so cos(h_m, h_n) mostly measures how the shared "
        f"encoder happens to place each modality (mean C_m = {cacr_c:.2f} in the default setting, on consistent and "
        "conflicting samples alike) rather than sentiment agreement. When one regressor shared by all modalities "
        "must read sentiment from each h_m (the anchor, not in the paper),"
        f" the same cosine score tracks the reference detector within {gap:.3f} AUROC in every "
        "setting, so the score's definition is sound once the shared space is aligned; the goal of 0.85 is then "
        + (f"reached in {', '.join(f'`{r}`' for r in reached)}" if reached else "not reached in any setting")
        + ", i.e. it is bounded by how detectable a flip is, and at the default strengths (audio 0.5, visual 0.4) "
        "it is not. MISA's CMD similarity loss does the opposite of CACR's: its shared vectors are nearly "
        f"identical across modalities (mean C_m = {misa_c:.3f}), so a conflict is erased from its shared space "
        "(AUROC at chance), which is the failure seed 003 attributes to similarity alignment. With an "
        f"uninformative score CAW cannot matter: accuracy on conflicting samples is {acc(caw)} with CAW and "
        f"{acc(nocaw)} without (default setting)."
    )


SETTINGS: dict[str, tuple[str, list[str]]] = {
    "default": ("default ConflictBench strengths (text 1.5, audio 0.5, visual 0.4: text dominates)", []),
    "av1.0": ("audio and visual strength 1.0 (text 1.5 still dominates)",
              ["data.params.strength={text: 1.5, audio: 1.0, visual: 1.0}"]),
    "equal": ("all modalities strength 1.5 (no dominance; flips most detectable)",
              ["data.params.strength={text: 1.5, audio: 1.5, visual: 1.5}"]),
}
AUROC_COLS = ["AUROC_audio", "AUROC_visual", "AUROC_planted", "AUROC_any"]
for _col, _what in zip(AUROC_COLS, ("C_audio, audio flipped vs consistent", "C_visual, visual flipped vs consistent",
                                    "mean of the audio and visual AUROCs", "max(C_audio, C_visual), any vs none"),
                       strict=True):
    register_metric(_col, "max", description=f"AUROC of the conflict score: {_what}")


def conflictbench(args: argparse.Namespace, command: str) -> None:
    out = Path(args.out) / "conflictbench"
    common = ["data.params.n_test=1000", *args.set]
    main_specs = {
        "cacr": ("cacr", []),
        "cacr_no_caw": ("cacr", ["model.params.ablation=no_caw"]),
        "misa": ("misa", []),
        "cacr_anchor": ("cacr", ["model.params.shared_anchor=true"]),
        "text": ("text", []), "audio": ("audio", []), "visual": ("visual", []),
    }
    sections: list[str] = []
    headline: dict[str, Any] = {}
    accs: dict[str, dict[str, dict[str, Aggregate]]] = {}
    misa_c = cacr_c = float("nan")
    for setting, seeds in (("default", list(range(args.seeds))), ("av1.0", list(range(args.sweep_seeds))),
                           ("equal", list(range(args.sweep_seeds)))):
        desc, extra = SETTINGS[setting]
        specs = main_specs if setting == "default" else {k: main_specs[k] for k in
                                                          ("cacr", "cacr_anchor", "text", "audio", "visual")}
        trained = train_runs(specs, "conflictbench", seeds, out / setting, [*common, *extra], args.resume)
        au = {k: conflict_aurocs(trained[k].run_dir, seeds) for k in specs if k.startswith(("cacr", "misa"))}
        au["reference (unimodal models)"] = reference_aurocs({m: trained[m].run_dir for m in MODALITIES}, seeds)
        acc = conflict_split_rows({k: r.run_dir for k, r in trained.items()}, seeds, "regression")
        rows = rows_table(list(trained.values()))
        for k in acc:
            acc[k] = {**acc[k], "Non0_acc_2": rows[k]["Non0_acc_2"], "MAE": rows[k]["MAE"]}
        headline[setting] = au
        accs[setting] = acc
        if "misa" in trained:
            misa_c = mean_conflict(trained["misa"].run_dir, seeds)
            cacr_c = mean_conflict(trained["cacr"].run_dir, seeds)
        pngs = []
        for k in ("cacr", "cacr_anchor"):
            png = Path(args.results) / f"cacr_conflictbench_{setting}_{k}.png"
            plot_conflict(trained[k].run_dir, by="extra_conflict_modality", out=png,
                          title=f"{k} on ConflictBench ({setting}): test, {len(seeds)} seeds pooled")
            pngs.append(png.name)
        sections += [
            f"## Setting `{setting}`: {desc}, {len(seeds)} seed(s)",
            "",
            f"Overrides: `{' '.join(['--set ' + o for o in [*common, *extra]])}`.",
            "",
            "AUROC of the conflict score: `AUROC_audio` = C_audio on samples whose audio was flipped vs consistent "
            "samples, `AUROC_visual` likewise, `AUROC_planted` = their mean (the planted modality's score against "
            "the ground truth; goal >= 0.85), `AUROC_any` = max(C_audio, C_visual) for any conflict vs none.",
            "",
            markdown_table(au, AUROC_COLS, first_col="conflict score of").rstrip("\n"),
            "",
            "Binary accuracy (%) on conflicting vs consistent test samples, and overall test Non0_acc_2 / MAE:",
            "",
            markdown_table(acc, ["acc_conflicting", "acc_consistent", "Non0_acc_2", "MAE"],
                           first_col="method").rstrip("\n"),
            "",
            "Distributions of C_m and w_m by planted modality (all seeds pooled): "
            + ", ".join(f"[{p}]({p})" for p in pngs),
            "",
        ]
    d = headline["default"]
    main = d["cacr"]["AUROC_planted"]
    ref = d["reference (unimodal models)"]["AUROC_planted"]
    best_setting = max(headline, key=lambda s: headline[s]["cacr"]["AUROC_planted"][0])
    anchor_best = max(headline, key=lambda s: headline[s]["cacr_anchor"]["AUROC_planted"][0])
    lines = [
        "# CACR on ConflictBench: does the conflict score find the planted conflicts?",
        "",
        "ConflictBench plants conflicts on purpose: in `conflict_rate` (20%) of the samples one of audio/visual "
        "carries the opposite polarity; the ground truth is saved per sample. Each model's checkpoint is selected "
        "on validation MAE; the conflict scores C_m = mean_{n != m}(1 - cos(h_m, h_n)) are the per-sample "
        "diagnostics CACR saves at evaluation. `cacr_anchor` is NOT in the paper (see src/accord/models/cacr.py, "
        "`shared_anchor`): one regressor shared by all modalities also reads each pooled shared vector h_m, which "
        "ties the geometry of the shared space across modalities; it tests why the faithful score fails. "
        "MISA's C_m is the same score computed in MISA's shared space (not used in its training).",
        "",
        f"**Headline (default setting, {args.seeds} seeds).** Planted-modality AUROC of CACR's conflict score: "
        f"{format_mean_std(main[0], main[1], 'AUROC_planted')} (goal >= 0.85: "
        f"{'met' if main[0] >= 0.85 else 'NOT met'}); MISA's: "
        f"{format_mean_std(*d['misa']['AUROC_planted'][:2], 'AUROC_planted')}; with the shared anchor: "
        f"{format_mean_std(*d['cacr_anchor']['AUROC_planted'][:2], 'AUROC_planted')}; the unimodal-model reference "
        f"detector: {format_mean_std(ref[0], ref[1], 'AUROC_planted')}. Best faithful CACR across settings: "
        f"`{best_setting}` ({format_mean_std(*headline[best_setting]['cacr']['AUROC_planted'][:2], 'AUROC_planted')}); "
        f"best anchored: `{anchor_best}` "
        f"({format_mean_std(*headline[anchor_best]['cacr_anchor']['AUROC_planted'][:2], 'AUROC_planted')}).",
        "",
        reading(headline, accs, misa_c, cacr_c),
        "",
        *sections,
        f"Produced by `{command}`.",
    ]
    target = Path(args.results) / "cacr_conflictbench.md"
    atomic_write_text(target, "\n".join(lines) + "\n")
    print(f"[cacr_study] wrote {target}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["mosi-u", "conflictbench"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sweep-seeds", type=int, default=3, help="seeds of the stronger ConflictBench settings")
    parser.add_argument("--out", default="runs/cacr_study")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--set", action="append", default=[],
                        help="override for every run of the part (mosi-u: the CACR ablation runs only)")
    parser.add_argument("--set-baselines", action="append", default=[], help="override for the baseline runs")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the results files from the finished runs in --out, training nothing")
    args = parser.parse_args(argv)
    given = [a for a in (argv or sys.argv[1:]) if a != "--report-only"]
    command = "python benchmarks/cacr_study.py " + " ".join(shlex.quote(a) for a in given)
    if args.report_only:
        command += "`; this file was then rewritten from the finished runs by the same command with `--report-only"
    assert list(CACR.ablation_table)[0] == "full"
    global REPORT_ONLY
    REPORT_ONLY = args.report_only
    (mosi_u if args.part == "mosi-u" else conflictbench)(args, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
