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
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.metrics import register_metric
from accord.evaluation.plots import plot_conflict
from accord.evaluation.summary import Aggregate, aggregate, aggregate_table_from_json, format_mean_std, markdown_table
from accord.models.cacr import CACR
from accord.studies.ablate import run_ablation
from accord.studies.benchmark import conflict_split_rows
from accord.studies.probes import probe_run
from accord.studies.runner import DatasetCache, Row, constant_rows, finished_rows, rows_table, run_configs

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


def without_dataset_section(md: str) -> str:
    """``md`` without its ``## Dataset`` section (the split sizes :func:`run_ablation` writes into ``ablation.md``,
    with the machine's data path), up to the next line that is not part of it (the training seconds)."""
    lines = md.split("\n")
    if "## Dataset" not in lines:
        return md
    start = lines.index("## Dataset")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("Mean training seconds", "## "))),
               len(lines))
    return "\n".join(lines[:start] + lines[end:])


def ablation_report(folder: Path, command: str) -> dict[str, Any]:
    """What :func:`run_ablation` returns, rebuilt from its ``ablation.{json,md}`` (``--report-only``)."""
    data = json.loads((folder / "ablation.json").read_text())
    md = (folder / "ablation.md").read_text()
    md = md.rsplit("Produced by", 1)[0] + f"Produced by `{command}`.\n"
    return {"markdown": md, "rows": aggregate_table_from_json(data["test"]),
            "valid": aggregate_table_from_json(data["valid"])}


# ---------------------------------------------------------------------------------------------------- MOSI-U
PAPER_COST = {"no_crm": 87.04 - 84.15, "no_caw": 87.04 - 83.84}
"""Seed 003's Acc2 cost of removing CRM / CAW on MOSI (its table: full 87.04, w/o CRM 84.15, w/o CAW 83.84)."""


MOSI_U_WHY = (
    "The ceiling is the rise a reconstruction would show if H_n carried the label perfectly; it comes almost "
    "entirely from text (audio's and visual's own label ceilings are about 1%), and text can only be rebuilt from the "
    "audio and visual shared features, which predict the label poorly here (audio alone and visual alone are far "
    "below text alone on MOSI-U), so the dependence reachable on this data is far below the ceiling. Where the other "
    "modalities do carry the label (ConflictBench `equal`, cacr_conflictbench.md), dropping P_m makes the "
    "reconstruction depend on them.")
FT_WHY = (
    "The ceiling is the rise a reconstruction would show if H_n carried the label perfectly (text and audio only: "
    "visual is absent). Text is rebuilt from audio's shared features alone and audio from text's; audio alone is "
    "near chance on this benchmark (mosi_finetune.md), so little of text can be rebuilt from it, and the fine-tuned "
    "text features change every step, a moving target for the decoders.")


def both_forms_section(forms: dict[str, dict[str, Any]], seeds: list[int],
                       order: tuple[str, ...] = ("full", "no_crm", "no_caw", "gating", "no_fsr", "no_orth",
                                                 "no_private"), where: str = "MOSI-U",
                       why: str = MOSI_U_WHY, constant: dict[str, Aggregate] | None = None) -> str:
    """Every ablation row of ``order`` under both CRM forms side by side, the cost of each removal against its own
    full row (Non0_acc_2 points), and the H_n-dependence of the full and no_caw rows. ``constant``: the
    trivial-baseline row's test metrics (:data:`CONSTANT_ROW`), shown first and the same under both forms."""
    metric = "Non0_acc_2"
    head = ("| ablation | Non0_acc_2 (drop) | Δ vs full | Non0_acc_2 (paper) | Δ vs full | MAE (drop) | "
            "MAE (paper) |")
    rows = [head, "|:---|---:|---:|---:|---:|---:|---:|"]
    if constant is not None:
        acc = format_mean_std(*constant[metric][:2], metric)
        mae = format_mean_std(*constant["MAE"][:2], "MAE")
        rows.append(f"| {CONSTANT_ROW} | {acc} | — | {acc} | — | {mae} | {mae} |")
    for k in order:
        cells = []
        for form in ("drop", "paper"):
            r = forms[form]["rows"]
            m, sd, _ = r[k][metric]
            cells += [format_mean_std(m, sd, metric), f"{m - r['full'][metric][0]:+.1f}"]
        maes = [format_mean_std(*forms[f]["rows"][k]["MAE"][:2], "MAE") for f in ("drop", "paper")]
        rows.append(f"| {k} | {' | '.join(cells)} | {' | '.join(maes)} |")
    dep = []
    for form in ("drop", "paper"):
        for k, d in forms[form]["dependence"].items():
            dep.append(f"`{k}` ({form}) {100 * d['hn_rise'][0]:.1f}% ± {100 * d['hn_rise'][1]:.1f} "
                       f"(ceiling {100 * d['ceiling'][0]:.1f}%)")
    verdicts = []
    for k, label in (("no_crm", "w/o CRM"), ("no_caw", "w/o CAW")):
        for form in ("drop", "paper"):
            r = forms[form]["rows"]
            delta = r[k][metric][0] - r["full"][metric][0]
            noise = max(r["full"][metric][1], r[k][metric][1])
            verdicts.append(f"{label} ({form}) {delta:+.1f}"
                            + (" (within the seeds' std)" if abs(delta) < noise else ""))
    return "\n".join([
        f"Test split, mean ± std over {len(seeds)} seeds; `drop` is Accord's default CRM (P_m dropped from the "
        "decoder input on half of the training samples), `paper` the literal one. \"Δ vs full\" is the "
        "ablation's Non0_acc_2 minus its own full row's (negative: removing the component costs accuracy).",
        "",
        *rows,
        "",
        f"Does removing a component now cost accuracy? The paper: w/o CRM -{PAPER_COST['no_crm']:.2f} and "
        f"w/o CAW -{PAPER_COST['no_caw']:.2f} Acc2 on MOSI. Here (Δ Non0_acc_2, ablation minus full): "
        + "; ".join(verdicts) + ".",
        "",
        f"H_n-dependence on the {where} test split (relative rise of l_m with H_n permuted; `accord probe`): "
        + "; ".join(dep) + ". " + why,
    ])



def mosi_u(args: argparse.Namespace, command: str) -> None:
    seeds = list(range(args.seeds))
    out = Path(args.out) / "mosi_u"
    forms: dict[str, dict[str, Any]] = {}
    for form, folder in (("drop", "ablation"), ("paper", "ablation_paper")):
        if REPORT_ONLY:
            forms[form] = ablation_report(out / folder, command)
        else:
            forms[form] = run_ablation("cacr", "mosi-u", seeds, out / folder,
                                       overrides=[*THREAD, f"model.params.crm={form}", *args.set],
                                       resume=args.resume, overwrite=not args.resume, command=command)
        forms[form]["dependence"] = {k: dependence(out / folder / f"cacr_{k}") for k in ("full", "no_caw")}
    res = forms["drop"]
    baselines = train_runs({m: (m, []) for m in ("text", "early_fusion", "tfn", "mult", "misa")}, "mosi-u", seeds,
                           out / "baselines", list(args.set_baselines), args.resume)
    base = rows_table(list(baselines.values()))
    constant = constant_rows(DatasetCache().get(next(iter(baselines.values())).cfg.data), len(seeds),
                             "regression")["test"]
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
        without_dataset_section(res["markdown"].split("\n", 2)[2].rstrip("\n").rsplit("\n", 1)[0].rstrip("\n")),
        "",
        "(Training seconds were measured on a shared 2-core machine with other jobs running: not a speed "
        "comparison; see benchmarks/results/throughput.json for that.)",
        "",
        "## Both CRM forms",
        "",
        both_forms_section(forms, seeds, constant=constant),
        "",
        "## Beside the foundation baselines and MISA (same seeds, data and budget)",
        "",
        markdown_table({CONSTANT_ROW: constant, **{f"cacr ({k})": rows[k] for k in ("full",)}, **base},
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
        "Hyper-parameters: tuned on VALIDATION only (3 seeds, validation MAE), never on test: " + TUNING_NOTE
        + " That search ran with one shared encoder common to all modalities, Accord's default then; the default "
        "now, one shared encoder per modality, was chosen on ConflictBench's validation AUROC of planted conflicts "
        "(cacr_auroc_search.md); its validation MAE here is "
        f"{format_mean_std(*res['valid']['full']['MAE'][:2], 'MAE')} ({len(seeds)} seeds, the table above).",
        "",
        f"Produced by `{command}`.",
    ]
    target = Path(args.results) / "cacr_ablation_mosi_u.md"
    atomic_write_text(target, "\n".join(md) + "\n")
    print(f"[cacr_study] wrote {target}", file=sys.stderr)


# ---------------------------------------------------------------------------------------- MOSI, fine-tuned text
FT_ROWS = ("full", "no_crm", "no_caw")


def mosi_ft(args: argparse.Namespace, command: str) -> None:
    """The CACR ablation (full / w/o CRM / w/o CAW, both CRM forms) on the fine-tuned MOSI benchmark: MOSI standard
    folds, transcripts through the packaged MiniLM trained end to end, audio, visual absent (the settings of
    ``benchmarks/mosi_finetune.py``) -> ``cacr_ablation_mosi_ft.md``. ``no_crm`` has no decoders, so it is one
    model under both forms and is trained once."""
    from mosi_finetune import DATA, FINETUNE  # the benchmark's own settings (benchmarks/ is on sys.path)

    seeds = list(range(args.seeds))
    out = Path(args.out) / "mosi_ft"
    trained = [(k, form) for form in ("drop", "paper") for k in FT_ROWS if not (k == "no_crm" and form == "paper")]
    specs = {f"{k}_{form}": ("cacr", [f"model.params.crm={form}", f"model.params.ablation={k}"])
             for k, form in trained}
    runs = train_runs(specs, "mosi-u", seeds, out, [*DATA, *FINETUNE, f"train.epochs={args.epochs}", *args.set],
                      args.resume)
    forms: dict[str, dict[str, Any]] = {}
    for form in ("drop", "paper"):
        rows = {k: runs[f"{k}_{'drop' if k == 'no_crm' else form}"].test for k in FT_ROWS}
        forms[form] = {"rows": rows,
                       "dependence": {k: dependence(runs[f"{k}_{form}"].run_dir) for k in ("full", "no_caw")}}
    constant = constant_rows(DatasetCache().get(runs["full_drop"].cfg.data), len(seeds), "regression")
    table = {CONSTANT_ROW: constant["test"], **{f"CACR {k} ({form})": runs[f"{k}_{form}"].test for k, form in trained}}
    ref = aggregate_table_from_json(json.loads((RESULTS / "mosi_finetune.json").read_text())["test"])
    md = [
        "# CACR ablation on MOSI with fine-tuned MiniLM text (both CRM forms)",
        "",
        f"CMU-MOSI standard folds, transcripts through the packaged all-MiniLM-L6-v2 trained end to end + bc-LSTM "
        f"openSMILE audio, visual absent: the settings of `benchmarks/mosi_finetune.py` ({args.epochs} epochs, "
        "encoder lr 5e-5, the rest 1e-3, batch 32, checkpoint selected on VALIDATION MAE, one thread per run). "
        f"Seeds {seeds}.",
        "",
        markdown_table(table, ["Has0_acc_2", "Non0_acc_2", "Non0_F1", "Mult_acc_7", "MAE", "Corr"]).rstrip("\n"),
        "",
        "## Both CRM forms",
        "",
        both_forms_section(forms, seeds, order=FT_ROWS, where="MOSI (standard folds, fine-tuned text)",
                           why=FT_WHY, constant=constant["test"]),
        "",
        "**Why `no_caw` equals `full` to the last digit.** With two modalities CAW cannot weight anything: "
        "C_text = C_audio = 1 − cos(h_text, h_audio) (each modality's only partner is the other), so "
        "w_text = w_audio and the normalised weights are both 1, exactly `no_caw`'s; CAW enters only L_rec, so "
        "training is the same step for step (`tests/test_cacr.py::test_caw_is_inert_with_two_present_modalities`). "
        "CAW needs at least three "
        "present modalities to tell one from the others; this benchmark leaves visual out because MOSI's visual "
        "features leak test labels (`../shared/data/README.md`). The paper's w/o CAW cost (−3.20 Acc2) is on "
        "three modalities; here the row is a check that the implementation reduces to `no_caw` as the equations "
        "say, not a measurement of CAW.",
        "",
        "For reference, from `mosi_finetune.md` (5 seeds, same settings, trained before issue 17, when `crm` was "
        "the literal form and one shared encoder served all modalities): fine-tuned text alone Non0_acc_2 "
        + format_mean_std(*ref["text alone, fine-tuned MiniLM"]["Non0_acc_2"][:2], "Non0_acc_2")
        + ", CACR " + format_mean_std(*ref["CACR"]["Non0_acc_2"][:2], "Non0_acc_2") + ".",
        "",
        f"Produced by `{command}`.",
    ]
    target = Path(args.results) / "cacr_ablation_mosi_ft.md"
    atomic_write_text(target, "\n".join(md) + "\n")
    print(f"[cacr_study] wrote {target}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ ConflictBench


def auroc(score: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    sel = positive | negative
    if not positive.any() or not negative.any():
        return float("nan")
    return float(roc_auc_score(positive[sel], score[sel]))


def conflict_aurocs(run_dir: Path, seeds: list[int], split: str = "test") -> dict[str, Aggregate]:
    """Per seed, AUROC of C_audio (audio flipped vs consistent), C_visual (visual flipped vs consistent), their mean,
    and of max(C_audio, C_visual) for any conflict vs none, on ``split``; aggregated over seeds."""
    per_seed = []
    for s in seeds:
        z = rundir.read_diagnostics(rundir.seed_dir(run_dir, s), split)
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


HN_COLS = ["hn_rise_text", "hn_rise_audio", "hn_rise_visual", "hn_rise", "ceiling"]
for _col, _what in (("hn_rise_text", "relative rise of l_text with H_n permuted"),
                    ("hn_rise_audio", "relative rise of l_audio with H_n permuted"),
                    ("hn_rise_visual", "relative rise of l_visual with H_n permuted"),
                    ("hn_rise", "mean relative rise of l_m with H_n permuted (goal >= 0.20)"),
                    ("ceiling", "the rise a reconstruction from the label alone would show")):
    register_metric(_col, "max", description=f"CACR's H_n-dependence probe: {_what}")


def dependence(run_dir: Path, split: str = "test") -> dict[str, Aggregate]:
    """The CACR probe of a run (``accord probe``; saved as ``probe_<split>.json``): H_n-dependence and its ceiling,
    mean ± std over seeds (read back from the saved file with ``--report-only``)."""
    saved = run_dir / f"probe_{split}.json"
    res = json.loads(saved.read_text()) if REPORT_ONLY and saved.is_file() else probe_run(run_dir, split=split)
    return {k: (v["mean"], v["std"], v["n"]) for k, v in res["mean_std"].items() if k in HN_COLS}


def _pct(agg: Aggregate) -> str:
    """A share as ``12.3% ± 0.4``."""
    return f"{100 * agg[0]:.1f}% ± {100 * agg[1]:.1f}"


def _auroc(agg: Aggregate) -> str:
    """An AUROC as mean ± std (the metric's own format)."""
    return format_mean_std(agg[0], agg[1], "AUROC_planted")


def reading(headline: dict[str, dict[str, dict[str, Aggregate]]], accs: dict[str, dict[str, dict[str, Aggregate]]],
            deps: dict[str, dict[str, dict[str, Aggregate]]], misa_c: float, cacr_c: float) -> str:
    """The paragraphs under the headline, from the numbers (so a re-run cannot leave a stale sentence)."""
    f, pct = _auroc, _pct

    def acc(agg: Aggregate) -> str:
        return format_mean_std(agg[0], agg[1], "acc_conflicting")

    dep = "; ".join(
        f"`{s}` {pct(d['cacr_paper']['hn_rise'])} (paper) / {pct(d['cacr']['hn_rise'])} (drop) of a ceiling of "
        f"{pct(d['cacr']['ceiling'])}" for s, d in deps.items())
    per = "; ".join(
        f"`{s}` {f(h['cacr_paper']['AUROC_planted'])} / {f(h['cacr']['AUROC_planted'])} / "
        f"{f(h['cacr_common']['AUROC_planted'])} / "
        f"{f(h['cacr_anchor']['AUROC_planted'])} / {f(h['reference (unimodal models)']['AUROC_planted'])}"
        for s, h in headline.items())
    common = [s for s, h in headline.items() if h["cacr_common"]["AUROC_planted"][0] >= 0.85]
    gap = max(abs(h["cacr_anchor"]["AUROC_planted"][0] - h["reference (unimodal models)"]["AUROC_planted"][0])
              for h in headline.values())
    reached = [s for s, h in headline.items() if h["cacr"]["AUROC_planted"][0] >= 0.85]
    anchored = [s for s, h in headline.items() if h["cacr_anchor"]["AUROC_planted"][0] >= 0.85]
    lower = [s for s, h in headline.items()
             if h["cacr"]["AUROC_planted"][0] < h["cacr_paper"]["AUROC_planted"][0] - h["cacr"]["AUROC_planted"][1]]
    higher = [s for s, h in headline.items()
              if h["cacr"]["AUROC_planted"][0] > h["cacr_paper"]["AUROC_planted"][0] + h["cacr"]["AUROC_planted"][1]]
    a = accs["default"]
    caw = a["cacr"]["acc_conflicting"]
    nocaw = a["cacr_no_caw"]["acc_conflicting"]
    lit_max = max(d["cacr_paper"]["hn_rise"][0] for d in deps.values())
    above = [s for s, d in deps.items() if d["cacr"]["hn_rise"][0] > d["cacr_paper"]["hn_rise"][0]]
    low_ceiling = [s for s, d in deps.items() if d["cacr"]["ceiling"][0] < 0.2]
    high = {s: d for s, d in deps.items() if d["cacr"]["ceiling"][0] >= 0.2}
    where_possible = ("Where the ceiling allows it (" + "; ".join(
        f"`{s}`: ceiling {pct(d['cacr']['ceiling'])}, literal {pct(d['cacr_paper']['hn_rise'])}, dropped "
        f"{pct(d['cacr']['hn_rise'])}, goal {'met' if d['cacr']['hn_rise'][0] >= 0.2 else 'NOT met'}"
        for s, d in high.items()) + "), the CRM with P_m dropped "
        + ("reads H_n as the paper intends" if all(d["cacr"]["hn_rise"][0] >= 0.2 for d in high.values())
           else "still falls short") + ". ") if high else ""
    shortcut = (f"The literal decoders rebuild X_m from P_m alone: permuting the other modalities' shared "
                f"features raises l_m by at most {100 * lit_max:.1f}% in any setting. " if lit_max < 0.02 else
                f"The literal decoders read H_n too (up to {100 * lit_max:.1f}%). ")
    fixed = (f"Dropping P_m from the decoder input on half of the training samples raises the dependence in "
             f"{', '.join(f'`{s}`' for s in above) or 'no setting'}. ")
    return (
        "**Reading: the shortcut.** H_n-dependence per setting (literal CRM / CRM with P_m dropped, of the "
        f"label ceiling): {dep}. " + shortcut + fixed
        + "The ceiling shows how much of X_m is related to the label at all (on ConflictBench the rest is "
        "per-modality noise and nuisance offsets that no other modality can predict): in "
        f"{', '.join(f'`{s}`' for s in low_ceiling) or 'no setting'} it is itself below 20%, so the goal is out "
        "of reach there whatever the model. " + where_possible + "\n\n"
        "**Reading: the conflict score.** Planted-modality AUROC per setting (literal CRM / CRM with P_m dropped / "
        "dropped + one shared encoder common to all modalities / dropped + shared anchor / unimodal reference): "
        f"{per}. The "
        "goal of 0.85 is "
        + (f"reached in {', '.join(f'`{r}`' for r in reached)}" if reached else "not reached in any setting")
        + " by CACR's own score with its default shared encoder per modality (`shared_encoder: separate`, "
        "METHODS.md §1.1's \"per modality, two encoders\"; the same score, no term outside the paper)"
        + (f", and with the shared anchor added (not in the paper) in {', '.join(f'`{r}`' for r in anchored)}"
           if anchored else "")
        + "; with one shared encoder common to all modalities (`shared_encoder: common`, as MISA) it is "
        + (f"reached in {', '.join(f'`{r}`' for r in common)}" if common else "reached in no setting")
        + ". Closing the shortcut (P_m dropped vs the literal CRM) changes the score's AUROC by more than a std "
        + ("in no setting" if not (lower or higher) else "; ".join(
            [*([f"upwards in {', '.join(f'`{r}`' for r in higher)}"] if higher else []),
             *([f"downwards in {', '.join(f'`{r}`' for r in lower)}"] if lower else [])]))
        + f", while it raises the reconstruction's H_n-dependence in {', '.join(f'`{r}`' for r in above) or 'none'}."
        + " The reference detector, built from separately trained unimodal models, shows what is detectable "
        "from the same features; the anchor (one regressor shared by all modalities reads each h_m, NOT in the "
        f"paper) tracks it within {gap:.3f} AUROC, so the score's definition is sound once the shared space is "
        "aligned, and the remaining gap of CACR's own score is the geometry of its shared space: a decoder per "
        "pair absorbs any modality-specific rotation of H_n, so cos(h_m, h_n) partly measures how the shared "
        f"encoder places each modality (mean C_m = {cacr_c:.2f} in the default setting). MISA's CMD similarity "
        f"loss does the opposite: its shared vectors are nearly identical across modalities (mean C_m = "
        f"{misa_c:.3f}), so a conflict is erased from its shared space (AUROC near chance), the failure seed 003 "
        f"attributes to similarity alignment. Accuracy on conflicting samples (default setting): {acc(caw)} with "
        f"CAW, {acc(nocaw)} without."
    )


def headline_clean(au: dict[str, dict[str, Aggregate]], dep: dict[str, dict[str, Aggregate]], seeds: int) -> str:
    """The headline of the high-ceiling setting: where the data let the shared features explain X_m, does each
    CRM read them, and does the conflict score find the planted conflicts?"""
    f, pct = _auroc, _pct
    drop, ceiling = dep["cacr"]["hn_rise"], dep["cacr"]["ceiling"]
    main = au["cacr"]["AUROC_planted"]
    return (
        f"**Headline (`clean` setting, {seeds} seeds: {SETTINGS['clean'][0]}).** H_n-dependence: literal CRM "
        f"{pct(dep['cacr_paper']['hn_rise'])}, CRM with P_m dropped {pct(drop)}, label ceiling {pct(ceiling)} "
        f"(goal {'met' if drop[0] >= 0.2 else 'NOT met'} by the default CRM, "
        f"{'met' if dep['cacr_paper']['hn_rise'][0] >= 0.2 else 'NOT met'} by the literal one). Planted-modality "
        f"AUROC: literal {f(au['cacr_paper']['AUROC_planted'])}, dropped {f(main)} "
        f"({'met' if main[0] >= 0.85 else 'NOT met'}), dropped with one shared encoder common to all modalities "
        f"{f(au['cacr_common']['AUROC_planted'])} "
        f"({'met' if au['cacr_common']['AUROC_planted'][0] >= 0.85 else 'NOT met'}), with the shared anchor "
        f"{f(au['cacr_anchor']['AUROC_planted'])}, the unimodal-model reference "
        f"{f(au['reference (unimodal models)']['AUROC_planted'])}.")


SETTINGS: dict[str, tuple[str, list[str]]] = {
    "default": ("default ConflictBench strengths (text 1.5, audio 0.5, visual 0.4: text dominates)", []),
    "av1.0": ("audio and visual strength 1.0 (text 1.5 still dominates)",
              ["data.params.strength={text: 1.5, audio: 1.0, visual: 1.0}"]),
    "equal": ("all modalities strength 1.5 (no dominance; flips most detectable)",
              ["data.params.strength={text: 1.5, audio: 1.5, visual: 1.5}"]),
    "clean": ("all modalities strength 1.5, noise 0.3 and every real step salient (most of X_m is the shared "
              "sentiment signal: a label ceiling far above 20%)",
              ["data.params.strength={text: 1.5, audio: 1.5, visual: 1.5}", "data.params.noise=0.3",
               "data.params.salient_share=1.0"]),
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
        "cacr_paper": ("cacr", ["model.params.crm=paper"]),
        "cacr_no_caw": ("cacr", ["model.params.ablation=no_caw"]),
        "misa": ("misa", []),
        "cacr_anchor": ("cacr", ["model.params.shared_anchor=true"]),
        "cacr_common": ("cacr", ["model.params.shared_encoder=common"]),
        "text": ("text", []), "audio": ("audio", []), "visual": ("visual", []),
    }
    sections: list[str] = []
    headline: dict[str, Any] = {}
    accs: dict[str, dict[str, dict[str, Aggregate]]] = {}
    deps: dict[str, dict[str, dict[str, Aggregate]]] = {}
    misa_c = cacr_c = float("nan")
    datasets = DatasetCache()
    for setting, seeds in (("default", list(range(args.seeds))), ("av1.0", list(range(args.sweep_seeds))),
                           ("equal", list(range(args.sweep_seeds))), ("clean", list(range(args.seeds)))):
        desc, extra = SETTINGS[setting]
        specs = main_specs if setting == "default" else {k: main_specs[k] for k in
                                                          ("cacr", "cacr_paper", "cacr_anchor", "cacr_common",
                                                           "text", "audio", "visual")}
        trained = train_runs(specs, "conflictbench", seeds, out / setting, [*common, *extra], args.resume)
        au = {k: conflict_aurocs(trained[k].run_dir, seeds) for k in specs if k.startswith(("cacr", "misa"))}
        au["reference (unimodal models)"] = reference_aurocs({m: trained[m].run_dir for m in MODALITIES}, seeds)
        acc = conflict_split_rows({k: r.run_dir for k, r in trained.items()}, seeds, "regression")
        rows = rows_table(list(trained.values()))
        # the trivial baseline (first row of the conflict table, scored there on each subset): train mean of this
        # setting's dataset, overall test Non0_acc_2 / MAE
        rows[CONSTANT_ROW] = constant_rows(datasets.get(trained["cacr"].cfg.data), len(seeds), "regression")["test"]
        acc.setdefault(CONSTANT_ROW, {})
        acc = {CONSTANT_ROW: acc.pop(CONSTANT_ROW), **acc}
        for k in acc:
            acc[k] = {**acc[k], "Non0_acc_2": rows[k]["Non0_acc_2"], "MAE": rows[k]["MAE"]}
        headline[setting] = au
        accs[setting] = acc
        dep = {k: dependence(trained[k].run_dir) for k in specs if k.startswith("cacr")}
        deps[setting] = dep
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
            "H_n-dependence of the cross-reconstruction (`accord probe`): the relative rise of l_m when the other "
            "modalities' shared features H_n are permuted across the test batch (`hn_rise`, goal >= 0.20), and "
            "`ceiling`, the rise a reconstruction from the label alone would show (each step of X_m fitted on "
            "[1, y, |y|], labels permuted): how much of X_m anything shared across modalities can explain here.",
            "",
            markdown_table(dep, HN_COLS, first_col="model", bold_best=False).rstrip("\n"),
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
    lit = d["cacr_paper"]["AUROC_planted"]
    ref = d["reference (unimodal models)"]["AUROC_planted"]
    dd = deps["default"]
    lines = [
        "# CACR on ConflictBench: does the reconstruction use the other modalities, and does the conflict score "
        "find the planted conflicts?",
        "",
        "ConflictBench plants conflicts on purpose: in `conflict_rate` (20%) of the samples one of audio/visual "
        "carries the opposite polarity; the ground truth is saved per sample. Each model's checkpoint is selected "
        "on validation MAE; the conflict scores C_m = mean_{n != m}(1 - cos(h_m, h_n)) are the per-sample "
        "diagnostics CACR saves at evaluation. `cacr` is CACR as Accord builds it by default (`crm: drop`: each "
        "sample's P_m is dropped from the decoder input with probability 0.5 in training, METHODS.md §1.3; one "
        "shared encoder per modality, `shared_encoder: separate`, METHODS.md §1.1's \"per modality, two "
        "encoders\"); `cacr_paper` is the literal CRM (`crm: paper`, D_nm([H_n ⊕ P_m]) always). `cacr_common` is "
        "`cacr` with one shared encoder common to all modalities (`shared_encoder: common`, as MISA; Accord's "
        "default until cacr_auroc_search.md chose `separate` on validation AUROC). `cacr_anchor` is NOT in the "
        "paper (`shared_anchor`): one regressor shared by all modalities also reads each pooled shared vector h_m. "
        "MISA's C_m is the same score computed in MISA's shared space (not used in its training).",
        "",
        f"**Headline (default setting, {args.seeds} seeds).** H_n-dependence (relative rise of l_m when H_n is "
        f"permuted; goal >= 20%): literal CRM {100 * dd['cacr_paper']['hn_rise'][0]:.1f}% ± "
        f"{100 * dd['cacr_paper']['hn_rise'][1]:.1f}, CRM with P_m dropped {100 * dd['cacr']['hn_rise'][0]:.1f}% "
        f"± {100 * dd['cacr']['hn_rise'][1]:.1f}, label ceiling {100 * dd['cacr']['ceiling'][0]:.1f}% "
        f"(goal {'met' if dd['cacr']['hn_rise'][0] >= 0.2 else 'NOT met'}). Planted-modality AUROC of the "
        f"conflict score (goal >= 0.85): literal {format_mean_std(lit[0], lit[1], 'AUROC_planted')}, dropped "
        f"{format_mean_std(main[0], main[1], 'AUROC_planted')} ({'met' if main[0] >= 0.85 else 'NOT met'}); "
        f"MISA's {format_mean_std(*d['misa']['AUROC_planted'][:2], 'AUROC_planted')}; with the shared anchor "
        f"{format_mean_std(*d['cacr_anchor']['AUROC_planted'][:2], 'AUROC_planted')}; the unimodal-model "
        f"reference detector {format_mean_std(ref[0], ref[1], 'AUROC_planted')}.",
        "",
        headline_clean(headline["clean"], deps["clean"], args.seeds),
        "",
        reading(headline, accs, deps, misa_c, cacr_c),
        "",
        *sections,
        f"Produced by `{command}`.",
    ]
    target = Path(args.results) / "cacr_conflictbench.md"
    atomic_write_text(target, "\n".join(lines) + "\n")
    print(f"[cacr_study] wrote {target}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["mosi-u", "mosi-ft", "conflictbench"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sweep-seeds", type=int, default=3, help="seeds of the stronger ConflictBench settings")
    parser.add_argument("--epochs", type=int, default=2, help="mosi-ft: fine-tuning epochs (mosi_finetune.py's)")
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
    {"mosi-u": mosi_u, "mosi-ft": mosi_ft, "conflictbench": conflictbench}[args.part](args, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
