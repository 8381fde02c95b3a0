"""A sweep's results file: the invocations (interruptions, resumption), the search space, the top trials, the best
trial and (after the final re-run) its numbers on test, as Markdown with a JSON beside it."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.core import rundir
from accord.core.io import atomic_write_text, write_json
from accord.studies.sweep.options import SweepOptions, fmt_value, sweep_dir
from accord.studies.sweep.space import SweepSpace
from accord.studies.sweep.storage import count_states, finished_states, n_finished, safe_url

if TYPE_CHECKING:
    import optuna

MOSI_U_CAVEAT = (
    "**Caveat (MOSI-U).** The validation videos are training videos of the bc-LSTM feature extractors, so validation "
    "scores are optimistic (about 98% Non0_acc_2 for every model) and only weakly related to test: the search "
    "optimises a nearly saturated, partly leaked signal, and a better validation score need not carry over to test. "
    "Only the test numbers of the final re-run are clean.")


def trial_seconds(t: Any) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
    return None


def top_trials(study: optuna.Study, mode: str, k: int = 10) -> list[Any]:
    """The ``k`` best finished trials (COMPLETE by value; PRUNED by their best validation value when pruned)."""
    scored = [(t.value, t) for t in study.get_trials(deepcopy=False, states=finished_states())
              if t.value is not None and math.isfinite(t.value)]
    scored.sort(key=lambda vt: (vt[0] if mode == "min" else -vt[0], vt[1].number))
    return [t for _, t in scored[:k]]


def sessions(study: optuna.Study) -> list[dict[str, Any]]:
    """Session records (one per invocation of the sweep), oldest first, with the activity of interrupted ones."""
    out = [dict(v, key=k) for k, v in study.user_attrs.items() if k.startswith("session:")]
    out.sort(key=lambda s: (s["started"], s.get("t0", 0.0)))
    trials = study.get_trials(deepcopy=False)
    for s in out:
        mine = [t for t in trials if t.user_attrs.get("session") == s["key"]]
        s["trials_run"] = sorted(t.number for t in mine)
        s["trials_by_state"] = dict(Counter(t.state.name for t in mine))
        ends = [t.datetime_complete for t in mine if t.datetime_complete and t.state.name in ("COMPLETE", "PRUNED")]
        s["last_trial_end"] = max(ends).isoformat(timespec="seconds") if ends else None
        s["left_running"] = sorted(r["number"] for later in out for r in later.get("recovered", [])
                                   if r["number"] in s["trials_run"])
    return out


def _session_story(ss: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, s in enumerate(ss, 1):
        st = s.get("at_start", {})
        head = (f"{i}. `{s['started']}` on {s['host']} (pid {s['pid']}), {s['workers']} worker(s): at start "
                f"{n_finished(st)} finished ({_states(st)})")
        if s.get("recovered"):
            head += "; RUNNING trials of dead workers failed and re-enqueued with the same params: " + ", ".join(
                f"#{r['number']} (pid {r['pid']}) -> #{r['requeued_as']}" for r in s["recovered"])
        if s.get("ended"):
            head += (f"; its trials ended `{s['ended']}` after {s['seconds']:.0f} s wall-clock with "
                     f"{n_finished(s['at_end'])} finished ({_states(s['at_end'])})")
        else:
            done = {k: v for k, v in s["trials_by_state"].items() if k in ("COMPLETE", "PRUNED")}
            head += (f"; INTERRUPTED (no end record): its workers finished {sum(done.values())} trial(s) "
                     f"({_states(done)}), the last at `{s['last_trial_end']}`, and left "
                     f"{len(s['left_running'])} RUNNING when killed ("
                     + (", ".join(f"#{n}" for n in s["left_running"]) or "none recovered yet") + ")")
            if i < len(ss):
                upto = (datetime.fromisoformat(ss[i]["started"]) - datetime.fromisoformat(s["started"]))
                head += f"; it ran at most {upto.total_seconds():.0f} s (until the next invocation started)"
        if s.get("final_started"):
            head += (f"; final re-run started `{s['final_started']}`, " + (
                f"ended `{s['final_ended']}` after {s['final_seconds']:.0f} s" if s.get("final_ended")
                else "INTERRUPTED (no end record; it resumes from its checkpoints)"))
        lines.append(head + ".")
    return lines


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"




def _median(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _header_lines(study: optuna.Study, opts: SweepOptions, metric: str, counts: dict[str, int],
                  ss: list[dict[str, Any]], spent: list[float]) -> list[str]:
    """Title, what the study optimises, time spent, and the story of its invocations."""
    return [
        f"# Hyper-parameter sweep: {opts.method} on {opts.dataset}",
        "",
        f"Study `{opts.study_name}` in `{safe_url(opts.storage)}` ({len(ss)} invocation(s)): direction "
        f"{study.direction.name.lower()} on the VALIDATION {metric} of one seed ({opts.seed}) per trial; test was "
        f"never computed during the search (trials evaluate the selected checkpoint on validation only). Target "
        f"N = {opts.trials} finished trials (COMPLETE + PRUNED). Trials by state: {_states(counts)}. Workers per "
        f"invocation: {', '.join(str(s['workers']) for s in ss)}. Sampler TPE (multivariate, constant liar); "
        f"pruner {'MedianPruner (5 startup trials, 5 warm-up epochs)' if opts.pruning else 'none'}.",
        "",
        f"Training time of finished trials: {sum(spent):.0f} s in total, median {_median(spent):.0f} s per trial "
        f"(wall-clock per invocation below).",
        "",
        "## Invocations (interruptions and resumption)",
        "",
        *_session_story(ss),
        "",
    ]


def _notes_lines(study: optuna.Study, retried: list[Any]) -> list[str]:
    """Free-text notes an operator attached to the study (``study.set_user_attr("note:<when>", text)``) and the
    re-enqueued trials."""
    lines: list[str] = []
    notes = [str(v) for k, v in sorted(study.user_attrs.items()) if k.startswith("note:")]
    if notes:
        lines += ["Notes attached to the study:", "", *(f"* {n}" for n in notes), ""]
    if retried:
        lines += ["Re-enqueued trials: " + ", ".join(f"#{t.number} (retry of #{t.system_attrs['failed_trial']}, "
                                                     f"{t.state.name})" for t in retried) + ".", ""]
    return lines


def _trial_lines(space: SweepSpace, space_source: str, metric: str, top: list[Any], best: Any) -> list[str]:
    """The search space, the top trials and the best trial."""
    keys = list(space.params)
    lines = [f"## Search space ({space_source})", "", "| key | distribution |", "|:---|:---|"]
    lines += [f"| `{k}` | {p.describe()} |" for k, p in space.params.items()]
    lines += ["", f"## Top trials ({len(top)} best finished, by validation {metric})", "",
              "| trial | state | valid " + metric + " | seconds | " + " | ".join(f"`{k}`" for k in keys) + " |",
              "|---:|:---|---:|---:|" + "---:|" * len(keys)]
    for t in top:
        lines.append(f"| {t.number} | {t.state.name} | {t.value:.4f} | {trial_seconds(t) or 0:.0f} | "
                     + " | ".join(fmt_value(t.params.get(k, "")) for k in keys) + " |")
    constant = constant_valid(best, metric)
    if constant is not None:
        lines.append(f"| constant predictor (train mean / majority class) | — | {constant:.4f} | — | "
                     + " | ".join("—" for _ in keys) + " |")
    lines += ["", f"Best trial: #{best.number}, validation {metric} {best.value:.4f}; params: "
              + ", ".join(f"`{k}={fmt_value(v)}`" for k, v in best.params.items()) + ".", ""]
    return lines


def constant_valid(best: Any, metric: str) -> float | None:
    """The trivial baseline's validation ``metric`` (train mean / majority class), as the best trial's run recorded
    it in its ``summary.json`` (``constant_predictor``); ``None`` when it has none."""
    run = best.user_attrs.get("run_dir")
    if not run or not (Path(run) / rundir.SUMMARY).is_file():
        return None
    cell = (rundir.read_summary(run).get("constant_predictor") or {}).get("valid", {}).get(metric)
    return float(cell["mean"]) if isinstance(cell, dict) and cell.get("mean") is not None else None


def _result_json(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str,
                 counts: dict[str, int], ss: list[dict[str, Any]], top: list[Any], best: Any,
                 all_t: list[Any]) -> dict[str, Any]:
    """The JSON beside the results file."""
    return {
        "study": {"name": opts.study_name, "storage": safe_url(opts.storage), "direction": study.direction.name,
                  "metric": metric, "objective": f"validation {metric}, seed {opts.seed}", "target": opts.trials,
                  "counts": counts, "workers": [s["workers"] for s in ss], "method": opts.method,
                  "dataset": opts.dataset, "overrides": opts.overrides},
        "sessions": ss,
        "space": {k: v.model_dump(exclude_none=True) for k, v in space.params.items()},
        "space_source": space_source,
        "top": [{"number": t.number, "state": t.state.name, "value": t.value, "seconds": trial_seconds(t),
                 "params": t.params, "valid": t.user_attrs.get("valid"), "run_dir": t.user_attrs.get("run_dir")}
                for t in top],
        "best": {"number": best.number, "value": best.value, "params": best.params,
                 "run_dir": best.user_attrs.get("run_dir")},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "seconds": trial_seconds(t),
                    "params": t.params, "user_attrs": {k: v for k, v in t.user_attrs.items()},
                    "retry_of": t.system_attrs.get("failed_trial")} for t in all_t],
    }


def summarise(study: optuna.Study, opts: SweepOptions, space: SweepSpace, space_source: str, metric: str,
              mode: str, final: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the results (Markdown + JSON) and write them atomically (``--out`` or ``<sweep dir>/results.md``)."""
    counts = count_states(study)
    best = study.best_trial
    top = top_trials(study, mode)
    ss = sessions(study)
    all_t = study.get_trials(deepcopy=False)
    retried = [t for t in all_t if "failed_trial" in t.system_attrs]
    spent = [s for s in (trial_seconds(t) for t in all_t if t.state.name in ("COMPLETE", "PRUNED")) if s]
    lines = [*_header_lines(study, opts, metric, counts, ss, spent), *_notes_lines(study, retried),
             *_trial_lines(space, space_source, metric, top, best)]
    result = _result_json(study, opts, space, space_source, metric, counts, ss, top, best, all_t)
    if final:
        lines += final["markdown"]
        result["final"] = final["json"]
    if opts.dataset == "mosi-u":
        lines += [MOSI_U_CAVEAT, ""]
    if opts.command:
        lines += [f"Produced by `{opts.command}`."]
    md = "\n".join(lines) + "\n"
    path = Path(opts.out) if opts.out else sweep_dir(opts) / "results.md"
    atomic_write_text(path, md)
    write_json(path.with_suffix(".json"), result)
    return {"markdown": md, "json": result, "path": path, "best": best, "counts": counts}
