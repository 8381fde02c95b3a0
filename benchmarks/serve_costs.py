"""Where a served prediction's CPU goes (issue 18): one text request, its MiniLM encoding, and a clip's extraction
with and without the face retry, on the model `benchmarks/serve_load.py` makes.

    python benchmarks/serve_load.py            # once: makes the model and clips in /tmp/accord_serve_load
    python benchmarks/serve_costs.py [--work /tmp/accord_serve_load] [--texts 300]
                                     [--out benchmarks/results/serve_costs.md]

Process CPU milliseconds (``time.process_time``; every thread of the process counted, so a busy machine raises
them too: run it on a quiet one); torch threads as the server uses them. Writes a Markdown file with the command
and the numbers.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

from accord.api import Predictor
from accord.core.io import atomic_write_text
from accord.data import sentence_vectors
from accord.features.extract import extract_clip


def cpu_ms(fn: object, items: list[object]) -> float:
    """Mean CPU milliseconds of ``fn(item)`` over ``items`` (after one warm-up call)."""
    assert callable(fn)
    fn(items[0])
    t0 = time.process_time()
    for item in items:
        fn(item)
    return 1000.0 * (time.process_time() - t0) / len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("/tmp/accord_serve_load"))
    ap.add_argument("--texts", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_costs.md"))
    args = ap.parse_args()
    run = args.work / "run"
    if not run.is_dir():
        sys.exit(f"error: {run}: missing; run python benchmarks/serve_load.py first (it makes the model)")
    p = Predictor(run)
    p.warm_up()
    texts: list[object] = [f"the movie number {i} was rather good but too long" for i in range(args.texts)]
    predict_ms = cpu_ms(lambda t: p.predict(text=str(t)), texts)
    encode_ms = cpu_ms(lambda t: sentence_vectors.encode([str(t)], cache=False, progress=False), texts)
    clips: list[object] = sorted((args.work / "clips").glob("*.mp4"))[:4]
    no_retry = copy.deepcopy(p.settings)
    no_retry["visual"].pop("face_retry", None)
    with_ms = cpu_ms(lambda c: extract_clip(Path(str(c)), "hi", p.settings), clips)
    without_ms = cpu_ms(lambda c: extract_clip(Path(str(c)), "hi", no_retry), clips)
    size = extract_clip(Path(str(clips[0])), "hi", p.settings).details.get("visual", {}).get("size")
    cmd = "python benchmarks/serve_costs.py" + "".join(f" {a}" for a in sys.argv[1:])
    md = f"""# Where a served prediction's CPU goes

Command: `{cmd}` (after `python benchmarks/serve_load.py`, which makes the model: `late_fusion` on 12 synthetic
clips, MiniLM text, eGeMAPS audio, no face). Process CPU milliseconds, mean over the calls after one warm-up;
machine {platform.machine()}, Python {platform.python_version()}, 2 CPU cores (shared: CPU time, not wall time).

| what | calls | CPU ms per call |
|:---|---:|---:|
| `Predictor.predict(text=...)` (encoding, 8-coalition forward, result) | {len(texts)} | {predict_ms:.1f} |
| of which MiniLM `encode([text], cache=False)` | {len(texts)} | {encode_ms:.1f} |
| `extract_clip` of a faceless clip ({size}), with the face retry (the run's settings) | {len(clips)} | {with_ms:.0f} |
| the same without the retry (`face_retry` removed) | {len(clips)} | {without_ms:.0f} |
"""
    atomic_write_text(args.out, md)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
