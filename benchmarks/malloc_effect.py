"""``train.malloc``: the same 3-epoch TFN training (MMSA's sizes, MOSI-U, one thread) with glibc's own allocator
thresholds and with the trainer's tuned ones, each in a fresh ``accord train`` process.

Records, per setting: the process's user and system CPU seconds and peak resident memory (``resource`` of the
child), every epoch's wall seconds and validation MAE from ``log.jsonl`` (the MAEs must be identical: where memory
comes from changes no float). Writes ``benchmarks/results/malloc_effect.json``; docs/speed.md quotes it.

    python benchmarks/malloc_effect.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_mmsa import ACCORD_MATCHED  # noqa: E402  (MMSA's TFN sizes, as the speed comparison uses them)

OUT = Path("benchmarks/results/malloc_effect.json")


def run(setting: str, out: Path) -> dict[str, object]:
    """One ``accord train`` of TFN with ``train.malloc=setting``: CPU seconds, peak memory, epochs."""
    accord = str(Path(sys.executable).parent / "accord")
    sets = [*ACCORD_MATCHED["tfn"], "train.epochs=3", "train.num_threads=1", f"train.malloc={setting}",
            f"output.dir={out}", f"name=tfn_{setting}"]
    cmd = [accord, "train", "-m", "tfn", "-d", "mosi-u", "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time and peak memory
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, so it never waits again
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    log = [json.loads(x) for x in (out / f"tfn_{setting}" / "seed_0" / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r.get("type") == "epoch"]
    return {"user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2), "wall_s": round(wall, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "epoch_seconds": [r["seconds"] for r in epochs], "valid_MAE": [r["valid/MAE"] for r in epochs],
            "command": " ".join(["accord", *cmd[1:]]).replace(str(out), "TMP")}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        res = {s: run(s, Path(tmp)) for s in ("system", "tuned")}
    res["same_metrics"] = res["system"]["valid_MAE"] == res["tuned"]["valid_MAE"]  # type: ignore[index]
    res["made_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    res["script"] = "python benchmarks/malloc_effect.py"
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
