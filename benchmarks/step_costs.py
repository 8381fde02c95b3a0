"""The measurements behind the step-cost choices of stops 33 and 34, each A/B switchable at run time, interleaved in
one process.

* ``attention``: forward + backward of attention with dropout 0.1 and a key padding mask, the two-pass flash path
  (:func:`accord.models.modules.attention.attention_with_dropout`) against the explicit one (``explicit_attention``)
  at the shapes quoted in ``CPU_DROPOUT_EXPLICIT_MAX_SCORES``'s docstring; best of ``--reps`` passes, in ms.
* ``fill``: one training step (:meth:`Trainer.train_step`, MOSI-U, the configs matched to MMSA's of
  ``benchmarks/vs_mmsa.py``) with torch's NaN fill of new tensors in deterministic mode on (torch's default) and off
  (what ``seed_everything`` sets), alternating in rounds; median ms.
* ``optimizer``: MulT's AdamW step on its MOSI-U gradients (matched config): :class:`FusedAdamW` (its step counters
  packed, one increment), the same with the counters incremented by ``_foreach_add_`` per tensor (the previous
  code), and torch's ``AdamW(fused=True).step``; best of ``--reps`` passes, in ms.
* ``gelu``: ``kernels``: forward + backward of exact GELU by oneDNN (torch's default) and by ATen's kernel at the
  shapes of ``GELU_SHAPES``, best of ``--reps`` passes, in µs; ``steps``: one training step as in ``fill`` with the
  encoders' exact GELU run by ATen's kernel on small tensors (:class:`accord.models.modules.attention.GELU`, the
  code) and by torch's default dispatch (``nn.GELU``: oneDNN), the model's activation modules swapped between
  rounds; median ms.
* ``batches``: assembling one training batch of MOSI-U (Self-MM's matched batch size) and moving it to the CPU, as
  the trainer does: :meth:`SplitData.batch` + :meth:`Batch.to` (masks and ``present`` gathered from per-split tables;
  ``to`` returns the batch itself on its own device) against the previous per-batch computation (:func:`old_batch`,
  a copy of the code before stop 34: each mask and ``present`` computed per batch, every tensor passed through
  ``.to``); median µs per batch over whole epochs.
* ``streams``: one training step of MulT as in ``fill`` with ``model.params.batch_streams`` on (the six crossmodal
  and the three memory transformers as one batched computation each, :mod:`accord.models.modules.grouped`) and off
  (one transformer at a time), switched between rounds; median ms, and the aten operations one step runs in each
  setting (counted with a dispatch mode, after a step that created the optimiser's state).
* ``blocked``: forward + backward of attention with a key padding mask on the blocked path
  (:func:`accord.models.modules.attention.blocked_attention`) against the path that ran before it (with dropout:
  explicit at most ``CPU_DROPOUT_EXPLICIT_MAX_SCORES`` scores, the two-pass flash kernel above; without: the flash
  kernel), and the forward alone without gradients (inference), at the shapes of ``BLOCKED_SHAPES`` (MMSA-sized
  MulT's, default MulT's, and both sides of ``BLOCKED_MAX_HEAD_WIDTH`` / ``BLOCKED_MIN_SCORES``: the blocked path
  is called directly there). ``spread`` scales the queries so that many scores lie more than 87 below their row's
  maximum (as a trained model's do; ``score_std`` is their spread); ``train_blocked_no_exp_floor_ms`` is the blocked
  path with ``exp`` given every input as it is (no floor, ``_exp_floor``); best of ``--reps`` passes, in ms.
* ``encoders``: the same for ``model.params.batch_modalities`` of LMF, Self-MM and TFN (the three modality encoders,
  and Self-MM's three unimodal heads, as one batched computation each, :func:`accord.models.modules.encoders.
  one_step_encoders`).

Usage::

    python benchmarks/step_costs.py                     # every part, one thread
    python benchmarks/step_costs.py --parts gelu,batches  # some; the JSON keeps the others' last results

Writes ``benchmarks/results/step_costs.json`` (atomically); each part records when it was made in ``made_utc``.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_mmsa as vm  # noqa: E402  (the MOSI-U pickle and the matched configs)
from accord.config import load_config  # noqa: E402
from accord.core.io import write_json  # noqa: E402
from accord.core.types import MODALITIES, Batch  # noqa: E402
from accord.data.dataset import SplitData  # noqa: E402
from accord.models.modules import attention as attn_mod  # noqa: E402
from accord.training import optim  # noqa: E402
from accord.training.trainer import Trainer  # noqa: E402
from throughput import cpu_model  # noqa: E402

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
            "path_now": ("blocked" if attn_mod.blocked_applies(q, k)
                         else "explicit" if scores <= attn_mod.CPU_DROPOUT_EXPLICIT_MAX_SCORES else "fused")}


BLOCKED_SHAPES = [(16, 10, 375, 500, 5, 0.2, 1.0), (16, 10, 375, 500, 5, 0.2, 40.0), (16, 10, 500, 375, 5, 0.0, 1.0),
                  (16, 10, 500, 375, 5, 0.0, 40.0), (16, 10, 500, 500, 10, 0.3, 1.0), (16, 10, 375, 375, 10, 0.3, 1.0),
                  (16, 10, 50, 375, 5, 0.3, 1.0), (32, 4, 375, 500, 8, 0.0, 1.0), (16, 4, 200, 200, 8, 0.1, 1.0),
                  (16, 4, 200, 200, 8, 0.0, 1.0), (16, 4, 200, 200, 16, 0.1, 1.0), (16, 4, 200, 200, 16, 0.0, 1.0),
                  (32, 8, 20, 20, 8, 0.1, 1.0), (32, 8, 20, 20, 8, 0.0, 1.0)]
"""(B, H, Tq, Tk, head width, dropout, spread) of the ``blocked`` part."""


def blocked_row(shape: tuple[int, int, int, int, int, float, float], reps: int) -> dict[str, Any]:
    """The blocked path against the one before it at one shape (forward + backward; and forward alone)."""
    b, h, tq, tk, d, p, spread = shape
    g = torch.Generator().manual_seed(0)
    q = (torch.randn(b, h, tq, d, generator=g) * spread).requires_grad_()
    k, v = (torch.randn(b, h, tk, d, generator=g, requires_grad=True) for _ in range(2))
    mask = torch.ones(b, 1, 1, tk, dtype=torch.bool)
    mask[::3, ..., tk - tk // 10:] = False
    grad = torch.randn(b, h, tq, d, generator=g)
    scores = b * h * tq * tk
    before_name = ("flash" if p == 0 else "explicit" if scores <= attn_mod.CPU_DROPOUT_EXPLICIT_MAX_SCORES
                   else "flash, two passes")
    before = {"flash": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
              "explicit": lambda: attn_mod.explicit_attention(q, k, v, mask, None, p)[0],
              "flash, two passes": lambda: attn_mod.attention_with_dropout(q, k, v, mask, p)}[before_name]

    def timed(f: Any) -> float:
        f()
        n = max(1, min(30, int(0.3 / max(1e-4, timeit.timeit(f, number=1)))))
        return round(1e3 * min(timeit.repeat(f, number=n, repeat=reps)) / n, 2)

    with torch.no_grad():
        fwd = {"blocked": timed(lambda: attn_mod.blocked_attention(q, k, v, mask, 0.0)),
               "before": timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))}
    both = {"blocked": timed(lambda: attn_mod.blocked_attention(q, k, v, mask, p).backward(grad)),
            "before": timed(lambda: before().backward(grad))}
    floor = attn_mod._exp_floor
    attn_mod._exp_floor = lambda dtype: float("-inf")  # type: ignore[assignment]  # exp of every input as it is
    try:
        no_floor = timed(lambda: attn_mod.blocked_attention(q, k, v, mask, p).backward(grad))
    finally:
        attn_mod._exp_floor = floor  # type: ignore[assignment]
    below = float(((q @ k.transpose(-1, -2)) * d ** -0.5).detach().flatten(0, 2)[:2000].std())
    return {"shape": [b, h, tq, tk, d], "dropout": p, "spread": spread, "scores": scores, "path_before": before_name,
            "taken_now": attn_mod.blocked_applies(q, k), "train_blocked_ms": both["blocked"],
            "train_before_ms": both["before"], "train_ratio": round(both["before"] / both["blocked"], 2),
            "train_blocked_no_exp_floor_ms": no_floor, "score_std": round(below, 1),
            "inference_blocked_ms": fwd["blocked"], "inference_flash_ms": fwd["before"]}


def shape_rows(part: str, shapes: list[Any], row: Any, reps: int) -> list[dict[str, Any]]:
    """``row(shape, reps)`` for every shape, each logged as it is made."""
    rows = []
    for shape in shapes:
        rows.append(row(shape, reps))
        vm.log(f"{part} {rows[-1]}")
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


def ab_steps(model: str, rounds: int, steps: int, out: str, switch: Any) -> tuple[dict[bool, list[float]], Any]:
    """Training steps of ``model`` (matched config, MOSI-U) in alternating rounds: ``switch(True)`` before each
    round's first half and ``switch(False)`` before its second, ``steps`` steps each, after 5 warm-up steps; returns
    each setting's step times (s) and the seed's run."""
    trainer, run, batches = trainer_for(model, out)

    def step(i: int) -> float:
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        trainer.train_step(run, b, b.size)
        return time.perf_counter() - t0

    for i in range(5):
        step(i)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for flag in (True, False):
            switch(run, flag)
            times[flag] += [step(i) for i in range(steps)]
    return times, run


def fill_row(model: str, rounds: int, steps: int, out: str) -> dict[str, Any]:
    """Median training step of ``model`` with torch's NaN fill of new tensors on and off, alternating in rounds."""

    def fill(run: Any, flag: bool) -> None:
        torch.utils.deterministic.fill_uninitialized_memory = flag  # type: ignore[attr-defined]

    times, _ = ab_steps(model, rounds, steps, out, fill)
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


def swap_gelu(model: torch.nn.Module, aten: bool) -> int:
    """Set every exact-GELU module of ``model`` to Accord's (``aten``: small tensors through ATen's kernel) or to
    torch's ``nn.GELU`` (default dispatch: oneDNN on CPU); returns how many were set."""
    n = 0
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.GELU) and child.approximate == "none":
                setattr(mod, name, attn_mod.GELU() if aten else torch.nn.GELU())
                n += 1
    return n


def gelu_row(model: str, rounds: int, steps: int, out: str) -> dict[str, Any]:
    """Median training step of ``model`` with its GELUs on ATen's kernel (the code) and on torch's default, in
    alternating rounds."""
    count: list[int] = []
    times, run = ab_steps(model, rounds, steps, out, lambda r, aten: count.append(swap_gelu(r.model, aten)))
    swap_gelu(run.model, True)
    return {"model": model, "gelu_modules": count[-1], "steps_each": rounds * steps,
            "aten_ms": round(1e3 * statistics.median(times[True]), 3),
            "onednn_ms": round(1e3 * statistics.median(times[False]), 3)}


def count_step_ops(trainer: Trainer, run: Any, batch: Any) -> int:
    """The aten operations one training step runs (forward, backward, optimiser), counted by a dispatch mode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        trainer.train_step(run, batch, batch.size)
    return Count.n


def switch_row(model: str, attr: str, rounds: int, steps: int, out: str) -> dict[str, Any]:
    """Median training step of ``model`` (matched config, MOSI-U) with the boolean ``model.params.<attr>`` on and
    off, alternating in rounds, and the aten operations of one step in each setting."""

    def switch(run: Any, flag: bool) -> None:
        setattr(run.model.params, attr, flag)

    times, run = ab_steps(model, rounds, steps, out, switch)
    trainer, run2, batches = trainer_for(model, out)
    ops = {}
    for flag in (True, False):
        switch(run2, flag)
        trainer.train_step(run2, batches[0], batches[0].size)  # not counted: the first step creates AdamW's state
        ops[flag] = count_step_ops(trainer, run2, batches[1])
    result = {"model": model, "switch": attr, "steps_each": rounds * steps,
              "batched_ms": round(1e3 * statistics.median(times[True]), 3),
              "one_by_one_ms": round(1e3 * statistics.median(times[False]), 3),
              "batched_ops": ops[True], "one_by_one_ops": ops[False]}
    vm.log(f"{attr} {result}")
    return result


def streams_part(rounds: int, steps: int, out: str) -> dict[str, Any]:
    """MulT's ``batch_streams`` (:func:`switch_row`)."""
    return switch_row("mult", "batch_streams", rounds, steps, out)


GELU_SHAPES = [(16, 1, 32), (64, 1, 128), (32, 4, 128), (64, 4, 128), (32, 16, 128), (32, 50, 128)]
"""Activation shapes of the ``gelu`` part's kernel comparison (``GELU_ATEN_MAX_NUMEL`` = 16,384 lies between the
third and the fourth)."""


def gelu_kernel_row(shape: tuple[int, ...], reps: int) -> dict[str, Any]:
    """Forward + backward of exact GELU on ``shape`` by oneDNN (torch's default for a contiguous fp32 CPU tensor)
    and by ATen's kernel (the transposed view :class:`~accord.models.modules.attention.GELU` uses); best of ``reps``
    passes, in µs."""
    x, g = torch.randn(*shape), torch.randn(*shape)
    xt, gt = x.transpose(0, -1), g.transpose(0, -1)
    n = max(50, int(2e6 / x.numel()))

    def onednn() -> None:
        torch.nn.functional.gelu(x)
        torch.ops.aten.gelu_backward(g, x)

    def aten() -> None:
        torch.nn.functional.gelu(xt)
        torch.ops.aten.gelu_backward(gt, xt)

    best = {k: 1e6 * min(timeit.repeat(f, number=n, repeat=reps)) / n for k, f in (("onednn", onednn),
                                                                                   ("aten", aten))}
    return {"shape": list(shape), "numel": x.numel(), "onednn_us": round(best["onednn"], 1),
            "aten_us": round(best["aten"], 1)}


def old_batch(split: SplitData, index: torch.Tensor, task: str = "regression", trim: bool = True) -> Batch:
    """:meth:`SplitData.batch` as it was before stop 34 (every mask and ``present`` computed per batch), for the
    ``batches`` part's comparison; the same batch."""
    feats: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    present = torch.zeros(len(index), len(MODALITIES), dtype=torch.bool)
    for k, m in enumerate(MODALITIES):
        x = split.features[m][index]
        lens = split.lengths[m][index]
        t_max = x.shape[1]
        if trim:
            t_max = max(int(lens.max().item()), 1) if len(lens) else 1
            if t_max < x.shape[1]:
                x = x[:, :t_max].contiguous()
        masks[m] = torch.arange(t_max).unsqueeze(0) < lens.unsqueeze(1)
        feats[m] = x
        present[:, k] = lens > 0
    label = split.class_labels[index] if task == "classification" and split.class_labels is not None \
        else split.labels[index]
    return Batch(features=feats, mask=masks, present=present, label=label,
                 unimodal_labels={m: v[index] for m, v in split.unimodal_labels.items()},
                 ids=[split.ids[i] for i in index.tolist()], extras={k: v[index] for k, v in split.extras.items()},
                 text_tokens=split._batch_tokens(index, trim))


def old_to(b: Batch, dev: str) -> Batch:
    """:meth:`Batch.to` before stop 34: a new batch with every tensor passed through ``.to``."""
    return Batch(features={k: v.to(dev) for k, v in b.features.items()}, mask={k: v.to(dev) for k, v in b.mask.items()},
                 present=b.present.to(dev), label=b.label.to(dev),
                 unimodal_labels={k: v.to(dev) for k, v in b.unimodal_labels.items()}, ids=list(b.ids),
                 extras={k: v.to(dev) for k, v in b.extras.items()},
                 text_tokens=None if b.text_tokens is None else b.text_tokens.to(dev))


def same_batch(x: Batch, y: Batch) -> bool:
    """Whether two batches hold equal features, masks, ``present`` and labels."""
    pairs = [*zip(x.features.values(), y.features.values(), strict=True),
             *zip(x.mask.values(), y.mask.values(), strict=True), (x.present, y.present), (x.label, y.label)]
    return all(torch.equal(a, b) for a, b in pairs)


def batches_part(rounds: int, out: str) -> dict[str, Any]:
    """Median µs per batch of assembling and moving an epoch of Self-MM's training batches, new and old code."""
    trainer, _, _ = trainer_for("self_mm", out)
    split = trainer.dataset["train"]
    size = trainer.cfg.train.batch_size
    orders = [torch.randperm(len(split), generator=torch.Generator().manual_seed(e)) for e in range(rounds)]
    chunks = [[o[i:i + size] for i in range(0, len(split), size)] for o in orders]
    same = all(same_batch(split.batch(c).to("cpu"), old_to(old_batch(split, c), "cpu")) for c in chunks[0])
    times: dict[str, list[float]] = {"new": [], "old": []}
    for c in chunks:
        for key in ("new", "old"):
            t0 = time.perf_counter()
            for index in c:
                if key == "new":
                    split.batch(index).to("cpu")
                else:
                    old_to(old_batch(split, index), "cpu")
            times[key].append((time.perf_counter() - t0) / len(c))
    result = {"model": "self_mm", "batch_size": size, "epochs_each": rounds, "same_batches": same,
              "new_us": round(1e6 * statistics.median(times["new"]), 1),
              "old_us": round(1e6 * statistics.median(times["old"]), 1)}
    vm.log(f"batches {result}")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="attention,fill,optimizer,gelu,batches,streams,encoders")
    ap.add_argument("--models", default="lmf,self_mm,misa,mult", help="models of the fill part")
    ap.add_argument("--gelu-models", default="lmf,self_mm,tfn", help="models of the gelu part")
    ap.add_argument("--encoder-models", default="lmf,self_mm,tfn", help="models of the encoders part")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/step_costs.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    work = "/tmp/accord-step-costs"
    now = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    command = "python benchmarks/step_costs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    made = report.setdefault("parts_made", {})
    for part in ("attention", "fill", "optimizer"):  # parts made before the file recorded each part's run
        if part in report and part not in made:
            made[part] = {"made_utc": report.get("made_utc"), "command": report.get("command")}
    report.update({"threads": args.threads, "torch": torch.__version__})
    runs = {"attention": lambda: shape_rows("attention", ATTENTION_SHAPES, attention_row, args.reps),
            "fill": lambda: fill_part(args.models.split(","), args.rounds, args.steps, work),
            "optimizer": lambda: optimizer_part(args.reps, work),
            "gelu": lambda: {"kernels": [gelu_kernel_row(sh, args.reps) for sh in GELU_SHAPES],
                             "steps": [gelu_row(m, args.rounds, args.steps, work)
                                       for m in args.gelu_models.split(",")]},
            "batches": lambda: batches_part(args.rounds * 5, work),
            "streams": lambda: streams_part(args.rounds, args.steps, work),
            "encoders": lambda: [switch_row(m, "batch_modalities", args.rounds, args.steps, work)
                                 for m in args.encoder_models.split(",")],
            "blocked": lambda: shape_rows("blocked", BLOCKED_SHAPES, blocked_row, args.reps)}
    for part in parts:
        report[part] = runs[part]()
        made[part] = {"made_utc": now, "command": command, "cpu_model": cpu_model(), "threads": args.threads}
    report["made_utc"], report["command"] = now, command
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
