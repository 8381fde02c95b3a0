"""Time offline feature extraction and `accord predict` per clip on the two real MOSI clips (this machine).

    python benchmarks/extraction.py [--model runs/minilm_late_fusion] [--repeats 3]

For each clip: a cold pass (model loading included) and ``--repeats`` warm passes of
:func:`accord.features.extract.extract_clip` with every modality (MiniLM text, eGeMAPS audio, face geometry at 5 fps),
per-modality seconds, the real-time factor (seconds of work per second of media), and, with ``--model``, the
in-process time of :func:`accord.api.predict_clip`. Torch runs with one thread; the machine's load
average is recorded because the CPU is shared. Writes ``benchmarks/results/extraction.json``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from accord.core.io import write_json
from accord.features.extract import extract_clip, extractor_settings

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi"


def transcripts() -> dict[str, str]:
    with (RAW / "label.csv").open(newline="", encoding="utf-8") as fh:
        return {r["id"]: r["text"] for r in csv.DictReader(fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a run directory for the predict timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/extraction.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    texts = transcripts()
    settings = extractor_settings("vector", fps=5.0)
    load_before = os.getloadavg()
    clips = sorted((RAW / "raw").iterdir())
    result: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "torch_threads": 1,
                                             "load_average_before": [round(x, 2) for x in load_before]},
                                 "settings": settings, "clips": {}}
    per_clip: dict[str, object] = {}
    for clip in clips:
        text = texts.get(clip.stem, "")
        t0 = time.perf_counter()
        cf = extract_clip(clip, text, settings)
        cold = time.perf_counter() - t0
        warm, mods = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            cf = extract_clip(clip, text, settings)
            warm.append(time.perf_counter() - t0)
            mods.append(cf.seconds)
        med = statistics.median(warm)
        entry: dict[str, object] = {
            "duration_s": cf.duration, "cold_s": round(cold, 3), "warm_s": [round(w, 3) for w in warm],
            "warm_median_s": round(med, 3), "real_time_factor": round(med / max(cf.duration, 1e-9), 3),
            "faster_than_real_time": med < cf.duration,
            "per_modality_warm_median_s": {m: round(statistics.median(s[m] for s in mods), 3) for m in mods[0]},
            "missing": cf.missing, "shapes": {k: list(v.shape) for k, v in cf.arrays.items()},
        }
        if args.model:
            from accord.api import predict_clip

            predict_clip(clip, args.model, text=text)  # warm-up
            t0 = time.perf_counter()
            res = predict_clip(clip, args.model, text=text)
            entry["predict_warm_s"] = round(time.perf_counter() - t0, 3)
            entry["prediction"] = {k: res[k] for k in ("score", "polarity", "degraded") if k in res}
        per_clip[clip.name] = entry
        print(clip.name, entry)
    result["clips"] = per_clip
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]  # type: ignore[index]
    result["command"] = "python benchmarks/extraction.py" + (f" --model {args.model}" if args.model else "")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
