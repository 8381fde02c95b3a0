"""``accord report``: one self-contained HTML file of a run or a benchmark folder, checked in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord import api
from accord.cli import app
from accord.config import load_config
from accord.core.errors import CheckpointError
from accord.evaluation.report import build_report
from accord.training.trainer import Trainer

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one tiny trained late_fusion run (2 epochs, 1 seed) and a fake benchmark.json."""
    root = tmp_path_factory.mktemp("report")
    cfg = load_config(method="late_fusion", dataset="conflictbench", overrides=[
        "data.params.n_train=96", "data.params.n_valid=48", "data.params.n_test=48", "train.batch_size=16",
        "train.epochs=2", f"output.dir={root}", "name=run"])
    Trainer(cfg, progress=False).fit()
    summary = json.loads((root / "run" / "summary.json").read_text())
    (root / "benchmark.json").write_text(json.dumps({
        "dataset": "conflictbench", "seeds": [0], "methods": ["late_fusion"], "selection_metric": "MAE",
        "test": {"run": summary["test"]}, "verdict": "<b>not bold</b>"}))
    return root


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG_RE.findall(text)]


def test_run_report_is_self_contained(bench: Path, tmp_path: Path) -> None:
    out = api.report(bench / "run", out=tmp_path / "r.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<table class=\"metrics\">") == 1
    assert "<td>test</td>" in text and "<td>valid</td>" in text and "MAE" in text
    imgs = _images(text)
    assert imgs and all(b.startswith(PNG_MAGIC) for b in imgs)
    assert "Training curves" in text
    # the config is shown verbatim (escaped) and nothing is loaded from elsewhere
    assert "name: late_fusion" in text
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "<script" not in text
    # late_fusion saves no conflict / trust diagnostics and was not monitored: no such figures
    assert "Conflict scores" not in text and "Trust weights" not in text and "Gradient norms" not in text
    assert "diagnostic fusion_weight" in text and "Predictions against labels" in text


def test_benchmark_report_escapes_and_has_run_sections(bench: Path) -> None:
    text = build_report(bench)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text and "<b>not bold</b>" not in text
    assert text.count('<table class="metrics">') == 2  # benchmark table + the run's table
    assert 'id="run-run"' in text and 'href="#run-run"' in text
    assert len(_images(text)) >= 1


def test_report_cli_and_errors(bench: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(bench / "run"), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.html").is_file()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a directory" in res.output
    res = CliRunner().invoke(app, ["report", str(bench / "run"), "--split", "train"])
    assert res.exit_code == 2 and "expected valid or test" in res.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        build_report(tmp_path / "empty")


PROBE = ('<script>window.addEventListener("load",function(){var d=document.createElement("pre");d.id="probe";'
         'd.textContent=JSON.stringify({tables:document.querySelectorAll("table").length,'
         'images:[].slice.call(document.images).map(function(i){return [i.complete,i.naturalWidth];})});'
         'document.body.appendChild(d);});</script>')


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(bench: Path, tmp_path: Path) -> None:
    """Tables present and every inlined PNG decoded by a real browser (naturalWidth > 0)."""
    text = build_report(bench)
    # the report has no script; a probe appended to a COPY reports what the browser decoded
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", PROBE + "</body>"))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    try:
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False).stdout
    finally:
        shutil.rmtree(tmp_path / "prof", ignore_errors=True)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, f"probe missing from the DOM: {dom[:300]!r}"
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["tables"] == 2
    assert len(probe["images"]) == len(_images(text)) >= 1
    assert all(complete and width > 0 for complete, width in probe["images"])


def test_metrics_table_formats_and_escapes() -> None:
    from accord.evaluation.report import metrics_table

    html = metrics_table({"a<b": {"MAE": {"mean": 0.912345, "std": 0.0123, "n": 3}, "Corr": {"mean": None}},
                          "c": {"MAE": {"mean": 1.0, "std": 0.0, "n": 1}, "Acc": {"mean": 70.0, "std": 1.5, "n": 2}}},
                         "method")
    assert "<th>method</th><th>MAE</th><th>Corr</th><th>Acc</th>" in html
    assert "<td>a&lt;b</td><td>0.9123 ± 0.012</td><td>–</td><td>–</td>" in html
    assert "<td>c</td><td>1</td><td>–</td><td>70 ± 1.5</td>" in html


def _png_1x1() -> bytes:
    """A valid 1x1 grey PNG, built by hand (signature, IHDR, IDAT, IEND chunks with their CRCs)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")


def test_every_saved_diagnostic_gets_a_figure(tmp_path: Path) -> None:
    """A hand-made run folder (no training): grad lines, conflict/omega, trust, other diagnostics, robustness.png."""
    import numpy as np

    rd = tmp_path / "fake"
    sd = rd / "seed_0"
    sd.mkdir(parents=True)
    (rd / "config.yaml").write_text("name: fake <run>\ntrain:\n  early_stopping:\n    metric: MAE\n")
    lines = [{"type": "epoch", "epoch": e, "loss/total": 1.0 / e, "valid/MAE": 1.5 - 0.1 * e} for e in (1, 2, 3)]
    lines += [{"type": "grad", "epoch": 1 + s // 5, "step": s, "g/text": 0.1, "g/audio": 0.05, "g/visual": 0.02,
               "r/text": 1.8, "r/audio": 0.9, "r/visual": 0.3, "r_max": 1.8, "conflict": float(s % 2)}
              for s in range(1, 15)]
    (sd / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rng = np.random.default_rng(0)
    arrays = {"test/prediction": rng.normal(size=40).astype("f4"), "test/label": rng.normal(size=40).astype("f4"),
              "test/extra_conflict": (np.arange(40) % 5 == 0).astype("i1"),
              "test/fusion_weight": np.full((40, 3), 1 / 3, dtype="f4"), "test/aux_unimodal_text": np.zeros(40)}
    for m in ("text", "audio", "visual"):
        arrays |= {f"test/conflict_{m}": rng.random(40), f"test/omega_{m}": rng.random(40),
                   f"test/trust_{m}": rng.random(40), f"test/energy_{m}": rng.random(40)}
    np.savez(sd / "diagnostics.npz", **arrays)
    (rd / "robustness.png").write_bytes(_png_1x1())  # any valid PNG
    text = build_report(rd)
    for caption in ("Training curves", "Predictions against labels", "Gradient norms", "Conflict scores",
                    "Trust weights", "Per-sample diagnostic energy", "Per-sample diagnostic fusion_weight",
                    "Robustness"):
        assert f"<figcaption>{caption}" in text, caption
    assert "diagnostic aux_unimodal" not in text and "diagnostic extra" not in text
    assert "name: fake &lt;run&gt;" in text and "summary.json missing" in text
    assert all(b.startswith(PNG_MAGIC) for b in _images(text)) and len(_images(text)) == 8
