"""EBMC studies (issue #5): the ablation table, the robustness study and the trust-under-drop measurement.

Run from the repository root with the venv's Python; every step reuses finished runs (``resume``), so a step can be
re-run to finish an interrupted study::

    python benchmarks/ebmc_study.py ablation     # -> benchmarks/results/ebmc_ablation_mosi_u.md (--train: train)
    python benchmarks/ebmc_study.py robustness   # -> benchmarks/results/robustness_mosi_u.{md,png,json} (+ folder)
    python benchmarks/ebmc_study.py trust        # -> benchmarks/results/ebmc_trust.md

Only FINISHED seeds are scored (an interrupted seed is left out and can be completed with the same command plus
``--resume``). ``--train`` first trains what is missing in ``runs/robustness_mosi-u`` (the exact ``accord`` commands
are in :data:`ROBUSTNESS_TRAIN` and are written into the results file). All training uses one thread per process
(``train.num_threads=1``); checkpoints are selected on validation, tables report test mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.config import Config, load_config
from accord.core import rundir
from accord.evaluation.baselines import CONSTANT_ROW
from accord.evaluation.metrics import metric_spec
from accord.evaluation.robustness import area_under
from accord.studies.benchmark import run_benchmark
from accord.studies.robustness import run_robustness
from accord.studies.runner import DatasetCache, constant_rows, run_configs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ACCORD = str(Path(sys.executable).parent / "accord")
MD = "train.modality_dropout={text: 0.3, audio: 0.3, visual: 0.3}"
ROB_DIR = "runs/robustness_mosi-u"


@dataclass(frozen=True)
class TrainRun:
    """One ``accord train --method M --dataset D [--seeds N] --set ... --resume``: the command written into the
    results files, and the config it trains (in this process, through the runner primitive)."""

    method: str
    dataset: str
    sets: tuple[str, ...]
    seeds: int | None = None

    def argv(self) -> list[str]:
        return [ACCORD, "train", "--method", self.method, "--dataset", self.dataset,
                *(["--seeds", str(self.seeds)] if self.seeds else []), *(a for s in self.sets for a in ("--set", s)),
                "--resume"]

    def config(self) -> Config:
        """What ``accord train`` loads for this command (``--seeds N`` is ``train.seeds=[0..N-1]`` after the sets)."""
        extra = [f"train.seeds={json.dumps(list(range(self.seeds)))}"] if self.seeds else []
        return load_config(method=self.method, dataset=self.dataset, overrides=[*self.sets, *extra])


@dataclass(frozen=True)
class BenchmarkRun:
    """One ``accord benchmark --methods ... --dataset D --seeds N --out OUT --set ... --resume``."""

    methods: tuple[str, ...]
    dataset: str
    seeds: int
    out: str
    sets: tuple[str, ...]

    def argv(self) -> list[str]:
        return [ACCORD, "benchmark", "--methods", ",".join(self.methods), "--dataset", self.dataset, "--seeds",
                str(self.seeds), "--out", self.out, *(a for s in self.sets for a in ("--set", s)), "--resume"]


ROBUSTNESS_TRAIN: list[BenchmarkRun | TrainRun] = [
    BenchmarkRun(("ebmc", "late_fusion", "mult"), "mosi-u", 5, ROB_DIR, ("train.num_threads=1",)),
    TrainRun("ebmc", "mosi-u", ("train.num_threads=1", "name=ebmc_moddrop", f"output.dir={ROB_DIR}", MD), 5),
    TrainRun("late_fusion", "mosi-u", ("train.num_threads=1", "name=late_fusion_moddrop", f"output.dir={ROB_DIR}",
                                       MD), 5),
    TrainRun("cacr", "mosi-u", ("train.num_threads=1", "name=cacr", f"output.dir={ROB_DIR}"), 5),
]
TRUST_DIR = "runs/ebmc_trust_conflictbench"
TRUST_TRAIN: list[BenchmarkRun | TrainRun] = [
    TrainRun("ebmc", "conflictbench", ("train.num_threads=1", "name=ebmc", f"output.dir={TRUST_DIR}"), 3),
    TrainRun("ebmc", "conflictbench", ("train.num_threads=1", "name=ebmc_moddrop", f"output.dir={TRUST_DIR}", MD), 3),
    TrainRun("ebmc", "conflictbench", ("train.num_threads=1", "name=ebmc_no_enhance",
                                       "model.params.ablation=no_enhance", f"output.dir={TRUST_DIR}"), 3),
]
MODS = ("text", "audio", "visual")


def _cmd(argv: list[str]) -> str:
    return " ".join(shlex.quote(a if a != ACCORD else "accord") for a in argv)


def _run(runs: list[BenchmarkRun | TrainRun]) -> None:
    """Train what the commands ``runs`` train, in this process (from the repository root, resumable): a benchmark
    through :func:`run_benchmark`, the ``accord train`` runs through the runner primitive on shared datasets."""
    datasets = DatasetCache()
    for run in runs:
        print("+", _cmd(run.argv()), flush=True)
        if isinstance(run, BenchmarkRun):
            run_benchmark(list(run.methods), run.dataset, list(range(run.seeds)), run.out, overrides=list(run.sets),
                          resume=True)
        else:
            cfg = run.config()
            run_configs([(cfg.run_name, cfg)], resume=True, datasets=datasets)


def _ms(values: list[float], digits: int = 1) -> str:
    arr = np.asarray(values, dtype=float)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{arr.mean():.{digits}f} ± {sd:.{digits}f}"


# --- ablation ----------------------------------------------------------------------------------------------------
ABLATION_PROBES = {"clean": [], "text dropped": ["drop:text:1.0"],
                   "audio+visual dropped": ["drop:audio:1.0", "drop:visual:1.0"], "noise all 1.0": ["noise:all:1.0"]}


ABLATIONS = ("full", "no_enhance", "no_energy", "no_trust", "trust_without_distillation", "no_sim")
ABL_DIR = "runs/ebmc_ablation_mosi-u"
TABLE_METRICS = ("Non0_acc_2", "Non0_F1", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr")


def ablation_train(name: str, seeds: int) -> TrainRun:
    """What ``accord ablate --method ebmc --dataset mosi-u`` runs for one row (the same config and run name)."""
    return TrainRun("ebmc", "mosi-u", ("train.num_threads=1", f"model.params.ablation={name}", f"name=ebmc_{name}",
                                       f"output.dir={ABL_DIR}", f"train.seeds={list(range(seeds))}"))


def finished_seeds(run_dir: Path) -> list[int]:
    """Seeds of ``run_dir`` whose training finished (``results.json`` written)."""
    return [rundir.seed_of(sd) for sd in rundir.seed_dirs(run_dir) if (sd / rundir.RESULTS).is_file()]


def ablation(seeds: int, train: bool) -> None:
    """EBMC's ablation table on MOSI-U from the FINISHED seeds of each row, plus Non0_acc_2 under test-time drops."""
    from accord import api
    from accord.data.corrupt import apply_corruptions
    from accord.training.trainer import evaluate_split, load_run, resolve_device

    if train:
        _run([ablation_train(name, seeds) for name in ABLATIONS])
    out = ROOT / ABL_DIR
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for name in ABLATIONS:
        rd = out / f"ebmc_{name}"
        rows[name] = {s: rundir.read_results(rundir.seed_dir(rd, s))["test"] for s in finished_seeds(rd)}
    datasets = DatasetCache()
    # the trivial baseline (train-mean predictor of MOSI-U's training labels): deterministic, so "± 0.0"
    const = constant_rows(datasets.get(load_config(method="ebmc", dataset="mosi-u")), 1, "regression")["test"]
    lines = ["# EBMC ablation on MOSI-U", "",
             "Produced by `python benchmarks/ebmc_study.py ablation` from the runs trained by (one per row; "
             "`accord ablate --method ebmc --dataset mosi-u --seeds 5 --out runs/ebmc_ablation_mosi-u "
             "--set train.num_threads=1` trains the same configs under the same names):", "", "```bash",
             *(_cmd(ablation_train(n, seeds).argv()) for n in ABLATIONS), "```", "",
             "Test split, mean ± std over the seeds listed (checkpoint selected on validation MAE). Δ = the row "
             "minus `full` on the SAME seeds (paired), mean ± std over those seeds. Seed 001 is an abstract only: "
             "there are no paper numbers to set beside ours. The first row is the trivial baseline (the mean "
             "training label predicted for every sample; it needs no training and reads no input).", "",
             "| configuration | " + " | ".join(TABLE_METRICS) + " | Δ Non0_acc_2 vs full | seeds |",
             "|:---|" + "---:|" * (len(TABLE_METRICS) + 2),
             f"| {CONSTANT_ROW} | " + " | ".join(_ms([const[k][0]], metric_spec(k).digits) for k in TABLE_METRICS)
             + " | — | — |"]
    full = rows["full"]
    for name, per in rows.items():
        if not per:
            lines.append(f"| `{name}` | " + " | ".join("—" for _ in TABLE_METRICS) + " | — | 0 |")
            continue
        cells = [_ms([r[k] for r in per.values()], metric_spec(k).digits) for k in TABLE_METRICS]
        common = sorted(set(per) & set(full))
        delta = _ms([per[s]["Non0_acc_2"] - full[s]["Non0_acc_2"] for s in common]) if name != "full" and common \
            else "—"
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {delta} | {','.join(map(str, sorted(per)))} |")
    lines += ["", "## The same runs under test-time corruption (Non0_acc_2, test, mean ± std over seeds)", "",
              "The trivial baseline reads no input, so its score is the same under every corruption.", "",
              "| configuration | " + " | ".join(ABLATION_PROBES) + " |", "|:---|" + "---:|" * len(ABLATION_PROBES),
              f"| {CONSTANT_ROW} | " + " | ".join(_ms([const["Non0_acc_2"][0]]) for _ in ABLATION_PROBES) + " |"]
    for name in ABLATIONS:
        rd = out / f"ebmc_{name}"
        if not rows[name]:
            continue
        cfg, _ = load_run(rd)
        ds = datasets.get(cfg.data)
        dev = resolve_device("cpu")
        models = [api.load(rd, seed=s, device="cpu") for s in rows[name]]
        cells = []
        for probe in ABLATION_PROBES.values():
            part = apply_corruptions(ds["test"], probe) if probe else ds["test"]
            cells.append(_ms([evaluate_split(m, part, cfg, ds, dev).metrics["Non0_acc_2"] for m in models]))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    (RESULTS / "ebmc_ablation_mosi_u.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "ebmc_ablation_mosi_u.md").read_text())


# --- robustness --------------------------------------------------------------------------------------------------
def robustness(train: bool) -> None:
    """Curves of every run in runs/robustness_mosi-u under drop/noise of each modality; the summary with numbers."""
    if train:
        _run(ROBUSTNESS_TRAIN)
    dest = RESULTS / "robustness_mosi_u"
    levels = [round(0.1 * i, 1) for i in range(10)]
    view = finished_view(ROOT / ROB_DIR, ROOT / (ROB_DIR + "_finished"))
    res = run_robustness([view], modalities=["text", "audio", "visual", "all"],
                         corruptions=["drop", "noise"], levels=levels, out=dest)
    curves = res["curves"]
    per_panel_pngs = _panel_plots(curves, dest)
    # the trivial baseline (train-mean predictor), which accord robustness scores and puts first in its table: it
    # reads no input, so every corruption level scores the same
    (const_line,) = res["constant_predictor"]
    const = const_line["value"]
    runs = sorted({c["run"] for c in curves}, key=lambda r: (not r.startswith("ebmc"), r))
    key = {(c["run"], c["kind"], c["modality"]): c for c in curves}
    lines = ["# Robustness on MOSI-U: EBMC vs CACR, late fusion, MulT under dropped and noisy modalities", "",
             "Produced by (from the repository root):", "", "```bash"]
    lines += [_cmd(r.argv()) for r in ROBUSTNESS_TRAIN]
    lines += [f"accord robustness {ROB_DIR} --modality text,audio,visual,all --corruption drop,noise "
              "--levels 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9 --out benchmarks/results/robustness_mosi_u",
              "# or, all of it: python benchmarks/ebmc_study.py robustness --train", "```", "",
              "Runs: " + ", ".join(f"`{r}` ({len(key[(r, 'drop', 'text')]['per_seed'])} seeds)" for r in runs)
              + ". `*_moddrop` = trained with `train.modality_dropout` text/audio/visual 0.3 each (seeded); the "
              "others without. Metric Non0_acc_2 (%) on the test split; each level is applied with a fixed seed, so "
              "every run sees the same corrupted samples. `drop` removes the modality from that share of the "
              "samples (flagged missing: `present` False); `noise` adds Gaussian noise of std level × the feature's "
              "std (the modality stays flagged present).", "",
              "## Summary: mean Non0_acc_2 over levels 0–0.9 (RR, area under the curve), and the score at 0.9", "",
              "| run | " + " | ".join(f"{k} {m}" for k in ("drop", "noise") for m in ("text", "audio", "visual", "all"))
              + " |", "|:---|" + "---:|" * 8,
              f"| {CONSTANT_ROW} | " + " | ".join([f"{const:.1f} ({const:.1f})"] * 8) + " |"]
    for r in runs:
        cells = []
        for kind in ("drop", "noise"):
            for mod in ("text", "audio", "visual", "all"):
                c = key[(r, kind, mod)]
                cells.append(f"{_area(c):.1f} ({c['mean'][-1]:.1f})")
        lines.append(f"| `{r}` | " + " | ".join(cells) + " |")
    lines += ["", "## Where EBMC is or is not more robust (auto-generated from the curves)", ""]
    lines += _findings(key, runs)
    lines += ["", "Figures: `robustness_mosi_u/robustness.png` (all panels, written by `accord robustness`) and "
              + ", ".join(f"`{p.relative_to(RESULTS)}`" for p in per_panel_pngs) + ".", "",
              "## Full table (from `accord robustness`)", "",
              f"The {CONSTANT_ROW} reads no input, so it scores Non0_acc_2 {const:.1f} at every level of every "
              f"corruption (RR {const:.1f}); it is the first row of the table below.", "",
              res["markdown"].rstrip("\n"), ""]
    (RESULTS / "robustness_mosi_u.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "robustness_mosi_u.md").read_text())


def finished_view(src: Path, dest: Path) -> Path:
    """A folder of symlinks exposing only the FINISHED seeds of every run in ``src`` (an interrupted seed already has
    a ``best.safetensors`` and would otherwise be scored); the source stays intact for ``--resume``."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    for rd in rundir.find_runs(src):
        seeds = finished_seeds(rd)
        if not seeds:
            continue
        (dest / rd.name).mkdir(parents=True)
        for f in (rundir.CONFIG, rundir.DATASET):
            (dest / rd.name / f).symlink_to((rd / f).resolve())
        for s in seeds:
            (dest / rd.name / f"seed_{s}").symlink_to((rd / f"seed_{s}").resolve())
    return dest


def _area(c: dict[str, Any]) -> float:
    """Relative robustness of a curve (its mean over levels, area under the curve)."""
    return area_under(c["levels"], c["mean"])


def _findings(key: dict[tuple[str, str, str], dict[str, Any]], runs: list[str]) -> list[str]:
    out: list[str] = []
    for ebmc in [r for r in runs if r.startswith("ebmc")]:
        others = [r for r in runs if not r.startswith("ebmc")]
        for kind in ("drop", "noise"):
            for mod in ("text", "audio", "visual", "all"):
                e = key[(ebmc, kind, mod)]
                comps = []
                for o in others:
                    c = key[(o, kind, mod)]
                    diff = [a - b for a, b in zip(e["mean"], c["mean"], strict=True)]
                    comps.append(f"{o} {_area(c):.1f} (Δ {_area(e) - _area(c):+.1f}; at 0.9 {diff[-1]:+.1f})")
                best = max(others + [ebmc], key=lambda r: _area(key[(r, kind, mod)]))
                out.append(f"- `{ebmc}`, {kind} {mod}: RR {_area(e):.1f} (0.9: {e['mean'][-1]:.1f} ± "
                           f"{e['std'][-1]:.1f}) vs " + "; ".join(comps) + f" — most robust: `{best}`.")
    return out


def _panel_plots(curves: list[dict[str, Any]], dest: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind in ("drop", "noise"):
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
        for ax, mod in zip(axes, ("text", "audio", "visual", "all"), strict=True):
            for c in curves:
                if c["kind"] == kind and c["modality"] == mod:
                    m, s = np.asarray(c["mean"]), np.asarray(c["std"])
                    style = "-" if c["run"].startswith("ebmc") else "--"
                    ax.plot(c["levels"], m, style, marker="o", ms=3, label=c["run"])
                    ax.fill_between(c["levels"], m - s, m + s, alpha=0.12)
            ax.set_title(f"{kind} {mod}")
            ax.set_xlabel("level")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("Non0_acc_2 (%), test")
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        p = dest / f"robustness_{kind}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


# --- trust under drop --------------------------------------------------------------------------------------------
def _silent_zero(split: Any, m: str) -> Any:
    """The split with modality ``m``'s features zeroed but its lengths kept (so it stays flagged present)."""
    from accord.data.corrupt import apply_corruption

    out = apply_corruption(split, f"noise:{m}:0")  # level 0 = an exact copy
    out.features[m] = torch.zeros_like(out.features[m])
    return out


def trust_rows(run_dir: Path, datasets: DatasetCache) -> list[str]:
    """Rows: modality × condition -> mean trust w_m over test samples (mean ± std over seeds)."""
    from accord import api
    from accord.data.corrupt import apply_corruption
    from accord.training.trainer import load_run, predict_split, resolve_device

    cfg, _ = load_run(run_dir)
    ds = datasets.get(cfg.data)
    part = ds["test"]
    dev = resolve_device("cpu")
    models = [api.load(run_dir, seed=s, device="cpu") for s in finished_seeds(run_dir)]
    rows = []
    for m in MODS:
        conds = {"present (clean)": part, "dropped (flagged missing)": apply_corruption(part, f"drop:{m}:1.0"),
                 "zero-filled, still flagged present": _silent_zero(part, m),
                 "noise level 1.0": apply_corruption(part, f"noise:{m}:1.0")}
        cells, teacher = [], []
        for split in conds.values():
            vals = []
            for model in models:
                _, diags = predict_split(model, split, cfg.task.kind, 256, dev)
                present = split.lengths[m] > 0
                w = diags[f"trust_{m}"]
                vals.append(float(w.mean()))
                if split is part:
                    teacher.append(float(diags[f"teacher_{m}"][present.numpy()].mean()))
            cells.append(_ms(vals, 3))
        rows.append(f"| `{run_dir.name}` | {m} | " + " | ".join(cells) + f" | {_ms(teacher, 3)} | {len(models)} |")
    return rows


def trust(train: bool) -> None:
    if train:
        _run(TRUST_TRAIN)
    header = ("| run | modality | present (clean) | dropped (flagged missing) | zero-filled, still flagged present "
              "| noise level 1.0 | teacher t_m (clean) | seeds |")
    sep = "|:---|:---|" + "---:|" * 6
    lines = ["# EBMC: the trust a modality gets when it is dropped at test time vs present", "",
             "Produced by `python benchmarks/ebmc_study.py trust` (runs trained by the commands below).", "",
             "```bash", *(_cmd(r.argv()) for r in TRUST_TRAIN),
             "# MOSI-U runs: see robustness_mosi_u.md (runs/robustness_mosi-u/ebmc, .../ebmc_moddrop) and "
             "ebmc_ablation_mosi_u.md (runs/ebmc_ablation_mosi-u/ebmc_no_enhance)", "```", "",
             "Each cell: the mean over test samples of the fused trust weight w_m (mean ± std over seeds); w sums "
             "to 1 over the three modalities, so uniform trust is 0.333. Conditions apply to ONE modality for ALL "
             "test samples: `dropped` = `drop:<m>:1.0` (features zeroed, `present` False: the trust logit is masked "
             "AND the teacher is 0 for it); `zero-filled, still flagged present` = features zeroed but lengths kept "
             "(the mask cannot help; only what distillation taught the trust network does); `noise level 1.0` = "
             "`noise:<m>:1.0`. Goal: ≤ 0.1 when dropped.", ""]
    datasets = DatasetCache()
    for title, dirs in (("ConflictBench", sorted((ROOT / TRUST_DIR).glob("ebmc*"))),
                        ("MOSI-U", sorted((ROOT / ROB_DIR).glob("ebmc*"))
                         + [ROOT / ABL_DIR / "ebmc_no_enhance"])):
        dirs = [d for d in dirs if finished_seeds(d)]
        if not dirs:
            continue
        lines += [f"## {title}", "", header, sep]
        for d in dirs:
            lines += trust_rows(d, datasets)
        lines.append("")
    (RESULTS / "ebmc_trust.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "ebmc_trust.md").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("step", choices=["ablation", "robustness", "trust"])
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the ablation table")
    ap.add_argument("--train", action="store_true", help="train missing runs first")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.chdir(ROOT)  # the runs' output.dir are relative to the repository root, as in the commands written out
    if a.step == "ablation":
        ablation(a.seeds, a.train)
    elif a.step == "robustness":
        robustness(a.train)
    else:
        trust(a.train)


if __name__ == "__main__":
    main()
