"""Issue 16: Accord vs MMSA 2.2.1 per epoch on the same models, measured again in ONE run (CPU seconds, 1 thread).

Re-measures the speed half of ``benchmarks/vs_mmsa.py`` (whose report, ``vs_mmsa.md``, predates issue 16) with
Accord's current defaults and its new ``data.pool_time`` (audio and visual averaged over time once when the run
loads its data, as MMSA's loader does for TFN and LMF with ``need_normalized``). It reuses that script's MMSA venv,
patches, pickles and workers (``run_mmsa`` / ``run_accord``: one process per run, one thread, load sampled), and
interleaves per model: MMSA, then each Accord variant, then the next model.

Data (MMSA pickles that both frameworks read):

- ``mosi_sized``: ConflictBench at MMSA's MOSI shapes (1284/229/686, text 768x50, audio 5x375, visual 20x500);
- ``mosi_sized_small``: the same shapes with 128/32/32 samples, for full-resolution MulT only (a full epoch at 1284
  samples costs over 1,000 CPU seconds in each framework; per-sample cost does not depend on the sample count);
- ``mosi_u``: real CMU-MOSI utterance features (T = 1), where an epoch is mostly per-batch overhead.

Every run: seed 0, ``--epochs`` epochs (3), the median epoch (train + validation + checkpoint). Accord runs with the
model settings matched to MMSA's MOSI config (``ACCORD_MATCHED`` in vs_mmsa.py). Writes
``benchmarks/results/vs_mmsa_speed.json`` and ``.md``; ``benchmarks/speed_report.py`` quotes them.

Usage::

    python benchmarks/vs_mmsa_speed.py                    # everything (about 15 minutes on a quiet machine)
    python benchmarks/vs_mmsa_speed.py --models tfn,lmf   # a subset (the JSON keeps the other rows; `runs` lists
                                                          # which command made which rows)
    python benchmarks/vs_mmsa_speed.py --data mosi_u --epochs 10 --repeats 3
                                                          # MOSI-U, where a 3-epoch run is noisy: each pair run 3
                                                          # times (rounds interleaved), the row's ratio the median

A row records its ``epochs`` and, with ``--repeats``, every repeat's seconds and ratio (``repeats``); its CPU
seconds and ratio are then the medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_mmsa as vm  # noqa: E402  (the MMSA venv, patches, pickles and workers)

RESULTS = vm.ROOT / "benchmarks" / "results"
OUT_JSON, OUT_MD = RESULTS / "vs_mmsa_speed.json", RESULTS / "vs_mmsa_speed.md"
POOLED = ["data.pool_time=[audio,visual]"]

#: Accord variants per model and dataset: (name, extra --set overrides, what it is).
VARIANTS: dict[str, list[tuple[str, list[str], str]]] = {
    "tfn": [("pooled", POOLED, "audio/visual averaged once (data.pool_time, as MMSA's loader), conv text encoder"),
            ("pooled_none", [*POOLED, "model.params.temporal=none"],
             "audio/visual averaged once, temporal=none (per-step linear text projection + mean)"),
            ("per_step", ["model.params.temporal=none"], "before issue 16's pooling: every step projected")],
    "lmf": [("pooled", POOLED, "audio/visual averaged once (data.pool_time, as MMSA's loader), conv text encoder"),
            ("pooled_none", [*POOLED, "model.params.temporal=none"],
             "audio/visual averaged once, temporal=none (per-step linear text projection + mean)"),
            ("per_step", ["model.params.temporal=none"], "before issue 16's pooling: every step projected")],
    "mult": [("exact", vm.FULL_RES, "full resolution (exact model)")],
    "misa": [("exact", vm.FULL_RES,
              "full resolution (Accord's encoders read every audio/visual step; MMSA's LSTMs at most 50)"),
             ("downsample4", vm.DEFAULT_RES, "audio/visual averaged over windows of 4 steps (Accord's default)"),
             ("text_steps", [*vm.FULL_RES, "data.params.max_len={audio: 50, visual: 50}"],
              "MMSA's work: audio/visual cut to their first 50 steps (MMSA's MISA packs its audio and visual LSTMs "
              "with the TEXT lengths, at most 50; Accord reads up to 50 steps of every sample)"),
             ("text_pooled", [*vm.FULL_RES, "data.params.max_len={audio: 50, visual: 50}", "data.pool_time=[text]"],
              "MMSA's work and text path: audio/visual cut to their first 50 steps, text averaged over time once "
              "(data.pool_time; MMSA's MISA, patched to run without BERT, projects the masked mean of the text "
              "features: the same function as Accord's text projection of the mean)")],
    "self_mm": [("exact", [], "matched sizes; Accord's audio/visual encoders are temporal convolutions, MMSA's "
                              "LSTMs")],
}
#: MMSA's gradient accumulation (``update_epochs`` in its regression config): batches per optimiser step.
MMSA_ACCUMULATION = {"mult": 8, "misa": 2, "self_mm": 4}
for _m, _k in MMSA_ACCUMULATION.items():  # the matched model, trained with MMSA's optimiser cadence too
    VARIANTS[_m].append((f"accumulated{_k}", [*VARIANTS[_m][0][1], f"train.accumulate_batches={_k}"],
                         f"{VARIANTS[_m][0][2]}; one optimiser step per {_k} batches (train.accumulate_batches, "
                         f"as MMSA's update_epochs={_k})"))
#: Which pickle each model's MOSI-shaped speed run reads.
SPEED_DATA = {"mult": "mosi_sized_small"}


EARLIER_NOTE = ("rows that later runs of this script replaced, grouped by when they were measured (the first two "
                "groups were recovered from committed versions of this file): the run-to-run spread")


def replaced_runs(old: dict[str, Any], redo: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """``old``'s earlier runs plus the rows of ``old`` this run replaces (the ``(model, data)`` pairs in ``redo``),
    one group per time they were measured (``measured_utc``; rows written before it existed count as measured when
    ``old`` was finished): rows measured at a time that already has a group join it."""
    fields = ("model", "data", "variant", "mmsa_cpu", "accord_cpu", "cpu_ratio")
    groups: dict[str, dict[str, Any]] = {}
    for e in old.get("earlier_runs", []):
        if e["finished_utc"] in groups:
            groups[e["finished_utc"]]["rows"] += e["rows"]
        else:
            groups[e["finished_utc"]] = {**e, "rows": list(e["rows"])}
    fresh: dict[str, list[dict[str, Any]]] = {}
    for r in old.get("rows", []):
        if (r["model"], r["data"]) in redo:
            when = r.get("measured_utc") or old.get("finished_utc", "?")
            fresh.setdefault(when, []).append({**{k: r.get(k) for k in fields}, "measured_utc": when})
    for when, rows in sorted(fresh.items()):
        groups.setdefault(when, {"finished_utc": when, "label": when[11:] or when, "rows": []})["rows"] += rows
    return list(groups.values())


def small_pickle() -> dict[str, Any]:
    """``mosi_sized_small``: MOSI shapes with 128/32/32 samples (written once, like vs_mmsa's pickles)."""
    return vm.write_pickle("mosi_sized_small", "conflictbench",
                           {"seed": 0, "conflict_rate": 0.2, **vm.MOSI_SIZED, "n_train": 128, "n_valid": 32,
                            "n_test": 32})


def row(model: str, data_key: str, mm: dict[str, Any], name: str, ac: dict[str, Any], what: str) -> dict[str, Any]:
    """One comparison: both frameworks' median CPU and wall seconds per epoch and their ratio (MMSA / Accord)."""
    out: dict[str, Any] = {"model": model, "data": data_key, "variant": name, "what": what,
                           "mmsa_error": mm.get("error"), "accord_error": ac.get("error")}
    if mm.get("error") or ac.get("error"):
        return out
    c_m, c_a = vm.median_epoch(mm, "epoch_cpu_seconds"), vm.median_epoch(ac, "epoch_cpu_seconds")
    out.update({"mmsa_cpu": round(c_m, 3), "accord_cpu": round(c_a, 3), "cpu_ratio": round(c_m / c_a, 3),
                "mmsa_wall": round(vm.median_epoch(mm), 3), "accord_wall": round(vm.median_epoch(ac), 3),
                "mmsa_params": mm["per_seed"][0]["n_params"], "accord_params": ac["per_seed"][0]["n_params"],
                "mmsa_load": mm.get("load"), "accord_load": ac.get("load"),
                "accord_command": ac.get("command"), "accord_test": ac["per_seed"][0]["test"],
                "mmsa_test": mm["per_seed"][0]["test"]})
    return out


def runs_note(r: dict[str, Any], report: dict[str, Any]) -> str:
    """`` (10 epochs, median of 3 runs: 1.9×, 2.0×, 2.1×)`` where a row differs from the report's epochs or was
    repeated; '' otherwise."""
    parts = []
    if r.get("epochs", report["epochs"]) != report["epochs"]:
        parts.append(f"{r['epochs']} epochs")
    if r.get("repeats"):
        parts.append(f"median of {len(r['repeats'])} runs: " + ", ".join(f"{x['cpu_ratio']:.2f}×"
                                                                          for x in r["repeats"]))
    return f" ({'; '.join(parts)})" if parts else ""


def median_row(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the repeats of a comparison: the last repeat's fields, with the CPU seconds and the ratio the
    medians over the repeats, and every repeat's in ``repeats`` (a failed repeat makes the row failed)."""
    out = dict(reps[-1])
    if any(r.get("mmsa_error") or r.get("accord_error") for r in reps):
        bad = next(r for r in reps if r.get("mmsa_error") or r.get("accord_error"))
        return {**out, "mmsa_error": bad.get("mmsa_error"), "accord_error": bad.get("accord_error")}
    keys = ("mmsa_cpu", "accord_cpu", "cpu_ratio")
    out["repeats"] = [{k: r[k] for k in keys} for r in reps]
    out.update({k: round(statistics.median(r[k] for r in reps), 3) for k in keys})
    return out


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown table per dataset."""
    lines = [
        "# Accord vs MMSA 2.2.1 per epoch, same models, one run (issue 16)", "",
        f"Made by `python benchmarks/vs_mmsa_speed.py` on {report['finished_utc']} UTC: {report['epochs']} epochs "
        "per run, seed 0, 1 thread per process, runs one after another, interleaved per model. Ratio = MMSA CPU s "
        "/ Accord CPU s per epoch (median epoch: train + validation + checkpoint), > 1: Accord faster. Accord "
        "uses the settings matched to MMSA's MOSI config (vs_mmsa.py `ACCORD_MATCHED`). Goal: ≥ 2× on each model.",
        "", "Rows made by: " + "; ".join(
            f"{r['utc']} UTC `--models {','.join(r['models'])} --data {','.join(r['data'])}`"
            for r in report.get("runs", [])) + " (a later run replaces the rows it covers).", ""]
    for key, title in (("mosi_sized", "MOSI-sized sequences (1284 training samples)"),
                       ("mosi_sized_small", "MOSI-sized sequences, 128 training samples (full-resolution MulT)"),
                       ("mosi_u", "MOSI-U (real features, T = 1)")):
        rows = [r for r in report["rows"] if r["data"] == key]
        if not rows:
            continue
        lines += [f"## {title}", "", "| model | Accord variant | MMSA CPU s | Accord CPU s | ratio | params MMSA / "
                  "Accord | load MMSA / Accord |", "|:---|:---|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r.get("mmsa_error") or r.get("accord_error"):
                lines.append(f"| {r['model']} | {r['what']} | failed: {r['mmsa_error'] or r['accord_error']} "
                             "| | | | |")
                continue
            lines.append(f"| {r['model']} | {r['what']}{runs_note(r, report)} | {r['mmsa_cpu']:.2f} | "
                         f"{r['accord_cpu']:.2f} | **{r['cpu_ratio']:.2f}×** | {r['mmsa_params']:,} / "
                         f"{r['accord_params']:,} | {r['mmsa_load']['mean']} / {r['accord_load']['mean']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", default="mosi_sized,mosi_u", help="mosi_sized (MulT: the small one) and/or mosi_u")
    p.add_argument("--repeats", type=int, default=1, help="rounds of every MMSA/Accord pair (median ratio kept)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats: expected at least 1 (got {args.repeats})")
    models = [m for m in args.models.split(",") if m]
    vm.apply_patches()
    data = {**vm.write_pickles(), "mosi_sized_small": small_pickle()}
    old = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {"rows": []}
    keys = [k for k in args.data.split(",") if k]
    redo = {(m, SPEED_DATA.get(m, k) if k == "mosi_sized" else k) for m in models for k in keys}
    keep = [{**r, "epochs": r.get("epochs", old.get("epochs"))} for r in old["rows"] if (r["model"], r["data"]) not in
            redo]
    earlier = replaced_runs(old, redo)
    rounds: list[list[dict[str, Any]]] = []
    for rep in range(args.repeats):  # whole rounds, so a slow spell of the machine hits every model alike
        rounds.append([])
        for m in models:
            for key in keys:
                dkey = SPEED_DATA.get(m, key) if key == "mosi_sized" else key
                tag = f"s16_{m}_{dkey}"
                vm.log(f"{tag}: MMSA (round {rep + 1} of {args.repeats})")
                mm = vm.run_mmsa(m, data[dkey], [0], args.epochs, 1, tag)
                variants = VARIANTS[m] if dkey != "mosi_u" else [v for i, v in enumerate(VARIANTS[m])
                                                                  if i == 0 or v[0].startswith("accumulated")]
                for name, extra, what in variants:
                    if dkey == "mosi_u":  # T = 1: nothing to pool or downsample
                        extra = [e for e in extra if not e.startswith("data.pool_time")]
                        what = "matched (T = 1)" + (f"; one optimiser step per {name[11:]} batches, as MMSA's"
                                                    if name.startswith("accumulated") else "")
                    vm.log(f"{tag}: Accord {name}")
                    ac = vm.run_accord(m, data[dkey], [0], args.epochs, 1, f"{tag}_{name}", extra)
                    rounds[-1].append({**row(m, dkey, mm, name, ac, what), "epochs": args.epochs})
                    vm.log(f"  -> {rounds[-1][-1].get('cpu_ratio')}")
    rows = [median_row([r[i] for r in rounds]) if args.repeats > 1 else rounds[0][i] for i in range(len(rounds[0]))]
    order = {m: i for i, m in enumerate(VARIANTS)}
    now = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    for r in rows:
        r["measured_utc"] = now
    report = {"finished_utc": now, "epochs": old.get("epochs", args.epochs) if keep else args.epochs,
              "threads": 1, "rows": sorted(keep + rows, key=lambda r: order[r["model"]]),
              "runs": [*old.get("runs", []), {"utc": now, "models": models, "data": keys}],
              "earlier_runs": earlier, "earlier_runs_note": EARLIER_NOTE}
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(report, indent=1))
    OUT_MD.write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
