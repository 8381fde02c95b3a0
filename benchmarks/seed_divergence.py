"""Where seed-parallel and sequential training part, without dropout: one step's rounding, then its growth.

Seed-parallel training (``train.seed_parallel``) is meant to give each seed the metrics of sequential training;
over whole MOSI-U runs it does not (``seed_parallel.json``). This shows why, per method (TFN and MulT on MOSI-U,
every dropout at 0, seeds 0-2):

* ``one_step``: the seeds' first training batch, once through :meth:`Trainer.train_step` per seed and once through
  the vmapped :meth:`SeedGroup.train_step` (the same initial weights and batches). Whether each seed's total loss
  is bit-identical, and which parameters' gradients (after clipping) are not, by how much (largest absolute
  difference);
* ``epochs``: ``--epochs`` epochs (early stopping off) as one group and one by one; per epoch, the largest
  difference over the seeds of the training loss and of the validation MAE (the selection metric);
* ``whole_runs``: ``--whole-runs`` groups of 5 seeds (0-4, 5-9, ...) with MOSI-U's defaults (40 epochs, patience 8),
  each as one group and one by one: wall seconds, each seed's epochs trained and selected epoch, and the cost of
  one epoch of every seed (where the runs part, early stopping ends them at other epochs, and that decides which
  of the two takes longer).

    python benchmarks/seed_divergence.py --methods tfn,mult --epochs 12 --whole-runs 2

Writes ``benchmarks/results/seed_divergence.json`` (atomically).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accord.config import load_config  # noqa: E402
from accord.core.io import write_json  # noqa: E402
from accord.training.seed_parallel import open_group  # noqa: E402
from accord.training.trainer import Trainer  # noqa: E402
from seed_parallel import NO_DROPOUT, epoch_seconds, timed_run  # noqa: E402


def one_step(method: str, seeds: list[int], out: Path) -> dict[str, Any]:
    """The first batch of each seed, sequentially and as one vmapped group: loss equality and gradient gaps (the
    gradients as the optimiser sees them, after the run's clipping: ``train.grad_clip``)."""
    cfg = load_config(method=method, dataset="mosi-u", overrides=[
        f"train.seeds={json.dumps(seeds)}", "train.seed_parallel=on", f"output.dir={out}", *NO_DROPOUT[method]])
    trainer = Trainer(cfg, progress=False)
    split = trainer.dataset["train"]
    batches = [next(iter(trainer.epoch_batches(split, s, 0))) for s in seeds]
    runs = [trainer.setup_seed(s) for s in seeds]
    _, group, _ = open_group(trainer, resume=False)
    assert group is not None
    losses = []
    for run, batch in zip(runs, batches, strict=True):
        run.model.train()
        terms, _, _ = trainer.train_step(run, batch, batch.size)
        losses.append(terms["total"].detach())
    group_terms, _ = group.train_step(batches)
    differ: dict[str, float] = {}
    compared = 0
    sequential = [dict(run.model.named_parameters()) for run in runs]
    for name, stacked in group.params.items():
        grads = [params[name].grad for params in sequential]
        compared += grads[0] is not None
        for i, grad in enumerate(grads):
            if grad is None:  # unused by this batch (T = 1 skips some): the group's gradient is zero there
                gap = float(stacked.grad[i].abs().max()) if stacked.grad is not None else 0.0
            else:
                assert stacked.grad is not None, name
                gap = float((stacked.grad[i] - grad).abs().max())
            if gap > 0:
                differ[name] = max(differ.get(name, 0.0), gap)
    return {"loss_bit_identical": [bool(torch.equal(group_terms["total"][i], losses[i])) for i in range(len(seeds))],
            "parameters_with_gradients": compared, "gradients_that_differ": len(differ),
            "largest_gradient_gap": max(differ.values(), default=0.0),
            "gradient_gaps": dict(sorted(differ.items(), key=lambda kv: -kv[1]))}


def epoch_records(run_dir: Path, seed: int) -> list[dict[str, Any]]:
    lines = (run_dir / f"seed_{seed}" / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == "epoch"]


def epochs(method: str, seeds: list[int], n: int, out: Path) -> list[dict[str, Any]]:
    """Per epoch, the largest gap over the seeds between the group and the seeds one by one."""
    extra = [*NO_DROPOUT[method], f"train.epochs={n}", f"train.early_stopping.patience={n + 1}"]
    dirs = {mode: timed_run(method, seeds, mode, out / mode, extra)[1] for mode in ("on", "off")}
    records = {(mode, s): epoch_records(dirs[mode], s) for mode in dirs for s in seeds}
    rows = []
    for e in range(n):
        gaps = {"loss": 0.0, "valid_mae": 0.0}
        for s in seeds:
            a, b = (records[mode, s][e] for mode in ("on", "off"))
            gaps["loss"] = max(gaps["loss"], abs(a["loss/total"] - b["loss/total"]))
            gaps["valid_mae"] = max(gaps["valid_mae"], abs(a["valid/MAE"] - b["valid/MAE"]))
        rows.append({"epoch": e + 1, **gaps})
    return rows


def whole_runs(method: str, seeds: list[int], out: Path) -> dict[str, Any]:
    """The MOSI-U defaults (40 epochs, patience 8) without dropout, as one group and one by one: wall seconds, each
    seed's epochs trained and selected epoch, and the cost of an epoch of every seed (the group's epochs with every
    seed in it; the sequential seeds' median epoch times the number of seeds: :func:`seed_parallel.epoch_seconds`)."""
    out_runs: dict[str, Any] = {}
    for mode in ("on", "off"):
        wall, run_dir = timed_run(method, seeds, mode, out / mode, NO_DROPOUT[method])
        epoch_all = (epoch_seconds(run_dir, seeds, active=len(seeds)) if mode == "on"
                     else len(seeds) * epoch_seconds(run_dir, seeds))
        out_runs["group" if mode == "on" else "one_by_one"] = {
            "wall_s": round(wall, 2), "epochs_trained": [len(epoch_records(run_dir, s)) for s in seeds],
            "selected_epochs": [int(json.loads((run_dir / f"seed_{s}" / "results.json").read_text())["best_epoch"])
                                for s in seeds],
            "epoch_of_every_seed_s": round(epoch_all, 3)}
    return out_runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="tfn,mult")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--whole-runs", type=int, default=2,
                    help="groups of 5 seeds (0-4, 5-9, ...) trained whole without dropout, each both ways (0: none)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/seed_divergence.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            results[method] = {"one_step": one_step(method, seeds, Path(tmp) / "step" / method),
                               "epochs": epochs(method, seeds, args.epochs, Path(tmp) / "epochs" / method)}
            results[method]["whole_runs"] = [
                {"seeds": group, **whole_runs(method, group, Path(tmp) / "whole" / method / str(k))}
                for k, group in enumerate(list(range(5 * k, 5 * k + 5)) for k in range(args.whole_runs))]
            print(method, json.dumps({k: v for k, v in results[method]["one_step"].items() if k != "gradient_gaps"}),
                  file=sys.stderr, flush=True)
    write_json(args.out, {"made_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "seeds": seeds,
                          "threads": args.threads, "methods": results,
                          "command": f"python benchmarks/seed_divergence.py --methods {args.methods} --epochs "
                                     f"{args.epochs} --whole-runs {args.whole_runs}"})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
