"""Start-up cost of the light commands against ``python -c "import torch"`` (issue 16: ``accord --help`` should take
at most a quarter of the wall time of importing torch, measured in the same run).

    python benchmarks/startup.py [--repeats 7] [--dataset FOLDER] [--out benchmarks/results/startup.json]

Every command runs in a fresh interpreter (the ``accord`` console script beside this Python, else
``python -m accord``), its wall time taken around the whole process and its CPU seconds from the children's
resource usage. The commands run interleaved: one untimed warm-up round, then ``--repeats`` rounds, each starting
one command later than the last, so a change in machine load hits all of them alike. ``data info`` reads
``--dataset`` (default: ConflictBench with its default sizes, written once to a temporary folder by
``accord data build``, not timed). Prints a Markdown table of the medians and writes them, every sample, the ratio
``--help`` / ``import torch`` and the machine's load to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL = 0.25
"""``accord --help`` wall time / ``import torch`` wall time that issue 16 asks for at most."""
COMPILER_STACK_NOTE = (
    "The last two rows are what a training process pays beyond `import torch`. Issue 16 saw the determinism "
    "switch cost about 1.3 CPU s: `torch.use_deterministic_algorithms` also sets `torch._inductor.config`, which "
    "imports the compiler stack (TorchDynamo, sympy). Constructing any torch optimizer imports the same stack "
    "(`Optimizer.add_param_group` is wrapped by `torch._disable_dynamo`, and `step()` imports `torch._dynamo`), "
    "so a training process pays it once, whichever comes first. Setting only the eager flag "
    "(`torch._C._set_deterministic_algorithms`) was tried: an `accord train` still imported the stack, from its "
    "AdamW a moment later, so it was not kept. The commands that do not train (`--help`, `list`, `config show`, "
    "`data info`) import neither torch nor the stack. Nor does loading a trained run (`accord.api.load`, what "
    "`accord evaluate`, `predict` and the server do first; the row `load(RUN)`): building and running any model "
    "leaves the stack alone (a model's deliberate graph breaks under `torch.compile` are wrapped only when it is "
    "compiled, `tests/test_startup.py`), where Self-MM's `@torch.compiler.disable` imported it with every model "
    "until 2026-12-02, about a second of such a start on this machine.")


def accord_command() -> list[str]:
    """How to start ``accord``: the console script beside this interpreter, else ``python -m accord``."""
    script = Path(sys.executable).with_name("accord")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "accord"]


def commands(dataset: Path, run: Path) -> dict[str, list[str]]:
    """The measured commands, by the label the table shows (``run``: a trained run for ``load(RUN)``)."""
    accord = accord_command()
    return {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "accord --help": [*accord, "--help"],
        "accord list": [*accord, "list"],
        "accord config show --method tfn --dataset mosi-u": [*accord, "config", "show", "--method", "tfn",
                                                             "--dataset", "mosi-u"],
        "accord data info FOLDER": [*accord, "data", "info", str(dataset)],
        # what every training process pays beyond `import torch` (not a light command; for the reading below)
        "python -c 'import torch; torch.use_deterministic_algorithms(True)'": [
            sys.executable, "-c", "import torch; torch.use_deterministic_algorithms(True, warn_only=True)"],
        "python -c 'import torch; torch.optim.AdamW(...)'": [
            sys.executable, "-c", "import torch; torch.optim.AdamW([torch.zeros(1, requires_grad=True)])"],
        # what `accord evaluate`, `predict` and the server pay before their first prediction
        "python -c 'from accord.api import load; load(RUN)'": [
            sys.executable, "-c", f"from accord.api import load; load({str(run)!r})"],
    }


def children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` to the end (output discarded); its wall and CPU seconds. A failure stops the benchmark."""
    cpu, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return wall, children_cpu() - cpu


def build_dataset(folder: Path) -> Path:
    """ConflictBench with its default sizes in the safe format at ``folder`` (one ``accord data build``)."""
    subprocess.run([*accord_command(), "data", "build", "conflictbench", "--out", str(folder)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


def train_run(folder: Path) -> Path:
    """A one-epoch TFN run on ConflictBench under ``folder`` (untimed), for the ``load(RUN)`` row."""
    subprocess.run([*accord_command(), "train", "--method", "tfn", "--dataset", "conflictbench", "--set",
                    "train.epochs=1", "--set", "train.seeds=[0]", "--set", f"output.dir={folder}", "--set",
                    "name=run"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder / "run"


def measure(cmds: dict[str, list[str]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of every command over ``repeats`` interleaved rounds (after one warm-up round)."""
    for argv in cmds.values():
        timed(argv)
    samples: dict[str, dict[str, list[float]]] = {label: {"wall_s": [], "cpu_s": []} for label in cmds}
    labels = list(cmds)
    for rep in range(repeats):
        for label in labels[rep % len(labels):] + labels[: rep % len(labels)]:
            wall, cpu = timed(cmds[label])
            samples[label]["wall_s"].append(round(wall, 4))
            samples[label]["cpu_s"].append(round(cpu, 4))
    return samples


def markdown(rows: dict[str, dict[str, Any]], ratio: float) -> str:
    """The table of medians, then the ratio against the goal."""
    lines = ["| command | median wall (s) | median CPU (s) | wall / import torch |", "|---|---:|---:|---:|"]
    lines += [f"| `{label}` | {r['median_wall_s']:.3f} | {r['median_cpu_s']:.3f} | {r['vs_import_torch']:.2f} |"
              for label, r in rows.items()]
    verdict = "met" if ratio <= GOAL else "NOT met"
    lines.append(f"\n`accord --help` / `import torch` (median wall): **{ratio:.3f}** (goal <= {GOAL}: {verdict})")
    lines.append(f"\n{COMPILER_STACK_NOTE}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (each command once per round)")
    ap.add_argument("--dataset", type=Path, default=None, help="safe-format folder for `data info`")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/startup.json"))
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit(f"error: --repeats: expected at least 1 (got {args.repeats})")
    tmp = Path(tempfile.mkdtemp(prefix="accord-startup-"))
    try:
        dataset = args.dataset or build_dataset(tmp / "conflictbench")
        cmds = commands(dataset, train_run(tmp / "runs"))
        load_before = os.getloadavg()
        samples = measure(cmds, args.repeats)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    torch_wall = statistics.median(samples["python -c 'import torch'"]["wall_s"])
    rows = {label: {"median_wall_s": round(statistics.median(s["wall_s"]), 4),
                    "median_cpu_s": round(statistics.median(s["cpu_s"]), 4),
                    "vs_import_torch": round(statistics.median(s["wall_s"]) / torch_wall, 4), **s}
            for label, s in samples.items()}
    ratio = rows["accord --help"]["vs_import_torch"]
    result = {
        "command": " ".join(["python", "benchmarks/startup.py", *sys.argv[1:]]),
        "repeats": args.repeats,
        "goal_help_vs_import_torch": GOAL,
        "help_vs_import_torch": ratio,
        "goal_met": ratio <= GOAL,
        "commands": {label: " ".join(argv) for label, argv in cmds.items()},
        "compiler_stack_note": COMPILER_STACK_NOTE,
        "results": rows,
        "machine": {"python": platform.python_version(), "torch": importlib.metadata.version("torch"),
                    "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(markdown(rows, ratio))
    sys.stdout.write(f"\nwrote {args.out}\n")


if __name__ == "__main__":
    main()
