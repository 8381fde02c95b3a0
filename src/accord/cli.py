"""The ``accord`` command line (typer): a face over :mod:`accord.api`.

Every command parses its arguments, calls ONE function of :mod:`accord.api` (imported when the command runs, so
``accord --help`` stays fast) and prints what it returns; nothing else of Accord is imported here but the core's
errors. User errors (bad config key, bad file, missing run) print one line ``error: ...`` and exit with status 2.
Messages are printed verbatim (no rich markup), so a path such as ``mosi[raw].pkl`` is shown as it is.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from accord.core.errors import AccordError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Accord: multimodal sentiment analysis that shows imbalance and conflict.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect, build and convert datasets.")
app.add_typer(data_app, name="data")
plot_app = typer.Typer(no_args_is_help=True, help="Draw a run's diagnostics to PNG.")
app.add_typer(plot_app, name="plot")
augment_app = typer.Typer(no_args_is_help=True, help="QASA: fit a feature-space generator + quality scorer, sample.")
app.add_typer(augment_app, name="augment")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved configuration.")
app.add_typer(config_app, name="config")
# markup=False: messages carry user text (paths, config values, hints) that must print verbatim
err_console = Console(stderr=True, markup=False, highlight=False)
out_console = Console(markup=False, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key: a.b=value")]


def user_errors(fn: F) -> F:
    """Turn AccordError (StorageError included: disk full, a read-only folder, a name too long), FloatingPointError
    from training and any other error of the operating system into one line on stderr and exit code 2 (a stopped
    sweep: 128 + the signal)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AccordError, FloatingPointError) as err:
            _error(str(err), getattr(err, "exit_code", 2))  # a stopped sweep: 128 + the signal
        except OSError as err:  # one Accord does not turn into a StorageError itself: the path and the cause
            where = f"{os.fsdecode(err.filename)}: " if err.filename is not None else ""
            _error(" ".join(f"{where}{err.strerror or err}".split()))

    return wrapper  # type: ignore[return-value]


def _error(message: str, code: int = 2) -> NoReturn:
    """``error: <message>`` on stderr, verbatim, and exit ``code`` (2: a user error)."""
    err_console.print(Text.assemble(("error:", "bold red"), f" {message}"), soft_wrap=True)
    raise typer.Exit(code) from None


def _print_markdown(md: str) -> None:
    if out_console.is_terminal:
        from rich.markdown import Markdown

        out_console.print(Markdown(md))
    else:
        sys.stdout.write(md)
        sys.stdout.flush()


def _names(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _say(message: str) -> None:
    """One line on stderr, verbatim."""
    err_console.print(message, soft_wrap=True)


@app.command()
@user_errors
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (optional with --method/--dataset)")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Registered model name")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Registered dataset name")] = None,
    set_: SetOpt = None,
    seeds: Annotated[int | None, typer.Option(help="Train seeds 0..N-1 (overrides train.seeds)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run of the same name first")] = False,
) -> None:
    """Train one method (all its seeds); writes the run directory and prints the summary."""
    from accord import api

    run = api.train_run(config, method=method, dataset=dataset, overrides=set_ or [], seeds=seeds, resume=resume,
                        overwrite=overwrite, console=err_console)
    if run.markdown is None:  # under torchrun only rank 0 reports (and only it wrote the run directory)
        return
    _print_markdown(run.markdown)
    _say(f"run directory: {run.run_dir}")


@app.command()
@user_errors
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by accord train")],
    corrupt: Annotated[list[str] | None, typer.Option(help="kind:modality:level, e.g. drop:audio:0.5")] = None,
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    save: Annotated[bool, typer.Option(help="Save eval_<split>_<tag>.json into the run directory")] = True,
    on: Annotated[str | None, typer.Option(help="Evaluate on ANOTHER registered dataset (cross-dataset)")] = None,
    on_set: Annotated[list[str] | None, typer.Option(help="key=value of --on's data.params, e.g. split=standard")
                      ] = None,
    on_path: Annotated[str | None, typer.Option(help="--on's data.path (where the dataset needs one)")] = None,
) -> None:
    """Evaluate a trained run (every seed), optionally with corrupted inputs or on another dataset (``--on mosi-u
    --on-set split=standard``); prints mean ± std (and saves them beside the run unless --no-save; a run directory
    that cannot be written is said in one line, not an error)."""
    from accord import api

    res = api.evaluate(run_dir, corrupt=corrupt, split=split, write=save, on=on, on_overrides=on_set,
                       on_path=on_path)
    _print_markdown(res["markdown"])
    if res.get("not_saved"):
        _say(f"warning: results not saved: {res['not_saved']}")


@app.command()
@user_errors
def benchmark(
    methods: Annotated[str, typer.Option(help="Comma-separated registered model names")],
    dataset: Annotated[str | None, typer.Option(help="Registered dataset name (default conflictbench)")] = None,
    folds: Annotated[Path | None, typer.Option(help="A k-fold dataset folder (folds.json): every method on every "
                                                    "fold; instead of --dataset")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 for every method")] = 5,
    out: Annotated[Path | None, typer.Option(help="Folder for the runs (default runs/benchmark_<dataset>, "
                                                  "runs/benchmark_folds_<folder>)")] = None,
    table: Annotated[Path | None, typer.Option(help="Also write the Markdown table here")] = None,
    set_: SetOpt = None,
    config: Annotated[list[Path] | None, typer.Option(help="Extra YAML merged into every method's config")] = None,
    resume: Annotated[bool, typer.Option(help="Keep finished seeds and continue interrupted ones")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start every method's run over")] = False,
    workers: Annotated[int, typer.Option(help="Methods trained at once, in processes sharing the cores (the last "
                                              "listed starts first)")] = 1,
) -> None:
    """Train several methods with the same seeds and data; one table of test mean ± std (with --folds: per-fold
    tables and one across folds)."""
    from accord import api

    res = api.benchmark(_names(methods), dataset, seeds, out, overrides=set_ or [], config_files=config or [],
                        table=table, resume=resume, overwrite=overwrite, console=err_console, workers=workers,
                        folds=folds)
    _print_markdown(res["markdown"])


DEFAULT_LEVELS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


@app.command()
@user_errors
def robustness(
    targets: Annotated[list[Path], typer.Argument(help="Run directories and/or benchmark folders to compare")],
    modality: Annotated[str, typer.Option(help="Comma-separated: text,audio,visual,all")] = "text,audio,visual,all",
    corruption: Annotated[str, typer.Option(help="Comma-separated: drop,noise,temporal_drop")] = "drop,noise",
    levels: Annotated[str, typer.Option(help="Comma-separated levels starting at 0")] = DEFAULT_LEVELS,
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    metric: Annotated[str | None, typer.Option(help="Metric (default Non0_acc_2 / Acc / Mult_acc_2)")] = None,
    reference: Annotated[str, typer.Option(help="Run that effective robustness is measured against")] = "late_fusion",
    out: Annotated[Path | None, typer.Option(help="Folder for robustness.{md,json,png}")] = None,
) -> None:
    """Scores under dropped / noisy modalities at increasing levels: a table, curves (PNG), relative and effective
    robustness (MultiBench-style), and the trivial-baseline row (the same at every level)."""
    from accord import api

    res = api.robustness(list(targets), modalities=_names(modality), corruptions=_names(corruption), levels=levels,
                         split=split, metric=metric, reference=reference, out=out)
    _print_markdown(res["markdown"])
    _say(f"figure: {res['png']}")


@app.command()
@user_errors
def report(
    target: Annotated[Path, typer.Argument(help="A run directory or a benchmark folder")],
    out: Annotated[Path | None, typer.Option(help="HTML file (default TARGET/report.html)")] = None,
    split: Annotated[str, typer.Option(help="Split whose per-sample diagnostics are drawn: valid or test")] = "test",
) -> None:
    """One self-contained HTML report: config, metrics (mean ± std), training curves and diagnostics."""
    from accord import api

    _say(f"wrote {api.report(target, out=out, split=split)}")


@app.command()
@user_errors
def probe(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by accord train")],
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    save: Annotated[bool, typer.Option(help="Save probe_<split>.json into the run directory")] = True,
) -> None:
    """Mechanism probes of a trained run: does each method's mechanism do what its paper says (CACR's H_n-dependence
    and conflict AUROC, CP's projected share, EBMC's trust of a dropped or noised modality, QASA's weight-error
    correlation, Self-MM's label drift)."""
    from accord import api

    _print_markdown(api.probe(run_dir, split=split, write=save)["markdown"])


DEMO_METHODS = "text,audio,visual,early_fusion,late_fusion,tfn,mult"


@app.command()
@user_errors
def demo(
    seeds: Annotated[int, typer.Option(help="Seeds per method")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the demo runs")] = Path("runs/demo"),
    methods: Annotated[str, typer.Option(help="Methods to compare")] = DEMO_METHODS,
    workers: Annotated[int | None, typer.Option(help="Methods trained at once, in processes (default 2, or 1 on "
                                                     "one core)")] = None,
) -> None:
    """The main job on the built-in data: baselines on ConflictBench (text dominates, 20% planted conflicts)."""
    from accord import api

    _print_markdown(api.demo(seeds, out, _names(methods), console=err_console, workers=workers)["markdown"])


@app.command()
@user_errors
def ablate(
    method: Annotated[str, typer.Option(help="A model that declares an ablation table (e.g. cacr)")] = "cacr",
    dataset: Annotated[str, typer.Option(help="Registered dataset name")] = "conflictbench",
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 for every configuration")] = 5,
    only: Annotated[str | None, typer.Option(help="Comma-separated subset of the ablations (default: all)")] = None,
    out: Annotated[Path | None, typer.Option(help="Runs folder (default runs/ablate_<method>_<dataset>)")] = None,
    table: Annotated[Path | None, typer.Option(help="Also write the Markdown table here")] = None,
    set_: SetOpt = None,
    config: Annotated[list[Path] | None, typer.Option(help="Extra YAML merged into every configuration")] = None,
    resume: Annotated[bool, typer.Option(help="Keep finished seeds and continue interrupted ones")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start every configuration's run over")] = False,
) -> None:
    """Re-run a method's ablation table (one run per --set model.params.ablation=...); one table, paper layout."""
    from accord import api

    res = api.ablate(method, dataset, seeds, out, names=_names(only) if only else None, overrides=set_ or [],
                     config_files=config or [], table=table, resume=resume, overwrite=overwrite, console=err_console)
    _print_markdown(res["markdown"])


@app.command()
@user_errors
def sweep(
    method: Annotated[str, typer.Option("--method", "-m", help="Registered model name")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Registered dataset name")],
    trials: Annotated[int, typer.Option(help="Finished trials (COMPLETE + PRUNED) to reach, across restarts")],
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL: sqlite:///sweeps.db, postgresql://user@host/db")],
    study: Annotated[str | None, typer.Option(help="Study name (default <method>_<dataset>)")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine, sharing the study")] = 1,
    space: Annotated[Path | None, typer.Option(help="Search space YAML (default configs/sweeps/<method>.yaml)")]
    = None,
    final_seeds: Annotated[str, typer.Option(help="Seeds of the best config's final re-run")] = "0,1,2,3,4",
    seed: Annotated[int, typer.Option(help="The one training seed of every trial")] = 0,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Results Markdown (JSON beside it); default in the sweep dir")]
    = None,
    final: Annotated[bool, typer.Option(help="Re-run the best config on the final seeds when N trials are done")]
    = True,
    baseline_run: Annotated[Path | None, typer.Option(help="Finished run of the untuned default to compare with "
                                                           "(default: train it on the final seeds)")] = None,
    prune: Annotated[bool, typer.Option(help="Median pruning on per-epoch validation scores")] = True,
) -> None:
    """Hyper-parameter search (optuna) on the VALIDATION metric; resumable, several workers/machines per study."""
    from accord import api

    command = "accord " + " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name == "accord" else None
    res = api.sweep(method, dataset, trials, storage, study=study, workers=workers, space=space,
                    final_seeds=final_seeds, seed=seed, overrides=set_ or [], out=out, final=final,
                    baseline_run=baseline_run, prune=prune, command=command, log=_say)
    _print_markdown(res["markdown"])
    _say(f"wrote {res['path']} and {res['path'].with_suffix('.json')}")


@app.command()
@user_errors
def extract(
    source: Annotated[Path, typer.Argument(help="A clip (audio or video file) or a folder of clips")],
    out: Annotated[Path, typer.Option(help="Output folder: clips/<id>.npz cache, dataset/ when labelled")],
    csv_file: Annotated[Path | None, typer.Option("--csv", help="CSV id,text,label,split (id = file stem)")] = None,
    text: Annotated[str | None, typer.Option(help="Transcript of a single clip (no speech recogniser ships)")] = None,
    level: Annotated[str, typer.Option(help="vector (one step per clip) or sequence (tokens/frames)")] = "vector",
    fps: Annotated[float, typer.Option(help="Frames per second sampled for face landmarks")] = 5.0,
    audio_pool: Annotated[int, typer.Option(help="eGeMAPS 10 ms frames averaged per sequence step")] = 10,
    max_side: Annotated[int, typer.Option(help="Long side (pixels) frames are scaled down to for face landmarks")
                        ] = 480,
    face_retry_side: Annotated[int, typer.Option(help="No face found: decode again with this long side (never "
                                                      "enlarged) and search in tiles; 0: no retry")] = 1920,
) -> None:
    """Offline features (MiniLM text, eGeMAPS audio, face geometry) -> per-clip cache and a safe-format dataset.
    MediaPipe/TFLite's own log lines go to OUT/extract.log."""
    from accord import api

    rep = api.extract(source, out, csv_path=csv_file, text=text, level=level,  # type: ignore[arg-type]
                      fps=fps, audio_pool=audio_pool, max_side=max_side, face_retry_side=face_retry_side,
                      on_clip=lambda cid, st: _say(f"{cid}: {st}") if st.startswith("failed") else None)
    _say(f"{len(rep.done)} extracted, {len(rep.skipped)} already done (skipped), {len(rep.failed)} failed"
         + (f"; face found only by the retry at a larger size: {', '.join(rep.retried)}" if rep.retried else "")
         + f"; native log: {rep.log}")
    for cid, why in rep.missing.items():
        _say(f"  {cid}: " + "; ".join(f"{m} {r}" for m, r in why.items()))
    if rep.dataset is not None:
        _say(f"wrote dataset {out / 'dataset'} ({', '.join(f'{k} {len(v)}' for k, v in rep.dataset.splits.items())});"
             f" train on it with --set data.name=saved --set data.path={out / 'dataset'}")
    else:
        _say(rep.note)
    if rep.failed and not (rep.done or rep.skipped):
        raise typer.Exit(1)


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Option("--model", help="A run directory trained on extractable features")],
    clip: Annotated[Path | None, typer.Argument(help="An audio or video file (omit it to score --text alone)")] = None,
    text: Annotated[str | None, typer.Option(help="Transcript (default: sidecar .txt/.srt beside the clip)")] = None,
    seed: Annotated[int | None, typer.Option(help="Which seed's checkpoint (default: the first)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Score one clip, or a text alone: sentiment score, polarity, per-modality trust/conflict diagnostics and the
    Shapley attribution of the prediction over the modalities."""
    from accord import api

    if clip is None and text is None:
        _error("give a clip (an audio or video file) and/or --text")
    res = api.predict_clip(clip, model, text=text, seed=seed)
    if as_json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        out_console.print(api.format_prediction(res), soft_wrap=True)


@app.command()
@user_errors
def attribute(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by accord train")],
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    save: Annotated[bool, typer.Option(help="Save attribution_<split>.json into the run directory")] = True,
) -> None:
    """Exact Shapley attribution over the modalities of every sample of a split: mean |phi| per modality and the
    share of samples whose modalities pull the prediction opposite ways (shown by accord report)."""
    from accord import api

    res = api.attribution(run_dir, split=split, write=save)
    out_console.print(f"{run_dir} ({res['method']}, {split}, {res['n']} samples, mean over "
                      f"{len(res['per_seed'])} seed(s)):", soft_wrap=True)
    for m, v in res["mean_abs_phi"].items():
        out_console.print(f"  {m:<7} mean |phi| {v:.4f}  mean phi {res['mean_phi'][m]:+.4f}  present in "
                          f"{res['present_share'][m]:.0%}", soft_wrap=True)
    out_console.print(f"  modalities disagree on {res['disagree_share']:.1%} of samples (tau = "
                      f"{res['disagree_fraction']:g} * sum |phi|)", soft_wrap=True)
    if res.get("saved"):
        _say(f"wrote {res['saved']}")


@app.command()
@user_errors
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run directory trained on extractable features")],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload, MB")] = 50.0,
    max_batch: Annotated[int, typer.Option(help="Most items in one POST /predict/batch")] = 64,
    seed: Annotated[int | None, typer.Option(help="Which seed's checkpoint (default: the first)")] = None,
    compile_mode: Annotated[str, typer.Option("--compile", help="torch.compile the model: off, inductor or eager "
                                              "(graphs built at start-up)")] = "off",
) -> None:
    """Serve a trained run over HTTP (FastAPI + uvicorn): POST /predict, POST /predict/batch, GET /health,
    GET /model, docs at /docs. The model is loaded once at start-up (docs/serving.md)."""
    from accord.server import run_server

    run_server(run_dir, host=host, port=port, max_upload_mb=max_upload_mb, max_batch=max_batch, seed=seed,
               log=_say, compile=compile_mode)


@app.command("list")
def list_cmd() -> None:
    """Registered models, datasets and trainer hooks."""
    from accord import api

    names = api.registered()
    out_console.print("models:   " + ", ".join(names["models"]), soft_wrap=True)
    out_console.print("datasets: " + ", ".join(names["datasets"]), soft_wrap=True)
    out_console.print("hooks:    " + (", ".join(names["hooks"]) or "none"), soft_wrap=True)


@config_app.command("show")
@user_errors
def config_show(
    files: Annotated[list[Path] | None, typer.Argument(help="YAML config file(s), merged in order after the "
                                                            "packaged defaults")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Registered model name")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Registered dataset name")] = None,
    set_: SetOpt = None,
) -> None:
    """Print the resolved config, each value followed by the layer it came from (code default, packaged dataset or
    method file, your file, --set)."""
    from accord import api

    sys.stdout.write(api.config_show(method, dataset, files or [], set_ or []))
    sys.stdout.flush()


@plot_app.command("gradients")
@user_errors
def plot_gradients_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run trained with train.hooks=[{name: grad_monitor}]")],
    seed: Annotated[int | None, typer.Option(help="Seed to draw (default: the first one with monitor lines)")] = None,
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN_DIR/gradients_seed<s>.png)")] = None,
    kappa: Annotated[float | None, typer.Option(help="Conflict threshold to draw (default: the run's)")] = None,
) -> None:
    """Per-step gradient norms g_m and imbalance ratios r_m of the gradient monitor, over training."""
    from accord import api

    _say(f"wrote {api.plot_gradients(run_dir, seed=seed, out=out, kappa=kappa)}")


@plot_app.command("conflict")
@user_errors
def plot_conflict_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run whose model saves conflict_<m> diagnostics (e.g. cacr)")],
    by: Annotated[str, typer.Option(help="Per-sample key to group by, e.g. extra_conflict, extra_conflict_modality")]
    = "extra_conflict",
    split: Annotated[str, typer.Option(help="valid or test")] = "test",
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN_DIR/conflict_<split>_<by>.png)")] = None,
) -> None:
    """Distributions of the per-sample conflict scores C_m and weights w_m, split by a saved per-sample label."""
    from accord import api

    _say(f"wrote {api.plot_conflict(run_dir, by=by, split=split, out=out)}")


@data_app.command("info")
@user_errors
def data_info(
    target: Annotated[str, typer.Argument(help="A .pkl, a safe-format folder, or a dataset name")],
    set_: SetOpt = None,
) -> None:
    """Print splits, shapes and label statistics of a dataset."""
    from accord import api

    out_console.print_json(json.dumps(api.data_info(target, set_ or [])))


@data_app.command("build")
@user_errors
def data_build(
    name: Annotated[str, typer.Argument(help="Dataset name: conflictbench, mosi-u, ...")],
    out: Annotated[Path, typer.Option(help="Output folder (safe format)")],
    path: Annotated[str | None, typer.Option(help="Source path for builders that read files")] = None,
    set_: SetOpt = None,
) -> None:
    """Build a registered dataset (e.g. ConflictBench with custom params) and save it in the safe format."""
    from accord import api

    ds = api.data_build(name, out, path=path, overrides=set_ or [])
    _say(f"wrote {out} ({', '.join(f'{k} {len(v)}' for k, v in ds.splits.items())})")


@data_app.command("convert")
@user_errors
def data_convert(
    source: Annotated[Path, typer.Argument(help="An MMSA pickle (aligned_50.pkl, unaligned_50.pkl, ...)")],
    out: Annotated[Path, typer.Argument(help="Output folder (safe format: manifest.json + <split>.npz)")],
    nonfinite: Annotated[str, typer.Option(help="error or zero: what to do with NaN/Inf features")] = "error",
) -> None:
    """Convert an MMSA pickle to the safe format (no pickle needed to read it back)."""
    from accord import api

    _say(f"wrote {api.data_convert(source, out, nonfinite=nonfinite)}")


@data_app.command("import")
@user_errors
def data_import(
    table: Annotated[Path, typer.Argument(help="The corpus table: .csv, .tsv/.tab or .jsonl/.ndjson (any common "
                                               "encoding)")],
    out: Annotated[Path, typer.Option(help="Output dataset folder (k folds: OUT/fold_<i>/ and OUT/folds.json)")],
    media: Annotated[Path | None, typer.Option(help="Folder of the clips (by the media column, or <id>.<ext>)")]
    = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, tsv or jsonl (default: by extension)")] = None,
    encoding: Annotated[str | None, typer.Option(help="The table's encoding (default: detected)")] = None,
    columns: Annotated[Path | None, typer.Option(help="YAML {id,text,label,split,group,context,media: column}")]
    = None,
    id_col: Annotated[str | None, typer.Option(help="Id column (default 'id'; none: row numbers)")] = None,
    text_col: Annotated[str | None, typer.Option(help="Text column (default 'text')")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column (default 'label')")] = None,
    split_col: Annotated[str | None, typer.Option(help="Split column: train/valid/test (default 'split')")] = None,
    group_col: Annotated[str | None, typer.Option(help="Group column (speaker, video, show; default 'group')")]
    = None,
    context_col: Annotated[str | None, typer.Option(help="Context column, encoded as 'context [SEP] text'")] = None,
    media_col: Annotated[str | None, typer.Option(help="Clip path column, relative to --media (default 'media')")]
    = None,
    task: Annotated[str, typer.Option(help="regression or classification")] = "regression",
    label_range: Annotated[str, typer.Option(help="Regression labels' range LO,HI")] = "-3,3",
    classes: Annotated[str | None, typer.Option(help="Class names in order (index = position): a,b,c")] = None,
    split: Annotated[str | None, typer.Option(help="Draw splits: TRAIN,VALID,TEST shares, e.g. 0.7,0.15,0.15")]
    = None,
    group_by: Annotated[str | None, typer.Option(help="Keep each group's rows in one split/fold (a column)")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of --split / --folds")] = 0,
    folds: Annotated[int | None, typer.Option(help="K folds: OUT/fold_<i>/ with test = fold i")] = None,
    folds_file: Annotated[Path | None, typer.Option(help="A table id,fold giving each row's fold")] = None,
    valid_share: Annotated[float, typer.Option(help="With folds: share of the other folds' groups for valid")]
    = 0.15,
    level: Annotated[str, typer.Option(help="vector (one step) or sequence (tokens/frames)")] = "vector",
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the table's stem)")] = None,
    fps: Annotated[float, typer.Option(help="With --media: frames per second for face landmarks")] = 5.0,
    audio_pool: Annotated[int, typer.Option(help="With --media: eGeMAPS frames per sequence step")] = 10,
) -> None:
    """Import your own corpus (a table, and optionally clips) as a safe-format dataset (docs/your_data.md)."""
    from accord import api

    cols = {"id": id_col, "text": text_col, "label": label_col, "split": split_col, "group": group_col,
            "context": context_col, "media": media_col}
    rep = api.data_import(table, out, media=media, format=fmt, encoding=encoding, columns=cols, columns_file=columns,
                          task=task, label_range=label_range, classes=classes, split=split, folds=folds,
                          folds_file=folds_file, group_by=group_by, seed=seed, valid_share=valid_share, level=level,
                          name=name, fps=fps, audio_pool=audio_pool)
    for line in rep.summary_lines():
        _say(line)


@augment_app.command("fit")
@user_errors
def augment_fit(
    target: Annotated[str, typer.Argument(help="A run directory, a dataset name, an MMSA .pkl or a dataset folder")],
    out: Annotated[Path | None, typer.Option(help="Generator folder (default runs/generator_<dataset>)")] = None,
    set_: SetOpt = None,
) -> None:
    """Fit the conditional diffusion generator and the quality scorer on the TRAINING split only (QASA)."""
    from accord import api

    folder, generator, scorer = api.augment_fit(target, set_ or [], out, log=_say)
    _say(f"wrote {folder} (generator of {', '.join(generator.modalities)}: {generator.info['fit_seconds']:.1f}s on "
         f"{generator.info['n_train']} training rows; scorer ridge alpha {scorer.info['alpha']})")


@augment_app.command("sample")
@user_errors
def augment_sample(
    generator_dir: Annotated[Path, typer.Argument(help="A folder written by `accord augment fit`")],
    out: Annotated[Path, typer.Option(help="Output dataset folder (safe format, training split augmented)")],
    per_sample: Annotated[int, typer.Option("--per-sample", "-k", help="Generated rows per real training row")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
) -> None:
    """Draw K scored variants per real training row; save the augmented dataset with every score."""
    from accord import api

    info = api.augment_sample(generator_dir, out, per_sample=per_sample, seed=seed).meta["qasa"]
    stats = ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in info["generated_scores"].items())
    _say(f"wrote {out}: {info['real_rows']} real + {info['generated_rows']} generated training rows; "
         f"generated scores {stats}")
    _say(f"train on it: accord train ... --set augment.source={out} --set augment.per_sample={per_sample}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
