"""The measurements behind stop 33's step-cost choices, each A/B switchable at run time, interleaved in one process.

* ``attention``: forward + backward of attention with dropout 0.1 and a key padding mask, the two-pass flash path
  (:func:`accord.models.modules.attention.attention_with_dropout`) against the explicit one (``explicit_attention``)
  at the shapes quoted in ``CPU_DROPOUT_EXPLICIT_MAX_SCORES``'s docstring; best of ``--reps`` passes, in ms.
* ``fill``: one training step (:meth:`Trainer.train_step`, MOSI-U, the configs matched to MMSA's of
  ``benchmarks/vs_mmsa.py``) with torch's NaN fill of new tensors in deterministic mode on (torch's default) and off
  (what ``seed_everything`` sets), alternating in rounds; median ms.
* ``optimizer``: MulT's AdamW step on its MOSI-U gradients (matched config): :class:`FusedAdamW` (its step counters
  packed, one increment), the same with the counters incremented by ``_foreach_add_`` per tensor (the previous
  code), and torch's ``AdamW(fused=True).step``; best of ``--reps`` passes, in ms.

Usage::

    python benchmarks/step_costs.py                     # all three, one thread
    python benchmarks/step_costs.py --parts attention

Writes ``benchmarks/results/step_costs.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_mmsa as vm  # noqa: E402  (the MOSI-U pickle and the matched configs)
from accord.config import load_config  # noqa: E402
from accord.core.io import write_json  # noqa: E402
from accord.models.modules import attention as attn_mod  # noqa: E402
from accord.training import optim  # noqa: E402
from accord.training.trainer import Trainer  # noqa: E402

ATTENTION_SHAPES = [(16, 2, 6, 6, 64), (16, 10, 50, 50, 5), (32, 6, 50, 500, 5), (16, 10, 200, 200, 5),
                    (16, 2, 400, 400, 64), (16, 10, 250, 250, 5), (16, 10, 375, 375, 5)]
"""(B, H, Tq, Tk, head width) as in ``CPU_DROPOUT_EXPLICIT_MAX_SCORES``'s docstring."""


def attention_row(shape: tuple[int, int, int, int, int], reps: int) -> dict[str, Any]:
    """Fused (two-pass flash) vs explicit attention with dropout at one shape."""
    b, h, tq, tk, d = shape
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, h, tq, d, generator=g, requires_grad=True)
    k, v = (torch.randn(b, h, tk, d, generator=g, requires_grad=True) for _ in range(2))
    mask = torch.ones(b, 1, 1, tk, dtype=torch.bool)
    mask[::2, ..., tk // 2:] = False
    grad = torch.randn(b, h, tq, d, generator=g)

    def fused() -> None:
        attn_mod.attention_with_dropout(q, k, v, mask, 0.1).backward(grad)

    def explicit() -> None:
        attn_mod.explicit_attention(q, k, v, mask, None, 0.1)[0].backward(grad)

    fused(), explicit()
    n = max(1, min(30, int(0.3 / timeit.timeit(fused, number=1))))
    ms = {name: 1e3 * min(timeit.repeat(f, number=n, repeat=reps)) / n
          for name, f in (("fused", fused), ("explicit", explicit))}
    scores = b * h * tq * tk
    return {"shape": list(shape), "scores": scores, "fused_ms": round(ms["fused"], 2),
            "explicit_ms": round(ms["explicit"], 2),
            "path_now": "explicit" if scores <= attn_mod.CPU_DROPOUT_EXPLICIT_MAX_SCORES else "fused"}


def attention_part(reps: int) -> list[dict[str, Any]]:
    rows = []
    for shape in ATTENTION_SHAPES:
        rows.append(attention_row(shape, reps))
        vm.log(f"attention {rows[-1]}")
    return rows


def trainer_for(model: str, out: str) -> tuple[Trainer, Any, list[Any]]:
    """A seed's run of ``model`` (matched config, MOSI-U pickle) and the epoch's full batches."""
    data = vm.write_pickles()["mosi_u"]
    sets = [f"data.path={data['path']}", "data.params.family=mosi", f"output.dir={out}", "train.num_threads=1",
            "train.device=cpu", "train.seeds=[0]", *vm.ACCORD_MATCHED.get(model, []), *vm.ACCORD_T1.get(model, [])]
    cfg = load_config(method=model, dataset="mmsa", overrides=sets)
    trainer = Trainer(cfg, progress=False)
    batches = [b for b in trainer.epoch_batches(trainer.dataset["train"], 0, 0) if b.size == cfg.train.batch_size]
    run = trainer.setup_seed(0)
    run.model.train()
    return trainer, run, batches


def fill_row(model: str, rounds: int, steps: int, out: str) -> dict[str, Any]:
    """Median training step of ``model`` with torch's NaN fill of new tensors on and off, alternating in rounds."""
    trainer, run, batches = trainer_for(model, out)

    def step(i: int) -> float:
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        trainer.train_step(run, b, b.size)
        return time.perf_counter() - t0

    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(5):
        step(i)
    for _ in range(rounds):
        for flag in (True, False):
            torch.utils.deterministic.fill_uninitialized_memory = flag  # type: ignore[attr-defined]
            times[flag] += [step(i) for i in range(steps)]
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    return {"model": model, "deterministic": torch.are_deterministic_algorithms_enabled(),
            "steps_each": rounds * steps, "fill_on_ms": round(1e3 * statistics.median(times[True]), 3),
            "fill_off_ms": round(1e3 * statistics.median(times[False]), 3)}


def fill_part(models: list[str], rounds: int, steps: int, out: str) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        rows.append(fill_row(model, rounds, steps, out))
        vm.log(f"fill {rows[-1]}")
    return rows


def foreach_increment(self: Any, index: int, params: list[torch.Tensor], steps: list[torch.Tensor]) -> None:
    """The previous ``FusedAdamW`` increment: ``_foreach_add_`` over the counters with a one-element tensor."""
    torch._foreach_add_(steps, torch.ones((), dtype=steps[0].dtype))


def optimizer_part(reps: int, out: str) -> dict[str, Any]:
    trainer, run, batches = trainer_for("mult", out)
    b = batches[0]
    trainer.train_step(run, b, b.size)  # every parameter with a gradient has its state from here on
    opt = run.opt
    assert isinstance(opt, optim.FusedAdamW)
    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    ref = torch.optim.AdamW([p.detach().clone().requires_grad_(True) for p in params], fused=True)
    for r, p in zip(ref.param_groups[0]["params"], params, strict=True):
        r.grad = p.grad.clone()
    ref.step()
    packed = opt.step
    plain = optim.FusedAdamW._increment
    result: dict[str, Any] = {"model": "mult", "tensors_with_gradient": len(params)}
    result["packed_ms"] = round(1e3 * min(timeit.repeat(packed, number=20, repeat=reps)) / 20, 3)
    optim.FusedAdamW._increment = foreach_increment  # type: ignore[method-assign]
    try:
        result["foreach_increment_ms"] = round(1e3 * min(timeit.repeat(packed, number=20, repeat=reps)) / 20, 3)
    finally:
        optim.FusedAdamW._increment = plain  # type: ignore[method-assign]
    result["torch_fused_adamw_ms"] = round(1e3 * min(timeit.repeat(ref.step, number=20, repeat=reps)) / 20, 3)
    vm.log(f"optimizer {result}")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="attention,fill,optimizer")
    ap.add_argument("--models", default="lmf,self_mm,misa,mult", help="models of the fill part")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/step_costs.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    work = "/tmp/accord-step-costs"
    report: dict[str, Any] = {"made_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "threads": args.threads,
                              "torch": torch.__version__, "command": "python benchmarks/step_costs.py "
                              + " ".join(argv if argv is not None else sys.argv[1:])}
    if "attention" in parts:
        report["attention"] = attention_part(args.reps)
    if "fill" in parts:
        report["fill"] = fill_part(args.models.split(","), args.rounds, args.steps, work)
    if "optimizer" in parts:
        report["optimizer"] = optimizer_part(args.reps, work)
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
