"""Load test of `accord serve` as a real uvicorn process on loopback (issue 18).

    python benchmarks/serve_load.py [--work /tmp/accord_serve_load] [--texts 2000] [--media 50] [--clients 8]
                                    [--malloc-arena-max N] [--out benchmarks/results/serve_load.md]

1. Makes a small model once (reused from ``--work`` afterwards): 12 synthetic clips written with the ffmpeg of
   imageio-ffmpeg (colour videos with a sine tone: audio, no face; and tones alone), labelled by a CSV with short
   transcripts, through ``accord extract`` (MiniLM text, eGeMAPS audio, face geometry: absent, no face), then
   ``late_fusion`` trained on that dataset for a few epochs (1 seed, 1 thread).
2. Starts ``python -m accord serve RUN --host 127.0.0.1 --port <free port>`` as its own process and waits for
   ``GET /health``.
3. ``--clients`` concurrent clients (threads, one ``httpx.Client`` each) send ``--texts`` text requests
   (``POST /predict`` JSON), then ``--media`` media requests (multipart uploads of the clips with a transcript):
   throughput, p50/p95/p99 latency, errors (anything but 200), the server's RSS (``/proc/<pid>/status`` VmRSS, or
   psutil) before and after.
4. Sends 22 kinds of bad request, each of which must be answered 4xx with a one-line JSON ``error``, with
   ``GET /health`` 200 after each.
5. Writes ``benchmarks/results/serve_load.md`` (and ``.json``): the command, the machine, the numbers.

The machine is shared (2 CPU cores, other processes running), so the figures are a lower bound of what the
server does alone; the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["really good", "so bad", "great fun", "awful and dull", "fine I guess", "boring", "loved it", "sad story",
         "nice acting", "a waste of time", "brilliant", "not great"]


# ------------------------------------------------------------------------------------------------ the model


def make_model(work: Path) -> Path:
    """Synthetic clips → ``accord extract`` → late_fusion (1 seed); reused when ``work/run`` exists."""
    run = work / "run"
    if (run / "summary.json").is_file():
        return run
    import accord
    from accord import api
    from accord.features.media import make_test_media

    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = ["id,text,label,split"]
    for i in range(12):
        split = ("train", "train", "valid", "test")[i % 4]
        kind = "video_tone" if i % 2 else "tone"
        ext = ".mp4" if kind == "video_tone" else ".wav"
        make_test_media(clips / f"clip{i:02d}{ext}", kind, seconds=1.5, freq=180 + 40 * i)
        label = round((i % 7) - 3 + 0.5 * (i % 2), 1)
        rows.append(f"clip{i:02d},{WORDS[i]},{label},{split}")
    (work / "labels.csv").write_text("\n".join(rows) + "\n")
    rep = api.extract(clips, work / "features", csv_path=work / "labels.csv", progress=False)
    if rep.dataset is None:
        raise SystemExit(f"no dataset extracted: {rep.note} {rep.failed}")
    cfg = accord.load_config(method="late_fusion", overrides=[
        "data.name=saved", f"data.path={work / 'features' / 'dataset'}", "train.epochs=5", "train.seeds=[0]",
        f"output.dir={work}", "name=run", "train.num_threads=1"])
    api.train(cfg)
    return run


# ------------------------------------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (psutil when installed, else ``/proc/<pid>/status`` VmRSS)."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: Path, port: int, log: Path, arena_max: int | None = None
                 ) -> tuple[subprocess.Popen[bytes], float]:
    """``accord serve`` in its own process; returns it and the seconds until ``/health`` answered 200."""
    cmd = [sys.executable, "-m", "accord", "serve", str(run), "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ)
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(arena_max)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise SystemExit(f"accord serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise SystemExit("accord serve did not answer /health within 300 s")


# ------------------------------------------------------------------------------------------------ load


def load(url: str, requests: list[Callable[[httpx.Client], httpx.Response]], clients: int
         ) -> tuple[list[float], list[str], float]:
    """Send ``requests`` from ``clients`` threads (each takes the next one): latencies, errors, wall seconds."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = iter(range(len(requests)))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = requests[k](c)
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as err:
                    ok, why = False, repr(err)
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(why)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors, time.perf_counter() - t0


def phase(url: str, requests: list[Callable[[httpx.Client], httpx.Response]], clients: int, pid: int,
          cuts: list[int]) -> tuple[dict[str, Any], list[float]]:
    """``requests`` in parts (cut before each index of ``cuts``), the server's RSS in MB after each part: the
    statistics over all of them, and the RSS values."""
    lat: list[float] = []
    errors: list[str] = []
    wall = 0.0
    rss: list[float] = []
    for a, b in zip([0, *cuts], [*cuts, len(requests)], strict=True):
        part_lat, part_err, part_wall = load(url, requests[a:b], clients)
        lat, errors, wall = lat + part_lat, errors + part_err, wall + part_wall
        rss.append(rss_mb(pid))
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"requests": len(requests), "clients": clients, "wall_s": round(wall, 2),
            "throughput_rps": round(len(requests) / wall, 1), "p50_ms": round(q[49] * 1000, 1),
            "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "mean_ms": round(statistics.mean(lat) * 1000, 1), "errors": len(errors),
            "first_errors": errors[:5]}, rss


def wav(samples: int) -> bytes:
    """A mono 16-bit 16 kHz WAV of ``samples`` samples of silence (0: a header with an empty data chunk)."""
    import struct

    data = b"\x00\x00" * samples
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", len(data)) + data)


def bad_requests() -> list[tuple[str, str, str, dict[str, Any]]]:
    """22 kinds of bad request: (kind, method, path, httpx keyword arguments)."""
    js = {"content-type": "application/json"}
    big = wav(27 * 2**20 + 10)  # 54 MB: over the default 50 MB
    return [
        ("empty upload", "POST", "/predict", {"files": {"file": ("a.wav", b"", "audio/wav")}}),
        ("not media", "POST", "/predict", {"files": {"file": ("notes.txt", b"hello", "text/plain")}}),
        ("too large (54 MB)", "POST", "/predict", {"files": {"file": ("big.wav", big, "audio/wav")}}),
        ("wrong content type", "POST", "/predict", {"content": b"great", "headers": {"content-type": "text/plain"}}),
        ("malformed JSON", "POST", "/predict", {"content": b'{"text": ', "headers": js}),
        ("missing text and file", "POST", "/predict",
         {"content": b"--xx--\r\n", "headers": {"content-type": "multipart/form-data; boundary=xx"}}),
        ("missing text (JSON)", "POST", "/predict", {"json": {}}),
        ("empty text", "POST", "/predict", {"json": {"text": "   "}}),
        ("text too long", "POST", "/predict", {"json": {"text": "a" * 5001}}),
        ("unknown field", "POST", "/predict", {"json": {"text": "x", "lang": "en"}}),
        ("batch too large", "POST", "/predict/batch", {"json": ["a"] * 65}),
        ("empty batch", "POST", "/predict/batch", {"json": []}),
        ("wrong types", "POST", "/predict", {"json": {"text": 5}}),
        ("non-UTF-8 text", "POST", "/predict", {"content": b'{"text": "\xff\xfe"}', "headers": js}),
        ("media name, garbage bytes", "POST", "/predict",
         {"files": {"file": ("clip.mp4", b"\x13\x37" * 500, "video/mp4")}}),
        ("WAV header, garbage body", "POST", "/predict",
         {"files": {"file": ("bad.wav", wav(0)[:12] + b"\x13\x37" * 2000, "audio/wav")}}),
        ("zero-length audio", "POST", "/predict", {"files": {"file": ("silence.wav", wav(0), "audio/wav")}}),
        ("unknown route", "GET", "/nope", {}),
        ("wrong method", "GET", "/predict", {}),
        ("batch not a list", "POST", "/predict/batch", {"json": {"text": "x"}}),
        ("batch item with a path", "POST", "/predict/batch", {"json": [{"text": "a", "clip": "/etc/passwd"}]}),
        ("file given as a string", "POST", "/predict", {"data": {"file": "a.wav"}}),
    ]


def check_bad(url: str) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=url, timeout=120) as c:
        for kind, method, path, kw in bad_requests():
            r = c.request(method, path, **kw)
            try:
                body = r.json()
            except ValueError:
                body = {}
            err = str(body.get("error", ""))
            health = c.get("/health").status_code
            out.append({"kind": kind, "status": r.status_code, "error": err,
                        "ok": 400 <= r.status_code < 500 and list(body) == ["error"] and "\n" not in err
                        and health == 200, "health_after": health})
    return out


# ------------------------------------------------------------------------------------------------ report


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# `accord serve` load test",
        "",
        f"Command: `{res['command']}` (commit {res['commit']}, {res['date']}).",
        "",
        f"Machine: {m['cpus']} CPU cores ({m['arch']}, Python {m['python']}), **shared with three other engineers' "
        f"jobs** during the run (load average {m['load_before']} before, {m['load_after']} after), so these are lower "
        "bounds of what the server does alone. Server and clients on the same machine, loopback (127.0.0.1); one "
        "uvicorn process (one event loop; predictions in its worker threads, the model and the media extraction "
        "each behind a lock).",
        "",
        f"Model: `late_fusion` (1 seed) trained on a dataset made by `accord extract` from 12 synthetic clips "
        f"(ffmpeg colour video + sine tone, or tone alone; no face, so visual is absent); requests use MiniLM text "
        f"and eGeMAPS audio. Server start-up to the first `/health` 200: {res['startup_s']:.1f} s.",
        "",
        "| phase | requests | clients | wall (s) | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, key in (("text (`POST /predict` JSON)", "text"), ("media (multipart upload + transcript)", "media")):
        p = res[key]
        lines.append(f"| {name} | {p['requests']} | {p['clients']} | {p['wall_s']} | {p['throughput_rps']} | "
                     f"{p['p50_ms']} | {p['p95_ms']} | {p['p99_ms']} | {p['errors']} |")
    r = res["rss_mb"]
    lines += ["", f"Server RSS (MB): {r['before']:.0f} after start-up (model and text encoder loaded and warmed up); "
              f"after each quarter of the text requests {', '.join(f'{x:.0f}' for x in r['text'])}; after each fifth "
              f"of the media requests {', '.join(f'{x:.0f}' for x in r['media'])} (openSMILE and MediaPipe load on "
              f"the first upload); {r['after_bad']:.0f} after the bad requests. Server environment: "
              f"MALLOC_ARENA_MAX={res['malloc_arena_max'] or 'unset (glibc default: up to 8 arenas per core)'}. "
              "With it unset, the RSS under concurrent uploads grows with glibc's per-thread malloc arenas (each "
              "worker thread that extracts a clip gets its own); `MALLOC_ARENA_MAX=2` bounds that (docs/serving.md).",
              "",
              f"## Bad requests: {sum(b['ok'] for b in res['bad'])} of {len(res['bad'])} answered 4xx with a "
              "one-line JSON error, `/health` 200 after each", "",
              "| kind | status | error |", "|:---|---:|:---|"]
    for b in res["bad"]:
        err = b["error"] if len(b["error"]) < 110 else b["error"][:107] + "..."
        lines.append(f"| {b['kind']} | {b['status']} | {err.replace('|', '/')} |")
    lines += ["", "A good request after them: " + ("200" if res["good_after_bad"] else "FAILED") + ".", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/accord_serve_load"))
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--media", type=int, default=50)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.md")
    ap.add_argument("--malloc-arena-max", type=int, default=None,
                    help="MALLOC_ARENA_MAX for the server process (default: unset, glibc's own)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    run = make_model(args.work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, startup = start_server(run, port, args.work / "server.log", args.malloc_arena_max)
    try:
        rss: dict[str, Any] = {"before": rss_mb(proc.pid)}
        texts = [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} number {i}" for i in range(args.texts)]
        text_res, rss["text"] = phase(url, [lambda c, t=t: c.post("/predict", json={"text": t}) for t in texts],
                                      args.clients, proc.pid, [args.texts // 4, args.texts // 2, 3 * args.texts // 4])
        clips = sorted((args.work / "clips").iterdir())
        blobs = [(p.name, p.read_bytes()) for p in clips]
        media = [lambda c, b=blobs[i % len(blobs)], i=i: c.post(
            "/predict", files={"file": (b[0], b[1], "application/octet-stream")},
            data={"text": WORDS[i % len(WORDS)]}) for i in range(args.media)]
        media_res, rss["media"] = phase(url, media, args.clients, proc.pid,
                                        [args.media // 5, 2 * args.media // 5, 3 * args.media // 5,
                                         4 * args.media // 5])
        bad = check_bad(url)
        rss["after_bad"] = rss_mb(proc.pid)
        good = httpx.post(f"{url}/predict", json={"text": "really good"}, timeout=60).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    res = {"command": "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT))
                                            if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]]),
           "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version(),
                       "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]},
           "startup_s": round(startup, 2), "malloc_arena_max": args.malloc_arena_max, "text": text_res,
           "media": media_res,
           "rss_mb": {k: [round(x, 1) for x in v] if isinstance(v, list) else round(v, 1) for k, v in rss.items()},
           "bad": bad, "good_after_bad": good}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(res))
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    print(markdown(res))
    failed = text_res["errors"] + media_res["errors"] + sum(not b["ok"] for b in bad) + (not good)
    if failed:
        raise SystemExit(f"{failed} failures (see {args.out})")


if __name__ == "__main__":
    main()
