"""Wall time of the two studies the README quotes, each in a fresh process, one after the other:

* the MOSI-U baselines: ``accord benchmark --dataset mosi-u --methods text,audio,visual,early_fusion,late_fusion,
  tfn,mult --seeds 5 --workers 2`` (its table becomes ``benchmarks/results/mosi_u_baselines.md``);
* the demo: ``accord demo`` (2 workers by default; its table becomes ``benchmarks/results/demo_conflictbench.md``);
* the other MOSI-U baselines (``--methods lmf,self_mm,misa``, 2 workers; ``mosi_u_more_baselines.md``).

Writes ``benchmarks/results/study_walls.json``. Run it on a quiet machine (the goal: the MOSI-U benchmark ≤ 90 s,
``make demo`` ≤ 3 min from a fresh clone with a warm pip cache, set-up included; the set-up is timed separately by
``benchmarks/fresh_clone_demo.sh``).

    python benchmarks/study_walls.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOSI_U = ["benchmark", "--dataset", "mosi-u", "--methods", "text,audio,visual,early_fusion,late_fusion,tfn,mult",
          "--seeds", "5", "--workers", "2", "--overwrite"]
DEMO = ["demo"]
MORE = ["benchmark", "--dataset", "mosi-u", "--methods", "lmf,self_mm,misa", "--seeds", "5", "--workers", "2",
        "--overwrite"]


def timed(args: list[str], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this process's children: the command and its workers) of ``accord <args>``."""
    accord = str(Path(sys.executable).parent / "accord")
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([accord, *args, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args()
    res = Path(args.results)
    record: dict[str, object] = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for key, cmd, table in (("mosi_u_benchmark", MOSI_U, "mosi_u_baselines.md"),
                                ("demo", DEMO, "demo_conflictbench.md"),
                                ("more_mosi_u_baselines", MORE, "mosi_u_more_baselines.md")):
            wall, cpu = timed(cmd, Path(tmp) / key)
            shutil.copyfile(Path(tmp) / key / "benchmark.md", res / table)
            record[key] = {"command": "accord " + " ".join(cmd), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                           "table": str(res / table)}
            print(key, record[key], flush=True)
    record["load_after"] = os.getloadavg()[0]
    record["command"] = "python benchmarks/study_walls.py"
    record["made_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    out = res / "study_walls.json"
    if out.is_file():  # the run this one replaces, kept for comparison (the machine's speed varies over a day)
        old = json.loads(out.read_text())
        record["previous"] = {k: (v["wall_s"] if isinstance(v, dict) and "wall_s" in v else v)
                              for k, v in old.items() if k not in ("command", "previous")}
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
